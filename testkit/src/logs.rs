//! [`capture_logs`]: what the code under test logs, as text lines, for assertions.
//!
//! A subscriber set per thread (`tracing::subscriber::set_default`) loses events when
//! tests run in parallel: each callsite caches whether any subscriber wants it, and a
//! callsite first reached on a thread without one while another thread sets its own
//! can be cached as "never", so that thread's events from it are dropped. Here one
//! global subscriber, installed once and never replaced, takes every event, so no
//! callsite is ever cached as "never"; it hands each event to the capture of the
//! thread it is logged on, if that thread has one. A test that logs on other threads
//! (a multi-threaded runtime, `spawn_blocking`) should assert on its own results, not
//! on logs.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use tracing::Level;
use tracing::metadata::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{Layer, filter};

/// The capture of this thread: where its lines go, and up to which level.
#[derive(Clone)]
struct Capture {
    text: Arc<Mutex<Vec<u8>>>,
    level: Level,
}

thread_local! {
    static CAPTURE: RefCell<Option<Capture>> = const { RefCell::new(None) };
}

/// The lines logged on a thread while its [`LogCapture`] lives. Dropping it stops the
/// capture (the lines already taken stay readable through clones).
#[derive(Debug, Clone)]
pub struct LogCapture {
    text: Arc<Mutex<Vec<u8>>>,
    /// Whether this value ends the capture when dropped (clones do not).
    owner: bool,
}

/// Starts capturing what this thread logs at `level` and above, in tracing's plain
/// text format (`<time>  WARN <spans>: <target>: <message> <fields>`), until the
/// returned value is dropped. A `#[tokio::test]`'s runtime runs every task on the
/// test's thread, so their logs are captured too.
pub fn capture_logs(level: Level) -> LogCapture {
    install();
    let text = Arc::new(Mutex::new(Vec::new()));
    CAPTURE.with(|c| {
        *c.borrow_mut() = Some(Capture {
            text: text.clone(),
            level,
        });
    });
    LogCapture { text, owner: true }
}

impl LogCapture {
    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        String::from_utf8_lossy(&self.text.lock().unwrap_or_else(|p| p.into_inner()))
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The lines that contain every one of `needles`.
    pub fn matching(&self, needles: &[&str]) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect()
    }

    /// Waits until a line contains every one of `needles` and returns it; `None` when
    /// none did within `timeout`. For async tests, whose tasks log on this thread
    /// while it waits.
    pub async fn wait_for(&self, timeout: std::time::Duration, needles: &[&str]) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.matching(needles).into_iter().next() {
                return Some(line);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A handle to the same lines that does not end the capture when dropped.
    pub fn handle(&self) -> LogCapture {
        LogCapture {
            text: self.text.clone(),
            owner: false,
        }
    }
}

impl Drop for LogCapture {
    fn drop(&mut self) {
        if self.owner {
            // A thread-local may already be gone when a thread ends.
            let _ = CAPTURE.try_with(|c| c.borrow_mut().take());
        }
    }
}

/// Writes a formatted event to the capture of the thread that logged it.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|c| {
            if let Some(capture) = c.borrow().as_ref() {
                capture
                    .text
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for ThreadWriter {
    type Writer = ThreadWriter;

    fn make_writer(&'a self) -> ThreadWriter {
        ThreadWriter
    }
}

/// Installs the global subscriber once per process. An event is formatted only on a
/// thread whose capture wants its level; the filter is asked each time (it never
/// answers for a callsite once and for all), which is what keeps events from being
/// lost.
fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let wanted = filter::dynamic_filter_fn(|meta, _| {
            CAPTURE.with(|c| {
                c.borrow()
                    .as_ref()
                    .is_some_and(|capture| meta.level() <= &capture.level)
            })
        });
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(ThreadWriter)
            .with_filter(wanted);
        let subscriber = tracing_subscriber::registry()
            .with(layer)
            .with(LevelFilter::TRACE);
        tracing::subscriber::set_global_default(subscriber).expect(
            "capture_logs installs the global subscriber: nothing else in this test binary may",
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_this_threads_lines_at_its_level() {
        let logs = capture_logs(Level::INFO);
        tracing::info!(n = 1, "kept");
        tracing::debug!("below the level");
        std::thread::spawn(|| tracing::warn!("another thread"))
            .join()
            .unwrap();
        let lines = logs.lines();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        assert!(lines[0].contains("INFO") && lines[0].contains("kept n=1"));
        let handle = logs.handle();
        drop(logs);
        tracing::info!("after the end");
        assert_eq!(handle.lines().len(), 1);
    }

    /// Threads start capturing while others reach the same callsites, for the first
    /// time, without a capture: every capturing thread still gets all its events.
    #[test]
    fn parallel_captures_lose_no_event() {
        macro_rules! callsites {
            ($($n:literal)*) => {
                fn log_all() {
                    $( tracing::info!(site = $n, "event"); )*
                }
            };
        }
        callsites!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27
            28 29 30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54
            55 56 57 58 59 60 61 62 63);
        let threads: Vec<_> = (0..16)
            .map(|i| {
                std::thread::spawn(move || {
                    if i % 2 == 0 {
                        log_all();
                        return 64;
                    }
                    let logs = capture_logs(Level::INFO);
                    log_all();
                    logs.lines().len()
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), 64, "thread {i} lost events");
        }
    }
}
