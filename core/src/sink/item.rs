//! Items: what an encoder makes of events, and which lease and events each stands for.

use crate::chunk::{Chunk, ChunkId};
use crate::dead_letter::{self, DeadLetterEntry};
use crate::time::EventTime;
use crate::value::Map;

/// Which events of which lease an item stands for: the lease's slot in the
/// [`Ledger`](super::Ledger), the position of its first event among the chunk's
/// entries, and how many consecutive events from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// The lease's slot.
    pub slot: u64,
    /// The position of the first event in its chunk.
    pub position: u32,
    /// How many consecutive events, from `position`.
    pub events: u32,
}

/// Events encoded for the destination, waiting for or in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item<K> {
    /// The batch it belongs to (an index, a log stream, a file); items of different
    /// keys never share a request.
    pub key: K,
    /// The destination's bytes for these events.
    pub bytes: Vec<u8>,
    /// What counts toward [`BatchLimits::max_bytes`](super::BatchLimits): its bytes,
    /// plus what the destination adds per event where it counts that too.
    pub size: usize,
    /// The time of its first event (for batches limited in span, and sorting).
    pub time: EventTime,
    /// The events it stands for.
    pub ticket: Ticket,
}

/// One decoded event of a leased chunk, as an [`Encoder`](super::Encoder) sees it.
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    /// The chunk.
    pub chunk: &'a Chunk,
    /// Its position among the chunk's entries.
    pub position: u32,
    /// The chunk it first arrived in and its position there, which idempotent
    /// destination ids derive from (see [`Chunk::event_ids`]).
    pub origin: (ChunkId, u32),
    /// Its time.
    pub time: EventTime,
    /// Its record.
    pub record: &'a Map,
}

/// Where an encoder puts the items of the event it is given, or refuses it.
#[derive(Debug)]
pub struct Items<'a, K> {
    pub(super) items: &'a mut Vec<Item<K>>,
    pub(super) dead: &'a mut Vec<u8>,
    pub(super) refused: &'a mut u32,
    pub(super) slot: u64,
    pub(super) event: Event<'a>,
}

impl<K: PartialEq> Items<'_, K> {
    /// The event becomes (or gets another) item of its own.
    pub fn push(&mut self, key: K, bytes: Vec<u8>, size: usize) {
        self.items.push(Item {
            key,
            bytes,
            size,
            time: self.event.time,
            ticket: Ticket {
                slot: self.slot,
                position: self.event.position,
                events: 1,
            },
        });
    }

    /// The event's bytes, written by `write`, join the item of the event just before
    /// it when that item has the same key; else they start a new item, with room for
    /// the chunk's events encoded at about twice their MessagePack size. For sinks
    /// whose outcomes are per write of many events (a file), where one buffer per
    /// chunk is what keeps them fast. Its size is its bytes.
    pub fn append(&mut self, key: K, write: impl FnOnce(&mut Vec<u8>)) {
        let position = self.event.position;
        let joins = self.items.last().is_some_and(|last| {
            last.key == key
                && last.ticket.slot == self.slot
                && last.ticket.position + last.ticket.events == position
        });
        if joins && let Some(last) = self.items.last_mut() {
            let before = last.bytes.len();
            write(&mut last.bytes);
            last.size += last.bytes.len() - before;
            last.ticket.events += 1;
            return;
        }
        let mut bytes = Vec::with_capacity(self.event.chunk.byte_size() * 2);
        write(&mut bytes);
        let size = bytes.len();
        self.push(key, bytes, size);
    }

    /// The event cannot go to this destination: it goes to the dead-letter output
    /// with `reason` instead (never silently dropped), and its lease counts as
    /// partly dead-lettered.
    pub fn refuse(&mut self, reason: &str) {
        dead_letter::encode_entry(
            &DeadLetterEntry {
                tag: self.event.chunk.tag(),
                time: self.event.time,
                record: self.event.record,
                reason,
                status: None,
                destination: None,
                error: None,
            },
            self.dead,
        );
        *self.refused += 1;
    }
}
