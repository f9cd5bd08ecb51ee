//! Ports and polling: wait on the condition a test needs, never a fixed time.

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago. Prefer binding port 0 where the
/// server can report its port; use this where the port must be known first (a server
/// started after its client).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
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
