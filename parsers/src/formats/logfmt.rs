//! `logfmt`: `key=value` pairs separated by spaces, as Heroku, Go's logfmt and many
//! Go programs write them:
//!
//! ```text
//! at=info method=GET path="/users/42" host=api.example.com fwd="10.0.0.1" dyno=web.1 connect=1ms service=23ms status=200 bytes=1543
//! ```
//!
//! Values are quoted when they hold spaces, with `\"`, `\\`, `\n`, `\t`, `\r`, `\/`
//! and `\uXXXX` escapes. A key without `=` (a bare key) is `true`; `key=` is an
//! empty string. A repeated key keeps its last value. Values are text; `types`
//! converts them.

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Str, Value};
use serde::Deserialize;

use super::{BuiltinTime, text};
use crate::error::ParseError;

/// Config of the `logfmt` format (it has no keys of its own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogfmtConfig {}

/// The `logfmt` parser.
#[derive(Debug, Clone, Default)]
pub struct LogfmtParser;

const NAME: &str = "logfmt";

impl LogfmtParser {
    /// Builds the parser.
    pub fn new(_config: &LogfmtConfig) -> Result<Self, Invalid> {
        Ok(Self)
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let mut i = 0;
        let n = line.len();
        let mut scratch = Vec::new();
        loop {
            while i < n && is_space(line[i]) {
                i += 1;
            }
            if i == n {
                break;
            }
            let key_start = i;
            while i < n && is_key_byte(line[i]) {
                i += 1;
            }
            if i == key_start {
                return Err(ParseError::syntax(NAME, i, "a key"));
            }
            let key = text(&line[key_start..i]);
            if i == n || is_space(line[i]) {
                record.insert(key, Value::Bool(true));
                continue;
            }
            // is_key_byte stopped on something that is not a space: `=` or `"`.
            if line[i] != b'=' {
                return Err(ParseError::syntax(NAME, i, "`=` or a space after the key"));
            }
            i += 1;
            let value = if i < n && line[i] == b'"' {
                let (value, end) = quoted(line, i, &mut scratch)?;
                i = end;
                if i < n && !is_space(line[i]) {
                    return Err(ParseError::syntax(
                        NAME,
                        i,
                        "a space after the closing quote",
                    ));
                }
                value
            } else {
                let start = i;
                while i < n && !is_space(line[i]) {
                    if line[i] == b'"' {
                        return Err(ParseError::syntax(
                            NAME,
                            i,
                            "a space before a quote (quote the whole value)",
                        ));
                    }
                    i += 1;
                }
                text(&line[start..i])
            };
            record.insert(key, Value::Str(value));
        }
        Ok(None)
    }
}

#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
fn is_key_byte(b: u8) -> bool {
    b > b' ' && b != b'=' && b != b'"' && b != 0x7f
}

/// A quoted value starting at `line[start] == '"'`: (value, index after the closing
/// quote).
fn quoted(line: &[u8], start: usize, scratch: &mut Vec<u8>) -> Result<(Str, usize), ParseError> {
    let body = &line[start + 1..];
    // The common case: no escape before the closing quote, borrowed as is.
    match memchr::memchr2(b'"', b'\\', body) {
        Some(j) if body[j] == b'"' => return Ok((text(&body[..j]), start + 2 + j)),
        None => {
            return Err(ParseError::syntax(
                NAME,
                start,
                "a closing quote for this value",
            ));
        }
        Some(_) => {}
    }
    scratch.clear();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'"' => return Ok((text(scratch), start + 2 + i)),
            b'\\' => {
                let at = start + 1 + i;
                let Some(&e) = body.get(i + 1) else {
                    return Err(ParseError::syntax(NAME, at, "a character after `\\`"));
                };
                i += 2;
                match e {
                    b'"' | b'\\' | b'/' => scratch.push(e),
                    b'n' => scratch.push(b'\n'),
                    b't' => scratch.push(b'\t'),
                    b'r' => scratch.push(b'\r'),
                    b'u' => {
                        let (c, used) = unicode_escape(&body[i..]).ok_or(ParseError::syntax(
                            NAME,
                            at,
                            "four hex digits after `\\u`",
                        ))?;
                        let mut buf = [0u8; 4];
                        scratch.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        i += used;
                    }
                    // An unknown escape is kept as written.
                    other => scratch.extend_from_slice(&[b'\\', other]),
                }
            }
            b => {
                scratch.push(b);
                i += 1;
            }
        }
    }
    Err(ParseError::syntax(
        NAME,
        start,
        "a closing quote for this value",
    ))
}

/// `XXXX` (after `\u`), with a following `\uXXXX` low surrogate when the first is a
/// high one: (character, bytes used). A lone surrogate becomes U+FFFD.
fn unicode_escape(s: &[u8]) -> Option<(char, usize)> {
    let hex = |s: &[u8]| -> Option<u32> {
        let h = std::str::from_utf8(s.get(..4)?).ok()?;
        u32::from_str_radix(h, 16)
            .ok()
            .filter(|_| h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let first = hex(s)?;
    if (0xD800..0xDC00).contains(&first)
        && s.get(4..6) == Some(b"\\u")
        && let Some(low) = hex(&s[6..]).filter(|l| (0xDC00..0xE000).contains(l))
    {
        let c = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
        return Some((char::from_u32(c)?, 10));
    }
    Some((char::from_u32(first).unwrap_or('\u{FFFD}'), 4))
}

/// Renders a record as logfmt: the inverse of the parser for records it produces
/// (text values and `true` bare keys).
pub fn render(record: &Map) -> String {
    let mut out = String::new();
    for (k, v) in record.iter() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(k);
        let text = match v {
            Value::Bool(true) => continue,
            Value::Str(s) => s.to_string(),
            other => other.to_text(),
        };
        out.push('=');
        let plain = !text.is_empty()
            && text
                .bytes()
                .all(|b| b > b' ' && b != b'"' && b != b'\\' && b != b'=' && b != 0x7f);
        if plain {
            out.push_str(&text);
            continue;
        }
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}
