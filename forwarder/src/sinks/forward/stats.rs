//! What the sink counts per configured server (label `server`, its `host:port` in
//! the config): acks, ack timeouts, failed handshakes and open connections counted
//! by its workers; up and phi read from its nodes' health at each scrape.

use std::sync::{Arc, Mutex};

use nagare_core::metrics::catalog::forward_sink as m;
use nagare_core::metrics::{ComponentMetrics, Counter, Gauge};
use tokio::time::Instant;

use super::connection::ConnectionError;
use super::node::Health;

/// The counters of one configured server, shared by its nodes' workers.
#[derive(Debug)]
pub(super) struct ServerStats {
    pub(super) acks: Counter,
    pub(super) ack_timeouts: Counter,
    pub(super) handshake_failures: Counter,
    pub(super) connections: Gauge,
    /// The health of each of its addresses now.
    nodes: Mutex<Vec<Arc<Health>>>,
}

impl ServerStats {
    /// Its series, at zero, for server `server` of the sink of `metrics`.
    pub(super) fn new(metrics: &ComponentMetrics, server: &str) -> Arc<Self> {
        let s = Some(server);
        let stats = Arc::new(Self {
            acks: metrics.counter(&m::ACKS, s),
            ack_timeouts: metrics.counter(&m::ACK_TIMEOUTS, s),
            handshake_failures: metrics.counter(&m::HANDSHAKE_FAILURES, s),
            connections: metrics.gauge(&m::CONNECTIONS, s),
            nodes: Mutex::default(),
        });
        let up = stats.clone();
        metrics.read_for(&m::UP, s, move || f64::from(u8::from(up.is_up())));
        let phi = stats.clone();
        metrics.read_for(&m::PHI, s, move || phi.phi());
        stats
    }

    /// Its addresses' health, after a resolution.
    pub(super) fn set_nodes(&self, nodes: Vec<Arc<Health>>) {
        *self.nodes.lock().unwrap_or_else(|p| p.into_inner()) = nodes;
    }

    /// Whether any of its addresses takes chunks now.
    pub(super) fn is_up(&self) -> bool {
        let now = Instant::now();
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes.iter().any(|h| h.is_available(now))
    }

    /// The lowest phi of its addresses (0 without heartbeats while up).
    fn phi(&self) -> f64 {
        let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .iter()
            .map(|h| h.phi())
            .fold(f64::INFINITY, f64::min)
            .min(f64::MAX)
    }

    /// Counts what a failure says about the server.
    pub(super) fn failed(&self, error: &ConnectionError) {
        match error {
            ConnectionError::AckTimeout(_) => self.ack_timeouts.inc(),
            ConnectionError::Tls(_)
            | ConnectionError::HandshakeRequired
            | ConnectionError::Handshake(_)
            | ConnectionError::Refused(_)
            | ConnectionError::ServerKeyMismatch
            | ConnectionError::SameHostname(_) => self.handshake_failures.inc(),
            _ => 0,
        };
    }
}

/// Shows `servers_up` and `servers_down` of `servers` in `/api/v1/components`.
pub(super) fn show(metrics: &ComponentMetrics, servers: &[Arc<ServerStats>]) {
    let all: Vec<Arc<ServerStats>> = servers.to_vec();
    metrics.show("servers_up", move || {
        all.iter().filter(|s| s.is_up()).count() as f64
    });
    let all: Vec<Arc<ServerStats>> = servers.to_vec();
    metrics.show("servers_down", move || {
        all.iter().filter(|s| !s.is_up()).count() as f64
    });
}
