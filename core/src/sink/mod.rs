//! The sink kit: what every batching sink shares, so that a sink is its encoding,
//! its requests and what its destination's answers mean, and nothing else.
//!
//! A sink built on the kit implements two traits and hands them to [`run`]:
//!
//! - an [`Encoder`] turns each decoded event of a leased chunk into [`Item`]s (the
//!   destination's bytes for one event, or for a run of consecutive events of one
//!   chunk that go out together, with the key of the batch they belong to), or
//!   refuses it with a reason;
//! - a [`Service`] builds a request from a batch of items (pure, testable byte for
//!   byte) and sends it, saying what became of each item ([`BatchOutcome`]).
//!
//! The kit does the rest, the same way for every sink:
//!
//! - `batch.rs`: [`Batcher`], items grouped per key into batches ready by events,
//!   bytes, span of event times or age ([`BatchLimits`]); for a service that sends
//!   gzipped bodies, each batch gzipped as its items join it ([`Gzipped`]);
//! - `item.rs`: [`Item`], [`Ticket`] (which lease and events an item stands for),
//!   [`Items`] (what an encoder pushes into);
//! - `outcome.rs`: [`Outcome`] of an item (delivered, retry, blocked, rejected) and
//!   [`BatchOutcome`] of a request (per item, all alike, split to find a culprit, or
//!   blocked);
//! - `component.rs`: the traits a sink implements ([`Encoder`], [`Service`]) and its
//!   [`Words`];
//! - `ledger.rs`: the leases being delivered, each marked `delivered` once all its
//!   items are, or `dead_lettered` when some went to the dead-letter output; and the dead-letter lines of items,
//!   re-decoded from their chunk;
//! - `driver.rs`: the loop, one worker per encoder and service the sink gives: take
//!   leases, encode, batch, build, send, retry what is to be retried under the
//!   sink's [`Retrier`] (reusing a request's bytes when the same items go again),
//!   bisect a request refused as a whole, write what is rejected or given up on to
//!   the dead-letter output (retrying that write until it works), log each kind of
//!   outcome in one place with the sink's own [`Words`];
//! - `log_gate.rs`: lets a repeating log line (a destination that refuses every
//!   request) through once a minute, across a sink's workers.
//!
//! [`Retrier`]: crate::retry::Retrier

mod batch;
mod component;
mod driver;
mod item;
mod ledger;
mod log_gate;
mod outcome;
#[cfg(test)]
mod tests;

pub use batch::{Batch, BatchLimits, Batcher, GZIP_STREAMS, Gzipped};
pub use component::{Encoder, Service, Words};
pub use driver::run;
pub use item::{Event, Item, Items, Ticket};
pub use ledger::Ledger;
pub use outcome::{BatchOutcome, Outcome, Sent};
