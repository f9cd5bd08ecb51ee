//! Apache httpd logs, parsed by hand (no regular expression), with Fluentd's field
//! names.
//!
//! `apache2` reads the common and combined access log formats:
//!
//! ```text
//! 192.168.1.20 - alice [15/Jan/2024:10:30:00 +0000] "GET /index.html HTTP/1.1" 200 2326 "http://example.com/start" "Mozilla/5.0 (X11; Linux x86_64)"
//! ```
//!
//! into `host, user, method, path, code, size, referer, agent` as Fluentd's `apache2`
//! does: `-` becomes null, `code` and `size` are integers, the protocol is dropped,
//! and the common format has null `referer` and `agent`. `\"` and `\\` in quoted
//! fields are undone.
//!
//! `apache_error` reads the error log of httpd 2.2 and 2.4:
//!
//! ```text
//! [Mon Jan 15 10:30:00.123456 2024] [core:error] [pid 1234:tid 140017] [client 10.0.0.7:51234] AH00126: Invalid URI in request GET /%zz HTTP/1.1
//! ```
//!
//! into `level`, `module` (2.4), `pid`, `tid` (threaded MPMs), `client` and
//! `message`. Fluentd keeps `core:error` and `1234:tid 140017` whole; they are
//! split here so that `level` means the same in 2.2 and 2.4. The time has no offset:
//! `timezone` applies.

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Value};
use serde::Deserialize;

use super::scan::{Cursor, common_log_time, int_or_dash, quoted_value, request};
use super::{BuiltinTime, dash_or_text, text_value};
use crate::error::ParseError;
use crate::time::{Civil, RawTime, fraction, month_abbr, two_digits, weekday_from_name};

/// Config of the `apache2` format (it has no keys of its own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Apache2Config {}

/// The `apache2` parser.
#[derive(Debug, Clone, Default)]
pub struct Apache2Parser;

impl Apache2Parser {
    /// Builds the parser.
    pub fn new(_config: &Apache2Config) -> Result<Self, Invalid> {
        Ok(Self)
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let mut c = Cursor::new(line, "apache2");
        let host = c.token();
        c.expect(b' ', "a space after the host")?;
        let _ident = c.token();
        c.expect(b' ', "a space after the identity")?;
        let access = access_fields(&mut c, false)?;
        record.push_unchecked("host", dash_or_text(host));
        let time = access.push_into(record);
        Ok(Some(time))
    }
}

/// The fields every access log line shares, from the user on.
pub(crate) struct AccessFields {
    user: Value,
    time: BuiltinTime,
    method: Value,
    path: Value,
    code: Value,
    size: Value,
    referer: Value,
    agent: Value,
    forwarded: Option<Value>,
}

impl AccessFields {
    /// Pushes `user, method, path, code, size, referer, agent` (and
    /// `http_x_forwarded_for` when present) in Fluentd's order; returns the time.
    pub(crate) fn push_into(self, record: &mut Map) -> BuiltinTime {
        record.push_unchecked("user", self.user);
        record.push_unchecked("method", self.method);
        record.push_unchecked("path", self.path);
        record.push_unchecked("code", self.code);
        record.push_unchecked("size", self.size);
        record.push_unchecked("referer", self.referer);
        record.push_unchecked("agent", self.agent);
        if let Some(xff) = self.forwarded {
            record.push_unchecked("http_x_forwarded_for", xff);
        }
        self.time
    }
}

/// `user [time] "request" code size` then, in the combined format, `"referer"
/// "agent"` and, when `forwarded` is allowed, `"x-forwarded-for"`; the line must end
/// there.
pub(crate) fn access_fields(
    c: &mut Cursor<'_>,
    forwarded: bool,
) -> Result<AccessFields, ParseError> {
    let user = c.token();
    c.expect(b' ', "a space after the user")?;
    let time = access_time(c)?;
    c.expect(b' ', "a space after the time")?;
    let (req, escaped) = c.quoted("a quoted request line")?;
    c.expect(b' ', "a space after the request")?;
    let code = status(c)?;
    c.expect(b' ', "a space after the status code")?;
    let size = size(c)?;
    let mut xff = None;
    let (referer, agent) = if c.eat(b' ') {
        let (referer, re) = c.quoted("a quoted referer")?;
        c.expect(b' ', "a space after the referer")?;
        let (agent, ae) = c.quoted("a quoted user agent")?;
        if forwarded && c.eat(b' ') {
            let (value, xe) = c.quoted("a quoted X-Forwarded-For")?;
            xff = Some(quoted_value(value, xe));
        }
        (quoted_value(referer, re), quoted_value(agent, ae))
    } else {
        (Value::Null, Value::Null)
    };
    if !c.at_end() {
        return Err(c.error("the end of the line"));
    }
    let (method, path) = request(req, escaped);
    Ok(AccessFields {
        user: dash_or_text(user),
        time,
        method,
        path,
        code,
        size,
        referer,
        agent,
        forwarded: xff,
    })
}

/// `[dd/Mon/yyyy:HH:MM:SS +zzzz]` at the cursor.
fn access_time(c: &mut Cursor<'_>) -> Result<BuiltinTime, ParseError> {
    c.expect(b'[', "`[` before the time")?;
    let start = c.pos;
    c.until(b']', "`]` after the time")?;
    let text = start..c.pos - 1;
    Ok(BuiltinTime {
        raw: common_log_time(&c.line[text.clone()]),
        text,
    })
}

/// The status code: three digits (or `-`).
fn status(c: &mut Cursor<'_>) -> Result<Value, ParseError> {
    let at = *c;
    int_or_dash(c.token()).ok_or_else(|| at.error("a status code"))
}

/// The response size: digits or `-`.
fn size(c: &mut Cursor<'_>) -> Result<Value, ParseError> {
    let at = *c;
    int_or_dash(c.token()).ok_or_else(|| at.error("a size in bytes or `-`"))
}

/// Config of the `apache_error` format (it has no keys of its own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApacheErrorConfig {}

/// The `apache_error` parser.
#[derive(Debug, Clone, Default)]
pub struct ApacheErrorParser;

impl ApacheErrorParser {
    /// Builds the parser.
    pub fn new(_config: &ApacheErrorConfig) -> Result<Self, Invalid> {
        Ok(Self)
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let mut c = Cursor::new(line, "apache_error");
        c.expect(b'[', "`[` before the time")?;
        // The weekday is not part of the time: it adds nothing to the date.
        let at = c;
        let day = c.token();
        if weekday_from_name(day).is_none_or(|(_, n)| n != day.len()) {
            return Err(at.error("a weekday (`Mon`)"));
        }
        c.expect(b' ', "a space after the weekday")?;
        let start = c.pos;
        c.until(b']', "`]` after the time")?;
        let text = start..c.pos - 1;
        let time = BuiltinTime {
            raw: error_log_time(&line[text.clone()]),
            text,
        };
        c.expect(b' ', "a space after the time")?;
        c.expect(b'[', "`[level]` after the time")?;
        let level = c.until(b']', "`]` after the level")?;
        match memchr::memrchr(b':', level) {
            Some(i) => {
                record.push_unchecked("level", text_value(&level[i + 1..]));
                if i > 0 {
                    record.push_unchecked("module", text_value(&level[..i]));
                }
            }
            None => record.push_unchecked("level", text_value(level)),
        }
        if c.rest().starts_with(b" [pid ") {
            c.pos += 6;
            let pid = c.until(b']', "`]` after the pid")?;
            match memchr::memmem::find(pid, b":tid ") {
                Some(i) => {
                    record.push_unchecked("pid", text_value(&pid[..i]));
                    record.push_unchecked("tid", text_value(&pid[i + 5..]));
                }
                None => record.push_unchecked("pid", text_value(pid)),
            }
        }
        if c.rest().starts_with(b" [client ") {
            c.pos += 9;
            let client = c.until(b']', "`]` after the client")?;
            record.push_unchecked("client", text_value(client));
        }
        let message = match c.peek() {
            None => &line[line.len()..],
            Some(b' ') => &line[c.pos + 1..],
            Some(_) => return Err(c.error("a space before the message")),
        };
        record.push_unchecked("message", text_value(message));
        Ok(Some(time))
    }
}

/// `Mon dd HH:MM:SS[.ffffff] yyyy` (the weekday already skipped).
fn error_log_time(s: &[u8]) -> Option<RawTime> {
    if s.len() < 20 || s[3] != b' ' || s[6] != b' ' || s[9] != b':' || s[12] != b':' {
        return None;
    }
    let day = match s[4] {
        b' ' => two_digits(&[b'0', s[5]], 0)?,
        _ => two_digits(s, 4)?,
    };
    let mut i = 15;
    let mut nanos = 0;
    if s[i] == b'.' {
        let (n, used) = fraction(&s[i + 1..]);
        if used == 0 {
            return None;
        }
        nanos = n;
        i += 1 + used;
    }
    if s.get(i) != Some(&b' ') || s.len() != i + 5 {
        return None;
    }
    let year = two_digits(s, i + 1)? * 100 + two_digits(s, i + 3)?;
    Some(RawTime::Civil(Civil {
        year: Some(year as i32),
        month: month_abbr(&s[..3])?,
        day,
        hour: two_digits(s, 7)?,
        minute: two_digits(s, 10)?,
        second: two_digits(s, 13)?,
        nanos,
        offset: None,
    }))
}
