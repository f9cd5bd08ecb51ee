//! Docker's json-file log format:
//!
//! ```text
//! {"log":"hello\n","stream":"stdout","time":"2024-01-15T10:30:00.123456789Z"}
//! ```
//!
//! Docker splits a long line every 16 KiB: each piece is a JSON line of its own whose
//! `log` does not end with `\n`; the piece that ends the line does. [`DockerParser`]
//! joins the pieces (per stream) and strips the final `\n`.
//!
//! Docker always writes the keys in this order with no spaces, so the parser reads
//! that shape directly, unescaping `log` into a reused buffer; any other valid JSON
//! object with a string `log` (extra `attrs`, other key order) is read with
//! `serde_json` instead.

use std::borrow::Cow;

use memchr::memchr;
use nagare_core::EventTime;
use serde::Deserialize;

use super::lines::Line;
use super::{LogLine, PendingStreams, Piece, Stream};

/// One docker json-file line, its `log` unescaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DockerLine<'a> {
    /// The `time` field; `None` when absent or not RFC 3339.
    pub time: Option<EventTime>,
    /// The `stream` field.
    pub stream: Stream,
    /// The `log` field, unescaped, with its `\n` if it had one.
    pub log: &'a [u8],
}

/// Why a line is not a docker json-file line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DockerError {
    /// Not a JSON object with a string `log` field.
    #[error("the line is not a JSON object with a string `log` field")]
    Json,
    /// `stream` is missing or not `stdout` / `stderr`.
    #[error("the `stream` field is missing or not `stdout` or `stderr`")]
    Stream,
}

#[derive(Deserialize)]
struct DockerJson<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(borrow, default)]
    stream: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    time: Option<Cow<'a, str>>,
}

/// Parses one line (without its `\n`), unescaping `log` into `scratch` (cleared
/// first); the returned `log` borrows `scratch`.
pub fn parse<'s>(line: &[u8], scratch: &'s mut Vec<u8>) -> Result<DockerLine<'s>, DockerError> {
    scratch.clear();
    if let Some((stream, time)) = parse_docker_shape(line, scratch) {
        return Ok(DockerLine {
            time: EventTime::parse_rfc3339(time),
            stream,
            log: scratch,
        });
    }
    scratch.clear();
    let json: DockerJson<'_> = serde_json::from_slice(line).map_err(|_| DockerError::Json)?;
    let stream = match json.stream.as_deref() {
        Some("stdout") => Stream::Stdout,
        Some("stderr") => Stream::Stderr,
        _ => return Err(DockerError::Stream),
    };
    scratch.extend_from_slice(json.log.as_bytes());
    Ok(DockerLine {
        time: json
            .time
            .as_deref()
            .and_then(|t| EventTime::parse_rfc3339(t.as_bytes())),
        stream,
        log: scratch,
    })
}

/// Reads the exact shape Docker writes; `None` for anything else.
fn parse_docker_shape<'a>(line: &'a [u8], log: &mut Vec<u8>) -> Option<(Stream, &'a [u8])> {
    let rest = line.strip_prefix(br#"{"log":""#)?;
    let used = unescape_string(rest, log, false)?;
    let rest = rest[used..].strip_prefix(br#","stream":""#)?;
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout") {
        (Stream::Stdout, r)
    } else {
        (Stream::Stderr, rest.strip_prefix(b"stderr")?)
    };
    let rest = rest.strip_prefix(br#"","time":""#)?;
    let end = memchr(b'"', rest)?;
    let time = &rest[..end];
    let tail = rest[end + 1..].strip_prefix(b"}")?;
    tail.iter()
        .all(u8::is_ascii_whitespace)
        .then_some((stream, time))
}

/// Unescapes the body of a JSON string (after its opening quote) into `out`, up to
/// the closing quote. Returns how many bytes of `s` were read, closing quote included;
/// `None` when the string is not closed or holds a bad escape. With `cut_off`, the
/// string is known to be cut short: everything up to the end (or to a cut escape) is
/// unescaped.
fn unescape_string(s: &[u8], out: &mut Vec<u8>, cut_off: bool) -> Option<usize> {
    let mut i = 0;
    loop {
        let Some(k) = memchr::memchr2(b'"', b'\\', &s[i..]) else {
            if cut_off {
                out.extend_from_slice(&s[i..]);
            }
            return None;
        };
        let j = i + k;
        out.extend_from_slice(&s[i..j]);
        if s[j] == b'"' {
            return Some(j + 1);
        }
        let esc = *s.get(j + 1)?;
        i = j + 2;
        match esc {
            b'"' => out.push(b'"'),
            b'\\' => out.push(b'\\'),
            b'/' => out.push(b'/'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'u' => {
                let hi = hex4(s.get(i..i + 4)?)?;
                i += 4;
                let c = if (0xd800..0xdc00).contains(&hi) {
                    // A high surrogate: the low half should follow as another escape.
                    match s
                        .get(i..i + 6)
                        .and_then(|x| x.strip_prefix(b"\\u"))
                        .and_then(hex4)
                    {
                        Some(lo) if (0xdc00..0xe000).contains(&lo) => {
                            i += 6;
                            char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                        }
                        _ => None,
                    }
                } else {
                    char::from_u32(hi)
                };
                let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut utf8 = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
            _ => return None,
        }
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in s {
        v = v * 16 + char::from(b).to_digit(16)?;
    }
    Some(v)
}

/// Turns docker json-file lines into messages, joining 16 KiB pieces.
///
/// - A merged message keeps the time of its first piece; the final `\n` is stripped.
/// - A message that grows past `max_line_bytes` is emitted in pieces flagged
///   `truncated`.
/// - A line that is not docker JSON is emitted whole as `malformed`.
/// - A JSON line longer than the line cap arrives in pieces (see
///   [`LineSplitter`](super::LineSplitter)) that are not JSON on their own: the first
///   is emitted with as much of `log` as it holds, the others as they are, all
///   flagged `truncated`.
#[derive(Debug, Clone)]
pub struct DockerParser {
    max_line_bytes: usize,
    scratch: Vec<u8>,
    pending: PendingStreams,
}

impl DockerParser {
    /// A parser whose merged messages are at most `max_line_bytes` long.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(1),
            scratch: Vec::new(),
            pending: PendingStreams::default(),
        }
    }

    /// Whether a piece is held, waiting for the rest of its message.
    pub fn has_pending(&self) -> bool {
        self.pending.is_open()
    }

    /// Forgets the pieces held (the file was truncated or replaced).
    pub fn reset(&mut self) {
        self.pending.clear();
    }

    /// Takes one line; calls `emit` for each message it completes (none, one or two).
    pub fn push(&mut self, line: Line<'_>, mut emit: impl FnMut(LogLine<'_>)) {
        if line.truncated {
            self.push_long_line_piece(line, emit);
            return;
        }
        let Ok(docker) = parse(line.bytes, &mut self.scratch) else {
            emit(LogLine::malformed(line));
            return;
        };
        let (bytes, last) = match docker.log.strip_suffix(b"\n") {
            Some(body) => (body, true),
            None => (docker.log, false),
        };
        let piece = Piece {
            time: docker.time,
            stream: docker.stream,
            bytes,
            last,
            cri: false,
            offset: line.offset,
        };
        self.pending
            .get(docker.stream)
            .add(piece, self.max_line_bytes, &mut emit);
    }

    fn push_long_line_piece(&mut self, line: Line<'_>, mut emit: impl FnMut(LogLine<'_>)) {
        self.scratch.clear();
        let head = (!line.continuation)
            .then(|| line.bytes.strip_prefix(br#"{"log":""#))
            .flatten();
        let message = match head {
            Some(body) => {
                let _ = unescape_string(body, &mut self.scratch, true);
                &self.scratch[..]
            }
            None => line.bytes,
        };
        emit(LogLine {
            time: None,
            stream: None,
            logtag: None,
            message,
            truncated: true,
            malformed: false,
            offset: line.offset,
        });
    }
}
