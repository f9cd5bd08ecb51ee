//! What a container log file's name says about its container.
//!
//! The kubelet links each container's log into `/var/log/containers` under the name
//! `<pod>_<namespace>_<container>-<container id>.log`. None of the three names can
//! hold `_` (pod names are DNS subdomains, `a-z0-9-.`; namespace and container names
//! are DNS labels, `a-z0-9-`), so `_` separates them; the container id is the 64 hex
//! digits after the last `-`.

/// The Kubernetes names in a container log file name, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodLogFile<'a> {
    /// The pod's name (`web-7d9f8b6c5-x2x4q`).
    pub pod_name: &'a str,
    /// The pod's namespace.
    pub namespace_name: &'a str,
    /// The container's name within the pod.
    pub container_name: &'a str,
    /// The runtime's 64-hex-digit container id.
    pub container_id: &'a str,
}

/// Parses a file name (not a path) like
/// `web-1_default_nginx-<64 hex digits>.log`; `None` when it does not have that shape.
pub fn parse_pod_log_file_name(file_name: &str) -> Option<PodLogFile<'_>> {
    let stem = file_name.strip_suffix(".log")?;
    let mut parts = stem.split('_');
    let (pod_name, namespace_name, container) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (container_name, container_id) = container.rsplit_once('-')?;
    let is_name = |s: &str, dots: bool| {
        !s.is_empty()
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (dots && b == b'.')
            })
    };
    let is_id = container_id.len() == 64
        && container_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (is_name(pod_name, true)
        && is_name(namespace_name, false)
        && is_name(container_name, false)
        && is_id)
        .then_some(PodLogFile {
            pod_name,
            namespace_name,
            container_name,
            container_id,
        })
}
