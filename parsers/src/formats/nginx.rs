//! nginx logs, parsed by hand (no regular expression).
//!
//! `nginx` reads the `combined` access log format and the `main` format of the
//! official image, which adds `"$http_x_forwarded_for"`:
//!
//! ```text
//! 10.0.0.1 - - [15/Jan/2024:10:30:00 +0000] "GET /api/v1/users HTTP/1.1" 200 612 "-" "curl/8.5.0" "-"
//! ```
//!
//! into Fluentd's `remote, host, user, method, path, code, size, referer, agent`
//! (and `http_x_forwarded_for` when present). As for `apache2`, `-` becomes null and
//! `code` and `size` are integers (Fluentd's `nginx` leaves them as text).
//!
//! `nginx_error` reads the error log:
//!
//! ```text
//! 2024/01/15 10:30:00 [error] 31#31: *1 open() "/usr/share/nginx/html/favicon.ico" failed (2: No such file or directory), client: 10.0.0.1, server: localhost, request: "GET /favicon.ico HTTP/1.1", host: "localhost"
//! ```
//!
//! into `level`, `pid`, `tid`, `cid` (the connection, when there is one), `message`
//! and the context nginx appends: `client`, `server`, `request`, `subrequest`,
//! `upstream`, `host`, `referrer`. The time has no offset: `timezone` applies.

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Value};
use serde::Deserialize;

use super::apache::access_fields;
use super::scan::{Cursor, quoted_value, unescape};
use super::{BuiltinTime, dash_or_text, text_value};
use crate::error::ParseError;
use crate::time::{Civil, RawTime, two_digits};

/// Config of the `nginx` format (it has no keys of its own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {}

/// The `nginx` parser.
#[derive(Debug, Clone, Default)]
pub struct NginxParser;

impl NginxParser {
    /// Builds the parser.
    pub fn new(_config: &NginxConfig) -> Result<Self, Invalid> {
        Ok(Self)
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let mut c = Cursor::new(line, "nginx");
        let remote = c.token();
        c.expect(b' ', "a space after the remote address")?;
        let host = c.token();
        c.expect(b' ', "a space after the host")?;
        let access = access_fields(&mut c, true)?;
        record.push_unchecked("remote", dash_or_text(remote));
        record.push_unchecked("host", dash_or_text(host));
        let time = access.push_into(record);
        Ok(Some(time))
    }
}

/// Config of the `nginx_error` format (it has no keys of its own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxErrorConfig {}

/// The `nginx_error` parser.
#[derive(Debug, Clone, Default)]
pub struct NginxErrorParser;

/// The context nginx appends to an error message, in the order it writes it.
const CONTEXT: [&[u8]; 7] = [
    b"client",
    b"server",
    b"request",
    b"subrequest",
    b"upstream",
    b"host",
    b"referrer",
];

impl NginxErrorParser {
    /// Builds the parser.
    pub fn new(_config: &NginxErrorConfig) -> Result<Self, Invalid> {
        Ok(Self)
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let mut c = Cursor::new(line, "nginx_error");
        if line.len() < 19 {
            return Err(c.error("a time `yyyy/mm/dd HH:MM:SS`"));
        }
        let time = BuiltinTime {
            raw: error_time(&line[..19]),
            text: 0..19,
        };
        c.pos = 19;
        c.expect(b' ', "a space after the time")?;
        c.expect(b'[', "`[level]` after the time")?;
        let level = c.until(b']', "`]` after the level")?;
        c.expect(b' ', "a space after the level")?;
        let at = c;
        let ids = c.until(b':', "`pid#tid:` after the level")?;
        let Some(hash) = memchr::memchr(b'#', ids) else {
            return Err(at.error("`pid#tid:` after the level"));
        };
        let (pid, tid) = (&ids[..hash], &ids[hash + 1..]);
        if !all_digits(pid) || !all_digits(tid) {
            return Err(at.error("`pid#tid:` after the level"));
        }
        record.push_unchecked("level", text_value(level));
        record.push_unchecked("pid", number(pid));
        record.push_unchecked("tid", number(tid));
        c.skip_spaces();
        if c.peek() == Some(b'*') {
            let rest = &c.rest()[1..];
            let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if n > 0 && rest.get(n) == Some(&b' ') {
                record.push_unchecked("cid", number(&rest[..n]));
                c.pos += n + 2;
            }
        }
        let rest = c.rest();
        let (message, context) = split_context(rest);
        record.push_unchecked("message", text_value(message));
        if let Some(context) = context {
            parse_context(context, record);
        }
        Ok(Some(time))
    }
}

fn all_digits(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 18 && s.iter().all(u8::is_ascii_digit)
}

fn number(s: &[u8]) -> Value {
    Value::Int(
        s.iter()
            .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0')),
    )
}

/// Splits the message from the context nginx appended, which starts at the last
/// `, client: ` (a message may itself contain the words).
fn split_context(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memmem::rfind(s, b", client: ") {
        Some(i) => (&s[..i], Some(&s[i + 2..])),
        None => (s, None),
    }
}

/// `client: 10.0.0.1, server: localhost, request: "GET / HTTP/1.1", host: "x"`.
fn parse_context(mut s: &[u8], record: &mut Map) {
    while !s.is_empty() {
        let Some(colon) = memchr::memmem::find(s, b": ") else {
            return;
        };
        let key = &s[..colon];
        let mut rest = &s[colon + 2..];
        let (value, after) = if rest.first() == Some(&b'"') {
            // A quoted value ends at the quote followed by `, ` and a known key, or
            // by the end of the line.
            let body = &rest[1..];
            let end = find_quoted_end(body);
            match end {
                Some(e) => {
                    let v = quoted_value(&body[..e], false);
                    rest = &body[e + 1..];
                    (v, rest)
                }
                None => (Value::Str(unescape(body, false)), &rest[rest.len()..]),
            }
        } else {
            let end = next_context(rest).unwrap_or(rest.len());
            let v = text_value(&rest[..end]);
            (v, &rest[end..])
        };
        if CONTEXT.contains(&key) {
            record.insert(super::text(key), value);
        }
        s = after.strip_prefix(b", ").unwrap_or(&after[after.len()..]);
    }
}

/// Where `, <known key>: ` starts in `s`.
fn next_context(s: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memmem::find(&s[from..], b", ") {
        let at = from + i;
        let tail = &s[at + 2..];
        if CONTEXT
            .iter()
            .any(|k| tail.starts_with(k) && tail[k.len()..].starts_with(b": "))
        {
            return Some(at);
        }
        from = at + 2;
    }
    None
}

fn find_quoted_end(body: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'"', &body[from..]) {
        let at = from + i;
        let tail = &body[at + 1..];
        if tail.is_empty() || next_context(tail) == Some(0) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// `yyyy/mm/dd HH:MM:SS`.
fn error_time(s: &[u8]) -> Option<RawTime> {
    if s[4] != b'/' || s[7] != b'/' || s[10] != b' ' || s[13] != b':' || s[16] != b':' {
        return None;
    }
    Some(RawTime::Civil(Civil {
        year: Some((two_digits(s, 0)? * 100 + two_digits(s, 2)?) as i32),
        month: two_digits(s, 5)?,
        day: two_digits(s, 8)?,
        hour: two_digits(s, 11)?,
        minute: two_digits(s, 14)?,
        second: two_digits(s, 17)?,
        nanos: 0,
        offset: None,
    }))
}
