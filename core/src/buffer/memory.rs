//! The in-memory buffer.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::Notify;

use super::config::{BufferConfig, OverflowAction};
use crate::chunk::Chunk;
use crate::receipt::Delivery;

/// The buffer was closed; no more chunks are accepted.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("buffer `{0}` is closed")]
pub struct BufferClosed(pub &'static str);

/// A snapshot of a buffer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
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
}

#[derive(Default)]
struct State {
    queue: VecDeque<Chunk>,
    queued_bytes: usize,
    in_flight_chunks: usize,
    in_flight_bytes: usize,
    closed: bool,
    dropped_chunks: u64,
    dropped_events: u64,
    blocked: u64,
    last_drop_log: Option<Instant>,
    drops_since_log: u64,
}

impl State {
    fn used(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }
}

struct Shared {
    name: &'static str,
    limit: usize,
    overflow: OverflowAction,
    state: Mutex<State>,
    /// Signalled when a chunk is queued or the buffer closes.
    items: Notify,
    /// Signalled when room is freed.
    space: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters half-updated in a
        // way that matters more than stopping the pipeline would, so keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An ordered, byte-bounded queue of chunks in front of one sink. Cloning gives
/// another handle to the same buffer.
#[derive(Clone)]
pub struct Buffer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Buffer")
            .field("name", &self.shared.name)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Buffer {
    /// A memory buffer named after its sink (the name appears in logs).
    pub fn new(name: &str, config: &BufferConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                // Buffers live as long as the process; leaking the name once per sink
                // lets errors carry it without a lifetime.
                name: Box::leak(name.to_string().into_boxed_str()),
                limit: config.total_limit_size.as_usize().max(1),
                overflow: config.overflow_action,
                state: Mutex::new(State::default()),
                items: Notify::new(),
                space: Notify::new(),
            }),
        }
    }

    /// The buffer's name.
    pub fn name(&self) -> &'static str {
        self.shared.name
    }

    /// Adds a chunk at the back. With `block`, waits until there is room; a chunk
    /// larger than the whole limit is accepted when the buffer is empty, so it cannot
    /// wedge the pipeline.
    pub async fn push(&self, chunk: Chunk) -> Result<(), BufferClosed> {
        let size = chunk.byte_size();
        let mut counted_block = false;
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            space.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if st.closed {
                    return Err(BufferClosed(self.shared.name));
                }
                let fits = st.used() + size <= self.shared.limit || st.used() == 0;
                if fits {
                    self.enqueue(&mut st, chunk);
                    return Ok(());
                }
                match self.shared.overflow {
                    OverflowAction::Block => {
                        if !counted_block {
                            st.blocked += 1;
                            counted_block = true;
                        }
                    }
                    OverflowAction::DropNewest => {
                        self.record_drop(&mut st, &chunk);
                        return Ok(());
                    }
                    OverflowAction::DropOldestChunk => {
                        while st.used() + size > self.shared.limit {
                            let Some(old) = st.queue.pop_front() else {
                                break;
                            };
                            st.queued_bytes -= old.byte_size();
                            self.record_drop(&mut st, &old);
                        }
                        if st.used() + size <= self.shared.limit || st.used() == 0 {
                            self.enqueue(&mut st, chunk);
                        } else {
                            // Everything left is in flight; the newcomer is the one
                            // that cannot be kept.
                            self.record_drop(&mut st, &chunk);
                        }
                        return Ok(());
                    }
                }
            }
            space.await;
        }
    }

    fn enqueue(&self, st: &mut State, chunk: Chunk) {
        st.queued_bytes += chunk.byte_size();
        st.queue.push_back(chunk);
        self.shared.items.notify_one();
    }

    fn record_drop(&self, st: &mut State, chunk: &Chunk) {
        chunk.mark(Delivery::Dropped);
        st.dropped_chunks += 1;
        st.dropped_events += u64::from(chunk.count());
        st.drops_since_log += 1;
        let due = st
            .last_drop_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                buffer = self.shared.name,
                tag = %chunk.tag(),
                chunks = st.drops_since_log,
                total_dropped_chunks = st.dropped_chunks,
                total_dropped_events = st.dropped_events,
                "buffer full: discarded chunks under overflow_action {:?}",
                self.shared.overflow
            );
            st.last_drop_log = Some(Instant::now());
            st.drops_since_log = 0;
        }
    }

    /// Takes the next chunk, waiting for one. Returns `None` once the buffer is closed
    /// and empty.
    pub async fn pop(&self) -> Option<Lease> {
        loop {
            let items = self.shared.items.notified();
            tokio::pin!(items);
            items.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if let Some(lease) = self.take(&mut st) {
                    return Some(lease);
                }
                if st.closed {
                    return None;
                }
            }
            items.await;
        }
    }

    /// Takes the next chunk if one is queued.
    pub fn try_pop(&self) -> Option<Lease> {
        let mut st = self.shared.lock();
        self.take(&mut st)
    }

    fn take(&self, st: &mut State) -> Option<Lease> {
        let chunk = st.queue.pop_front()?;
        let size = chunk.byte_size();
        st.queued_bytes -= size;
        st.in_flight_bytes += size;
        st.in_flight_chunks += 1;
        if !st.queue.is_empty() {
            // Let another waiting consumer look too.
            self.shared.items.notify_one();
        }
        Some(Lease {
            chunk: Some(chunk),
            shared: self.shared.clone(),
        })
    }

    /// Stops accepting chunks. Queued chunks can still be taken; `pop` returns `None`
    /// once they are gone.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.items.notify_waiters();
        self.shared.space.notify_waiters();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// The buffer's counters.
    pub fn stats(&self) -> BufferStats {
        let st = self.shared.lock();
        BufferStats {
            queued_chunks: st.queue.len(),
            queued_bytes: st.queued_bytes,
            in_flight_chunks: st.in_flight_chunks,
            in_flight_bytes: st.in_flight_bytes,
            dropped_chunks: st.dropped_chunks,
            dropped_events: st.dropped_events,
            blocked: st.blocked,
        }
    }

    /// Waits until nothing is queued or in flight, or `timeout` passes. Returns
    /// whether the buffer drained.
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

/// A chunk taken from a buffer by its sink. `ack` removes it for good; dropping the
/// lease without an ack (or calling `retry`) puts it back at the front.
pub struct Lease {
    chunk: Option<Chunk>,
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
            self.release(chunk.byte_size());
            // Dropping the chunk here releases its receipts as delivered.
        }
    }

    /// The sink gave up on the chunk (it was written to the dead-letter output or is
    /// being discarded): remove it and report it as failed to its source.
    pub fn fail(mut self) {
        if let Some(chunk) = self.chunk.take() {
            chunk.mark(Delivery::Failed);
            self.release(chunk.byte_size());
        }
    }

    /// Puts the chunk back at the front to be sent again.
    pub fn retry(self) {
        drop(self);
    }

    fn release(&self, size: usize) {
        let mut st = self.shared.lock();
        st.in_flight_bytes -= size;
        st.in_flight_chunks -= 1;
        drop(st);
        self.shared.space.notify_waiters();
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(chunk) = self.chunk.take() {
            let mut st = self.shared.lock();
            let size = chunk.byte_size();
            st.in_flight_bytes -= size;
            st.in_flight_chunks -= 1;
            st.queued_bytes += size;
            st.queue.push_front(chunk);
            drop(st);
            self.shared.items.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferKind;
    use crate::chunk::{ChunkBuilder, ChunkId};
    use crate::config::ByteSize;
    use crate::event::Tag;
    use crate::receipt::Receipt;
    use crate::time::EventTime;
    use crate::value::Map;

    fn chunk(n: u32) -> Chunk {
        let mut b = ChunkBuilder::new(Tag::new("t"));
        let mut m = Map::new();
        m.insert("n", i64::from(n));
        m.insert("pad", "x".repeat(80));
        b.push(EventTime::new(0, 0), &m);
        b.finish().unwrap()
    }

    fn buffer(limit: usize, overflow: OverflowAction) -> Buffer {
        Buffer::new(
            "test",
            &BufferConfig {
                kind: BufferKind::Memory,
                total_limit_size: ByteSize(limit as u64),
                overflow_action: overflow,
            },
        )
    }

    fn first_n(c: &Chunk) -> i64 {
        c.events()
            .next()
            .unwrap()
            .unwrap()
            .1
            .get("n")
            .unwrap()
            .as_i64()
            .unwrap()
    }

    #[tokio::test]
    async fn fifo_with_retry_to_front() {
        let b = buffer(1 << 20, OverflowAction::Block);
        for n in 0..3 {
            b.push(chunk(n)).await.unwrap();
        }
        let l0 = b.pop().await.unwrap();
        assert_eq!(first_n(l0.chunk()), 0);
        l0.retry();
        let l0 = b.pop().await.unwrap();
        assert_eq!(first_n(l0.chunk()), 0, "a retried chunk comes back first");
        l0.ack();
        assert_eq!(first_n(b.pop().await.unwrap().chunk()), 1);
    }

    #[tokio::test]
    async fn block_waits_for_room_and_counts_in_flight() {
        let size = chunk(0).byte_size();
        let b = buffer(size * 2, OverflowAction::Block);
        b.push(chunk(0)).await.unwrap();
        b.push(chunk(1)).await.unwrap();
        let lease = b.pop().await.unwrap();
        // In flight still counts: a third chunk must wait.
        let b2 = b.clone();
        let pusher = tokio::spawn(async move { b2.push(chunk(2)).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!pusher.is_finished(), "push should block while full");
        assert_eq!(b.stats().blocked, 1);
        lease.ack();
        pusher.await.unwrap().unwrap();
        assert_eq!(b.stats().queued_chunks, 2);
    }

    #[tokio::test]
    async fn drop_policies_mark_receipts() {
        let size = chunk(0).byte_size();
        let b = buffer(size, OverflowAction::DropNewest);
        b.push(chunk(0)).await.unwrap();
        let (r, rx) = Receipt::channel();
        b.push(chunk(1).with_receipt(r)).await.unwrap();
        assert_eq!(rx.await.unwrap(), Delivery::Dropped);
        assert_eq!(b.stats().dropped_chunks, 1);

        let b = buffer(size, OverflowAction::DropOldestChunk);
        let (r, rx) = Receipt::channel();
        b.push(chunk(0).with_receipt(r)).await.unwrap();
        b.push(chunk(1)).await.unwrap();
        assert_eq!(rx.await.unwrap(), Delivery::Dropped);
        assert_eq!(first_n(b.pop().await.unwrap().chunk()), 1);
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let b = buffer(1 << 20, OverflowAction::Block);
        b.push(chunk(0)).await.unwrap();
        b.close();
        assert!(b.push(chunk(1)).await.is_err());
        let lease = b.pop().await.unwrap();
        let (r, rx) = Receipt::channel();
        drop(r);
        assert_eq!(rx.await.unwrap(), Delivery::Delivered);
        lease.ack();
        assert!(b.pop().await.is_none());
        assert!(b.drained(Duration::from_millis(10)).await);
    }

    #[tokio::test]
    async fn oversized_chunk_is_accepted_when_empty() {
        let b = buffer(10, OverflowAction::Block);
        b.push(chunk(0)).await.unwrap();
        assert_eq!(b.stats().queued_chunks, 1);
        let _ = ChunkId::random();
    }
}
