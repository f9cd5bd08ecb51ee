//! The `cloudwatch_logs` sink: events to AWS CloudWatch Logs through PutLogEvents,
//! like Fluent Bit's `cloudwatch_logs` and Fluentd's `cloudwatch_logs` output, with
//! group and stream names from templates over the tag and record fields, groups and
//! streams created when missing, every PutLogEvents limit enforced by nagare itself,
//! and per-event outcomes: events refused for good (too old, too new) go to the
//! sink's dead-letter output, throttling and outages are retried, refused
//! credentials are retried without end.
//!
//! ```yaml
//! sinks:
//!   cloudwatch:
//!     type: cloudwatch_logs
//!     match: "kube.**"
//!     log_group_name: "/eks/{kubernetes.namespace_name}"
//!     log_group_name_fallback: "/eks/unknown"
//!     log_stream_name: "{kubernetes.pod_name}/{kubernetes.container_name}"
//!     log_stream_name_fallback: "{tag}"
//!     log_retention_days: 30
//!     remove_keys: [stream]
//!     aws:
//!       region: us-east-1
//! ```
//!
//! Built on the sink kit ([`nagare_core::sink`]), which batches, retries, splits,
//! dead-letters and acks:
//!
//! - `config.rs`: [`CloudWatchLogsConfig`], its sections and the API's limits.
//! - `request_builder.rs`: events to messages keyed by group and stream (the kit's
//!   encoder), oversize events split or truncated, batches to PutLogEvents inputs
//!   sorted by time; pure.
//! - `service.rs`: the SDK client, group and stream creation (the kit's service).
//! - `retry.rs`: what an answer means for each event.
//! - `sink.rs`: the component, and the kit's driver started with the pieces above.

mod config;
mod request_builder;
mod retry;
mod service;
mod sink;
#[cfg(test)]
mod tests;

pub use config::{BatchConfig, CloudWatchLogsConfig, LogGroupClass, Oversize, limits};
pub use request_builder::{
    Key, OversizeCounts, PutRequest, RequestBuilder, StreamKey, build, restore, split, timestamp,
    truncate,
};
pub use retry::{Failure, auth_hint, classify, outcomes};
pub use service::LogsService;
pub use sink::{CloudWatchLogsSink, CloudWatchLogsSinkError, run, run_with};
