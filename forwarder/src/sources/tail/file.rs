//! One followed file: its open handle, identity (device + inode + fingerprint), read
//! offset and framing state.

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use nagare_core::router::Lane;
use nagare_parsers::container::{ContainerParser, LineSplitter};
use nagare_parsers::multiline::{Multiline, MultilineRules};

use super::checkpoint::SlotId;
use super::record::FileFields;

/// Bytes of a file's start that its fingerprint covers.
pub const FINGERPRINT_BYTES: u32 = 1024;

/// A file's identity on its filesystem: device and inode. It survives renames (so a
/// rotated file is not read twice) and tells a new file created under an old name
/// from the old one. An inode number can be reused once a file is deleted, which the
/// [`Fingerprint`] detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    /// The device the file lives on.
    pub dev: u64,
    /// The inode number on that device.
    pub ino: u64,
}

impl FileId {
    /// The identity in `meta`.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A hash of a file's first bytes (up to [`FINGERPRINT_BYTES`]). Log files only grow
/// until they are truncated or replaced, so a file whose first `len` bytes still hash
/// the same is the same file, and one whose do not was truncated and rewritten, or is
/// a new file on a reused inode. A copy made by copytruncate has the fingerprint of the
/// original's old content, which is how the copy is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// How many bytes it covers (fewer than [`FINGERPRINT_BYTES`] while the file was
    /// shorter).
    pub len: u32,
    /// FNV-1a of those bytes (stable across versions, unlike std's hasher).
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `file`'s first bytes as they are now.
    pub fn of(file: &File) -> io::Result<Self> {
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let n = read_at_most(file, &mut buf)?;
        Ok(Self {
            len: n as u32,
            hash: fnv1a(&buf[..n]),
        })
    }

    /// Whether `file` still starts with the bytes this fingerprint covers.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        let mut buf = [0u8; FINGERPRINT_BYTES as usize];
        let want = &mut buf[..self.len as usize];
        let n = read_at_most(file, want)?;
        Ok(n == self.len as usize && fnv1a(want) == self.hash)
    }

    /// Whether it covers all the bytes it ever will.
    pub fn is_complete(&self) -> bool {
        self.len >= FINGERPRINT_BYTES
    }

    /// Takes in `bytes`, read from the file at offset `start`, where they reach past
    /// what the fingerprint covers (up to [`FINGERPRINT_BYTES`]). FNV-1a runs byte by
    /// byte, so the result is the hash of the longer prefix.
    pub fn extend(&mut self, start: u64, bytes: &[u8]) {
        let covered = u64::from(self.len);
        let end = (start + bytes.len() as u64).min(u64::from(FINGERPRINT_BYTES));
        if start > covered || end <= covered {
            return;
        }
        let mut h = if self.len == 0 { fnv1a(&[]) } else { self.hash };
        for &b in &bytes[(covered - start) as usize..(end - start) as usize] {
            h = fnv1a_step(h, b);
        }
        self.hash = h;
        self.len = end as u32;
    }
}

/// The hash that starts the event ids of a file's lines (`event_id_key`): 64-bit
/// FNV-1a of the node's name, the device and inode `id` (the file's origin: its own,
/// or for a copy, the original's, see [`FollowedFile::origin`]), and the file's head:
/// its first line (newline included) or its first `min(1 KiB, line_cap)` bytes,
/// whichever is shorter. `None` while the file holds neither a newline nor that many
/// bytes: then no line of it can have been emitted yet.
///
/// Not the [`Fingerprint`], which grows with a young file: a line read again later
/// would get another id. The head cannot change once a line of the file was read
/// (bytes are only appended), so every reading of the file gives the same hash; a
/// file truncated and written again gets a new head, and new ids, unless its first
/// line is the same as before.
pub fn event_id_hash(
    file: &File,
    id: FileId,
    node: &str,
    line_cap: usize,
) -> io::Result<Option<u64>> {
    let mut buf = [0u8; FINGERPRINT_BYTES as usize];
    let cap = line_cap.clamp(1, buf.len());
    let n = read_at_most(file, &mut buf[..cap])?;
    let head = match buf[..n].iter().position(|&b| b == b'\n') {
        Some(i) => &buf[..=i],
        None if n == cap => &buf[..n],
        None => return Ok(None),
    };
    let mut bytes = Vec::with_capacity(node.len() + 17 + head.len());
    bytes.extend_from_slice(node.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(&id.dev.to_le_bytes());
    bytes.extend_from_slice(&id.ino.to_le_bytes());
    bytes.extend_from_slice(head);
    Ok(Some(fnv1a(&bytes)))
}

/// Reads from offset 0 until `buf` is full or the file ends.
fn read_at_most(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| fnv1a_step(h, b))
}

/// One byte of FNV-1a.
fn fnv1a_step(h: u64, b: u8) -> u64 {
    (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
}

/// Where reading a newly opened file starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At its first byte.
    Head,
    /// At its current end (only new lines).
    End,
    /// At a checkpointed offset.
    At(u64),
}

/// Multiline joining state of one file: one machine per stream, since stdout and
/// stderr interleave.
#[derive(Debug, Clone)]
pub struct MultilineState {
    /// Lines of stdout, or of a file without streams.
    pub stdout: Multiline,
    /// Lines of stderr.
    pub stderr: Multiline,
}

impl MultilineState {
    /// Fresh machines.
    pub fn new(detector: &MultilineRules) -> Self {
        Self {
            stdout: Multiline::new(detector),
            stderr: Multiline::new(detector),
        }
    }

    /// Whether an event is held on either stream.
    pub fn is_holding(&self) -> bool {
        self.stdout.is_holding() || self.stderr.is_holding()
    }

    /// The earliest time a held event is due.
    pub fn deadline(&self) -> Option<Instant> {
        match (self.stdout.deadline(), self.stderr.deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A file being followed.
#[derive(Debug)]
pub struct FollowedFile {
    /// The path it was found under (as the glob matched it).
    pub path: PathBuf,
    /// The path with symlinks resolved, where rotation happens.
    pub real_path: PathBuf,
    /// Its identity.
    pub id: FileId,
    /// The identity its lines' event ids are made from: its own, or for a copy
    /// (made by copytruncate, or a move to another filesystem) the original's, so
    /// that a line read from the copy has the id it had when read from the original
    /// (the copy's bytes, and so its head and offsets, are the original's).
    pub origin: FileId,
    /// Its fingerprint, grown as the file is read.
    pub fingerprint: Fingerprint,
    file: File,
    /// Offset of the next byte to read.
    read_offset: u64,
    /// Lines split from what was read.
    pub splitter: LineSplitter,
    /// The last line handed out by the splitter was a piece of a longer line.
    pub in_long_line: bool,
    /// The framing; `None` until the first line decides it (`format: auto`).
    pub parser: Option<ContainerParser>,
    /// Multiline joining, when configured.
    pub multiline: Option<MultilineState>,
    /// Fields every record of this file carries.
    pub fields: FileFields,
    /// The way into the router for the file's tag: the chunk being filled.
    pub lane: Lane,
    /// Lines in the chunk being filled.
    pub lines_in_chunk: u64,
    /// Offset just after the last line taken by the parser.
    pub consumed: u64,
    /// Start of the earliest line whose content is held (a CRI `P` piece waiting for
    /// its `F`, a multiline event waiting for its end), if any: a restart must read
    /// from there.
    pub held_from: Option<u64>,
    /// The offset last handed to the checkpoints.
    pub tracked: u64,
    /// The checkpoint slot.
    pub slot: SlotId,
    /// When the path stopped leading to this file (rotated away, deleted): it is read
    /// to its end, kept for `rotate_wait`, then let go.
    pub gone: Option<Instant>,
    /// When it was opened.
    pub opened: Instant,
    /// Bytes read since it was opened.
    pub bytes_read: u64,
    /// Lines read since it was opened.
    pub lines_read: u64,
    /// Truncations seen.
    pub truncations: u64,
}

impl FollowedFile {
    /// Opens the file at `path`; its lines are split at `line_cap` bytes.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        path: &Path,
        file: File,
        start: Start,
        slot: SlotId,
        lane: Lane,
        fields: FileFields,
        line_cap: usize,
    ) -> io::Result<Self> {
        let mut file = file;
        let meta = file.metadata()?;
        let offset = match start {
            Start::Head => 0,
            Start::End => meta.len(),
            Start::At(o) => o.min(meta.len()),
        };
        file.seek(SeekFrom::Start(offset))?;
        let fingerprint = Fingerprint::of(&file)?;
        let real_path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let id = FileId::of(&meta);
        Ok(Self {
            path: path.to_path_buf(),
            real_path,
            id,
            origin: id,
            fingerprint,
            file,
            read_offset: offset,
            splitter: LineSplitter::starting_at(line_cap, offset),
            in_long_line: false,
            parser: None,
            multiline: None,
            fields,
            lane,
            lines_in_chunk: 0,
            consumed: offset,
            held_from: None,
            tracked: offset,
            slot,
            gone: None,
            opened: Instant::now(),
            bytes_read: 0,
            lines_read: 0,
            truncations: 0,
        })
    }

    /// Offset of the next byte to read.
    pub fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// The offset a restart must read from so that nothing not yet emitted is
    /// skipped.
    pub fn safe_offset(&self) -> u64 {
        self.held_from.unwrap_or(self.consumed)
    }

    /// The file's current size.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the file no longer holds what was read: it is shorter than the read
    /// offset, or its first bytes changed (truncated, then written past the old
    /// offset before this check).
    pub fn was_truncated(&self) -> io::Result<bool> {
        if self.size()? < self.read_offset {
            return Ok(true);
        }
        Ok(!self.fingerprint.matches(&self.file)?)
    }

    /// Starts again from the beginning (after a truncation), forgetting what the
    /// splitter and parsers held. What the file holds now is its own: its lines'
    /// ids are made from its own identity.
    pub fn restart(&mut self, slot: SlotId) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.origin = self.id;
        self.read_offset = 0;
        self.consumed = 0;
        self.held_from = None;
        self.tracked = 0;
        self.slot = slot;
        self.fields.event_id_hash = None;
        self.splitter.reset();
        self.in_long_line = false;
        if let Some(parser) = &mut self.parser {
            parser.reset();
        }
        if let Some(ml) = &mut self.multiline {
            ml.stdout.flush(|_| {});
            ml.stderr.flush(|_| {});
        }
        self.fingerprint = Fingerprint::of(&self.file)?;
        Ok(())
    }

    /// Reads the next block into `buf`; 0 at the current end of the file. The
    /// fingerprint takes in what was read of the file's first KiB, so that it always
    /// covers what was read: it is made from the bytes as they were read, not read
    /// again later, when a copytruncate may have emptied the file in between.
    ///
    /// The read is a plain blocking read: followed files are regular files whose new
    /// data is in the page cache, so one block takes microseconds, less than handing
    /// it to a blocking thread would.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = loop {
            match self.file.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.fingerprint.extend(self.read_offset, &buf[..n]);
        self.read_offset += n as u64;
        Ok(n)
    }

    /// Frees the splitter's buffer when the file is idle at its end: the bytes of an
    /// unfinished last line are given back to the file (the offset steps back over
    /// them) so that 200 idle files do not each keep a read block's worth of memory.
    pub fn shrink(&mut self) -> io::Result<()> {
        if self.in_long_line {
            return Ok(());
        }
        let pending = self.splitter.pending() as u64;
        if pending > 0 {
            self.file.seek(SeekFrom::Current(-(pending as i64)))?;
            self.read_offset -= pending;
        }
        self.splitter = LineSplitter::starting_at(self.splitter.max_line_bytes(), self.read_offset);
        Ok(())
    }

    /// Works out the file's event id hash ([`event_id_hash`]) for `node`, from its
    /// origin, if it is not known yet and the file's head is there.
    pub fn identify(&mut self, node: &str) -> io::Result<()> {
        if self.fields.event_id_hash.is_none() {
            let cap = self.splitter.max_line_bytes();
            self.fields.event_id_hash = event_id_hash(&self.file, self.origin, node, cap)?;
        }
        Ok(())
    }
}
