//! The `file` sink: events appended to NDJSON files, one line per event, like
//! Fluentd's `out_file` with the JSON format.
//!
//! - `config.rs`: [`FileConfig`], [`Format`].
//! - `encoder.rs`: the line formats (shared with the `stdout` sink).
//! - `sink.rs`: the loop: lease, encode, append, fsync, ack.

mod config;
pub mod encoder;
mod sink;

pub use config::{FileConfig, Format};
pub use sink::{FileSink, FileSinkError, path_for_tag, run};
