//! A filter counted as a component of its own: every event it sees is received,
//! every event it keeps is sent, a drop is counted as such and a rejection as an
//! error, so `/metrics` and `/api/v1/components` show what each filter did.

use super::{Filter, Verdict};
use crate::event::Event;
use crate::metrics::catalog::filter::DROPPED;
use crate::metrics::{ComponentMetrics, Counter, ErrorType};

/// `filter`, counting into its component's metrics.
pub(super) struct Counted {
    filter: std::sync::Arc<dyn Filter>,
    metrics: ComponentMetrics,
    dropped: Counter,
}

impl Counted {
    pub(super) fn new(filter: std::sync::Arc<dyn Filter>, metrics: ComponentMetrics) -> Self {
        let dropped = metrics.counter(&DROPPED, None);
        Self {
            filter,
            metrics,
            dropped,
        }
    }
}

impl Filter for Counted {
    fn filter(&self, event: &mut Event) -> Verdict {
        self.metrics.received(1, 0);
        let verdict = self.filter.filter(event);
        match &verdict {
            Verdict::Keep => self.metrics.sent(1, 0),
            Verdict::Drop => {
                self.dropped.inc();
            }
            Verdict::Reject(_) => self.metrics.error(ErrorType::rejected),
        }
        verdict
    }
}
