//! The `cloudwatch_logs` sink's config.
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
//!     auto_create_group: true
//!     auto_create_stream: true
//!     log_retention_days: 30
//!     log_group_class: STANDARD
//!     log_group_tags: { team: platform }
//!     remove_keys: [stream]
//!     max_event_bytes: 262118
//!     oversize: split
//!     request_timeout: 30s
//!     batch: { max_events: 10000, max_bytes: 1048576, timeout: 5s }
//!     aws:
//!       region: us-east-1
//! ```
//!
//! Retries and the number of PutLogEvents calls in flight (`flush_thread_count`) are
//! the sink's `buffer:` settings; where refused events go is its `dead_letter:`.

use std::collections::BTreeMap;
use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration};
use nagare_core::sink::BatchLimits;
use nagare_core::template::Template;
use serde::Deserialize;

use crate::aws::AwsConfig;

/// PutLogEvents' limits.
pub mod limits {
    /// Most events in one call.
    pub const MAX_EVENTS: usize = 10_000;
    /// Most bytes in one call, counted as UTF-8 message bytes + [`EVENT_OVERHEAD`]
    /// per event.
    pub const MAX_BYTES: usize = 1_048_576;
    /// What CloudWatch Logs counts per event besides its message.
    pub const EVENT_OVERHEAD: usize = 26;
    /// Most bytes of one event, overhead included.
    pub const MAX_EVENT_SIZE: usize = 262_144;
    /// Longest span of event times in one call (24 h); nagare keeps a second under
    /// it, so that times rounded to milliseconds never reach it.
    pub const MAX_SPAN_SECS: u64 = 24 * 3600 - 1;
    /// The retention values CloudWatch Logs accepts, in days.
    pub const RETENTION_DAYS: [u32; 22] = [
        1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
        2922, 3288, 3653,
    ];
}

/// Ships events to AWS CloudWatch Logs through PutLogEvents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchLogsConfig {
    /// The log group of each event, a template over the tag and record fields
    /// (`/eks/{kubernetes.namespace_name}`, `{tag_parts[1]}`).
    pub log_group_name: String,
    /// The group when `log_group_name` names a field an event lacks, or renders a
    /// name CloudWatch refuses. Unset: such events go to the dead-letter output.
    #[serde(default)]
    pub log_group_name_fallback: Option<String>,
    /// The log stream of each event, a template (`{kubernetes.pod_name}`). Either
    /// this or `log_stream_prefix`.
    #[serde(default)]
    pub log_stream_name: Option<String>,
    /// The stream when `log_stream_name` cannot be rendered or is illegal. Unset:
    /// such events go to the dead-letter output.
    #[serde(default)]
    pub log_stream_name_fallback: Option<String>,
    /// Fluent Bit's option: the stream is this prefix followed by the tag. Either
    /// this or `log_stream_name`.
    #[serde(default)]
    pub log_stream_prefix: Option<String>,
    /// Create a missing log group (with the settings below) and send again.
    #[serde(default = "yes")]
    pub auto_create_group: bool,
    /// Create a missing log stream and send again.
    #[serde(default = "yes")]
    pub auto_create_stream: bool,
    /// Retention set on the groups this sink creates, in days; one of the values
    /// CloudWatch Logs allows (1, 3, 5, 7, 14, 30, ... 3653). Unset: never expire.
    #[serde(default)]
    pub log_retention_days: Option<u32>,
    /// The class of the groups this sink creates.
    #[serde(default)]
    pub log_group_class: Option<LogGroupClass>,
    /// Tags set on the groups this sink creates.
    #[serde(default)]
    pub log_group_tags: BTreeMap<String, String>,
    /// A KMS key (ARN) that encrypts the groups this sink creates.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Send this top-level field's text as the message instead of the record as
    /// JSON (Fluent Bit's `log_key`). A record without it is sent as JSON.
    #[serde(default)]
    pub log_key: Option<String>,
    /// Top-level fields left out of the JSON message.
    #[serde(default)]
    pub remove_keys: Vec<String>,
    /// Most bytes of one event's message (UTF-8). CloudWatch Logs takes at most
    /// 262,144 bytes per event including a 26-byte overhead, hence the default.
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// What becomes of a message over `max_event_bytes`.
    #[serde(default)]
    pub oversize: Oversize,
    /// The CloudWatch Logs endpoint (a VPC endpoint, an emulator). Unset: the
    /// region's.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How long one call may take before it is abandoned and retried.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// How events are grouped into PutLogEvents calls (at most the API's limits).
    #[serde(default)]
    pub batch: BatchConfig,
    /// Region and credentials.
    #[serde(default)]
    pub aws: AwsConfig,
}

/// The `batch:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one call (at most 10,000).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes in one call, counted as CloudWatch does: message bytes + 26 per
    /// event (at most 1,048,576).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How long a partial batch waits for more events before it is sent.
    #[serde(default = "default_batch_timeout")]
    pub timeout: HumanDuration,
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

impl BatchConfig {
    /// The sink kit's limits, with the 24-hour span of one call.
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.max_events,
            max_bytes: self.max_bytes.as_usize(),
            max_span: Some(Duration::from_secs(limits::MAX_SPAN_SECS)),
            timeout: self.timeout.0,
            chunk_at_a_time: false,
        }
    }
}

/// A log group class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LogGroupClass {
    /// Every feature.
    #[serde(rename = "STANDARD")]
    Standard,
    /// Cheaper ingestion, fewer features.
    #[serde(rename = "INFREQUENT_ACCESS")]
    InfrequentAccess,
}

impl LogGroupClass {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogGroupClass::Standard => "STANDARD",
            LogGroupClass::InfrequentAccess => "INFREQUENT_ACCESS",
        }
    }
}

/// What becomes of a message over `max_event_bytes`. Never dropped in silence.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Oversize {
    /// Sent as several events, each ending in ` [split i/n]`.
    #[default]
    Split,
    /// Cut, ending in ` [truncated N bytes]`.
    Truncate,
    /// Written to the dead-letter output whole.
    DeadLetter,
}

fn yes() -> bool {
    true
}

fn default_max_event_bytes() -> usize {
    limits::MAX_EVENT_SIZE - limits::EVENT_OVERHEAD
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_max_events() -> usize {
    limits::MAX_EVENTS
}

fn default_max_bytes() -> ByteSize {
    ByteSize(limits::MAX_BYTES as u64)
}

fn default_batch_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}

/// The config's templates, parsed.
#[derive(Debug, Clone)]
pub struct Templates {
    /// `log_group_name`.
    pub group: Template,
    /// `log_group_name_fallback`.
    pub group_fallback: Option<Template>,
    /// `log_stream_name`, or `log_stream_prefix` + `{tag}`.
    pub stream: Template,
    /// `log_stream_name_fallback`.
    pub stream_fallback: Option<Template>,
}

fn template(key: &str, source: &str) -> Result<Template, Invalid> {
    Template::parse(source).map_err(|e| Invalid::new(key, e.to_string()))
}

impl CloudWatchLogsConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.templates()?;
        if self.batch.max_events == 0 || self.batch.max_events > limits::MAX_EVENTS {
            return Err(Invalid::new(
                "batch.max_events",
                format!(
                    "{} is outside 1..={}, PutLogEvents' limit of events per call",
                    self.batch.max_events,
                    limits::MAX_EVENTS
                ),
            ));
        }
        let max_bytes = self.batch.max_bytes.as_usize();
        if max_bytes == 0 || max_bytes > limits::MAX_BYTES {
            return Err(Invalid::new(
                "batch.max_bytes",
                format!(
                    "{max_bytes} is outside 1..={}, PutLogEvents' limit of bytes per call (messages + 26 per event)",
                    limits::MAX_BYTES
                ),
            ));
        }
        let most = limits::MAX_EVENT_SIZE - limits::EVENT_OVERHEAD;
        if self.max_event_bytes < 64 || self.max_event_bytes > most {
            return Err(Invalid::new(
                "max_event_bytes",
                format!(
                    "{} is outside 64..={most} (CloudWatch Logs takes 262,144 bytes per event, 26 of them its overhead)",
                    self.max_event_bytes
                ),
            ));
        }
        if let Some(days) = self.log_retention_days
            && !limits::RETENTION_DAYS.contains(&days)
        {
            return Err(Invalid::new(
                "log_retention_days",
                format!(
                    "{days} is not a retention CloudWatch Logs allows; use one of {:?}",
                    limits::RETENTION_DAYS
                ),
            ));
        }
        if self.request_timeout.0.is_zero() {
            return Err(Invalid::new("request_timeout", "must be more than 0"));
        }
        if let Some(url) = &self.endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(Invalid::new(
                "endpoint",
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        if self.log_key.as_deref() == Some("") {
            return Err(Invalid::new(
                "log_key",
                "must not be empty; remove it to send records as JSON",
            ));
        }
        if let Some(i) = self.remove_keys.iter().position(String::is_empty) {
            return Err(Invalid::new(
                format!("remove_keys.{i}"),
                "an empty key; name a top-level field of the records",
            ));
        }
        if self.kms_key_id.as_deref() == Some("") {
            return Err(Invalid::new(
                "kms_key_id",
                "must not be empty; remove it for groups without a KMS key",
            ));
        }
        for (k, v) in &self.log_group_tags {
            if k.is_empty() || k.len() > 128 || v.len() > 256 || k.starts_with("aws:") {
                return Err(Invalid::new(
                    format!("log_group_tags.{k}"),
                    "a tag key is 1-128 characters, not starting with `aws:`; a value at most 256",
                ));
            }
        }
        self.aws.refuse_service("aws", "cloudwatch_logs")?;
        self.aws.validate("aws")
    }

    /// The templates, parsed; errors name the key and the position.
    pub fn templates(&self) -> Result<Templates, Invalid> {
        let group = template("log_group_name", &self.log_group_name)?;
        let group_fallback = self
            .log_group_name_fallback
            .as_deref()
            .map(|s| template("log_group_name_fallback", s))
            .transpose()?;
        let stream = match (&self.log_stream_name, &self.log_stream_prefix) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "log_stream_prefix",
                    "set either `log_stream_name` (a template) or `log_stream_prefix` (prefix + tag), not both",
                ));
            }
            (None, None) => {
                return Err(Invalid::new(
                    "log_stream_name",
                    "set `log_stream_name` (a template like `{kubernetes.pod_name}`) or `log_stream_prefix` (prefix + tag)",
                ));
            }
            (Some(name), None) => template("log_stream_name", name)?,
            (None, Some(prefix)) => {
                let escaped = prefix.replace('{', "{{").replace('}', "}}");
                template("log_stream_prefix", &format!("{escaped}{{tag}}"))?
            }
        };
        let stream_fallback = self
            .log_stream_name_fallback
            .as_deref()
            .map(|s| template("log_stream_name_fallback", s))
            .transpose()?;
        for (key, t) in [
            ("log_group_name", Some(&group)),
            ("log_group_name_fallback", group_fallback.as_ref()),
        ] {
            if let Some(t) = t
                && t.is_constant()
                && let Some(problem) = group_name_problem(t.as_str())
            {
                return Err(Invalid::new(key, problem));
            }
        }
        for (key, t) in [
            ("log_stream_name", Some(&stream)),
            ("log_stream_name_fallback", stream_fallback.as_ref()),
        ] {
            if let Some(t) = t
                && t.is_constant()
                && let Some(problem) = stream_name_problem(t.as_str())
            {
                return Err(Invalid::new(key, problem));
            }
        }
        Ok(Templates {
            group,
            group_fallback,
            stream,
            stream_fallback,
        })
    }
}

/// Why CloudWatch Logs would refuse `name` as a log group name, if it would.
pub fn group_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 512 {
        return Some(format!(
            "log group name `{name}` must be 1 to 512 characters"
        ));
    }
    name.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')))
        .map(|c| {
            format!("log group name `{name}` holds `{c}`; only letters, digits and . - _ / # are allowed")
        })
}

/// Why CloudWatch Logs would refuse `name` as a log stream name, if it would.
pub fn stream_name_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > 512 {
        return Some(format!(
            "log stream name `{name}` must be 1 to 512 characters"
        ));
    }
    name.chars()
        .find(|c| matches!(c, ':' | '*'))
        .map(|c| format!("log stream name `{name}` holds `{c}`, which is not allowed"))
}
