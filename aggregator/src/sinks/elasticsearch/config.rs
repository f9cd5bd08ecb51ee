//! The `elasticsearch` sink's config.
//!
//! ```yaml
//! sinks:
//!   es:
//!     type: elasticsearch
//!     match: "kube.**"
//!     endpoints: ["https://es-0.es:9200", "https://es-1.es:9200"]
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
//!     pipeline: k8s-logs            # an ingest pipeline
//!     routing_key: kubernetes.pod_name
//!     suppress_type_name: false
//!     api_version: auto             # GET / at start; v6 | v7 | v8 | opensearch
//!     tls:
//!       ca_path: /etc/nagare/es/ca.crt
//!     template:
//!       install: true
//!       name: nagare-logs
//!       ilm_policy: logs-30d
//! ```
//!
//! An index per namespace, and data streams (`index.rs`):
//!
//! ```yaml
//! sinks:
//!   per_namespace:
//!     type: elasticsearch
//!     match: "kube.**"
//!     endpoints: ["http://es-0.es:9200"]
//!     index: "logs-{kubernetes.namespace_name}-%Y.%m.%d"
//!     index_fallback: "logs-unknown-%Y.%m.%d"
//!   streams:
//!     type: elasticsearch
//!     match: "kube.**"
//!     endpoints: ["http://es-0.es:9200"]
//!     mode: data_stream
//!     data_stream: { type: logs, dataset: kubernetes, namespace: "{kubernetes.namespace_name}" }
//!     index_fallback: logs-kubernetes-unknown
//! ```
//!
//! Elastic Cloud instead of `endpoints`, with an API key instead of `user`:
//!
//! ```yaml
//! sinks:
//!   cloud:
//!     type: elasticsearch
//!     cloud_id: ${ES_CLOUD_ID}        # name:base64(host$es_id$kibana_id)
//!     api_key: ${ES_API_KEY}          # the `encoded` value Elasticsearch issues
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
use nagare_core::tls::ClientTlsConfig;
use serde::Deserialize;

use super::index::{DataStreamConfig, IndexTarget, Mode};
use super::template::TemplateConfig;
use super::version::ApiVersion;
use crate::aws::{AwsConfig, AwsService};

/// Ships events to Elasticsearch (or OpenSearch) through the `_bulk` API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs of the cluster's nodes (`http://es-0:9200`), used round robin; at
    /// least one, unless `cloud_id` is set. A path after the host (a proxy's prefix)
    /// is kept.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Elastic Cloud's Cloud ID (`name:base64`, from the deployment's page), instead
    /// of `endpoints`: the deployment's Elasticsearch endpoint is decoded from it
    /// (`https://<es id>.<host>:443`, or the port the id names).
    #[serde(default)]
    pub cloud_id: Option<String>,
    /// An Elasticsearch API key, sent as `Authorization: ApiKey <key>`: the base64
    /// `id:api_key` value Elasticsearch issues (`encoded` in the answer to
    /// `POST /_security/api_key`). Instead of `user`/`password`. Written with nothing
    /// (or an environment variable set to nothing) it is empty, and refused.
    #[serde(default, deserialize_with = "Secret::written")]
    pub api_key: Option<Secret>,
    /// Which API the cluster speaks: `auto` (ask it with `GET /` at start; where
    /// that is refused, as for Serverless or users without the `monitor`
    /// privilege, go on as with `v8`), `v6`, `v7`, `v8` or `opensearch`.
    #[serde(default)]
    pub api_version: ApiVersion,
    /// TLS to the cluster: a CA file (otherwise the system's trust store), a
    /// client certificate, the name to check, or no verification (tests only).
    #[serde(default)]
    pub tls: Option<ClientTlsConfig>,
    /// An index template installed at start, so that the first documents get
    /// Kibana-ready types (`@timestamp` a date, Kubernetes metadata keywords).
    #[serde(default)]
    pub template: Option<TemplateConfig>,
    /// The index to write to: a name, or a template over the tag and record fields
    /// (`{kubernetes.namespace_name}`, `{tag}`, `{tag_parts[N]}`) with strftime
    /// conversions of the event time in UTC in its text (`%Y.%m.%d`; `%%` for a `%`).
    /// Rendered names are lower-cased. Unset: daily indices (`logstash_format`).
    #[serde(default)]
    pub index: Option<String>,
    /// Write to `<logstash_prefix>-<event date>` indices. Defaults to true when
    /// `index` is unset.
    #[serde(default)]
    pub logstash_format: Option<bool>,
    /// The daily indices' prefix; may be a template like `index`.
    #[serde(default = "default_logstash_prefix")]
    pub logstash_prefix: String,
    /// The daily indices' date, strftime-style, from the event time in UTC.
    #[serde(default = "default_logstash_dateformat")]
    pub logstash_dateformat: String,
    /// User for HTTP basic authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// Password for HTTP basic authentication; not empty (written with nothing, or
    /// an environment variable set to nothing, it is empty, and refused).
    #[serde(default, deserialize_with = "Secret::written")]
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
    /// The bulk action: `index` (a re-sent event overwrites itself), `create` (a
    /// re-sent event is refused with 409, which counts as stored; the only one data
    /// streams take), `update` (the document of `id_key` gets the record's fields) or
    /// `upsert` (the same, creating it when missing). Unset: `index`, or `create`
    /// with `mode: data_stream`.
    #[serde(default)]
    pub op_type: Option<OpType>,
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
    /// Which field names have their dots written as `_`: `labels` (the keys of
    /// `kubernetes.labels`, `annotations`, `namespace_labels` and
    /// `namespace_annotations`, as Fluentd's kubernetes_metadata `de_dot`: a label
    /// `app.kubernetes.io/name` beside a label `app` would otherwise be refused by
    /// Elasticsearch, which reads the dots as objects), `all` (every field name at
    /// any depth, as Fluent Bit's `Replace_Dots On`) or `none`.
    #[serde(default)]
    pub replace_dots: ReplaceDots,
    /// Add the event's tag to each document.
    #[serde(default)]
    pub include_tag_key: bool,
    /// The field the tag goes in when `include_tag_key` is set.
    #[serde(default = "default_tag_key")]
    pub tag_key: String,
    /// The index (or data stream) for an event whose `index` template cannot name
    /// one: a field is missing, or the rendered name is not one Elasticsearch takes.
    /// A template too. Unset: such events go to the dead-letter output.
    #[serde(default)]
    pub index_fallback: Option<String>,
    /// An ingest pipeline every document goes through (`"pipeline"` in each
    /// `index`/`create` action).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// A record field (dotted path) whose value becomes the action's `routing` (the
    /// shard key); events without it are routed by `_id`.
    #[serde(default)]
    pub routing_key: Option<String>,
    /// `index` (indices, the default) or `data_stream` (`<type>-<dataset>-<namespace>`
    /// from `data_stream`, `create` actions only).
    #[serde(default)]
    pub mode: Mode,
    /// With `mode: data_stream`: the data stream's name parts, each a template
    /// (defaults `logs`, `generic`, `default`).
    #[serde(default)]
    pub data_stream: Option<DataStreamConfig>,
    /// Never send `_type` in actions, even to an Elasticsearch 6 cluster (which
    /// gets `"_type":"_doc"` otherwise).
    #[serde(default)]
    pub suppress_type_name: bool,
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

/// Which field names have their dots written as `_` ([`ElasticsearchConfig::replace_dots`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplaceDots {
    /// The keys of the Kubernetes label and annotation maps under `kubernetes`.
    #[default]
    Labels,
    /// Every field name, at any depth.
    All,
    /// None: dotted names go as they are (Elasticsearch reads them as objects).
    None,
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
    /// Merge the record into the existing document of that `_id` (`{"doc": ...}`).
    Update,
    /// Merge, or create the document when there is none (`"doc_as_upsert": true`).
    Upsert,
}

impl OpType {
    /// The action's name in the bulk body.
    pub fn as_str(&self) -> &'static str {
        match self {
            OpType::Index => "index",
            OpType::Create => "create",
            OpType::Update | OpType::Upsert => "update",
        }
    }

    /// Whether the document goes as a partial update (`{"doc": ...}`).
    pub fn is_update(&self) -> bool {
        matches!(self, OpType::Update | OpType::Upsert)
    }

    /// As written in the config.
    pub fn config_name(&self) -> &'static str {
        match self {
            OpType::Upsert => "upsert",
            other => other.as_str(),
        }
    }
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

impl ElasticsearchConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        super::client::validate(self)?;
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
        self.validate_actions()?;
        if self.password.is_some() && self.user.is_none() {
            return Err(Invalid::new("password", "a password needs a `user`"));
        }
        if self.password.as_ref().is_some_and(Secret::is_empty) {
            return Err(Invalid::new(
                "password",
                format!("the password is empty{}", Secret::EMPTY_HINT),
            ));
        }
        if let Some(template) = &self.template {
            template.validate(self)?;
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
        if self.api_key.is_some() {
            return Err(Invalid::new(
                "api_key",
                "requests are signed with AWS SigV4 (`aws:`), which replaces API keys: remove `api_key`, or `aws:`",
            ));
        }
        if self.cloud_id.is_some() {
            return Err(Invalid::new(
                "aws",
                "`cloud_id` is Elastic Cloud, `aws:` Amazon OpenSearch Service: keep the one the cluster is on",
            ));
        }
        if self.serverless() && self.id_key.is_some() {
            return Err(Invalid::new(
                "id_key",
                format!(
                    "OpenSearch Serverless (`aws.service: aoss`) refuses a document id in {} actions (\"Document ID is not supported\"), so no `_id` is sent: remove `id_key`",
                    self.op_type().config_name()
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

    /// Which index events go to (`index.rs`).
    pub fn index_target(&self) -> Result<IndexTarget, Invalid> {
        super::index::target(self)
    }

    /// The bulk action: `op_type`, or its default for the `mode`.
    pub fn op_type(&self) -> OpType {
        match (self.op_type, self.mode) {
            (Some(op), _) => op,
            (None, Mode::DataStream) => OpType::Create,
            (None, Mode::Index) => OpType::Index,
        }
    }

    /// Checks `op_type`, `pipeline` and `routing_key` against the rest.
    fn validate_actions(&self) -> Result<(), Invalid> {
        let op = self.op_type();
        if self.mode == Mode::DataStream && op != OpType::Create {
            return Err(Invalid::new(
                "op_type",
                format!(
                    "a data stream takes only `create` actions, not `{}`; remove `op_type` or set it to `create`",
                    op.config_name()
                ),
            ));
        }
        if op.is_update() && self.id_key.is_none() {
            return Err(Invalid::new(
                "op_type",
                format!(
                    "`{}` changes the document whose `_id` is in `id_key`; set `id_key` to the record field holding it",
                    op.config_name()
                ),
            ));
        }
        if let Some(pipeline) = &self.pipeline {
            if pipeline.is_empty() || pipeline.contains(char::is_whitespace) {
                return Err(Invalid::new(
                    "pipeline",
                    "name an ingest pipeline (no spaces), or remove `pipeline`",
                ));
            }
            if op.is_update() {
                return Err(Invalid::new(
                    "pipeline",
                    format!(
                        "Elasticsearch runs ingest pipelines on `index` and `create` only, not on `{}`",
                        op.config_name()
                    ),
                ));
            }
        }
        if self.routing_key.as_deref() == Some("") {
            return Err(Invalid::new(
                "routing_key",
                "must not be empty; name the record field whose value routes the document, or remove it",
            ));
        }
        Ok(())
    }

    /// The per-request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout.0
    }
}
