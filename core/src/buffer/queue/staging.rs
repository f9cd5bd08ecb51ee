//! Staging: with `flush_mode: interval`, chunks of one tag are appended to the tag's
//! staged chunk, which is sealed and queued once it is full or `flush_interval` old,
//! or on a flush. A memory buffer does it under the state lock; a file buffer's
//! staged chunks are files, appended to and sealed by the writer lock's holder.

use std::io;
use std::time::Instant;

use bytes::Bytes;

use super::Buffer;
use super::state::{Queued, Shared, Staged, StagedBody, State};
use super::turn::Turn;
use crate::buffer::file::{FileChunk, FileStore};
use crate::chunk::{Chunk, ChunkId};
use crate::event::Tag;

/// Staged chunks kept at once; past it, a chunk of a new tag is queued as it is (tags
/// from forward clients are unbounded).
const MAX_STAGED: usize = 1024;

impl Shared {
    /// Whether a staged chunk with `count` events and `raw` bytes has room for
    /// `chunk`.
    pub(super) fn fits(&self, count: u32, raw: usize, chunk: &Chunk) -> bool {
        raw + chunk.byte_size() <= self.chunk_limit
            && count.saturating_add(chunk.count()) <= self.record_limit
    }

    /// Whether a staged chunk with `count` events and `raw` bytes is full.
    pub(super) fn full(&self, count: u32, raw: usize) -> bool {
        raw >= self.chunk_limit || count >= self.record_limit
    }

    /// Queues the memory chunk staged for `tag`.
    pub(super) fn seal_memory(&self, st: &mut State, tag: &Tag) {
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
            origins,
        } = staged.body
        {
            let mut chunk = Chunk::new(id, tag, Bytes::from(entries), count).with_origins(origins);
            chunk.adopt_receipts(receipts);
            self.enqueue(st, Queued::Memory(chunk));
        }
    }
}

impl Buffer {
    /// Stages or queues a memory chunk whose room is reserved.
    pub(super) fn stage_memory(&self, st: &mut State, mut chunk: Chunk, size: usize) {
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
                origins: Vec::new(),
            },
        });
        let mut full = false;
        if let StagedBody::Memory {
            entries,
            count,
            receipts,
            origins,
            ..
        } = &mut staged.body
        {
            entries.extend_from_slice(chunk.entries());
            *count += chunk.count();
            receipts.extend(chunk.take_receipts());
            origins.extend(chunk.origins());
            full = shared.full(*count, entries.len());
        }
        st.staged_bytes += size;
        if full {
            shared.seal_memory(st, &tag);
        }
    }

    /// Whether `chunk` is queued by itself rather than added to its tag's staged
    /// chunk. `st` is the locked state.
    pub(super) fn alone(&self, st: &State, chunk: &Chunk) -> bool {
        let shared = &self.shared;
        !shared.stages
            || shared.full(chunk.count(), chunk.byte_size())
            || (st.staged.len() >= MAX_STAGED && !st.staged.contains_key(chunk.tag()))
    }

    /// Seals and queues the file buffer's staged chunks that are due.
    pub(super) async fn seal_due(&self) {
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
}
