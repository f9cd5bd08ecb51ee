//! `regex`: a regular expression whose named captures become the record's fields,
//! as Fluentd's `regexp` and Fluent Bit's `regex` parsers. Captures that did not
//! take part in the match are left out; `types` converts the others.
//!
//! ```yaml
//! format: regex
//! expression: '^(?<host>\S+) (?<code>\d{3}) (?<took>[\d.]+)$'
//! types: {code: integer, took: float}
//! ```
//!
//! Fluentd's `/.../flags` form is accepted (`i`, `m` meaning "`.` matches a
//! newline", `x`). The syntax is Rust's `regex` crate: no look-around or
//! back-references, in exchange for matching in linear time on any input.

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Str};
use serde::Deserialize;

use super::{BuiltinTime, text_value};
use crate::error::ParseError;

/// Config of the `regex` format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexConfig {
    /// The regular expression, with named captures `(?<name>...)`.
    pub expression: String,
}

/// The `regex` parser.
#[derive(Debug, Clone)]
pub struct RegexParser {
    regex: regex::bytes::Regex,
    /// Capture group index and field name, for the named groups.
    names: Vec<(usize, Str)>,
    expression: String,
}

impl RegexParser {
    /// Compiles the expression; it must have at least one named capture.
    pub fn new(config: &RegexConfig) -> Result<Self, Invalid> {
        let source = translate(&config.expression);
        let regex = regex::bytes::Regex::new(&source).map_err(|e| {
            Invalid::new(
                "expression",
                format!(
                    "`{}` is not a valid regular expression: {e}",
                    config.expression
                ),
            )
        })?;
        let names: Vec<(usize, Str)> = regex
            .capture_names()
            .enumerate()
            .filter_map(|(i, n)| n.map(|n| (i, Str::from(n))))
            .collect();
        if names.is_empty() {
            return Err(Invalid::new(
                "expression",
                "the expression has no named capture; name the fields like `(?<host>\\S+)`",
            ));
        }
        Ok(Self {
            regex,
            names,
            expression: config.expression.clone(),
        })
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let Some(caps) = self.regex.captures(line) else {
            return Err(ParseError::NoMatch {
                expression: self.expression.clone(),
            });
        };
        for (i, name) in &self.names {
            if let Some(m) = caps.get(*i) {
                record.insert(name.clone(), text_value(m.as_bytes()));
            }
        }
        Ok(None)
    }
}

/// Turns Fluentd's `/expression/flags` into the crate's syntax; anything else is
/// kept as written.
fn translate(expression: &str) -> String {
    let Some(body) = expression.strip_prefix('/') else {
        return expression.to_string();
    };
    let Some(end) = body.rfind('/') else {
        return expression.to_string();
    };
    let (pattern, flags) = (&body[..end], &body[end + 1..]);
    if !flags.chars().all(|c| matches!(c, 'i' | 'm' | 'x')) {
        return expression.to_string();
    }
    let mapped: String = flags
        .chars()
        .map(|c| if c == 'm' { 's' } else { c })
        .collect();
    if mapped.is_empty() {
        pattern.to_string()
    } else {
        format!("(?{mapped}){pattern}")
    }
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn fluentd_slash_form() {
        assert_eq!(translate("/^(?<a>x)$/"), "^(?<a>x)$");
        assert_eq!(translate("/^(?<a>x)$/im"), "(?is)^(?<a>x)$");
        assert_eq!(translate("^a/b$"), "^a/b$");
        assert_eq!(translate("/a/q"), "/a/q");
    }
}
