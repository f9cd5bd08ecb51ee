//! The `stdout` sink: events to standard output as NDJSON, one line per event, in
//! the `file` sink's formats (for `kubectl logs`, debugging, and piping).
//!
//! - `config.rs`: [`StdoutConfig`].
//! - `sink.rs`: the loop: lease, encode, write, flush, ack.

mod config;
mod sink;

pub use config::StdoutConfig;
pub use sink::{StdoutError, StdoutSink, run, run_to};
