//! Leases: the sink takes the next queued chunk (a file buffer reads it back from
//! disk, a damaged one goes to quarantine), and holds it as a [`Lease`] until it
//! acks it; a lease dropped without an ack, or a read abandoned, puts the chunk back
//! at the front. `pop` also seals staged chunks whose `flush_interval` passed.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Buffer;
use super::state::{Queued, Shared, Staged, State};
use crate::buffer::file::{FileChunk, ReadFailure};
use crate::chunk::Chunk;
use crate::event::Tag;
use crate::receipt::Delivery;

/// What `pop` does next.
enum Step {
    Take(Queued),
    Seal,
    Done,
    Wait(Option<Instant>),
}

impl Buffer {
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

    /// Resolves once [`pop`](Self::pop) would return `None` to a consumer holding
    /// no lease: the buffer is closed and holds nothing it would still hand out. For
    /// a sink still waiting for its destination at start, so that a stop with nothing
    /// to deliver does not wait for the destination.
    pub async fn finished(&self) {
        loop {
            let finished = self.shared.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            if self.is_finished() {
                return;
            }
            finished.await;
        }
    }

    fn is_finished(&self) -> bool {
        nothing_to_hand_out(&self.shared, &self.shared.lock())
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
        if nothing_to_hand_out(shared, &st) {
            return Step::Done;
        }
        if let Some(queued) = st.queue.pop_front() {
            let size = queued.size();
            st.take_off(queued.born());
            st.queued_events -= u64::from(queued.count());
            st.queued_bytes -= size;
            st.in_flight_bytes += size;
            st.in_flight_chunks += 1;
            if !st.queue.is_empty() {
                // Let another waiting consumer look too.
                shared.items.notify_one();
            } else if st.closed {
                shared.finished.notify_waiters();
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

    fn memory_lease(&self, chunk: Chunk) -> Lease {
        Lease {
            size: chunk.byte_size(),
            born: chunk.born(),
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
                born: meta.born,
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
                st.land(meta.born);
                st.quarantined_chunks += 1;
                drop(st);
                self.shared.space.notify_waiters();
                None
            }
        }
    }
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
    st.land(queued.born());
    st.retried_chunks += 1;
    st.queued_events += u64::from(queued.count());
    st.queued_bytes += size;
    st.queue.push_front(queued);
    drop(st);
    shared.items.notify_one();
}

/// A chunk taken from a buffer by its sink. [`delivered`](Lease::delivered) and
/// [`dead_lettered`](Lease::dead_lettered) remove it for good; dropping the lease (or
/// calling [`put_back`](Lease::put_back)) puts it back at the front.
pub struct Lease {
    chunk: Option<Chunk>,
    /// Where the chunk is on disk, for a file buffer.
    file: Option<FileChunk>,
    /// What it counts toward the limit.
    size: usize,
    /// When the chunk was born (as the queue knew it).
    born: std::time::SystemTime,
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

    /// The destination confirmed the chunk: remove it from the buffer, and report it
    /// delivered to its source.
    pub fn delivered(mut self) {
        if let Some(chunk) = self.chunk.take() {
            self.release();
            // Dropping the chunk here releases its receipts as delivered.
            drop(chunk);
        }
    }

    /// The sink gave up on some or all of the chunk's events (they were written to the
    /// dead-letter output, or are being discarded): remove it from the buffer, and
    /// report to its source that not everything arrived.
    pub fn dead_lettered(mut self) {
        if let Some(chunk) = self.chunk.take() {
            chunk.mark(Delivery::Failed);
            self.release();
        }
    }

    /// Puts the chunk back at the front of the buffer, to be taken and sent again.
    pub fn put_back(self) {
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
        st.land(self.born);
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

/// Whether `pop` is done for good: the buffer is closed and holds nothing it would
/// still hand out (a file buffer without `flush_at_shutdown` keeps its chunks for
/// the next start).
fn nothing_to_hand_out(shared: &Shared, st: &State) -> bool {
    st.closed && (!shared.flush_at_shutdown || (st.queue.is_empty() && st.staged.is_empty()))
}
