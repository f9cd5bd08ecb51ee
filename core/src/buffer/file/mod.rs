//! The file buffer's storage: chunk files and segment files in the buffer's folder,
//! in the layout of [`format`](super::format). Blocking I/O; the buffer calls it on
//! the blocking pool.
//!
//! A chunk being filled is `<seq>.staged`; once queued it is sealed with a trailer,
//! fsynced and renamed `<seq>.queued`. A chunk queued as it comes is appended whole
//! to a segment file holding several ([`segment`](super::segment)), so that
//! concurrent writers share fdatasyncs. Once its sink acked it, a chunk file is
//! deleted, a chunk in a segment acked there. A new staged file's name is made
//! durable by an fsync of the folder that runs while the file's own fsync does, and
//! that concurrent writers share ([`DirSync`](dir_sync::DirSync)).
//!
//! On start every chunk is read back in sequence order: intact ones are queued
//! again; a `.staged` file whose last append was cut short by a crash loses only that
//! append (it was never acknowledged to anyone); an empty file (a crash right after
//! it was created) is removed; any other damage moves the file (or the damaged
//! stretch of a segment) to `quarantine/` with a log line saying why, and the others
//! load.
//!
//! - `chunk_files`: writing, sealing, reading and removing chunks.
//! - `encoding`: a chunk's stored form: compressed, and back.
//! - `dir_sync`: the folder's fsync, run by a thread of its own for every writer.
//! - `recovery`: reading the folder back at start.
//! - `quarantine`: where damaged chunks go, and the log line that says why.

mod chunk_files;
mod dir_sync;
mod encoding;
mod quarantine;
mod recovery;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::config::{BufferConfig, FsyncPolicy};
use super::segment::{Ledger, Spot};
use crate::chunk::ChunkId;
use crate::compression::Compression;
use crate::event::Tag;
use dir_sync::DirSync;

const STAGED: &str = "staged";
const QUEUED: &str = "queued";
/// The folder damaged chunk files are moved to.
pub const QUARANTINE: &str = "quarantine";

/// A chunk file's metadata, as kept in memory while its bytes stay on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    /// Its place in the buffer's order (and its file name).
    pub seq: u64,
    /// Its id.
    pub id: ChunkId,
    /// Its tag.
    pub tag: Tag,
    /// Events in it.
    pub count: u32,
    /// Bytes of encoded entries in it.
    pub raw_bytes: u64,
    /// Appends in it.
    pub parts: u32,
    /// Its length on disk.
    pub len: u64,
    /// Where its bytes are.
    pub place: Place,
    /// When it was created: when its first events were written, or, for a chunk
    /// recovered at start, its file's modification time.
    pub born: std::time::SystemTime,
}

/// Where a chunk's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// In a file of its own, named after its sequence number.
    File,
    /// In a segment, with other chunks queued whole.
    Segment(Spot),
}

/// Why a chunk file could not be read.
#[derive(Debug)]
pub enum ReadFailure {
    /// The file could not be read (it may be fine).
    Io(io::Error),
    /// The file is damaged.
    Damaged(String),
}

/// A buffer's folder.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    fsync: bool,
    compression: Compression,
    level: i32,
    /// Fsyncs the folder for writers, with `fsync: per_chunk`.
    dir_sync: Option<Arc<DirSync>>,
    /// The segments chunks queued whole are appended to.
    ledger: Arc<Ledger>,
}

/// Bytes a segment holds before the next is opened: a sixteenth of the buffer's
/// limit, between 1 MiB and 16 MiB (a chunk larger than that has a segment of its
/// own). Delivered chunks stay on disk until every chunk of their segment is
/// delivered, so this bounds what the buffer's files hold beyond its limit.
pub fn segment_limit(config: &BufferConfig) -> u64 {
    (config.total_limit_size.0 / 16).clamp(1 << 20, 16 << 20)
}

/// `e`, saying which operation failed on which file; its kind stays, so that callers
/// can still tell a missing file or a full disk apart.
pub(super) fn failed(op: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {op} {}: {e}", path.display()))
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl FileStore {
    /// The store for `dir` with `config`'s compression and fsync policy; creates the
    /// folder.
    pub fn new(dir: PathBuf, config: &BufferConfig) -> io::Result<Self> {
        fs::create_dir_all(&dir)?;
        let fsync = config.fsync == FsyncPolicy::PerChunk;
        Ok(Self {
            ledger: Arc::new(Ledger::new(dir.clone(), fsync, segment_limit(config))),
            dir_sync: if fsync {
                Some(Arc::new(DirSync::start(&dir)?))
            } else {
                None
            },
            dir,
            fsync,
            compression: config.compress,
            level: config.compress_level,
        })
    }

    /// The buffer's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn path(&self, seq: u64, state: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}.{state}"))
    }
}
