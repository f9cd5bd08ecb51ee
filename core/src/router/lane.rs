//! The way into the router: a [`Lane`] takes a source's events of one tag through
//! the filters into a chunk, and delivers the chunk together with the events the
//! filters rejected, so that no source has to send those itself.

use std::fmt;
use std::sync::Arc;

use super::{Cell, Route, TapPoint, Taps, Verdict};
use crate::buffer::BufferClosed;
use crate::chunk::{Chunk, ChunkBuilder, Entries};
use crate::event::{Event, Tag};
use crate::metrics::ComponentMetrics;
use crate::receipt::Receipt;
use crate::time::EventTime;
use crate::value::Map;

/// One source's way into the router for events of one tag.
///
/// Each event pushed passes the tag's filters; the events they keep fill a chunk,
/// and those they reject (with the reason in an `error` field) wait for the
/// `@ERROR.<tag>` route. [`Lane::send`] delivers both, the rejected events first,
/// the kept ones to every matching sink, waiting for room in each buffer. A lane
/// dropped while it holds rejected events hands them to a task that delivers them,
/// so they never wait for a send that does not come.
pub struct Lane {
    route: Arc<Route>,
    /// What the next send delivers to the route's sinks.
    kept: ChunkBuilder,
    /// Events a filter rejected since the last send, tagged for the error route;
    /// `None` until the first one.
    rejected: Option<ChunkBuilder>,
    /// The counters of the source sending through it.
    source: Option<ComponentMetrics>,
    /// Events pushed and dropped by a filter since the last send: received all the
    /// same.
    dropped: u32,
    /// The router the route came from and its generation then, for a lane a
    /// source keeps: after a reload it resolves its route again.
    router: Option<(Arc<Cell>, u64)>,
    /// The router's taps, for lanes of a router.
    taps: Option<Arc<Taps>>,
    /// The events pushed since the last send as the source gave them, while a tap
    /// wants them and a filter applies (without one, `kept` is that).
    as_given: Option<ChunkBuilder>,
}

impl fmt::Debug for Lane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane")
            .field("tag", self.route.tag())
            .field("kept", &self.kept.count())
            .field(
                "rejected",
                &self.rejected.as_ref().map_or(0, ChunkBuilder::count),
            )
            .finish()
    }
}

impl Lane {
    pub(super) fn new(route: Arc<Route>) -> Self {
        Self {
            kept: ChunkBuilder::new(route.tag().clone()),
            route,
            rejected: None,
            source: None,
            dropped: 0,
            router: None,
            taps: None,
            as_given: None,
        }
    }

    /// Counts what is sent through the lane as `source`'s received events.
    pub(super) fn counted(mut self, source: Option<ComponentMetrics>) -> Self {
        self.source = source;
        self
    }

    /// Follows `router`'s reloads: the route was resolved at `generation`.
    pub(super) fn following(mut self, router: Arc<Cell>, generation: u64) -> Self {
        self.taps = Some(router.taps.clone());
        self.router = Some((router, generation));
        self
    }

    /// The tag of the lane's events.
    pub fn tag(&self) -> &Tag {
        self.route.tag()
    }

    /// Whether a filter applies to the tag. Without one, a source may encode its
    /// records itself and [`push_encoded`](Lane::push_encoded) them.
    pub fn has_filters(&self) -> bool {
        self.route.has_filters()
    }

    /// Pushes one event through the filters; it joins the next chunk if they keep
    /// it.
    pub fn push(&mut self, time: EventTime, record: Map) {
        if !self.route.has_filters() {
            self.kept.push(time, &record);
            return;
        }
        if self.taps.as_ref().is_some_and(|t| t.any()) {
            self.as_given
                .get_or_insert_with(|| ChunkBuilder::new(self.route.tag().clone()))
                .push(time, &record);
        }
        let mut event = Event::new(self.route.tag().clone(), time, record);
        match self.route.filter(&mut event) {
            Verdict::Keep => self.kept.push(event.time, &event.record),
            Verdict::Drop => self.dropped += 1,
            Verdict::Reject(reason) => {
                if let Some(er) = self.route.rejected(&reason) {
                    let mut record = event.record;
                    record.insert("error", reason);
                    self.rejected
                        .get_or_insert_with(|| ChunkBuilder::new(er.tag().clone()))
                        .push(event.time, &record);
                } else {
                    self.dropped += 1;
                }
            }
        }
    }

    /// Pushes one event already encoded as a MessagePack `[time, record]` entry.
    /// Where no filter applies it is copied as it is; otherwise it is decoded and
    /// pushed as [`push`](Lane::push) does.
    pub fn push_encoded(&mut self, entry: &[u8]) {
        if !self.route.has_filters() {
            self.kept.push_encoded(entry);
            return;
        }
        match Entries::new(entry).next() {
            Some(Ok((time, record))) => self.push(time, record),
            Some(Err(e)) => {
                tracing::error!(tag = %self.tag(), error = %e, "an encoded entry pushed into a lane does not decode; it is skipped");
            }
            None => {}
        }
    }

    /// Attaches a receipt to the next chunk of kept events.
    pub fn add_receipt(&mut self, receipt: Receipt) {
        self.kept.add_receipt(receipt);
    }

    /// Whether no kept event waits for the next send (rejected ones may).
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Encoded size of what the next send delivers: kept and rejected events, so
    /// that a source that sends when a size is reached does not hold rejected events
    /// without bound.
    pub fn byte_size(&self) -> usize {
        self.kept.byte_size() + self.rejected.as_ref().map_or(0, ChunkBuilder::byte_size)
    }

    /// Delivers what was pushed since the last send: the rejected events to the
    /// error route, then the chunk of kept events to every matching sink, waiting
    /// for room in each buffer (backpressure).
    pub async fn send(&mut self) -> Result<(), BufferClosed> {
        if let Some(m) = &self.source {
            let rejected = self.rejected.as_ref();
            let events = self.kept.count() + rejected.map_or(0, ChunkBuilder::count);
            m.received(u64::from(events + self.dropped), self.byte_size() as u64);
        }
        self.dropped = 0;
        let kept = self.kept.finish();
        if let Some(taps) = self.taps.as_ref().filter(|t| t.any()) {
            let source = |p: &TapPoint| *p == TapPoint::Source;
            if let Some(given) = self.as_given.as_mut().and_then(ChunkBuilder::finish) {
                taps.copy(source, given.tag(), given.entries(), given.count());
            } else if let Some(k) = kept.as_ref().filter(|_| !self.route.has_filters()) {
                taps.copy(source, k.tag(), k.entries(), k.count());
            }
        }
        let Some((router, generation)) = self.router.clone() else {
            return self.deliver(kept).await;
        };
        // No reload swaps buffers while this delivery is under way; one that
        // happened since the route was resolved sends the events by the new routes
        // (the filters already applied as they were pushed).
        let _open = router.gate.read().await;
        let now = router.generation();
        if now != generation {
            self.route = router.shared().route(self.route.tag());
            self.router = Some((router.clone(), now));
        }
        self.deliver(kept).await
    }

    async fn deliver(&mut self, kept: Option<Chunk>) -> Result<(), BufferClosed> {
        if let Some((er, rejected)) = self.take_rejected() {
            er.deliver(rejected).await?;
        }
        match kept {
            Some(chunk) => {
                if let Some(taps) = &self.taps {
                    copy_after_filters(taps, &self.route, &chunk);
                }
                self.route.deliver(chunk).await
            }
            None => Ok(()),
        }
    }

    fn take_rejected(&mut self) -> Option<(Arc<Route>, Chunk)> {
        let chunk = self.rejected.as_mut()?.finish()?;
        Some((self.route.error_route()?.clone(), chunk))
    }
}

impl Drop for Lane {
    fn drop(&mut self) {
        let Some((er, rejected)) = self.take_rejected() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    let (tag, events) = (er.tag().clone(), rejected.count());
                    if let Err(e) = er.deliver(rejected).await {
                        tracing::warn!(%tag, events, error = %e, "events a filter rejected could not go to the error route");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(tag = %er.tag(), events = rejected.count(), "events a filter rejected were discarded: their source stopped outside a runtime");
            }
        }
    }
}

/// Routes a whole chunk through `route`: filters its events (decoding and
/// re-encoding it only if a filter applies), then delivers the events kept, with
/// the chunk's id and receipts, after the rejected ones.
pub(super) async fn emit(
    route: Arc<Route>,
    mut chunk: Chunk,
    taps: &Arc<Taps>,
) -> Result<(), BufferClosed> {
    if !route.has_filters() {
        copy_after_filters(taps, &route, &chunk);
        return route.deliver(chunk).await;
    }
    let mut lane = Lane::new(route);
    lane.taps = Some(taps.clone());
    for entry in chunk.walk() {
        match entry {
            Ok((time, record)) => lane.push(time, record),
            Err(bad) => {
                // Chunks are checked when they enter the process, so this is a bug or
                // damage: no filter can apply to it, and it passes on as it is, for
                // the sinks to put in their dead-letter output with the reason.
                tracing::error!(tag = %chunk.tag(), chunk = %chunk.id(), reason = %bad.reason(), "undecodable entry in a chunk; passing it on unfiltered");
                lane.kept.push_encoded(bad.bytes);
            }
        }
    }
    let receipts = chunk.take_receipts();
    // Filters are deterministic, so a chunk sent again comes out the same: keeping its
    // id keeps ids derived from (chunk id, position) stable. When every event was
    // filtered out, that is their delivery: the receipts report it as they drop.
    let kept = lane.kept.finish().map(|kept| {
        let mut kept = kept.with_id(chunk.id());
        kept.adopt_receipts(receipts);
        kept
    });
    lane.deliver(kept).await
}

/// Copies `chunk`, as the filters left it, to the taps after the filters and at
/// the sinks `route` leads to.
fn copy_after_filters(taps: &Taps, route: &Route, chunk: &Chunk) {
    let at = |p: &TapPoint| match p {
        TapPoint::Source => false,
        TapPoint::AfterFilters => true,
        TapPoint::Sink(name) => route.sends_to(name),
    };
    taps.copy(at, chunk.tag(), chunk.entries(), chunk.count());
}
