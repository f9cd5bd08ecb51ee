//! Room: every staged, queued and in-flight byte counts toward `total_limit_size`,
//! and room is reserved before a chunk is written, so concurrent producers never
//! overshoot it. A push that finds none waits or applies `overflow_action`; what it
//! discards is counted and logged.

use std::time::{Duration, Instant};

use super::state::{Queued, Shared, State};
use super::{Buffer, BufferClosed, BufferStats};
use crate::buffer::config::OverflowAction;
use crate::buffer::file::FileChunk;
use crate::chunk::Chunk;
use crate::event::Tag;
use crate::receipt::Delivery;

impl Shared {
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
}

/// A producer waiting for room, counted until it stops waiting (it got room, or
/// its push was given up on).
struct Waiting<'a>(&'a Shared);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().waiting -= 1;
    }
}

impl Buffer {
    /// Reserves room for `size` bytes if there is room right now.
    pub(super) fn try_reserve(&self, size: usize) -> bool {
        let mut st = self.shared.lock();
        let room = !st.closed && st.used() + size <= self.shared.limit;
        if room {
            st.reserved += size;
        }
        room
    }

    /// Waits for room for `size` bytes (or applies the overflow policy) and reserves
    /// it. Returns the chunk when it is to be stored, `None` when it was discarded.
    pub(super) async fn admit(
        &self,
        chunk: Chunk,
        size: usize,
    ) -> Result<Option<Chunk>, BufferClosed> {
        let mut counted_block = false;
        let mut waiting: Option<Waiting<'_>> = None;
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
                            st.waiting += 1;
                            counted_block = true;
                            waiting = Some(Waiting(&self.shared));
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
                            st.queued_events -= u64::from(old.count());
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
        drop(waiting);
        if let Some(store) = &self.shared.store {
            for f in doomed {
                if let Err(e) = store.remove(&f) {
                    tracing::warn!(buffer = self.shared.name, error = %e, "cannot delete a discarded chunk file; it will be sent after a restart");
                }
            }
        }
        result
    }

    /// Whether a producer waits for room now (`overflow_action: block` on a full
    /// buffer): its source is held back.
    pub fn is_blocking(&self) -> bool {
        self.shared.lock().waiting > 0
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
            queued_events: st.queued_events,
            retried_chunks: st.retried_chunks,
            oldest_chunk_age: st.oldest_age(),
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
