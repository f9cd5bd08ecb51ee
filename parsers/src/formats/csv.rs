//! `csv` and `tsv`: delimited values with configured column names (`keys`), quoted
//! as RFC 4180 says: a field in double quotes may hold the delimiter, and `""`
//! inside it stands for one `"`.
//!
//! ```yaml
//! format: csv
//! keys: [time, user, action, detail]
//! ```
//!
//! ```text
//! 2024-01-15T10:30:00Z,alice,login,"Firefox, on ""Linux"""
//! ```
//!
//! A line with fewer fields than keys leaves the last keys out; a line with more is
//! an error (its extra fields have no name). `tsv` is the same with a tab as the
//! default delimiter.

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Str, Value};
use serde::{Deserialize, Deserializer};

use super::{BuiltinTime, text};
use crate::error::ParseError;

/// Config of the `csv` format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvConfig {
    /// Column names, in order: a list, or a comma-separated string as in Fluentd.
    #[serde(deserialize_with = "keys")]
    pub keys: Vec<String>,
    /// The delimiter, one byte (default `,`).
    #[serde(default = "default_comma")]
    pub delimiter: String,
}

/// Config of the `tsv` format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsvConfig {
    /// Column names, in order: a list, or a comma-separated string as in Fluentd.
    #[serde(deserialize_with = "keys")]
    pub keys: Vec<String>,
    /// The delimiter, one byte (default a tab).
    #[serde(default = "default_tab")]
    pub delimiter: String,
}

fn default_comma() -> String {
    ",".to_string()
}

fn default_tab() -> String {
    "\t".to_string()
}

fn keys<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::Text(s) => s.split(',').map(|k| k.trim().to_string()).collect(),
    })
}

/// The `csv` and `tsv` parser.
#[derive(Debug, Clone)]
pub struct CsvParser {
    format: &'static str,
    keys: Vec<Str>,
    delimiter: u8,
}

impl CsvParser {
    /// Builds the parser for `format` (`csv` or `tsv`).
    pub fn new(keys: &[String], delimiter: &str, format: &'static str) -> Result<Self, Invalid> {
        if keys.is_empty() {
            return Err(Invalid::new(
                "keys",
                format!("{format} needs the column names in `keys`, e.g. `[time, level, message]`"),
            ));
        }
        if let Some(i) = keys.iter().position(String::is_empty) {
            return Err(Invalid::new(format!("keys.{i}"), "a column name is empty"));
        }
        let [d] = delimiter.as_bytes() else {
            return Err(Invalid::new(
                "delimiter",
                format!("`{delimiter}` is not one byte; {format} splits at a single character"),
            ));
        };
        if matches!(*d, b'"' | b'\n' | b'\r') {
            return Err(Invalid::new(
                "delimiter",
                "the delimiter cannot be a quote or a newline",
            ));
        }
        Ok(Self {
            format,
            keys: keys.iter().map(|k| Str::from(k.as_str())).collect(),
            delimiter: *d,
        })
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut i = 0;
        let mut field = 0;
        let mut scratch = Vec::new();
        loop {
            let Some(key) = self.keys.get(field) else {
                return Err(ParseError::TooManyFields {
                    format: self.format,
                    found: field + 1,
                    keys: self.keys.len(),
                    offset: i,
                });
            };
            let value = if line.get(i) == Some(&b'"') {
                let (value, end) = self.quoted(line, i, &mut scratch)?;
                i = end;
                value
            } else {
                let end = memchr::memchr(self.delimiter, &line[i..]).map_or(line.len(), |n| i + n);
                let value = text(&line[i..end]);
                i = end;
                value
            };
            record.insert(key.clone(), Value::Str(value));
            field += 1;
            if i >= line.len() {
                break;
            }
            // Only a delimiter can follow a field here.
            i += 1;
        }
        Ok(None)
    }

    /// A quoted field at `line[start] == '"'`: (value, index after the closing quote).
    fn quoted(
        &self,
        line: &[u8],
        start: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<(Str, usize), ParseError> {
        scratch.clear();
        let mut i = start + 1;
        let mut doubled = false;
        loop {
            let Some(n) = memchr::memchr(b'"', &line[i..]) else {
                return Err(ParseError::syntax(
                    self.format,
                    start,
                    "a closing quote for this field",
                ));
            };
            let q = i + n;
            if line.get(q + 1) == Some(&b'"') {
                scratch.extend_from_slice(&line[i..=q]);
                doubled = true;
                i = q + 2;
                continue;
            }
            let value = if doubled {
                scratch.extend_from_slice(&line[i..q]);
                text(scratch)
            } else {
                text(&line[start + 1..q])
            };
            let end = q + 1;
            if end < line.len() && line[end] != self.delimiter {
                return Err(ParseError::syntax(
                    self.format,
                    end,
                    "a delimiter after the closing quote",
                ));
            }
            return Ok((value, end));
        }
    }
}

/// Renders values as one CSV line with `delimiter`, quoting where needed: the
/// inverse of the parser.
pub fn render(values: &[&str], delimiter: u8) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(delimiter as char);
        }
        let needs_quotes = v.starts_with('"')
            || v.bytes()
                .any(|b| b == delimiter || b == b'\n' || b == b'\r')
            || (values.len() == 1 && v.is_empty());
        if needs_quotes {
            out.push('"');
            out.push_str(&v.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(v);
        }
    }
    out
}
