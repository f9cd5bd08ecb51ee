//! What a process holds, read from `/proc` and the file system: for tests and
//! benchmarks that check memory and disk stay bounded.

use std::path::Path;

/// Resident memory of process `pid` in KiB (`VmRSS` of `/proc/PID/status`); 0 when
/// the process is gone. `std::process::id()` gives this process's own.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Bytes of the files directly in `dir` (not in its folders); 0 when it is missing.
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_a_folder() {
        assert!(rss_kib(std::process::id()) > 0);
        assert_eq!(rss_kib(u32::MAX), 0, "no such process");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"abc").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), b"not counted").unwrap();
        assert_eq!(dir_bytes(dir.path()), 3);
        assert_eq!(dir_bytes(&dir.path().join("missing")), 0);
    }
}
