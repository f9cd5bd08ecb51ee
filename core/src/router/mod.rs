//! The tag router: which filters an event passes through and which sinks' buffers
//! receive it.
//!
//! Filters apply in config order to every event whose tag matches their pattern; then
//! the event goes to **every** sink whose pattern matches (as in Fluent Bit and
//! Vector; Fluentd users get its `copy` behaviour without writing it). The decision is
//! made once per tag and cached, so the per-chunk cost is a hash lookup.
//!
//! Events enter one way, through a [`Lane`]: a source that builds its own chunks
//! opens one per tag ([`Router::lane`]) and pushes events into it; a source that
//! receives whole chunks hands each to [`Router::emit`], which runs it through a
//! lane of its own. Events a filter rejects wait in the lane that rejected them and
//! go to the `@ERROR.<tag>` route with its next send, before the events kept; so
//! no source sends them itself, and none are left behind.
//!
//! A reload replaces the routes while sources run ([`Router::replace`]): every
//! delivery holds the router's gate shared, so a reload that takes it
//! ([`Router::pause`]) knows no event is on its way into a buffer it is about to
//! close; lanes resolve their route again at their next send.
//!
//! - `route.rs`: [`Route`], what happens to events of one tag.
//! - `lane.rs`: [`Lane`], the way in.
//! - `tap.rs`: [`Taps`], copies of the events passing a point, for `nagare tap`.
//! - `counted.rs`: a filter counted as a component of its own.

mod counted;
mod lane;
mod route;
mod tap;
#[cfg(test)]
mod tests;

pub use lane::Lane;
pub use route::Route;
pub use tap::{Tap, TapCopy, TapPoint, Taps};

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use crate::buffer::{Buffer, BufferClosed};
use crate::chunk::Chunk;
use crate::event::{Event, Tag};
use crate::metrics::ComponentMetrics;
use crate::pattern::TagPattern;

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

/// Routes chunks by tag. Shared by every source of a process: each source holds
/// its own handle ([`Router::for_source`]), which counts what that source emits.
pub struct Router {
    cell: Arc<Cell>,
    /// The counters of the source holding this handle.
    source: Option<ComponentMetrics>,
}

/// The routes of the moment, and what a reload needs to replace them.
struct Cell {
    current: RwLock<Arc<Shared>>,
    /// Bumped by each [`Router::replace`]: a lane whose route is older resolves
    /// it again.
    generation: AtomicU64,
    /// Held shared by every delivery into buffers, exclusively while a reload
    /// swaps buffers.
    gate: tokio::sync::RwLock<()>,
    /// The taps open, whatever the routes.
    taps: Arc<Taps>,
}

impl Cell {
    fn shared(&self) -> Arc<Shared> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Deliveries are held back while this lives: see [`Router::pause`].
pub type Paused<'a> = tokio::sync::RwLockWriteGuard<'a, ()>;

struct Shared {
    filters: Vec<FilterRoute>,
    sinks: Vec<SinkRoute>,
    cache: Mutex<HashMap<Tag, Arc<Route>>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.cell.shared();
        f.debug_struct("Router")
            .field(
                "filters",
                &shared
                    .filters
                    .iter()
                    .map(|r| (&r.name, r.pattern.as_str()))
                    .collect::<Vec<_>>(),
            )
            .field(
                "sinks",
                &shared
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

    /// Adds a filter that counts what it receives, keeps, drops and rejects into
    /// `metrics` (the filter's own component metrics).
    pub fn counted_filter(
        &mut self,
        name: &str,
        pattern: TagPattern,
        filter: Arc<dyn Filter>,
        metrics: ComponentMetrics,
    ) -> &mut Self {
        self.filter(
            name,
            pattern,
            Arc::new(counted::Counted::new(filter, metrics)),
        )
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
            cell: Arc::new(Cell {
                current: RwLock::new(Arc::new(self.shared())),
                generation: AtomicU64::new(0),
                gate: tokio::sync::RwLock::new(()),
                taps: Arc::default(),
            }),
            source: None,
        }
    }

    fn shared(self) -> Shared {
        Shared {
            filters: self.filters,
            sinks: self.sinks,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl Router {
    /// The route for `tag`: what its events pass through (events enter through
    /// [`lane`](Router::lane) and [`emit`](Router::emit)).
    pub fn route(&self, tag: &Tag) -> Arc<Route> {
        self.cell.shared().route(tag)
    }

    /// Replaces the filters and sinks of every handle of this router (a reload):
    /// what is emitted from now on takes the new routes, and lanes resolve theirs
    /// again at their next send. Take [`pause`](Router::pause) first when buffers
    /// the old routes lead to are about to close.
    pub fn replace(&self, builder: RouterBuilder) {
        let shared = Arc::new(builder.shared());
        *self.cell.current.write().unwrap_or_else(|p| p.into_inner()) = shared;
        self.cell.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits until no delivery is under way and holds new ones back until the
    /// guard is dropped: sources wait as they do for a full buffer.
    pub async fn pause(&self) -> Paused<'_> {
        self.cell.gate.write().await
    }

    /// Another handle to the same routes, for one source: what it emits counts as
    /// that source's received events.
    pub fn for_source(&self, metrics: ComponentMetrics) -> Router {
        Router {
            cell: self.cell.clone(),
            source: Some(metrics),
        }
    }

    /// The way in for events of `tag` that the caller encodes into chunks itself.
    pub fn lane(&self, tag: &Tag) -> Lane {
        let generation = self.cell.generation();
        Lane::new(self.route(tag))
            .counted(self.source.clone())
            .following(self.cell.clone(), generation)
    }

    /// The taps of this router (every handle's, across reloads).
    pub fn taps(&self) -> &Arc<Taps> {
        &self.cell.taps
    }

    /// Routes a whole chunk: filters (if any match its tag, decoding and re-encoding
    /// it), then every matching sink, waiting for room in each; events a filter
    /// rejected go to the error route first.
    pub async fn emit(&self, chunk: Chunk) -> Result<(), BufferClosed> {
        if let Some(m) = &self.source {
            m.received(u64::from(chunk.count()), chunk.entries().len() as u64);
        }
        let taps = &self.cell.taps;
        taps.copy(
            |p| *p == TapPoint::Source,
            chunk.tag(),
            chunk.entries(),
            chunk.count(),
        );
        let _open = self.cell.gate.read().await;
        lane::emit(self.route(chunk.tag()), chunk, taps).await
    }

    /// Names of the filters and sinks `tag` would pass through, in order.
    pub fn describe(&self, tag: &str) -> (Vec<String>, Vec<String>) {
        self.cell.shared().describe(tag)
    }
}

impl Shared {
    fn route(&self, tag: &Tag) -> Arc<Route> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cache.get(tag) {
            return r.clone();
        }
        let route = Arc::new(self.resolve(tag));
        if route.is_discarded() && !tag.starts_with(ERROR_TAG_PREFIX) {
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
        Route::new(tag.clone(), filters, sinks, error_route)
    }

    /// Names of the filters and sinks `tag` would pass through, in order.
    fn describe(&self, tag: &str) -> (Vec<String>, Vec<String>) {
        let filters = self
            .filters
            .iter()
            .filter(|f| f.pattern.matches(tag))
            .map(|f| f.name.clone())
            .collect();
        let is_error = tag.starts_with(ERROR_TAG_PREFIX);
        let sinks = self
            .sinks
            .iter()
            .filter(|s| is_error_pattern(&s.pattern) == is_error && s.pattern.matches(tag))
            .map(|s| s.name.clone())
            .collect();
        (filters, sinks)
    }
}
