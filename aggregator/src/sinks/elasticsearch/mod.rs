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
//! - `index.rs`: where events go as the config says it (a fixed index, daily
//!   indices, an index template, a data stream) and Elasticsearch's naming rules.
//! - `namer.rs`: each event's index from that, fast, with `index_fallback`.
//! - `client.rs`: endpoints (or `cloud_id`, decoded by `cloud.rs`), the HTTP client
//!   with the `tls:` block, credentials (basic auth or `api_key`).
//! - `version.rs`: `api_version` and what `GET /` says ([`Cluster`]).
//! - `template.rs`: the `template:` section and the index template it installs.
//! - `startup.rs`: before the first `_bulk`: version detection, template install.
//! - `request_builder.rs`: events to NDJSON items (the kit's encoder), items to
//!   (gzipped) bodies; pure.
//! - `service.rs`: the HTTP client, endpoints in turn (the kit's service).
//! - `auth.rs`: AWS SigV4 signing for Amazon OpenSearch Service and Serverless.
//! - `retry.rs`: what an answer means for each event.
//! - `stats.rs`: `_bulk` requests and items by status class, for `/metrics`.
//! - `sink.rs`: the component, and the kit's driver started with the pieces above.

mod auth;
mod client;
mod cloud;
mod config;
mod index;
mod namer;
mod request_builder;
mod retry;
mod service;
mod sink;
mod startup;
mod stats;
mod template;
#[cfg(test)]
mod tests;
mod version;

pub use auth::{AwsSigner, Scope, SignError, auth_hint, host_header, sign};
pub use client::{Auth, ClientError};
pub use cloud::decode as decode_cloud_id;
pub use config::{BatchConfig, ElasticsearchConfig, OpType, ReplaceDots};
pub use index::{
    DataStreamConfig, IndexTarget, Mode, data_stream_part_problem, index_name_problem,
};
pub use namer::{IndexNamer, Named, format_period};
pub use request_builder::{
    BulkRequest, EncodedItem, GZIP_LEVEL, RequestBuilder, build, build_gzipped,
};
pub use retry::{classify, classify_item, error_reason};
pub use service::{BulkResponse, BulkService, PostError, SendError};
pub use sink::{ElasticsearchSink, ElasticsearchSinkError, run};
pub use stats::BulkStats;
pub use template::{TemplateConfig, TemplateRequest, index_patterns};
pub use version::{ApiVersion, Cluster};
