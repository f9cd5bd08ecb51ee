//! Syslog lines, RFC 3164 and RFC 5424, parsed by hand, with Fluentd's field names.
//!
//! RFC 3164 (what rsyslog and syslog-ng write to `/var/log/syslog`), with or without
//! the `<pri>` prefix:
//!
//! ```text
//! <38>Jan 15 10:30:00 web-1 sshd[4321]: Accepted publickey for alice from 10.0.0.5 port 50522 ssh2
//! ```
//!
//! gives `pri` (when present), `host`, `ident`, `pid` and `message`. The timestamp
//! has no year: the year that puts it closest to the event's own time is taken, so
//! a December line read in January lands in December of the year before. It has no
//! offset either: `timezone` applies. A fraction (`10:30:00.123`) and rsyslog's
//! high-precision RFC 3339 timestamps are read too. As Fluentd does, the word after
//! the host is the `ident` with or without its `:`.
//!
//! RFC 5424:
//!
//! ```text
//! <165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"] An application event log entry...
//! ```
//!
//! gives `pri`, `host`, `ident` (APP-NAME), `pid` (PROCID), `msgid`, `extradata`
//! (the structured data as written, or as a map `{SD-ID: {name: value}}` with
//! `parse_extradata`) and `message` (without its UTF-8 BOM). A NILVALUE (`-`) leaves
//! its field out. `message_format: auto` (the default) tells the two apart by the
//! version after `<pri>`.

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Str, Value};
use serde::Deserialize;

use super::scan::Cursor;
use super::{BuiltinTime, text, text_value};
use crate::error::ParseError;
use crate::time::{Civil, RawTime, fraction, month_abbr, parse_iso8601, two_digits};

/// Which syslog protocol lines are in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageFormat {
    /// BSD syslog.
    Rfc3164,
    /// The IETF syslog protocol.
    Rfc5424,
    /// Either, decided per line.
    #[default]
    Auto,
}

/// Config of the `syslog` format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `rfc3164`, `rfc5424` or `auto` (default).
    #[serde(default)]
    pub message_format: MessageFormat,
    /// RFC 5424: make `extradata` a map `{SD-ID: {name: value}}` instead of the
    /// structured data's text.
    #[serde(default)]
    pub parse_extradata: bool,
}

/// The `syslog` parser.
#[derive(Debug, Clone)]
pub struct SyslogParser {
    format: MessageFormat,
    parse_extradata: bool,
}

const NAME: &str = "syslog";

impl SyslogParser {
    /// Builds the parser.
    pub fn new(config: &SyslogConfig) -> Result<Self, Invalid> {
        Ok(Self {
            format: config.message_format,
            parse_extradata: config.parse_extradata,
        })
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let line = strip_newline(line);
        match self.format {
            MessageFormat::Rfc3164 => rfc3164(line, record),
            MessageFormat::Rfc5424 => self.rfc5424(line, record),
            MessageFormat::Auto if is_rfc5424(line) => self.rfc5424(line, record),
            MessageFormat::Auto => rfc3164(line, record),
        }
    }

    fn rfc5424(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        let mut c = Cursor::new(line, NAME);
        if c.peek() == Some(b'<') {
            let pri = priority(&mut c)?;
            let at = c;
            let version = c.token();
            if version.is_empty()
                || version.len() > 3
                || version[0] == b'0'
                || !version.iter().all(u8::is_ascii_digit)
            {
                return Err(at.error("the protocol version (`1`) after the priority"));
            }
            c.expect(b' ', "a space after the version")?;
            record.push_unchecked("pri", Value::Int(pri));
        }
        let start = c.pos;
        let stamp = c.token();
        let time = if stamp == b"-" {
            None
        } else {
            Some(BuiltinTime {
                raw: parse_iso8601(stamp).map(RawTime::Civil),
                text: start..c.pos,
            })
        };
        for (key, what) in [
            ("host", "a space after the timestamp"),
            ("ident", "a space after the host"),
            ("pid", "a space after the app name"),
            ("msgid", "a space after the process id"),
        ] {
            c.expect(b' ', what)?;
            let at = c;
            let token = c.token();
            if token.is_empty() {
                return Err(at.error("a header field or `-`"));
            }
            if token != b"-" {
                record.push_unchecked(key, text_value(token));
            }
        }
        c.expect(b' ', "a space after the message id")?;
        let sd_start = c.pos;
        if c.eat(b'-') {
        } else {
            let mut map = Map::new();
            while c.peek() == Some(b'[') {
                structured_element(&mut c, &mut map)?;
            }
            if c.pos == sd_start {
                return Err(c.error("structured data (`[id name=\"value\"]`) or `-`"));
            }
            record.push_unchecked(
                "extradata",
                if self.parse_extradata {
                    Value::Map(map)
                } else {
                    text_value(&line[sd_start..c.pos])
                },
            );
        }
        match c.peek() {
            None => {}
            Some(b' ') => {
                let msg = &line[c.pos + 1..];
                let msg = msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg);
                record.push_unchecked("message", text_value(msg));
            }
            Some(_) => return Err(c.error("a space before the message")),
        }
        Ok(time)
    }
}

fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `<pri>` followed by a version digit and a space: RFC 5424.
fn is_rfc5424(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"<") else {
        return false;
    };
    let Some(close) = rest.iter().take(4).position(|&b| b == b'>') else {
        return false;
    };
    let after = &rest[close + 1..];
    let n = after.iter().take_while(|b| b.is_ascii_digit()).count();
    (1..=3).contains(&n) && after[0] != b'0' && after.get(n) == Some(&b' ')
}

/// `<N>` with N from 0 to 191.
fn priority(c: &mut Cursor<'_>) -> Result<i64, ParseError> {
    c.expect(b'<', "`<` before the priority")?;
    let at = *c;
    let digits = c.until(b'>', "`>` after the priority")?;
    if digits.is_empty() || digits.len() > 3 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(at.error("a priority from 0 to 191"));
    }
    let pri = digits
        .iter()
        .fold(0i64, |a, &b| a * 10 + i64::from(b - b'0'));
    if pri > 191 {
        return Err(at.error("a priority from 0 to 191"));
    }
    Ok(pri)
}

fn rfc3164(line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
    let mut c = Cursor::new(line, NAME);
    let pri = if c.peek() == Some(b'<') {
        Some(priority(&mut c)?)
    } else {
        None
    };
    let start = c.pos;
    let raw = if c.peek().is_some_and(|b| b.is_ascii_digit()) {
        // rsyslog's high-precision format: an RFC 3339 timestamp.
        let stamp = c.token();
        parse_iso8601(stamp).map(RawTime::Civil)
    } else {
        bsd_time(&mut c)?
    };
    let time = BuiltinTime {
        raw,
        text: start..c.pos,
    };
    c.expect(b' ', "a space after the timestamp")?;
    let at = c;
    let host = c.token();
    if host.is_empty() {
        return Err(at.error("a host name"));
    }
    c.expect(b' ', "a space after the host name")?;
    if let Some(pri) = pri {
        record.push_unchecked("pri", Value::Int(pri));
    }
    record.push_unchecked("host", text_value(host));
    let rest = c.rest();
    let message = match memchr::memchr(b' ', rest) {
        None => rest,
        Some(i) => {
            let tag = &rest[..i];
            let tag = tag.strip_suffix(b":").unwrap_or(tag);
            match (tag.strip_suffix(b"]"), memchr::memchr(b'[', tag)) {
                (Some(inner), Some(open)) => {
                    record.push_unchecked("ident", text_value(&tag[..open]));
                    record.push_unchecked("pid", text_value(&inner[open + 1..]));
                }
                _ => record.push_unchecked("ident", text_value(tag)),
            }
            // As Fluentd's expression ` *(?<message>.*)`: spaces after the tag go.
            let msg = &rest[i + 1..];
            let n = msg.iter().take_while(|&&b| b == b' ').count();
            &msg[n..]
        }
    };
    record.push_unchecked("message", text_value(message));
    Ok(Some(time))
}

/// `Mmm dd HH:MM:SS[.fraction]`, the day padded with a space (`Jan  5`).
fn bsd_time(c: &mut Cursor<'_>) -> Result<Option<RawTime>, ParseError> {
    let s = c.rest();
    if s.len() < 15 {
        return Err(c.error("a timestamp `Mmm dd HH:MM:SS`"));
    }
    let day = match s[4] {
        b' ' => two_digits(&[b'0', s[5]], 0),
        _ => two_digits(s, 4),
    };
    if s[3] != b' ' || s[6] != b' ' || s[9] != b':' || s[12] != b':' {
        return Err(c.error("a timestamp `Mmm dd HH:MM:SS`"));
    }
    let mut n = 15;
    let mut nanos = 0;
    if s.get(15) == Some(&b'.') {
        let (f, used) = fraction(&s[16..]);
        nanos = f;
        n += 1 + used;
    }
    c.pos += n;
    let civil = (|| {
        Some(Civil {
            year: None,
            month: month_abbr(&s[..3])?,
            day: day?,
            hour: two_digits(s, 7)?,
            minute: two_digits(s, 10)?,
            second: two_digits(s, 13)?,
            nanos,
            offset: None,
        })
    })();
    Ok(civil.map(RawTime::Civil))
}

/// One `[SD-ID name="value" ...]` element.
fn structured_element(c: &mut Cursor<'_>, map: &mut Map) -> Result<(), ParseError> {
    c.expect(b'[', "`[` before an SD-ID")?;
    let at = *c;
    let id = sd_name(c);
    if id.is_empty() {
        return Err(at.error("an SD-ID"));
    }
    let mut params = Map::new();
    loop {
        match c.peek() {
            Some(b']') => {
                c.pos += 1;
                break;
            }
            Some(b' ') => {
                c.pos += 1;
                let at = *c;
                let name = sd_name(c);
                if name.is_empty() {
                    return Err(at.error("a parameter name"));
                }
                c.expect(b'=', "`=` after the parameter name")?;
                c.expect(b'"', "a quoted parameter value")?;
                let value = sd_value(c)?;
                params.insert(text(name), Value::Str(value));
            }
            _ => return Err(c.error("a space or `]` in structured data")),
        }
    }
    map.insert(text(id), Value::Map(params));
    Ok(())
}

/// An SD-NAME: printable ASCII except `=`, space, `]` and `"`.
fn sd_name<'a>(c: &mut Cursor<'a>) -> &'a [u8] {
    let rest = c.rest();
    let n = rest
        .iter()
        .take_while(|&&b| (33..=126).contains(&b) && !matches!(b, b'=' | b']' | b'"'))
        .count()
        .min(32);
    c.pos += n;
    &rest[..n]
}

/// A PARAM-VALUE after its opening quote, with `\"`, `\\` and `\]` undone.
fn sd_value(c: &mut Cursor<'_>) -> Result<Str, ParseError> {
    let start = c.pos;
    let mut out: Option<Vec<u8>> = None;
    let mut i = start;
    while i < c.line.len() {
        match c.line[i] {
            b'"' => {
                c.pos = i + 1;
                return Ok(match out {
                    Some(v) => text(&v),
                    None => text(&c.line[start..i]),
                });
            }
            b'\\' if matches!(c.line.get(i + 1), Some(b'"' | b'\\' | b']')) => {
                let buf = out.get_or_insert_with(|| c.line[start..i].to_vec());
                buf.push(c.line[i + 1]);
                i += 2;
            }
            b => {
                if let Some(buf) = out.as_mut() {
                    buf.push(b);
                }
                i += 1;
            }
        }
    }
    Err(ParseError::syntax(
        NAME,
        start - 1,
        "a closing quote for this parameter value",
    ))
}
