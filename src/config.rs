//! The config file: `sources`, `filters` and `sinks`, each a named component with a
//! `type`, composed from the components' own typed configs.
//!
//! ```yaml
//! data_dir: /var/lib/nagare
//! sources:
//!   containers:
//!     type: tail
//!     paths: [/var/log/containers/*.log]
//! filters:
//!   cluster:
//!     type: record_modifier
//!     match: "kube.**"
//!     records: { cluster: "${CLUSTER_NAME}" }
//! sinks:
//!   aggregators:
//!     type: forward
//!     match: "**"
//!     servers: [{ host: nagare-aggregator, port: 24224 }]
//! ```
//!
//! The set of component kinds is closed: one enum per kind, one variant per
//! component, each wrapping that component's config. `type`, `match`, `buffer` and
//! `secondary` are read here; everything else belongs to the component, which rejects
//! keys it does not know. The `type` is read first and the component's keys go
//! straight to its config ([`Tagged`]), so that an error in them names its line and
//! key.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use nagare_core::buffer::BufferConfig;
use nagare_core::buffer::BufferKind;
use nagare_core::component::Invalid;
use nagare_core::config::{ConfigDocument, ConfigError, HumanDuration, Kind, Tagged, tagged};
use nagare_core::dead_letter::SecondaryConfig;
use nagare_core::filters::grep::GrepConfig;
use nagare_core::filters::record_modifier::RecordModifierConfig;
use nagare_core::pattern::TagPattern;
use nagare_parsers::ParserFilterConfig;
use serde::{Deserialize, Deserializer};

#[cfg(feature = "aggregator")]
use nagare_aggregator::sinks::{
    elasticsearch::ElasticsearchConfig, file::FileConfig, stdout::StdoutConfig,
};
#[cfg(feature = "aggregator")]
use nagare_aggregator::sources::forward::ForwardSourceConfig;
#[cfg(feature = "aggregator")]
use nagare_aggregator::sources::http::HttpSourceConfig;
#[cfg(feature = "forwarder")]
use nagare_forwarder::sinks::forward::ForwardSinkConfig;
#[cfg(feature = "forwarder")]
use nagare_forwarder::sources::tail::TailConfig;

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for state that must survive restarts: tail checkpoints, file
    /// buffers, dead-letter files. Created if missing.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// nagare's own logging.
    #[serde(default)]
    pub log: LogConfig,
    /// At shutdown, how long sources may wait for room in their buffers, and then
    /// how long sinks may take to deliver what their buffers hold before the
    /// process exits anyway.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
    /// Inputs, by name.
    #[serde(default)]
    pub sources: IndexMap<String, SourceConfig>,
    /// Record filters, by name, applied in the order written to events whose tag
    /// matches.
    #[serde(default)]
    pub filters: IndexMap<String, FilterEntry>,
    /// Outputs, by name. An event goes to every sink whose `match` pattern matches its
    /// tag.
    #[serde(default)]
    pub sinks: IndexMap<String, SinkEntry>,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/nagare")
}

fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

/// nagare's own log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Level or filter directives: `error`, `warn`, `info`, `debug`, `trace`, or
    /// per-module directives such as `info,nagare_forwarder=debug`. The `NAGARE_LOG`
    /// environment variable overrides it.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `text` for people, `json` for log pipelines (one JSON object per line).
    #[serde(default)]
    pub format: LogFormat,
}

fn default_log_level() -> String {
    "info".to_string()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: default_log_level(),
            format: LogFormat::default(),
        }
    }
}

/// Format of nagare's own logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A source: where events come from.
#[derive(Debug, Clone)]
// Built once per source at start; boxing would only add noise to every match.
#[allow(clippy::large_enum_variant)]
pub enum SourceConfig {
    /// Follow container log files (the forwarder's input).
    #[cfg(feature = "forwarder")]
    Tail(TailConfig),
    /// Receive the Fluentd Forward Protocol (the aggregator's input).
    #[cfg(feature = "aggregator")]
    Forward(ForwardSourceConfig),
    /// Receive records over HTTP (Fluentd `in_http` compatible).
    #[cfg(feature = "aggregator")]
    Http(HttpSourceConfig),
}

impl SourceConfig {
    /// The `type` as written.
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "forwarder")]
            SourceConfig::Tail(_) => "tail",
            #[cfg(feature = "aggregator")]
            SourceConfig::Forward(_) => "forward",
            #[cfg(feature = "aggregator")]
            SourceConfig::Http(_) => "http",
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        match self {
            #[cfg(feature = "forwarder")]
            SourceConfig::Tail(c) => c.validate(),
            #[cfg(feature = "aggregator")]
            SourceConfig::Forward(c) => c.validate(),
            #[cfg(feature = "aggregator")]
            SourceConfig::Http(c) => c.validate(),
        }
    }
}

/// The keys of a source that are not its component's.
#[derive(Debug, Deserialize)]
pub struct SourceHead {
    /// Which source.
    #[serde(rename = "type")]
    kind: Kind<SourceConfig>,
}

impl Tagged for SourceConfig {
    type Head = SourceHead;
    const KINDS: &'static [&'static str] = &[
        #[cfg(feature = "forwarder")]
        "tail",
        #[cfg(feature = "aggregator")]
        "forward",
        #[cfg(feature = "aggregator")]
        "http",
    ];

    fn decode<'de, D: Deserializer<'de>>(head: SourceHead, rest: D) -> Result<Self, D::Error> {
        Ok(match head.kind.as_str() {
            #[cfg(feature = "forwarder")]
            "tail" => SourceConfig::Tail(Deserialize::deserialize(rest)?),
            #[cfg(feature = "aggregator")]
            "forward" => SourceConfig::Forward(Deserialize::deserialize(rest)?),
            #[cfg(feature = "aggregator")]
            "http" => SourceConfig::Http(Deserialize::deserialize(rest)?),
            other => return Err(serde::de::Error::unknown_variant(other, Self::KINDS)),
        })
    }
}

impl<'de> Deserialize<'de> for SourceConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

/// A filter entry: a pattern and the filter.
#[derive(Debug, Clone)]
pub struct FilterEntry {
    /// Tag pattern of the events this filter applies to.
    pub pattern: TagPattern,
    /// The filter itself.
    pub kind: FilterConfig,
}

/// The keys of a filter that are not its component's.
#[derive(Debug, Deserialize)]
pub struct FilterHead {
    /// Which filter.
    #[serde(rename = "type")]
    kind: Kind<FilterEntry>,
    /// [`FilterEntry::pattern`].
    #[serde(rename = "match")]
    pattern: TagPattern,
}

impl Tagged for FilterEntry {
    type Head = FilterHead;
    const KINDS: &'static [&'static str] = &["record_modifier", "grep", "parser"];

    fn decode<'de, D: Deserializer<'de>>(head: FilterHead, rest: D) -> Result<Self, D::Error> {
        let kind = match head.kind.as_str() {
            "record_modifier" => FilterConfig::RecordModifier(Deserialize::deserialize(rest)?),
            "grep" => FilterConfig::Grep(Deserialize::deserialize(rest)?),
            "parser" => FilterConfig::Parser(Deserialize::deserialize(rest)?),
            other => return Err(serde::de::Error::unknown_variant(other, Self::KINDS)),
        };
        Ok(FilterEntry {
            pattern: head.pattern,
            kind,
        })
    }
}

impl<'de> Deserialize<'de> for FilterEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

/// A filter.
#[derive(Debug, Clone)]
pub enum FilterConfig {
    /// Add, overwrite and remove fields.
    RecordModifier(RecordModifierConfig),
    /// Keep or drop events by regular expressions on fields.
    Grep(GrepConfig),
    /// Parse a field (by default `log`) with a log format into structured fields.
    Parser(ParserFilterConfig),
}

impl FilterConfig {
    /// The `type` as written.
    pub fn kind(&self) -> &'static str {
        match self {
            FilterConfig::RecordModifier(_) => "record_modifier",
            FilterConfig::Grep(_) => "grep",
            FilterConfig::Parser(_) => "parser",
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        match self {
            FilterConfig::RecordModifier(c) => c.validate(),
            FilterConfig::Grep(c) => c.validate(),
            FilterConfig::Parser(c) => c.validate(),
        }
    }
}

/// A sink entry: a pattern, a buffer, a secondary output and the sink.
#[derive(Debug, Clone)]
pub struct SinkEntry {
    /// Tag pattern of the events this sink receives.
    pub pattern: TagPattern,
    /// The buffer in front of the sink, and how the sink retries.
    pub buffer: BufferConfig,
    /// Where the sink puts records its destination refused for good and chunks that
    /// ran out of retries.
    pub secondary: SecondaryConfig,
    /// The sink itself.
    pub kind: SinkConfig,
}

/// The keys of a sink that are not its component's.
#[derive(Debug, Deserialize)]
pub struct SinkHead {
    /// Which sink.
    #[serde(rename = "type")]
    kind: Kind<SinkEntry>,
    /// [`SinkEntry::pattern`].
    #[serde(rename = "match")]
    pattern: TagPattern,
    /// [`SinkEntry::buffer`].
    #[serde(default)]
    buffer: BufferConfig,
    /// [`SinkEntry::secondary`].
    #[serde(default)]
    secondary: SecondaryConfig,
}

impl Tagged for SinkEntry {
    type Head = SinkHead;
    const KINDS: &'static [&'static str] = &[
        #[cfg(feature = "forwarder")]
        "forward",
        #[cfg(feature = "aggregator")]
        "elasticsearch",
        #[cfg(feature = "aggregator")]
        "file",
        #[cfg(feature = "aggregator")]
        "stdout",
    ];

    fn decode<'de, D: Deserializer<'de>>(head: SinkHead, rest: D) -> Result<Self, D::Error> {
        let kind = match head.kind.as_str() {
            #[cfg(feature = "forwarder")]
            "forward" => SinkConfig::Forward(Deserialize::deserialize(rest)?),
            #[cfg(feature = "aggregator")]
            "elasticsearch" => SinkConfig::Elasticsearch(Deserialize::deserialize(rest)?),
            #[cfg(feature = "aggregator")]
            "file" => SinkConfig::File(Deserialize::deserialize(rest)?),
            #[cfg(feature = "aggregator")]
            "stdout" => SinkConfig::Stdout(Deserialize::deserialize(rest)?),
            other => return Err(serde::de::Error::unknown_variant(other, Self::KINDS)),
        };
        Ok(SinkEntry {
            pattern: head.pattern,
            buffer: head.buffer,
            secondary: head.secondary,
            kind,
        })
    }
}

impl<'de> Deserialize<'de> for SinkEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

/// A sink: where events go.
// Parsed once at start and never moved in a hot path: variant sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// Send to aggregators over the Fluentd Forward Protocol.
    #[cfg(feature = "forwarder")]
    Forward(ForwardSinkConfig),
    /// Index into Elasticsearch or OpenSearch with the `_bulk` API.
    #[cfg(feature = "aggregator")]
    Elasticsearch(ElasticsearchConfig),
    /// Append NDJSON to local files.
    #[cfg(feature = "aggregator")]
    File(FileConfig),
    /// Print NDJSON to standard output.
    #[cfg(feature = "aggregator")]
    Stdout(StdoutConfig),
}

impl SinkConfig {
    /// The `type` as written.
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "forwarder")]
            SinkConfig::Forward(_) => "forward",
            #[cfg(feature = "aggregator")]
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            #[cfg(feature = "aggregator")]
            SinkConfig::File(_) => "file",
            #[cfg(feature = "aggregator")]
            SinkConfig::Stdout(_) => "stdout",
        }
    }

    fn validate(&self) -> Result<(), Invalid> {
        match self {
            #[cfg(feature = "forwarder")]
            SinkConfig::Forward(c) => c.validate(),
            #[cfg(feature = "aggregator")]
            SinkConfig::Elasticsearch(c) => c.validate(),
            #[cfg(feature = "aggregator")]
            SinkConfig::File(c) => c.validate(),
            #[cfg(feature = "aggregator")]
            SinkConfig::Stdout(c) => c.validate(),
        }
    }
}

/// Reads, interpolates, decodes and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let doc = ConfigDocument::read(path)?;
    parse(&doc)
}

/// Decodes and validates a config document.
pub fn parse(doc: &ConfigDocument) -> Result<Config, ConfigError> {
    let config: Config = doc.parse()?;
    if config.sources.is_empty() {
        return Err(doc.error(
            "sources",
            "no sources: add at least one (a `tail` source on a node, a `forward` source on an aggregator)",
        ));
    }
    if config.sinks.is_empty() {
        return Err(doc.error(
            "sinks",
            "no sinks: add at least one (`forward` on a node, `elasticsearch` or `file` on an aggregator)",
        ));
    }
    let located = |section: &str, name: &str, e: Invalid| {
        let path = if e.key.is_empty() {
            format!("{section}.{name}")
        } else {
            format!("{section}.{name}.{}", e.key)
        };
        doc.error(&path, e.message)
    };
    for (name, source) in &config.sources {
        source.validate().map_err(|e| located("sources", name, e))?;
    }
    for (name, filter) in &config.filters {
        filter
            .kind
            .validate()
            .map_err(|e| located("filters", name, e))?;
    }
    let mut folders: Vec<(PathBuf, &str)> = Vec::new();
    for (name, sink) in &config.sinks {
        sink.kind
            .validate()
            .map_err(|e| located("sinks", name, e))?;
        let within = |section: &str, e: Invalid| Invalid {
            key: format!("{section}.{}", e.key),
            message: e.message,
        };
        sink.buffer
            .validate()
            .map_err(|e| located("sinks", name, within("buffer", e)))?;
        sink.secondary
            .validate()
            .map_err(|e| located("sinks", name, within("secondary", e)))?;
        if sink.buffer.kind == BufferKind::File {
            let folder = sink.buffer.folder(&config.data_dir, name);
            if let Some((_, other)) = folders.iter().find(|(f, _)| *f == folder) {
                return Err(located(
                    "sinks",
                    name,
                    Invalid::new(
                        "buffer.path",
                        format!(
                            "sink `{other}` keeps its file buffer in {} too; each sink needs a folder of its own",
                            folder.display()
                        ),
                    ),
                ));
            }
            folders.push((folder, name));
        }
    }
    Ok(config)
}
