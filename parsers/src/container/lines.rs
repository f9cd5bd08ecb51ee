//! Line framing: turns successive reads of a file into lines.
//!
//! The splitter owns one buffer. A read is appended to it ([`LineSplitter::feed`]) and
//! the complete lines are then handed out as slices of that buffer, so the common
//! path costs one copy of the read and no allocation per line. The bytes of an
//! incomplete last line stay in the buffer for the next read.
//!
//! A line longer than `max_line_bytes` is never held whole: as soon as more than
//! `max_line_bytes` bytes without a newline are buffered, the first `max_line_bytes`
//! of them are handed out as a piece flagged [`Line::truncated`], and so on until the
//! newline arrives; every piece of such a line carries the flag, and all but the first
//! are marked [`Line::continuation`].
//!
//! Each line also says where it starts in the stream ([`Line::offset`]): the splitter
//! counts the bytes it hands out, from the offset it was told the stream starts at
//! ([`LineSplitter::starting_at`]), so a reader that resumes a file in the middle gets
//! the lines' offsets in the file.

use memchr::memchr;

/// One line (without its `\n`), or one piece of a line longer than the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line's bytes, without the terminating `\n`.
    pub bytes: &'a [u8],
    /// The line was longer than `max_line_bytes` and this is one piece of it.
    pub truncated: bool,
    /// This piece continues a line whose earlier piece was already handed out.
    pub continuation: bool,
    /// Where the line (or piece) starts in the stream: bytes handed out before it,
    /// plus the offset the splitter started at.
    pub offset: u64,
}

/// Splits a byte stream into lines, across reads.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    pos: usize,
    /// Offset in the stream of `buf[0]`.
    base: u64,
    max_line_bytes: usize,
    /// The previous piece handed out was a truncated piece of a line not yet ended.
    in_long_line: bool,
}

impl LineSplitter {
    /// A splitter that cuts lines longer than `max_line_bytes` (at least 1) into pieces.
    pub fn new(max_line_bytes: usize) -> Self {
        Self::starting_at(max_line_bytes, 0)
    }

    /// [`new`](Self::new), for a stream whose first byte fed is at `offset` (a file
    /// read from the middle): the lines' offsets count from there.
    pub fn starting_at(max_line_bytes: usize, offset: u64) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            base: offset,
            max_line_bytes: max_line_bytes.max(1),
            in_long_line: false,
        }
    }

    /// The cap on a line's length.
    pub fn max_line_bytes(&self) -> usize {
        self.max_line_bytes
    }

    /// Appends the next bytes read and returns the lines they complete.
    ///
    /// Lines not taken from the returned iterator are not lost: they are handed out
    /// first by the next call.
    pub fn feed(&mut self, data: &[u8]) -> Lines<'_> {
        if self.pos > 0 {
            // Everything before `pos` was handed out; keep only the rest.
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
        self.lines()
    }

    /// The lines already buffered, without adding bytes.
    pub fn lines(&mut self) -> Lines<'_> {
        Lines {
            buf: &self.buf,
            pos: &mut self.pos,
            base: self.base,
            max_line_bytes: self.max_line_bytes,
            in_long_line: &mut self.in_long_line,
        }
    }

    /// Bytes buffered and not yet handed out (the start of an incomplete line).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Forgets everything buffered (the file was truncated or replaced); the next
    /// byte fed is the stream's first, at offset 0.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.pos = 0;
        self.base = 0;
        self.in_long_line = false;
    }
}

/// The complete lines in a [`LineSplitter`]'s buffer.
#[derive(Debug)]
pub struct Lines<'a> {
    buf: &'a [u8],
    pos: &'a mut usize,
    base: u64,
    max_line_bytes: usize,
    in_long_line: &'a mut bool,
}

impl Lines<'_> {
    /// Bytes buffered and not yet handed out.
    pub fn remaining(&self) -> usize {
        self.buf.len() - *self.pos
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let buf: &'a [u8] = self.buf;
        let rest = &buf[*self.pos..];
        let max = self.max_line_bytes;
        // Only the first `max + 1` bytes matter: a newline further on means the line
        // is too long either way.
        let window = &rest[..rest.len().min(max + 1)];
        let continuation = *self.in_long_line;
        let offset = self.base + *self.pos as u64;
        match memchr(b'\n', window) {
            Some(i) => {
                *self.pos += i + 1;
                *self.in_long_line = false;
                Some(Line {
                    bytes: &rest[..i],
                    truncated: continuation,
                    continuation,
                    offset,
                })
            }
            None if rest.len() > max => {
                *self.pos += max;
                *self.in_long_line = true;
                Some(Line {
                    bytes: &rest[..max],
                    truncated: true,
                    continuation,
                    offset,
                })
            }
            None => None,
        }
    }
}
