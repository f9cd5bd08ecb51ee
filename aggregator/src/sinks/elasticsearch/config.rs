//! The `elasticsearch` sink's config.
//!
//! ```yaml
//! sinks:
//!   es:
//!     type: elasticsearch
//!     match: "kube.**"
//!     endpoints: ["http://es-0.es:9200", "http://es-1.es:9200"]
//!     logstash_format: true          # daily indices logstash-YYYY.MM.DD (the default)
//!     logstash_prefix: logstash
//!     logstash_dateformat: "%Y.%m.%d"
//!     user: nagare
//!     password: ${ES_PASSWORD}
//!     compress: true
//!     batch: { max_events: 1000, max_bytes: 5MiB, timeout: 1s }
//!     request_timeout: 30s
//!     op_type: index
//!     include_tag_key: false
//!     tag_key: tag
//!     id_key: line_id               # e.g. the tail source's event_id_key
//!     remove_keys: [line_id]
//! ```
//!
//! Amazon OpenSearch Service signs every request with SigV4 instead of `user` and
//! `password`, with the CloudWatch sink's `aws:` block (one credentials chain) and
//! the service signed for:
//!
//! ```yaml
//!     endpoints: ["https://search-logs-abc123.eu-west-1.es.amazonaws.com"]
//!     aws:
//!       region: eu-west-1
//!       service: es                  # es: a managed domain; aoss: Serverless
//!       role_arn: arn:aws:iam::123456789012:role/nagare   # optional
//! ```
//!
//! Retries (`retry_wait`, `retry_max_interval`, `retry_timeout`, ...) and the number
//! of requests in flight (`flush_thread_count`) are the sink's `buffer:` settings;
//! where refused events go is its `dead_letter:` output.

use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration, Secret};
use nagare_core::sink::BatchLimits;
use serde::Deserialize;

use crate::aws::{AwsConfig, AwsService};

/// Ships events to Elasticsearch (or OpenSearch) through the `_bulk` API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs of the cluster's nodes (`http://es-0:9200`), used round robin; at
    /// least one. A path after the host (a proxy's prefix) is kept.
    pub endpoints: Vec<String>,
    /// A fixed index to write every event to. Unset: daily indices
    /// (`logstash_format`).
    #[serde(default)]
    pub index: Option<String>,
    /// Write to `<logstash_prefix>-<event date>` indices. Defaults to true when
    /// `index` is unset.
    #[serde(default)]
    pub logstash_format: Option<bool>,
    /// The daily indices' prefix.
    #[serde(default = "default_logstash_prefix")]
    pub logstash_prefix: String,
    /// The daily indices' date, strftime-style, from the event time in UTC.
    #[serde(default = "default_logstash_dateformat")]
    pub logstash_dateformat: String,
    /// User for HTTP basic authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// Password for HTTP basic authentication.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Gzip request bodies.
    #[serde(default = "default_compress")]
    pub compress: bool,
    /// How events are grouped into `_bulk` requests.
    #[serde(default)]
    pub batch: BatchConfig,
    /// How long one `_bulk` request may take before it is abandoned and retried.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// The bulk action: `index` (a re-sent event overwrites itself) or `create` (a
    /// re-sent event is refused with 409, which counts as stored; required by data
    /// streams).
    #[serde(default)]
    pub op_type: OpType,
    /// A record field (dotted path) whose value becomes the document `_id`. Unset,
    /// and for a record without that field: the id is the chunk id and the event's
    /// position in it, so a chunk sent twice never duplicates documents.
    #[serde(default)]
    pub id_key: Option<String>,
    /// Top-level record fields left out of the document (as Fluentd's
    /// fluent-plugin-elasticsearch `remove_keys`), e.g. the field `id_key` reads, so
    /// that it is not indexed as well. `id_key` still sees them.
    #[serde(default)]
    pub remove_keys: Vec<String>,
    /// Add the event's tag to each document.
    #[serde(default)]
    pub include_tag_key: bool,
    /// The field the tag goes in when `include_tag_key` is set.
    #[serde(default = "default_tag_key")]
    pub tag_key: String,
    /// Sign every request with AWS SigV4 (Amazon OpenSearch Service, managed `es`
    /// or Serverless `aoss`): region, credentials and the service signed for. The
    /// same block and credentials chain as the `cloudwatch_logs` sink's.
    #[serde(default)]
    pub aws: Option<AwsConfig>,
}

/// The `batch:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one request.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes of NDJSON (before compression) in one request; a single larger
    /// event is sent alone.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How long a partial batch waits for more events before it is sent.
    #[serde(default = "default_batch_timeout")]
    pub timeout: HumanDuration,
}

impl BatchConfig {
    /// The sink kit's limits: by events, bytes and timeout (no span limit: an index
    /// takes events of any time); batches span chunks.
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.max_events,
            max_bytes: self.max_bytes.as_usize(),
            max_span: None,
            timeout: self.timeout.0,
            chunk_at_a_time: false,
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_batch_timeout(),
        }
    }
}

/// The bulk action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpType {
    /// Create or replace the document.
    #[default]
    Index,
    /// Create the document; an existing one with the same `_id` is kept (409).
    Create,
}

impl OpType {
    /// The action's name in the bulk body.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpType::Index => "index",
            OpType::Create => "create",
        }
    }
}

/// Which index an event goes to, resolved from `index` / `logstash_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexTarget {
    /// Always this index.
    Fixed(String),
    /// `<prefix>-<strftime(format, event time in UTC)>`.
    Daily {
        /// The prefix.
        prefix: String,
        /// The strftime format of the date part.
        format: String,
    },
}

fn default_logstash_prefix() -> String {
    "logstash".to_string()
}

fn default_logstash_dateformat() -> String {
    "%Y.%m.%d".to_string()
}

fn default_compress() -> bool {
    true
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_tag_key() -> String {
    "tag".to_string()
}

fn default_max_events() -> usize {
    1000
}

fn default_max_bytes() -> ByteSize {
    ByteSize(5 * 1024 * 1024)
}

fn default_batch_timeout() -> HumanDuration {
    HumanDuration::secs(1)
}

/// Why `name` cannot be an Elasticsearch index name, if it cannot.
pub fn index_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an index name cannot be empty".into());
    }
    if name != name.to_lowercase() {
        return Some(format!("index name `{name}` must be lowercase"));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ' ' | ',' | '#' | ':'
        )
    }) {
        return Some(format!("index name `{name}` must not contain `{c}`"));
    }
    if name.starts_with(['-', '_', '+']) || name == "." || name == ".." {
        return Some(format!(
            "index name `{name}` must not start with `-`, `_` or `+`, nor be `.` or `..`"
        ));
    }
    if name.len() > 255 {
        return Some(format!("index name `{name}` is longer than 255 bytes"));
    }
    None
}

impl ElasticsearchConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.endpoints.is_empty() {
            return Err(Invalid::new(
                "endpoints",
                "give at least one endpoint, like `http://elasticsearch:9200`",
            ));
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            match reqwest::Url::parse(e) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    if !url.username().is_empty() || url.password().is_some() {
                        return Err(Invalid::new(
                            format!("endpoints.{i}"),
                            "put credentials in `user` and `password`, not in the endpoint URL",
                        ));
                    }
                }
                _ => {
                    return Err(Invalid::new(
                        format!("endpoints.{i}"),
                        format!("`{e}` is not an http:// or https:// URL with a host"),
                    ));
                }
            }
        }
        self.index_target()?;
        if self.password.is_some() && self.user.is_none() {
            return Err(Invalid::new("password", "a password needs a `user`"));
        }
        if self.batch.max_events == 0 {
            return Err(Invalid::new("batch.max_events", "must be at least 1"));
        }
        if self.batch.max_bytes.0 == 0 {
            return Err(Invalid::new("batch.max_bytes", "must be more than 0"));
        }
        if self.request_timeout.0.is_zero() {
            return Err(Invalid::new("request_timeout", "must be more than 0"));
        }
        if self.include_tag_key && (self.tag_key.is_empty() || self.tag_key == "@timestamp") {
            return Err(Invalid::new(
                "tag_key",
                "must be a field name other than `@timestamp`",
            ));
        }
        for (i, key) in self.remove_keys.iter().enumerate() {
            if key.is_empty() {
                return Err(Invalid::new(
                    format!("remove_keys.{i}"),
                    "an empty key; name a top-level field of the records",
                ));
            }
            if self.include_tag_key && *key == self.tag_key {
                return Err(Invalid::new(
                    format!("remove_keys.{i}"),
                    format!(
                        "`{key}` is `tag_key`, which `include_tag_key` adds to every document; remove one of the two"
                    ),
                ));
            }
        }
        if self.id_key.as_deref() == Some("") {
            return Err(Invalid::new(
                "id_key",
                "must not be empty; remove it to use generated ids",
            ));
        }
        self.validate_aws()
    }

    /// The `aws:` block, and what Serverless refuses.
    fn validate_aws(&self) -> Result<(), Invalid> {
        let Some(aws) = &self.aws else {
            return Ok(());
        };
        aws.validate("aws")?;
        if self.user.is_some() {
            return Err(Invalid::new(
                "user",
                "requests are signed with AWS SigV4 (`aws:`), which replaces basic authentication: remove `user` and `password`, or `aws:`",
            ));
        }
        if self.serverless() && self.id_key.is_some() {
            return Err(Invalid::new(
                "id_key",
                format!(
                    "OpenSearch Serverless (`aws.service: aoss`) refuses a document id in {} actions (\"Document ID is not supported\"), so no `_id` is sent: remove `id_key`",
                    self.op_type.as_str()
                ),
            ));
        }
        Ok(())
    }

    /// The service requests are signed for, when they are signed.
    pub fn aws_service(&self) -> Option<AwsService> {
        self.aws.as_ref().map(|a| a.service.unwrap_or_default())
    }

    /// Whether the destination is OpenSearch Serverless (`aws.service: aoss`): no
    /// `_id` in actions, and no call it does not serve (`GET /`, `_refresh`).
    pub fn serverless(&self) -> bool {
        self.aws_service() == Some(AwsService::Aoss)
    }

    /// Which index events go to.
    pub fn index_target(&self) -> Result<IndexTarget, Invalid> {
        match (&self.index, self.logstash_format) {
            (Some(_), Some(true)) => Err(Invalid::new(
                "logstash_format",
                "set either `index` (one fixed index) or `logstash_format: true` (daily indices), not both",
            )),
            (Some(index), _) => match index_name_problem(index) {
                Some(problem) => Err(Invalid::new("index", problem)),
                None => Ok(IndexTarget::Fixed(index.clone())),
            },
            (None, Some(false)) => Err(Invalid::new(
                "logstash_format",
                "with `logstash_format: false`, set `index` to the index to write to",
            )),
            (None, _) => {
                let sample = jiff::Timestamp::from_second(1_700_000_000).unwrap_or_default();
                let date =
                    jiff::fmt::strtime::format(&self.logstash_dateformat, sample).map_err(|e| {
                        Invalid::new(
                            "logstash_dateformat",
                            format!(
                                "`{}` is not a strftime format: {e}",
                                self.logstash_dateformat
                            ),
                        )
                    })?;
                let name = format!("{}-{date}", self.logstash_prefix);
                if let Some(problem) = index_name_problem(&name) {
                    return Err(Invalid::new(
                        "logstash_prefix",
                        format!("daily indices would be named like `{name}`: {problem}"),
                    ));
                }
                Ok(IndexTarget::Daily {
                    prefix: self.logstash_prefix.clone(),
                    format: self.logstash_dateformat.clone(),
                })
            }
        }
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.0
    }
}
