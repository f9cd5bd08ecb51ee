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

use std::hash::Hash;
use std::time::Duration;

use indexmap::IndexMap;
use tokio::time::Instant;

use super::item::Item;
use crate::time::EventTime;

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
}

#[derive(Debug)]
struct Open<K> {
    items: Vec<Item<K>>,
    size: usize,
    since: Instant,
    earliest: EventTime,
    latest: EventTime,
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
        }
    }

    /// Adds an item at `now`. Its key is hashed once, and cloned only when it opens
    /// a batch: this runs once per event.
    pub fn push(&mut self, item: Item<K>, now: Instant) {
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
                let open = Open {
                    items: Vec::new(),
                    size: 0,
                    since: now,
                    earliest: item.time,
                    latest: item.time,
                };
                self.open.insert_full(item.key.clone(), open).0
            }
        };
        let open = &mut self.open[i];
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
            self.ready.push_back(Batch {
                key,
                items: open.items,
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
