//! A cursor over one line, shared by the hand-written parsers (Apache, nginx,
//! syslog): each step either advances or returns a syntax error at the current byte.

use nagare_core::value::{Str, Value};

use crate::error::ParseError;

/// A position in a line being parsed by the format `format`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cursor<'a> {
    pub line: &'a [u8],
    pub pos: usize,
    pub format: &'static str,
}

impl<'a> Cursor<'a> {
    pub fn new(line: &'a [u8], format: &'static str) -> Self {
        Self {
            line,
            pos: 0,
            format,
        }
    }

    #[inline]
    pub fn error(&self, expected: &'static str) -> ParseError {
        ParseError::syntax(self.format, self.pos, expected)
    }

    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.line[self.pos..]
    }

    #[inline]
    pub fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.line.get(self.pos).copied()
    }

    /// Consumes `b` or fails with `expected`.
    #[inline]
    pub fn expect(&mut self, b: u8, expected: &'static str) -> Result<(), ParseError> {
        if self.peek() == Some(b) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(expected))
        }
    }

    /// Consumes `b` if it is next.
    #[inline]
    pub fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Everything up to the next space (or the end), which is not consumed.
    #[inline]
    pub fn token(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let n = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        self.pos += n;
        &rest[..n]
    }

    /// Everything up to `b`, which is consumed; fails when there is no `b`.
    #[inline]
    pub fn until(&mut self, b: u8, expected: &'static str) -> Result<&'a [u8], ParseError> {
        let rest = self.rest();
        match memchr::memchr(b, rest) {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(ParseError::syntax(self.format, self.line.len(), expected)),
        }
    }

    /// A `"`-quoted string starting here, where `\` escapes the next byte (as Apache
    /// and nginx write `\"`): (the text between the quotes, whether it has escapes).
    #[inline]
    pub fn quoted(&mut self, expected: &'static str) -> Result<(&'a [u8], bool), ParseError> {
        self.expect(b'"', expected)?;
        let start = self.pos;
        let mut escaped = false;
        let mut i = start;
        loop {
            match memchr::memchr2(b'"', b'\\', &self.line[i..]) {
                Some(n) if self.line[i + n] == b'"' => {
                    self.pos = i + n + 1;
                    return Ok((&self.line[start..i + n], escaped));
                }
                Some(n) => {
                    escaped = true;
                    i += n + 2;
                    if i > self.line.len() {
                        break;
                    }
                }
                None => break,
            }
        }
        Err(ParseError::syntax(
            self.format,
            start - 1,
            "a closing quote (the quote that opens here is never closed)",
        ))
    }

    /// Skips spaces.
    #[inline]
    pub fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }
}

/// Text of a quoted field with its `\"` and `\\` escapes undone; other escapes
/// (`\xhh`) are kept as the server wrote them.
pub(crate) fn unescape(raw: &[u8], escaped: bool) -> Str {
    if !escaped {
        return super::text(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && matches!(raw.get(i + 1), Some(b'"' | b'\\')) {
            out.push(raw[i + 1]);
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    super::text(&out)
}

/// A quoted field as a value: `-` is null, as Fluentd's apache2 parser does.
pub(crate) fn quoted_value(raw: &[u8], escaped: bool) -> Value {
    if raw == b"-" {
        Value::Null
    } else {
        Value::Str(unescape(raw, escaped))
    }
}

/// Digits as an integer; `-` is null. `None` for anything else.
#[inline]
pub(crate) fn int_or_dash(token: &[u8]) -> Option<Value> {
    if token == b"-" {
        return Some(Value::Null);
    }
    if token.is_empty() || token.len() > 18 || !token.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(Value::Int(
        token
            .iter()
            .fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0')),
    ))
}

/// The request line of an access log, as Fluentd splits it: the method, then the
/// path up to the last space (the protocol after it is dropped), or the rest when
/// there is no protocol.
pub(crate) fn request(raw: &[u8], escaped: bool) -> (Value, Value) {
    let (method, rest) = match memchr::memchr(b' ', raw) {
        Some(i) => (&raw[..i], &raw[i + 1..]),
        None => (raw, &raw[raw.len()..]),
    };
    let rest = trim_spaces(rest);
    let path = match memchr::memrchr(b' ', rest) {
        Some(i) => trim_spaces(&rest[..i]),
        None => rest,
    };
    let method = super::text_value(method);
    let path = if path.is_empty() {
        Value::Null
    } else {
        Value::Str(unescape(path, escaped))
    };
    (method, path)
}

fn trim_spaces(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ').map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

/// `dd/Mon/yyyy:HH:MM:SS +zzzz`, the `%t` of Apache and `$time_local` of nginx.
#[inline]
pub(crate) fn common_log_time(s: &[u8]) -> Option<crate::time::RawTime> {
    use crate::time::{Civil, RawTime, month_abbr, two_digits};
    if s.len() != 26 || s[2] != b'/' || s[6] != b'/' || s[11] != b':' || s[20] != b' ' {
        return None;
    }
    let year = two_digits(s, 7)? * 100 + two_digits(s, 9)?;
    if s[14] != b':' || s[17] != b':' {
        return None;
    }
    let (offset, n) = crate::time::parse_offset(&s[21..])?;
    if n != 5 {
        return None;
    }
    Some(RawTime::Civil(Civil {
        year: Some(year as i32),
        month: month_abbr(&s[3..6])?,
        day: two_digits(s, 0)?,
        hour: two_digits(s, 12)?,
        minute: two_digits(s, 15)?,
        second: two_digits(s, 18)?,
        nanos: 0,
        offset: Some(offset),
    }))
}
