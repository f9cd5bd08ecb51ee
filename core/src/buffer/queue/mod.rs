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
//! queue waits for its [`Turn`](turn::Turn), so chunks are queued in the order
//! their pushes were planned, as if one at a time.
//!
//! A write that fails (a full disk, a failed fdatasync) is tried again, with a
//! backoff, until it works; its push waits, so nothing of it is acknowledged, and
//! meanwhile it holds up no other write. A push given up on (the buffer closed
//! under it at a stop) marks its chunk abandoned: its source sends it again.
//!
//! - `state`: what the buffer holds ([`State`]) and what its handles share.
//! - `accounting`: room reserved before a write, the overflow policy, the counters.
//! - `staging`: chunks of one tag appended to a staged chunk, and sealing it.
//! - `commit`: a file push, from planning what it writes to releasing its receipts.
//! - `turn`: the order in which file writes change the queue.
//! - `write_retry`: a failing disk's writes tried again, and logged.
//! - `lease`: taking chunks for the sink, and giving them back.

mod accounting;
mod commit;
mod lease;
mod staging;
mod state;
mod turn;
mod write_retry;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use thiserror::Error;
use tokio::sync::Notify;

use super::config::{BufferConfig, BufferKind};
use super::file::FileStore;
use crate::chunk::Chunk;
use crate::dead_letter::DeadLetter;
use crate::event::Tag;
use crate::retry::RetryPolicy;

pub use lease::Lease;
use state::{Queued, Shared, State};

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
    /// Events in the queued chunks.
    pub queued_events: u64,
    /// Chunks the sink gave back to be sent again (a failed or abandoned attempt).
    pub retried_chunks: u64,
    /// How long ago the oldest chunk held (being filled, queued or in flight) was
    /// created; a chunk recovered at start counts from its file's time.
    pub oldest_chunk_age: Option<std::time::Duration>,
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
            st.queued_events += u64::from(chunk.count);
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
                chunk_limit: config.chunk_limit().as_usize().max(1),
                record_limit: config.chunk_limit_records.unwrap_or(u32::MAX),
                stages,
                flush_interval: config.flush_interval.into(),
                flush_at_shutdown: config.flushes_at_shutdown(),
                store,
                state: Mutex::new(state),
                items: Notify::new(),
                finished: Notify::new(),
                space: Notify::new(),
                writer: Arc::new(tokio::sync::Mutex::new(())),
                turns: Notify::new(),
                dead_letter: OnceLock::new(),
            }),
        }
    }

    /// Sets where the sink puts what it gives up on (see [`Buffer::dead_letter`]);
    /// only the first call counts.
    pub fn with_dead_letter(self, dead_letter: DeadLetter) -> Self {
        let _ = self.shared.dead_letter.set(dead_letter);
        self
    }

    /// The sink's dead-letter output, if one was set.
    pub fn dead_letter(&self) -> Option<&DeadLetter> {
        self.shared.dead_letter.get()
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
        if let Some(store) = &self.shared.store {
            return self.push_file(store, chunk).await;
        }
        let size = chunk.byte_size();
        let Some(chunk) = self.admit(chunk, size).await? else {
            return Ok(());
        };
        let mut st = self.shared.lock();
        st.reserved -= size;
        self.stage_memory(&mut st, chunk, size);
        Ok(())
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
        shared.finished.notify_waiters();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }
}
