//! The `elasticsearch` sink: events to Elasticsearch or OpenSearch through `_bulk`,
//! like Fluentd's `out_elasticsearch` (daily `logstash-YYYY.MM.DD` indices,
//! `@timestamp`, optional tag key), with per-event outcomes: events refused for now
//! are sent again, events refused for good go to a dead-letter file.
//!
//! - `config.rs`: [`ElasticsearchConfig`] and its sections.
//! - `request_builder.rs`: events to NDJSON items, items to (gzipped) bodies; pure.
//! - `service.rs`: the HTTP client, endpoints in turn.
//! - `retry.rs`: what an answer means for each event.
//! - `sink.rs`: the loop: lease, batch, send, resolve, ack.

mod config;
mod request_builder;
mod retry;
mod service;
mod sink;
#[cfg(test)]
mod tests;

pub use config::{BatchConfig, ElasticsearchConfig, IndexTarget, OpType, RetryConfig};
pub use request_builder::{BulkRequest, EncodedItem, RequestBuilder, format_period, gzip};
pub use retry::{BatchOutcome, ItemOutcome, classify, classify_item, error_reason};
pub use service::{BulkResponse, BulkService, SendError};
pub use sink::{ElasticsearchError, run};
