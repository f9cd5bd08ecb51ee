//! The `file` sink: events appended to NDJSON files, one line per event, like
//! Fluentd's `out_file` with the JSON format. Built on the sink kit
//! ([`nagare_core::sink`]), which batches, retries, dead-letters and acks:
//!
//! - `config.rs`: [`FileConfig`] (and the line [`Format`] of [`ndjson`](super::ndjson)).
//! - `encoder.rs`: a chunk's events to lines, keyed by the file they go to.
//! - `service.rs`: a batch appended to its file and fsynced.
//! - `retry.rs`: what a failed append means (retried, then dead-lettered).
//! - `sink.rs`: the component, and the kit's driver started with the pieces above.

mod config;
mod encoder;
mod retry;
mod service;
mod sink;
#[cfg(test)]
mod tests;

pub use config::{FileConfig, Format};
pub use encoder::{FileEncoder, FileKey, path_for_tag};
pub use service::FileService;
pub use sink::{BATCH_BYTES, BATCH_CHUNKS, FileSink, FileSinkError, run};
