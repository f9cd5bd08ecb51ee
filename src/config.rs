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
//! component, each wrapping that component's config, generated from the component
//! list ([`components`](crate::components)). `type`, `match`, `buffer` and
//! `dead_letter` (or `secondary`, Fluentd's word for it) are read here; everything
//! else belongs to the component, which rejects
//! keys it does not know. The `type` is read first and the component's keys go
//! straight to its config ([`Tagged`]), so that an error in them names its line and
//! key.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use nagare_core::buffer::BufferConfig;
use nagare_core::buffer::BufferKind;
use nagare_core::component::Invalid;
use nagare_core::config::{ConfigDocument, ConfigError, HumanDuration, Kind, Tagged, tagged};
use nagare_core::dead_letter::DeadLetterConfig;
use nagare_core::pattern::TagPattern;
use serde::{Deserialize, Deserializer};

pub use crate::api::ApiConfig;
pub use crate::components::{FilterConfig, SinkConfig, SourceConfig};

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
    /// The admin HTTP server: health and readiness probes, Prometheus metrics,
    /// the components' counts.
    #[serde(default)]
    pub api: ApiConfig,
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

/// The keys of a source that are not its component's.
#[derive(Debug, Deserialize)]
pub struct SourceHead {
    /// Which source.
    #[serde(rename = "type")]
    kind: Kind<SourceConfig>,
}

impl Tagged for SourceConfig {
    type Head = SourceHead;
    const KINDS: &'static [&'static str] = SourceConfig::TYPES;

    fn decode<'de, D: Deserializer<'de>>(head: SourceHead, rest: D) -> Result<Self, D::Error> {
        SourceConfig::decode_type(head.kind.as_str(), rest)
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
    const KINDS: &'static [&'static str] = FilterConfig::TYPES;

    fn decode<'de, D: Deserializer<'de>>(head: FilterHead, rest: D) -> Result<Self, D::Error> {
        Ok(FilterEntry {
            pattern: head.pattern,
            kind: FilterConfig::decode_type(head.kind.as_str(), rest)?,
        })
    }
}

impl<'de> Deserialize<'de> for FilterEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
    }
}

/// A sink entry: a pattern, a buffer, a dead-letter output and the sink.
#[derive(Debug, Clone)]
pub struct SinkEntry {
    /// Tag pattern of the events this sink receives.
    pub pattern: TagPattern,
    /// The buffer in front of the sink, and how the sink retries.
    pub buffer: BufferConfig,
    /// Where the sink puts records its destination refused for good and chunks that
    /// ran out of retries.
    pub dead_letter: DeadLetterConfig,
    /// The key `dead_letter` was given under (`dead_letter`, or Fluentd's
    /// `secondary`), for errors that point at it.
    pub dead_letter_key: &'static str,
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
    /// [`SinkEntry::dead_letter`].
    #[serde(default)]
    dead_letter: Option<DeadLetterConfig>,
    /// [`SinkEntry::dead_letter`] under Fluentd's word for it, accepted for those who
    /// come from Fluentd's `<secondary>`.
    #[serde(default)]
    secondary: Option<DeadLetterConfig>,
}

impl Tagged for SinkEntry {
    type Head = SinkHead;
    const KINDS: &'static [&'static str] = SinkConfig::TYPES;

    fn decode<'de, D: Deserializer<'de>>(head: SinkHead, rest: D) -> Result<Self, D::Error> {
        let (dead_letter, dead_letter_key) = match (head.dead_letter, head.secondary) {
            (Some(_), Some(_)) => {
                return Err(serde::de::Error::custom(
                    "`dead_letter` and `secondary` are the same section (`secondary` is Fluentd's word for it); keep one",
                ));
            }
            (None, Some(d)) => (d, "secondary"),
            (Some(d), None) => (d, "dead_letter"),
            (None, None) => (DeadLetterConfig::default(), "dead_letter"),
        };
        let kind = SinkConfig::decode_type(head.kind.as_str(), rest)?;
        let mut buffer = head.buffer;
        if buffer.chunk_limit_size.is_none() {
            buffer.chunk_limit_size = kind.chunk_limit_size();
        }
        Ok(SinkEntry {
            pattern: head.pattern,
            buffer,
            dead_letter,
            dead_letter_key,
            kind,
        })
    }
}

impl<'de> Deserialize<'de> for SinkEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        tagged::deserialize(d)
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
        sink.dead_letter
            .validate()
            .map_err(|e| located("sinks", name, within(sink.dead_letter_key, e)))?;
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

/// A config and the YAML tree it was decoded from (with `${NAME}` resolved), which
/// a reload compares component by component.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The config.
    pub config: Config,
    /// The document as plain YAML values.
    pub tree: serde_json::Value,
}

/// Where the config comes from: read at start, and again at each reload.
#[derive(Debug, Clone)]
pub enum ConfigOrigin {
    /// A file (`--config`).
    File(PathBuf),
    /// The YAML text itself (`--config-yaml` or `NAGARE_CONFIG_YAML`), for
    /// platforms that hand a container environment variables but no files.
    Text {
        /// Where the text came from, as errors name it.
        name: String,
        /// The YAML.
        yaml: String,
    },
}

impl ConfigOrigin {
    /// Where the config came from, as errors and `validate` name it.
    pub fn name(&self) -> String {
        match self {
            ConfigOrigin::File(path) => path.display().to_string(),
            ConfigOrigin::Text { name, .. } => name.clone(),
        }
    }

    /// The file, if the config is one (only a file can change under a running
    /// process).
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigOrigin::File(path) => Some(path),
            ConfigOrigin::Text { .. } => None,
        }
    }

    /// Reads, interpolates, decodes and validates the config.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let doc = match self {
            ConfigOrigin::File(path) => ConfigDocument::read(path)?,
            ConfigOrigin::Text { name, yaml } => {
                ConfigDocument::from_text(name, yaml, |var| std::env::var(var).ok())?
            }
        };
        let config = parse(&doc)?;
        let tree = doc.parse()?;
        Ok(Loaded { config, tree })
    }
}

#[cfg(test)]
mod tests {
    use nagare_core::config::ByteSize;

    use super::*;

    fn sinks(yaml: &str) -> IndexMap<String, SinkEntry> {
        let text =
            format!("sources:\n  in: {{ type: forward, bind: \"127.0.0.1:0\" }}\nsinks:\n{yaml}");
        let doc = ConfigDocument::from_text("test.yaml", &text, |_| None).unwrap();
        parse(&doc).unwrap().sinks
    }

    #[test]
    fn a_sink_with_its_own_chunk_size_gets_it_unless_the_config_sets_one() {
        let bigquery = "type: bigquery, match: \"**\", project: p, dataset: d, table: t, schema: [{ name: a, type: STRING }]";
        let sinks = sinks(&format!(
            "  bq: {{ {bigquery} }}\n  \
               bq_set: {{ {bigquery}, buffer: {{ chunk_limit_size: 4MiB }} }}\n  \
               out: {{ type: file, match: \"**\", path: /tmp/o }}\n"
        ));
        assert_eq!(sinks["bq"].buffer.chunk_limit(), ByteSize(1024 * 1024));
        assert_eq!(
            sinks["bq_set"].buffer.chunk_limit(),
            ByteSize(4 * 1024 * 1024)
        );
        assert_eq!(
            sinks["out"].buffer.chunk_limit(),
            nagare_core::buffer::DEFAULT_CHUNK_LIMIT_SIZE
        );
    }
}
