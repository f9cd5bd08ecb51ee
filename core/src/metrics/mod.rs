//! nagare's own metrics, in Prometheus' model, through prometheus-client.
//!
//! - [`Metrics`]: the process's registry. The binary makes one at start, hands each
//!   component its [`ComponentMetrics`], adds its buffers, and renders it for
//!   `/metrics` ([`Metrics::render`]) in the Prometheus text format.
//! - `component.rs`: [`ComponentMetrics`], the counters every source, filter and
//!   sink keeps, labelled with its name, kind and type from the config
//!   (`component_id`, `component_kind`, `component_type`). Counting is an atomic add:
//!   the handles are looked up once, when the component starts.
//! - `detail.rs`: the metrics one type of component keeps beyond the common ones
//!   (a tail's files, a forward sink's servers), as handles counted with an atomic
//!   add or figures read at each scrape; `catalog.rs` names every one.
//! - `buffer.rs`: the buffers' state, read from [`Buffer::stats`](crate::buffer::Buffer)
//!   at each scrape.
//! - `process.rs`: CPU, memory, open files and start time of the process, read from
//!   `/proc` at each scrape (names as every Prometheus client library has them).
//! - `tap.rs`: the taps open and the copies they dropped, read at each scrape.
//!
//! Label sets are bounded: one series per component (and per error type or discard
//! reason, each a fixed list), never one per file, tag or pod.

mod buffer;
pub mod catalog;
mod component;
mod detail;
mod process;
mod tap;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use buffer::BufferCollector;
pub use component::{ComponentLabels, ComponentMetrics, Discard, ErrorType, Families, Totals};
pub use detail::{Def, FloatGauge, Kind};
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::gauge::Gauge;

use crate::buffer::Buffer;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The process's metrics. Cloning gives another handle to the same registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    families: Families,
    buffers: Arc<BufferCollector>,
    reloads: Family<Vec<(&'static str, &'static str)>, Counter>,
    last_reload_ok: Gauge,
    taps: Arc<tap::TapCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with the component families, the buffers' and the process's
    /// metrics, and `nagare_build_info` for `version`.
    pub fn new(version: &str) -> Self {
        let mut registry = Registry::default();
        let families = Families::default();
        families.register(&mut registry);
        let buffers = Arc::new(BufferCollector::default());
        registry.register_collector(Box::new(buffers.clone()));
        registry.register_collector(Box::new(process::ProcessCollector::new()));
        let taps = Arc::new(tap::TapCollector::default());
        registry.register_collector(Box::new(taps.clone()));
        let info: Family<Vec<(&'static str, String)>, Gauge> = Family::default();
        info.get_or_create(&vec![("version", version.to_string())])
            .set(1);
        registry.register(
            "nagare_build_info",
            "Always 1; the labels say which nagare is running",
            info,
        );
        let reloads: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
        for result in ["applied", "failed"] {
            let _ = reloads.get_or_create(&vec![("result", result)]);
        }
        registry.register(
            "nagare_config_reloads",
            "Reloads of the config (SIGHUP, POST /api/v1/reload, --watch-config): applied, or failed and the running topology kept",
            reloads.clone(),
        );
        let last_reload_ok = Gauge::default();
        last_reload_ok.set(1);
        registry.register(
            "nagare_config_last_reload_successful",
            "1 unless the last reload of the config failed",
            last_reload_ok.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            families,
            buffers,
            reloads,
            last_reload_ok,
            taps,
        }
    }

    /// The counters of one component, found once: `kind` is `source`, `filter` or
    /// `sink`, `type` its `type` in the config.
    pub fn component(
        &self,
        id: &str,
        kind: &'static str,
        r#type: &'static str,
    ) -> ComponentMetrics {
        self.families.component(ComponentLabels {
            component_id: id.to_string(),
            component_kind: kind.to_string(),
            component_type: r#type.to_string(),
        })
    }

    /// Reports the state of `buffer`, the buffer in front of sink `sink`, at each
    /// scrape.
    pub fn add_buffer(&self, sink: &str, r#type: &'static str, buffer: Buffer) {
        self.buffers.add(sink, r#type, buffer);
    }

    /// Reports the router's taps at each scrape (set once; the router keeps its
    /// taps across reloads).
    pub fn set_taps(&self, taps: Arc<crate::router::Taps>) {
        let _ = self.taps.taps.set(taps);
    }

    /// Stops reporting the buffer of sink `sink` (a reload removed the sink).
    pub fn remove_buffer(&self, sink: &str) {
        self.buffers.remove(sink);
    }

    /// Counts a reload of the config: applied, or refused (the running topology
    /// kept).
    pub fn reloaded(&self, applied: bool) {
        let result = if applied { "applied" } else { "failed" };
        self.reloads.get_or_create(&vec![("result", result)]).inc();
        self.last_reload_ok.set(i64::from(applied));
    }

    /// The state of the buffer in front of sink `sink`, as the buffer metrics read
    /// it, if it was added.
    pub fn buffer_of(&self, sink: &str) -> Option<Buffer> {
        self.buffers.get(sink)
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut out, &registry)
            .expect("writing metrics into a String cannot fail");
        out
    }
}
