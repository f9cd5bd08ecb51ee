//! Which framing a container log file uses, decided once per file from its first
//! line: a docker json-file line is a JSON object with a `log` field, a CRI line
//! starts with a time and a stream name.

use super::{cri, docker};

/// A container runtime's log framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContainerFormat {
    /// containerd / CRI-O: `<time> <stream> <P|F> <message>`.
    Cri,
    /// Docker's json-file driver: `{"log":"...","stream":"...","time":"..."}`.
    Docker,
}

/// The framing of the file whose first complete line is `line`; `None` when the line
/// is neither.
pub fn detect(line: &[u8]) -> Option<ContainerFormat> {
    let start = line.iter().position(|b| !b.is_ascii_whitespace())?;
    if line[start] == b'{' {
        let mut scratch = Vec::new();
        return docker::parse(line, &mut scratch)
            .is_ok()
            .then_some(ContainerFormat::Docker);
    }
    cri::parse(line).is_ok().then_some(ContainerFormat::Cri)
}
