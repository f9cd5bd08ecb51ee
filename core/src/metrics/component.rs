//! The counters every component keeps.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::detail::{Def, DetailCollector, FloatGauge, Shown};

/// Which component a series is about: its name, kind and type from the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ComponentLabels {
    /// Its name in the config (`containers`, `to_aggregators`).
    pub component_id: String,
    /// `source`, `filter` or `sink`.
    pub component_kind: String,
    /// Its `type` (`tail`, `forward`, `elasticsearch`).
    pub component_type: String,
}

/// Why a component counted an error. A fixed list, so the series stay few.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ErrorType {
    /// A request or write failed and is tried again.
    request_failed,
    /// The destination refused events for good.
    rejected,
    /// An event could not be read or encoded.
    encode_failed,
}

impl ErrorType {
    const ALL: [ErrorType; 3] = [
        ErrorType::request_failed,
        ErrorType::rejected,
        ErrorType::encode_failed,
    ];
}

/// Why a component let events go without delivering them. A fixed list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Discard {
    /// Written to the dead-letter output.
    dead_letter,
}

impl Discard {
    const ALL: [Discard; 1] = [Discard::dead_letter];
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ErrorLabels {
    #[prometheus(flatten)]
    component: ComponentLabels,
    error_type: ErrorType,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DiscardLabels {
    #[prometheus(flatten)]
    component: ComponentLabels,
    reason: Discard,
}

/// The families of component counters, registered once.
#[derive(Debug, Clone, Default)]
pub struct Families {
    received_events: Family<ComponentLabels, Counter>,
    received_bytes: Family<ComponentLabels, Counter>,
    sent_events: Family<ComponentLabels, Counter>,
    sent_bytes: Family<ComponentLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    discarded: Family<DiscardLabels, Counter>,
    details: Arc<DetailCollector>,
}

impl Families {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "nagare_component_received_events",
            "Events a component took in",
            self.received_events.clone(),
        );
        registry.register(
            "nagare_component_received_bytes",
            "Bytes of the events a component took in, as nagare holds them (MessagePack)",
            self.received_bytes.clone(),
        );
        registry.register(
            "nagare_component_sent_events",
            "Events a component passed on: confirmed delivered, for a sink",
            self.sent_events.clone(),
        );
        registry.register(
            "nagare_component_sent_bytes",
            "Bytes a component passed on, in its destination's encoding",
            self.sent_bytes.clone(),
        );
        registry.register(
            "nagare_component_errors",
            "Errors a component met, by type",
            self.errors.clone(),
        );
        registry.register(
            "nagare_component_discarded_events",
            "Events a component let go without delivering them, by reason",
            self.discarded.clone(),
        );
        registry.register_collector(Box::new(self.details.clone()));
    }

    pub(super) fn component(&self, labels: ComponentLabels) -> ComponentMetrics {
        // Every series of the component exists from the start, at zero, so that
        // `rate()` and `increase()` see the first error too.
        for error_type in ErrorType::ALL {
            drop(self.errors.get_or_create(&ErrorLabels {
                component: labels.clone(),
                error_type,
            }));
        }
        for reason in Discard::ALL {
            drop(self.discarded.get_or_create(&DiscardLabels {
                component: labels.clone(),
                reason,
            }));
        }
        ComponentMetrics {
            received_events: self.received_events.get_or_create_owned(&labels),
            received_bytes: self.received_bytes.get_or_create_owned(&labels),
            sent_events: self.sent_events.get_or_create_owned(&labels),
            sent_bytes: self.sent_bytes.get_or_create_owned(&labels),
            families: Some(self.clone()),
            shown: Shown::default(),
            labels,
        }
    }
}

/// The counters of one component. Cloning gives another handle to the same
/// counters; [`ComponentMetrics::detached`] counts into nothing that is served.
#[derive(Debug, Clone)]
pub struct ComponentMetrics {
    received_events: Counter,
    received_bytes: Counter,
    sent_events: Counter,
    sent_bytes: Counter,
    families: Option<Families>,
    shown: Shown,
    labels: ComponentLabels,
}

impl ComponentMetrics {
    /// Counters no registry serves: for tests and tools that run a component alone.
    pub fn detached(id: &str) -> Self {
        Self {
            received_events: Counter::default(),
            received_bytes: Counter::default(),
            sent_events: Counter::default(),
            sent_bytes: Counter::default(),
            families: None,
            shown: Shown::default(),
            labels: ComponentLabels {
                component_id: id.to_string(),
                component_kind: String::new(),
                component_type: String::new(),
            },
        }
    }

    /// Its labels.
    pub fn labels(&self) -> &ComponentLabels {
        &self.labels
    }

    /// `events` taken in, `bytes` in all.
    pub fn received(&self, events: u64, bytes: u64) {
        self.received_events.inc_by(events);
        self.received_bytes.inc_by(bytes);
    }

    /// `events` passed on, `bytes` in all.
    pub fn sent(&self, events: u64, bytes: u64) {
        self.sent_events.inc_by(events);
        self.sent_bytes.inc_by(bytes);
    }

    /// An error of `kind`. Errors are rare: the series is found here.
    pub fn error(&self, kind: ErrorType) {
        if let Some(f) = &self.families {
            f.errors
                .get_or_create(&ErrorLabels {
                    component: self.labels.clone(),
                    error_type: kind,
                })
                .inc();
        }
    }

    /// `events` let go for `reason`.
    pub fn discarded(&self, reason: Discard, events: u64) {
        if let Some(f) = &self.families {
            f.discarded
                .get_or_create(&DiscardLabels {
                    component: self.labels.clone(),
                    reason,
                })
                .inc_by(events);
        }
    }

    /// A handle on counter `def` of this component, its series created at zero;
    /// `label` is the value of `def`'s extra label, if it has one.
    pub fn counter(&self, def: &Def, label: Option<&str>) -> Counter {
        match &self.families {
            Some(f) => f.details.counter(&self.labels, def, label),
            None => Counter::default(),
        }
    }

    /// A handle on gauge `def` of this component, its series created at zero.
    pub fn gauge(&self, def: &Def, label: Option<&str>) -> Gauge {
        match &self.families {
            Some(f) => f.details.gauge(&self.labels, def, label),
            None => Gauge::default(),
        }
    }

    /// A handle on gauge `def` holding a fraction.
    pub fn float_gauge(&self, def: &Def, label: Option<&str>) -> FloatGauge {
        match &self.families {
            Some(f) => f.details.float_gauge(&self.labels, def, label),
            None => FloatGauge::default(),
        }
    }

    /// Serves `def` as what `read` returns at each scrape: for a figure the
    /// component keeps in an atomic of its own.
    pub fn read(&self, def: &Def, read: impl Fn() -> f64 + Send + Sync + 'static) {
        self.read_for(def, None, read);
    }

    /// [`read`](Self::read), for the series whose extra label is `label`.
    pub fn read_for(
        &self,
        def: &Def,
        label: Option<&str>,
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        if let Some(f) = &self.families {
            f.details.read(&self.labels, def, label, Arc::new(read));
        }
    }

    /// Shows `key` as what `read` returns in `/api/v1/components` (`details`): a
    /// figure that matters to a person watching the component.
    pub fn show(&self, key: &'static str, read: impl Fn() -> f64 + Send + Sync + 'static) {
        self.shown.add(key, Arc::new(read));
    }

    /// The figures [`show`](Self::show) was given, read now.
    pub fn details(&self) -> BTreeMap<&'static str, f64> {
        self.shown.values()
    }

    /// Errors of every type so far.
    pub fn errors_total(&self) -> u64 {
        let Some(f) = &self.families else { return 0 };
        ErrorType::ALL
            .iter()
            .map(|&error_type| {
                f.errors
                    .get_or_create(&ErrorLabels {
                        component: self.labels.clone(),
                        error_type,
                    })
                    .get()
            })
            .sum()
    }

    /// Events let go for every reason so far.
    pub fn discarded_total(&self) -> u64 {
        let Some(f) = &self.families else { return 0 };
        Discard::ALL
            .iter()
            .map(|&reason| {
                f.discarded
                    .get_or_create(&DiscardLabels {
                        component: self.labels.clone(),
                        reason,
                    })
                    .get()
            })
            .sum()
    }

    /// Events received and sent so far: for `/api/v1/components` and tests.
    pub fn totals(&self) -> Totals {
        Totals {
            received_events: self.received_events.get(),
            received_bytes: self.received_bytes.get(),
            sent_events: self.sent_events.get(),
            sent_bytes: self.sent_bytes.get(),
        }
    }
}

/// A component's counts at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Events taken in.
    pub received_events: u64,
    /// Bytes taken in.
    pub received_bytes: u64,
    /// Events passed on.
    pub sent_events: u64,
    /// Bytes passed on.
    pub sent_bytes: u64,
}
