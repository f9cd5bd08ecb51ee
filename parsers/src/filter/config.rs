//! The `parser` filter's configuration.

use nagare_core::component::Invalid;
use serde::Deserialize;

use crate::formats::ParserConfig;

/// Config of the `parser` filter: Fluentd's `filter_parser` options and a `parse`
/// section (the parser's format, time and type keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParserFilterConfig {
    /// The field to parse: a key (`log`, the default, where the tail source puts a
    /// container's line), or a path into nested maps (`$.kubernetes.annotation`).
    #[serde(default = "default_key_name")]
    pub key_name: String,
    /// Keep the record's other fields beside the parsed ones (parsed fields win).
    #[serde(default)]
    pub reserve_data: bool,
    /// Keep the event's time even when the parsed line carries one.
    #[serde(default)]
    pub reserve_time: bool,
    /// Remove the parsed field from the record once it parsed (with `reserve_data`).
    #[serde(default)]
    pub remove_key_name_field: bool,
    /// Prefix every parsed key with this text.
    #[serde(default)]
    pub inject_key_prefix: Option<String>,
    /// Put the parsed fields in a map under this key instead of at the top.
    #[serde(default)]
    pub hash_value_field: Option<String>,
    /// A record whose field is missing or does not parse goes to the error route
    /// (`@ERROR.<tag>`) with the reason; when false it passes through unchanged.
    #[serde(default = "default_emit_invalid_record_to_error")]
    pub emit_invalid_record_to_error: bool,
    /// The parser: `format` and its keys, `time_key`, `time_format`, `types`, ...
    pub parse: ParserConfig,
}

fn default_key_name() -> String {
    "log".to_string()
}

fn default_emit_invalid_record_to_error() -> bool {
    true
}

impl ParserFilterConfig {
    /// A config parsing `key_name` with `parse`, every other key at its default.
    pub fn new(key_name: &str, parse: ParserConfig) -> Self {
        Self {
            key_name: key_name.to_string(),
            reserve_data: false,
            reserve_time: false,
            remove_key_name_field: false,
            inject_key_prefix: None,
            hash_value_field: None,
            emit_invalid_record_to_error: default_emit_invalid_record_to_error(),
            parse,
        }
    }

    /// Checks what serde cannot: the key path and the parser's keys (reported as
    /// `parse.<key>`).
    pub fn validate(&self) -> Result<(), Invalid> {
        key_path(&self.key_name).map_err(|m| Invalid::new("key_name", m))?;
        if self.hash_value_field.as_deref() == Some("") {
            return Err(Invalid::new(
                "hash_value_field",
                "the key is empty; remove it to merge at the top",
            ));
        }
        self.parse
            .validate()
            .map_err(|e| Invalid::new(format!("parse.{}", e.key), e.message))
    }
}

/// The path of `key_name`: one key, or `$.a.b` for nested maps.
pub(crate) fn key_path(key_name: &str) -> Result<Vec<String>, String> {
    if key_name.is_empty() {
        return Err("the key is empty; the default is `log`".to_string());
    }
    match key_name.strip_prefix("$.") {
        Some(path) => {
            let parts: Vec<String> = path.split('.').map(str::to_string).collect();
            if parts.iter().any(String::is_empty) {
                return Err(format!(
                    "`{key_name}` is not a valid path; write it like `$.kubernetes.labels`"
                ));
            }
            Ok(parts)
        }
        None => Ok(vec![key_name.to_string()]),
    }
}
