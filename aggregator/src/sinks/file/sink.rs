//! The `file` sink: the kit's driver ([`nagare_core::sink`]) with this sink's encoder
//! (`encoder.rs`: a chunk's lines, keyed by file) and service (`service.rs`: append
//! and fsync). A batch is up to [`BATCH_CHUNKS`] chunks' lines of one file, and up to
//! [`BATCH_BYTES`], taken as soon as the buffer has nothing more ready; its chunks are
//! acked once it is written and fsynced. A failed append is retried under the
//! buffer's retry policy while the leases stay held, so the buffer pushes back on the
//! sources; once the retries run out, the lines not written go to the dead-letter
//! output with the last error, and the sink goes on.

use std::time::Duration;

use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use nagare_core::sink::{self, BatchLimits, Words};

use super::config::FileConfig;
use super::encoder::FileEncoder;
use super::service::FileService;

/// Most chunks (items: a chunk's lines, or its runs of lines around an entry not
/// written) in one batch.
pub const BATCH_CHUNKS: usize = 256;
/// Bytes of lines past which a batch is written. A batch is acked only once all of it
/// is written and fsynced, so a crash in between writes it again after the restart:
/// this bounds those copies (to this plus one chunk) while still fsyncing about once
/// per MiB.
pub const BATCH_BYTES: usize = 1024 * 1024;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum FileSinkError {
    /// A setting is not usable.
    #[error("file sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
}

/// The `file` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct FileSink;

impl SinkComponent for FileSink {
    const TYPE: &'static str = "file";
    type Config = FileConfig;
    type Error = FileSinkError;

    fn validate(config: &FileConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(config: FileConfig, ctx: SinkContext) -> Result<(), FileSinkError> {
        run(config, ctx).await
    }
}

/// What the driver logs for this sink.
const WORDS: Words = Words {
    kind: "file",
    rejected: "lines were refused for good; wrote them to the dead-letter output",
    retry_some: "some lines were not appended; will try again",
    retry_all: "cannot append to the file; will try again (check the folder's permissions and free space)",
    split: "an append was refused as a whole; splitting it",
};

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled.
pub async fn run(config: FileConfig, ctx: SinkContext) -> Result<(), FileSinkError> {
    config.validate().map_err(|invalid| FileSinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    })?;
    // One worker whatever `flush_thread_count` says: two would append batches of one
    // file in either order, and lines keep the order of their chunks in the buffer.
    let workers = vec![(FileEncoder::new(&config), FileService::new())];
    let limits = BatchLimits {
        max_events: BATCH_CHUNKS,
        max_bytes: BATCH_BYTES,
        max_span: None,
        timeout: Duration::ZERO,
        chunk_at_a_time: false,
    };
    sink::run(&ctx, limits, WORDS, workers).await;
    Ok(())
}
