//! What a sink gives the kit: its [`Encoder`], its [`Service`], and its [`Words`]
//! for the logs.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

use super::batch::Gzipped;
use super::item::{Event, Item, Items};
use super::outcome::Sent;

/// Turns a leased chunk's events into items: the sink's `encoder.rs` or
/// `request_builder.rs`.
pub trait Encoder: Send + 'static {
    /// What items are batched by: items of different keys never share a request.
    type Key: Clone + Eq + Hash + Debug + Send + Sync + 'static;

    /// Pushes the items of one event into `out`, or refuses it there.
    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, Self::Key>);

    /// Where items of `key` were going, as a dead-letter line names it: the field
    /// and its value (`("index", "logstash-2024.01.15")`).
    fn destination(&self, key: &Self::Key) -> Option<(&'static str, String)> {
        let _ = key;
        None
    }
}

/// Builds and sends requests: the sink's `service.rs`, with what an answer means
/// from its `retry.rs`.
pub trait Service<K>: Send + 'static {
    /// A request, ready to send. The same request is sent again when all its items
    /// are to be retried, so its bytes are built once; it may also keep what it needs
    /// to resume (how far a write got).
    type Request: Send + 'static;

    /// The request for `items`, all of `key`, in their order: pure. It may move the
    /// items' bytes into the request, where that saves copying each event again,
    /// and then gives them back in [`restore`](Service::restore).
    fn build(&mut self, key: &K, items: &mut [Item<K>]) -> Self::Request;

    /// The gzip level at which this service sends a batch's items, concatenated, as
    /// its request body, if it does: the kit then gzips each batch as its items join
    /// it and lets their bytes go (see [`Batcher`](super::Batcher)), and builds the
    /// batch's first request with [`build_gzipped`](Service::build_gzipped). None
    /// by default.
    fn gzip_level(&self) -> Option<u32> {
        None
    }

    /// The request for `items`, all of `key`, whose bytes, concatenated, are
    /// gzipped in `gzipped` (their own bytes are empty). [`restore`](Service::restore)
    /// must then give them back their bytes ([`Gzipped::restore`]) before another
    /// request is built from them. By default they are given back at once and the
    /// request is made by [`build`](Service::build).
    fn build_gzipped(&mut self, key: &K, items: &mut [Item<K>], gzipped: Gzipped) -> Self::Request {
        Gzipped::restore(&gzipped.body, &gzipped.lengths, items);
        self.build(key, items)
    }

    /// Puts back into `items` the bytes `build` moved into `request`, once its answer
    /// is known and some of them are to be built into another request (sent again,
    /// or split). A service whose `build` copies has nothing to do.
    fn restore(&mut self, request: Self::Request, items: &mut [Item<K>]) {
        let _ = (request, items);
    }

    /// Sends `request` and says what became of its items.
    fn send(&mut self, request: &mut Self::Request) -> impl Future<Output = Sent> + Send;
}

/// The sink's words for what the driver logs, so each line says which destination
/// did what ("Elasticsearch refused events for good").
#[derive(Debug, Clone, Copy)]
pub struct Words {
    /// The sink's type, for "`<kind>` sink drained its buffer; stopping".
    pub kind: &'static str,
    /// Items refused for good went to the dead-letter output.
    pub rejected: &'static str,
    /// Some items of a request are to be sent again.
    pub retry_some: &'static str,
    /// A whole request is to be sent again.
    pub retry_all: &'static str,
    /// A request refused as a whole is split to find the culprit.
    pub split: &'static str,
}
