//! What happens to events of one tag: the filters that apply, the sinks that
//! receive, and the error route their rejected events take.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Filter, Verdict};
use crate::buffer::{Buffer, BufferClosed};
use crate::chunk::Chunk;
use crate::event::{Event, Tag};
use crate::receipt::Delivery;

/// At most one warning per route this often about rejected events that no sink takes.
const REJECT_LOG_EVERY: Duration = Duration::from_secs(10);

/// What happens to events of one tag. Built once per tag by the router and shared by
/// every source that emits the tag; it holds no events.
pub struct Route {
    tag: Tag,
    filters: Vec<Arc<dyn Filter>>,
    sinks: Vec<(String, Buffer)>,
    /// Where events a filter rejected go (`@ERROR.<tag>`): `None` on the error route
    /// itself and where no filter could reject.
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
    pub(super) fn new(
        tag: Tag,
        filters: Vec<Arc<dyn Filter>>,
        sinks: Vec<(String, Buffer)>,
        error_route: Option<Arc<Route>>,
    ) -> Self {
        Self {
            tag,
            filters,
            sinks,
            error_route,
            rejections: AtomicU64::new(0),
            last_reject_log: Mutex::new(None),
        }
    }

    /// The tag this route is for.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    /// Whether any filter applies.
    pub fn has_filters(&self) -> bool {
        !self.filters.is_empty()
    }

    /// Whether sink `name` receives these events.
    pub fn sends_to(&self, name: &str) -> bool {
        self.sinks.iter().any(|(n, _)| n == name)
    }

    /// Whether no sink receives these events.
    pub fn is_discarded(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Events rejected by filters on this route since start.
    pub fn rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }

    /// Runs the filters over one event, in order, until one does not keep it.
    pub(super) fn filter(&self, event: &mut Event) -> Verdict {
        for f in &self.filters {
            match f.filter(event) {
                Verdict::Keep => {}
                other => return other,
            }
        }
        Verdict::Keep
    }

    /// Counts a rejected event and returns the route that takes it, if a sink
    /// matches the error route; if none does, says so (at most every 10 s).
    pub(super) fn rejected(&self, reason: &str) -> Option<&Arc<Route>> {
        let total = self.rejections.fetch_add(1, Ordering::Relaxed) + 1;
        match &self.error_route {
            Some(er) if !er.sinks.is_empty() => Some(er),
            _ => {
                let mut last = self
                    .last_reject_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= REJECT_LOG_EVERY) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        tag = %self.tag,
                        total_rejected = total,
                        %reason,
                        "a filter rejected an event and no sink matches `@ERROR.**`; it is discarded (add a sink with match \"@ERROR.**\" to keep rejected events)"
                    );
                }
                None
            }
        }
    }

    /// The route rejected events of this one take.
    pub(super) fn error_route(&self) -> Option<&Arc<Route>> {
        self.error_route.as_ref()
    }

    /// Hands a chunk (already filtered) to every matching sink's buffer, waiting for
    /// room in each.
    pub(super) async fn deliver(&self, chunk: Chunk) -> Result<(), BufferClosed> {
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
