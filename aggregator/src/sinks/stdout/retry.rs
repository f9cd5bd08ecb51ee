//! What a failed write means: a pipe whose reader exited (`EPIPE`) cannot come back,
//! so the sink stops; any other error (a full disk under a redirect, a terminal gone
//! for a while) is tried again from the byte where the write stopped, under the
//! buffer's retry policy, and once the retries run out the events not out go to the
//! dead-letter output.

use std::io::{self, ErrorKind};

/// What to do after a write failed with `error`.
#[derive(Debug)]
pub enum Failure {
    /// The reader is gone: stop.
    Closed,
    /// Try again; the reason, in words.
    Retry(String),
}

/// Classifies a failed write.
pub fn classify(error: &io::Error) -> Failure {
    if error.kind() == ErrorKind::BrokenPipe {
        Failure::Closed
    } else {
        Failure::Retry(format!("cannot write to standard output: {error}"))
    }
}
