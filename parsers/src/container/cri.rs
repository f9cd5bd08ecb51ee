//! The CRI log format written by the kubelet for containerd and CRI-O:
//!
//! ```text
//! 2024-01-15T10:30:00.123456789Z stdout F the message
//! 2024-01-15T10:30:00.123456789Z stderr P first part of a long line
//! ```
//!
//! Each line is `<RFC 3339 time> <stdout|stderr> <tags> <message>`. The first tag is
//! `F` (full: the message ends here) or `P` (partial: the runtime split a long
//! message, and the next pieces of the same stream follow); more tags may follow it
//! after a `:`. [`CriParser`] joins the `P` pieces with the `F` piece that ends them,
//! per stream, so interleaved stdout and stderr pieces are merged correctly.

use nagare_core::EventTime;

use super::lines::Line;
use super::{LogLine, PendingStreams, Piece, Stream};

/// One CRI line, split into its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CriLine<'a> {
    /// When the runtime wrote the line.
    pub time: EventTime,
    /// Which output of the container it came from.
    pub stream: Stream,
    /// `P`: more pieces of this message follow.
    pub partial: bool,
    /// The message (or piece of it), borrowed from the line.
    pub message: &'a [u8],
}

/// Why a line is not a CRI line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CriError {
    /// The first field is not an RFC 3339 time.
    #[error("the line does not start with an RFC 3339 time")]
    Time,
    /// The second field is not `stdout` or `stderr`.
    #[error("the stream is not `stdout` or `stderr`")]
    Stream,
    /// The third field does not start with the tag `P` or `F`.
    #[error("the tags do not start with `P` or `F`")]
    Tag,
}

/// Parses one CRI line (without its `\n`).
pub fn parse(line: &[u8]) -> Result<CriLine<'_>, CriError> {
    let (time, rest) = split_field(line).ok_or(CriError::Time)?;
    let time = EventTime::parse_rfc3339(time).ok_or(CriError::Time)?;
    let (stream, rest) = split_field(rest).ok_or(CriError::Stream)?;
    let stream = match stream {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return Err(CriError::Stream),
    };
    // The tags are the last field before the message; the message may be empty, in
    // which case some runtimes omit the separating space.
    let (tags, message) = match memchr::memchr(b' ', rest) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let first_tag = tags.split(|&b| b == b':').next().unwrap_or_default();
    let partial = match first_tag {
        b"F" => false,
        b"P" => true,
        _ => return Err(CriError::Tag),
    };
    Ok(CriLine {
        time,
        stream,
        partial,
        message,
    })
}

/// The field up to the next space, and what follows the space.
fn split_field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = memchr::memchr(b' ', s)?;
    Some((&s[..i], &s[i + 1..]))
}

/// The header of the physical line whose first piece was cut at the line cap, so that
/// its further pieces keep its time and stream.
#[derive(Debug, Clone, Copy)]
struct LongLine {
    time: EventTime,
    stream: Stream,
    partial: bool,
}

/// Turns CRI lines into messages, joining `P` pieces with the `F` piece that ends them.
///
/// - A merged message keeps the time of its first piece and is emitted with logtag
///   `F`.
/// - A message that grows past `max_line_bytes` is emitted in pieces flagged
///   `truncated`; a piece emitted before the message ended carries logtag `P`.
/// - A line that is not CRI is emitted whole as `malformed`, without time or stream.
/// - A line longer than the line cap arrives in pieces (see
///   [`LineSplitter`](super::LineSplitter)); each piece is emitted on its own,
///   flagged `truncated`, with the time and stream of the first.
/// - `P` pieces whose `F` never came stay held: [`CriParser::has_pending`] says so.
#[derive(Debug, Clone)]
pub struct CriParser {
    max_line_bytes: usize,
    pending: PendingStreams,
    long_line: Option<LongLine>,
}

impl CriParser {
    /// A parser whose merged messages are at most `max_line_bytes` long.
    pub fn new(max_line_bytes: usize) -> Self {
        Self {
            max_line_bytes: max_line_bytes.max(1),
            pending: PendingStreams::default(),
            long_line: None,
        }
    }

    /// Whether a `P` piece is held, waiting for the rest of its message.
    pub fn has_pending(&self) -> bool {
        self.pending.is_open()
    }

    /// Forgets the pieces held (the file was truncated or replaced).
    pub fn reset(&mut self) {
        self.pending.clear();
        self.long_line = None;
    }

    /// Takes one line; calls `emit` for each message it completes (none, one or two).
    pub fn push(&mut self, line: Line<'_>, mut emit: impl FnMut(LogLine<'_>)) {
        if line.truncated {
            self.push_long_line_piece(line, emit);
            return;
        }
        let cri = match parse(line.bytes) {
            Ok(cri) => cri,
            Err(_) => {
                emit(LogLine::malformed(line));
                return;
            }
        };
        let piece = Piece {
            time: Some(cri.time),
            stream: cri.stream,
            bytes: cri.message,
            last: !cri.partial,
            cri: true,
            offset: line.offset,
        };
        self.pending
            .get(cri.stream)
            .add(piece, self.max_line_bytes, &mut emit);
    }

    fn push_long_line_piece(&mut self, line: Line<'_>, mut emit: impl FnMut(LogLine<'_>)) {
        if !line.continuation {
            self.long_line = None;
            match parse(line.bytes) {
                Ok(cri) => {
                    self.long_line = Some(LongLine {
                        time: cri.time,
                        stream: cri.stream,
                        partial: cri.partial,
                    });
                    emit(LogLine {
                        time: Some(cri.time),
                        stream: Some(cri.stream),
                        logtag: Some("P"),
                        message: cri.message,
                        truncated: true,
                        malformed: false,
                        offset: line.offset,
                    });
                }
                Err(_) => emit(LogLine {
                    truncated: true,
                    ..LogLine::malformed(line)
                }),
            }
            return;
        }
        match self.long_line {
            Some(head) => emit(LogLine {
                time: Some(head.time),
                stream: Some(head.stream),
                logtag: Some(if head.partial { "P" } else { "F" }),
                message: line.bytes,
                truncated: true,
                malformed: false,
                offset: line.offset,
            }),
            None => emit(LogLine {
                truncated: true,
                ..LogLine::malformed(line)
            }),
        }
    }
}
