//! The `stdout` sink: events to standard output as NDJSON, one line per event, in
//! the `file` sink's formats (for `kubectl logs`, debugging, and piping into `jq`).
//!
//! - `config.rs`: [`StdoutConfig`].
//! - `sink.rs`: the loop: lease a chunk, write its lines in pieces, ack it.
//! - `writer.rs`: the writes themselves, on the blocking pool, resumable where they
//!   stopped.

mod config;
mod sink;
mod writer;

pub use config::StdoutConfig;
pub use sink::{StdoutSink, StdoutSinkError, run, run_to};
