//! Aggregator ingest: PackedForward chunks of 1,000 realistic records, sent by several
//! client connections on 127.0.0.1 to nagare's forward server, routed into a null
//! sink (a buffer drained and acked at once). Uncompressed, gzip and zstd, beside the
//! decode-only baseline (frame check + decode + chunk, no I/O) measured in the same
//! run. Then the forwarder side: the tail source alone, and the tail source shipping
//! over a loopback forward link, to see what the link costs the tailer, on two logs:
//! a mix of short access-log and JSON lines, and the tail benchmark's log
//! ([`nagare_benches::cri_workload`]).
//!
//!   cargo bench -p nagare-benches --bench forward_ingest
//!
//! `NAGARE_BENCH_PART=link` runs only the forwarder side.
//!
//! The server and its null sink run on a runtime of one thread, the clients on
//! another; "per core" divides by the CPU time of the server's thread (from
//! /proc/self/task), so it is what one core of an aggregator ingests. Likewise the
//! forwarder (tail and forward sink) runs on one thread and the aggregator it ships
//! to on another. Under `cargo test` it runs a small version and checks every event
//! arrives.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nagare_aggregator::sinks::null::{self, NullConfig};
use nagare_aggregator::sources::forward::{ForwardServer, ForwardSourceConfig};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::compression::Compression;
use nagare_core::config::{ByteSize, ConfigDocument};
use nagare_core::forward::{self, DecodeLimits, Frame};
use nagare_core::pattern::TagPattern;
use nagare_core::router::RouterBuilder;
use nagare_core::testing::{sink_context, source_context};
use nagare_core::{Chunk, ChunkBuilder, ChunkId, EventTime, Map, Tag, Value};
use nagare_forwarder::sinks::forward::{self as forward_sink, ForwardSinkConfig, ServerConfig};
use nagare_forwarder::sources::tail::TailConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The `nagare` binary's allocator, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const RECORDS_PER_CHUNK: usize = 1_000;
const CONNECTIONS: usize = 4;

/// A container log record as the tail source makes it: CRI fields, the parsed JSON
/// or access line, and Kubernetes metadata.
fn record(i: usize) -> Map {
    let mut m = Map::new();
    m.insert(
        "stream",
        if i.is_multiple_of(7) {
            "stderr"
        } else {
            "stdout"
        },
    );
    m.insert("logtag", "F");
    if i.is_multiple_of(2) {
        m.insert(
            "log",
            format!(
                "10.{}.{}.{} - - [01/May/2024:12:00:{:02} +0000] \"GET /api/v1/orders/{} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
                i % 250,
                (i / 7) % 250,
                (i / 3) % 250,
                i % 60,
                i * 31 % 100_000,
                512 + i % 4096
            ),
        );
    } else {
        m.insert(
            "level",
            if i.is_multiple_of(11) {
                "error"
            } else {
                "info"
            },
        );
        m.insert(
            "msg",
            format!("order {} placed for customer {}", i * 17, i % 9_973),
        );
        m.insert("latency_ms", (i % 500) as i64);
        m.insert(
            "trace_id",
            format!("{:032x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        );
    }
    let mut k = Map::new();
    k.insert("pod_name", format!("checkout-7f9c8d7b5-{:05}", i % 50));
    k.insert("namespace_name", "shop");
    k.insert("container_name", "checkout");
    k.insert(
        "container_id",
        "3f2a9c1b7d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8",
    );
    m.insert("kubernetes", Value::Map(k));
    m
}

fn chunk(seed: usize) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new("kube.var.log.containers.checkout"));
    for i in 0..RECORDS_PER_CHUNK {
        b.push(
            EventTime::new(1_714_564_800 + i as i64, 123_456_789),
            &record(seed * RECORDS_PER_CHUNK + i),
        );
    }
    b.finish().unwrap()
}

/// A chunk as the forwarder puts it on the wire.
fn frame(c: &Chunk, compression: Compression) -> Vec<u8> {
    forward_sink::encode(c, compression, true).unwrap().to_vec()
}

/// CPU seconds used so far by this process's threads named `name`.
fn thread_cpu(name: &str) -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ... utime stime: fields 14 and 15.
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').map_or(0, |i| i + 1)..close];
        if comm != name {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        ticks += fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
    }
    ticks as f64 / 100.0
}

fn runtime(name: &'static str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

struct Ingest {
    events: u64,
    wire_bytes: u64,
    payload_bytes: u64,
    wall: Duration,
    server_cpu: f64,
}

/// Sends `rounds` passes over `frames` from each of the client connections; returns
/// once every frame was acked and its events reached the null sink.
fn ingest(server_rt: &Runtime, client_rt: &Runtime, frames: &[Bytes], rounds: usize) -> Ingest {
    let sink = Buffer::new(
        "null",
        &BufferConfig {
            total_limit_size: ByteSize(256 << 20),
            ..BufferConfig::default()
        },
    );
    let mut routes = RouterBuilder::new();
    routes.sink("null", TagPattern::new("**").unwrap(), sink.clone());
    let (ctx, shutdown) = source_context("bench", routes.build(), Path::new(""));
    let arrived = null::Counters::new();
    let (addr, server) = server_rt.block_on(async {
        let config = ForwardSourceConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ForwardSourceConfig::default()
        };
        let server = ForwardServer::bind(&config).await.unwrap();
        (server.local_addr(), tokio::spawn(server.run(ctx)))
    });
    let null = {
        let (ctx, _abort) = sink_context("null", &sink, Path::new(""));
        server_rt.spawn(null::run_counted(
            NullConfig::default(),
            ctx,
            arrived.clone(),
        ))
    };
    let per_frame_events = RECORDS_PER_CHUNK as u64;
    let total_frames = (frames.len() * rounds * CONNECTIONS) as u64;
    let wire: u64 =
        frames.iter().map(|f| f.len() as u64).sum::<u64>() * (rounds * CONNECTIONS) as u64;
    let cpu_before = thread_cpu("ingest-server");
    let started = Instant::now();
    client_rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..CONNECTIONS {
            let frames = frames.to_vec();
            clients.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut rd, mut wr) = stream.into_split();
                let expected = frames.len() * rounds;
                let reader = tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(64 * 1024);
                    let mut acks = 0;
                    let mut chunk = [0u8; 64 * 1024];
                    while acks < expected {
                        let n = rd.read(&mut chunk).await.unwrap();
                        assert_ne!(n, 0, "the server closed");
                        buf.extend_from_slice(&chunk[..n]);
                        let mut at = 0;
                        while let Some((_, len)) = forward::decode_ack(&buf[at..]).unwrap() {
                            at += len;
                            acks += 1;
                        }
                        buf.drain(..at);
                    }
                });
                for _ in 0..rounds {
                    for f in &frames {
                        wr.write_all(f).await.unwrap();
                    }
                }
                reader.await.unwrap();
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
    });
    let want = total_frames * per_frame_events;
    while arrived.totals().events < want {
        std::thread::sleep(Duration::from_millis(1));
    }
    let wall = started.elapsed();
    let server_cpu = thread_cpu("ingest-server") - cpu_before;
    shutdown.cancel();
    server_rt.block_on(async {
        server.await.unwrap().unwrap();
        sink.close();
        null.await.unwrap().unwrap();
    });
    Ingest {
        events: want,
        wire_bytes: wire,
        payload_bytes: 0,
        wall,
        server_cpu,
    }
}

/// Frame check + decode + chunk, in a loop on this thread.
fn decode_only(frames: &[Bytes], rounds: usize) -> (u64, Duration) {
    let limits = DecodeLimits::default();
    let started = Instant::now();
    let mut events = 0u64;
    for _ in 0..rounds {
        for f in frames {
            let len = forward::frame_len(f, &limits).unwrap().unwrap();
            match forward::decode_frame(f.slice(..len), &limits).unwrap() {
                Frame::Events(m) => {
                    let c = Chunk::new(ChunkId::random(), Tag::from(m.tag), m.entries, m.count);
                    events += u64::from(std::hint::black_box(c).count());
                }
                Frame::Heartbeat => unreachable!(),
            }
        }
    }
    (events, started.elapsed())
}

fn mib(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

// ---------------------------------------------------------------------------
// The forwarder side: tail alone, and tail over a loopback forward link.

fn cri_file(dir: &std::path::Path, lines: usize) -> (PathBuf, u64) {
    let path = dir.join("checkout-7f9c8d7b5-q4m8n_shop_checkout-3f2a9c1b7d4e.log");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for i in 0..lines {
        let r = record(i);
        let msg = match r.get("log") {
            Some(Value::Str(s)) => s.to_string(),
            _ => format!(
                "{{\"level\":\"info\",\"msg\":\"order {} placed\",\"latency_ms\":{}}}",
                i * 17,
                i % 500
            ),
        };
        writeln!(
            out,
            "2024-05-01T12:00:00.{:09}Z stdout F {msg}",
            i % 1_000_000_000
        )
        .unwrap();
    }
    out.flush().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    (path, size)
}

/// Runs the tail source over `path` until `lines` events reached the sink side, with
/// the forwarder's sink being either a null sink or a forward link to an aggregator
/// with a null sink. The forwarder (tail and sink) runs on one thread, the aggregator
/// on another: the question is what shipping costs the forwarder's core, as it would
/// on a node whose aggregator is elsewhere. Returns the time taken and the CPU
/// seconds of the forwarder's thread.
fn tail_run(path: &std::path::Path, lines: u64, over_forward: bool) -> (Duration, f64) {
    let forwarder_rt = runtime("tail-forwarder");
    let aggregator_rt = runtime("tail-aggregator");
    let arrived = null::Counters::new();
    let null = Buffer::new("null", &BufferConfig::default());
    let drain_on = if over_forward {
        &aggregator_rt
    } else {
        &forwarder_rt
    };
    let drain = {
        let (ctx, _abort) = sink_context("null", &null, Path::new(""));
        drain_on.spawn(null::run_counted(
            NullConfig::default(),
            ctx,
            arrived.clone(),
        ))
    };
    let mut stop = Vec::new();
    let forwarder_sink = if over_forward {
        let mut routes = RouterBuilder::new();
        routes.sink("null", TagPattern::new("**").unwrap(), null.clone());
        let server = aggregator_rt.block_on(async {
            ForwardServer::bind(&ForwardSourceConfig {
                bind: "127.0.0.1:0".parse().unwrap(),
                ..ForwardSourceConfig::default()
            })
            .await
            .unwrap()
        });
        let addr = server.local_addr();
        let (ctx, shutdown) = source_context("aggregator", routes.build(), Path::new(""));
        aggregator_rt.spawn(server.run(ctx));
        stop.push(shutdown);
        let buffer = Buffer::new("to_aggregator", &BufferConfig::default());
        let (ctx, abort) = sink_context("to_aggregator", &buffer, Path::new(""));
        let config = ForwardSinkConfig::new(vec![ServerConfig::new("127.0.0.1", addr.port())]);
        forwarder_rt.spawn(nagare_forwarder::sinks::forward::run(config, ctx));
        stop.push(abort);
        buffer
    } else {
        null.clone()
    };
    let mut routes = RouterBuilder::new();
    routes.sink("out", TagPattern::new("**").unwrap(), forwarder_sink);
    let config: TailConfig = ConfigDocument::from_text(
        "bench.yaml",
        &format!(
            "paths: [{}]\nread_from_head: true\nformat: cri\npoll_interval: 10ms\n",
            path.display()
        ),
        |_| None,
    )
    .unwrap()
    .parse()
    .unwrap();
    let data_dir = tempfile::tempdir().unwrap();
    let (ctx, shutdown) = source_context("tail", routes.build(), data_dir.path());
    let started = Instant::now();
    let tail = forwarder_rt.spawn(nagare_forwarder::sources::tail::run(config, ctx));
    while arrived.totals().events < lines {
        std::thread::sleep(Duration::from_millis(1));
    }
    let took = started.elapsed();
    let cpu = thread_cpu("tail-forwarder");
    shutdown.cancel();
    let _ = forwarder_rt.block_on(tail);
    for s in stop {
        s.cancel();
    }
    drain.abort();
    forwarder_rt.shutdown_timeout(Duration::from_secs(1));
    aggregator_rt.shutdown_timeout(Duration::from_secs(1));
    (took, cpu)
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    if benching && std::env::var("NAGARE_BENCH_PART").as_deref() == Ok("link") {
        link_cost();
        return;
    }
    let (distinct, rounds) = if benching { (16, 40) } else { (2, 1) };
    let chunks: Vec<Chunk> = (0..distinct).map(chunk).collect();
    let payload: u64 = chunks.iter().map(|c| c.byte_size() as u64).sum();
    let server_rt = runtime("ingest-server");
    let client_rt = runtime("ingest-client");
    let cases = [
        ("uncompressed", Compression::None, rounds),
        ("gzip", Compression::Gzip, rounds / 4 + 1),
        ("zstd", Compression::Zstd, rounds / 2 + 1),
    ];
    let mut table = Vec::new();
    for (name, compression, rounds) in cases {
        let frames: Vec<Bytes> = chunks
            .iter()
            .map(|c| Bytes::from(frame(c, compression)))
            .collect();
        let (decoded, decode_time) = decode_only(&frames, rounds * CONNECTIONS);
        assert_eq!(
            decoded,
            (distinct * RECORDS_PER_CHUNK * rounds * CONNECTIONS) as u64
        );
        let mut run = ingest(&server_rt, &client_rt, &frames, rounds);
        run.payload_bytes = payload * (rounds * CONNECTIONS) as u64;
        table.push((name, run, decoded, decode_time));
    }
    if !benching {
        // Under `cargo test`: every event arrived (checked inside); print nothing.
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = cri_file(dir.path(), 2_000);
        tail_run(&path, 2_000, false);
        tail_run(&path, 2_000, true);
        return;
    }
    println!(
        "aggregator ingest: PackedForward chunks of {RECORDS_PER_CHUNK} records (avg {} B/record) from {CONNECTIONS} connections into a null sink",
        payload / (distinct * RECORDS_PER_CHUNK) as u64
    );
    println!(
        "| case | events | events/s (wall) | events/s per server core | wire MiB/s | records MiB/s | decode-only baseline, one core |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, run, decoded, decode_time) in &table {
        let per_core = run.events as f64 / run.server_cpu.max(1e-9);
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} events/s ({:.0} MiB/s) |",
            run.events,
            run.events as f64 / run.wall.as_secs_f64(),
            per_core,
            mib(run.wire_bytes, run.wall),
            mib(run.payload_bytes, run.wall),
            *decoded as f64 / decode_time.as_secs_f64(),
            mib(run.payload_bytes, *decode_time),
        );
    }
    link_cost();
}

/// What the loopback forward link costs the tailer, on two logs: this bench's mix of
/// access and JSON lines, and the tail benchmark's log (`tail_throughput`: 70 % JSON
/// messages of 100-1,000 bytes, 5 % split into `P` pieces).
fn link_cost() {
    let dir = tempfile::tempdir().unwrap();
    let lines = 2_000_000;
    let (mixed, size) = cri_file(dir.path(), lines);
    link_cost_on(
        &format!("{} MiB CRI file, {lines} lines", size >> 20),
        &mixed,
        size,
        lines as u64,
    );
    std::fs::remove_file(&mixed).unwrap();
    let tail_log = dir
        .path()
        .join("web-5d8f7c9b4-x2k7p_shop_web-9c1e2d3f4a5b.log");
    let generated = nagare_benches::cri_workload::generate(&tail_log, 256 << 20, 1);
    let size = std::fs::metadata(&tail_log).unwrap().len();
    link_cost_on(
        &format!(
            "the tail benchmark's log: {} MiB, {} messages",
            size >> 20,
            generated.messages
        ),
        &tail_log,
        size,
        generated.messages,
    );
}

/// The best of three runs each way, by wall time and by the forwarder's CPU time.
fn link_cost_on(what: &str, path: &std::path::Path, size: u64, events: u64) {
    let best = |over: bool| {
        let runs: Vec<(Duration, f64)> = (0..3).map(|_| tail_run(path, events, over)).collect();
        let wall = runs.iter().map(|r| r.0).min().unwrap();
        let cpu = runs.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
        (wall, cpu)
    };
    let (alone, alone_cpu) = best(false);
    let (linked, linked_cpu) = best(true);
    println!(
        "\nforwarder: tail ({what}) into a null sink: {:.0} MiB/s; tail -> forward -> loopback aggregator -> null sink: {:.0} MiB/s; the link costs {:.1} % in time ({:.1} % in the forwarder thread's CPU: {alone_cpu:.2} s -> {linked_cpu:.2} s)",
        mib(size, alone),
        mib(size, linked),
        (linked.as_secs_f64() / alone.as_secs_f64() - 1.0) * 100.0,
        (linked_cpu / alone_cpu - 1.0) * 100.0,
    );
}
