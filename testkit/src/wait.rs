//! Ports and polling: wait on the condition a test needs, never a fixed time.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago. Prefer binding port 0 where the
/// server can report its port; use this where the port must be known first (a server
/// started after its client).
///
/// The port is taken from below the kernel's ephemeral range (`ip_local_port_range`),
/// which outgoing connections and `bind(0)` draw from: a port handed out here cannot
/// be taken meanwhile by some test's client connection or by a server bound to port 0.
/// Each call in a process hands out a different port, starting at an offset drawn
/// from the process id, so the tests of one binary never get the same port twice.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (first, count) = reserved_range();
    let start = std::process::id().wrapping_mul(2_654_435_761) % count;
    for _ in 0..count {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (first + (start + n) % count) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free TCP port on 127.0.0.1 between {first} and {}",
        first + count
    )
}

/// The ports below the ephemeral range that [`free_port`] hands out: its lower half's
/// start up to it (16384..32768 with Linux's default range 32768-60999).
fn reserved_range() -> (u32, u32) {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|low| *low >= 2048)
        .unwrap_or(32768);
    (low / 2, low - low / 2)
}

/// Calls `check` every 20 ms until it returns true or `timeout` passes; returns
/// whether it did. Blocking: call it from a test's own thread, not from inside a
/// task the code under test needs (run such code on a multi-threaded runtime).
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_until`] for async tests: awaits between checks, so tasks on the test's own
/// runtime (a `#[tokio::test]` runs them all on its one thread) go on meanwhile.
pub async fn wait_until_async(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
        let (first, count) = reserved_range();
        assert!((first..first + count).contains(&u32::from(port)), "{port}");
        assert_ne!(free_port(), port, "a port is handed out once");
    }

    #[test]
    fn wait_until_reports_success_and_timeout() {
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(1), || {
            n += 1;
            n == 3
        }));
        let start = Instant::now();
        assert!(!wait_until(Duration::from_millis(50), || false));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
