//! Items grouped per key into batches.
//!
//! An item joins the open batch of its key; a batch is ready (sealed) when one more
//! item would take it past `max_events` or `max_bytes` (by [`Item::size`]) or make
//! its items' times span more than `max_span`, when it reaches `max_events` or
//! `max_bytes` itself, or when `timeout` has passed since its first item. A batch
//! always holds at least one item, so an item larger than `max_bytes` goes alone.
//!
//! The batcher is bounded: once its open batches hold `max_bytes` in all, the
//! oldest is sealed, so a worker holds at most about one request's worth of items
//! however many keys it sees (the driver takes no lease while a batch is ready).
//!
//! For a service whose request body is its batch's items concatenated and gzipped
//! ([`Batcher::gzip`]), a batch is gzipped as its items join it, while their bytes
//! are still in the CPU's cache, and each item lets its bytes go once they are in
//! the stream: the batch is then held compressed ([`Gzipped`]), and its items give
//! back their bytes only if some are to be built into another request. At most
//! [`GZIP_STREAMS`] batches are gzipped at a time (a stream's compressor state is
//! about 350 KiB, and it gathers up to 256 KiB of items before each call); the
//! others hold their items' bytes as they are.

use std::hash::Hash;
use std::time::Duration;

use indexmap::IndexMap;
use tokio::time::Instant;

use super::item::Item;
use crate::compression::{self, GzipStream};
use crate::time::EventTime;

/// How many open batches a batcher gzips at a time: enough for the few busy keys
/// that fill most batches, few enough that the compressors' state and gathered
/// blocks (about 600 KiB each) stay below one request's worth of items.
pub const GZIP_STREAMS: usize = 4;

/// When a batch is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most items in a batch (events, for a sink of one item per event).
    pub max_events: usize,
    /// Most bytes, by [`Item::size`].
    pub max_bytes: usize,
    /// Longest span between the earliest and the latest item time, if limited
    /// (CloudWatch Logs: 24 hours).
    pub max_span: Option<Duration>,
    /// How long a batch waits for more items after its first. Zero sends it as soon
    /// as the buffer has nothing more ready.
    pub timeout: Duration,
    /// Whether a batch holds items of one chunk only: the open batches are sent
    /// once a chunk is encoded, before the next lease is taken. For a stream (the
    /// stdout sink), where each chunk is acked as soon as its last line is out and
    /// only one chunk is held.
    pub chunk_at_a_time: bool,
}

/// A batch of items of one key, in the order they were pushed.
#[derive(Debug)]
pub struct Batch<K> {
    /// Their key.
    pub key: K,
    /// The items.
    pub items: Vec<Item<K>>,
    /// The items' bytes, concatenated and gzipped as they joined, when the batcher
    /// gzips ([`Batcher::gzip`]): the items' own bytes are then empty.
    pub gzipped: Option<Gzipped>,
}

/// A batch's items concatenated and gzipped as they joined it; the items let their
/// own bytes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gzipped {
    /// One gzip stream of every item's bytes, in order.
    pub body: Vec<u8>,
    /// Each item's length in bytes, in order.
    pub lengths: Vec<u32>,
}

impl Gzipped {
    /// The bytes before compression.
    pub fn raw_len(&self) -> usize {
        self.lengths.iter().map(|&l| l as usize).sum()
    }

    /// Gives `items` (the batch's, in order) back their bytes from `body` and
    /// `lengths` (a [`Gzipped`]'s, which a request may have kept): for some of them
    /// to be built into another request.
    pub fn restore<K>(body: &[u8], lengths: &[u32], items: &mut [Item<K>]) {
        let total = lengths.iter().map(|&l| l as usize).sum();
        let raw = compression::decompress(compression::Compression::Gzip, body, total)
            .expect("a batch this process gzipped unpacks to its items");
        let mut at = 0;
        for (item, &len) in items.iter_mut().zip(lengths) {
            let end = at + len as usize;
            item.bytes = raw[at..end].to_vec();
            at = end;
        }
    }
}

#[derive(Debug)]
struct Open<K> {
    items: Vec<Item<K>>,
    size: usize,
    since: Instant,
    earliest: EventTime,
    latest: EventTime,
    /// The batch gzipped so far, and its items' lengths, when it is gzipped.
    gzip: Option<(GzipStream, Vec<u32>)>,
}

/// Open batches per key, and the batches ready to send.
#[derive(Debug)]
pub struct Batcher<K> {
    limits: BatchLimits,
    /// Oldest first. Hashed with foldhash: keys are names the sink chose, not a
    /// peer's input, and the batcher hashes one per event.
    open: IndexMap<K, Open<K>, foldhash::fast::RandomState>,
    open_size: usize,
    ready: std::collections::VecDeque<Batch<K>>,
    /// The gzip level of batches gzipped as they fill, if they are.
    gzip: Option<u32>,
    /// Open batches being gzipped.
    streams: usize,
}

impl<K: Clone + Eq + Hash> Batcher<K> {
    /// An empty batcher.
    pub fn new(limits: BatchLimits) -> Self {
        Self {
            limits: BatchLimits {
                max_events: limits.max_events.max(1),
                ..limits
            },
            open: IndexMap::default(),
            open_size: 0,
            ready: Default::default(),
            gzip: None,
            streams: 0,
        }
    }

    /// Gzips batches at `level` as their items join them (see the module's
    /// documentation), for a service that sends them so; `None` keeps the items'
    /// bytes as they are.
    pub fn gzip(mut self, level: Option<u32>) -> Self {
        self.gzip = level;
        self
    }

    /// Adds an item at `now`. Its key is hashed once, and cloned only when it opens
    /// a batch: this runs once per event.
    pub fn push(&mut self, mut item: Item<K>, now: Instant) {
        let limits = self.limits;
        let mut at = self.open.get_index_of(&item.key);
        if let Some(i) = at {
            let open = &self.open[i];
            let span = |a: EventTime, b: EventTime| {
                let nanos = b.as_unix_nanos().abs_diff(a.as_unix_nanos());
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            };
            let too_long = limits.max_span.is_some_and(|max| {
                span(open.earliest.min(item.time), open.latest.max(item.time)) > max
            });
            if open.items.len() + 1 > limits.max_events
                || open.size + item.size > limits.max_bytes
                || too_long
            {
                self.seal_at(i);
                at = None;
            }
        }
        self.open_size += item.size;
        let i = match at {
            Some(i) => i,
            None => {
                let gzip = self
                    .gzip
                    .filter(|_| self.streams < GZIP_STREAMS)
                    .map(|level| {
                        self.streams += 1;
                        (GzipStream::new(level, limits.max_bytes), Vec::new())
                    });
                let open = Open {
                    items: Vec::new(),
                    size: 0,
                    since: now,
                    earliest: item.time,
                    latest: item.time,
                    gzip,
                };
                self.open.insert_full(item.key.clone(), open).0
            }
        };
        let open = &mut self.open[i];
        if let Some((stream, lengths)) = &mut open.gzip {
            stream.add(&item.bytes);
            // An item is one event or a run of one chunk's: far below 4 GiB.
            lengths.push(u32::try_from(item.bytes.len()).unwrap_or(u32::MAX));
            item.bytes = Vec::new();
        }
        open.size += item.size;
        open.earliest = open.earliest.min(item.time);
        open.latest = open.latest.max(item.time);
        open.items.push(item);
        if open.items.len() >= limits.max_events || open.size >= limits.max_bytes {
            self.seal_at(i);
        }
        while self.open_size >= limits.max_bytes && !self.open.is_empty() {
            self.seal_at(0);
        }
    }

    /// Seals the open batch at `index` (oldest first).
    fn seal_at(&mut self, index: usize) {
        if let Some((key, open)) = self.open.shift_remove_index(index) {
            self.open_size -= open.size;
            let gzipped = open.gzip.map(|(stream, lengths)| {
                self.streams -= 1;
                Gzipped {
                    body: stream.finish(),
                    lengths,
                }
            });
            self.ready.push_back(Batch {
                key,
                items: open.items,
                gzipped,
            });
        }
    }

    fn seal(&mut self, key: &K) {
        if let Some(index) = self.open.get_index_of(key) {
            self.seal_at(index);
        }
    }

    /// Seals the open batches whose timeout has passed at `now`.
    pub fn seal_due(&mut self, now: Instant) {
        let due: Vec<K> = self
            .open
            .iter()
            .filter(|(_, o)| o.since + self.limits.timeout <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.seal(&key);
        }
    }

    /// Seals every open batch (the buffer is drained).
    pub fn seal_all(&mut self) {
        while !self.open.is_empty() {
            self.seal_at(0);
        }
    }

    /// When the oldest open batch's timeout passes, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.open
            .values()
            .map(|o| o.since)
            .min()
            .map(|since| since + self.limits.timeout)
    }

    /// The limits.
    pub fn limits(&self) -> &BatchLimits {
        &self.limits
    }

    /// Whether a batch is ready.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty() && self.open.is_empty()
    }

    /// The next ready batch.
    pub fn take(&mut self) -> Option<Batch<K>> {
        self.ready.pop_front()
    }
}
