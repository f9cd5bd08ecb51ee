//! Where events go, as the config says it: one fixed index, daily
//! `logstash-YYYY.MM.DD` indices, an index template over the tag, record fields and
//! the event time, or a data stream `<type>-<dataset>-<namespace>`; and the naming
//! rules Elasticsearch holds names to.
//!
//! ```text
//! index: "logs-{kubernetes.namespace_name}-%Y.%m.%d"   fields and tag as everywhere
//!                                                      ({tag}, {tag_parts[N]}), strftime
//!                                                      of the event time in UTC in the
//!                                                      text around them (%% for a %)
//! index_fallback: "logs-unknown-%Y.%m.%d"              when the template cannot name one
//! mode: data_stream
//! data_stream: {type: logs, dataset: "{kubernetes.container_name}", namespace: default}
//! ```

use nagare_core::component::Invalid;
use nagare_core::template::Template;
use serde::Deserialize;

use super::config::ElasticsearchConfig;

/// What the sink writes to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Indices (`index`, or daily `logstash_format` indices).
    #[default]
    Index,
    /// A data stream named by `data_stream`, written with `create` actions only.
    DataStream,
}

/// The `data_stream:` section: the parts of the data stream's name,
/// `<type>-<dataset>-<namespace>`, each a template over the tag and record fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataStreamConfig {
    /// The kind of data: `logs`, `metrics`, `traces`.
    #[serde(default = "default_type", rename = "type")]
    pub r#type: String,
    /// What produced the data, like `nginx.access` or `{kubernetes.container_name}`.
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// A grouping of the user's own, like `production` or
    /// `{kubernetes.namespace_name}`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        Self {
            r#type: default_type(),
            dataset: default_dataset(),
            namespace: default_namespace(),
        }
    }
}

fn default_type() -> String {
    "logs".into()
}

fn default_dataset() -> String {
    "generic".into()
}

fn default_namespace() -> String {
    "default".into()
}

/// Which index an event goes to, resolved from `index` / `logstash_format` / `mode`.
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
    /// A template over the tag, record fields and (strftime in its literal text)
    /// the event time.
    Templated {
        /// `index` (or `<logstash_prefix>-<logstash_dateformat>` with a templated
        /// prefix).
        index: Template,
        /// `index_fallback`.
        fallback: Option<Template>,
    },
    /// A data stream, `<type>-<dataset>-<namespace>`.
    DataStream {
        /// The three parts.
        parts: [Template; 3],
        /// `index_fallback`: the data stream written when the parts cannot name one.
        fallback: Option<Template>,
    },
}

/// The names of the data stream parts, in order.
pub const DATA_STREAM_PARTS: [&str; 3] = ["type", "dataset", "namespace"];

/// A sample event time for checking formats: 2023-11-14T22:13:20Z.
const SAMPLE_SECS: i64 = 1_700_000_000;

/// The characters Elasticsearch refuses in index names.
const ILLEGAL: [char; 12] = ['\\', '/', '*', '?', '"', '<', '>', '|', ' ', ',', '#', ':'];

/// Why `name` cannot be an Elasticsearch index name, if it cannot.
pub fn index_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("an index name cannot be empty".into());
    }
    if name != name.to_lowercase() {
        return Some(format!("index name `{name}` must be lowercase"));
    }
    if let Some(c) = name.chars().find(|c| ILLEGAL.contains(c)) {
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

/// Why `value` cannot be the `part` (`type`, `dataset`, `namespace`) of a data stream
/// name, if it cannot: Elastic's data stream naming scheme on top of the index name
/// rules (no `-`, which separates the parts; at most 100 characters).
pub fn data_stream_part_problem(part: &str, value: &str) -> Option<String> {
    if value.is_empty() {
        return Some(format!("the data stream {part} is empty"));
    }
    if value.contains('-') {
        return Some(format!(
            "data stream {part} `{value}` must not contain `-`, which separates type, dataset and namespace"
        ));
    }
    if value.chars().count() > 100 {
        return Some(format!(
            "data stream {part} `{value}` is longer than 100 characters"
        ));
    }
    if value != value.to_lowercase() {
        return Some(format!("data stream {part} `{value}` must be lowercase"));
    }
    if let Some(c) = value.chars().find(|c| ILLEGAL.contains(c)) {
        return Some(format!(
            "data stream {part} `{value}` must not contain `{c}`"
        ));
    }
    if part == "type" && value.starts_with(['_', '+', '.']) {
        return Some(format!(
            "data stream type `{value}` must not start with `_`, `+` or `.`"
        ));
    }
    None
}

/// Why `name` cannot be a whole data stream name `<type>-<dataset>-<namespace>`, if
/// it cannot: three parts, each as [`data_stream_part_problem`] wants it (an
/// `index_fallback` with `mode: data_stream` is such a name).
pub fn data_stream_name_problem(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split('-').collect();
    if parts.len() != 3 {
        return Some(format!(
            "`{name}` is not a data stream name `<type>-<dataset>-<namespace>`"
        ));
    }
    DATA_STREAM_PARTS
        .into_iter()
        .zip(parts)
        .find_map(|(part, value)| data_stream_part_problem(part, value))
        .or_else(|| index_name_problem(name))
}

/// Whether `format` holds a strftime conversion (`%` not doubled).
fn has_conversion(format: &str) -> bool {
    format.replace("%%", "").contains('%')
}

/// `format` as strftime prints it for the sample time, or why it cannot.
pub(super) fn strftime_sample(format: &str) -> Result<String, String> {
    if !has_conversion(format) {
        return Ok(format.replace("%%", "%"));
    }
    let sample = jiff::Timestamp::from_second(SAMPLE_SECS).unwrap_or_default();
    jiff::fmt::strtime::format(format, sample)
        .map_err(|e| format!("`{format}` is not a strftime format: {e}"))
}

fn template(key: &str, source: &str) -> Result<Template, Invalid> {
    Template::parse(source).map_err(|e| Invalid::new(key, e.to_string()))
}

/// Parses an index template and checks what can be checked before any event: its
/// strftime formats, and that its text is legal in an index name (the whole name
/// when it has no field).
fn index_template(key: &str, source: &str) -> Result<Template, Invalid> {
    let t = template(key, source)?;
    let mut texts = Vec::new();
    for literal in t.literals() {
        texts.push(strftime_sample(literal).map_err(|e| Invalid::new(key, e))?);
    }
    if t.is_constant() {
        // No field: the name as it will be written is known (but for its date).
        return match index_name_problem(&texts.concat()) {
            Some(problem) => Err(Invalid::new(key, problem)),
            None => Ok(t),
        };
    }
    for text in texts {
        if text != text.to_lowercase() {
            return Err(Invalid::new(
                key,
                format!("`{source}` writes `{text}`: an index name must be lowercase"),
            ));
        }
        if let Some(c) = text.chars().find(|c| ILLEGAL.contains(c)) {
            return Err(Invalid::new(
                key,
                format!("`{source}` holds `{c}`, which an index name must not contain"),
            ));
        }
    }
    Ok(t)
}

/// Which index events of `config` go to, checked.
pub(super) fn target(config: &ElasticsearchConfig) -> Result<IndexTarget, Invalid> {
    let fallback = config
        .index_fallback
        .as_deref()
        .map(|f| index_template("index_fallback", f))
        .transpose()?;
    if config.mode == Mode::DataStream {
        return data_stream_target(config, fallback);
    }
    if config.data_stream.is_some() {
        return Err(Invalid::new(
            "data_stream",
            "set `mode: data_stream` to write to a data stream, or remove `data_stream`",
        ));
    }
    let target = match (&config.index, config.logstash_format) {
        (Some(_), Some(true)) => {
            return Err(Invalid::new(
                "logstash_format",
                "set either `index` (one index, or a template) or `logstash_format: true` (daily indices), not both",
            ));
        }
        (Some(index), _) => {
            let t = index_template("index", index)?;
            if t.is_constant() && !has_conversion(index) {
                IndexTarget::Fixed(t.literals().collect::<String>().replace("%%", "%"))
            } else {
                IndexTarget::Templated { index: t, fallback }
            }
        }
        (None, Some(false)) => {
            return Err(Invalid::new(
                "logstash_format",
                "with `logstash_format: false`, set `index` to the index to write to",
            ));
        }
        (None, _) => daily(config, fallback)?,
    };
    if config.index_fallback.is_some() && !matches!(target, IndexTarget::Templated { .. }) {
        return Err(Invalid::new(
            "index_fallback",
            "every event gets an index without it: it is for an `index` (or `logstash_prefix`) with `{field}` placeholders",
        ));
    }
    Ok(target)
}

/// `logstash_format`: `<logstash_prefix>-<logstash_dateformat>`; a prefix with
/// placeholders makes it a template.
fn daily(config: &ElasticsearchConfig, fallback: Option<Template>) -> Result<IndexTarget, Invalid> {
    let date = strftime_sample(&config.logstash_dateformat)
        .map_err(|e| Invalid::new("logstash_dateformat", e))?;
    let prefix = template("logstash_prefix", &config.logstash_prefix)?;
    if !prefix.is_constant() {
        let format = config
            .logstash_dateformat
            .replace('{', "{{")
            .replace('}', "}}");
        let source = format!("{}-{format}", config.logstash_prefix);
        let index = index_template("logstash_prefix", &source)?;
        return Ok(IndexTarget::Templated { index, fallback });
    }
    let name = format!("{}-{date}", config.logstash_prefix);
    if let Some(problem) = index_name_problem(&name) {
        return Err(Invalid::new(
            "logstash_prefix",
            format!("daily indices would be named like `{name}`: {problem}"),
        ));
    }
    Ok(IndexTarget::Daily {
        prefix: config.logstash_prefix.clone(),
        format: config.logstash_dateformat.clone(),
    })
}

fn data_stream_target(
    config: &ElasticsearchConfig,
    fallback: Option<Template>,
) -> Result<IndexTarget, Invalid> {
    if config.index.is_some() {
        return Err(Invalid::new(
            "index",
            "with `mode: data_stream` the data stream is named by `data_stream: {type, dataset, namespace}`; remove `index`",
        ));
    }
    if config.logstash_format == Some(true) {
        return Err(Invalid::new(
            "logstash_format",
            "with `mode: data_stream` there are no daily indices (the data stream rolls over by itself); remove `logstash_format`",
        ));
    }
    let ds = config.data_stream.clone().unwrap_or_default();
    let sources = [&ds.r#type, &ds.dataset, &ds.namespace];
    let mut parts = Vec::with_capacity(3);
    for (part, source) in DATA_STREAM_PARTS.into_iter().zip(sources) {
        let key = format!("data_stream.{part}");
        let t = template(&key, source)?;
        if let Some(c) = t.literals().flat_map(str::chars).find(|c| *c == '-') {
            return Err(Invalid::new(
                key,
                format!(
                    "`{source}` holds `{c}`, which separates type, dataset and namespace in the name"
                ),
            ));
        }
        if t.is_constant()
            && let Some(problem) = data_stream_part_problem(part, &t.literals().collect::<String>())
        {
            return Err(Invalid::new(key, problem));
        }
        parts.push(t);
    }
    let parts: [Template; 3] = parts
        .try_into()
        .map_err(|_| Invalid::new("data_stream", "a data stream name has three parts"))?;
    if let Some(f) = fallback.as_ref().filter(|f| f.is_constant()) {
        // No field: the name as it will be written is known (but for its date).
        let name = f
            .literals()
            .map(strftime_sample)
            .collect::<Result<String, String>>()
            .map_err(|e| Invalid::new("index_fallback", e))?;
        if let Some(problem) = data_stream_name_problem(&name) {
            return Err(Invalid::new("index_fallback", problem));
        }
    }
    Ok(IndexTarget::DataStream { parts, fallback })
}
