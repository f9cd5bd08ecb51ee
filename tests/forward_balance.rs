//! Load balancing and failure detection of the forward sink against several nagare
//! forward servers in one process (127.0.0.1, real routers and buffers): chunks
//! spread by weight, standbys used only while every primary is down, a server that
//! goes silent without closing anything (no acks, no heartbeat answers) detected by
//! the phi accrual detector within seconds, and recovery.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::HumanDuration;
use nagare_core::{Chunk, ChunkBuilder, EventTime, Map, Tag};
use nagare_forwarder::sinks::forward::{ForwardSinkConfig, HeartbeatType, ServerConfig};
use support::link::{self, Forwarder};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(15);

/// A forward server whose chunks are counted and acked as they arrive.
struct Aggregator {
    addr: SocketAddr,
    events: Arc<Mutex<u64>>,
    server: link::Aggregator,
    drain: JoinHandle<()>,
}

async fn start_aggregator(bind: SocketAddr, events: Arc<Mutex<u64>>) -> Aggregator {
    let collected = Buffer::new("collected", &BufferConfig::default());
    let server = link::start_aggregator(&link::listening_on(bind), collected.clone()).await;
    let drain = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(lease) = collected.pop().await {
                *events.lock().unwrap() += u64::from(lease.chunk().count());
                lease.delivered();
            }
        })
    };
    Aggregator {
        addr: server.addr,
        events,
        server,
        drain,
    }
}

impl Aggregator {
    /// Events counted so far, once every chunk acked to the forwarder was counted
    /// (the server acks a chunk when it is in the buffer, before it is counted).
    async fn count(&self) -> u64 {
        assert!(
            self.server.buffer.drained(WAIT).await,
            "the aggregator's buffer does not drain"
        );
        *self.events.lock().unwrap()
    }

    async fn stop(self) -> Arc<Mutex<u64>> {
        self.server.stop().await;
        self.drain.abort();
        self.events
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn server(addr: SocketAddr, weight: u32, standby: bool) -> ServerConfig {
    ServerConfig {
        weight,
        standby,
        ..ServerConfig::new(addr.ip().to_string(), addr.port())
    }
}

fn config(servers: Vec<ServerConfig>, heartbeat: HeartbeatType) -> ForwardSinkConfig {
    let mut c = ForwardSinkConfig::new(servers);
    c.connect_timeout = HumanDuration::secs(2);
    c.heartbeat_type = heartbeat;
    // Down after about 1.8 s of silence: quick, yet a busy test machine's stalls
    // do not look like failures.
    c.heartbeat_interval = HumanDuration::millis(500);
    c.recover_wait = HumanDuration::millis(600);
    c
}

fn start_forwarder(config: ForwardSinkConfig) -> Forwarder {
    support::link::start_forwarder("to_aggregators", config)
}

impl Forwarder {
    async fn send(&self, chunks: u64) {
        for _ in 0..chunks {
            self.buffer.push(chunk()).await.unwrap();
        }
    }

    /// Waits until the buffer holds nothing, queued or in flight.
    async fn drained(&self) {
        assert!(
            self.buffer.drained(WAIT).await,
            "chunks left: {:?}",
            self.buffer.stats()
        );
    }
}

/// A chunk of 10 events.
fn chunk() -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new("kube.app"));
    for i in 0..10 {
        let mut m = Map::new();
        m.insert("n", i);
        b.push(EventTime::new(1_700_000_000, 0), &m);
    }
    b.finish().unwrap()
}

fn counter() -> Arc<Mutex<u64>> {
    Arc::new(Mutex::new(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_spread_by_weight() {
    let aggs = [
        start_aggregator(any_port(), counter()).await,
        start_aggregator(any_port(), counter()).await,
        start_aggregator(any_port(), counter()).await,
    ];
    let weights = [120, 60, 60];
    let servers = aggs
        .iter()
        .zip(weights)
        .map(|(a, w)| server(a.addr, w, false))
        .collect();
    let forwarder = start_forwarder(config(servers, HeartbeatType::Udp));
    forwarder.send(400).await;
    forwarder.drained().await;
    let mut counts = Vec::new();
    for a in &aggs {
        counts.push(a.count().await);
    }
    assert_eq!(counts.iter().sum::<u64>(), 4_000, "{counts:?}");
    // 2:1:1 of 400 chunks is 200:100:100; a busy server's turn may pass to another.
    for (got, want) in counts.iter().zip([2_000, 1_000, 1_000]) {
        assert!(
            got.abs_diff(want) <= want / 5,
            "{counts:?} is not 2:1:1 within 20 %"
        );
    }
    forwarder.stop().await;
    for a in aggs {
        a.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_is_used_only_while_every_primary_is_down() {
    let a = start_aggregator(any_port(), counter()).await;
    let b = start_aggregator(any_port(), counter()).await;
    let standby = start_aggregator(any_port(), counter()).await;
    let (a_addr, b_addr) = (a.addr, b.addr);
    let forwarder = start_forwarder(config(
        vec![
            server(a_addr, 60, false),
            server(b_addr, 60, false),
            server(standby.addr, 60, true),
        ],
        HeartbeatType::Udp,
    ));
    forwarder.send(40).await;
    forwarder.drained().await;
    assert_eq!(standby.count().await, 0, "primaries up: the standby idles");
    assert_eq!(a.count().await + b.count().await, 400);

    // One primary down: the other takes everything, still no standby.
    let a_events = a.stop().await;
    forwarder.send(40).await;
    forwarder.drained().await;
    assert_eq!(
        standby.count().await,
        0,
        "one primary left: the standby idles"
    );

    // Both primaries down: the standby takes over.
    let b_events = b.stop().await;
    let before = standby.count().await;
    forwarder.send(40).await;
    forwarder.drained().await;
    assert_eq!(
        standby.count().await - before,
        400,
        "every primary down: the standby"
    );

    // A primary back (same port): once recovered, it gets the chunks again.
    let a = start_aggregator(a_addr, a_events).await;
    let back_at = a.count().await;
    let recovered = tokio::time::timeout(WAIT, async {
        loop {
            forwarder.send(1).await;
            forwarder.drained().await;
            if a.count().await > back_at {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(recovered.is_ok(), "the restarted primary never got a chunk");
    let standby_then = standby.count().await;
    forwarder.send(40).await;
    forwarder.drained().await;
    assert_eq!(
        standby.count().await,
        standby_then,
        "a primary is back: the standby idles"
    );
    drop(b_events);
    forwarder.stop().await;
    a.stop().await;
    standby.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_detected_by_missing_heartbeats_within_seconds() {
    // A "server" that accepts connections and reads, but never acks and never answers
    // heartbeats: a hung process or a network partition, where nothing is closed.
    let black_hole = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let hole_addr = black_hole.local_addr().unwrap();
    let swallow = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut s, _)) = black_hole.accept().await {
            held.push(tokio::spawn(async move {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut s, &mut sink).await;
            }));
        }
    });
    let good = start_aggregator(any_port(), counter()).await;
    let mut c = config(
        vec![server(hole_addr, 60, false), server(good.addr, 60, false)],
        HeartbeatType::Udp,
    );
    // Long enough that only the detector can explain a quick failover.
    c.ack_response_timeout = HumanDuration::secs(60);
    let forwarder = start_forwarder(c);
    let started = Instant::now();
    forwarder.send(20).await;
    forwarder.drained().await;
    let took = started.elapsed();
    assert_eq!(
        good.count().await,
        200,
        "every chunk reached the good server"
    );
    assert!(
        took < Duration::from_secs(8),
        "failover took {took:?}; the ack timeout is 60 s"
    );
    forwarder.stop().await;
    good.stop().await;
    swallow.abort();
}
