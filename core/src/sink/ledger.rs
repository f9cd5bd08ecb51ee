//! The leases a worker is delivering: each is acked once every item of it is
//! delivered, or marked as dead-lettered once all are resolved and some went to the
//! dead-letter output (its source learns that not everything arrived).

use std::collections::HashMap;

use super::item::Ticket;
use crate::buffer::Lease;
use crate::chunk::Chunk;
use crate::dead_letter::{self, DeadLetterEntry};

#[derive(Debug)]
struct Pending {
    lease: Lease,
    /// Items not yet resolved.
    unresolved: u32,
    /// Whether any of its events went to the dead-letter output.
    dead: bool,
    /// Whether its chunk is all encoded (no more items will come).
    sealed: bool,
}

/// The leases in delivery, by slot.
#[derive(Debug, Default)]
pub struct Ledger {
    next_slot: u64,
    pending: HashMap<u64, Pending>,
}

/// Why items go to the dead-letter output, with what the destination said.
#[derive(Debug, Clone, Copy)]
pub struct DeadItem<'a> {
    /// The events.
    pub ticket: Ticket,
    /// Why.
    pub reason: &'a str,
    /// The destination's status.
    pub status: Option<u16>,
    /// Where they were going (`("index", "logs-2024.01.15")`).
    pub destination: Option<(&'a str, &'a str)>,
    /// The destination's error object.
    pub error: Option<&'a serde_json::Value>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in a lease whose chunk is about to be encoded; returns its slot, which
    /// its items' tickets name. It is finished once [`seal`](Self::seal)ed and every
    /// item counted by [`grow`](Self::grow) is resolved.
    pub fn open(&mut self, lease: Lease) -> u64 {
        let slot = self.next_slot;
        self.next_slot += 1;
        self.pending.insert(
            slot,
            Pending {
                lease,
                unresolved: 0,
                dead: false,
                sealed: false,
            },
        );
        slot
    }

    /// `items` more items of slot `slot` are on their way.
    pub fn grow(&mut self, slot: u64, items: u32) {
        if let Some(pending) = self.pending.get_mut(&slot) {
            pending.unresolved += items;
        }
    }

    /// Slot `slot`'s chunk is encoded: no more items will come; `dead` says whether
    /// some of its events went to the dead-letter output as it was. Finishes the
    /// lease if its items are all resolved already.
    pub fn seal(&mut self, slot: u64, dead: bool) {
        if let Some(pending) = self.pending.get_mut(&slot) {
            pending.sealed = true;
            pending.dead |= dead;
        }
        self.finish_if_done(slot);
    }

    /// Leases still in delivery.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether no lease is in delivery.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The chunk of slot `slot`, while in delivery.
    pub fn chunk(&self, slot: u64) -> Option<&Chunk> {
        self.pending.get(&slot).map(|p| p.lease.chunk())
    }

    /// An item of slot `slot` is resolved: delivered, or (`dead`) in the dead-letter
    /// output. Finishes the lease once all its items are.
    pub fn resolve(&mut self, slot: u64, dead: bool) {
        let Some(pending) = self.pending.get_mut(&slot) else {
            return;
        };
        pending.unresolved = pending.unresolved.saturating_sub(1);
        pending.dead |= dead;
        self.finish_if_done(slot);
    }

    fn finish_if_done(&mut self, slot: u64) {
        let done = self
            .pending
            .get(&slot)
            .is_some_and(|p| p.sealed && p.unresolved == 0);
        if done && let Some(done) = self.pending.remove(&slot) {
            finish(done.lease, done.dead);
        }
    }

    /// Appends the dead-letter lines of `items`' events, re-decoded from their
    /// chunks; an event that two items share (one event split into pieces) gets one
    /// line. Returns how many lines.
    pub fn encode_dead(&self, items: &mut [DeadItem<'_>], out: &mut Vec<u8>) -> u32 {
        items.sort_by_key(|d| (d.ticket.slot, d.ticket.position));
        let mut lines = 0;
        let mut at = 0;
        while at < items.len() {
            let slot = items[at].ticket.slot;
            let end = at
                + items[at..]
                    .iter()
                    .take_while(|d| d.ticket.slot == slot)
                    .count();
            if let Some(chunk) = self.chunk(slot) {
                lines += encode_slot(chunk, &items[at..end], out);
            }
            at = end;
        }
        lines
    }
}

/// The lines of `items` (of one chunk, in order of position).
fn encode_slot(chunk: &Chunk, items: &[DeadItem<'_>], out: &mut Vec<u8>) -> u32 {
    let mut lines = 0;
    let mut wanted = items.iter().peekable();
    for (position, entry) in chunk.walk().enumerate() {
        let position = position as u32;
        // Items wholly before this position are done.
        while wanted
            .next_if(|d| d.ticket.position + d.ticket.events <= position)
            .is_some()
        {}
        let Some(d) = wanted.peek() else {
            break;
        };
        if d.ticket.position > position {
            continue;
        }
        match entry {
            Ok((time, record)) => dead_letter::encode_entry(
                &DeadLetterEntry {
                    tag: chunk.tag(),
                    time,
                    record: &record,
                    reason: d.reason,
                    status: d.status,
                    destination: d.destination,
                    error: d.error,
                },
                out,
            ),
            Err(bad) => dead_letter::encode_undecodable(chunk, &bad, Some(d.reason), out),
        }
        lines += 1;
    }
    lines
}

fn finish(lease: Lease, dead: bool) {
    if dead {
        lease.dead_lettered();
    } else {
        lease.delivered();
    }
}
