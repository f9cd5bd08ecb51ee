//! Sinks: where the aggregator delivers events.
//!
//! - [`elasticsearch`]: the `_bulk` API, per-item outcomes, dead-letter for rejects.
//! - [`file`]: NDJSON files, one per tag if asked.
//! - [`stdout`]: NDJSON to standard output.
//! - [`dead_letter`]: the NDJSON file where a sink writes the events its destination
//!   refused for good.
//!
//! Every sink has the same shape: it takes leases from its buffer, batches their
//! events, builds a request (pure, testable byte for byte), sends it, and classifies
//! the outcome; it acks a lease only once its destination took every event of it.

pub mod dead_letter;
pub mod elasticsearch;
pub mod file;
pub mod stdout;
