//! The sink's dispatcher: takes chunks from the buffer, hands each to a server by
//! weight, confirms it on ack, and sends it elsewhere when its server fails.
//!
//! Every leased chunk stays with the dispatcher, numbered in the order it was taken,
//! until a server acknowledged it. A node (one address of one configured server)
//! receives at most `max_in_flight` chunks at a time; its worker task writes them on
//! its connection and reports acks and failures. When a node fails (a broken
//! connection, an ack that does not come, the failure detector's verdict) its chunks
//! go back to the front of the queue, oldest first, and out to the nodes still up;
//! the node is used again once its heartbeats say it is back. The server may thus see
//! a chunk twice; it carries the same id both times, so destinations that key on the
//! id do not duplicate it.
//!
//! Host names are resolved at start, every `expire_dns_cache`, and when every node is
//! down: each address is a node, so a headless Service's pods each get their share.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nagare_core::buffer::{Buffer, Lease};
use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use nagare_core::compression::Compression;
use nagare_core::dead_letter::{self, DeadLetter};
use nagare_core::host::machine_hostname;
use nagare_core::metrics::{ComponentMetrics, Discard, ErrorType};
use nagare_core::retry::{Attempts, Backoff, Next, Retrier};
use nagare_core::shutdown::Shutdown;
use nagare_core::tls::ClientTlsError;
use thiserror::Error;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::balancer::{Balancer, Candidate};
use super::config::{ClientTlsConfig, ForwardSinkConfig, HeartbeatType};
use super::connection::{ClientAuth, Link};
use super::detector::DetectorConfig;
use super::encoder::{self, EncodedChunk};
use super::heartbeat::Heartbeats;
use super::node::{Health, Job, NodeId, Report, ToNode, Worker, WorkerSettings};
use super::resolve::{self, NodeKey};
use super::stats::{self, ServerStats};

/// Chunks below this size are compressed on the async thread; larger ones on the
/// blocking pool, so a big chunk does not stall other tasks.
const INLINE_COMPRESS_BYTES: usize = 64 * 1024;

/// Why the forward sink could not run.
#[derive(Debug, Error)]
pub enum ForwardSinkError {
    /// The config has a value that cannot work.
    #[error("invalid forward sink config at `{}`: {}", .0.key, .0.message)]
    Invalid(#[from] Invalid),
    /// The TLS files cannot be used.
    #[error("cannot set up TLS for the forward sink: {0}")]
    Tls(#[from] ClientTlsError),
}

/// The `forward` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct ForwardSink;

impl SinkComponent for ForwardSink {
    const TYPE: &'static str = "forward";
    type Config = ForwardSinkConfig;
    type Error = ForwardSinkError;

    fn validate(config: &ForwardSinkConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(config: ForwardSinkConfig, ctx: SinkContext) -> Result<(), ForwardSinkError> {
        run(config, ctx).await
    }
}

/// Runs the sink until its buffer is closed and drained (every chunk acknowledged),
/// or until `ctx.abort`, when chunks not yet acknowledged go back to the buffer.
pub async fn run(config: ForwardSinkConfig, ctx: SinkContext) -> Result<(), ForwardSinkError> {
    config.validate()?;
    let links = links(&config)?;
    let (reports_tx, reports) = mpsc::unbounded_channel();
    let retrier = ctx.retrier();
    let dead_letter = ctx.dead_letter();
    let stats: Vec<Arc<ServerStats>> = config
        .servers
        .iter()
        .map(|server| ServerStats::new(&ctx.metrics, &server.to_string()))
        .collect();
    stats::show(&ctx.metrics, &stats);
    let mut sink = Dispatcher {
        stats,
        retrier,
        dead_letter,
        metrics: ctx.metrics,
        name: ctx.name,
        backoff: config.backoff(),
        links,
        config,
        buffer: ctx.buffer,
        abort: ctx.abort,
        nodes: Vec::new(),
        balancer: Balancer::default(),
        slots: BTreeMap::new(),
        pending: BTreeSet::new(),
        next_seq: 0,
        next_node: 0,
        reports_tx,
        reports,
        tasks: JoinSet::new(),
        resolve_at: Instant::now(),
        resolve_failures: 0,
        outage_logged: false,
    };
    sink.run().await;
    Ok(())
}

/// How to connect to each configured server (TLS and handshake settings).
fn links(config: &ForwardSinkConfig) -> Result<Vec<Link>, ForwardSinkError> {
    let tls = config
        .tls
        .as_ref()
        .map(ClientTlsConfig::client_config)
        .transpose()?;
    let self_hostname = config
        .security
        .as_ref()
        .map(|s| s.self_hostname.clone().unwrap_or_else(machine_hostname));
    config
        .servers
        .iter()
        .map(|server| {
            let tls = match (&tls, &config.tls) {
                (Some(client), Some(settings)) => {
                    Some((client.clone(), settings.server_name(&server.host)?))
                }
                _ => None,
            };
            let auth = config.security.as_ref().map(|sec| ClientAuth {
                self_hostname: self_hostname.clone().unwrap_or_default(),
                shared_key: server
                    .shared_key
                    .clone()
                    .unwrap_or_else(|| sec.shared_key.clone()),
                user: match (&server.username, &server.password) {
                    (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                    _ => sec.username.clone().zip(sec.password.clone()),
                },
            });
            Ok(Link {
                tls,
                auth,
                connect_timeout: config.connect_timeout(),
            })
        })
        .collect()
}

/// A chunk taken from the buffer and not yet confirmed.
struct Slot {
    lease: Lease,
    frame: EncodedChunk,
    /// The node it was handed to, if any.
    node: Option<NodeId>,
    /// Its failed sends, for the buffer's retry policy.
    attempts: Attempts,
}

/// One address of one configured server.
struct Node {
    id: NodeId,
    /// Index in `config.servers`.
    server: usize,
    addr: SocketAddr,
    inbox: UnboundedSender<ToNode>,
    health: Arc<Health>,
    epoch: u64,
    /// Chunks handed to it and not yet confirmed.
    outstanding: BTreeSet<u64>,
    /// Whether its current failure was logged.
    down_logged: bool,
    tasks: Vec<AbortHandle>,
}

impl Drop for Node {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The sink at work: the leased chunks, the server they went to, the workers.
struct Dispatcher {
    /// The buffer's retry policy: when a chunk whose sends keep failing is given up.
    retrier: Retrier,
    /// Where given-up chunks go.
    dead_letter: DeadLetter,
    /// The sink's counters.
    metrics: ComponentMetrics,
    /// Each configured server's counters, in config order.
    stats: Vec<Arc<ServerStats>>,
    name: String,
    config: ForwardSinkConfig,
    backoff: Backoff,
    links: Vec<Link>,
    buffer: Buffer,
    abort: Shutdown,
    nodes: Vec<Node>,
    balancer: Balancer,
    /// Every leased chunk, by sequence number (the order taken).
    slots: BTreeMap<u64, Slot>,
    /// Chunks waiting for a node, by sequence number.
    pending: BTreeSet<u64>,
    next_seq: u64,
    next_node: NodeId,
    reports_tx: UnboundedSender<Report>,
    reports: UnboundedReceiver<Report>,
    /// The workers and heartbeat tasks; aborted when the sink ends.
    tasks: JoinSet<()>,
    resolve_at: Instant,
    resolve_failures: u32,
    /// Whether "no server available" was logged for the current outage.
    outage_logged: bool,
}

enum Step {
    Abort,
    Report(Report),
    Lease(Option<Lease>),
    Wake,
}

impl Dispatcher {
    async fn run(&mut self) {
        let mut input_open = true;
        loop {
            if !input_open && self.slots.is_empty() {
                return;
            }
            if Instant::now() >= self.resolve_at {
                self.resolve().await;
            }
            self.dispatch();
            let room = input_open && self.pending.is_empty() && self.can_take();
            let wake = self.next_wake();
            let step = tokio::select! {
                biased;
                _ = self.abort.cancelled() => Step::Abort,
                Some(report) = self.reports.recv() => Step::Report(report),
                lease = self.buffer.pop(), if room => Step::Lease(lease),
                // No room (no server up): a closed buffer with nothing left ends the
                // input all the same, as `pop` would.
                () = self.buffer.finished(), if input_open && !room => Step::Lease(None),
                _ = sleep_until(wake) => Step::Wake,
            };
            match step {
                Step::Abort => return,
                Step::Report(report) => {
                    let given_up = self.handle(report);
                    self.give_up(given_up).await;
                }
                Step::Lease(None) => input_open = false,
                Step::Lease(Some(lease)) => {
                    let frame = self.prepare(&lease).await;
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    self.slots.insert(
                        seq,
                        Slot {
                            lease,
                            frame,
                            node: None,
                            attempts: Attempts::new(),
                        },
                    );
                    self.pending.insert(seq);
                }
                Step::Wake => {}
            }
        }
    }

    /// Encodes a leased chunk for the wire.
    async fn prepare(&self, lease: &Lease) -> EncodedChunk {
        let compress = self.config.compress;
        let request_ack = self.config.require_ack_response;
        let chunk = lease.chunk();
        let encoded = if compress == Compression::None || chunk.byte_size() < INLINE_COMPRESS_BYTES
        {
            encoder::encode(chunk, compress, request_ack)
        } else {
            let owned = chunk.clone();
            tokio::task::spawn_blocking(move || encoder::encode(&owned, compress, request_ack))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        encoded.unwrap_or_else(|e| {
            // In-memory compression does not fail in practice; if it ever does, the
            // chunk still goes out, uncompressed, which every server accepts.
            tracing::error!(sink = %self.name, chunk = %chunk.id(), error = %e, "cannot compress a chunk; sending it uncompressed");
            encoder::encode(chunk, Compression::None, request_ack)
                .expect("encoding without compression does not fail")
        })
    }

    fn candidates(&self, now: Instant) -> Vec<Candidate> {
        self.nodes
            .iter()
            .map(|n| {
                let server = &self.config.servers[n.server];
                Candidate {
                    weight: server.weight,
                    standby: server.standby,
                    available: n.health.is_available(now),
                    has_room: n.outstanding.len() < self.config.max_in_flight,
                }
            })
            .collect()
    }

    /// Whether some node could take a new chunk now.
    fn can_take(&self) -> bool {
        let candidates = self.candidates(Instant::now());
        // Ask a copy: this only looks, the real pick happens in `dispatch`.
        self.balancer.clone().pick(&candidates).is_some()
    }

    /// Hands waiting chunks, oldest first, to nodes by weight while they have room.
    fn dispatch(&mut self) {
        while let Some(&seq) = self.pending.first() {
            let candidates = self.candidates(Instant::now());
            let Some(i) = self.balancer.pick(&candidates) else {
                if !candidates.iter().any(|c| c.available) {
                    self.report_outage();
                }
                return;
            };
            self.outage_logged = false;
            self.pending.remove(&seq);
            let node = &mut self.nodes[i];
            let slot = self.slots.get_mut(&seq).expect("pending chunks are leased");
            slot.node = Some(node.id);
            node.outstanding.insert(seq);
            let job = Job {
                seq,
                epoch: node.epoch,
                frame: slot.frame.clone(),
            };
            if node.inbox.send(ToNode::Send(job)).is_err() {
                // The worker is gone (it cannot be while the node exists); take the
                // chunk back rather than lose track of it.
                node.outstanding.remove(&seq);
                slot.node = None;
                self.pending.insert(seq);
                return;
            }
        }
    }

    fn report_outage(&mut self) {
        if self.outage_logged || self.pending.is_empty() {
            return;
        }
        self.outage_logged = true;
        // Resolve names again soon: the servers may have moved.
        let soon = Instant::now() + self.backoff.delay(self.resolve_failures);
        self.resolve_at = self.resolve_at.min(soon);
        tracing::warn!(
            sink = %self.name,
            servers = self.nodes.len(),
            waiting_chunks = self.pending.len(),
            "no forward server is available; chunks wait in the buffer until one recovers"
        );
    }

    fn node_index(&self, id: NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    /// Applies a worker's report; returns the chunks whose retries ran out.
    fn handle(&mut self, report: Report) -> Vec<(Slot, String)> {
        let mut given_up = Vec::new();
        match report {
            Report::Done { node, seq } => {
                if let Some(slot) = self.slots.remove(&seq) {
                    self.pending.remove(&seq);
                    if let Some(owner) = slot.node.and_then(|id| self.node_index(id)) {
                        self.nodes[owner].outstanding.remove(&seq);
                    }
                    let events = u64::from(slot.lease.chunk().count());
                    self.metrics.sent(events, slot.frame.len() as u64);
                    slot.lease.delivered();
                }
                self.retrier.succeeded();
                if let Some(i) = self.node_index(node) {
                    self.nodes[i].health.delivered();
                }
            }
            Report::Failed { node, epoch, error } => {
                self.metrics.error(ErrorType::request_failed);
                let Some(i) = self.node_index(node) else {
                    return given_up;
                };
                if epoch != self.nodes[i].epoch {
                    return given_up;
                }
                self.nodes[i].epoch += 1;
                self.nodes[i].health.fail(&self.backoff);
                let taken_back = self.take_back(i, &error.to_string(), &mut given_up);
                let n = &mut self.nodes[i];
                let server = &self.config.servers[n.server];
                if n.down_logged {
                    tracing::debug!(sink = %self.name, server = %server, addr = %n.addr, error = %error, "forward server still failing");
                } else {
                    n.down_logged = true;
                    tracing::warn!(
                        sink = %self.name,
                        server = %server,
                        addr = %n.addr,
                        error = %error,
                        resent_chunks = taken_back,
                        "lost the forward server; its unacknowledged chunks go to the servers still up, and it is used again once it recovers"
                    );
                }
            }
            Report::Down { node, phi } => {
                let Some(i) = self.node_index(node) else {
                    return given_up;
                };
                self.nodes[i].epoch += 1;
                let epoch = self.nodes[i].epoch;
                let _ = self.nodes[i].inbox.send(ToNode::Reset { epoch });
                let taken_back = self.take_back(
                    i,
                    "the failure detector marked the server down",
                    &mut given_up,
                );
                let n = &mut self.nodes[i];
                n.down_logged = true;
                tracing::warn!(
                    sink = %self.name,
                    server = %self.config.servers[n.server],
                    addr = %n.addr,
                    phi = if phi.is_finite() { phi } else { -1.0 },
                    hard_timeout = !phi.is_finite(),
                    resent_chunks = taken_back,
                    "the failure detector marked the forward server down (no heartbeat); its unacknowledged chunks go to the servers still up"
                );
            }
            Report::Up { node } => {
                let Some(i) = self.node_index(node) else {
                    return given_up;
                };
                let n = &mut self.nodes[i];
                n.down_logged = false;
                tracing::info!(
                    sink = %self.name,
                    server = %self.config.servers[n.server],
                    addr = %n.addr,
                    "the forward server recovered; sending to it again"
                );
            }
        }
        given_up
    }

    /// Takes back every chunk handed to node `i`, counting a failed send for each:
    /// those whose retries ran out go to `given_up` with the reason, the others wait
    /// for the next node. Returns how many were taken back.
    fn take_back(&mut self, i: usize, error: &str, given_up: &mut Vec<(Slot, String)>) -> usize {
        let seqs = std::mem::take(&mut self.nodes[i].outstanding);
        for seq in &seqs {
            let Some(slot) = self.slots.get_mut(seq) else {
                continue;
            };
            slot.node = None;
            match self.retrier.failed(&mut slot.attempts) {
                Next::RetryIn(_) => {
                    self.pending.insert(*seq);
                }
                Next::GiveUp {
                    failures,
                    failing_for,
                } => {
                    if let Some(slot) = self.slots.remove(seq) {
                        let reason = format!(
                            "gave up after {failures} failed sends over {}s; last error: {error}",
                            failing_for.as_secs()
                        );
                        given_up.push((slot, reason));
                    }
                }
            }
        }
        seqs.len()
    }

    /// Writes chunks whose retries ran out to the dead-letter output (trying again
    /// until it works, as every sink does), then removes them from the buffer as
    /// failed.
    async fn give_up(&self, given_up: Vec<(Slot, String)>) {
        let backoff = self.retrier.policy().backoff;
        for (slot, reason) in given_up {
            let chunk = slot.lease.chunk();
            let mut lines = Vec::with_capacity(chunk.byte_size() * 2);
            dead_letter::encode_chunk(chunk, &reason, &mut lines);
            let written = self
                .dead_letter
                .write_until_done(lines, &backoff, &self.abort, &self.name)
                .await;
            if !written {
                // Aborted: the lease goes back to the buffer, sent after a restart.
                return;
            }
            tracing::error!(
                sink = %self.name,
                tag = %chunk.tag(),
                events = chunk.count(),
                dead_letter = %self.dead_letter.path().display(),
                %reason,
                "retries ran out (retry_timeout / retry_max_times); wrote the chunk to the dead-letter output"
            );
            self.metrics
                .discarded(Discard::dead_letter, u64::from(chunk.count()));
            slot.lease.dead_lettered();
        }
    }

    /// When to wake without a report: the next name resolution, or (without
    /// heartbeats) the next retry of a failed node while chunks wait.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let mut wake = self.resolve_at;
        for n in &self.nodes {
            // A retry time in the past means the node is available already.
            if let Some(at) = n.health.retry_at()
                && at > now
            {
                wake = wake.min(at);
            }
        }
        Some(wake)
    }

    /// Resolves every server's host and follows the changes: new addresses become
    /// nodes, vanished ones are retired (their chunks go elsewhere). A name that does
    /// not resolve keeps the nodes it had.
    async fn resolve(&mut self) {
        let timeout = self.config.connect_timeout();
        let mut wanted: Vec<NodeKey> = Vec::new();
        let mut failed = Vec::new();
        for (i, server) in self.config.servers.iter().enumerate() {
            match resolve::lookup(&server.host, server.port, timeout).await {
                Ok(addrs) => wanted.extend(addrs.into_iter().map(|a| (i, a))),
                Err(reason) => {
                    wanted.extend(
                        self.nodes
                            .iter()
                            .filter(|n| n.server == i)
                            .map(|n| (i, n.addr)),
                    );
                    failed.push(format!("{server}: {reason}"));
                }
            }
        }
        let fixed = self
            .config
            .servers
            .iter()
            .all(|s| s.host.parse::<IpAddr>().is_ok());
        let next = if !failed.is_empty() || wanted.is_empty() {
            self.resolve_failures = self.resolve_failures.saturating_add(1);
            tracing::warn!(sink = %self.name, errors = %failed.join("; "), "cannot resolve forward server names; trying again");
            Instant::now() + self.backoff.delay(self.resolve_failures - 1)
        } else {
            self.resolve_failures = 0;
            match self.config.expire_dns_cache() {
                Some(every) if !fixed => Instant::now() + every,
                // Nothing to re-resolve unless everything fails.
                _ => Instant::now() + Duration::from_secs(86_400 * 365),
            }
        };
        self.resolve_at = next;
        self.apply(wanted);
    }

    /// Makes the node list match `wanted`.
    fn apply(&mut self, wanted: Vec<NodeKey>) {
        let current: Vec<NodeKey> = self.nodes.iter().map(|n| (n.server, n.addr)).collect();
        let plan = resolve::plan(&current, &wanted);
        if plan.is_unchanged(current.len()) {
            return;
        }
        let mut old: Vec<Option<Node>> = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(Some)
            .collect();
        let mut seen = HashSet::new();
        let wanted = wanted.into_iter().filter(|w| seen.insert(*w));
        let mut added = Vec::new();
        for (keep, (server, addr)) in plan.kept.iter().zip(wanted) {
            let node = match keep.and_then(|i| old[i].take()) {
                Some(node) => node,
                None => {
                    added.push(addr);
                    self.start_node(server, addr)
                }
            };
            self.nodes.push(node);
        }
        let mut removed = Vec::new();
        for mut gone in old.into_iter().flatten() {
            removed.push(gone.addr);
            for seq in std::mem::take(&mut gone.outstanding) {
                if let Some(slot) = self.slots.get_mut(&seq) {
                    slot.node = None;
                    self.pending.insert(seq);
                }
            }
        }
        self.balancer.reindex(&plan.kept);
        for (i, stats) in self.stats.iter().enumerate() {
            stats.set_nodes(
                self.nodes
                    .iter()
                    .filter(|n| n.server == i)
                    .map(|n| n.health.clone())
                    .collect(),
            );
        }
        while self.tasks.try_join_next().is_some() {}
        let servers: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{} ({})", self.config.servers[n.server], n.addr))
            .collect();
        tracing::info!(
            sink = %self.name,
            servers = %servers.join(", "),
            added = ?added,
            removed = ?removed,
            "forward servers"
        );
    }

    fn start_node(&mut self, server: usize, addr: SocketAddr) -> Node {
        let id = self.next_node;
        self.next_node += 1;
        let c = &self.config;
        let detector = (c.heartbeat_type != HeartbeatType::None).then(|| DetectorConfig {
            interval: c.heartbeat_interval.into(),
            use_phi: c.phi_failure_detector,
            phi_threshold: c.phi_threshold,
            hard_timeout: c.hard_timeout.into(),
            recover_wait: c.recover_wait.into(),
        });
        let health = Arc::new(Health::new(detector));
        let (inbox, rx) = mpsc::unbounded_channel();
        let link = self.links[server].clone();
        let worker = Worker::new(
            id,
            addr,
            link.clone(),
            WorkerSettings {
                sink: self.name.clone(),
                server: c.servers[server].to_string(),
                require_ack: c.require_ack_response,
                ack_timeout: c.ack_response_timeout(),
                send_timeout: c.send_timeout(),
                keepalive: c.keepalive,
                keepalive_timeout: c.keepalive_timeout(),
            },
            health.clone(),
            self.reports_tx.clone(),
            self.stats[server].clone(),
        );
        let mut tasks = vec![self.tasks.spawn(worker.run(rx))];
        if c.heartbeat_type != HeartbeatType::None {
            let heartbeats = Heartbeats {
                node: id,
                addr,
                kind: c.heartbeat_type,
                interval: c.heartbeat_interval.into(),
                link,
                health: health.clone(),
                reports: self.reports_tx.clone(),
            };
            tasks.push(self.tasks.spawn(heartbeats.run()));
        }
        Node {
            id,
            server,
            addr,
            inbox,
            health,
            epoch: 0,
            outstanding: BTreeSet::new(),
            down_logged: false,
            tasks,
        }
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        // A lease dropped unconfirmed goes back to the *front* of the buffer, so
        // release the newest first: the oldest ends up first again.
        while let Some((_, newest)) = self.slots.pop_last() {
            drop(newest);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => future::pending().await,
    }
}
