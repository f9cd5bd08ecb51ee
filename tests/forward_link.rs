//! Both ends of the Forward Protocol link in one process: the forwarder's `forward`
//! sink sending to the aggregator's `forward` source on 127.0.0.1, each side wired
//! with a real router and buffer, as the binary wires them.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig, OverflowAction};
use nagare_core::compression::Compression;
use nagare_core::config::{ByteSize, HumanDuration};
use nagare_core::forward;
use nagare_core::receipt::{Delivery, Receipt};
use nagare_core::testing::close_and_drain;
use nagare_core::{Chunk, ChunkBuilder, ChunkId, EventTime, Map, Tag, Value};
use nagare_forwarder::sinks::forward::{ForwardSinkConfig, ServerConfig};
use support::link::{Aggregator, Forwarder, listening_on};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

fn init_logs() {
    // Shown for failing tests only (the test writer is captured).
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::INFO)
        .try_init();
}

async fn start_aggregator(bind: SocketAddr, into: &Buffer) -> Aggregator {
    support::link::start_aggregator(&listening_on(bind), into.clone()).await
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A port on 127.0.0.1 with nothing listening.
fn dead_server() -> ServerConfig {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    ServerConfig::new("127.0.0.1", l.local_addr().unwrap().port())
}

fn server(addr: SocketAddr) -> ServerConfig {
    ServerConfig::new(addr.ip().to_string(), addr.port())
}

/// The defaults, with heartbeats and recovery fast enough for tests.
fn sink_config(servers: Vec<ServerConfig>) -> ForwardSinkConfig {
    let mut c = ForwardSinkConfig::new(servers);
    c.retry_wait = HumanDuration::millis(50);
    c.retry_max_interval = HumanDuration::millis(200);
    c.connect_timeout = HumanDuration::secs(2);
    c.heartbeat_interval = HumanDuration::millis(200);
    c.recover_wait = HumanDuration::millis(300);
    c
}

fn start_forwarder(config: ForwardSinkConfig) -> Forwarder {
    support::link::start_forwarder("to_aggregator", config)
}

impl Forwarder {
    /// Closes the buffer and waits for the sink to drain it and return.
    async fn finish(self) {
        close_and_drain(&self.buffer, self.task, WAIT).await;
        drop(self.abort);
    }
}

/// A chunk of events numbered `from..to`.
fn chunk(tag: &str, from: u64, to: u64) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new(tag));
    for n in from..to {
        let mut m = Map::new();
        m.insert(
            "message",
            format!("10.0.0.1 - - \"GET /item/{n} HTTP/1.1\" 200 512"),
        );
        m.insert("n", n as i64);
        b.push(EventTime::new(1_700_000_000 + n as i64, 123_456_789), &m);
    }
    b.finish().unwrap()
}

/// What the aggregator's buffer received.
#[derive(Debug, Default)]
struct Received {
    /// Times each event number arrived.
    events: BTreeMap<u64, usize>,
    /// Times each chunk id arrived.
    chunks: HashMap<ChunkId, usize>,
    /// Chunk ids in arrival order.
    order: Vec<ChunkId>,
    tags: Vec<String>,
}

impl Received {
    fn take(&mut self, chunk: &Chunk) {
        *self.chunks.entry(chunk.id()).or_default() += 1;
        self.order.push(chunk.id());
        self.tags.push(chunk.tag().to_string());
        for e in chunk.events() {
            let (time, record) = e.unwrap();
            let n = record.get("n").and_then(Value::as_i64).unwrap() as u64;
            assert_eq!(time, EventTime::new(1_700_000_000 + n as i64, 123_456_789));
            *self.events.entry(n).or_default() += 1;
        }
    }

    fn has_all(&self, events: u64) -> bool {
        (0..events).all(|n| self.events.contains_key(&n))
    }

    fn duplicate_events(&self) -> usize {
        self.events.values().map(|c| c - 1).sum()
    }

    fn duplicate_chunks(&self) -> usize {
        self.chunks.values().map(|c| c - 1).sum()
    }
}

/// Drains `buffer` (acking, as a sink would) until events `0..events` all arrived.
async fn collect(buffer: &Buffer, events: u64) -> Received {
    let mut got = Received::default();
    tokio::time::timeout(WAIT, async {
        while !got.has_all(events) {
            let lease = buffer.pop().await.expect("buffer closed");
            got.take(lease.chunk());
            lease.delivered();
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "not every event arrived; missing: {:?}",
            missing(&got, events)
        )
    });
    got
}

fn missing(got: &Received, events: u64) -> Vec<u64> {
    (0..events)
        .filter(|n| !got.events.contains_key(n))
        .collect()
}

/// Drains a buffer in the background (acking, as a sink would) for as long as it is
/// open, so a test can watch what arrived while it does other things.
struct Collector {
    buffer: Buffer,
    received: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

impl Collector {
    fn start(buffer: &Buffer) -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let task = {
            let (buffer, received) = (buffer.clone(), received.clone());
            tokio::spawn(async move {
                while let Some(lease) = buffer.pop().await {
                    received.lock().unwrap().take(lease.chunk());
                    lease.delivered();
                }
            })
        };
        Self {
            buffer: buffer.clone(),
            received,
            task,
        }
    }

    fn chunks(&self) -> usize {
        self.received.lock().unwrap().order.len()
    }

    async fn wait_for(&self, events: u64) {
        let done = tokio::time::timeout(WAIT, async {
            while !self.received.lock().unwrap().has_all(events) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        if done.is_err() {
            panic!(
                "not every event arrived; missing {:?}",
                missing(&self.received.lock().unwrap(), events)
            );
        }
    }

    /// Closes the buffer, takes what is left in it, and returns everything received.
    async fn finish(self) -> Received {
        self.buffer.close();
        self.task.await.unwrap();
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

#[tokio::test]
async fn chunks_arrive_in_order_and_are_confirmed_by_acks() {
    init_logs();
    let collected = Buffer::new("collected", &BufferConfig::default());
    let aggregator = start_aggregator(any_port(), &collected).await;
    let forwarder = start_forwarder(sink_config(vec![server(aggregator.addr)]));

    let mut sent = Vec::new();
    let mut receipts = Vec::new();
    for i in 0..20 {
        let (receipt, delivered) = Receipt::channel();
        let c = chunk(&format!("kube.app{}", i % 3), i * 10, i * 10 + 10).with_receipt(receipt);
        sent.push(c.id());
        receipts.push(delivered);
        forwarder.buffer.push(c).await.unwrap();
    }
    let got = collect(&collected, 200).await;
    assert_eq!(got.order, sent, "same chunks, same ids, same order");
    assert_eq!(got.tags[4], "kube.app1");
    assert_eq!(got.duplicate_events(), 0);
    for delivered in receipts {
        let outcome = tokio::time::timeout(WAIT, delivered)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            outcome,
            Delivery::Delivered,
            "acked chunks leave the forwarder"
        );
    }
    forwarder.finish().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn a_chunk_stays_in_the_forwarder_until_the_aggregator_acks_it() {
    init_logs();
    // Nothing drains the aggregator's one-chunk buffer: the second chunk cannot be
    // taken in, so it must not be acked, so the forwarder keeps it.
    let tight = Buffer::new(
        "collected",
        &BufferConfig {
            total_limit_size: ByteSize(1),
            overflow_action: OverflowAction::Block,
            ..BufferConfig::default()
        },
    );
    let aggregator = start_aggregator(any_port(), &tight).await;
    let forwarder = start_forwarder(sink_config(vec![server(aggregator.addr)]));
    let (first, first_done) = Receipt::channel();
    let (second, mut second_done) = Receipt::channel();
    forwarder
        .buffer
        .push(chunk("t", 0, 5).with_receipt(first))
        .await
        .unwrap();
    forwarder
        .buffer
        .push(chunk("t", 5, 10).with_receipt(second))
        .await
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, first_done)
            .await
            .unwrap()
            .unwrap(),
        Delivery::Delivered
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        second_done.try_recv().is_err(),
        "acked before the aggregator took it"
    );
    assert_eq!(forwarder.buffer.stats().in_flight_chunks, 1);

    let got = collect(&tight, 10).await;
    assert_eq!(got.duplicate_events(), 0);
    assert_eq!(
        tokio::time::timeout(WAIT, second_done)
            .await
            .unwrap()
            .unwrap(),
        Delivery::Delivered
    );
    forwarder.finish().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn gzip_and_zstd_chunks_arrive_intact() {
    init_logs();
    for compress in [Compression::Gzip, Compression::Zstd] {
        let collected = Buffer::new("collected", &BufferConfig::default());
        let aggregator = start_aggregator(any_port(), &collected).await;
        let mut config = sink_config(vec![server(aggregator.addr)]);
        config.compress = compress;
        let forwarder = start_forwarder(config);
        // Small chunks are compressed inline, a large one on the blocking pool.
        forwarder.buffer.push(chunk("t", 0, 10)).await.unwrap();
        forwarder.buffer.push(chunk("t", 10, 2_000)).await.unwrap();
        let got = collect(&collected, 2_000).await;
        assert_eq!(got.duplicate_events(), 0, "{compress:?}");
        assert_eq!(got.order.len(), 2, "{compress:?}");
        forwarder.finish().await;
        aggregator.stop().await;
    }
}

#[tokio::test]
async fn without_ack_responses_chunks_are_done_once_written() {
    init_logs();
    let collected = Buffer::new("collected", &BufferConfig::default());
    let aggregator = start_aggregator(any_port(), &collected).await;
    let mut config = sink_config(vec![server(aggregator.addr)]);
    config.require_ack_response = false;
    let forwarder = start_forwarder(config);
    for i in 0..10 {
        forwarder
            .buffer
            .push(chunk("t", i * 5, i * 5 + 5))
            .await
            .unwrap();
    }
    // The forwarder is done as soon as the bytes are out, before the aggregator
    // necessarily read them.
    forwarder.finish().await;
    let got = collect(&collected, 50).await;
    assert_eq!(got.duplicate_events(), 0);
    aggregator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_and_restarted_aggregator_loses_nothing() {
    init_logs();
    const CHUNKS: u64 = 200;
    const PER_CHUNK: u64 = 10;
    let collected = Buffer::new("collected", &BufferConfig::default());
    let aggregator = start_aggregator(any_port(), &collected).await;
    let addr = aggregator.addr;
    let forwarder = start_forwarder(sink_config(vec![server(addr)]));

    let producer = {
        let buffer = forwarder.buffer.clone();
        tokio::spawn(async move {
            for i in 0..CHUNKS {
                buffer
                    .push(chunk("kube.app", i * PER_CHUNK, (i + 1) * PER_CHUNK))
                    .await
                    .unwrap();
                // A stream that lasts (about 0.4 s), so that the kill below finds
                // chunks in flight however the machine schedules the two sides.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // The aggregator's buffer stands for its durable file buffer: what it took in
    // before the kill is kept, as a restarted process would find it on disk.
    let collector = Collector::start(&collected);
    tokio::time::timeout(WAIT, async {
        while collector.chunks() < 30 || forwarder.buffer.stats().in_flight_chunks == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the stream did not start");
    // Kill: the server task and every connection task with it.
    aggregator.task.abort();
    let _ = aggregator.task.await;
    let at_kill = collector.chunks();
    let unacked_at_kill = forwarder.buffer.stats().in_flight_chunks;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let restarted = start_aggregator(addr, &collected).await;
    assert_eq!(restarted.addr, addr, "restarted on the same port");

    producer.await.unwrap();
    collector.wait_for(CHUNKS * PER_CHUNK).await;
    forwarder.finish().await;
    restarted.stop().await;
    let got = collector.finish().await;

    assert!(at_kill < CHUNKS as usize, "the kill happened mid-stream");
    let (dup_chunks, dup_events) = (got.duplicate_chunks(), got.duplicate_events());
    println!(
        "killed after {at_kill} of {CHUNKS} chunks with {unacked_at_kill} unacknowledged; every event arrived; duplicates: {dup_chunks} chunks, {dup_events} events"
    );
    // Only chunks in flight at the kill (sent, not acked) can arrive twice.
    assert!(dup_chunks <= 4, "{dup_chunks} duplicate chunks");
    assert_eq!(dup_events, dup_chunks * PER_CHUNK as usize);
}

#[tokio::test]
async fn a_missing_ack_makes_the_forwarder_resend() {
    init_logs();
    // An aggregator whose buffer is full and not drained takes the first chunk, then
    // cannot take (so does not ack) the next ones.
    let stuck = Buffer::new(
        "collected",
        &BufferConfig {
            total_limit_size: ByteSize(1),
            overflow_action: OverflowAction::Block,
            ..BufferConfig::default()
        },
    );
    let aggregator = start_aggregator(any_port(), &stuck).await;
    let mut config = sink_config(vec![server(aggregator.addr)]);
    config.ack_response_timeout = HumanDuration::millis(300);
    let forwarder = start_forwarder(config);
    let chunks: Vec<Chunk> = (0..3).map(|i| chunk("t", i * 4, i * 4 + 4)).collect();
    for c in &chunks {
        forwarder.buffer.push(c.clone()).await.unwrap();
    }
    // Long enough for at least two rounds of ack timeout, failover (there is no
    // other server) and recovery.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(
        forwarder.buffer.stats().in_flight_chunks,
        2,
        "the unacked chunks stay leased"
    );

    let collector = Collector::start(&stuck);
    collector.wait_for(12).await;
    forwarder.finish().await;
    let got = collector.finish().await;
    // Every connection that gave up waiting left its frame with the aggregator,
    // which routes it once there is room: the resends show up as duplicates.
    let resent = got.chunks.get(&chunks[1].id()).copied().unwrap_or(0);
    assert!(resent >= 2, "chunk 1 arrived {resent} times; {got:?}");
    assert_eq!(
        got.chunks[&chunks[0].id()],
        1,
        "the acked chunk is not resent"
    );
    aggregator.stop().await;
}

#[tokio::test]
async fn the_second_server_receives_when_the_first_is_down() {
    init_logs();
    let collected = Buffer::new("collected", &BufferConfig::default());
    let aggregator = start_aggregator(any_port(), &collected).await;
    let forwarder = start_forwarder(sink_config(vec![dead_server(), server(aggregator.addr)]));
    for i in 0..5 {
        forwarder
            .buffer
            .push(chunk("t", i * 3, i * 3 + 3))
            .await
            .unwrap();
    }
    let got = collect(&collected, 15).await;
    assert_eq!(got.duplicate_events(), 0);
    forwarder.finish().await;
    aggregator.stop().await;
}

#[tokio::test]
async fn garbage_clients_do_not_disturb_a_streaming_forwarder() {
    init_logs();
    let collected = Buffer::new("collected", &BufferConfig::default());
    let aggregator = start_aggregator(any_port(), &collected).await;
    let forwarder = start_forwarder(sink_config(vec![server(aggregator.addr)]));
    let producer = {
        let buffer = forwarder.buffer.clone();
        tokio::spawn(async move {
            for i in 0..50 {
                buffer.push(chunk("t", i * 4, i * 4 + 4)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut claim_4gib = vec![0x93, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff];
    claim_4gib.extend_from_slice(&[0; 16]);
    let (mut truncated, tail) =
        forward::encode_packed_forward("t", 100, 1, Some("x"), Compression::None);
    truncated.extend_from_slice(&[0x92; 10]);
    drop(tail);
    let noise: Vec<u8> = (0..2048u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let garbage: [&[u8]; 4] = [
        &noise,
        b"POST /api/v1/logs HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
        &claim_4gib,
        &truncated,
    ];
    for bytes in garbage {
        let mut bad = TcpStream::connect(aggregator.addr).await.unwrap();
        bad.write_all(bytes).await.unwrap();
        bad.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(WAIT, bad.read_to_end(&mut rest)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "the bad connection was not closed: {closed:?}"
        );
    }

    producer.await.unwrap();
    let got = collect(&collected, 200).await;
    assert_eq!(
        got.duplicate_events(),
        0,
        "the forwarder's connection was never disturbed"
    );
    forwarder.finish().await;
    aggregator.stop().await;
}
