//! The `stdout` sink: events to standard output as NDJSON, one line per event, in
//! the `file` sink's formats (for `kubectl logs`, debugging, and piping into `jq`).
//! Built on the sink kit ([`nagare_core::sink`]), a chunk at a time:
//!
//! - `config.rs`: [`StdoutConfig`].
//! - `encoder.rs`: a line per event.
//! - `service.rs`: pieces of lines written, resumed where a write stopped.
//! - `retry.rs`: what a failed write means (a closed pipe stops the sink).
//! - `sink.rs`: the component, and the kit's driver started with the pieces above.
//! - `writer.rs`: the writes themselves, on the blocking pool, resumable where they
//!   stopped.

mod config;
mod encoder;
mod retry;
mod service;
mod sink;
#[cfg(test)]
mod tests;
mod writer;

pub use config::StdoutConfig;
pub use sink::{PIECE, StdoutSink, StdoutSinkError, run, run_to};
