//! The buffers' state, read at each scrape.

use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::ComponentLabels;
use crate::buffer::{Buffer, BufferStats};

/// Reads every buffer's [`BufferStats`] when scraped. Series carry the labels of
/// the sink the buffer is in front of.
#[derive(Debug, Default)]
pub struct BufferCollector {
    buffers: Mutex<Vec<(ComponentLabels, Buffer)>>,
}

impl BufferCollector {
    pub(super) fn add(&self, sink: &str, r#type: &'static str, buffer: Buffer) {
        let labels = ComponentLabels {
            component_id: sink.to_string(),
            component_kind: "sink".to_string(),
            component_type: r#type.to_string(),
        };
        let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        // A reload that replaced the sink's buffer: the new one is reported.
        buffers.retain(|(l, _)| l.component_id != sink);
        buffers.push((labels, buffer));
    }

    pub(super) fn remove(&self, sink: &str) {
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(l, _)| l.component_id != sink);
    }

    pub(super) fn get(&self, sink: &str) -> Option<Buffer> {
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(l, _)| l.component_id == sink)
            .map(|(_, b)| b.clone())
    }
}

/// One metric of every buffer: its name, help, and how to read it from the stats.
struct Read {
    name: &'static str,
    help: &'static str,
    counter: bool,
    value: fn(&BufferStats, &Buffer) -> f64,
}

const READS: &[Read] = &[
    Read {
        name: "nagare_buffer_chunks",
        help: "Chunks the buffer holds: being filled, queued, and taken by the sink and not yet confirmed",
        counter: false,
        value: |s, _| ((s.staged_chunks + s.queued_chunks + s.in_flight_chunks) as u64) as f64,
    },
    Read {
        name: "nagare_buffer_bytes",
        help: "Bytes of the chunks the buffer holds",
        counter: false,
        value: |s, _| ((s.staged_bytes + s.queued_bytes + s.in_flight_bytes) as u64) as f64,
    },
    Read {
        name: "nagare_buffer_in_flight_chunks",
        help: "Chunks taken by the sink and not yet confirmed",
        counter: false,
        value: |s, _| (s.in_flight_chunks as u64) as f64,
    },
    Read {
        name: "nagare_buffer_limit_bytes",
        help: "The buffer's total_limit_size",
        counter: false,
        value: |_, b| (b.config().total_limit_size.0) as f64,
    },
    Read {
        name: "nagare_buffer_overflow_dropped_chunks",
        help: "Chunks dropped by the overflow policy",
        counter: true,
        value: |s, _| (s.dropped_chunks) as f64,
    },
    Read {
        name: "nagare_buffer_overflow_dropped_events",
        help: "Events in the chunks dropped by the overflow policy",
        counter: true,
        value: |s, _| (s.dropped_events) as f64,
    },
    Read {
        name: "nagare_buffer_blocked",
        help: "Times a source had to wait for room in the buffer",
        counter: true,
        value: |s, _| (s.blocked) as f64,
    },
    Read {
        name: "nagare_buffer_queued_events",
        help: "Events in the chunks queued for the sink (not being filled, not in flight)",
        counter: false,
        value: |s, _| s.queued_events as f64,
    },
    Read {
        name: "nagare_buffer_retried_chunks",
        help: "Chunks the sink gave back to be sent again (a failed or abandoned attempt)",
        counter: true,
        value: |s, _| s.retried_chunks as f64,
    },
    Read {
        name: "nagare_buffer_oldest_chunk_age_seconds",
        help: "Age of the oldest chunk the buffer holds (a chunk recovered at start counts from its file's time); 0 when empty",
        counter: false,
        value: |s, _| s.oldest_chunk_age.map_or(0.0, |a| a.as_secs_f64()),
    },
    Read {
        name: "nagare_buffer_recovered_chunks",
        help: "Chunks found in the file buffer at start and queued again",
        counter: true,
        value: |s, _| (s.recovered_chunks) as f64,
    },
    Read {
        name: "nagare_buffer_quarantined_chunks",
        help: "Chunk files found damaged and moved to quarantine",
        counter: true,
        value: |s, _| (s.quarantined_chunks) as f64,
    },
];

impl Collector for BufferCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        if buffers.is_empty() {
            return Ok(());
        }
        let stats: Vec<BufferStats> = buffers.iter().map(|(_, b)| b.stats()).collect();
        for read in READS {
            let kind = if read.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let mut family = encoder.encode_descriptor(read.name, read.help, None, kind)?;
            for ((labels, buffer), stats) in buffers.iter().zip(&stats) {
                let value = (read.value)(stats, buffer);
                let metric = family.encode_family(labels)?;
                if read.counter {
                    ConstCounter::new(value as u64).encode(metric)?;
                } else if value.fract() == 0.0 {
                    ConstGauge::new(value as i64).encode(metric)?;
                } else {
                    ConstGauge::new(value).encode(metric)?;
                }
            }
        }
        Ok(())
    }
}
