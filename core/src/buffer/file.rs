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
//! that concurrent writers share ([`DirSync`]).
//!
//! On start every chunk is read back in sequence order: intact ones are queued
//! again; a `.staged` file whose last append was cut short by a crash loses only that
//! append (it was never acknowledged to anyone); an empty file (a crash right after
//! it was created) is removed; any other damage moves the file (or the damaged
//! stretch of a segment) to `quarantine/` with a log line saying why, and the others
//! load.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::config::{BufferCompress, BufferConfig, FsyncPolicy};
use super::format::{self, Compression, FileHeader, Parsed, SegmentInfo};
use super::segment::{self, Ledger, Spot};
use crate::chunk::{Chunk, ChunkId};
use crate::event::Tag;

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
    pub segments: u32,
    /// Its length on disk.
    pub len: u64,
    /// Where its bytes are.
    pub place: Place,
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

/// What opening a buffer folder found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Chunks to queue, in order.
    pub chunks: Vec<FileChunk>,
    /// The next free sequence number.
    pub next_seq: u64,
    /// Files moved to quarantine.
    pub quarantined: u64,
}

/// What became of one file at recovery.
enum Outcome {
    Queued(FileChunk),
    Quarantined,
    Removed,
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

/// Group commit of the folder's fsync, run by a thread of its own. A file's new name
/// is durable once the folder is fsynced after the name was made; one fsync covers
/// every name made before it started. A writer asks for one right after it creates
/// its file, writes and fsyncs the file meanwhile, then waits for it: the two fsyncs
/// overlap, and writers asking at the same time share one.
#[derive(Debug)]
struct DirSync {
    runs: Arc<DirSyncRuns>,
}

#[derive(Debug, Default)]
struct DirSyncRuns {
    state: Mutex<RunState>,
    /// Wakes the idle thread: a run is wanted, or the store is gone.
    wanted: Condvar,
    /// Wakes the writers waiting for a run: one ended.
    ended: Condvar,
}

#[derive(Debug, Default)]
struct RunState {
    /// Runs started so far; the running one, if any, is number `started`.
    started: u64,
    /// The last run that succeeded (runs end in the order they start: one at a time).
    succeeded: u64,
    /// The last run that failed, and why.
    failed: u64,
    failure: Option<(io::ErrorKind, String)>,
    /// A writer waits for a run that has not started yet.
    wanted: bool,
    /// The thread waits for `wanted`.
    idle: bool,
    /// The store is gone: the thread ends.
    closing: bool,
}

impl DirSyncRuns {
    fn lock(&self) -> MutexGuard<'_, RunState> {
        // The counters are updated whole under the lock; a panic elsewhere cannot
        // leave them half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, on: &Condvar, state: MutexGuard<'a, RunState>) -> MutexGuard<'a, RunState> {
        on.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    /// The thread: fsyncs `dir` whenever a writer wants it, until the store is gone.
    fn run(&self, dir: &Path) {
        let mut state = self.lock();
        loop {
            if state.wanted {
                state.wanted = false;
                state.started += 1;
                let run = state.started;
                drop(state);
                let result = File::open(dir).and_then(|d| d.sync_all());
                state = self.lock();
                match result {
                    Ok(()) => state.succeeded = run,
                    Err(e) => {
                        state.failed = run;
                        state.failure = Some((
                            e.kind(),
                            format!("cannot fsync the folder {}: {e}", dir.display()),
                        ));
                    }
                }
                self.ended.notify_all();
            } else if state.closing {
                return;
            } else {
                state.idle = true;
                state = self.wait(&self.wanted, state);
                state.idle = false;
            }
        }
    }
}

impl DirSync {
    fn start(dir: &Path) -> io::Result<Self> {
        let runs = Arc::new(DirSyncRuns::default());
        let (thread_runs, dir) = (runs.clone(), dir.to_path_buf());
        std::thread::Builder::new()
            .name("buffer-dir-sync".into())
            .spawn(move || thread_runs.run(&dir))?;
        Ok(Self { runs })
    }

    /// Asks for an fsync of the folder that covers every name made so far; returns
    /// the run to wait for.
    fn request(&self) -> u64 {
        let mut state = self.runs.lock();
        // A running fsync may have started before the caller's name was made: only
        // one that starts from now on counts.
        state.wanted = true;
        if state.idle {
            self.runs.wanted.notify_one();
        }
        state.started + 1
    }

    /// Waits for run `run` (or a later one) to end.
    fn wait(&self, run: u64) -> io::Result<()> {
        let mut state = self.runs.lock();
        loop {
            if state.succeeded >= run {
                return Ok(());
            }
            if state.failed >= run {
                let (kind, why) = state.failure.clone().unwrap_or((
                    io::ErrorKind::Other,
                    "cannot fsync the buffer folder".to_string(),
                ));
                return Err(io::Error::new(kind, why));
            }
            state = self.runs.wait(&self.runs.ended, state);
        }
    }
}

impl Drop for DirSync {
    fn drop(&mut self) {
        self.runs.lock().closing = true;
        self.runs.wanted.notify_one();
    }
}

thread_local! {
    /// One zstd context per thread and level: creating one per append costs more
    /// than compressing a small chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
    /// One zstd decompression context per thread, for the same reason.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `e`, saying which operation failed on which file; its kind stays, so that callers
/// can still tell a missing file or a full disk apart.
pub(super) fn failed(op: &str, path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot {op} {}: {e}", path.display()))
}

fn now_ms() -> u64 {
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
            compression: match config.compress {
                BufferCompress::Zstd => Compression::Zstd,
                BufferCompress::None => Compression::None,
            },
            level: config.compress_level,
        })
    }

    /// The buffer's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, seq: u64, state: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}.{state}"))
    }

    /// The stored form of `chunk` as one segment (compressed as configured): CPU
    /// only, no I/O.
    pub fn encode_segment(&self, chunk: &Chunk) -> io::Result<Vec<u8>> {
        let raw = chunk.entries();
        let mut out = Vec::new();
        for (i, seg) in chunk.segments().iter().enumerate() {
            // A chunk that was merged from others is stored as the same runs, so each
            // keeps its id; the byte boundaries come from walking its entries.
            let part = if chunk.segments().len() == 1 {
                raw.clone()
            } else {
                segment_bytes(chunk, i)
            };
            let stored = match self.compression {
                Compression::None => None,
                Compression::Zstd => Some(compress(&part, self.level)?),
            };
            out.extend(format::encode_segment(
                seg.id,
                seg.count,
                part.len(),
                stored.as_deref().unwrap_or(&part),
            ));
        }
        Ok(out)
    }

    fn sync(&self, file: &File, path: &Path) -> io::Result<()> {
        if !self.fsync {
            return Ok(());
        }
        file.sync_data().map_err(|e| failed("fdatasync", path, e))
    }

    /// Creates (or empties) the file at `path` for writing and asks for the fsync of
    /// the folder that makes its name durable; [`FileStore::finish`] waits for it.
    fn create_file(&self, path: &Path) -> io::Result<(File, Option<u64>)> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| failed("create", path, e))?;
        Ok((file, self.dir_sync.as_ref().map(|d| d.request())))
    }

    /// Fsyncs `file` (at `path`), then waits for the fsync of the folder asked for
    /// when it was created (`dir_run`), which ran meanwhile.
    fn finish(&self, file: &File, path: &Path, dir_run: Option<u64>) -> io::Result<()> {
        self.sync(file, path)?;
        match (&self.dir_sync, dir_run) {
            (Some(d), Some(run)) => d.wait(run),
            _ => Ok(()),
        }
    }

    /// Creates the staged file of a new chunk; returns its length.
    pub fn create(&self, seq: u64, id: ChunkId, tag: &Tag) -> io::Result<u64> {
        let header = format::encode_header(&FileHeader {
            id,
            seq,
            created_ms: now_ms(),
            compression: self.compression,
            tag: tag.to_string(),
        });
        // The new name must be durable too, or a power loss could take the file.
        let path = self.path(seq, STAGED);
        let (mut file, dir_run) = self.create_file(&path)?;
        file.write_all(&header)
            .map_err(|e| failed("write", &path, e))?;
        self.finish(&file, &path, dir_run)?;
        Ok(header.len() as u64)
    }

    /// Writes a whole chunk at once, queued: header, its one segment `segment` and
    /// trailer appended in one write to the open segment file, and (with `fsync:
    /// per_chunk`) an fdatasync shared with the writers appending at the same moment.
    /// Returns its length and place.
    ///
    /// A crash before the fdatasync is done can leave it cut short; the push had not
    /// returned, so nothing in it was acknowledged. Recovery quarantines it, as it
    /// does any damaged stretch of a segment (it cannot tell a cut write from later
    /// damage).
    pub fn write_sealed(&self, chunk: &FileChunk, segment: &[u8]) -> io::Result<(u64, Place)> {
        let header = format::encode_header(&FileHeader {
            id: chunk.id,
            seq: chunk.seq,
            created_ms: now_ms(),
            compression: self.compression,
            tag: chunk.tag.to_string(),
        });
        let trailer = format::encode_trailer(chunk.segments, chunk.count, chunk.raw_bytes);
        let mut parts = [
            IoSlice::new(&header),
            IoSlice::new(segment),
            IoSlice::new(&trailer),
        ];
        let spot = self.ledger.append(&mut parts)?;
        let len = (header.len() + segment.len() + trailer.len()) as u64;
        Ok((len, Place::Segment(spot)))
    }

    /// Writes `bytes` at `at` in the staged file of `seq` (cutting anything after
    /// `at` first, so a retry after a failed write starts clean) and fsyncs; returns
    /// the new length.
    pub fn append(&self, seq: u64, at: u64, bytes: &[u8]) -> io::Result<u64> {
        let path = self.path(seq, STAGED);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| failed("open", &path, e))?;
        if file.metadata().map_err(|e| failed("stat", &path, e))?.len() != at {
            file.set_len(at).map_err(|e| failed("cut back", &path, e))?;
        }
        file.write_all_at(bytes, at)
            .map_err(|e| failed("write", &path, e))?;
        self.sync(&file, &path)?;
        Ok(at + bytes.len() as u64)
    }

    /// Seals the staged chunk `chunk` (whose file is `chunk.len` bytes long): writes
    /// the trailer, fsyncs, renames it queued. Returns the new length.
    /// Sealing again a chunk that is sealed already does nothing, so a failed seal
    /// can simply be tried again.
    pub fn seal(&self, chunk: &FileChunk) -> io::Result<u64> {
        let (staged, queued) = (self.path(chunk.seq, STAGED), self.path(chunk.seq, QUEUED));
        let len = chunk.len + format::TRAILER as u64;
        if !staged.exists() && queued.exists() {
            return Ok(len);
        }
        let trailer = format::encode_trailer(chunk.segments, chunk.count, chunk.raw_bytes);
        self.append(chunk.seq, chunk.len, &trailer)?;
        fs::rename(&staged, &queued).map_err(|e| {
            let to = queued.display();
            failed(&format!("rename to {to}"), &staged, e)
        })?;
        Ok(len)
    }

    /// The bytes of the queued chunk `meta`.
    fn bytes(&self, meta: &FileChunk) -> io::Result<Vec<u8>> {
        match meta.place {
            Place::File => fs::read(self.path(meta.seq, QUEUED)),
            Place::Segment(spot) => self.ledger.read(spot, meta.len),
        }
    }

    /// Reads the queued chunk `meta` back into memory, checking every checksum.
    pub fn read(&self, meta: &FileChunk) -> Result<Chunk, ReadFailure> {
        let bytes = self.bytes(meta).map_err(ReadFailure::Io)?;
        let (header, segments) = match format::parse(&bytes) {
            Parsed::Intact {
                header,
                segments,
                sealed: true,
            } if header.seq == meta.seq => (header, segments),
            Parsed::Intact {
                header,
                sealed: true,
                ..
            } => {
                return Err(ReadFailure::Damaged(format!(
                    "chunk number {} was expected, chunk number {} was found",
                    meta.seq, header.seq
                )));
            }
            Parsed::Intact { sealed: false, .. } => {
                return Err(ReadFailure::Damaged(
                    "the queued chunk has no trailer".to_string(),
                ));
            }
            Parsed::Torn { reason, .. } | Parsed::Damaged { reason } => {
                return Err(ReadFailure::Damaged(reason));
            }
        };
        let entries =
            unpack(&bytes, header.compression, &segments).map_err(ReadFailure::Damaged)?;
        let count = segments.iter().map(|s| s.segment.count).sum();
        Ok(Chunk::new(header.id, Tag::from(header.tag), entries, count)
            .with_segments(segments.iter().map(|s| s.segment).collect()))
    }

    /// Removes the queued chunk `meta` (its sink confirmed it, or it was dropped):
    /// deletes its file, or acks it in its segment.
    pub fn remove(&self, meta: &FileChunk) -> io::Result<()> {
        match meta.place {
            Place::File => {
                let path = self.path(meta.seq, QUEUED);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(failed("delete", &path, e))
                    }
                    _ => Ok(()),
                }
            }
            Place::Segment(spot) => self.ledger.release(spot),
        }
    }

    /// Moves the queued chunk `meta` to quarantine, saying why: its file, or a copy
    /// of its bytes in a segment (then acked there).
    pub fn quarantine_queued(&self, meta: &FileChunk, reason: &str) {
        match meta.place {
            Place::File => self.quarantine(&self.path(meta.seq, QUEUED), reason),
            Place::Segment(spot) => {
                let bytes = self.ledger.read(spot, meta.len).unwrap_or_default();
                self.quarantine_bytes(spot, &bytes, reason);
                if let Err(e) = self.ledger.release(spot) {
                    tracing::warn!(segment = %self.ledger.path(spot.segment).display(), error = %e, "cannot ack a damaged chunk in its segment; it is reported again after a restart");
                }
            }
        }
    }

    /// Writes `bytes`, found at `spot`, to quarantine, saying why.
    fn quarantine_bytes(&self, spot: Spot, bytes: &[u8], reason: &str) {
        let folder = self.dir.join(QUARANTINE);
        let segment = self.ledger.path(spot.segment);
        let to = folder.join(format!(
            "{:020}.{}.at-{}.{}",
            spot.segment,
            segment::SEGMENT,
            spot.at,
            now_ms()
        ));
        match fs::create_dir_all(&folder).and_then(|()| fs::write(&to, bytes)) {
            Ok(()) => tracing::warn!(
                segment = %segment.display(),
                at_byte = spot.at,
                bytes = bytes.len(),
                copied_to = %to.display(),
                %reason,
                "a stretch of a buffer segment is damaged; copied it to quarantine, the other chunks load"
            ),
            Err(e) => tracing::error!(
                segment = %segment.display(),
                at_byte = spot.at,
                bytes = bytes.len(),
                %reason,
                error = %e,
                "a stretch of a buffer segment is damaged and cannot be copied to quarantine; it is skipped"
            ),
        }
    }

    fn quarantine(&self, path: &Path, reason: &str) {
        let folder = self.dir.join(QUARANTINE);
        // The time in the name keeps an older quarantined file of the same number.
        let name = path
            .file_name()
            .map(|n| format!("{}.{}", n.to_string_lossy(), now_ms()))
            .unwrap_or_default();
        let to = folder.join(name);
        match fs::create_dir_all(&folder).and_then(|()| fs::rename(path, &to)) {
            Ok(()) => tracing::warn!(
                file = %path.display(),
                moved_to = %to.display(),
                %reason,
                "buffer chunk file is damaged; moved it to quarantine, the other chunks load"
            ),
            Err(e) => tracing::error!(
                file = %path.display(),
                %reason,
                error = %e,
                "buffer chunk file is damaged and cannot be moved to quarantine; it is skipped (move or delete it by hand)"
            ),
        }
    }

    /// Reads every chunk file back, in order: queues the intact ones (sealing staged
    /// ones), cuts appends a crash interrupted, quarantines damaged files.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut found: Vec<(u64, bool, PathBuf)> = Vec::new();
        let (mut segments, mut acks) = (Vec::new(), Vec::new());
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let parsed = name.split_once('.').and_then(|(seq, state)| {
                let seq: u64 = seq.parse().ok()?;
                match state {
                    STAGED => Some((seq, false)),
                    QUEUED => Some((seq, true)),
                    _ => None,
                }
            });
            match (parsed, segment::parse_name(&name)) {
                (Some((seq, queued)), _) => found.push((seq, queued, path)),
                (None, Some((number, true))) => segments.push(number),
                (None, Some((number, false))) => acks.push(number),
                (None, None) => {
                    tracing::debug!(file = %path.display(), "not a buffer chunk file; left alone")
                }
            }
        }
        found.sort_by_key(|(seq, queued, _)| (*seq, !*queued));
        let mut out = Recovered::default();
        let mut last_seq = None;
        for (seq, queued, path) in found {
            out.next_seq = out.next_seq.max(seq + 1);
            if last_seq == Some(seq) {
                // Both names for one sequence number: the staged one is a leftover
                // of a rename; the queued one wins.
                self.quarantine(&path, "a second file for the same chunk number");
                out.quarantined += 1;
                continue;
            }
            last_seq = Some(seq);
            match self.recover_one(seq, queued, &path)? {
                Outcome::Queued(chunk) => out.chunks.push(chunk),
                Outcome::Quarantined => out.quarantined += 1,
                Outcome::Removed => {}
            }
        }
        segments.sort_unstable();
        for number in segments {
            self.recover_segment(number, &mut out)?;
        }
        for number in acks {
            self.ledger.remove_orphan_acks(number)?;
        }
        out.chunks.sort_by_key(|c| c.seq);
        Ok(out)
    }

    /// Queues the chunks of segment `number` not acked yet and quarantines what is
    /// damaged in it.
    fn recover_segment(&self, number: u64, out: &mut Recovered) -> io::Result<()> {
        let found = self.ledger.recover(number)?;
        out.next_seq = out.next_seq.max(found.max_seq.map_or(0, |s| s + 1));
        for damage in &found.damage {
            self.quarantine_bytes(damage.spot, &damage.bytes, &damage.reason);
            out.quarantined += 1;
        }
        for chunk in found.chunks {
            let Parsed::Intact {
                header, segments, ..
            } = chunk.parsed
            else {
                continue;
            };
            out.chunks.push(FileChunk {
                seq: header.seq,
                id: header.id,
                tag: Tag::from(header.tag),
                count: segments.iter().map(|s| s.segment.count).sum(),
                raw_bytes: segments.iter().map(|s| u64::from(s.raw_len)).sum(),
                segments: segments.len() as u32,
                len: chunk.len,
                place: Place::Segment(chunk.spot),
            });
        }
        Ok(())
    }

    fn recover_one(&self, seq: u64, queued: bool, path: &Path) -> io::Result<Outcome> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let meta = |header: &FileHeader, segments: &[SegmentInfo], len: usize| FileChunk {
            seq,
            id: header.id,
            tag: Tag::from(header.tag.clone()),
            count: segments.iter().map(|s| s.segment.count).sum(),
            raw_bytes: segments.iter().map(|s| u64::from(s.raw_len)).sum(),
            segments: segments.len() as u32,
            len: len as u64,
            place: Place::File,
        };
        if bytes.is_empty() {
            // Created, then the process or the machine stopped before a byte of it
            // was on disk: nothing in it was acknowledged.
            tracing::warn!(
                file = %path.display(),
                "an empty buffer chunk file (a crash interrupted its first write; nothing in it was acknowledged); removed it"
            );
            fs::remove_file(path)?;
            return Ok(Outcome::Removed);
        }
        match format::parse(&bytes) {
            Parsed::Damaged { reason } => {
                self.quarantine(path, &reason);
                Ok(Outcome::Quarantined)
            }
            Parsed::Intact { header, .. } | Parsed::Torn { header, .. } if header.seq != seq => {
                self.quarantine(
                    path,
                    &format!(
                        "its header says chunk number {}, its name {seq}",
                        header.seq
                    ),
                );
                Ok(Outcome::Quarantined)
            }
            Parsed::Intact {
                header,
                segments,
                sealed: true,
            } => {
                if !queued {
                    fs::rename(path, self.path(seq, QUEUED))?;
                }
                Ok(Outcome::Queued(meta(&header, &segments, bytes.len())))
            }
            Parsed::Intact { .. } | Parsed::Torn { .. } if queued => {
                self.quarantine(
                    path,
                    "the queued chunk is cut short (it has no trailer): damaged on disk, or its write was cut by a crash before it was acknowledged",
                );
                Ok(Outcome::Quarantined)
            }
            Parsed::Intact {
                header,
                segments,
                sealed: false,
            } => self.seal_recovered(path, meta(&header, &segments, bytes.len())),
            Parsed::Torn {
                header,
                segments,
                valid_len,
                reason,
            } => {
                tracing::warn!(
                    file = %path.display(),
                    cut_bytes = bytes.len() - valid_len,
                    kept_appends = segments.len(),
                    %reason,
                    "a crash interrupted an append to this chunk; that append was never acknowledged, so it is cut off and the rest is kept"
                );
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(valid_len as u64)?;
                self.seal_recovered(path, meta(&header, &segments, valid_len))
            }
        }
    }

    fn seal_recovered(&self, path: &Path, mut chunk: FileChunk) -> io::Result<Outcome> {
        if chunk.segments == 0 {
            // Created, then the process stopped before anything was appended.
            fs::remove_file(path)?;
            return Ok(Outcome::Removed);
        }
        chunk.len = self.seal(&chunk)?;
        Ok(Outcome::Queued(chunk))
    }
}

fn compress(raw: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        let Some((_, c)) = slot.as_mut() else {
            return Err(io::Error::other("zstd compressor missing"));
        };
        c.compress(raw)
    })
}

/// Unpacks the zstd frame `stored` into `into`, which must have room for it.
fn decompress(stored: &[u8], into: &mut io::Cursor<&mut Vec<u8>>) -> io::Result<usize> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        let Some(d) = slot.as_mut() else {
            return Err(io::Error::other("zstd decompressor missing"));
        };
        d.decompress_to_buffer(stored, into)
    })
}

/// The encoded entries of segment `i` of a merged chunk.
fn segment_bytes(chunk: &Chunk, i: usize) -> Bytes {
    let segments = chunk.segments();
    let skip: u32 = segments[..i].iter().map(|s| s.count).sum();
    let take = segments[i].count;
    let bytes = chunk.entries();
    let mut reader = crate::msgpack::Reader::new(bytes);
    let mut start = bytes.len();
    let mut end = bytes.len();
    let mut n = 0u32;
    loop {
        if n == skip {
            start = reader.position();
        }
        if n == skip + take {
            end = reader.position();
            break;
        }
        if reader.is_empty() || reader.skip_value().is_err() {
            break;
        }
        n += 1;
    }
    bytes.slice(start.min(end)..end)
}

/// The encoded entries of all segments, unpacked and checked against their sizes.
fn unpack(
    file: &[u8],
    compression: Compression,
    segments: &[SegmentInfo],
) -> Result<Bytes, String> {
    let total: usize = segments.iter().map(|s| s.raw_len as usize).sum();
    let mut out = Vec::with_capacity(total);
    for s in segments {
        let stored = &file[s.offset..s.offset + s.stored_len as usize];
        let before = out.len();
        match compression {
            Compression::None => out.extend_from_slice(stored),
            Compression::Zstd => {
                // Straight after what is unpacked already: `out` has exactly the room
                // the headers promise, and the check below finds a frame that takes
                // more or less than its own share.
                let mut into = io::Cursor::new(&mut out);
                into.set_position(before as u64);
                decompress(stored, &mut into)
                    .map_err(|e| format!("cannot unpack an append: {e}"))?;
            }
        }
        if out.len() - before != s.raw_len as usize {
            return Err(format!(
                "an append unpacks to {} bytes, its header says {}",
                out.len() - before,
                s.raw_len
            ));
        }
    }
    Ok(Bytes::from(out))
}
