//! Container log framing: from the bytes of a container's log file to one message
//! per log line the program wrote.
//!
//! Container runtimes do not write a program's output as is. They frame each line
//! with a time and the stream it came from, and split long lines into pieces:
//!
//! - [`cri`]: the CRI format of containerd and CRI-O (kubelet's `/var/log/pods`),
//!   `<time> <stream> <P|F> <message>`, pieces marked `P` until the `F` one.
//! - [`docker`]: Docker's json-file driver, one JSON object per line, `log` split
//!   every 16 KiB, the last piece ending with `\n`.
//! - [`detect`](mod@detect): which of the two a file holds, from its first line.
//! - [`lines`]: the line splitter under both, fed with successive reads.
//! - [`path`]: the pod, namespace and container a `/var/log/containers` file name
//!   stands for.
//!
//! Everything here is pure: no I/O, no async. Messages are handed out as [`LogLine`]s
//! borrowing from the read buffer where possible, through a callback because one line
//! can complete up to two messages (a held message that passed the cap, then the new
//! one). Nothing is dropped: a line that cannot be parsed comes out whole, flagged
//! [`LogLine::malformed`]; a message cut at the cap comes out in pieces flagged
//! [`LogLine::truncated`]; invalid UTF-8 is kept and reported by [`decode_text`].

pub mod cri;
pub mod detect;
pub mod docker;
pub mod lines;
pub mod path;

use std::borrow::Cow;

use nagare_core::EventTime;

pub use cri::{CriLine, CriParser};
pub use detect::{ContainerFormat, detect};
pub use docker::DockerParser;
pub use lines::{Line, LineSplitter, Lines};
pub use path::{PodLogFile, parse_pod_log_file_name};

/// Which output of a container a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    /// `stdout` or `stderr`, as runtimes and Fluentd records spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One message a container wrote, framing removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine<'a> {
    /// When the runtime wrote it; `None` when the line carried no usable time (a
    /// malformed line, a raw line): the reader uses the time it read the line.
    pub time: Option<EventTime>,
    /// The stream, when the framing says.
    pub stream: Option<Stream>,
    /// CRI only: `F` for a whole message, `P` for a piece emitted before its end.
    pub logtag: Option<&'static str>,
    /// The message, without the runtime's framing and without the final `\n`.
    pub message: &'a [u8],
    /// The message was longer than the cap and this is one piece of it.
    pub truncated: bool,
    /// The line did not have the expected framing; `message` is the whole line.
    pub malformed: bool,
    /// Where the message's first line starts in the stream ([`Line::offset`] of its
    /// first piece): the same each time the same bytes are read from the same place.
    pub offset: u64,
}

impl<'a> LogLine<'a> {
    /// A line kept as it is because its framing could not be parsed.
    pub fn malformed(line: Line<'a>) -> Self {
        Self {
            time: None,
            stream: None,
            logtag: None,
            message: line.bytes,
            truncated: false,
            malformed: true,
            offset: line.offset,
        }
    }

    /// A line taken as the message itself, with no framing.
    pub fn raw(line: Line<'a>) -> Self {
        Self {
            time: None,
            stream: None,
            logtag: None,
            message: line.bytes,
            truncated: line.truncated,
            malformed: false,
            offset: line.offset,
        }
    }
}

/// The message as text: borrowed when it is valid UTF-8, else a lossy copy (invalid
/// sequences become U+FFFD) and `true`, so the record can say so.
pub fn decode_text(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    let text = String::from_utf8_lossy(bytes);
    let invalid = matches!(text, Cow::Owned(_));
    (text, invalid)
}

/// The framing a file is read with.
#[derive(Debug, Clone)]
pub enum ContainerParser {
    /// CRI lines, `P` pieces merged.
    Cri(CriParser),
    /// Docker json-file lines, 16 KiB pieces merged.
    Docker(DockerParser),
    /// No framing: each line is a message.
    Raw,
}

impl ContainerParser {
    /// The parser for `format`, merging messages up to `max_line_bytes`.
    pub fn new(format: ContainerFormat, max_line_bytes: usize) -> Self {
        match format {
            ContainerFormat::Cri => ContainerParser::Cri(CriParser::new(max_line_bytes)),
            ContainerFormat::Docker => ContainerParser::Docker(DockerParser::new(max_line_bytes)),
        }
    }

    /// Takes one line; calls `emit` for each message it completes.
    pub fn push(&mut self, line: Line<'_>, mut emit: impl FnMut(LogLine<'_>)) {
        match self {
            ContainerParser::Cri(p) => p.push(line, emit),
            ContainerParser::Docker(p) => p.push(line, emit),
            ContainerParser::Raw => emit(LogLine::raw(line)),
        }
    }

    /// Whether pieces of an unfinished message are held.
    pub fn has_pending(&self) -> bool {
        match self {
            ContainerParser::Cri(p) => p.has_pending(),
            ContainerParser::Docker(p) => p.has_pending(),
            ContainerParser::Raw => false,
        }
    }

    /// Forgets held pieces (the file was truncated or replaced).
    pub fn reset(&mut self) {
        match self {
            ContainerParser::Cri(p) => p.reset(),
            ContainerParser::Docker(p) => p.reset(),
            ContainerParser::Raw => {}
        }
    }
}

/// A message being assembled from the pieces a runtime split it into, on one stream.
/// Shared by the CRI and docker parsers, whose merging rules are the same.
#[derive(Debug, Clone, Default)]
struct Pending {
    /// The pieces so far, joined.
    bytes: Vec<u8>,
    /// Time of the first piece: the message's time.
    time: Option<EventTime>,
    /// A piece is held.
    open: bool,
    /// Part of this message was already emitted because it grew past the cap.
    cut: bool,
    /// Offset of the first piece held.
    offset: u64,
}

/// One piece of a message, as a framing parser read it.
#[derive(Debug, Clone, Copy)]
struct Piece<'a> {
    time: Option<EventTime>,
    stream: Stream,
    bytes: &'a [u8],
    /// The message ends with this piece.
    last: bool,
    /// Whether to report CRI logtags (`P` / `F`).
    cri: bool,
    /// The piece's line's offset.
    offset: u64,
}

impl Pending {
    fn clear(&mut self) {
        self.bytes.clear();
        self.time = None;
        self.open = false;
        self.cut = false;
        self.offset = 0;
    }

    /// Adds a piece (at most `max` bytes long); emits the messages it completes.
    fn add(&mut self, piece: Piece<'_>, max: usize, emit: &mut impl FnMut(LogLine<'_>)) {
        let tag = |last: bool| piece.cri.then_some(if last { "F" } else { "P" });
        if !self.open && piece.last {
            // The common case: a whole message, emitted straight from the read buffer.
            emit(LogLine {
                time: piece.time,
                stream: Some(piece.stream),
                logtag: tag(true),
                message: piece.bytes,
                truncated: false,
                malformed: false,
                offset: piece.offset,
            });
            return;
        }
        if self.open && self.bytes.len() + piece.bytes.len() > max {
            // Joining this piece would pass the cap: what is held goes out now.
            emit(LogLine {
                time: self.time,
                stream: Some(piece.stream),
                logtag: tag(false),
                message: &self.bytes,
                truncated: true,
                malformed: false,
                offset: self.offset,
            });
            self.bytes.clear();
            self.open = false;
            self.cut = true;
        }
        if !self.open {
            self.open = true;
            self.time = piece.time;
            self.offset = piece.offset;
        }
        if !piece.last {
            self.bytes.extend_from_slice(piece.bytes);
            return;
        }
        let message: &[u8] = if self.bytes.is_empty() {
            piece.bytes
        } else {
            self.bytes.extend_from_slice(piece.bytes);
            &self.bytes
        };
        emit(LogLine {
            time: self.time,
            stream: Some(piece.stream),
            logtag: tag(true),
            message,
            truncated: self.cut,
            malformed: false,
            offset: self.offset,
        });
        self.clear();
    }
}

/// The two streams' pending messages.
#[derive(Debug, Clone, Default)]
struct PendingStreams {
    stdout: Pending,
    stderr: Pending,
}

impl PendingStreams {
    fn get(&mut self, stream: Stream) -> &mut Pending {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    fn is_open(&self) -> bool {
        self.stdout.open || self.stderr.open
    }

    fn clear(&mut self) {
        self.stdout.clear();
        self.stderr.clear();
    }
}

#[cfg(test)]
mod tests;
