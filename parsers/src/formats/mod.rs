//! Log formats: one module per format, each the same shape.
//!
//! Every module has a config struct (the format's own keys, `deny_unknown_fields`)
//! and a parser built from it with `new(&config) -> Result<Self, Invalid>`, whose
//! `parse(&self, line, &mut record)` fills a record from one complete line and
//! returns the time the format carries in its own syntax, if any. What every format
//! shares — the time field, typed conversion, null values, several formats tried in
//! order — is [`ParserConfig`] and [`Parser`] here, which is what callers use.
//!
//! | `format`        | module         | as in                                      |
//! |-----------------|----------------|--------------------------------------------|
//! | `json`          | [`json`]       | Fluentd `json`, Vector `parse_json`         |
//! | `regex`         | [`regex`]      | Fluentd `regexp`, Fluent Bit `regex`        |
//! | `logfmt`        | [`logfmt`]     | Vector `parse_logfmt`, Fluent Bit `logfmt`  |
//! | `apache2`       | [`apache`]     | Fluentd `apache2` (common and combined)     |
//! | `apache_error`  | [`apache`]     | Fluentd `apache_error`                      |
//! | `nginx`         | [`nginx`]      | Fluentd `nginx`                             |
//! | `nginx_error`   | [`nginx`]      | Vector `parse_nginx_log` (error)            |
//! | `syslog`        | [`syslog`]     | Fluentd `syslog` (RFC 3164, 5424, auto)     |
//! | `ltsv`          | [`ltsv`]       | Fluentd `ltsv`, Fluent Bit `ltsv`           |
//! | `csv`, `tsv`    | [`csv`]        | Fluentd `csv`, `tsv`                        |
//! | `none`          | [`none`]       | Fluentd `none`                              |
//! | `multi_format`  | here           | fluent-plugin-multi-format-parser           |
//!
//! ```yaml
//! format: regex
//! expression: '^(?<time>[^ ]+) (?<level>\w+) (?<took>[\d.]+)ms (?<message>.*)$'
//! time_key: time
//! time_format: '%Y-%m-%dT%H:%M:%S%.f%z'
//! timezone: Asia/Tokyo
//! types: {took: float}
//! ```

pub mod apache;
pub mod csv;
pub mod json;
pub mod logfmt;
pub mod ltsv;
pub mod nginx;
pub mod none;
pub mod regex;
mod scan;
pub mod syslog;

use std::collections::BTreeMap;
use std::ops::Range;

use nagare_core::EventTime;
use nagare_core::component::Invalid;
use nagare_core::value::{Map, Str, Value};
use serde::{Deserialize, Deserializer};

use crate::error::{ParseError, excerpt};
use crate::time::{RawTime, TimeFormat, Zone, resolve};
use crate::types::FieldType;

/// A parser's config: the `format` with its own keys, and the keys every format
/// shares (Fluentd's `<parse>` section).
///
/// The format's keys sit beside the shared ones, as in Fluentd; the format's struct
/// refuses keys it does not know (serde cannot check unknown keys on this outer
/// struct itself, because it flattens the format).
#[derive(Debug, Clone, Deserialize)]
pub struct ParserConfig {
    /// The format and its own keys.
    #[serde(flatten)]
    pub format: FormatConfig,
    /// The field holding the event time. Defaults to `time` for json, regex,
    /// logfmt, ltsv, csv and tsv; the built-in formats read their own time.
    #[serde(default)]
    pub time_key: Option<String>,
    /// How the time field is written: a strftime pattern (`%d/%b/%Y:%H:%M:%S %z`,
    /// with `%N`/`%L`/`%f` fractions), `iso8601`, `epoch`, `epoch_ms`, `epoch_us`,
    /// `epoch_ns` or `auto` (ISO 8601 text or epoch seconds), or a list of these
    /// tried in order. Default `auto`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub time_format: Vec<String>,
    /// The zone of times written without an offset: `UTC` (default), an offset
    /// (`+09:00`), an IANA name (`Asia/Tokyo`) or `local`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Keep the time field in the record after it was read into the event time.
    #[serde(default)]
    pub keep_time_key: bool,
    /// When the time field is missing (and `time_key` was set) or does not parse:
    /// `true` keeps the event's own time and marks the record with
    /// `time_fallback_key`; `false` makes the line a parse error.
    #[serde(default = "default_time_fallback")]
    pub time_fallback: bool,
    /// The field that says why the event time was kept (see `time_fallback`).
    #[serde(default = "default_time_fallback_key")]
    pub time_fallback_key: String,
    /// Field types: `{code: integer, took: float, ok: bool, tags: "array:|",
    /// at: "time:%d/%b/%Y"}`; also `string`, `time`, `array`.
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// A regular expression; text values that match it become null (`^(-|null)$`).
    #[serde(default)]
    pub null_value_pattern: Option<String>,
    /// Empty text values become null.
    #[serde(default)]
    pub null_empty_string: bool,
}

fn default_time_fallback() -> bool {
    true
}

fn default_time_fallback_key() -> String {
    "_time_fallback".to_string()
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

/// The format, chosen by the `format` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum FormatConfig {
    /// One JSON value per line.
    Json(json::JsonConfig),
    /// A regular expression with named captures.
    #[serde(alias = "regexp")]
    Regex(regex::RegexConfig),
    /// `key=value` pairs.
    Logfmt(logfmt::LogfmtConfig),
    /// Apache access logs, common and combined.
    #[serde(alias = "apache")]
    Apache2(apache::Apache2Config),
    /// Apache error logs.
    ApacheError(apache::ApacheErrorConfig),
    /// nginx access logs.
    Nginx(nginx::NginxConfig),
    /// nginx error logs.
    NginxError(nginx::NginxErrorConfig),
    /// Syslog, RFC 3164 and RFC 5424.
    Syslog(syslog::SyslogConfig),
    /// Labeled tab-separated values.
    Ltsv(ltsv::LtsvConfig),
    /// Comma-separated values.
    Csv(csv::CsvConfig),
    /// Tab-separated values.
    Tsv(csv::TsvConfig),
    /// The whole line as one field.
    None(none::NoneConfig),
    /// Several formats tried in order; the first that parses wins.
    MultiFormat(MultiFormatConfig),
}

/// `format: multi_format`: the `patterns` are tried in order.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultiFormatConfig {
    /// Parser configs, each with its own `format` and time keys.
    pub patterns: Vec<ParserConfig>,
}

impl FormatConfig {
    /// The format's name as `format:` writes it.
    pub fn name(&self) -> &'static str {
        match self {
            FormatConfig::Json(_) => "json",
            FormatConfig::Regex(_) => "regex",
            FormatConfig::Logfmt(_) => "logfmt",
            FormatConfig::Apache2(_) => "apache2",
            FormatConfig::ApacheError(_) => "apache_error",
            FormatConfig::Nginx(_) => "nginx",
            FormatConfig::NginxError(_) => "nginx_error",
            FormatConfig::Syslog(_) => "syslog",
            FormatConfig::Ltsv(_) => "ltsv",
            FormatConfig::Csv(_) => "csv",
            FormatConfig::Tsv(_) => "tsv",
            FormatConfig::None(_) => "none",
            FormatConfig::MultiFormat(_) => "multi_format",
        }
    }

    /// Whether the format reads the time from its own syntax.
    fn has_builtin_time(&self) -> bool {
        matches!(
            self,
            FormatConfig::Apache2(_)
                | FormatConfig::ApacheError(_)
                | FormatConfig::Nginx(_)
                | FormatConfig::NginxError(_)
                | FormatConfig::Syslog(_)
        )
    }
}

impl ParserConfig {
    /// A config of `format` with every shared key at its default.
    pub fn new(format: FormatConfig) -> Self {
        Self {
            format,
            time_key: None,
            time_format: Vec::new(),
            timezone: None,
            keep_time_key: false,
            time_fallback: default_time_fallback(),
            time_fallback_key: default_time_fallback_key(),
            types: BTreeMap::new(),
            null_value_pattern: None,
            null_empty_string: false,
        }
    }

    /// Checks what serde cannot: expressions, time formats, zones, types.
    pub fn validate(&self) -> Result<(), Invalid> {
        Parser::new(self).map(|_| ())
    }
}

/// A time that a format reads from its own syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinTime {
    /// Where the time's text is in the line.
    pub text: Range<usize>,
    /// The time; `None` when the text is not a valid time.
    pub raw: Option<RawTime>,
}

/// One line, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The record.
    pub record: Map,
    /// The time the line carries; `None` when it has none (or it fell back): the
    /// caller keeps the event's own time.
    pub time: Option<EventTime>,
}

#[derive(Debug, Clone)]
enum Kind {
    Json(json::JsonParser),
    Regex(regex::RegexParser),
    Logfmt(logfmt::LogfmtParser),
    Apache2(apache::Apache2Parser),
    ApacheError(apache::ApacheErrorParser),
    Nginx(nginx::NginxParser),
    NginxError(nginx::NginxErrorParser),
    Syslog(syslog::SyslogParser),
    Ltsv(ltsv::LtsvParser),
    Csv(csv::CsvParser),
    None(none::NoneParser),
    Multi(Vec<Parser>),
}

#[derive(Debug, Clone)]
struct TimeRule {
    key: Option<Str>,
    /// `time_key` was configured: a missing field is worth a flag.
    explicit: bool,
    formats: Vec<TimeFormat>,
    zone: Zone,
    keep: bool,
    fallback: bool,
    flag_key: Str,
}

/// A parser built from a [`ParserConfig`]: pure, `Send + Sync`, reusable for any
/// number of lines.
#[derive(Debug, Clone)]
pub struct Parser {
    name: &'static str,
    kind: Kind,
    time: TimeRule,
    types: Vec<(Str, FieldType)>,
    null_pattern: Option<::regex::Regex>,
    null_empty: bool,
}

impl Parser {
    /// Builds the parser; an unusable value is an [`Invalid`] naming its key.
    pub fn new(config: &ParserConfig) -> Result<Self, Invalid> {
        let name = config.format.name();
        let kind = match &config.format {
            FormatConfig::Json(c) => Kind::Json(json::JsonParser::new(c)?),
            FormatConfig::Regex(c) => Kind::Regex(regex::RegexParser::new(c)?),
            FormatConfig::Logfmt(c) => Kind::Logfmt(logfmt::LogfmtParser::new(c)?),
            FormatConfig::Apache2(c) => Kind::Apache2(apache::Apache2Parser::new(c)?),
            FormatConfig::ApacheError(c) => Kind::ApacheError(apache::ApacheErrorParser::new(c)?),
            FormatConfig::Nginx(c) => Kind::Nginx(nginx::NginxParser::new(c)?),
            FormatConfig::NginxError(c) => Kind::NginxError(nginx::NginxErrorParser::new(c)?),
            FormatConfig::Syslog(c) => Kind::Syslog(syslog::SyslogParser::new(c)?),
            FormatConfig::Ltsv(c) => Kind::Ltsv(ltsv::LtsvParser::new(c)?),
            FormatConfig::Csv(c) => Kind::Csv(csv::CsvParser::new(&c.keys, &c.delimiter, "csv")?),
            FormatConfig::Tsv(c) => Kind::Csv(csv::CsvParser::new(&c.keys, &c.delimiter, "tsv")?),
            FormatConfig::None(c) => Kind::None(none::NoneParser::new(c)?),
            FormatConfig::MultiFormat(m) => {
                if m.patterns.is_empty() {
                    return Err(Invalid::new(
                        "patterns",
                        "multi_format needs at least one pattern, e.g. `- format: json`",
                    ));
                }
                let shared = ParserConfig::new(FormatConfig::None(none::NoneConfig::default()));
                if config.time_key.is_some()
                    || !config.time_format.is_empty()
                    || config.timezone.is_some()
                    || !config.types.is_empty()
                    || config.null_value_pattern.is_some()
                    || config.keep_time_key != shared.keep_time_key
                {
                    return Err(Invalid::new(
                        "patterns",
                        "multi_format takes time and type keys inside each pattern, not beside `patterns`",
                    ));
                }
                let mut parsers = Vec::with_capacity(m.patterns.len());
                for (i, p) in m.patterns.iter().enumerate() {
                    if matches!(p.format, FormatConfig::MultiFormat(_)) {
                        return Err(Invalid::new(
                            format!("patterns.{i}.format"),
                            "a multi_format pattern cannot itself be multi_format",
                        ));
                    }
                    let parser = Parser::new(p)
                        .map_err(|e| Invalid::new(format!("patterns.{i}.{}", e.key), e.message))?;
                    parsers.push(parser);
                }
                Kind::Multi(parsers)
            }
        };
        let builtin = config.format.has_builtin_time();
        if builtin && !config.time_format.is_empty() {
            return Err(Invalid::new(
                "time_format",
                format!("`{name}` reads the time in its own format; remove `time_format`"),
            ));
        }
        let mut formats = Vec::with_capacity(config.time_format.len().max(1));
        for (i, spec) in config.time_format.iter().enumerate() {
            let key = if config.time_format.len() == 1 {
                "time_format".to_string()
            } else {
                format!("time_format.{i}")
            };
            formats.push(TimeFormat::parse_spec(spec).map_err(|m| Invalid::new(key, m))?);
        }
        if formats.is_empty() {
            formats.push(TimeFormat::Auto);
        }
        let zone = match &config.timezone {
            Some(z) => Zone::parse(z).map_err(|m| Invalid::new("timezone", m))?,
            None => Zone::Utc,
        };
        let default_key = match config.format {
            FormatConfig::None(_) | FormatConfig::MultiFormat(_) => None,
            _ => Some("time"),
        };
        if config.time_key.as_deref() == Some("") {
            return Err(Invalid::new("time_key", "the time key is empty"));
        }
        if config.time_fallback_key.is_empty() {
            return Err(Invalid::new(
                "time_fallback_key",
                "the key is empty; the default is `_time_fallback`",
            ));
        }
        let time = TimeRule {
            key: config.time_key.as_deref().or(default_key).map(Str::from),
            explicit: config.time_key.is_some(),
            formats,
            zone,
            keep: config.keep_time_key,
            fallback: config.time_fallback,
            flag_key: Str::from(config.time_fallback_key.as_str()),
        };
        let mut types = Vec::with_capacity(config.types.len());
        for (field, spec) in &config.types {
            let ty = FieldType::parse_spec(spec)
                .map_err(|m| Invalid::new(format!("types.{field}"), m))?;
            types.push((Str::from(field.as_str()), ty));
        }
        let null_pattern = match &config.null_value_pattern {
            Some(p) => Some(::regex::Regex::new(p).map_err(|e| {
                Invalid::new(
                    "null_value_pattern",
                    format!("`{p}` is not a valid regular expression: {e}"),
                )
            })?),
            None => None,
        };
        Ok(Self {
            name,
            kind,
            time,
            types,
            null_pattern,
            null_empty: config.null_empty_string,
        })
    }

    /// The format's name.
    pub fn format_name(&self) -> &'static str {
        self.name
    }

    /// Parses one complete line (without its newline). `event_time` is the time the
    /// line was written or read: the reference for year-less times.
    pub fn parse(&self, line: &[u8], event_time: EventTime) -> Result<Parsed, ParseError> {
        // The JSON parser brings its own map; the others fill this one.
        let mut record = match self.kind {
            Kind::Json(_) | Kind::Multi(_) => Map::new(),
            _ => Map::with_capacity(10),
        };
        let builtin = match &self.kind {
            Kind::Json(p) => p.parse(line, &mut record)?,
            Kind::Regex(p) => p.parse(line, &mut record)?,
            Kind::Logfmt(p) => p.parse(line, &mut record)?,
            Kind::Apache2(p) => p.parse(line, &mut record)?,
            Kind::ApacheError(p) => p.parse(line, &mut record)?,
            Kind::Nginx(p) => p.parse(line, &mut record)?,
            Kind::NginxError(p) => p.parse(line, &mut record)?,
            Kind::Syslog(p) => p.parse(line, &mut record)?,
            Kind::Ltsv(p) => p.parse(line, &mut record)?,
            Kind::Csv(p) => p.parse(line, &mut record)?,
            Kind::None(p) => p.parse(line, &mut record)?,
            Kind::Multi(parsers) => return multi(parsers, line, event_time),
        };
        if self.null_empty || self.null_pattern.is_some() {
            self.apply_nulls(&mut record);
        }
        for (field, ty) in &self.types {
            if let Some(value) = record.get_mut(field) {
                match ty.convert(value, &self.time.zone, event_time) {
                    Some(v) => *value = v,
                    None => {
                        return Err(ParseError::Type {
                            field: field.to_string(),
                            value: excerpt(&value.to_text()),
                            expected: ty.expected(),
                        });
                    }
                }
            }
        }
        let time = match builtin {
            Some(b) => self.builtin_time(line, b, &mut record, event_time)?,
            None => self.field_time(&mut record, event_time)?,
        };
        Ok(Parsed { record, time })
    }

    fn apply_nulls(&self, record: &mut Map) {
        let nulls: Vec<Str> = record
            .iter()
            .filter(|(_, v)| match v {
                Value::Str(s) => {
                    (self.null_empty && s.is_empty())
                        || self.null_pattern.as_ref().is_some_and(|re| re.is_match(s))
                }
                _ => false,
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in nulls {
            if let Some(v) = record.get_mut(&k) {
                *v = Value::Null;
            }
        }
    }

    fn builtin_time(
        &self,
        line: &[u8],
        b: BuiltinTime,
        record: &mut Map,
        event_time: EventTime,
    ) -> Result<Option<EventTime>, ParseError> {
        let text = line.get(b.text.clone()).unwrap_or_default();
        if self.time.keep {
            let key = self.time.key.clone().unwrap_or_else(|| Str::from("time"));
            record.insert(key, text_value(text));
        }
        match b
            .raw
            .and_then(|raw| resolve(raw, &self.time.zone, event_time))
        {
            Some(t) => Ok(Some(t)),
            None => self.fall_back(
                record,
                format!(
                    "`{}` is not a valid {} time",
                    excerpt(&String::from_utf8_lossy(text)),
                    self.name
                ),
            ),
        }
    }

    fn field_time(
        &self,
        record: &mut Map,
        event_time: EventTime,
    ) -> Result<Option<EventTime>, ParseError> {
        let Some(key) = &self.time.key else {
            return Ok(None);
        };
        let parsed = match record.get(key) {
            None | Some(Value::Null) => {
                return if self.time.explicit {
                    self.fall_back(record, format!("the time field `{key}` is missing"))
                } else {
                    Ok(None)
                };
            }
            Some(value) => self
                .time
                .formats
                .iter()
                .find_map(|f| f.parse_value(value))
                .and_then(|raw| resolve(raw, &self.time.zone, event_time))
                .ok_or_else(|| excerpt(&value.to_text())),
        };
        match parsed {
            Ok(t) => {
                if !self.time.keep {
                    record.remove(key);
                }
                Ok(Some(t))
            }
            Err(text) => {
                let formats: Vec<&str> = self.time.formats.iter().map(format_label).collect();
                self.fall_back(
                    record,
                    format!(
                        "the time field `{key}`: `{text}` does not match {}",
                        formats.join(" or ")
                    ),
                )
            }
        }
    }

    fn fall_back(&self, record: &mut Map, reason: String) -> Result<Option<EventTime>, ParseError> {
        if self.time.fallback {
            record.insert(self.time.flag_key.clone(), Value::from(reason));
            Ok(None)
        } else {
            Err(ParseError::Time(reason))
        }
    }
}

fn format_label(f: &TimeFormat) -> &str {
    match f {
        TimeFormat::Auto => "ISO 8601 or epoch seconds",
        TimeFormat::Iso8601 => "ISO 8601",
        TimeFormat::Epoch(crate::time::EpochUnit::Seconds) => "epoch seconds",
        TimeFormat::Epoch(crate::time::EpochUnit::Millis) => "epoch milliseconds",
        TimeFormat::Epoch(crate::time::EpochUnit::Micros) => "epoch microseconds",
        TimeFormat::Epoch(crate::time::EpochUnit::Nanos) => "epoch nanoseconds",
        TimeFormat::Strftime(p) => p.pattern(),
    }
}

fn multi(parsers: &[Parser], line: &[u8], event_time: EventTime) -> Result<Parsed, ParseError> {
    let mut errors = Vec::with_capacity(parsers.len());
    for p in parsers {
        match p.parse(line, event_time) {
            Ok(parsed) => return Ok(parsed),
            Err(e) => errors.push(e),
        }
    }
    Err(ParseError::NoFormatMatched(errors))
}

/// The default field for a line's text (`none`) or a JSON value that is not an
/// object (`json`).
pub(crate) fn default_message_key() -> String {
    "message".to_string()
}

/// The configured `message_key`, checked.
pub(crate) fn message_key(key: &str) -> Result<Str, Invalid> {
    if key.is_empty() {
        return Err(Invalid::new("message_key", "the message key is empty"));
    }
    Ok(Str::from(key))
}

/// Text from a line as a record value: borrowed into an inline string when short,
/// invalid UTF-8 replaced by U+FFFD.
#[inline]
pub(crate) fn text_value(bytes: &[u8]) -> Value {
    Value::Str(text(bytes))
}

/// Text from a line as a record string.
#[inline]
pub(crate) fn text(bytes: &[u8]) -> Str {
    match std::str::from_utf8(bytes) {
        Ok(s) => Str::from(s),
        Err(_) => Str::from(String::from_utf8_lossy(bytes)),
    }
}

/// `-` (the "no value" of access logs) as null, anything else as text.
#[inline]
pub(crate) fn dash_or_text(bytes: &[u8]) -> Value {
    if bytes == b"-" {
        Value::Null
    } else {
        text_value(bytes)
    }
}

#[cfg(test)]
mod tests;
