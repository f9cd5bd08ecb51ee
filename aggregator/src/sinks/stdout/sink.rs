//! The `stdout` sink: the kit's driver ([`nagare_core::sink`]) with this sink's
//! encoder (`encoder.rs`: a line per event) and service (`service.rs`: pieces
//! written through `writer.rs`), one chunk at a time: a chunk's lines go out in
//! pieces of at most [`PIECE`] bytes as they are encoded, and the chunk is acked once
//! its last line is out, before the next is taken.
//!
//! Writing as it encodes keeps a pipe flowing. Encoding a whole batch before writing
//! a byte of it (as this sink once did, with up to 256 chunks per batch and no bound
//! in bytes) left the reader with nothing for as long as that took, up to 7 s with a
//! file buffer's 8 MiB chunks on a loaded machine; and since nothing was acked until
//! all of it was written, the buffer stayed full and the sources paused meanwhile,
//! so the silence came back with every batch.
//!
//! A failed write is tried again from the byte where it stopped, under the buffer's
//! retry policy, while the lease is held (so the buffer pushes back on the sources);
//! once the retries run out, the events not written go to the dead-letter output with
//! the last error and the sink goes on. A closed pipe (the reader exited, `EPIPE`)
//! is not retried: it cannot come back. The sink stops, and with it nagare, as a
//! command in a pipeline does; what it had not written stays undelivered in its
//! buffer. An entry that cannot be decoded goes to the dead-letter output with the
//! reason, and the rest of its chunk is delivered.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use nagare_core::shutdown::Shutdown;
use nagare_core::sink::{self, BatchLimits, Words};

use super::config::StdoutConfig;
use super::encoder::StdoutEncoder;
use super::service::StdoutService;
use super::writer;

/// Bytes of lines written at a time (a piece may end a line past it).
pub const PIECE: usize = 256 * 1024;

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

/// What the driver logs for this sink.
const WORDS: Words = Words {
    kind: "stdout",
    rejected: "lines were refused for good; wrote them to the dead-letter output",
    retry_some: "cannot write to standard output; will try again from where the write stopped",
    retry_all: "cannot write to standard output; will try again from where the write stopped",
    split: "a write was refused as a whole; splitting it",
};

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
    mut ctx: SinkContext,
    out: W,
) -> Result<(), StdoutSinkError> {
    config
        .validate()
        .map_err(|invalid| StdoutSinkError::Config {
            sink: ctx.name.clone(),
            invalid,
        })?;
    // The kit's workers stop on `halt`: when the sink is aborted, or when the output
    // is closed for good.
    let halt = Shutdown::new();
    let abort = std::mem::replace(&mut ctx.abort, halt.clone());
    let relay = {
        let halt = halt.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = abort.cancelled() => halt.cancel(),
                _ = halt.cancelled() => {}
            }
        })
    };
    let closed = Arc::new(Mutex::new(None));
    let service = StdoutService::new(out, closed.clone(), halt.clone());
    let limits = BatchLimits {
        max_events: usize::MAX,
        max_bytes: PIECE,
        max_span: None,
        timeout: Duration::ZERO,
        chunk_at_a_time: true,
    };
    // One worker: lines keep their order.
    let workers = vec![(StdoutEncoder::new(config.format), service)];
    sink::run(&ctx, limits, WORDS, workers).await;
    relay.abort();
    let closed = closed.lock().unwrap_or_else(|p| p.into_inner()).take();
    match closed {
        Some(source) => Err(StdoutSinkError::Closed {
            sink: ctx.name.clone(),
            source,
        }),
        None => Ok(()),
    }
}
