//! The machine this process runs on, as the forward handshake and event ids name it.

/// The machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
/// `localhost`).
pub fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}
