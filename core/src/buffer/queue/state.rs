//! What a buffer holds, shared by its handles, its producers' tasks and its leases:
//! the staged chunks by tag, the queue, the bytes of each and the counters, under
//! one lock.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;

use crate::buffer::config::BufferConfig;
use crate::buffer::file::{FileChunk, FileStore};
use crate::chunk::{Chunk, ChunkId, Origin};
use crate::dead_letter::DeadLetter;
use crate::event::Tag;
use crate::receipt::{Delivery, Receipt};

/// A queued chunk: the chunk itself (memory), or where it is (file).
#[derive(Debug)]
pub(super) enum Queued {
    Memory(Chunk),
    File(FileChunk),
}

impl Queued {
    pub(super) fn size(&self) -> usize {
        match self {
            Queued::Memory(c) => c.byte_size(),
            Queued::File(f) => f.len as usize,
        }
    }

    pub(super) fn tag(&self) -> &Tag {
        match self {
            Queued::Memory(c) => c.tag(),
            Queued::File(f) => &f.tag,
        }
    }

    pub(super) fn count(&self) -> u32 {
        match self {
            Queued::Memory(c) => c.count(),
            Queued::File(f) => f.count,
        }
    }

    pub(super) fn born(&self) -> SystemTime {
        match self {
            Queued::Memory(c) => c.born(),
            Queued::File(f) => f.born,
        }
    }
}

/// A chunk being filled.
#[derive(Debug)]
pub(super) struct Staged {
    pub(super) created: Instant,
    pub(super) body: StagedBody,
}

/// A staged chunk's events: in memory, or in its staged file.
#[derive(Debug)]
pub(super) enum StagedBody {
    Memory {
        id: ChunkId,
        tag: Tag,
        entries: Vec<u8>,
        count: u32,
        receipts: Vec<Receipt>,
        origins: Vec<Origin>,
    },
    File(FileChunk),
}

impl Staged {
    pub(super) fn size(&self) -> usize {
        match &self.body {
            StagedBody::Memory { entries, .. } => entries.len(),
            StagedBody::File(f) => f.len as usize,
        }
    }

    pub(super) fn raw_bytes(&self) -> usize {
        match &self.body {
            StagedBody::Memory { entries, .. } => entries.len(),
            StagedBody::File(f) => f.raw_bytes as usize,
        }
    }

    pub(super) fn count(&self) -> u32 {
        match &self.body {
            StagedBody::Memory { count, .. } => *count,
            StagedBody::File(f) => f.count,
        }
    }

    pub(super) fn seq(&self) -> u64 {
        match &self.body {
            StagedBody::Memory { .. } => 0,
            StagedBody::File(f) => f.seq,
        }
    }
}

/// The chunks and counters of a buffer, under [`Shared`]'s lock.
#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) staged: HashMap<Tag, Staged>,
    pub(super) queue: VecDeque<Queued>,
    pub(super) staged_bytes: usize,
    pub(super) queued_bytes: usize,
    /// Events in the queued chunks.
    pub(super) queued_events: u64,
    pub(super) in_flight_chunks: usize,
    pub(super) in_flight_bytes: usize,
    /// Room promised to pushes whose chunk is being written.
    pub(super) reserved: usize,
    pub(super) next_seq: u64,
    /// Turns taken and not over yet (see [`Turn`](super::turn::Turn)); the first one goes.
    pub(super) turns: BTreeSet<u64>,
    pub(super) next_turn: u64,
    pub(super) closed: bool,
    /// A producer waits for room while chunks are staged: queue them now.
    pub(super) flush_now: bool,
    pub(super) dropped_chunks: u64,
    pub(super) dropped_events: u64,
    pub(super) blocked: u64,
    /// Producers waiting for room now.
    pub(super) waiting: usize,
    pub(super) recovered_chunks: u64,
    pub(super) quarantined_chunks: u64,
    /// Chunks a sink gave back to be sent again.
    pub(super) retried_chunks: u64,
    /// When each chunk in flight was born (a count per time), for the oldest age.
    pub(super) in_flight_born: BTreeMap<SystemTime, u32>,
    pub(super) last_drop_log: Option<Instant>,
    pub(super) drops_since_log: u64,
    pub(super) last_io_log: Option<Instant>,
    /// A failed write was logged and no write has succeeded since (to say, once,
    /// when it works again).
    pub(super) io_failing: bool,
}

impl State {
    pub(super) fn used(&self) -> usize {
        self.staged_bytes + self.queued_bytes + self.in_flight_bytes + self.reserved
    }

    /// A chunk born at `born` goes in flight.
    pub(super) fn take_off(&mut self, born: SystemTime) {
        *self.in_flight_born.entry(born).or_default() += 1;
    }

    /// A chunk born at `born` is no longer in flight.
    pub(super) fn land(&mut self, born: SystemTime) {
        if let Some(n) = self.in_flight_born.get_mut(&born) {
            *n -= 1;
            if *n == 0 {
                self.in_flight_born.remove(&born);
            }
        }
    }

    /// The age of the oldest chunk held: in flight, at the head of the queue (the
    /// queue is in order, so its head is its oldest), or being filled.
    pub(super) fn oldest_age(&self) -> Option<Duration> {
        let now = SystemTime::now();
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        let in_flight = self.in_flight_born.keys().next().map(|t| age(*t));
        let queued = self.queue.front().map(|q| age(q.born()));
        let staged = self.staged.values().map(|s| s.created.elapsed()).max();
        [in_flight, queued, staged].into_iter().flatten().max()
    }
}

/// What every handle of one buffer shares: its settings, its state, where its files
/// are, and the signals its producers and consumers wait on.
pub(super) struct Shared {
    pub(super) name: &'static str,
    pub(super) config: BufferConfig,
    pub(super) limit: usize,
    pub(super) chunk_limit: usize,
    pub(super) record_limit: u32,
    pub(super) stages: bool,
    pub(super) flush_interval: Duration,
    pub(super) flush_at_shutdown: bool,
    /// Where a file buffer's chunks are; `None` for a memory buffer.
    pub(super) store: Option<FileStore>,
    pub(super) state: Mutex<State>,
    /// Signalled when a chunk is queued or the buffer closes.
    pub(super) items: Notify,
    /// Signalled when room is freed.
    pub(super) space: Notify,
    /// Signalled to every waiter when the buffer may have nothing left to hand out:
    /// at close, and when a closed buffer's queue is emptied. Apart from `items`, so
    /// that a wait for the end never takes a wake-up meant for a consumer.
    pub(super) finished: Notify,
    /// Held by whoever writes staged chunk files (appends, seals), so that one staged
    /// chunk is never written by two tasks at once.
    pub(super) writer: Arc<tokio::sync::Mutex<()>>,
    /// Signalled when a turn is over.
    pub(super) turns: Notify,
    pub(super) dead_letter: OnceLock<DeadLetter>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters half-updated in a
        // way that matters more than stopping the pipeline would, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn enqueue(&self, st: &mut State, queued: Queued) {
        st.queued_bytes += queued.size();
        st.queued_events += u64::from(queued.count());
        st.queue.push_back(queued);
        self.items.notify_one();
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
