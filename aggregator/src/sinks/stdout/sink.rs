//! The `stdout` sink's loop: take a chunk, write its events as lines in pieces of at
//! most [`PIECE`] bytes, ack the chunk once its last line is out, take the next.
//!
//! Writing as it encodes keeps a pipe flowing. Encoding a whole batch before writing
//! a byte of it (as this sink once did, with up to 256 chunks per batch and no bound
//! in bytes) left the reader with nothing for as long as that took: seconds for a
//! memory buffer's 64 MiB in a debug build on a loaded machine, tens of seconds for
//! a file buffer, whose chunks are 8 MiB; and since nothing was acked until all of
//! it was written, the buffer stayed full and the sources paused meanwhile, so the
//! silence came back with every batch, longer after each slow spell of the reader.
//!
//! A failed write is tried again from the byte where it stopped, under the buffer's
//! retry policy, while the lease is held (so the buffer pushes back on the sources);
//! once the retries run out, the events not written go to the dead-letter output with
//! the last error and the sink goes on. A closed pipe (the reader exited, `EPIPE`)
//! is not retried: it cannot come back. The sink stops, and with it nagare, as a
//! command in a pipeline does; what it had not written stays undelivered in its
//! buffer. An entry that cannot be decoded goes to the dead-letter output with the
//! reason, and the rest of its chunk is delivered.

use std::io::{self, ErrorKind, Write};

use nagare_core::chunk::Chunk;
use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use nagare_core::dead_letter::{self, DeadLetter};
use nagare_core::retry::{Attempts, Next, Retrier};

use super::config::StdoutConfig;
use super::writer::{self, Writer, Written};
use crate::sinks::ndjson::Format;
use crate::sinks::ndjson::encode_event;

/// Bytes of lines written at a time (a piece may end a line past it).
const PIECE: usize = 256 * 1024;

/// Why the sink stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StdoutSinkError {
    /// A setting is not usable.
    #[error("stdout sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
    /// The process has no usable standard output (it was closed before start).
    #[error(
        "stdout sink `{sink}`: standard output cannot be used: {source}; start nagare with a standard output, or remove the sink"
    )]
    Unavailable {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: io::Error,
    },
    /// Standard output is a pipe whose reader exited. The events not written stay
    /// undelivered in the buffer (a file buffer sends them after the next start).
    #[error(
        "stdout sink `{sink}`: standard output was closed by its reader ({source}); stopping, as a command in a pipeline does"
    )]
    Closed {
        /// The sink's name.
        sink: String,
        /// The cause (`EPIPE`).
        source: io::Error,
    },
}

/// The `stdout` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct StdoutSink;

impl SinkComponent for StdoutSink {
    const TYPE: &'static str = "stdout";
    type Config = StdoutConfig;
    type Error = StdoutSinkError;

    fn validate(config: &StdoutConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(config: StdoutConfig, ctx: SinkContext) -> Result<(), StdoutSinkError> {
        run(config, ctx).await
    }
}

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled.
pub async fn run(config: StdoutConfig, ctx: SinkContext) -> Result<(), StdoutSinkError> {
    let out = writer::stdout().map_err(|source| StdoutSinkError::Unavailable {
        sink: ctx.name.clone(),
        source,
    })?;
    run_to(config, ctx, out).await
}

/// [`run`] writing to `out` instead of standard output (written on the blocking
/// pool, one piece at a time).
pub async fn run_to<W: Write + Send + 'static>(
    config: StdoutConfig,
    ctx: SinkContext,
    out: W,
) -> Result<(), StdoutSinkError> {
    config
        .validate()
        .map_err(|invalid| StdoutSinkError::Config {
            sink: ctx.name.clone(),
            invalid,
        })?;
    let mut sink = Sink {
        retrier: ctx.retrier(),
        dead_letter: ctx.dead_letter(),
        format: config.format,
        writer: Writer::new(out),
        piece: Vec::with_capacity(PIECE + 64 * 1024),
        ends: Vec::new(),
        mid_line: false,
        ctx,
    };
    loop {
        let lease = tokio::select! {
            biased;
            _ = sink.ctx.abort.cancelled() => return Ok(()),
            lease = sink.ctx.buffer.pop() => lease,
        };
        let Some(lease) = lease else {
            return Ok(());
        };
        match sink.deliver(lease.chunk()).await? {
            Outcome::Delivered => lease.delivered(),
            // Not all of the chunk was written: it counts as failed, as a chunk with
            // an event refused for good does in every sink.
            Outcome::GaveUp | Outcome::SetApart => lease.dead_lettered(),
            // The lease goes back to the buffer as it is dropped.
            Outcome::Aborted => return Ok(()),
        }
    }
}

/// What became of a chunk.
enum Outcome {
    /// Every event was written.
    Delivered,
    /// Every event that could be decoded was written; the entries that could not
    /// went to the dead-letter output.
    SetApart,
    /// The retries ran out; the events not written went to the dead-letter output.
    GaveUp,
    /// The sink was aborted first.
    Aborted,
}

/// How writing one piece ended.
enum Piece {
    Written,
    /// The retries ran out with `at` bytes of the piece out.
    GaveUp {
        at: usize,
        reason: String,
    },
    Aborted,
}

struct Sink<W> {
    ctx: SinkContext,
    retrier: Retrier,
    dead_letter: DeadLetter,
    format: Format,
    writer: Writer<W>,
    /// The piece being written.
    piece: Vec<u8>,
    /// For each event in the piece, its position in the chunk and where its line
    /// ends in the piece.
    ends: Vec<(u32, usize)>,
    /// A write that was given up ended in the middle of a line: the next piece
    /// starts with a newline, so that one line is cut, not two run together.
    mid_line: bool,
}

impl<W: Write + Send + 'static> Sink<W> {
    /// Writes `chunk`'s events, piece by piece.
    async fn deliver(&mut self, chunk: &Chunk) -> Result<Outcome, StdoutSinkError> {
        let mut walk = chunk.walk().enumerate();
        let mut attempts = Attempts::new();
        let mut undecodable = 0u32;
        let mut gave_up: Option<(u32, String)> = None;
        let mut more = true;
        while more {
            self.piece.clear();
            self.ends.clear();
            let starts_mid_line = self.mid_line;
            if starts_mid_line {
                self.piece.push(b'\n');
            }
            more = false;
            for (position, step) in walk.by_ref() {
                match step {
                    Ok((time, record)) => {
                        encode_event(self.format, chunk.tag(), time, &record, &mut self.piece);
                        self.ends.push((position as u32, self.piece.len()));
                    }
                    Err(_) => undecodable += 1,
                }
                if self.piece.len() >= PIECE {
                    more = true;
                    break;
                }
            }
            if self.ends.is_empty() {
                break;
            }
            match self.write_piece(&mut attempts).await? {
                Piece::Written => self.mid_line = false,
                Piece::Aborted => return Ok(Outcome::Aborted),
                Piece::GaveUp { at, reason } => {
                    if at > 0 {
                        self.mid_line = self.piece[at - 1] != b'\n';
                    } else {
                        self.mid_line = starts_mid_line;
                    }
                    // The first event whose line is not all out; past the piece's
                    // last event when only the flush failed.
                    let from = match self.ends.iter().find(|(_, end)| *end > at) {
                        Some((position, _)) => *position,
                        None => self.ends.last().map_or(0, |(position, _)| position + 1),
                    };
                    gave_up = Some((from, reason));
                    break;
                }
            }
        }
        if undecodable == 0 && gave_up.is_none() {
            return Ok(Outcome::Delivered);
        }
        let mut lines = Vec::new();
        let gave = gave_up.as_ref().map(|(from, r)| (*from, r.as_str()));
        let moved = dead_letter::encode_undelivered(chunk, gave, &mut lines);
        let written = self
            .dead_letter
            .write_until_done(
                lines,
                &self.retrier.policy().backoff,
                &self.ctx.abort,
                &self.ctx.name,
            )
            .await;
        if !written {
            return Ok(Outcome::Aborted);
        }
        let path = self.dead_letter.path().display();
        match &gave_up {
            Some((_, reason)) => {
                tracing::error!(sink = %self.ctx.name, events = moved, dead_letter = %path, %reason, "retries ran out (retry_timeout / retry_max_times); wrote the events not written to the dead-letter output");
                Ok(Outcome::GaveUp)
            }
            None => {
                tracing::error!(sink = %self.ctx.name, tag = %chunk.tag(), chunk = %chunk.id(), entries = undecodable, dead_letter = %path, "a chunk held entries that cannot be decoded; wrote those to the dead-letter output with the reason and delivered the rest");
                Ok(Outcome::SetApart)
            }
        }
    }

    /// Writes the piece, trying again from where a failed write stopped.
    async fn write_piece(&mut self, attempts: &mut Attempts) -> Result<Piece, StdoutSinkError> {
        let mut at = 0;
        loop {
            let piece = std::mem::take(&mut self.piece);
            let written = tokio::select! {
                biased;
                _ = self.ctx.abort.cancelled() => return Ok(Piece::Aborted),
                written = self.writer.write(piece, at) => written,
            };
            let Written {
                piece,
                at: done,
                result,
            } = written;
            self.piece = piece;
            at = done;
            let e = match result {
                Ok(()) => {
                    self.retrier.succeeded();
                    return Ok(Piece::Written);
                }
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                    return Err(StdoutSinkError::Closed {
                        sink: self.ctx.name.clone(),
                        source: e,
                    });
                }
                Err(e) => e,
            };
            match self.retrier.failed(attempts) {
                Next::RetryIn(delay) => {
                    tracing::error!(
                        sink = %self.ctx.name,
                        error = %e,
                        attempt = attempts.failures(),
                        retry_in = ?delay,
                        "cannot write to standard output; will try again from where the write stopped"
                    );
                    tokio::select! {
                        biased;
                        _ = self.ctx.abort.cancelled() => return Ok(Piece::Aborted),
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                Next::GiveUp {
                    failures,
                    failing_for,
                } => {
                    let reason = format!(
                        "gave up after {failures} failed attempts over {}s; last error: cannot write to standard output: {e}",
                        failing_for.as_secs()
                    );
                    return Ok(Piece::GaveUp { at, reason });
                }
            }
        }
    }
}
