//! A file push: the chunk compressed (on the blocking pool when it is large), room
//! reserved for it, what it writes planned under the state lock, the write done
//! (tried again while the disk fails), the queue changed in its turn, and only then
//! its receipts released.

use std::io;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::state::{Queued, Staged, StagedBody, State};
use super::turn::Turn;
use super::{Buffer, BufferClosed};
use crate::buffer::file::{FileChunk, FileStore, Place};
use crate::buffer::format;
use crate::chunk::{Chunk, ChunkId};
use crate::receipt::Delivery;

/// What one file push must write, decided under the state lock.
struct Plan {
    /// The tag's staged chunk, full: seal it first.
    seal_first: Option<FileChunk>,
    /// The chunk to append to (new: `len` is 0).
    target: FileChunk,
    /// Queue the target right after the append.
    seal_after: bool,
}

impl Buffer {
    /// [`Buffer::push`] into a file buffer, whose chunks are in `store`.
    pub(super) async fn push_file(
        &self,
        store: &FileStore,
        chunk: Chunk,
    ) -> Result<(), BufferClosed> {
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
                parts: 0,
                len: 0,
                place: Place::File,
                born: std::time::SystemTime::now(),
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
        let added_parts = chunk.origins().len() as u32;
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
                t.parts += added_parts;
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
}

/// Chunks from this size on are compressed on the blocking pool, not on the async
/// threads.
const INLINE_ENCODE: usize = 64 * 1024;

/// The most bytes `chunk` can take once stored: zstd's bound for each of its runs
/// (a run grows by at most 1/256, plus 64 bytes for a small one) and their headers.
fn stored_bound(chunk: &Chunk) -> usize {
    let raw = chunk.byte_size();
    raw + raw / 256 + chunk.origins().len().max(1) * (format::PART_HEADER + 65)
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
