//! The encoder byte for byte, the config, and the sink's behaviour when no server is
//! reachable. Exchanges with a real server are in the workspace's
//! `tests/forward_link.rs`, which runs nagare's aggregator beside this sink.

use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, Bytes};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::component::SinkContext;
use nagare_core::compression::Compression;
use nagare_core::config::{ConfigDocument, HumanDuration};
use nagare_core::forward::{self, DecodeLimits, Frame, Mode};
use nagare_core::shutdown::Shutdown;
use nagare_core::{Chunk, ChunkBuilder, ChunkId, EventTime, Map, Tag, Value};
use nagare_testkit::docs::documented_example;

use super::*;

// The handshake against Fluent Bit's `in_forward`, byte for byte.
mod fluent_bit;

fn chunk(tag: &str, from: i64, to: i64) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new(tag));
    for i in from..to {
        let mut m = Map::new();
        m.insert("message", format!("GET /index.html 200 line {i}"));
        m.insert("n", i);
        b.push(EventTime::new(1_700_000_000 + i, 5), &m);
    }
    b.finish().unwrap()
}

fn decode(frame: &EncodedChunk) -> forward::EventsMessage {
    let bytes = frame.to_vec();
    let limits = DecodeLimits::default();
    assert_eq!(
        forward::frame_len(&bytes, &limits).unwrap(),
        Some(bytes.len())
    );
    match forward::decode_frame(Bytes::from(bytes), &limits).unwrap() {
        Frame::Events(m) => m,
        Frame::Heartbeat => panic!("encoded a heartbeat"),
    }
}

#[test]
fn packed_forward_frame_byte_for_byte() {
    let c = chunk("kube.app", 0, 3);
    let frame = encode(&c, Compression::None, true).unwrap();
    let id = c.id().to_base64();
    assert_eq!(frame.ack_id(), Some(id.as_str()));

    // [fixarray 3, "kube.app", bin32 len, entries..., {"size": 3, "chunk": id}]
    let mut want = vec![0x93, 0xa8];
    want.extend_from_slice(b"kube.app");
    let len = c.entries().len();
    if len < 256 {
        want.extend_from_slice(&[0xc4, len as u8]);
    } else {
        want.push(0xc5);
        want.extend_from_slice(&(len as u16).to_be_bytes());
    }
    want.extend_from_slice(c.entries());
    want.extend_from_slice(&[0x82, 0xa4]);
    want.extend_from_slice(b"size");
    want.push(0x03);
    want.extend_from_slice(&[0xa5]);
    want.extend_from_slice(b"chunk");
    want.push(0xa0 | id.len() as u8);
    want.extend_from_slice(id.as_bytes());
    assert_eq!(frame.to_vec(), want);
    assert_eq!(frame.len(), want.len());

    let m = decode(&frame);
    assert_eq!(
        (m.tag.as_str(), m.mode, m.count),
        ("kube.app", Mode::PackedForward, 3)
    );
    assert_eq!(&m.entries, c.entries());
    let option = m.options.chunk.unwrap();
    assert_eq!(
        ChunkId::from_forward_option(&option),
        c.id(),
        "the server derives the same chunk id"
    );
}

#[test]
fn the_payload_is_the_chunks_memory_not_a_copy() {
    let c = chunk("t", 0, 50);
    let frame = encode(&c, Compression::None, true).unwrap();
    let mut buf = frame.as_buf();
    let head = buf.chunk().len();
    buf.advance(head);
    assert_eq!(buf.chunk().as_ptr(), c.entries().as_ptr());
    assert_eq!(buf.chunk().len(), c.entries().len());
}

#[test]
fn compressed_frames_round_trip() {
    let c = chunk("t", 0, 200);
    for compress in [Compression::Gzip, Compression::Zstd] {
        let frame = encode(&c, compress, true).unwrap();
        assert!(
            frame.len() < c.byte_size() / 3,
            "{compress:?}: {} bytes for {}",
            frame.len(),
            c.byte_size()
        );
        let m = decode(&frame);
        assert_eq!(m.mode, Mode::CompressedPackedForward);
        assert_eq!(m.options.compressed, compress);
        assert_eq!(&m.entries, c.entries(), "{compress:?}");
        assert_eq!(m.count, 200);
    }
}

#[test]
fn without_acks_no_chunk_option_is_sent() {
    let c = chunk("t", 0, 1);
    let frame = encode(&c, Compression::None, false).unwrap();
    assert_eq!(frame.ack_id(), None);
    assert_eq!(decode(&frame).options.chunk, None);
}

fn parse(text: &str) -> Result<ForwardSinkConfig, nagare_core::config::ConfigError> {
    ConfigDocument::from_text("nagare.yaml", text, |_| None)
        .unwrap()
        .parse()
}

#[test]
fn documented_config_and_defaults() {
    // The example in config.rs, as written there.
    let text = documented_example(include_str!("config.rs"));
    let c = ConfigDocument::from_text("nagare.yaml", &text, |name| Some(format!("<{name}>")))
        .unwrap()
        .parse::<ForwardSinkConfig>()
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    c.validate().unwrap();
    assert_eq!(c.servers.len(), 2);
    assert_eq!(
        c.servers[0].to_string(),
        "nagare-aggregator.logging.svc.cluster.local:24224"
    );
    assert!(c.servers[1].standby);
    assert_eq!(c.compress, Compression::Gzip);
    assert_eq!(c.heartbeat_type, HeartbeatType::Transport);
    assert_eq!(
        c.security.as_ref().map(|s| s.shared_key.expose()),
        Some("<FORWARD_SHARED_KEY>")
    );
    assert!(c.tls.is_some());

    let d = parse("servers:\n  - host: 10.0.0.1\n").unwrap();
    d.validate().unwrap();
    assert_eq!(d.servers[0].port, 24224);
    assert!(d.require_ack_response);
    assert_eq!(d.ack_response_timeout, HumanDuration::secs(60));
    assert_eq!(d.connect_timeout, HumanDuration::secs(5));
    assert_eq!(d.send_timeout, HumanDuration::secs(60));
    assert_eq!(d.compress, Compression::None);
    assert_eq!(d.max_in_flight, 4);
    assert_eq!(d.retry_wait, HumanDuration::secs(1));
    assert_eq!(d.retry_max_interval, HumanDuration::secs(30));
    assert_eq!(d.backoff().initial, Duration::from_secs(1));
    assert_eq!(d.backoff().max, Duration::from_secs(30));
    assert_eq!(d.servers[0].weight, 60);
    assert!(!d.servers[0].standby);
    assert!(d.keepalive);
    assert_eq!(d.heartbeat_type, HeartbeatType::Transport);
    assert_eq!(d.heartbeat_interval, HumanDuration::secs(1));
    assert!(d.phi_failure_detector);
    assert_eq!(d.phi_threshold, 16.0);
    assert_eq!(d.hard_timeout, HumanDuration::secs(60));
    assert_eq!(d.recover_wait, HumanDuration::secs(10));
    assert_eq!(d.expire_dns_cache, HumanDuration::secs(30));
    assert!(d.security.is_none() && d.tls.is_none());
    let v6 = ServerConfig::new("::1", 1);
    assert_eq!(v6.to_string(), "[::1]:1");
}

#[test]
fn config_mistakes_name_their_key() {
    let err = parse("servers:\n  - host: a\n    prot: 1\n").unwrap_err();
    assert!(err.message.starts_with("unknown field `prot`"), "{err}");
    let err = parse("servers: []\ncompress: lz4\n").unwrap_err();
    assert!(err.message.starts_with("unknown variant `lz4`"), "{err}");

    let cases = [
        ("servers: []\n", "servers"),
        ("servers:\n  - host: ''\n", "servers.0.host"),
        (
            "servers:\n  - host: a\n  - host: b\n    port: 0\n",
            "servers.1.port",
        ),
        ("servers:\n  - host: a\nmax_in_flight: 0\n", "max_in_flight"),
        (
            "servers:\n  - host: a\nack_response_timeout: 0s\n",
            "ack_response_timeout",
        ),
        (
            "servers:\n  - host: a\nretry_wait: 10s\nretry_max_interval: 1s\n",
            "retry_max_interval",
        ),
        ("servers:\n  - host: a\n    standby: true\n", "servers"),
        ("servers:\n  - host: a\nphi_threshold: 0\n", "phi_threshold"),
        ("servers:\n  - host: a\ntls: {}\n", "tls.ca_path"),
        (
            "servers:\n  - host: a\nsecurity:\n  shared_key: k\n  username: u\n",
            "security",
        ),
        ("servers:\n  - host: a\n    shared_key: k\n", "servers.0"),
        (
            "servers:\n  - host: a\ntls:\n  ca_path: c\n  private_key_passphrase: p\n",
            "tls.private_key_passphrase",
        ),
    ];
    for (text, key) in cases {
        let invalid = parse(text).unwrap().validate().unwrap_err();
        assert_eq!(invalid.key, key, "{text}: {invalid}");
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
fn dead_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn context(buffer: &Buffer, abort: &Shutdown) -> SinkContext {
    SinkContext {
        name: "to_aggregator".into(),
        buffer: buffer.clone(),
        abort: abort.clone(),
        data_dir: PathBuf::new(),
        metrics: nagare_core::metrics::ComponentMetrics::detached("to_aggregator"),
    }
}

fn unreachable_config() -> ForwardSinkConfig {
    let mut c = ForwardSinkConfig::new(vec![ServerConfig::new("127.0.0.1", dead_port())]);
    c.retry_wait = HumanDuration::millis(20);
    c.retry_max_interval = HumanDuration::millis(50);
    c
}

fn first_number(c: &Chunk) -> i64 {
    c.events()
        .next()
        .unwrap()
        .unwrap()
        .1
        .get("n")
        .and_then(Value::as_i64)
        .unwrap()
}

#[tokio::test]
async fn abort_without_a_server_returns_the_chunks_in_order() {
    let buffer = Buffer::new("to_aggregator", &BufferConfig::default());
    for i in 0..3 {
        buffer.push(chunk("t", i, i + 1)).await.unwrap();
    }
    let abort = Shutdown::new();
    let task = tokio::spawn(run(unreachable_config(), context(&buffer, &abort)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!task.is_finished(), "the sink keeps retrying");
    // The server was taken for up at start, so up to max_in_flight chunks were
    // handed to it; its failure brought them back to the sink, which holds them.
    assert_eq!(
        (
            buffer.stats().queued_chunks,
            buffer.stats().in_flight_chunks
        ),
        (0, 3),
        "the chunks wait in the sink for a server"
    );
    abort.cancel();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("abort returns at once")
        .unwrap()
        .unwrap();
    let stats = buffer.stats();
    assert_eq!((stats.queued_chunks, stats.in_flight_chunks), (3, 0));
    for want in 0..3 {
        let lease = buffer.try_pop().unwrap();
        assert_eq!(first_number(lease.chunk()), want);
        lease.delivered();
    }
}

#[tokio::test]
async fn a_closed_empty_buffer_ends_the_sink_without_connecting() {
    let buffer = Buffer::new("to_aggregator", &BufferConfig::default());
    buffer.close();
    let abort = Shutdown::new();
    tokio::time::timeout(
        Duration::from_secs(1),
        run(unreachable_config(), context(&buffer, &abort)),
    )
    .await
    .expect("returns at once")
    .unwrap();
}

/// A sink whose only server is down still sees its buffer close: with nothing to
/// deliver it ends, so a stop does not wait out `shutdown_timeout` for a server.
#[tokio::test]
async fn a_sink_without_a_live_server_ends_when_its_empty_buffer_closes() {
    let buffer = Buffer::new("to_aggregator", &BufferConfig::default());
    let mut config = unreachable_config();
    config.heartbeat_interval = HumanDuration::millis(20);
    config.hard_timeout = HumanDuration::millis(100);
    let abort = Shutdown::new();
    let task = tokio::spawn(run(config, context(&buffer, &abort)));
    // Long past `hard_timeout` without a heartbeat: the server is taken for down.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!task.is_finished(), "the sink waits for chunks");
    buffer.close();
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .expect("ends without being aborted")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_invalid_config_is_refused() {
    let buffer = Buffer::new("to_aggregator", &BufferConfig::default());
    let err = run(
        ForwardSinkConfig::new(vec![]),
        context(&buffer, &Shutdown::new()),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("at `servers`"), "{err}");
}
