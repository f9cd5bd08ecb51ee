//! The metrics one type of component keeps beyond the common ones: a tail's files,
//! a forward sink's servers, an Elasticsearch sink's bulk items.
//!
//! Each metric is a [`Def`] (its name, help, kind and the one extra label it may
//! carry, see `catalog.rs`). A component asks its [`ComponentMetrics`] for a handle
//! once, at start ([`ComponentMetrics::counter`], [`ComponentMetrics::gauge`], ...),
//! which creates the series at zero; counting is then an atomic add on the handle.
//! A figure the component already keeps in an atomic of its own is read at each
//! scrape instead ([`ComponentMetrics::read`]), so it is not counted twice.
//!
//! [`ComponentMetrics`]: super::ComponentMetrics

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};

use super::ComponentLabels;

/// A gauge holding a fraction (a phi, an age in seconds).
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Whether a metric only goes up or goes both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; served with `_total` after its name.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One metric a type of component keeps.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    /// Its name, without `_total`.
    pub name: &'static str,
    /// Its help text.
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The extra label its series carry beside the component's, if any (a fixed,
    /// small set of values: a configured server, a status class).
    pub label: Option<&'static str>,
}

/// The labels of a series: the component's, and the extra one.
pub(super) type Labels = (ComponentLabels, Vec<(&'static str, String)>);

/// A figure read when needed.
pub(super) type Read = Arc<dyn Fn() -> f64 + Send + Sync>;

enum Series {
    Counters(Family<Labels, Counter>),
    Gauges(Family<Labels, Gauge>),
    FloatGauges(Family<Labels, FloatGauge>),
    Reads(Vec<(Labels, Read)>),
}

struct Entry {
    def: Def,
    series: Series,
}

/// Every detail metric of the process, served at each scrape.
#[derive(Default)]
pub struct DetailCollector {
    entries: Mutex<BTreeMap<&'static str, Entry>>,
}

impl std::fmt::Debug for DetailCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DetailCollector").finish_non_exhaustive()
    }
}

fn labels(component: &ComponentLabels, def: &Def, value: Option<&str>) -> Labels {
    let extra = match (def.label, value) {
        (Some(key), Some(v)) => vec![(key, v.to_string())],
        _ => Vec::new(),
    };
    (component.clone(), extra)
}

impl DetailCollector {
    fn with<T>(&self, def: &Def, make: fn() -> Series, f: impl FnOnce(&mut Series) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let entry = entries.entry(def.name).or_insert_with(|| Entry {
            def: *def,
            series: make(),
        });
        f(&mut entry.series)
    }

    pub(super) fn counter(&self, c: &ComponentLabels, def: &Def, value: Option<&str>) -> Counter {
        debug_assert_eq!(def.kind, Kind::Counter, "{} is not a counter", def.name);
        let l = labels(c, def, value);
        self.with(
            def,
            || Series::Counters(Family::default()),
            |s| match s {
                Series::Counters(f) => f.get_or_create_owned(&l),
                _ => Counter::default(),
            },
        )
    }

    pub(super) fn gauge(&self, c: &ComponentLabels, def: &Def, value: Option<&str>) -> Gauge {
        debug_assert_eq!(def.kind, Kind::Gauge, "{} is not a gauge", def.name);
        let l = labels(c, def, value);
        self.with(
            def,
            || Series::Gauges(Family::default()),
            |s| match s {
                Series::Gauges(f) => f.get_or_create_owned(&l),
                _ => Gauge::default(),
            },
        )
    }

    pub(super) fn float_gauge(
        &self,
        c: &ComponentLabels,
        def: &Def,
        value: Option<&str>,
    ) -> FloatGauge {
        debug_assert_eq!(def.kind, Kind::Gauge, "{} is not a gauge", def.name);
        let l = labels(c, def, value);
        self.with(
            def,
            || Series::FloatGauges(Family::default()),
            |s| match s {
                Series::FloatGauges(f) => f.get_or_create_owned(&l),
                _ => FloatGauge::default(),
            },
        )
    }

    pub(super) fn read(&self, c: &ComponentLabels, def: &Def, value: Option<&str>, read: Read) {
        let l = labels(c, def, value);
        self.with(
            def,
            || Series::Reads(Vec::new()),
            |s| {
                if let Series::Reads(v) = s {
                    v.push((l, read));
                }
            },
        );
    }
}

impl Collector for DetailCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for entry in entries.values() {
            let kind = match entry.def.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut metric =
                encoder.encode_descriptor(entry.def.name, entry.def.help, None, kind)?;
            match &entry.series {
                Series::Counters(f) => f.encode(metric)?,
                Series::Gauges(f) => f.encode(metric)?,
                Series::FloatGauges(f) => f.encode(metric)?,
                Series::Reads(reads) => {
                    for (labels, read) in reads {
                        let value = read();
                        let m = metric.encode_family(labels)?;
                        match entry.def.kind {
                            Kind::Counter => ConstCounter::new(value.max(0.0) as u64).encode(m)?,
                            Kind::Gauge => ConstGauge::new(value).encode(m)?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// The figures a component shows a person in `/api/v1/components` (`details`).
#[derive(Clone, Default)]
pub(super) struct Shown(pub(super) Arc<Mutex<Vec<(&'static str, Read)>>>);

impl std::fmt::Debug for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shown").finish_non_exhaustive()
    }
}

impl Shown {
    pub(super) fn add(&self, key: &'static str, read: Read) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.retain(|(k, _)| *k != key);
        v.push((key, read));
    }

    pub(super) fn values(&self) -> BTreeMap<&'static str, f64> {
        let v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        v.iter().map(|(k, read)| (*k, read())).collect()
    }
}
