//! What the sink counts beside the kit's counters: `_bulk` requests, the items of
//! their answers by status class (`2xx`, `409`, `429`, `4xx`, `5xx`: a fixed list,
//! so the series stay few), and events sent to `index_fallback`.

use nagare_core::metrics::catalog::elasticsearch as m;
use nagare_core::metrics::{ComponentMetrics, Counter};
use nagare_core::sink::{BatchOutcome, Outcome};

/// The status classes, in the order of [`BulkStats::items`].
const CLASSES: [&str; 5] = ["2xx", "409", "429", "4xx", "5xx"];

/// The sink's `_bulk` counters. Cloning gives another handle to the same series.
#[derive(Debug, Clone)]
pub struct BulkStats {
    requests: Counter,
    items: [Counter; 5],
    fallbacks: Counter,
}

impl BulkStats {
    /// Its series, at zero, for the sink of `metrics`; shows `bulk_errors` (items
    /// answered with anything but 2xx) in `/api/v1/components`.
    pub fn new(metrics: &ComponentMetrics) -> Self {
        let stats = Self {
            requests: metrics.counter(&m::BULK_REQUESTS, None),
            items: CLASSES.map(|c| metrics.counter(&m::BULK_ITEMS, Some(c))),
            fallbacks: metrics.counter(&m::INDEX_FALLBACKS, None),
        };
        let errors = stats.items.clone();
        metrics.show("bulk_errors", move || {
            errors[1..].iter().map(Counter::get).sum::<u64>() as f64
        });
        stats
    }

    /// Counts one request of `items` items and what its answer says of each (a
    /// request answered as a whole with an error counts no item).
    pub fn answered(&self, items: usize, outcome: &BatchOutcome) {
        self.requests.inc();
        match outcome {
            BatchOutcome::All(Outcome::Delivered) => {
                self.items[0].inc_by(items as u64);
            }
            BatchOutcome::Items(outcomes) => {
                for o in outcomes {
                    self.items[class(o)].inc();
                }
            }
            _ => {}
        }
    }

    /// The counter of events sent to `index_fallback`, for the request builders.
    pub fn fallbacks(&self) -> Counter {
        self.fallbacks.clone()
    }

    /// Counts a request that got no answer.
    pub fn unanswered(&self) {
        self.requests.inc();
    }
}

/// The index in [`CLASSES`] of an item's outcome. With `op_type: create`, a 409
/// means the document is there already, which the sink takes as delivered: it is
/// counted under `2xx`.
fn class(outcome: &Outcome) -> usize {
    let status = match outcome {
        Outcome::Delivered => return 0,
        Outcome::Retry { status, .. }
        | Outcome::Blocked { status, .. }
        | Outcome::Rejected { status, .. } => status.unwrap_or(500),
    };
    match status {
        200..=299 => 0,
        409 => 1,
        429 => 2,
        500..=599 => 4,
        _ => 3,
    }
}
