//! The `elasticsearch` sink: events to Elasticsearch or OpenSearch through `_bulk`,
//! like Fluentd's `out_elasticsearch` (daily `logstash-YYYY.MM.DD` indices,
//! `@timestamp`, optional tag key), with per-event outcomes: events refused for now
//! are sent again under the buffer's retry policy, events refused for good (and
//! events whose retries ran out) go to the sink's dead-letter output.
//!
//! Built on the sink kit ([`nagare_core::sink`]), which batches, retries, splits,
//! dead-letters and acks:
//!
//! - `config.rs`: [`ElasticsearchConfig`] and its sections.
//! - `request_builder.rs`: events to NDJSON items (the kit's encoder), items to
//!   (gzipped) bodies; pure.
//! - `service.rs`: the HTTP client, endpoints in turn (the kit's service).
//! - `auth.rs`: AWS SigV4 signing for Amazon OpenSearch Service and Serverless.
//! - `retry.rs`: what an answer means for each event.
//! - `stats.rs`: `_bulk` requests and items by status class, for `/metrics`.
//! - `sink.rs`: the component, and the kit's driver started with the pieces above.

mod auth;
mod config;
mod request_builder;
mod retry;
mod service;
mod sink;
mod stats;
#[cfg(test)]
mod tests;

pub use auth::{AwsSigner, Scope, SignError, auth_hint, host_header, sign};
pub use config::{BatchConfig, ElasticsearchConfig, IndexTarget, OpType};
pub use request_builder::{BulkRequest, EncodedItem, RequestBuilder, build, format_period};
pub use retry::{classify, classify_item, error_reason};
pub use service::{BulkResponse, BulkService, PostError, SendError};
pub use sink::{ElasticsearchSink, ElasticsearchSinkError, run};
pub use stats::BulkStats;
