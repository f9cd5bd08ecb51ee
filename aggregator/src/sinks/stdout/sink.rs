//! The `stdout` sink's loop: take what the buffer holds, encode it, write it, flush,
//! ack.

use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::config::StdoutConfig;
use crate::sinks::file::encoder::encode_chunk;

/// Most chunks written in one batch.
const BATCH_CHUNKS: usize = 256;

/// Why the sink stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StdoutError {
    /// A setting is not usable.
    #[error("stdout sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
    /// Standard output cannot be written (closed pipe): the sink stops, and what it
    /// had not written stays in its buffer.
    #[error("stdout sink `{sink}`: cannot write to standard output: {source}")]
    Write {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// The `stdout` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct StdoutSink;

impl SinkComponent for StdoutSink {
    const TYPE: &'static str = "stdout";
    type Config = StdoutConfig;
    type Error = StdoutError;

    fn validate(config: &StdoutConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(config: StdoutConfig, ctx: SinkContext) -> Result<(), StdoutError> {
        run(config, ctx).await
    }
}

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled.
pub async fn run(config: StdoutConfig, ctx: SinkContext) -> Result<(), StdoutError> {
    run_to(config, ctx, tokio::io::stdout()).await
}

/// [`run`] writing to `out` instead of standard output.
pub async fn run_to(
    config: StdoutConfig,
    ctx: SinkContext,
    mut out: impl AsyncWrite + Unpin,
) -> Result<(), StdoutError> {
    config.validate().map_err(|invalid| StdoutError::Config {
        sink: ctx.name.clone(),
        invalid,
    })?;
    let mut lines = Vec::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = ctx.abort.cancelled() => return Ok(()),
            lease = ctx.buffer.pop() => lease,
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut leases = vec![first];
        while leases.len() < BATCH_CHUNKS {
            match ctx.buffer.pop_ready().await {
                Some(lease) => leases.push(lease),
                None => break,
            }
        }
        lines.clear();
        let mut broken = Vec::new();
        for (i, lease) in leases.iter().enumerate() {
            let chunk = lease.chunk();
            if let Err((written, e)) = encode_chunk(config.format, chunk, &mut lines) {
                tracing::error!(
                    sink = %ctx.name,
                    tag = %chunk.tag(),
                    chunk = %chunk.id(),
                    error = %e,
                    written,
                    "a chunk's entries cannot be decoded past this point; its remaining events are dropped"
                );
                broken.push(i);
            }
        }
        let written = tokio::select! {
            biased;
            _ = ctx.abort.cancelled() => return Ok(()),
            written = async {
                out.write_all(&lines).await?;
                out.flush().await
            } => written,
        };
        written.map_err(|source| StdoutError::Write {
            sink: ctx.name.clone(),
            source,
        })?;
        for (i, lease) in leases.into_iter().enumerate() {
            if broken.contains(&i) {
                lease.fail();
            } else {
                lease.ack();
            }
        }
    }
}
