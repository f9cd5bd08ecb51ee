//! Standard output as the sink writes it: plain `write(2)` calls on a thread of the
//! blocking pool, one piece at a time, that report how far they got.
//!
//! Knowing how far a failed write got is what lets the sink try again from that very
//! byte (no line twice, no half line) and say which events did not go out when it
//! gives up. A standard output that another process left in non-blocking mode
//! (`EAGAIN` when the pipe is full) is waited on, not treated as an error.

use std::fs::File;
use std::io::{self, ErrorKind, Write};
use std::os::fd::AsFd;
use std::time::Duration;

/// How long to wait before writing again to a non-blocking output that was full.
const FULL_WAIT: Duration = Duration::from_millis(5);

/// The process's standard output as a file of its own (a duplicate of descriptor
/// 1), written without the standard library's line buffering.
pub fn stdout() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// An output written piece by piece on the blocking pool.
#[derive(Debug)]
pub struct Writer<W> {
    out: Option<W>,
}

/// How writing a piece ended.
#[derive(Debug)]
pub struct Written {
    /// The piece, given back for reuse.
    pub piece: Vec<u8>,
    /// How many of its bytes are out (all of them on success).
    pub at: usize,
    /// Whether the rest was written and flushed.
    pub result: io::Result<()>,
}

impl<W: Write + Send + 'static> Writer<W> {
    /// A writer over `out`.
    pub fn new(out: W) -> Self {
        Self { out: Some(out) }
    }

    /// Writes `piece[from..]` and flushes. Should this future be dropped (the sink
    /// was aborted), the write still finishes on its thread and the output is gone
    /// with it: later writes fail.
    pub async fn write(&mut self, piece: Vec<u8>, from: usize) -> Written {
        let Some(mut out) = self.out.take() else {
            return Written {
                piece,
                at: from,
                result: Err(io::Error::other(
                    "an earlier write to the output was abandoned",
                )),
            };
        };
        let job = tokio::task::spawn_blocking(move || {
            let (at, result) = write_from(&mut out, &piece, from);
            (out, Written { piece, at, result })
        });
        match job.await {
            Ok((out, written)) => {
                self.out = Some(out);
                written
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Written {
                piece: Vec::new(),
                at: from,
                result: Err(io::Error::other(e)),
            },
        }
    }
}

/// Writes `piece[at..]` to `out`, then flushes; returns how far it got.
fn write_from(out: &mut impl Write, piece: &[u8], mut at: usize) -> (usize, io::Result<()>) {
    while at < piece.len() {
        match out.write(&piece[at..]) {
            Ok(0) => {
                return (
                    at,
                    Err(io::Error::new(
                        ErrorKind::WriteZero,
                        "the output accepted no more bytes",
                    )),
                );
            }
            Ok(n) => at += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(FULL_WAIT),
            Err(e) => return (at, Err(e)),
        }
    }
    (at, out.flush())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `step` bytes per call, and fails the calls listed in `fail`
    /// (by number, from 0) with `kind`.
    struct Stingy {
        got: Vec<u8>,
        step: usize,
        calls: usize,
        fail: Vec<(usize, ErrorKind)>,
    }

    impl Write for Stingy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let call = self.calls;
            self.calls += 1;
            if let Some((_, kind)) = self.fail.iter().find(|(c, _)| *c == call) {
                return Err(io::Error::from(*kind));
            }
            let n = buf.len().min(self.step);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_go_on_and_errors_say_how_far_they_got() {
        let mut out = Stingy {
            got: Vec::new(),
            step: 3,
            calls: 0,
            fail: vec![
                (1, ErrorKind::Interrupted),
                (2, ErrorKind::WouldBlock),
                (4, ErrorKind::StorageFull),
            ],
        };
        let (at, r) = write_from(&mut out, b"abcdefghij", 0);
        // Calls 0 and 3 wrote three bytes each; 1 and 2 were waited out; 4 failed.
        assert_eq!(at, 6);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::StorageFull);
        let (at, r) = write_from(&mut out, b"abcdefghij", at);
        assert_eq!(at, 10);
        r.unwrap();
        assert_eq!(out.got, b"abcdefghij");
    }
}
