//! Sinks: where the aggregator delivers events.
//!
//! - [`bigquery`]: rows into BigQuery tables named from templates (insertAll with
//!   `insertId`), datasets and partitioned tables created, per-row outcomes.
//! - [`cloudwatch_logs`]: PutLogEvents, names from templates, every API limit
//!   enforced, groups and streams created.
//! - [`elasticsearch`]: the `_bulk` API, per-item outcomes, dead-letter for rejects.
//! - [`file`]: NDJSON files, one per tag if asked.
//! - [`null`]: counts events and drops them.
//! - [`stdout`]: NDJSON to standard output.
//! - [`ndjson`]: the line formats of `file` and `stdout`.
//!
//! A sink that sends batches (`elasticsearch`, `cloudwatch_logs`, `bigquery`, `file`) is built on the sink kit
//! ([`nagare_core::sink`]): its folder holds its encoder, its service (builds a
//! request, pure and testable byte for byte, sends it, classifies the answer) and its
//! words, and the kit takes leases, batches, retries, dead-letters and acks. Every
//! sink marks a lease delivered only once its destination took every event of it;
//! failures are retried under the buffer's retry policy (`nagare_core::retry`); what
//! is refused for good or runs out of retries goes to the sink's dead-letter output
//! (`nagare_core::dead_letter`).

pub mod bigquery;
pub mod cloudwatch_logs;
pub mod elasticsearch;
pub mod file;
pub mod ndjson;
pub mod null;
pub mod stdout;
