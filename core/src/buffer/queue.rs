//! The buffer: one queue, limit, overflow policy and lease logic for both kinds;
//! only where the chunks' bytes live differs (in memory, or in files through
//! [`FileStore`]).
//!
//! A chunk goes through three states. **Staged**: with `flush_mode: interval`,
//! chunks of one tag are appended to the tag's staged chunk. **Queued**: the staged
//! chunk reached `chunk_limit_size` or `chunk_limit_records`, or is `flush_interval`
//! old (or every chunk, with `flush_mode: immediate`): it waits for the sink, in
//! order. **In flight**: the sink holds it as a [`Lease`] until it acks it.
//!
//! What counts toward `total_limit_size` is every staged, queued and in-flight byte
//! (for a file buffer, bytes on disk). Room is reserved before a chunk is written, so
//! concurrent producers never overshoot the limit.
//!
//! A file buffer keeps only the metadata of its chunks in memory; a chunk's bytes are
//! read from disk when the sink leases it and dropped when the lease ends. A push
//! returns once the chunk is committed (written, and fsynced with `fsync:
//! per_chunk`): then, and not before, the chunk's receipts are released as delivered,
//! which is what lets a tailer's checkpoint advance or a forward server ack. A memory
//! buffer keeps the receipts with the chunk until the sink acks it.
//!
//! The work of a file push and of sealing staged chunks runs in a task of its own, so
//! a caller that stops waiting (a `select!` that took another branch) never leaves a
//! chunk half-accounted; a lease whose read is abandoned puts its chunk back.
//!
//! File pushes from many producers (an aggregator's connections) write side by side:
//! a chunk queued as it comes is appended to a segment file, where concurrent
//! appends share their fdatasyncs, so only pushes that append to or seal a staged
//! chunk take the writer lock (see [`FileStore`]). What each write changes in the
//! queue waits for its [`Turn`], so chunks are queued in the order their pushes were
//! planned, as if one at a time.
//!
//! A write that fails (a full disk, a failed fdatasync) is tried again, with a
//! backoff, until it works; its push waits, so nothing of it is acknowledged, and
//! meanwhile it holds up no other write. A push given up on (the buffer closed
//! under it at a stop) marks its chunk abandoned: its source sends it again.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::Notify;

use super::config::{BufferConfig, BufferKind, OverflowAction};
use super::file::{FileChunk, FileStore, Place, ReadFailure};
use super::format;
use crate::chunk::{Chunk, ChunkId, Segment};
use crate::dead_letter::DeadLetter;
use crate::event::Tag;
use crate::receipt::{Delivery, Receipt};
use crate::retry::{Backoff, RetryPolicy};

/// Staged chunks kept at once; past it, a chunk of a new tag is queued as it is (tags
/// from forward clients are unbounded).
const MAX_STAGED: usize = 1024;

/// The buffer was closed; no more chunks are accepted.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("buffer `{0}` is closed")]
pub struct BufferClosed(pub &'static str);

/// A buffer could not be opened.
#[derive(Debug, Error)]
#[error(
    "buffer `{name}`: cannot use the folder {}: {source}; check that it is writable (it is `buffer.path`, by default `<data_dir>/buffer/<sink name>`)",
    .path.display()
)]
pub struct BufferError {
    /// The buffer's (its sink's) name.
    pub name: String,
    /// The folder.
    pub path: PathBuf,
    /// What failed.
    pub source: io::Error,
}

/// A snapshot of a buffer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Chunks being filled.
    pub staged_chunks: usize,
    /// Bytes of chunks being filled.
    pub staged_bytes: usize,
    /// Chunks waiting to be taken.
    pub queued_chunks: usize,
    /// Bytes of chunks waiting to be taken.
    pub queued_bytes: usize,
    /// Chunks taken by the sink and not yet confirmed.
    pub in_flight_chunks: usize,
    /// Bytes of chunks taken by the sink and not yet confirmed.
    pub in_flight_bytes: usize,
    /// Chunks discarded by the overflow policy since start.
    pub dropped_chunks: u64,
    /// Events in those chunks.
    pub dropped_events: u64,
    /// Times a producer had to wait for room since start.
    pub blocked: u64,
    /// Chunks found on disk at start and queued again.
    pub recovered_chunks: u64,
    /// Chunk files found damaged (at start or when read) and moved to quarantine.
    pub quarantined_chunks: u64,
}

/// A queued chunk: the chunk itself (memory), or where it is (file).
#[derive(Debug)]
enum Queued {
    Memory(Chunk),
    File(FileChunk),
}

impl Queued {
    fn size(&self) -> usize {
        match self {
            Queued::Memory(c) => c.byte_size(),
            Queued::File(f) => f.len as usize,
        }
    }

    fn tag(&self) -> &Tag {
        match self {
            Queued::Memory(c) => c.tag(),
            Queued::File(f) => &f.tag,
        }
    }

    fn count(&self) -> u32 {
        match self {
            Queued::Memory(c) => c.count(),
            Queued::File(f) => f.count,
        }
    }
}

/// A chunk being filled.
#[derive(Debug)]
struct Staged {
    created: Instant,
    body: StagedBody,
}

#[derive(Debug)]
enum StagedBody {
    Memory {
        id: ChunkId,
        tag: Tag,
        entries: Vec<u8>,
        count: u32,
        receipts: Vec<Receipt>,
        segments: Vec<Segment>,
    },
    File(FileChunk),
}

impl Staged {
    fn size(&self) -> usize {
        match &self.body {
            StagedBody::Memory { entries, .. } => entries.len(),
            StagedBody::File(f) => f.len as usize,
        }
    }

    fn raw_bytes(&self) -> usize {
        match &self.body {
            StagedBody::Memory { entries, .. } => entries.len(),
            StagedBody::File(f) => f.raw_bytes as usize,
        }
    }

    fn count(&self) -> u32 {
        match &self.body {
            StagedBody::Memory { count, .. } => *count,
            StagedBody::File(f) => f.count,
        }
    }

    fn seq(&self) -> u64 {
        match &self.body {
            StagedBody::Memory { .. } => 0,
            StagedBody::File(f) => f.seq,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    staged: HashMap<Tag, Staged>,
    queue: VecDeque<Queued>,
    staged_bytes: usize,
    queued_bytes: usize,
    in_flight_chunks: usize,
    in_flight_bytes: usize,
    /// Room promised to pushes whose chunk is being written.
    reserved: usize,
    next_seq: u64,
    /// Turns taken and not over yet (see [`Turn`]); the first one goes.
    turns: BTreeSet<u64>,
    next_turn: u64,
    closed: bool,
    /// A producer waits for room while chunks are staged: queue them now.
    flush_now: bool,
    dropped_chunks: u64,
    dropped_events: u64,
    blocked: u64,
    recovered_chunks: u64,
    quarantined_chunks: u64,
    last_drop_log: Option<Instant>,
    drops_since_log: u64,
    last_io_log: Option<Instant>,
    /// A failed write was logged and no write has succeeded since (to say, once,
    /// when it works again).
    io_failing: bool,
}

impl State {
    fn used(&self) -> usize {
        self.staged_bytes + self.queued_bytes + self.in_flight_bytes + self.reserved
    }
}

struct Shared {
    name: &'static str,
    config: BufferConfig,
    limit: usize,
    chunk_limit: usize,
    record_limit: u32,
    stages: bool,
    flush_interval: Duration,
    flush_at_shutdown: bool,
    /// Where a file buffer's chunks are; `None` for a memory buffer.
    store: Option<FileStore>,
    state: Mutex<State>,
    /// Signalled when a chunk is queued or the buffer closes.
    items: Notify,
    /// Signalled when room is freed.
    space: Notify,
    /// Held by whoever writes staged chunk files (appends, seals), so that one staged
    /// chunk is never written by two tasks at once.
    writer: Arc<tokio::sync::Mutex<()>>,
    /// Signalled when a turn is over.
    turns: Notify,
    secondary: OnceLock<DeadLetter>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters half-updated in a
        // way that matters more than stopping the pipeline would, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a staged chunk with `count` events and `raw` bytes has room for
    /// `chunk`.
    fn fits(&self, count: u32, raw: usize, chunk: &Chunk) -> bool {
        raw + chunk.byte_size() <= self.chunk_limit
            && count.saturating_add(chunk.count()) <= self.record_limit
    }

    /// Whether a staged chunk with `count` events and `raw` bytes is full.
    fn full(&self, count: u32, raw: usize) -> bool {
        raw >= self.chunk_limit || count >= self.record_limit
    }

    fn enqueue(&self, st: &mut State, queued: Queued) {
        st.queued_bytes += queued.size();
        st.queue.push_back(queued);
        self.items.notify_one();
    }

    /// Queues the memory chunk staged for `tag`.
    fn seal_memory(&self, st: &mut State, tag: &Tag) {
        let Some(staged) = st.staged.remove(tag) else {
            return;
        };
        st.staged_bytes -= staged.size();
        if let StagedBody::Memory {
            id,
            tag,
            entries,
            count,
            receipts,
            segments,
        } = staged.body
        {
            let mut chunk =
                Chunk::new(id, tag, Bytes::from(entries), count).with_segments(segments);
            chunk.adopt_receipts(receipts);
            self.enqueue(st, Queued::Memory(chunk));
        }
    }

    fn record_drop(&self, st: &mut State, tag: &Tag, count: u32) {
        st.dropped_chunks += 1;
        st.dropped_events += u64::from(count);
        st.drops_since_log += 1;
        let due = st
            .last_drop_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                buffer = self.name,
                tag = %tag,
                events = count,
                chunks = st.drops_since_log,
                total_dropped_chunks = st.dropped_chunks,
                total_dropped_events = st.dropped_events,
                "buffer full: discarded chunks under overflow_action {:?}",
                self.config.overflow_action
            );
            st.last_drop_log = Some(Instant::now());
            st.drops_since_log = 0;
        }
    }

    /// Logs a failed write at most every 10 s.
    fn log_io(&self, what: &str, error: &io::Error, retry_in: Duration, attempts: u32) {
        let mut st = self.lock();
        if st
            .last_io_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            st.last_io_log = Some(Instant::now());
            st.io_failing = true;
            drop(st);
            tracing::error!(
                buffer = self.name,
                dir = %self.dir_name(),
                %error,
                ?retry_in,
                attempts,
                "cannot {what} in the file buffer: it is not committed, so it is not acknowledged to its source; trying again, and its producers wait meanwhile (check the disk: free space, errors in the kernel log, permissions)"
            );
        }
    }

    /// Logs, once after a logged failure, that a write worked again.
    fn log_io_recovered(&self, what: &str, failures: u32) {
        let mut st = self.lock();
        if std::mem::take(&mut st.io_failing) {
            drop(st);
            tracing::warn!(
                buffer = self.name,
                dir = %self.dir_name(),
                failures,
                "the file buffer writes again: could {what} after {failures} failed attempts"
            );
        }
    }

    fn dir_name(&self) -> String {
        self.store
            .as_ref()
            .map(|s| s.dir().display().to_string())
            .unwrap_or_default()
    }

    /// Runs `op` on the file store on the blocking pool until it succeeds, waiting
    /// between attempts (out of the queue's order meanwhile: `turn`, the place of
    /// what it writes, goes to the back); gives up only once the buffer is closed.
    async fn io<T, F>(&self, what: &'static str, turn: &mut Turn, op: F) -> Result<T, BufferClosed>
    where
        T: Send + 'static,
        F: Fn(&FileStore) -> io::Result<T> + Send + Sync + 'static,
    {
        let Some(store) = self.store.clone() else {
            return Err(BufferClosed(self.name));
        };
        let op = Arc::new(op);
        let backoff = Backoff::default();
        let mut failures = 0;
        loop {
            let (store, run) = (store.clone(), op.clone());
            let result = tokio::task::spawn_blocking(move || run(&store))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            match result {
                Ok(v) => {
                    if failures > 0 {
                        self.log_io_recovered(what, failures);
                    }
                    return Ok(v);
                }
                Err(e) => {
                    if self.lock().closed {
                        tracing::error!(buffer = self.name, error = %e, "cannot {what} in the file buffer, and it is closing; giving up: it was not committed, so its source sends it again after the restart");
                        return Err(BufferClosed(self.name));
                    }
                    let delay = backoff.delay(failures);
                    failures += 1;
                    self.log_io(what, &e, delay, failures);
                    turn.leave();
                    tokio::time::sleep(delay).await;
                    turn.rejoin();
                }
            }
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Chunks still held when the last handle goes were never confirmed: their
        // sources must not count them as delivered.
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for queued in &st.queue {
            if let Queued::Memory(chunk) = queued {
                chunk.mark(Delivery::Abandoned);
            }
        }
        for staged in st.staged.values() {
            if let StagedBody::Memory { receipts, .. } = &staged.body {
                for r in receipts {
                    r.mark(Delivery::Abandoned);
                }
            }
        }
    }
}

/// An ordered, byte-bounded queue of chunks in front of one sink, in memory or in
/// files. Cloning gives another handle to the same buffer.
#[derive(Clone)]
pub struct Buffer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("name", &self.shared.name)
            .field("kind", &self.shared.config.kind)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A place in the order of the changes that file writes make to the queue: taken
/// under the state lock when the write is planned, waited for once the write is
/// done. Dropped (the change made, or given up), it lets the next one go.
struct Turn {
    shared: Arc<Shared>,
    number: u64,
}

impl Turn {
    /// Takes the next turn. `st` is the locked state of `shared`.
    fn take(shared: &Arc<Shared>, st: &mut State) -> Self {
        let number = st.next_turn;
        st.next_turn += 1;
        st.turns.insert(number);
        Self {
            shared: shared.clone(),
            number,
        }
    }

    /// Leaves the order while a write that failed waits for its next attempt, so
    /// that it holds up no write planned before or meanwhile: a chunk that does not
    /// fit in what is left of a full disk must not keep smaller ones from being
    /// written and delivered, which is also what gives a segment's room back.
    fn leave(&mut self) {
        self.shared.lock().turns.remove(&self.number);
        self.shared.turns.notify_waiters();
    }

    /// Takes the last place in the order again, for the next attempt.
    fn rejoin(&mut self) {
        let mut st = self.shared.lock();
        self.number = st.next_turn;
        st.next_turn += 1;
        st.turns.insert(self.number);
    }

    /// Waits until every earlier turn is over.
    async fn wait(&self) {
        loop {
            let over = self.shared.turns.notified();
            tokio::pin!(over);
            over.as_mut().enable();
            if self.shared.lock().turns.first() == Some(&self.number) {
                return;
            }
            over.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // Never dropped with the state locked: it locks the state itself.
        self.shared.lock().turns.remove(&self.number);
        self.shared.turns.notify_waiters();
    }
}

/// What one file push must write, decided under the state lock.
struct Plan {
    /// The tag's staged chunk, full: seal it first.
    seal_first: Option<FileChunk>,
    /// The chunk to append to (new: `len` is 0).
    target: FileChunk,
    /// Queue the target right after the append.
    seal_after: bool,
}

enum Step {
    Take(Queued),
    Seal,
    Done,
    Wait(Option<Instant>),
}

impl Buffer {
    /// A memory buffer named after its sink (the name appears in logs), whatever
    /// `config.kind` says; [`Buffer::open`] opens the configured kind.
    pub fn new(name: &str, config: &BufferConfig) -> Self {
        Self::with_store(name, config, None, State::default())
    }

    /// The buffer `config` describes: in memory, or in files under
    /// `config.folder(data_dir, name)`, recovering the chunks left there.
    pub fn open(name: &str, config: &BufferConfig, data_dir: &Path) -> Result<Self, BufferError> {
        if config.kind == BufferKind::Memory {
            return Ok(Self::new(name, config));
        }
        let dir = config.folder(data_dir, name);
        let failed = |source| BufferError {
            name: name.to_string(),
            path: dir.clone(),
            source,
        };
        let store = FileStore::new(dir.clone(), config).map_err(failed)?;
        let recovered = store.recover().map_err(failed)?;
        let mut st = State {
            next_seq: recovered.next_seq,
            recovered_chunks: recovered.chunks.len() as u64,
            quarantined_chunks: recovered.quarantined,
            ..State::default()
        };
        let events: u64 = recovered.chunks.iter().map(|c| u64::from(c.count)).sum();
        for chunk in recovered.chunks {
            st.queued_bytes += chunk.len as usize;
            st.queue.push_back(Queued::File(chunk));
        }
        tracing::info!(
            buffer = name,
            dir = %dir.display(),
            chunks = st.queue.len(),
            events,
            bytes = st.queued_bytes,
            quarantined = recovered.quarantined,
            "file buffer opened"
        );
        Ok(Self::with_store(name, config, Some(store), st))
    }

    fn with_store(
        name: &str,
        config: &BufferConfig,
        store: Option<FileStore>,
        state: State,
    ) -> Self {
        let stages = config.stages();
        Self {
            shared: Arc::new(Shared {
                // Buffers live as long as the process; leaking the name once per sink
                // lets errors carry it without a lifetime.
                name: Box::leak(name.to_string().into_boxed_str()),
                config: config.clone(),
                limit: config.total_limit_size.as_usize().max(1),
                chunk_limit: config.chunk_limit_size.as_usize().max(1),
                record_limit: config.chunk_limit_records.unwrap_or(u32::MAX),
                stages,
                flush_interval: config.flush_interval.into(),
                flush_at_shutdown: config.flushes_at_shutdown(),
                store,
                state: Mutex::new(state),
                items: Notify::new(),
                space: Notify::new(),
                writer: Arc::new(tokio::sync::Mutex::new(())),
                turns: Notify::new(),
                secondary: OnceLock::new(),
            }),
        }
    }

    /// Sets where the sink puts what it gives up on (see [`Buffer::secondary`]);
    /// only the first call counts.
    pub fn with_secondary(self, secondary: DeadLetter) -> Self {
        let _ = self.shared.secondary.set(secondary);
        self
    }

    /// The sink's secondary output, if one was set.
    pub fn secondary(&self) -> Option<&DeadLetter> {
        self.shared.secondary.get()
    }

    /// The buffer's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// The settings it was made with.
    pub fn config(&self) -> &BufferConfig {
        &self.shared.config
    }

    /// The retry policy its sink applies (the `retry_*` settings).
    pub fn retry_policy(&self) -> RetryPolicy {
        self.shared.config.retry_policy()
    }

    /// Whether chunks live in files.
    pub fn is_durable(&self) -> bool {
        self.shared.store.is_some()
    }

    /// Adds a chunk. With `block`, waits until there is room; a chunk larger than the
    /// whole limit is accepted when the buffer is empty, so it cannot wedge the
    /// pipeline. Returns once the chunk is in the buffer: for a file buffer, once it
    /// is written (and fsynced, with `fsync: per_chunk`), when its receipts are
    /// released. A failing disk is retried while the producer waits.
    pub async fn push(&self, chunk: Chunk) -> Result<(), BufferClosed> {
        let Some(store) = &self.shared.store else {
            let size = chunk.byte_size();
            let Some(chunk) = self.admit(chunk, size).await? else {
                return Ok(());
            };
            let mut st = self.shared.lock();
            st.reserved -= size;
            self.stage_memory(&mut st, chunk, size);
            return Ok(());
        };
        // A large chunk is compressed on the blocking pool. When the most it can take
        // on disk fits at once, that happens in the same job as its write, which
        // saves a round trip to the pool; otherwise it is compressed first and waits
        // for room at its real size.
        let bound = stored_bound(&chunk);
        let (chunk, stored, size) = if chunk.byte_size() >= INLINE_ENCODE && self.try_reserve(bound)
        {
            (chunk, None, bound)
        } else {
            let stored = match encode(self.shared.name, store, &chunk).await {
                Ok(stored) => stored,
                Err(closed) => {
                    chunk.mark(Delivery::Abandoned);
                    return Err(closed);
                }
            };
            let size = stored.len();
            let Some(chunk) = self.admit(chunk, size).await? else {
                return Ok(());
            };
            (chunk, Some(stored), size)
        };
        // Everything from here on runs to its end even if the caller stops waiting,
        // so the chunk is either committed or not, never lost track of.
        let this = self.clone();
        let task = tokio::spawn(async move { this.commit_file(chunk, stored, size).await });
        task.await.unwrap_or(Err(BufferClosed(self.shared.name)))
    }

    /// Reserves room for `size` bytes if there is room right now.
    fn try_reserve(&self, size: usize) -> bool {
        let mut st = self.shared.lock();
        let room = !st.closed && st.used() + size <= self.shared.limit;
        if room {
            st.reserved += size;
        }
        room
    }

    /// Waits for room for `size` bytes (or applies the overflow policy) and reserves
    /// it. Returns the chunk when it is to be stored, `None` when it was discarded.
    async fn admit(&self, chunk: Chunk, size: usize) -> Result<Option<Chunk>, BufferClosed> {
        let mut counted_block = false;
        let mut doomed: Vec<FileChunk> = Vec::new();
        let result = loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if st.closed {
                    // Never stored: its source must not count it as delivered.
                    chunk.mark(Delivery::Abandoned);
                    break Err(BufferClosed(self.shared.name));
                }
                let limit = self.shared.limit;
                let fits = st.used() + size <= limit || st.used() == 0;
                if fits {
                    st.reserved += size;
                    break Ok(Some(chunk));
                }
                match self.shared.config.overflow_action {
                    OverflowAction::Block => {
                        if !counted_block {
                            st.blocked += 1;
                            counted_block = true;
                        }
                        if !st.staged.is_empty() {
                            // Staged chunks take room the sink cannot free until they
                            // are queued: queue them now rather than at their interval.
                            st.flush_now = true;
                            self.shared.items.notify_waiters();
                        }
                    }
                    OverflowAction::DropNewest => {
                        chunk.mark(Delivery::Dropped);
                        self.shared.record_drop(&mut st, chunk.tag(), chunk.count());
                        break Ok(None);
                    }
                    OverflowAction::DropOldestChunk => {
                        while st.used() + size > limit {
                            let Some(old) = st.queue.pop_front() else {
                                break;
                            };
                            st.queued_bytes -= old.size();
                            self.shared.record_drop(&mut st, old.tag(), old.count());
                            match old {
                                Queued::Memory(c) => c.mark(Delivery::Dropped),
                                Queued::File(f) => doomed.push(f),
                            }
                        }
                        if st.used() + size <= limit || st.used() == 0 {
                            st.reserved += size;
                            break Ok(Some(chunk));
                        }
                        // Everything left is staged or in flight; the newcomer is the
                        // one that cannot be kept.
                        chunk.mark(Delivery::Dropped);
                        self.shared.record_drop(&mut st, chunk.tag(), chunk.count());
                        break Ok(None);
                    }
                }
            }
            space.await;
        };
        if let Some(store) = &self.shared.store {
            for f in doomed {
                if let Err(e) = store.remove(&f) {
                    tracing::warn!(buffer = self.shared.name, error = %e, "cannot delete a discarded chunk file; it will be sent after a restart");
                }
            }
        }
        result
    }

    /// Stages or queues a memory chunk whose room is reserved.
    fn stage_memory(&self, st: &mut State, mut chunk: Chunk, size: usize) {
        let shared = &self.shared;
        if !shared.stages {
            shared.enqueue(st, Queued::Memory(chunk));
            return;
        }
        let tag = chunk.tag().clone();
        if let Some(s) = st.staged.get(&tag)
            && !shared.fits(s.count(), s.raw_bytes(), &chunk)
        {
            shared.seal_memory(st, &tag);
        }
        let alone = shared.full(chunk.count(), chunk.byte_size())
            || (st.staged.len() >= MAX_STAGED && !st.staged.contains_key(&tag));
        if alone {
            shared.enqueue(st, Queued::Memory(chunk));
            return;
        }
        if !st.staged.contains_key(&tag) {
            // A waiting `pop` must learn the new chunk's deadline.
            shared.items.notify_waiters();
        }
        let staged = st.staged.entry(tag.clone()).or_insert_with(|| Staged {
            created: Instant::now(),
            body: StagedBody::Memory {
                id: ChunkId::random(),
                tag: tag.clone(),
                entries: Vec::with_capacity(shared.chunk_limit.min(1 << 20)),
                count: 0,
                receipts: Vec::new(),
                segments: Vec::new(),
            },
        });
        let mut full = false;
        if let StagedBody::Memory {
            entries,
            count,
            receipts,
            segments,
            ..
        } = &mut staged.body
        {
            entries.extend_from_slice(chunk.entries());
            *count += chunk.count();
            receipts.extend(chunk.take_receipts());
            segments.extend(chunk.segments());
            full = shared.full(*count, entries.len());
        }
        st.staged_bytes += size;
        if full {
            shared.seal_memory(st, &tag);
        }
    }

    /// Whether `chunk` is queued by itself rather than added to its tag's staged
    /// chunk. `st` is the locked state.
    fn alone(&self, st: &State, chunk: &Chunk) -> bool {
        let shared = &self.shared;
        !shared.stages
            || shared.full(chunk.count(), chunk.byte_size())
            || (st.staged.len() >= MAX_STAGED && !st.staged.contains_key(chunk.tag()))
    }

    /// Decides what a file push of `chunk` writes, and takes its turn. `st` is the
    /// locked state; the caller holds the writer lock unless the chunk is queued by
    /// itself with no staged chunk of its tag.
    fn plan_file(&self, st: &mut State, chunk: &Chunk) -> (Plan, Turn) {
        let shared = &self.shared;
        let tag = chunk.tag();
        let mut seal_first = None;
        if let Some(s) = st.staged.get(tag)
            && (!shared.stages || !shared.fits(s.count(), s.raw_bytes(), chunk))
            && let Some(Staged {
                body: StagedBody::File(f),
                ..
            }) = st.staged.remove(tag)
        {
            seal_first = Some(f);
        }
        let alone = self.alone(st, chunk);
        let existing = match st.staged.get(tag) {
            Some(Staged {
                body: StagedBody::File(f),
                ..
            }) if !alone => Some(f.clone()),
            _ => None,
        };
        let target = existing.unwrap_or_else(|| {
            let seq = st.next_seq;
            st.next_seq += 1;
            FileChunk {
                seq,
                // A chunk queued as it is keeps its id; a new staged chunk gets one.
                id: if alone { chunk.id() } else { ChunkId::random() },
                tag: tag.clone(),
                count: 0,
                raw_bytes: 0,
                segments: 0,
                len: 0,
                place: Place::File,
            }
        });
        let seal_after = alone
            || shared.full(
                target.count.saturating_add(chunk.count()),
                target.raw_bytes as usize + chunk.byte_size(),
            );
        let plan = Plan {
            seal_first,
            target,
            seal_after,
        };
        (plan, Turn::take(shared, st))
    }

    /// Writes a file chunk whose room (`size` bytes) is reserved, compressing it
    /// first unless `stored` is its stored form already; then releases its receipts.
    async fn commit_file(
        &self,
        mut chunk: Chunk,
        stored: Option<Vec<u8>>,
        size: usize,
    ) -> Result<(), BufferClosed> {
        let shared = &self.shared;
        let tag = chunk.tag().clone();
        // A chunk queued by itself, with no staged chunk of its tag to seal first,
        // is a file no one else writes: it needs no writer lock.
        let mut writer = None;
        let (plan, turn) = loop {
            let planned = {
                let mut st = shared.lock();
                let touches_staged = !self.alone(&st, &chunk) || st.staged.contains_key(&tag);
                if writer.is_none() && shared.stages && touches_staged {
                    None
                } else {
                    Some(self.plan_file(&mut st, &chunk))
                }
            };
            match planned {
                Some(planned) => break planned,
                None => writer = Some(shared.writer.clone().lock_owned().await),
            }
        };
        let Plan {
            seal_first,
            target,
            seal_after,
        } = plan;
        let added_segments = chunk.segments().len() as u32;
        let (added_count, added_raw) = (chunk.count(), chunk.byte_size() as u64);
        let stored = Arc::new(match stored {
            Some(stored) => Stored::Ready(stored),
            None => {
                // The job needs the entries, not the receipts: those stay with the
                // push until the chunk is committed.
                let mut bare = chunk.clone();
                drop(bare.take_receipts());
                Stored::Later(bare, OnceLock::new())
            }
        });
        let job = {
            let (seal_first, target) = (seal_first.clone(), target.clone());
            move |store: &FileStore| -> io::Result<(Option<FileChunk>, FileChunk)> {
                let sealed_first = match &seal_first {
                    Some(f) => Some(FileChunk {
                        len: store.seal(f)?,
                        ..f.clone()
                    }),
                    None => None,
                };
                let segment = stored.get(store)?;
                let mut t = target.clone();
                let new = t.len == 0;
                t.count += added_count;
                t.raw_bytes += added_raw;
                t.segments += added_segments;
                if new && seal_after {
                    // A chunk queued as it comes: written whole, in one go.
                    (t.len, t.place) = store.write_sealed(&t, segment)?;
                    return Ok((sealed_first, t));
                }
                if new {
                    t.len = store.create(t.seq, t.id, &t.tag)?;
                }
                t.len = store.append(t.seq, t.len, segment)?;
                if seal_after {
                    t.len = store.seal(&t)?;
                }
                Ok((sealed_first, t))
            }
        };
        let mut turn = turn;
        let done = shared.io("write a chunk", &mut turn, job).await;
        turn.wait().await;
        let mut st = shared.lock();
        st.reserved -= size;
        let (sealed_first, written) = match done {
            Ok(done) => done,
            Err(closed) => {
                // Not committed: its source must not count it as delivered (a
                // tailer's checkpoint stays before its lines). A staged chunk taken
                // out to be sealed goes back as it was.
                chunk.mark(Delivery::Abandoned);
                if let Some(f) = seal_first {
                    st.staged.insert(
                        tag,
                        Staged {
                            created: Instant::now(),
                            body: StagedBody::File(f),
                        },
                    );
                }
                drop(st);
                drop(turn);
                shared.space.notify_waiters();
                return Err(closed);
            }
        };
        if let Some(f) = sealed_first {
            st.staged_bytes -= f.len as usize - format::TRAILER;
            shared.enqueue(&mut st, Queued::File(f));
        }
        // An existing staged chunk's bytes are counted already.
        let before = target.len as usize;
        if seal_after {
            if before > 0 {
                st.staged.remove(&tag);
                st.staged_bytes -= before;
            }
            shared.enqueue(&mut st, Queued::File(written));
        } else {
            st.staged_bytes += written.len as usize - before;
            let created = match st.staged.get(&tag) {
                Some(s) => s.created,
                None => {
                    // A waiting `pop` must learn the new chunk's deadline.
                    shared.items.notify_waiters();
                    Instant::now()
                }
            };
            st.staged.insert(
                tag,
                Staged {
                    created,
                    body: StagedBody::File(written),
                },
            );
        }
        drop(st);
        drop(turn);
        drop(writer);
        shared.space.notify_waiters();
        // Committed: the source may count these events as delivered to this buffer.
        drop(chunk.take_receipts());
        Ok(())
    }

    /// Takes the next chunk, waiting for one. Returns `None` once the buffer is closed
    /// and empty (at once, when closed, if `flush_at_shutdown` is off: the chunks stay
    /// on disk for the next start).
    pub async fn pop(&self) -> Option<Lease> {
        loop {
            let items = self.shared.items.notified();
            tokio::pin!(items);
            items.as_mut().enable();
            let step = self.step();
            match step {
                Step::Take(queued) => {
                    if let Some(lease) = self.lease(queued).await {
                        return Some(lease);
                    }
                }
                Step::Seal => self.seal_due().await,
                Step::Done => return None,
                Step::Wait(deadline) => match deadline {
                    Some(at) => {
                        let at = tokio::time::Instant::from_std(at);
                        tokio::select! {
                            _ = &mut items => {}
                            _ = tokio::time::sleep_until(at) => {}
                        }
                    }
                    None => items.await,
                },
            }
        }
    }

    /// Takes the next queued chunk if there is one now, reading it from disk on the
    /// calling thread for a file buffer (async code may prefer [`Buffer::pop_ready`]).
    pub fn try_pop(&self) -> Option<Lease> {
        match self.step() {
            Step::Take(Queued::Memory(chunk)) => Some(self.memory_lease(chunk)),
            Step::Take(Queued::File(meta)) => {
                let mut guard = Taking::new(self.shared.clone(), meta);
                let store = self.shared.store.clone()?;
                let meta = guard.meta.clone()?;
                let read = store.read(&meta);
                self.finish_lease(&mut guard, read)
            }
            _ => None,
        }
    }

    /// Takes the next queued chunk if there is one now, without waiting for one.
    pub async fn pop_ready(&self) -> Option<Lease> {
        loop {
            match self.step() {
                Step::Take(queued) => {
                    if let Some(lease) = self.lease(queued).await {
                        return Some(lease);
                    }
                }
                _ => return None,
            }
        }
    }

    /// Decides what `pop` does next; moves a taken chunk in flight.
    fn step(&self) -> Step {
        let shared = &self.shared;
        let mut st = shared.lock();
        if st.closed && !shared.flush_at_shutdown {
            return Step::Done;
        }
        if let Some(queued) = st.queue.pop_front() {
            let size = queued.size();
            st.queued_bytes -= size;
            st.in_flight_bytes += size;
            st.in_flight_chunks += 1;
            if !st.queue.is_empty() {
                // Let another waiting consumer look too.
                shared.items.notify_one();
            }
            return Step::Take(queued);
        }
        let flushing = st.closed || st.flush_now;
        let now = Instant::now();
        let due = |s: &Staged| flushing || now.duration_since(s.created) >= shared.flush_interval;
        if st.staged.values().any(due) {
            if shared.store.is_none() {
                let tags: Vec<Tag> = st
                    .staged
                    .iter()
                    .filter(|(_, s)| due(s))
                    .map(|(t, _)| t.clone())
                    .collect();
                for tag in tags {
                    shared.seal_memory(&mut st, &tag);
                }
                st.flush_now = false;
                drop(st);
                return self.step();
            }
            return Step::Seal;
        }
        if st.closed {
            return Step::Done;
        }
        Step::Wait(
            st.staged
                .values()
                .map(|s| s.created + shared.flush_interval)
                .min(),
        )
    }

    /// Seals and queues the file buffer's staged chunks that are due.
    async fn seal_due(&self) {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let shared = &this.shared;
            let _writer = shared.writer.clone().lock_owned().await;
            let (mut due, turn): (Vec<(Tag, Staged)>, Turn) = {
                let mut st = shared.lock();
                let flushing = st.closed || st.flush_now;
                st.flush_now = false;
                let now = Instant::now();
                let tags: Vec<Tag> = st
                    .staged
                    .iter()
                    .filter(|(_, s)| {
                        flushing || now.duration_since(s.created) >= shared.flush_interval
                    })
                    .map(|(t, _)| t.clone())
                    .collect();
                let due = tags
                    .into_iter()
                    .filter_map(|t| st.staged.remove(&t).map(|s| (t, s)))
                    .collect();
                (due, Turn::take(shared, &mut st))
            };
            if due.is_empty() {
                return;
            }
            due.sort_by_key(|(_, s)| s.seq());
            let files: Vec<FileChunk> = due
                .iter()
                .filter_map(|(_, s)| match &s.body {
                    StagedBody::File(f) => Some(f.clone()),
                    StagedBody::Memory { .. } => None,
                })
                .collect();
            let job = move |store: &FileStore| -> io::Result<Vec<FileChunk>> {
                files
                    .iter()
                    .map(|f| {
                        Ok(FileChunk {
                            len: store.seal(f)?,
                            ..f.clone()
                        })
                    })
                    .collect()
            };
            let mut turn = turn;
            let sealed = shared.io("queue a staged chunk", &mut turn, job).await;
            turn.wait().await;
            let mut st = shared.lock();
            match sealed {
                Ok(sealed) => {
                    for (f, (_, staged)) in sealed.into_iter().zip(due) {
                        st.staged_bytes -= staged.size();
                        shared.enqueue(&mut st, Queued::File(f));
                    }
                }
                Err(_) => {
                    // Closing with a failing disk: they stay staged on disk, and are
                    // recovered at the next start.
                    for (tag, staged) in due.drain(..) {
                        st.staged.insert(tag, staged);
                    }
                }
            }
            drop(st);
            drop(turn);
        });
        let _ = task.await;
    }

    fn memory_lease(&self, chunk: Chunk) -> Lease {
        Lease {
            size: chunk.byte_size(),
            chunk: Some(chunk),
            file: None,
            shared: self.shared.clone(),
        }
    }

    /// Turns a taken chunk into a lease: for a file buffer, reads it back.
    async fn lease(&self, queued: Queued) -> Option<Lease> {
        let meta = match queued {
            Queued::Memory(chunk) => return Some(self.memory_lease(chunk)),
            Queued::File(meta) => meta,
        };
        let store = self.shared.store.clone()?;
        // Should this future be dropped while the read runs, the guard puts the
        // chunk back.
        let mut guard = Taking::new(self.shared.clone(), meta.clone());
        let read = tokio::task::spawn_blocking(move || store.read(&meta))
            .await
            .unwrap_or_else(|e| Err(ReadFailure::Io(io::Error::other(e))));
        if let Err(ReadFailure::Io(_)) = &read {
            // Give a failing disk a moment before the chunk is tried again.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        self.finish_lease(&mut guard, read)
    }

    fn finish_lease(&self, guard: &mut Taking, read: Result<Chunk, ReadFailure>) -> Option<Lease> {
        let meta = guard.meta.take()?;
        match read {
            Ok(chunk) => Some(Lease {
                size: meta.len as usize,
                chunk: Some(chunk),
                file: Some(meta),
                shared: self.shared.clone(),
            }),
            Err(ReadFailure::Io(e)) => {
                tracing::error!(buffer = self.shared.name, chunk = meta.seq, error = %e, "cannot read a chunk of the file buffer; it is tried again");
                guard.meta = Some(meta);
                None
            }
            Err(ReadFailure::Damaged(reason)) => {
                if let Some(store) = &self.shared.store {
                    store.quarantine_queued(&meta, &reason);
                }
                tracing::error!(
                    buffer = self.shared.name,
                    tag = %meta.tag,
                    events = meta.count,
                    %reason,
                    "a chunk of the file buffer was damaged on disk after it was written; its events cannot be delivered"
                );
                let mut st = self.shared.lock();
                st.in_flight_bytes -= meta.len as usize;
                st.in_flight_chunks -= 1;
                st.quarantined_chunks += 1;
                drop(st);
                self.shared.space.notify_waiters();
                None
            }
        }
    }

    /// Queues every staged chunk now, whatever its age (Fluentd's flush on demand).
    pub async fn flush(&self) {
        let shared = &self.shared;
        {
            let mut st = shared.lock();
            if st.staged.is_empty() {
                return;
            }
            if shared.store.is_none() {
                let tags: Vec<Tag> = st.staged.keys().cloned().collect();
                for tag in tags {
                    shared.seal_memory(&mut st, &tag);
                }
                return;
            }
            st.flush_now = true;
        }
        self.seal_due().await;
    }

    /// Stops accepting chunks. Queued chunks can still be taken (with
    /// `flush_at_shutdown`, staged ones too); `pop` returns `None` once they are gone.
    pub fn close(&self) {
        let shared = &self.shared;
        let mut st = shared.lock();
        st.closed = true;
        if shared.store.is_none() && shared.flush_at_shutdown {
            let tags: Vec<Tag> = st.staged.keys().cloned().collect();
            for tag in tags {
                shared.seal_memory(&mut st, &tag);
            }
        }
        drop(st);
        shared.items.notify_waiters();
        shared.space.notify_waiters();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// The buffer's counters.
    pub fn stats(&self) -> BufferStats {
        let st = self.shared.lock();
        BufferStats {
            staged_chunks: st.staged.len(),
            staged_bytes: st.staged_bytes,
            queued_chunks: st.queue.len(),
            queued_bytes: st.queued_bytes,
            in_flight_chunks: st.in_flight_chunks,
            in_flight_bytes: st.in_flight_bytes,
            dropped_chunks: st.dropped_chunks,
            dropped_events: st.dropped_events,
            blocked: st.blocked,
            recovered_chunks: st.recovered_chunks,
            quarantined_chunks: st.quarantined_chunks,
        }
    }

    /// Waits until nothing is staged, queued or in flight, or `timeout` passes.
    /// Returns whether the buffer drained.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            if self.shared.lock().used() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, space).await.is_err() {
                return self.shared.lock().used() == 0;
            }
        }
    }
}

/// Chunks from this size on are compressed on the blocking pool, not on the async
/// threads.
const INLINE_ENCODE: usize = 64 * 1024;

/// The most bytes `chunk` can take once stored: zstd's bound for each of its runs
/// (a run grows by at most 1/256, plus 64 bytes for a small one) and their headers.
fn stored_bound(chunk: &Chunk) -> usize {
    let raw = chunk.byte_size();
    raw + raw / 256 + chunk.segments().len().max(1) * (format::SEGMENT_HEADER + 65)
}

/// A chunk's stored form in a file push: given, or made by the job that writes it
/// (once: a write that is tried again reuses it).
enum Stored {
    Ready(Vec<u8>),
    Later(Chunk, OnceLock<Vec<u8>>),
}

impl Stored {
    fn get(&self, store: &FileStore) -> io::Result<&[u8]> {
        match self {
            Stored::Ready(stored) => Ok(stored),
            Stored::Later(chunk, made) => {
                if let Some(stored) = made.get() {
                    return Ok(stored);
                }
                let stored = store.encode_segment(chunk)?;
                Ok(made.get_or_init(|| stored))
            }
        }
    }
}

/// The stored form of a chunk, compressed off the async threads when it is large.
async fn encode(
    name: &'static str,
    store: &FileStore,
    chunk: &Chunk,
) -> Result<Vec<u8>, BufferClosed> {
    let encoded = if chunk.byte_size() < INLINE_ENCODE {
        store.encode_segment(chunk)
    } else {
        let (store, chunk) = (store.clone(), chunk.clone());
        tokio::task::spawn_blocking(move || store.encode_segment(&chunk))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    };
    encoded.map_err(|e| {
        // Compressing in memory does not fail short of running out of it.
        tracing::error!(buffer = name, error = %e, "cannot compress a chunk for the file buffer");
        BufferClosed(name)
    })
}

/// A file chunk taken from the queue whose lease is not made yet; dropped before it
/// is, it puts the chunk back at the front.
struct Taking {
    shared: Arc<Shared>,
    meta: Option<FileChunk>,
}

impl Taking {
    fn new(shared: Arc<Shared>, meta: FileChunk) -> Self {
        Self {
            shared,
            meta: Some(meta),
        }
    }
}

impl Drop for Taking {
    fn drop(&mut self) {
        if let Some(meta) = self.meta.take() {
            requeue(&self.shared, Queued::File(meta));
        }
    }
}

/// Puts an in-flight chunk back at the front of the queue.
fn requeue(shared: &Shared, queued: Queued) {
    let mut st = shared.lock();
    let size = queued.size();
    st.in_flight_bytes -= size;
    st.in_flight_chunks -= 1;
    st.queued_bytes += size;
    st.queue.push_front(queued);
    drop(st);
    shared.items.notify_one();
}

/// A chunk taken from a buffer by its sink. `ack` removes it for good; dropping the
/// lease without an ack (or calling `retry`) puts it back at the front.
pub struct Lease {
    chunk: Option<Chunk>,
    /// Where the chunk is on disk, for a file buffer.
    file: Option<FileChunk>,
    /// What it counts toward the limit.
    size: usize,
    shared: Arc<Shared>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("chunk", &self.chunk).finish()
    }
}

impl Lease {
    /// The leased chunk.
    pub fn chunk(&self) -> &Chunk {
        self.chunk.as_ref().expect("a live lease holds its chunk")
    }

    /// The destination confirmed the chunk: remove it from the buffer.
    pub fn ack(mut self) {
        if let Some(chunk) = self.chunk.take() {
            self.release();
            // Dropping the chunk here releases its receipts as delivered.
            drop(chunk);
        }
    }

    /// The sink gave up on the chunk (it was written to the secondary output or is
    /// being discarded): remove it and report it as failed to its source.
    pub fn fail(mut self) {
        if let Some(chunk) = self.chunk.take() {
            chunk.mark(Delivery::Failed);
            self.release();
        }
    }

    /// Puts the chunk back at the front to be sent again.
    pub fn retry(self) {
        drop(self);
    }

    fn release(&mut self) {
        if let (Some(meta), Some(store)) = (self.file.take(), &self.shared.store)
            && let Err(e) = store.remove(&meta)
        {
            tracing::warn!(buffer = self.shared.name, chunk = meta.seq, error = %e, "cannot mark a delivered chunk as done in the file buffer; it is sent again after a restart (a duplicate, nothing lost)");
        }
        let mut st = self.shared.lock();
        st.in_flight_bytes -= self.size;
        st.in_flight_chunks -= 1;
        drop(st);
        self.shared.space.notify_waiters();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            let queued = match self.file.take() {
                Some(meta) => Queued::File(meta),
                None => Queued::Memory(chunk),
            };
            requeue(&self.shared, queued);
        }
    }
}
