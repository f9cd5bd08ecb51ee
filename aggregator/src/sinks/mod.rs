//! Sinks: where the aggregator delivers events.
//!
//! - [`elasticsearch`]: the `_bulk` API, per-item outcomes, dead-letter for rejects.
//! - [`file`]: NDJSON files, one per tag if asked.
//! - [`null`]: counts events and drops them.
//! - [`stdout`]: NDJSON to standard output.
//! - [`ndjson`]: the line formats of `file` and `stdout`.
//!
//! Every sink has the same shape: it takes leases from its buffer, batches their
//! events, builds a request (pure, testable byte for byte), sends it, and classifies
//! the outcome; it acks a lease only once its destination took every event of it.
//! Failures are retried under the buffer's retry policy (`nagare_core::retry`);
//! what is refused for good or runs out of retries goes to the sink's dead-letter
//! output (`nagare_core::dead_letter`).

pub mod elasticsearch;
pub mod file;
pub mod ndjson;
pub mod null;
pub mod stdout;
