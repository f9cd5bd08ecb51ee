//! The tag router: which filters an event passes through and which sinks' buffers
//! receive it.
//!
//! Filters apply in config order to every event whose tag matches their pattern; then
//! the event goes to **every** sink whose pattern matches (as in Fluent Bit and
//! Vector; Fluentd users get its `copy` behaviour without writing it). The decision is
//! made once per tag and cached, so the per-chunk cost is a hash lookup.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::buffer::{Buffer, BufferClosed};
use crate::chunk::{Chunk, ChunkBuilder};
use crate::event::{Event, Tag};
use crate::pattern::TagPattern;
use crate::receipt::Delivery;

/// What a filter decided about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it (possibly changed) and pass it on.
    Keep,
    /// Drop it on purpose (a `grep` that excludes it).
    Drop,
    /// It is invalid for this filter: send it to the error route with the reason.
    Reject(String),
}

/// A filter: transforms an event in place, drops it, or rejects it.
pub trait Filter: Send + Sync {
    /// Decides about one event.
    fn filter(&self, event: &mut Event) -> Verdict;
}

/// Tag prefix of the error route.
pub const ERROR_TAG_PREFIX: &str = "@ERROR.";

fn is_error_pattern(p: &TagPattern) -> bool {
    p.as_str().starts_with("@ERROR")
}

struct FilterRoute {
    name: String,
    pattern: TagPattern,
    filter: Arc<dyn Filter>,
}

struct SinkRoute {
    name: String,
    pattern: TagPattern,
    buffer: Buffer,
}

/// Cached tags before the cache is cleared; tags from forward clients are unbounded.
const CACHE_LIMIT: usize = 16_384;

/// Routes chunks by tag. Shared by every source of a process.
pub struct Router {
    filters: Vec<FilterRoute>,
    sinks: Vec<SinkRoute>,
    cache: Mutex<HashMap<Tag, Arc<Route>>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field(
                "filters",
                &self
                    .filters
                    .iter()
                    .map(|r| (&r.name, r.pattern.as_str()))
                    .collect::<Vec<_>>(),
            )
            .field(
                "sinks",
                &self
                    .sinks
                    .iter()
                    .map(|r| (&r.name, r.pattern.as_str()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Collects filters and sinks, then builds the [`Router`].
#[derive(Default)]
pub struct RouterBuilder {
    filters: Vec<FilterRoute>,
    sinks: Vec<SinkRoute>,
}

impl fmt::Debug for RouterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouterBuilder")
            .field("filters", &self.filters.len())
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl RouterBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a filter; filters run in the order they are added.
    pub fn filter(
        &mut self,
        name: &str,
        pattern: TagPattern,
        filter: Arc<dyn Filter>,
    ) -> &mut Self {
        self.filters.push(FilterRoute {
            name: name.to_string(),
            pattern,
            filter,
        });
        self
    }

    /// Adds a sink's buffer.
    pub fn sink(&mut self, name: &str, pattern: TagPattern, buffer: Buffer) -> &mut Self {
        self.sinks.push(SinkRoute {
            name: name.to_string(),
            pattern,
            buffer,
        });
        self
    }

    /// The router.
    pub fn build(self) -> Router {
        Router {
            filters: self.filters,
            sinks: self.sinks,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Router {
    /// The route for `tag`.
    pub fn route(&self, tag: &Tag) -> Arc<Route> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cache.get(tag) {
            return r.clone();
        }
        let route = Arc::new(self.resolve(tag));
        if route.sinks.is_empty() && !tag.starts_with(ERROR_TAG_PREFIX) {
            tracing::warn!(tag = %tag, "no sink matches tag; its events are discarded");
        }
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(tag.clone(), route.clone());
        route
    }

    fn resolve(&self, tag: &Tag) -> Route {
        let is_error = tag.starts_with(ERROR_TAG_PREFIX);
        // The error route has no filters: its events already failed one.
        let filters = if is_error {
            Vec::new()
        } else {
            self.filters
                .iter()
                .filter(|f| f.pattern.matches(tag))
                .map(|f| f.filter.clone())
                .collect()
        };
        let sinks: Vec<(String, Buffer)> = self
            .sinks
            .iter()
            .filter(|s| is_error_pattern(&s.pattern) == is_error && s.pattern.matches(tag))
            .map(|s| (s.name.clone(), s.buffer.clone()))
            .collect();
        let error_route = if is_error || self.filters.is_empty() {
            None
        } else {
            let etag = Tag::from(format!("{ERROR_TAG_PREFIX}{tag}"));
            Some(Arc::new(self.resolve(&etag)))
        };
        Route {
            tag: tag.clone(),
            filters,
            sinks,
            rejected: Mutex::new(None),
            error_route,
            rejections: AtomicU64::new(0),
            last_reject_log: Mutex::new(None),
        }
    }

    /// Routes a chunk: filters (if any match its tag), then every matching sink.
    pub async fn emit(&self, chunk: Chunk) -> Result<(), BufferClosed> {
        self.route(chunk.tag()).emit(chunk).await
    }

    /// Names of the filters and sinks `tag` would pass through, in order.
    pub fn describe(&self, tag: &str) -> (Vec<&str>, Vec<&str>) {
        let filters = self
            .filters
            .iter()
            .filter(|f| f.pattern.matches(tag))
            .map(|f| f.name.as_str())
            .collect();
        let is_error = tag.starts_with(ERROR_TAG_PREFIX);
        let sinks = self
            .sinks
            .iter()
            .filter(|s| is_error_pattern(&s.pattern) == is_error && s.pattern.matches(tag))
            .map(|s| s.name.as_str())
            .collect();
        (filters, sinks)
    }
}

/// What happens to events of one tag.
pub struct Route {
    tag: Tag,
    filters: Vec<Arc<dyn Filter>>,
    sinks: Vec<(String, Buffer)>,
    /// Events rejected by a filter, waiting to go to the error route.
    rejected: Mutex<Option<ChunkBuilder>>,
    error_route: Option<Arc<Route>>,
    rejections: AtomicU64,
    last_reject_log: Mutex<Option<Instant>>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("tag", &self.tag)
            .field("filters", &self.filters.len())
            .field(
                "sinks",
                &self.sinks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Route {
    /// The tag this route is for.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    /// Whether any filter applies.
    pub fn has_filters(&self) -> bool {
        !self.filters.is_empty()
    }

    /// Whether no sink receives these events.
    pub fn is_discarded(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Runs the filters over one event; `false` means it does not continue (dropped,
    /// or rejected: then it waits for the error route, which the next `deliver` or
    /// `flush` sends). Sources that build their own chunks call this before
    /// encoding, then [`Route::deliver`].
    pub fn apply(&self, event: &mut Event) -> bool {
        for f in &self.filters {
            match f.filter(event) {
                Verdict::Keep => {}
                Verdict::Drop => return false,
                Verdict::Reject(reason) => {
                    self.reject(event, reason);
                    return false;
                }
            }
        }
        true
    }

    /// Events rejected by filters on this route since start.
    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }

    fn reject(&self, event: &Event, reason: String) {
        let total = self.rejections.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.error_route {
            Some(er) if !er.sinks.is_empty() => {
                let mut record = event.record.clone();
                record.insert("error", reason);
                let mut held = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
                held.get_or_insert_with(|| ChunkBuilder::new(er.tag.clone()))
                    .push(event.time, &record);
            }
            _ => {
                let mut last = self
                    .last_reject_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        tag = %self.tag,
                        total_rejected = total,
                        %reason,
                        "a filter rejected an event and no sink matches `@ERROR.**`; it is discarded (add a sink with match \"@ERROR.**\" to keep rejected events)"
                    );
                }
            }
        }
    }

    /// Sends events rejected so far to the error route.
    pub async fn flush(&self) -> Result<(), BufferClosed> {
        let chunk = {
            let mut held = self.rejected.lock().unwrap_or_else(|p| p.into_inner());
            held.as_mut().and_then(ChunkBuilder::finish)
        };
        match (chunk, &self.error_route) {
            (Some(c), Some(er)) => er.deliver_now(c).await,
            _ => Ok(()),
        }
    }

    /// Filters a chunk (decoding and re-encoding it only if a filter applies), then
    /// delivers it.
    pub async fn emit(&self, chunk: Chunk) -> Result<(), BufferClosed> {
        if self.filters.is_empty() {
            return self.deliver(chunk).await;
        }
        let mut builder = ChunkBuilder::new(chunk.tag().clone());
        for entry in chunk.walk() {
            match entry {
                Ok((time, record)) => {
                    let mut event = Event::new(chunk.tag().clone(), time, record);
                    if self.apply(&mut event) {
                        builder.push(event.time, &event.record);
                    }
                }
                Err(bad) => {
                    // Chunks are checked when they enter the process, so this is a bug
                    // or damage: no filter can apply to it, and it passes on as it is,
                    // for the sinks to put in their secondary output with the reason.
                    tracing::error!(tag = %chunk.tag(), chunk = %chunk.id(), reason = %bad.reason(), "undecodable entry in a chunk; passing it on unfiltered");
                    builder.push_encoded(bad.bytes);
                }
            }
        }
        let mut original = chunk;
        let receipts = original.take_receipts();
        match builder.finish() {
            Some(filtered) => {
                // Filters are deterministic, so a chunk sent again comes out the same:
                // keeping its id keeps ids derived from (chunk id, position) stable.
                let mut filtered = filtered.with_id(original.id());
                filtered.adopt_receipts(receipts);
                self.deliver(filtered).await
            }
            // Every event was filtered out: that is their delivery.
            None => self.flush().await,
        }
    }

    /// Hands a chunk (already filtered) to every matching sink's buffer, waiting for
    /// room in each; rejected events held by the route go to the error route first.
    pub async fn deliver(&self, chunk: Chunk) -> Result<(), BufferClosed> {
        self.flush().await?;
        self.deliver_now(chunk).await
    }

    async fn deliver_now(&self, chunk: Chunk) -> Result<(), BufferClosed> {
        match self.sinks.len() {
            0 => {
                chunk.mark(Delivery::Dropped);
                Ok(())
            }
            1 => self.sinks[0].1.push(chunk).await,
            n => {
                for (_, buffer) in &self.sinks[..n - 1] {
                    buffer.push(chunk.clone()).await?;
                }
                self.sinks[n - 1].1.push(chunk).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferConfig;
    use crate::receipt::Receipt;
    use crate::time::EventTime;
    use crate::value::{Map, Value};

    struct AddField;
    impl Filter for AddField {
        fn filter(&self, event: &mut Event) -> Verdict {
            event.record.insert("seen", true);
            if event.record.get("drop").is_some() {
                Verdict::Drop
            } else if event.record.get("bad").is_some() {
                Verdict::Reject("field `bad` is present".into())
            } else {
                Verdict::Keep
            }
        }
    }

    fn chunk(tag: &str, records: &[Map]) -> Chunk {
        let mut b = ChunkBuilder::new(Tag::new(tag));
        for r in records {
            b.push(EventTime::new(1, 0), r);
        }
        b.finish().unwrap()
    }

    #[tokio::test]
    async fn routes_to_every_matching_sink_through_filters() {
        let a = Buffer::new("a", &BufferConfig::default());
        let b = Buffer::new("b", &BufferConfig::default());
        let mut rb = RouterBuilder::new();
        rb.filter(
            "mark",
            TagPattern::new("app.**").unwrap(),
            Arc::new(AddField),
        );
        rb.sink("a", TagPattern::new("app.*").unwrap(), a.clone());
        rb.sink("b", TagPattern::new("**").unwrap(), b.clone());
        let router = rb.build();

        let keep: Map = [("msg", "hi")].into_iter().collect();
        let drop: Map = [("drop", "yes")].into_iter().collect();
        let (receipt, rx) = Receipt::channel();
        router
            .emit(chunk("app.web", &[keep, drop]).with_receipt(receipt))
            .await
            .unwrap();
        router
            .emit(chunk("sys.kernel", &[Map::new()]))
            .await
            .unwrap();

        let got = a.pop().await.unwrap();
        assert_eq!(got.chunk().count(), 1, "the filter dropped one event");
        let (_, rec) = got.chunk().events().next().unwrap().unwrap();
        assert_eq!(rec.get("seen"), Some(&Value::Bool(true)));
        assert_eq!(
            a.stats().queued_chunks,
            0,
            "sys.kernel does not match app.*"
        );
        assert_eq!(b.stats().queued_chunks, 2);
        got.ack();
        b.pop().await.unwrap().ack();
        assert_eq!(
            rx.await.unwrap(),
            Delivery::Delivered,
            "both sinks confirmed"
        );
        assert_eq!(router.describe("app.web"), (vec!["mark"], vec!["a", "b"]));
    }

    #[tokio::test]
    async fn rejected_events_go_to_error_sinks_only() {
        let all = Buffer::new("all", &BufferConfig::default());
        let errors = Buffer::new("errors", &BufferConfig::default());
        let mut rb = RouterBuilder::new();
        rb.filter("check", TagPattern::new("**").unwrap(), Arc::new(AddField));
        rb.sink("all", TagPattern::new("**").unwrap(), all.clone());
        rb.sink(
            "errors",
            TagPattern::new("@ERROR.**").unwrap(),
            errors.clone(),
        );
        let router = rb.build();
        let good: Map = [("msg", "ok")].into_iter().collect();
        let bad: Map = [("bad", "yes")].into_iter().collect();
        router.emit(chunk("app", &[good, bad])).await.unwrap();
        let kept = all.pop().await.unwrap();
        assert_eq!(kept.chunk().count(), 1);
        assert_eq!(
            all.stats().queued_chunks,
            0,
            "`**` does not receive rejected events"
        );
        let rejected = errors.pop().await.unwrap();
        assert_eq!(rejected.chunk().tag().as_str(), "@ERROR.app");
        let (_, rec) = rejected.chunk().events().next().unwrap().unwrap();
        assert_eq!(
            rec.get("error").and_then(Value::as_str),
            Some("field `bad` is present")
        );
        assert_eq!(router.route(&Tag::new("app")).rejections(), 1);
        assert_eq!(router.describe("@ERROR.app").1, vec!["errors"]);
    }

    #[tokio::test]
    async fn an_undecodable_entry_passes_filters_unchanged_and_the_rest_is_filtered() {
        let a = Buffer::new("a", &BufferConfig::default());
        let mut rb = RouterBuilder::new();
        rb.filter("mark", TagPattern::new("**").unwrap(), Arc::new(AddField));
        rb.sink("a", TagPattern::new("**").unwrap(), a.clone());
        let router = rb.build();
        let keep: Map = [("msg", "hi")].into_iter().collect();
        let mut b = ChunkBuilder::new(Tag::new("app"));
        b.push(EventTime::new(1, 0), &keep);
        // [1, "x"]: a record that is not a map.
        let bad = [0x92, 0x01, 0xa1, b'x'];
        b.push_encoded(&bad);
        b.push(EventTime::new(1, 0), &keep);
        router.emit(b.finish().unwrap()).await.unwrap();
        let got = a.try_pop().unwrap();
        let steps: Vec<_> = got.chunk().walk().collect();
        assert_eq!(steps.len(), 3);
        for i in [0, 2] {
            let (_, rec) = steps[i].as_ref().unwrap();
            assert_eq!(rec.get("seen"), Some(&Value::Bool(true)));
        }
        assert_eq!(steps[1].as_ref().unwrap_err().bytes, bad);
    }

    #[tokio::test]
    async fn unmatched_tags_are_dropped_and_reported() {
        let router = RouterBuilder::new().build();
        let (receipt, rx) = Receipt::channel();
        router
            .emit(chunk("x", &[Map::new()]).with_receipt(receipt))
            .await
            .unwrap();
        assert_eq!(rx.await.unwrap(), Delivery::Dropped);
    }
}
