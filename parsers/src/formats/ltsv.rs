//! `ltsv`: Labeled Tab-separated Values (<http://ltsv.org>), `label:value` fields
//! separated by tabs (written `\t` here):
//!
//! ```text
//! time:[15/Jan/2024:10:30:00 +0900]\thost:192.168.0.1\treq:GET /list HTTP/1.1\tstatus:200\tsize:1024
//! ```
//!
//! A value runs to the next tab and may contain `:`. Empty fields are skipped; a
//! field without a label is an error. `delimiter` and `label_delimiter` change the
//! separators, as in Fluentd.

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Value};
use serde::Deserialize;

use super::{BuiltinTime, text, text_value};
use crate::error::ParseError;

/// Config of the `ltsv` format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LtsvConfig {
    /// Between fields (default a tab).
    #[serde(default = "default_delimiter")]
    pub delimiter: String,
    /// Between a label and its value (default `:`).
    #[serde(default = "default_label_delimiter")]
    pub label_delimiter: String,
}

impl Default for LtsvConfig {
    fn default() -> Self {
        Self {
            delimiter: default_delimiter(),
            label_delimiter: default_label_delimiter(),
        }
    }
}

fn default_delimiter() -> String {
    "\t".to_string()
}

fn default_label_delimiter() -> String {
    ":".to_string()
}

/// The `ltsv` parser.
#[derive(Debug, Clone)]
pub struct LtsvParser {
    delimiter: Vec<u8>,
    label_delimiter: Vec<u8>,
}

impl LtsvParser {
    /// Builds the parser.
    pub fn new(config: &LtsvConfig) -> Result<Self, Invalid> {
        if config.delimiter.is_empty() {
            return Err(Invalid::new(
                "delimiter",
                "the delimiter is empty; the default is a tab",
            ));
        }
        if config.label_delimiter.is_empty() {
            return Err(Invalid::new(
                "label_delimiter",
                "the label delimiter is empty; the default is `:`",
            ));
        }
        if config.delimiter == config.label_delimiter {
            return Err(Invalid::new(
                "label_delimiter",
                "the label delimiter must differ from the delimiter",
            ));
        }
        Ok(Self {
            delimiter: config.delimiter.as_bytes().to_vec(),
            label_delimiter: config.label_delimiter.as_bytes().to_vec(),
        })
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let mut start = 0;
        while start <= line.len() {
            let rest = &line[start..];
            let end = find(rest, &self.delimiter).unwrap_or(rest.len());
            let field = &rest[..end];
            if !field.is_empty() {
                let Some(colon) = find(field, &self.label_delimiter) else {
                    return Err(ParseError::syntax(
                        "ltsv",
                        start,
                        "`label:value` (this field has no label delimiter)",
                    ));
                };
                if colon == 0 {
                    return Err(ParseError::syntax("ltsv", start, "a label before the `:`"));
                }
                let value = &field[colon + self.label_delimiter.len()..];
                record.insert(text(&field[..colon]), text_value(value));
            }
            start += end + self.delimiter.len();
        }
        Ok(None)
    }
}

#[inline]
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [b] => memchr::memchr(*b, hay),
        _ => memchr::memmem::find(hay, needle),
    }
}

/// Renders a record as LTSV: the inverse of the parser for text values without
/// tabs or newlines.
pub fn render(record: &Map) -> String {
    let mut out = String::new();
    for (i, (k, v)) in record.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        out.push_str(k);
        out.push(':');
        match v {
            Value::Str(s) => out.push_str(s),
            other => out.push_str(&other.to_text()),
        }
    }
    out
}
