//! The taps' state (`nagare tap`), read at each scrape: how many are open and how
//! many copies the pipeline dropped instead of waiting for a slow tap reader.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::router::Taps;

/// Reads the router's [`Taps`] when scraped; reports zeros until they are set.
#[derive(Debug, Default)]
pub(super) struct TapCollector {
    pub(super) taps: OnceLock<Arc<Taps>>,
}

impl Collector for TapCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (open, dropped) = self
            .taps
            .get()
            .map_or((0, 0), |t| (t.open_count(), t.dropped()));
        let g = ConstGauge::new(open as i64);
        g.encode(encoder.encode_descriptor(
            "nagare_taps_open",
            "Taps open (nagare tap, GET /api/v1/tap)",
            None,
            g.metric_type(),
        )?)?;
        let c = ConstCounter::new(dropped);
        c.encode(encoder.encode_descriptor(
            "nagare_tap_dropped_events",
            "Event copies the pipeline dropped instead of waiting for a tap reader that was behind",
            None,
            c.metric_type(),
        )?)?;
        Ok(())
    }
}
