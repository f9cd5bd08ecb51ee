//! One server address (a node): its health, and the worker task that owns its
//! connection.
//!
//! The sink's dispatcher owns every leased chunk and decides which node sends it; a
//! worker only writes the frames it is handed and reports back: acked, or failed
//! (connection lost, ack timeout). Failures are numbered by epoch: after a failure
//! both sides move to the next epoch, and frames handed over before the dispatcher
//! learned of the failure (an older epoch) are dropped by the worker, because the
//! dispatcher has already taken those chunks back to send elsewhere.

use std::collections::VecDeque;
use std::future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nagare_core::retry::Backoff;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::connection::{Connection, ConnectionError, Link};
use super::detector::{DetectorConfig, FailureDetector, Transition};
use super::encoder::EncodedChunk;
use super::stats::ServerStats;

/// A node's identity within one sink.
pub(super) type NodeId = u64;

/// A frame for a worker to send.
#[derive(Debug)]
pub(super) struct Job {
    pub(super) seq: u64,
    pub(super) epoch: u64,
    pub(super) frame: EncodedChunk,
}

/// What the dispatcher tells a worker.
#[derive(Debug)]
pub(super) enum ToNode {
    Send(Job),
    /// Drop the connection and everything in flight; the dispatcher took the chunks
    /// back (the failure detector marked the node down).
    Reset {
        epoch: u64,
    },
}

/// What workers and heartbeat tasks tell the dispatcher.
#[derive(Debug)]
pub(super) enum Report {
    /// The server acknowledged (or, without acks, the socket took) the chunk.
    Done { node: NodeId, seq: u64 },
    /// The connection failed; every chunk handed over in `epoch` is lost to it.
    Failed {
        node: NodeId,
        epoch: u64,
        error: ConnectionError,
    },
    /// The failure detector marked the node down.
    Down { node: NodeId, phi: f64 },
    /// The node's heartbeats came back steadily for `recover_wait`.
    Up { node: NodeId },
}

/// A node's health, shared by the dispatcher, its worker and its heartbeat task.
#[derive(Debug)]
pub(super) struct Health(Mutex<HealthState>);

#[derive(Debug)]
enum HealthState {
    /// Heartbeats drive a failure detector.
    Detected(FailureDetector),
    /// No heartbeats: down after a failed send, tried again after a backoff.
    Backoff {
        retry_at: Option<Instant>,
        failures: u32,
    },
}

impl Health {
    /// With heartbeats: a detector; without: backoff after failures.
    pub(super) fn new(detector: Option<DetectorConfig>) -> Self {
        let now = Instant::now().into_std();
        Health(Mutex::new(match detector {
            Some(config) => HealthState::Detected(FailureDetector::new(config, now)),
            None => HealthState::Backoff {
                retry_at: None,
                failures: 0,
            },
        }))
    }

    fn lock(&self) -> MutexGuard<'_, HealthState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether chunks may be sent to the node now.
    pub(super) fn is_available(&self, now: Instant) -> bool {
        match &*self.lock() {
            HealthState::Detected(d) => d.is_available(),
            HealthState::Backoff { retry_at, .. } => retry_at.is_none_or(|at| at <= now),
        }
    }

    /// The failure detector's phi now; without heartbeats 0 while available, and
    /// infinite while waiting out a backoff.
    pub(super) fn phi(&self) -> f64 {
        let now = Instant::now();
        match &*self.lock() {
            HealthState::Detected(d) => d.phi(now.into_std()),
            HealthState::Backoff { retry_at, .. } => {
                if retry_at.is_none_or(|at| at <= now) {
                    0.0
                } else {
                    f64::INFINITY
                }
            }
        }
    }

    /// Without heartbeats: when a node that failed may be tried again.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        match &*self.lock() {
            HealthState::Detected(_) => None,
            HealthState::Backoff { retry_at, .. } => *retry_at,
        }
    }

    /// Time since the last evidence of life (heartbeats only).
    pub(super) fn silence(&self) -> Option<Duration> {
        match &*self.lock() {
            HealthState::Detected(d) => Some(d.silence(Instant::now().into_std())),
            HealthState::Backoff { .. } => None,
        }
    }

    /// Evidence the node is alive: a heartbeat answered, a connection opened, an ack.
    pub(super) fn heartbeat(&self) -> Transition {
        match &mut *self.lock() {
            HealthState::Detected(d) => d.heartbeat(Instant::now().into_std()),
            HealthState::Backoff { .. } => Transition::None,
        }
    }

    /// The node delivered: without heartbeats, its backoff starts over.
    pub(super) fn delivered(&self) {
        if let HealthState::Backoff { retry_at, failures } = &mut *self.lock() {
            *retry_at = None;
            *failures = 0;
        }
    }

    /// Checks the silence (heartbeats only).
    pub(super) fn check(&self) -> Transition {
        match &mut *self.lock() {
            HealthState::Detected(d) => d.check(Instant::now().into_std()),
            HealthState::Backoff { .. } => Transition::None,
        }
    }

    /// Sending failed: down now.
    pub(super) fn fail(&self, backoff: &Backoff) {
        match &mut *self.lock() {
            HealthState::Detected(d) => d.fail(),
            HealthState::Backoff { retry_at, failures } => {
                *retry_at = Some(Instant::now() + backoff.delay(*failures));
                *failures = failures.saturating_add(1);
            }
        }
    }
}

/// A worker's settings.
#[derive(Debug, Clone)]
pub(super) struct WorkerSettings {
    pub(super) sink: String,
    pub(super) server: String,
    pub(super) require_ack: bool,
    pub(super) ack_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) keepalive: bool,
    pub(super) keepalive_timeout: Option<Duration>,
}

/// A frame written and waiting for its ack.
struct Sent {
    seq: u64,
    ack_id: String,
    at: Instant,
}

enum Step {
    Message(Option<ToNode>),
    Ack(Result<String, ConnectionError>),
    AckTimeout,
    KeepaliveExpired,
}

/// A node's worker: sends the frames it is handed over one connection, opened when
/// there is something to send, and reports acks and failures.
pub(super) struct Worker {
    pub(super) node: NodeId,
    pub(super) addr: SocketAddr,
    pub(super) link: Link,
    pub(super) settings: WorkerSettings,
    pub(super) health: Arc<Health>,
    pub(super) reports: UnboundedSender<Report>,
    pub(super) stats: Arc<ServerStats>,
    epoch: u64,
    conn: Option<Connection>,
    sent: VecDeque<Sent>,
    idle_since: Instant,
    /// Whether the current run of connections was announced in the log.
    announced: bool,
}

impl Worker {
    pub(super) fn new(
        node: NodeId,
        addr: SocketAddr,
        link: Link,
        settings: WorkerSettings,
        health: Arc<Health>,
        reports: UnboundedSender<Report>,
        stats: Arc<ServerStats>,
    ) -> Self {
        Self {
            node,
            addr,
            link,
            settings,
            health,
            reports,
            stats,
            epoch: 0,
            conn: None,
            sent: VecDeque::new(),
            idle_since: Instant::now(),
            announced: false,
        }
    }

    pub(super) async fn run(mut self, mut inbox: UnboundedReceiver<ToNode>) {
        loop {
            let ack_deadline = self.sent.front().map(|s| s.at + self.settings.ack_timeout);
            let keepalive_deadline = match (&self.conn, self.settings.keepalive_timeout) {
                (Some(_), Some(t)) if self.sent.is_empty() => Some(self.idle_since + t),
                _ => None,
            };
            let step = tokio::select! {
                biased;
                message = inbox.recv() => Step::Message(message),
                ack = next_ack(&mut self.conn) => Step::Ack(ack),
                _ = sleep_until(ack_deadline) => Step::AckTimeout,
                _ = sleep_until(keepalive_deadline) => Step::KeepaliveExpired,
            };
            match step {
                Step::Message(None) => return,
                Step::Message(Some(ToNode::Reset { epoch })) => {
                    if epoch >= self.epoch {
                        self.epoch = epoch;
                        self.drop_connection();
                    }
                }
                Step::Message(Some(ToNode::Send(job))) => {
                    if job.epoch >= self.epoch {
                        self.send(job).await;
                    }
                }
                Step::Ack(Ok(id)) => self.acked(&id),
                Step::Ack(Err(ConnectionError::Closed)) if self.sent.is_empty() => {
                    // A server closing an idle connection (its idle timeout, a
                    // rolling restart) is routine: reconnect when there is data.
                    tracing::debug!(sink = %self.settings.sink, server = %self.settings.server, addr = %self.addr, "the forward server closed the idle connection");
                    self.set_conn(None);
                }
                Step::Ack(Err(e)) => self.fail(e),
                Step::AckTimeout => {
                    self.fail(ConnectionError::AckTimeout(self.settings.ack_timeout))
                }
                Step::KeepaliveExpired => {
                    tracing::debug!(sink = %self.settings.sink, server = %self.settings.server, "closing the connection after keepalive_timeout");
                    self.set_conn(None);
                }
            }
        }
    }

    async fn send(&mut self, job: Job) {
        if self.conn.is_none() {
            match Connection::open(self.addr, &self.link).await {
                Ok(conn) => {
                    self.report_heartbeat();
                    if self.announced {
                        tracing::debug!(sink = %self.settings.sink, server = %self.settings.server, addr = %self.addr, "connected to the forward server");
                    } else {
                        tracing::info!(sink = %self.settings.sink, server = %self.settings.server, addr = %self.addr, "connected to the forward server");
                        self.announced = true;
                    }
                    self.set_conn(Some(conn));
                }
                Err(e) => return self.fail(e),
            }
        }
        let conn = self.conn.as_mut().expect("connected above");
        if let Err(e) = conn.send(&job.frame, self.settings.send_timeout).await {
            return self.fail(e);
        }
        self.idle_since = Instant::now();
        match (self.settings.require_ack, job.frame.ack_id()) {
            (true, Some(id)) => self.sent.push_back(Sent {
                seq: job.seq,
                ack_id: id.to_string(),
                at: Instant::now(),
            }),
            _ => {
                // Without acks, written and flushed is as confirmed as it gets.
                let _ = self.reports.send(Report::Done {
                    node: self.node,
                    seq: job.seq,
                });
                self.close_if_not_kept();
            }
        }
    }

    fn acked(&mut self, id: &str) {
        match self.sent.iter().position(|s| s.ack_id == id) {
            Some(i) => {
                if let Some(done) = self.sent.remove(i) {
                    self.stats.acks.inc();
                    let _ = self.reports.send(Report::Done {
                        node: self.node,
                        seq: done.seq,
                    });
                }
                self.report_heartbeat();
                if self.sent.is_empty() {
                    self.idle_since = Instant::now();
                    self.close_if_not_kept();
                }
            }
            None => {
                tracing::debug!(sink = %self.settings.sink, chunk = id, "ack for a chunk not in flight (already acknowledged); ignored");
            }
        }
    }

    /// An ack or a connection is a heartbeat too; it may bring a recovering node up.
    fn report_heartbeat(&self) {
        if self.health.heartbeat() == Transition::Up {
            let _ = self.reports.send(Report::Up { node: self.node });
        }
    }

    /// Without keepalive (ours, or the server's HELO), a connection carries what is
    /// in flight and closes.
    fn close_if_not_kept(&mut self) {
        let kept =
            self.settings.keepalive && self.conn.as_ref().is_none_or(Connection::server_keepalive);
        if !kept && self.sent.is_empty() {
            self.set_conn(None);
        }
    }

    /// Replaces the connection, counting the server's open connections.
    fn set_conn(&mut self, conn: Option<Connection>) {
        match (self.conn.is_some(), conn.is_some()) {
            (false, true) => self.stats.connections.inc(),
            (true, false) => self.stats.connections.dec(),
            _ => 0,
        };
        self.conn = conn;
    }

    fn drop_connection(&mut self) {
        self.set_conn(None);
        self.sent.clear();
    }

    fn fail(&mut self, error: ConnectionError) {
        self.stats.failed(&error);
        let _ = self.reports.send(Report::Failed {
            node: self.node,
            epoch: self.epoch,
            error,
        });
        self.epoch += 1;
        self.announced = false;
        self.drop_connection();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.set_conn(None);
    }
}

async fn next_ack(conn: &mut Option<Connection>) -> Result<String, ConnectionError> {
    match conn {
        Some(c) => c.next_ack().await,
        None => future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => future::pending().await,
    }
}
