//! The server on 127.0.0.1 port 0, driven by raw TCP clients that speak the protocol
//! through nagare-core's codec (and some that do not speak it at all).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig, Lease, OverflowAction};
use nagare_core::compression::Compression;
use nagare_core::config::{ByteSize, ConfigDocument, HumanDuration};
use nagare_core::forward;
use nagare_core::pattern::TagPattern;
use nagare_core::router::RouterBuilder;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{self, numbers, source_context};
use nagare_core::{Chunk, ChunkBuilder, ChunkId, EventTime, Map, Tag};
use nagare_testkit::docs::documented_example;
use nagare_testkit::{LogCapture, capture_logs};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tracing::Level;

use super::*;

// `security.clients`: keys and users per client address.
mod clients;
// The handshake's MessagePack types, as each real client sends and reads them.
mod handshake_types;
// `unix_path`: the server on a Unix socket, and its socket file.
mod unix;

const WAIT: Duration = Duration::from_secs(5);

struct Server {
    addr: SocketAddr,
    buffer: Buffer,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), ForwardSourceError>>,
}

fn local_config() -> ForwardSourceConfig {
    ForwardSourceConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        ..ForwardSourceConfig::default()
    }
}

async fn start(config: ForwardSourceConfig, buffer_config: BufferConfig) -> Server {
    let buffer = Buffer::new("out", &buffer_config);
    let mut routes = RouterBuilder::new();
    routes.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
    let (ctx, shutdown) = source_context("from_nodes", routes.build(), Path::new(""));
    let server = ForwardServer::bind(&config).await.unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    let task = tokio::spawn(server.run(ctx));
    Server {
        addr,
        buffer,
        shutdown,
        task,
    }
}

fn record(i: i64) -> Map {
    let mut m = Map::new();
    m.insert("message", format!("line {i}"));
    m.insert("n", i);
    m
}

fn entries(from: i64, to: i64) -> Vec<u8> {
    let mut b = ChunkBuilder::new(Tag::new("unused"));
    for i in from..to {
        b.push(EventTime::new(1_700_000_000 + i, 7), &record(i));
    }
    b.finish().unwrap().entries().to_vec()
}

fn packed(tag: &str, payload: &[u8], count: u32, chunk: &str, c: Compression) -> Vec<u8> {
    let (mut frame, tail) =
        forward::encode_packed_forward(tag, payload.len(), count, Some(chunk), c);
    frame.extend_from_slice(payload);
    frame.extend_from_slice(&tail);
    frame
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Sends a frame and waits for the ack of `chunk`.
async fn send_acked(stream: &mut (impl AsyncRead + AsyncWrite + Unpin), frame: &[u8], chunk: &str) {
    stream.write_all(frame).await.unwrap();
    assert_eq!(read_ack(stream).await, chunk);
}

async fn read_ack(stream: &mut (impl AsyncRead + Unpin)) -> String {
    read_whole(stream, "ack", |buf| forward::decode_ack(buf).unwrap()).await
}

/// Reads from `stream` until `parse` finds a whole `what` in what came, which must
/// be all that came; fails if it does not come within 5 s or the server closes.
async fn read_whole<T>(
    stream: &mut (impl AsyncRead + Unpin),
    what: &str,
    parse: impl Fn(&[u8]) -> Option<(T, usize)>,
) -> T {
    let mut buf = Vec::new();
    loop {
        if let Some((value, n)) = parse(&buf) {
            assert_eq!(n, buf.len(), "one {what} at a time");
            return value;
        }
        let mut more = [0u8; 512];
        let n = tokio::time::timeout(WAIT, stream.read(&mut more))
            .await
            .unwrap_or_else(|_| panic!("no {what} within 5s"))
            .unwrap();
        assert_ne!(n, 0, "the server closed before sending a whole {what}");
        buf.extend_from_slice(&more[..n]);
    }
}

/// Whether the server closed the connection (EOF or reset) within 5 seconds.
async fn closed_by_server(stream: &mut (impl AsyncRead + Unpin)) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(WAIT, stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

async fn pop(buffer: &Buffer) -> Lease {
    tokio::time::timeout(WAIT, buffer.pop())
        .await
        .expect("no chunk within 5s")
        .expect("buffer closed")
}

/// Takes the next chunk and confirms it.
async fn take(buffer: &Buffer) -> Chunk {
    testing::take(buffer, WAIT).await
}

#[tokio::test]
async fn every_mode_is_routed_and_acked_in_order() {
    let server = start(local_config(), BufferConfig::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();

    let id = ChunkId::random();
    // Heartbeats are ignored; the PackedForward frame behind them is handled.
    client.write_all(&[0xc0, 0xc0]).await.unwrap();
    let frame = packed(
        "app.packed",
        &entries(0, 3),
        3,
        &id.to_base64(),
        Compression::None,
    );
    send_acked(&mut client, &frame, &id.to_base64()).await;

    let gz = gzip(&entries(3, 5));
    let frame = packed("app.gzip", &gz, 2, "gz-chunk", Compression::Gzip);
    send_acked(&mut client, &frame, "gz-chunk").await;

    let forward_frame = forward::encode_forward(
        "app.forward",
        &[(EventTime::new(1, 0), record(5))],
        Some("fw"),
    );
    let message = forward::encode_message("app.message", EventTime::new(2, 3), &record(6), None);
    // Message mode without a chunk option is not acked; the next frame's ack proves
    // both were handled, in order.
    let mut both = message.clone();
    both.extend_from_slice(&forward_frame);
    send_acked(&mut client, &both, "fw").await;

    let want: [(&str, Vec<i64>); 4] = [
        ("app.packed", vec![0, 1, 2]),
        ("app.gzip", vec![3, 4]),
        ("app.message", vec![6]),
        ("app.forward", vec![5]),
    ];
    let first = take(&server.buffer).await;
    assert_eq!(first.id(), id, "the chunk id is the client's");
    assert_eq!(
        (first.tag().as_str(), numbers(&first)),
        (want[0].0, want[0].1.clone())
    );
    let (t, _) = first.events().next().unwrap().unwrap();
    assert_eq!(t, EventTime::new(1_700_000_000, 7));
    for (tag, ns) in &want[1..] {
        let chunk = take(&server.buffer).await;
        assert_eq!((chunk.tag().as_str(), numbers(&chunk)), (*tag, ns.clone()));
    }
    assert!(
        pop_or_none(&server.buffer).await.is_none(),
        "nothing else was routed"
    );
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

async fn pop_or_none(buffer: &Buffer) -> Option<Lease> {
    tokio::time::timeout(Duration::from_millis(100), buffer.pop())
        .await
        .ok()
        .flatten()
}

/// What the server warned about `peer`.
fn warnings_about(logs: &LogCapture, peer: SocketAddr) -> Vec<String> {
    logs.matching(&["WARN", &format!("peer={peer}")])
}

fn pseudo_random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn garbage_closes_only_the_bad_connection_with_one_warning() {
    let logs = capture_logs(Level::DEBUG);
    let server = start(local_config(), BufferConfig::default()).await;
    let mut good = TcpStream::connect(server.addr).await.unwrap();
    send_acked(
        &mut good,
        &packed("ok", &entries(0, 1), 1, "c0", Compression::None),
        "c0",
    )
    .await;

    let mut claim_4gib = vec![0x93, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff];
    claim_4gib.extend_from_slice(&[0u8; 32]);
    let whole = packed("t", &entries(0, 2), 2, "cut", Compression::None);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "random bytes",
            pseudo_random_bytes(4096),
            "closing forward connection",
        ),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
            "must be an array",
        ),
        (
            "a 4 GiB frame header",
            claim_4gib,
            "exceeds the limit of 33554432 bytes",
        ),
        (
            "a truncated frame",
            whole[..whole.len() / 2].to_vec(),
            "in the middle of a frame",
        ),
    ];
    for (i, (what, bytes, reason)) in cases.into_iter().enumerate() {
        let mut bad = TcpStream::connect(server.addr).await.unwrap();
        let peer = bad.local_addr().unwrap();
        bad.write_all(&bytes).await.unwrap();
        // Closing our side ends any frame the server is still waiting on.
        bad.shutdown().await.unwrap();
        assert!(closed_by_server(&mut bad).await, "{what}: not closed");
        let warnings = warnings_about(&logs, peer);
        assert_eq!(warnings.len(), 1, "{what}: one warning, got {warnings:#?}");
        assert!(warnings[0].contains(reason), "{what}: {}", warnings[0]);

        // The well-behaved client on its own connection is still served.
        let chunk = format!("c{}", i + 1);
        send_acked(
            &mut good,
            &packed("ok", &entries(0, 1), 1, &chunk, Compression::None),
            &chunk,
        )
        .await;
    }
    for _ in 0..5 {
        assert_eq!(take(&server.buffer).await.tag().as_str(), "ok");
    }
    assert!(
        pop_or_none(&server.buffer).await.is_none(),
        "garbage produced no chunk"
    );
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn frames_above_the_configured_limit_are_refused() {
    let logs = capture_logs(Level::DEBUG);
    let config = ForwardSourceConfig {
        max_frame_size: ByteSize(1024),
        max_decompressed_size: ByteSize(1024),
        ..local_config()
    };
    let server = start(config, BufferConfig::default()).await;
    let small = entries(0, 2);
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    send_acked(
        &mut client,
        &packed("t", &small, 2, "small", Compression::None),
        "small",
    )
    .await;

    // Too large on the wire: refused from its header, before the payload arrives.
    let big = entries(0, 40);
    assert!(big.len() > 1024);
    let frame = packed("t", &big, 40, "big", Compression::None);
    let peer = client.local_addr().unwrap();
    client.write_all(&frame[..16]).await.unwrap();
    assert!(closed_by_server(&mut client).await);
    let warnings = warnings_about(&logs, peer);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("exceeds the limit of 1024 bytes"),
        "{}",
        warnings[0]
    );

    // Small on the wire, too large once inflated.
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let peer = client.local_addr().unwrap();
    let bomb = gzip(&vec![0u8; 64 * 1024]);
    let frame = packed("t", &bomb, 40, "bomb", Compression::Gzip);
    assert!(frame.len() < 1024, "{}", frame.len());
    client.write_all(&frame).await.unwrap();
    assert!(closed_by_server(&mut client).await);
    let warnings = warnings_about(&logs, peer);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("limit of 1024"), "{}", warnings[0]);
    assert_eq!(take(&server.buffer).await.count(), 2);
    assert!(pop_or_none(&server.buffer).await.is_none());
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let config = ForwardSourceConfig {
        idle_timeout: HumanDuration::millis(200),
        ..local_config()
    };
    let server = start(config, BufferConfig::default()).await;
    let mut busy = TcpStream::connect(server.addr).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    // Heartbeats keep a connection alive past the timeout.
    for _ in 0..5 {
        busy.write_all(&[0xc0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(closed_by_server(&mut idle).await);
    assert!(started.elapsed() >= Duration::from_millis(200));
    send_acked(
        &mut busy,
        &packed("t", &entries(0, 1), 1, "alive", Compression::None),
        "alive",
    )
    .await;
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn clients_beyond_max_connections_wait_for_a_free_slot() {
    let config = ForwardSourceConfig {
        max_connections: 1,
        ..local_config()
    };
    let server = start(config, BufferConfig::default()).await;
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    send_acked(
        &mut first,
        &packed("t", &entries(0, 1), 1, "a", Compression::None),
        "a",
    )
    .await;

    // The kernel completes the second handshake from the backlog, but the server does
    // not read from it while the first client holds the only slot.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    second
        .write_all(&packed("t", &entries(1, 2), 1, "b", Compression::None))
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), second.read(&mut byte))
            .await
            .is_err(),
        "the second client was served while the first held the only slot"
    );
    drop(first);
    assert_eq!(read_ack(&mut second).await, "b");
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn shutdown_finishes_the_frame_being_handled_then_closes() {
    // A buffer with room for one chunk: the second frame's emit waits for room.
    let tiny = BufferConfig {
        total_limit_size: ByteSize(1),
        overflow_action: OverflowAction::Block,
        ..BufferConfig::default()
    };
    let server = start(local_config(), tiny).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    send_acked(
        &mut client,
        &packed("t", &entries(0, 1), 1, "one", Compression::None),
        "one",
    )
    .await;
    client
        .write_all(&packed("t", &entries(1, 2), 1, "two", Compression::None))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !server.task.is_finished(),
        "the server must wait for the frame it is handling"
    );
    assert!(
        closed_by_server(&mut idle).await,
        "idle connections close at once"
    );
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "the listener is closed"
    );

    // Room appears: the pending frame is routed and acked, then the connection closes.
    let first = pop(&server.buffer).await;
    assert_eq!(numbers(first.chunk()), vec![0]);
    first.delivered();
    assert_eq!(read_ack(&mut client).await, "two");
    assert!(closed_by_server(&mut client).await);
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("the server did not stop")
        .unwrap()
        .unwrap();
    assert_eq!(numbers(&take(&server.buffer).await), vec![1]);
}

#[tokio::test]
async fn a_taken_port_fails_at_bind_with_advice() {
    let server = start(local_config(), BufferConfig::default()).await;
    let config = ForwardSourceConfig {
        bind: server.addr,
        ..ForwardSourceConfig::default()
    };
    let err = ForwardServer::bind(&config).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ForwardSourceError::Bind { addr, .. } if addr == server.addr),
        "{text}"
    );
    assert!(text.contains(&server.addr.to_string()), "{text}");
    assert!(text.contains("already listens on this port"), "{text}");

    let invalid = ForwardSourceConfig {
        max_connections: 0,
        ..local_config()
    };
    let err = ForwardServer::bind(&invalid).await.unwrap_err();
    assert!(err.to_string().contains("`max_connections`"), "{err}");
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[test]
fn config_example_and_defaults() {
    let parse = |text: &str| {
        ConfigDocument::from_text("nagare.yaml", text, |_| None)
            .unwrap()
            .parse::<ForwardSourceConfig>()
    };
    let c = parse(
        "bind: 127.0.0.1:24225\nmax_frame_size: 8MiB\nmax_decompressed_size: 64MiB\nmax_connections: 10\nidle_timeout: 0\n",
    )
    .unwrap();
    assert_eq!(c.bind, "127.0.0.1:24225".parse().unwrap());
    assert_eq!(c.limits().max_frame_bytes, 8 << 20);
    assert_eq!(c.limits().max_decompressed_bytes, 64 << 20);
    assert_eq!(c.max_connections, 10);
    assert_eq!(c.idle_timeout(), None);
    c.validate().unwrap();

    // The documented example in config.rs, and the defaults it spells out.
    let documented = parse(
        "bind: 0.0.0.0:24224\nmax_frame_size: 32MiB\nmax_decompressed_size: 128MiB\nmax_connections: 1024\nidle_timeout: 120s\n",
    )
    .unwrap();
    let defaults = parse("{}\n").unwrap();
    for c in [&documented, &defaults] {
        assert_eq!(c.bind, "0.0.0.0:24224".parse().unwrap());
        assert_eq!(c.limits(), forward::DecodeLimits::default());
        assert_eq!(c.max_connections, 1024);
        assert_eq!(c.idle_timeout(), Some(Duration::from_secs(120)));
        c.validate().unwrap();
    }

    let err = parse("bnd: 0.0.0.0:1\n").unwrap_err();
    assert!(err.message.starts_with("unknown field `bnd`"), "{err}");
    let err = parse("bind: localhost\n").unwrap_err();
    assert_eq!(err.key.as_deref(), Some("bind"), "{err}");

    let bad = ForwardSourceConfig {
        max_decompressed_size: ByteSize(1 << 20),
        ..ForwardSourceConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "max_decompressed_size");
    let bad = ForwardSourceConfig {
        max_frame_size: ByteSize(0),
        ..ForwardSourceConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "max_frame_size");
}

// ---------------------------------------------------------------------------
// The handshake, the JSON form, UDP heartbeats, keepalive and the memory budget.

use nagare_core::config::Secret;
use nagare_core::forward::handshake::{self as hs, Helo, Ping, Pong};

fn secured(user_auth: bool) -> ForwardSourceConfig {
    ForwardSourceConfig {
        security: Some(SecurityConfig {
            self_hostname: Some("aggregator-0".into()),
            shared_key: Secret::new("s3cret"),
            user_auth,
            users: vec![UserConfig {
                username: "node".into(),
                password: Secret::new("pw"),
            }],
            allow_anonymous_source: true,
            clients: Vec::new(),
            resolve_interval: HumanDuration::secs(60),
        }),
        ..local_config()
    }
}

/// A handshake message decoder: the message and its length, or "need more bytes".
type Decoder<T> = fn(&[u8]) -> Result<Option<(T, usize)>, forward::DecodeError>;

/// Reads one handshake message with `decode`.
async fn read_message<T>(stream: &mut (impl AsyncRead + Unpin), decode: Decoder<T>) -> T {
    let mut buf = Vec::new();
    loop {
        if let Some((m, n)) = decode(&buf).unwrap() {
            assert_eq!(n, buf.len());
            return m;
        }
        let mut more = [0u8; 512];
        let n = tokio::time::timeout(WAIT, stream.read(&mut more))
            .await
            .expect("no handshake message within 5s")
            .unwrap();
        assert_ne!(n, 0, "the server closed during the handshake");
        buf.extend_from_slice(&more[..n]);
    }
}

/// Runs the client's side of the handshake; returns the server's PONG.
async fn handshake(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    key: &str,
    user: Option<(&str, &str)>,
    salt: &[u8],
) -> (Helo, Pong) {
    let helo: Helo = read_message(stream, hs::decode_helo).await;
    let (username, password_digest) = match user {
        Some((u, p)) => (u.to_string(), hs::password_digest(&helo.auth_salt, u, p)),
        None => (String::new(), String::new()),
    };
    let ping = Ping {
        hostname: "node-1".into(),
        shared_key_salt: salt.to_vec(),
        shared_key_digest: hs::shared_key_digest(salt, "node-1", &helo.nonce, key),
        username,
        password_digest,
    };
    stream.write_all(&hs::encode_ping(&ping)).await.unwrap();
    let pong: Pong = read_message(stream, hs::decode_pong).await;
    (helo, pong)
}

#[tokio::test]
async fn the_shared_key_handshake_admits_the_right_key_only() {
    let logs = capture_logs(Level::DEBUG);
    let server = start(secured(false), BufferConfig::default()).await;

    let mut good = TcpStream::connect(server.addr).await.unwrap();
    let (helo, pong) = handshake(&mut good, "s3cret", None, b"salt-as-bin").await;
    assert_eq!(helo.nonce.len(), 16);
    assert!(helo.auth_salt.is_empty(), "no user auth configured");
    assert!(helo.keepalive);
    assert!(pong.auth_ok, "{pong:?}");
    assert_eq!(pong.hostname, "aggregator-0");
    assert_eq!(
        pong.shared_key_digest,
        hs::shared_key_digest(b"salt-as-bin", "aggregator-0", &helo.nonce, "s3cret"),
        "the server proves it knows the key"
    );
    send_acked(
        &mut good,
        &packed("t", &entries(0, 2), 2, "a", Compression::None),
        "a",
    )
    .await;

    let mut bad = TcpStream::connect(server.addr).await.unwrap();
    let peer = bad.local_addr().unwrap();
    let (_, pong) = handshake(&mut bad, "wrong", None, b"0123abcd").await;
    assert!(!pong.auth_ok);
    assert_eq!(pong.reason, "shared_key mismatch");
    assert!(closed_by_server(&mut bad).await);
    let warnings = warnings_about(&logs, peer);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("authentication failed")
            && warnings[0].contains("shared_key mismatch"),
        "{}",
        warnings[0]
    );
    assert!(!warnings[0].contains("s3cret"), "the key is never logged");

    // A client that skips the handshake and sends events is refused too.
    let mut rude = TcpStream::connect(server.addr).await.unwrap();
    let peer = rude.local_addr().unwrap();
    let _: Helo = read_message(&mut rude, hs::decode_helo).await;
    rude.write_all(&packed("t", &entries(0, 1), 1, "x", Compression::None))
        .await
        .unwrap();
    assert!(closed_by_server(&mut rude).await);
    let warnings = warnings_about(&logs, peer);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("did not answer HELO with a PING"),
        "{}",
        warnings[0]
    );

    assert_eq!(numbers(&take(&server.buffer).await), vec![0, 1]);
    assert!(pop_or_none(&server.buffer).await.is_none());
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn user_authentication_checks_name_and_password() {
    let logs = capture_logs(Level::DEBUG);
    let server = start(secured(true), BufferConfig::default()).await;
    let mut good = TcpStream::connect(server.addr).await.unwrap();
    // Node's fluent-logger sends its salt as a hex string; any bytes do.
    let (helo, pong) = handshake(&mut good, "s3cret", Some(("node", "pw")), b"9f86d081").await;
    assert_eq!(helo.auth_salt.len(), 16, "a salt for the password digest");
    assert!(pong.auth_ok, "{pong:?}");
    send_acked(
        &mut good,
        &packed("t", &entries(0, 1), 1, "u", Compression::None),
        "u",
    )
    .await;

    for (user, password) in [("node", "nope"), ("root", "pw")] {
        let mut bad = TcpStream::connect(server.addr).await.unwrap();
        let peer = bad.local_addr().unwrap();
        let (_, pong) = handshake(&mut bad, "s3cret", Some((user, password)), b"s").await;
        assert!(!pong.auth_ok);
        assert_eq!(pong.reason, "username/password mismatch");
        assert!(closed_by_server(&mut bad).await);
        let warnings = warnings_about(&logs, peer);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0].contains(&format!("username={user}")),
            "{}",
            warnings[0]
        );
    }
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_json_form_is_accepted_and_acked_in_json() {
    let server = start(local_config(), BufferConfig::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"[\"json.msg\", 1700000000.25, {\"n\": 1}]\n[\"json.fwd\", [[1700000001, {\"n\": 2}], [1700000002, {\"n\": 3}]], {\"chunk\": \"j1\"}]")
        .await
        .unwrap();
    let mut ack = vec![0u8; 12];
    tokio::time::timeout(WAIT, client.read_exact(&mut ack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ack, br#"{"ack":"j1"}"#);
    let first = take(&server.buffer).await;
    assert_eq!(
        (first.tag().as_str(), numbers(&first)),
        ("json.msg", vec![1])
    );
    let (t, _) = first.events().next().unwrap().unwrap();
    assert_eq!(t, EventTime::new(1_700_000_000, 250_000_000));
    let second = take(&server.buffer).await;
    assert_eq!(
        (second.tag().as_str(), numbers(&second)),
        ("json.fwd", vec![2, 3])
    );
    drop(client);

    // With the handshake required, JSON is not offered (the handshake is MessagePack).
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
    let logs = capture_logs(Level::DEBUG);
    let server = start(secured(false), BufferConfig::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let peer = client.local_addr().unwrap();
    let _: Helo = read_message(&mut client, hs::decode_helo).await;
    client.write_all(b"[\"t\", 1, {}]").await.unwrap();
    assert!(closed_by_server(&mut client).await);
    assert_eq!(warnings_about(&logs, peer).len(), 1);
    assert!(pop_or_none(&server.buffer).await.is_none());
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn udp_heartbeats_are_answered_on_the_same_port() {
    let server = start(local_config(), BufferConfig::default()).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(server.addr).await.unwrap();
    for _ in 0..3 {
        socket.send(b"\0").await.unwrap();
        let mut answer = [0xffu8; 8];
        let n = tokio::time::timeout(WAIT, socket.recv(&mut answer))
            .await
            .expect("no heartbeat answer")
            .unwrap();
        assert_eq!(&answer[..n], b"\0");
    }
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

/// Once the server has stopped, its TCP and UDP ports are free: a source started
/// in its place on the same port (a reload that renames it) can bind at once. On
/// worker threads, where the heartbeat responder may still be running when the
/// server ends; many times over, since that is a race. The port comes from below the
/// ephemeral range: the other tests of this binary bind port 0 meanwhile, and the
/// kernel could hand one of them a stopped server's port number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_server_has_let_go_of_both_its_ports() {
    for round in 0..200 {
        let config = ForwardSourceConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], nagare_testkit::free_port())),
            ..ForwardSourceConfig::default()
        };
        let server = start(config, BufferConfig::default()).await;
        server.shutdown.cancel();
        server.task.await.unwrap().unwrap();
        let udp = std::net::UdpSocket::bind(server.addr);
        assert!(udp.is_ok(), "round {round}: UDP {}: {udp:?}", server.addr);
        drop(udp);
        let again = ForwardServer::bind(&ForwardSourceConfig {
            bind: server.addr,
            ..ForwardSourceConfig::default()
        })
        .await;
        assert!(
            again.is_ok(),
            "round {round}: {}: {:?}",
            server.addr,
            again.err()
        );
    }
}

#[tokio::test]
async fn deny_keepalive_closes_after_each_frame_and_says_so_in_helo() {
    let mut config = secured(false);
    config.deny_keepalive = true;
    let server = start(config, BufferConfig::default()).await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    let (helo, pong) = handshake(&mut client, "s3cret", None, b"s").await;
    assert!(!helo.keepalive);
    assert!(pong.auth_ok);
    send_acked(
        &mut client,
        &packed("t", &entries(0, 1), 1, "k", Compression::None),
        "k",
    )
    .await;
    assert!(closed_by_server(&mut client).await);
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn large_frames_share_the_buffer_budget() {
    let config = ForwardSourceConfig {
        max_frame_size: ByteSize(1 << 20),
        max_decompressed_size: ByteSize(1 << 20),
        max_buffered_bytes: ByteSize(1 << 20),
        ..local_config()
    };
    let server = start(config, BufferConfig::default()).await;
    let big = |from: i64, to: i64, id: &str| {
        packed(
            "big",
            &entries(from, to),
            (to - from) as u32,
            id,
            Compression::None,
        )
    };
    let a = big(0, 25_000, "a");
    let b = big(25_000, 40_000, "b");
    assert!(a.len() > 700 << 10 && a.len() < 1 << 20, "{}", a.len());
    assert!(b.len() > 450 << 10, "{}", b.len());

    // A holds most of the budget with a frame it has not finished.
    let mut ca = TcpStream::connect(server.addr).await.unwrap();
    ca.write_all(&a[..a.len() - 10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // B's whole frame cannot be taken in meanwhile: no ack.
    let mut cb = TcpStream::connect(server.addr).await.unwrap();
    let writer = tokio::spawn(async move {
        cb.write_all(&b).await.unwrap();
        cb
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pop_or_none(&server.buffer).await.is_none(),
        "B was read past the budget"
    );

    // A completes: its budget returns, and B goes through.
    ca.write_all(&a[a.len() - 10..]).await.unwrap();
    assert_eq!(read_ack(&mut ca).await, "a");
    let mut cb = writer.await.unwrap();
    assert_eq!(read_ack(&mut cb).await, "b");
    assert_eq!(take(&server.buffer).await.count(), 25_000);
    assert_eq!(take(&server.buffer).await.count(), 15_000);
    server.shutdown.cancel();
    server.task.await.unwrap().unwrap();
}

#[test]
fn documented_example_with_tls_and_security() {
    let text = documented_example(include_str!("config.rs"));
    let c = ConfigDocument::from_text("nagare.yaml", &text, |name| Some(format!("<{name}>")))
        .unwrap()
        .parse::<ForwardSourceConfig>()
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    c.validate().unwrap();
    let tls = c.tls.as_ref().unwrap();
    assert!(tls.client_cert_auth);
    assert_eq!(
        tls.cert_path,
        std::path::Path::new("/etc/nagare/tls/tls.crt")
    );
    assert_eq!(
        tls.private_key_passphrase.as_ref().map(Secret::expose),
        Some("<TLS_KEY_PASSPHRASE>")
    );
    let sec = c.security.as_ref().unwrap();
    assert_eq!(sec.shared_key.expose(), "<FORWARD_SHARED_KEY>");
    assert!(sec.user_auth);
    assert_eq!(sec.users[0].username, "node");
    assert!(!sec.allow_anonymous_source);
    assert_eq!(sec.clients.len(), 2);
    assert_eq!(
        sec.clients[0].network,
        Some("10.0.0.0/8".parse::<Network>().unwrap())
    );
    assert_eq!(sec.clients[0].users, vec!["node".to_string()]);
    assert_eq!(
        sec.clients[1].host.as_deref(),
        Some("legacy-fluentd.example.com")
    );
    assert_eq!(
        sec.clients[1].shared_key.as_ref().map(Secret::expose),
        Some("<LEGACY_SHARED_KEY>")
    );
    assert_eq!(sec.resolve_interval, HumanDuration::secs(60));
    assert_eq!(c.max_buffered_bytes, ByteSize(256 << 20));
    assert!(!c.deny_keepalive);

    let bad = |text: &str| {
        ConfigDocument::from_text("nagare.yaml", text, |_| None)
            .unwrap()
            .parse::<ForwardSourceConfig>()
            .unwrap()
            .validate()
            .unwrap_err()
            .key
    };
    assert_eq!(bad("security:\n  shared_key: ''\n"), "security.shared_key");
    assert_eq!(
        bad("security:\n  shared_key: k\n  user_auth: true\n"),
        "security.users"
    );
    assert_eq!(
        bad("tls:\n  cert_path: a\n  private_key_path: b\n  client_cert_auth: true\n"),
        "tls.client_cert_auth"
    );
    assert_eq!(bad("max_buffered_bytes: 1MiB\n"), "max_buffered_bytes");
}
