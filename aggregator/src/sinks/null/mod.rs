//! The `null` sink: takes every chunk and drops it, counting events and bytes (Fluent
//! Bit's `null`, Vector's `blackhole`). For benchmarks and tests of everything before
//! a sink, and for routes whose events are to be discarded on purpose.
//!
//! - `config.rs`: [`NullConfig`].
//! - `sink.rs`: the loop: lease, count, ack; the totals logged at shutdown and, with
//!   `print_interval`, on that interval.

mod config;
mod sink;
#[cfg(test)]
mod tests;

pub use config::NullConfig;
pub use sink::{Counters, NullSink, NullSinkError, Totals, run, run_counted};
