//! Checkpoints: how far each file has been delivered, kept on disk so that a restart
//! (even after `kill -9`) resumes where delivery stopped.
//!
//! # What a checkpoint says
//!
//! A file's checkpoint is its identity (device, inode, fingerprint of its first
//! bytes), its origin (the device and inode its lines' event ids are made from: its
//! own, or the original's for a copy made by copytruncate), the path it was last seen
//! at (for a copy: the original's path, beside which rotated copies are looked for),
//! and an offset: every line before the offset is in a chunk whose receipt fired, that
//! is, the next hop acknowledged it (or a durable buffer committed it). The offset
//! never moves because a line was *read*.
//!
//! Each file being followed has a [`SlotId`]. When the source hands over a chunk it
//! asks [`Checkpoints::track`] for a receipt carrying the offset just past the chunk's
//! lines (minus anything still held, see the source). Receipts can fire out of order
//! (several chunks in flight, retries); a slot keeps its chunks in order and advances
//! its offset over the longest run of finished ones.
//!
//! # On disk
//!
//! One text file, `<data_dir>/tail/<source>/checkpoints`, replaced atomically: the new
//! content is written to a temporary file, fsynced, renamed over the old one, and the
//! directory is fsynced. The last line carries a checksum of everything before it, so
//! a torn or corrupted file (a disk that lied about fsync, a hand edit) is detected
//! and ignored with a log line; the source then reads files from their start rather
//! than risk skipping lines.
//!
//! ```text
//! nagare-tail-checkpoints 2
//! <dev> <ino> <fingerprint length> <fingerprint hex> <offset> <gone since (unix s) or -> <origin dev>:<origin ino> <path as a JSON string>
//! end <entries> <checksum hex>
//! ```
//!
//! A version 1 file (without the origin) is read as if each file were its own
//! origin; the next write is version 2.

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nagare_core::receipt::{Delivery, Receipt};
use thiserror::Error;

use super::file::{FileId, Fingerprint, fnv1a};
use super::metrics::TailMetrics;

const HEADER: &str = "nagare-tail-checkpoints 2";
/// The header of files written before entries had an origin.
const HEADER_V1: &str = "nagare-tail-checkpoints 1";
const FILE_NAME: &str = "checkpoints";

/// Why a checkpoint file could not be used.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The directory or file cannot be read or written.
    #[error(
        "checkpoint store {path}: {error}; check that `data_dir` is writable and on a local disk"
    )]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        error: io::Error,
    },
}

/// The stored state of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The file's identity when last seen.
    pub id: FileId,
    /// The identity its lines' event ids are made from: `id` itself, or for a copy
    /// (copytruncate, a move to another filesystem) the original's, which a restart
    /// gives back to the file ([`super::file::FollowedFile::origin`]).
    pub origin: FileId,
    /// Fingerprint of its first bytes.
    pub fingerprint: Fingerprint,
    /// Every line before this offset was delivered.
    pub offset: u64,
    /// Where it was last seen (symlinks resolved).
    pub path: PathBuf,
    /// When the source stopped following it (seconds since the epoch), if it did.
    pub gone_since: Option<u64>,
}

impl Stored {
    /// Whether the fingerprint covers every byte before the offset (or the first
    /// KiB, all it ever covers): only then does a file that starts with the
    /// fingerprinted bytes hold the lines the offset skips.
    pub fn fingerprint_covers_offset(&self) -> bool {
        self.fingerprint.is_complete() || u64::from(self.fingerprint.len) >= self.offset
    }
}

/// A file followed by the source, as the checkpoint store knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(u64);

#[derive(Debug)]
struct Pending {
    seq: u64,
    offset: u64,
    lines: u64,
    done: bool,
    /// When its chunk was handed over (its lines read).
    handed_over: Instant,
}

#[derive(Debug)]
struct Slot {
    stored: Stored,
    pending: VecDeque<Pending>,
    next_seq: u64,
    /// The source still follows the file.
    open: bool,
}

#[derive(Debug, Default)]
struct State {
    slots: HashMap<SlotId, Slot>,
    next_slot: u64,
    /// Entries read from disk that no followed file claimed yet.
    unclaimed: Vec<Stored>,
    dirty: bool,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    source: String,
    state: Mutex<State>,
    /// Serialises writers (the periodic task and the final write).
    writing: Mutex<()>,
    /// A new file is followed: write soon, so that a crash right after cannot forget
    /// where its lines are (a rotated file is found again only through its entry).
    urgent: Arc<tokio::sync::Notify>,
    metrics: Arc<TailMetrics>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the state if it changed since the last write.
    fn write_if_dirty(&self) {
        let _writing = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let entries = {
            let mut st = self.lock();
            if !st.dirty {
                return;
            }
            st.dirty = false;
            entries(&st)
        };
        match write_atomically(&self.dir, &encode(&entries)) {
            Ok(()) => {
                self.metrics
                    .checkpoints_written
                    .fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.lock().dirty = true;
                self.metrics
                    .checkpoint_errors
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = %self.source, dir = %self.dir.display(), %error, "cannot write tail checkpoints; trying again at the next interval (lines delivered since the last write will be read again after a restart)");
            }
        }
    }

    fn complete(&self, slot: SlotId, seq: u64, lines: u64, outcome: Delivery) {
        if !matches!(outcome, Delivery::Abandoned) {
            // Counted here, whatever became of the slot since (a file forgotten).
            self.metrics
                .pending_lines
                .fetch_sub(lines, Ordering::Relaxed);
        }
        let mut st = self.lock();
        let Some(s) = st.slots.get_mut(&slot) else {
            return;
        };
        // Sequence numbers only grow and finished entries leave from the front, so the
        // queue is sorted.
        let Ok(i) = s.pending.binary_search_by_key(&seq, |p| p.seq) else {
            return;
        };
        let p = &mut s.pending[i];
        match outcome {
            // Never confirmed (the process is stopping): the offset must not pass
            // these lines, so they are read again after the restart.
            Delivery::Abandoned => return,
            Delivery::Delivered => {}
            Delivery::Dropped => {
                self.metrics
                    .lines_dropped_buffer_overflow
                    .fetch_add(p.lines, Ordering::Relaxed);
            }
            Delivery::Failed => {
                self.metrics
                    .lines_dropped_sink_failed
                    .fetch_add(p.lines, Ordering::Relaxed);
            }
        }
        p.done = true;
        let mut advanced = false;
        while s.pending.front().is_some_and(|p| p.done) {
            let p = s.pending.pop_front().expect("front exists");
            s.stored.offset = p.offset;
            advanced = true;
        }
        if advanced {
            st.dirty = true;
        }
    }
}

fn lag(state: &State) -> Duration {
    state
        .slots
        .values()
        .filter_map(|s| s.pending.front())
        .map(|p| p.handed_over.elapsed())
        .max()
        .unwrap_or_default()
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The source has stopped and the last chunk's receipt fired: save the final
        // offsets now rather than leave them to a timer that will not run again.
        self.write_if_dirty();
    }
}

/// The checkpoint store of one tail source. Cloning gives another handle.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    inner: Arc<Inner>,
}

/// What [`Checkpoints::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    /// No checkpoint file: the source has never run with this data directory.
    Fresh,
    /// Checkpoints were read.
    Restored,
    /// A checkpoint file was there but unusable (torn or corrupted): treat every file
    /// as unknown and read it from its start.
    Damaged,
}

impl Checkpoints {
    /// Opens (creating) `<data_dir>/tail/<source>/` and reads its checkpoints.
    pub fn open(
        data_dir: &Path,
        source: &str,
        metrics: Arc<TailMetrics>,
    ) -> Result<(Self, Loaded), CheckpointError> {
        let dir = data_dir.join("tail").join(sanitize(source));
        fs::create_dir_all(&dir).map_err(|error| CheckpointError::Io {
            path: dir.clone(),
            error,
        })?;
        let path = dir.join(FILE_NAME);
        let (unclaimed, loaded) = match fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Ok(entries) => (entries, Loaded::Restored),
                Err(why) => {
                    tracing::warn!(source = %source, path = %path.display(), reason = why, "the tail checkpoint file is damaged (torn write or corruption) and is ignored; files will be read from their start, so some lines may be sent twice");
                    (Vec::new(), Loaded::Damaged)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Vec::new(), Loaded::Fresh),
            Err(error) => return Err(CheckpointError::Io { path, error }),
        };
        let inner = Arc::new(Inner {
            dir,
            source: source.to_string(),
            state: Mutex::new(State {
                unclaimed,
                ..State::default()
            }),
            writing: Mutex::new(()),
            urgent: Arc::new(tokio::sync::Notify::new()),
            metrics,
        });
        Ok((Self { inner }, loaded))
    }

    /// The directory the checkpoints are kept in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Resumes tracking a file known from before: the first entry that `matches`
    /// among those read from disk and those of files no longer followed. Returns its
    /// slot; [`Checkpoints::stored`] gives its offset.
    pub fn claim(&self, mut matches: impl FnMut(&Stored) -> bool) -> Option<SlotId> {
        let mut st = self.inner.lock();
        if let Some((&id, _)) = st.slots.iter().find(|(_, s)| !s.open && matches(&s.stored)) {
            let s = st.slots.get_mut(&id).expect("found");
            s.open = true;
            s.stored.gone_since = None;
            st.dirty = true;
            return Some(id);
        }
        let i = st.unclaimed.iter().position(&mut matches)?;
        let stored = st.unclaimed.swap_remove(i);
        drop(st);
        Some(self.register(stored))
    }

    /// The stored entries no followed file claimed.
    pub fn unclaimed(&self) -> Vec<Stored> {
        self.inner.lock().unclaimed.clone()
    }

    /// Starts tracking a followed file whose delivered offset is `stored.offset`.
    pub fn register(&self, mut stored: Stored) -> SlotId {
        let mut st = self.inner.lock();
        let id = SlotId(st.next_slot);
        st.next_slot += 1;
        stored.gone_since = None;
        st.slots.insert(
            id,
            Slot {
                stored,
                pending: VecDeque::new(),
                next_seq: 0,
                open: true,
            },
        );
        st.dirty = true;
        drop(st);
        self.inner.urgent.notify_one();
        id
    }

    /// The file behind `slot` is now `id` at `path` (a copy found after
    /// copytruncate, whose lines keep the slot's origin), or its fingerprint grew.
    pub fn update_identity(
        &self,
        slot: SlotId,
        id: FileId,
        fingerprint: Fingerprint,
        path: Option<&Path>,
    ) {
        let mut st = self.inner.lock();
        if let Some(s) = st.slots.get_mut(&slot) {
            s.stored.id = id;
            s.stored.fingerprint = fingerprint;
            if let Some(path) = path {
                s.stored.path = path.to_path_buf();
            }
            s.open = true;
            s.stored.gone_since = None;
            st.dirty = true;
        }
    }

    /// The identity and delivered offset of `slot`.
    pub fn stored(&self, slot: SlotId) -> Option<Stored> {
        self.inner.lock().slots.get(&slot).map(|s| s.stored.clone())
    }

    /// Checkpoint lag: how long ago the oldest chunk the checkpoints wait for was
    /// handed over (zero when they wait for none). Each slot's queue is in order and
    /// sheds finished chunks from its front, so the fronts hold the oldest.
    pub fn lag(&self) -> Duration {
        lag(&self.inner.lock())
    }

    /// [`lag`](Self::lag) in seconds, for a metrics registry: reads the store while
    /// it exists without keeping it (its last write happens when the source drops
    /// it), and zero after.
    pub fn lag_reader(&self) -> impl Fn() -> f64 + Send + Sync + 'static {
        let inner = Arc::downgrade(&self.inner);
        move || {
            inner
                .upgrade()
                .map_or(0.0, |inner| lag(&inner.lock()).as_secs_f64())
        }
    }

    /// A receipt for a chunk holding `lines` lines of `slot`, all before `offset`:
    /// when it fires (and every earlier chunk of the slot finished), the slot's
    /// offset becomes `offset`.
    pub fn track(&self, slot: SlotId, offset: u64, lines: u64) -> Receipt {
        let seq = {
            let mut st = self.inner.lock();
            let Some(s) = st.slots.get_mut(&slot) else {
                return Receipt::new(|_| {});
            };
            let seq = s.next_seq;
            s.next_seq += 1;
            s.pending.push_back(Pending {
                seq,
                offset,
                lines,
                done: false,
                handed_over: Instant::now(),
            });
            seq
        };
        self.inner
            .metrics
            .pending_lines
            .fetch_add(lines, Ordering::Relaxed);
        let inner = self.inner.clone();
        Receipt::new(move |outcome| inner.complete(slot, seq, lines, outcome))
    }

    /// Everything of `slot` before `offset` is done without a chunk (the lines were
    /// excluded or filtered out): the offset advances once earlier chunks finished.
    pub fn commit(&self, slot: SlotId, offset: u64) {
        let mut st = self.inner.lock();
        let Some(s) = st.slots.get_mut(&slot) else {
            return;
        };
        if s.pending.is_empty() {
            if s.stored.offset != offset {
                s.stored.offset = offset;
                st.dirty = true;
            }
        } else {
            let seq = s.next_seq;
            s.next_seq += 1;
            s.pending.push_back(Pending {
                seq,
                offset,
                lines: 0,
                done: true,
                handed_over: Instant::now(),
            });
        }
    }

    /// The source stopped following the file of `slot`. Its entry is kept (and saved)
    /// until `forget` finds it gone for long enough, so that a restart recognises the
    /// file if it is still around.
    pub fn release(&self, slot: SlotId) {
        let mut st = self.inner.lock();
        if let Some(s) = st.slots.get_mut(&slot) {
            s.open = false;
            s.stored.gone_since = Some(unix_now());
            st.dirty = true;
        }
    }

    /// Forgets entries of files not followed for longer than `after` (once their
    /// chunks finished). Returns how many were forgotten.
    pub fn forget(&self, after: Duration) -> usize {
        let limit = unix_now().saturating_sub(after.as_secs());
        let mut st = self.inner.lock();
        let now = unix_now();
        let before = st.slots.len() + st.unclaimed.len();
        st.slots.retain(|_, s| {
            s.open || !s.pending.is_empty() || s.stored.gone_since.is_none_or(|t| t > limit)
        });
        for e in &mut st.unclaimed {
            e.gone_since.get_or_insert(now);
        }
        st.unclaimed
            .retain(|e| e.gone_since.is_none_or(|t| t > limit));
        let forgotten = before - (st.slots.len() + st.unclaimed.len());
        if forgotten > 0 {
            st.dirty = true;
        }
        forgotten
    }

    /// Whether any chunk of any file is still waiting for its receipt.
    pub fn has_pending(&self) -> bool {
        self.inner
            .lock()
            .slots
            .values()
            .any(|s| !s.pending.is_empty())
    }

    /// Writes the checkpoints now if they changed (blocking: call it from a blocking
    /// context or at shutdown).
    pub fn write_now(&self) {
        self.inner.write_if_dirty();
    }

    /// Starts the task that writes the checkpoints every `interval` while they
    /// change. It ends once the source and every receipt it handed out are gone.
    pub fn spawn_writer(&self, interval: Duration) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let urgent = self.inner.urgent.clone();
        tokio::spawn(async move {
            loop {
                // Holds only the notification, not the store, while it waits.
                let _ = tokio::time::timeout(interval, urgent.notified()).await;
                let Some(inner) = weak.upgrade() else {
                    break;
                };
                if !inner.lock().dirty {
                    continue;
                }
                let joined = tokio::task::spawn_blocking(move || inner.write_if_dirty()).await;
                if joined.is_err() {
                    break;
                }
            }
        });
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A source name as a directory name: anything but letters, digits, `-`, `_` and `.`
/// becomes `_`.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.chars().all(|c| c == '.') {
        "_".to_string()
    } else {
        s
    }
}

fn entries(st: &State) -> Vec<Stored> {
    let mut out: Vec<Stored> = st.slots.values().map(|s| s.stored.clone()).collect();
    out.extend(st.unclaimed.iter().cloned());
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.id.cmp(&b.id)));
    out
}

/// The file's text for `entries`.
pub fn encode(entries: &[Stored]) -> Vec<u8> {
    let mut out = String::with_capacity(64 + entries.len() * 160);
    out.push_str(HEADER);
    out.push('\n');
    for e in entries {
        let gone = e
            .gone_since
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        let path = serde_json::to_string(&e.path.to_string_lossy()).unwrap_or_default();
        out.push_str(&format!(
            "{} {} {} {:016x} {} {} {}:{} {}\n",
            e.id.dev,
            e.id.ino,
            e.fingerprint.len,
            e.fingerprint.hash,
            e.offset,
            gone,
            e.origin.dev,
            e.origin.ino,
            path
        ));
    }
    let sum = fnv1a(out.as_bytes());
    out.push_str(&format!("end {} {sum:016x}\n", entries.len()));
    out.into_bytes()
}

/// Reads a checkpoint file; the error says why it is unusable.
pub fn decode(bytes: &[u8]) -> Result<Vec<Stored>, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8")?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("no end line")?;
    let (body, last) = text.split_at(body_end);
    let mut end = last.trim_end().split(' ');
    if end.next() != Some("end") {
        return Err("the end line is missing (torn write)");
    }
    let count: usize = end
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or("bad end line")?;
    let sum = end
        .next()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or("bad end line")?;
    if fnv1a(body.as_bytes()) != sum {
        return Err("checksum mismatch");
    }
    let mut lines = body.lines();
    let with_origin = match lines.next() {
        Some(HEADER) => true,
        Some(HEADER_V1) => false,
        _ => return Err("unknown header or version"),
    };
    let mut out = Vec::with_capacity(count);
    for line in lines {
        out.push(decode_entry(line, with_origin).ok_or("malformed entry")?);
    }
    if out.len() != count {
        return Err("entry count mismatch");
    }
    Ok(out)
}

fn decode_entry(line: &str, with_origin: bool) -> Option<Stored> {
    let mut parts = line.splitn(if with_origin { 8 } else { 7 }, ' ');
    let dev = parts.next()?.parse().ok()?;
    let ino = parts.next()?.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    let hash = u64::from_str_radix(parts.next()?, 16).ok()?;
    let offset = parts.next()?.parse().ok()?;
    let gone_since = match parts.next()? {
        "-" => None,
        t => Some(t.parse().ok()?),
    };
    let id = FileId { dev, ino };
    let origin = if with_origin {
        let (dev, ino) = parts.next()?.split_once(':')?;
        FileId {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
        }
    } else {
        id
    };
    let path: String = serde_json::from_str(parts.next()?).ok()?;
    Some(Stored {
        id,
        origin,
        fingerprint: Fingerprint { len, hash },
        offset,
        path: PathBuf::from(path),
        gone_since,
    })
}

/// Replaces `dir/checkpoints` with `bytes`: temporary file, fsync, rename, fsync of
/// the directory. A crash at any point leaves either the old file or the new one.
fn write_atomically(dir: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(FILE_NAME))?;
    File::open(dir)?.sync_all()
}
