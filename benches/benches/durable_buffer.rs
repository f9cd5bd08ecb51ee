//! The file buffer's cost and the aggregator's memory during an outage.
//!
//! 1. Write-then-read: chunks of 1,000 realistic records pushed into a file buffer
//!    (zstd level 1, `fsync: per_chunk`, appended to segment files), popped, read
//!    back and acked, beside a plain sequential write of the same
//!    bytes to one file in the same run, fsynced once at the end and, for the same
//!    durability as the buffer, after each chunk. Two ways: one producer pushing every
//!    chunk, then the reads; and as an aggregator uses it, 4 producers (its
//!    connections) pushing at once while a consumer (its sink) pops, reads and acks.
//!    MiB/s of encoded records (all bytes / wall time), and the ratios.
//! 2. Outage: an aggregator (forward server -> file buffer -> Elasticsearch sink) in
//!    this process, fed PackedForward chunks at 20,000 records/s by a client that
//!    waits for acks, while its destination accepts connections and never answers.
//!    Resident memory of the process, sampled every second, and the bytes of the
//!    file buffer on disk.
//!
//!   cargo bench -p nagare-benches --bench durable_buffer
//!
//! The outage lasts `NAGARE_OUTAGE_SECS` seconds (default 120; 600 is the issue's
//! ten minutes). Under `cargo test` both parts run small and check their counts.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nagare_aggregator::sinks::elasticsearch::{self, ElasticsearchConfig};
use nagare_aggregator::sources::forward::{ForwardServer, ForwardSourceConfig};
use nagare_core::buffer::{Buffer, BufferConfig, FlushMode, FsyncPolicy};
use nagare_core::compression::Compression;
use nagare_core::config::ByteSize;
use nagare_core::forward;
use nagare_core::pattern::TagPattern;
use nagare_core::router::RouterBuilder;
use nagare_core::testing::{sink_context, source_context};
use nagare_core::{Chunk, ChunkBuilder, EventTime, Map, Tag};
use nagare_testkit::proc::{dir_bytes, rss_kib};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

/// The `nagare` binary's allocator, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const RECORDS_PER_CHUNK: usize = 1_000;
/// The outage's feed rate.
const RECORDS_PER_SECOND: usize = 20_000;

/// A container log record after the tail source and the Kubernetes filter.
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
    m.insert(
        "log",
        format!(
            "{{\"level\":\"info\",\"msg\":\"order placed\",\"order_id\":{},\"user\":\"u{}\",\"latency_ms\":{}}}",
            i * 7919 % 1_000_003,
            i % 977,
            i % 250
        ),
    );
    let mut k8s = Map::new();
    k8s.insert("namespace_name", "shop");
    k8s.insert("pod_name", format!("checkout-7d9f8-{}", i % 5));
    k8s.insert("container_name", "app");
    m.insert("kubernetes", k8s);
    m
}

fn chunk(n: usize) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new("kube.shop.checkout"));
    for i in 0..RECORDS_PER_CHUNK {
        let at = n * RECORDS_PER_CHUNK + i;
        b.push(
            EventTime::new(1_714_564_800 + at as i64 / 1000, 0),
            &record(at),
        );
    }
    b.finish().expect("records were pushed")
}

fn runtime(name: &str, threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap()
}

fn mib(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / time.as_secs_f64().max(1e-9)
}

/// Producers pushing at once in the aggregator-like run: the forward_ingest bench's
/// connections.
const PRODUCERS: usize = 4;

struct WriteRead {
    bytes: u64,
    disk_bytes: u64,
    /// One producer pushes every chunk, then they are read.
    buffer: Duration,
    /// `PRODUCERS` producers push while a consumer reads.
    buffer_concurrent: Duration,
    plain: Duration,
    /// The plain write with the file buffer's durability: fsynced after each chunk.
    plain_synced: Duration,
}

fn open_buffer(dir: &Path, fsync: FsyncPolicy) -> Buffer {
    let config = BufferConfig {
        total_limit_size: ByteSize(4 << 30),
        flush_mode: FlushMode::Immediate,
        compress_level: 1,
        fsync,
        ..BufferConfig::file(dir.join("buffer"))
    };
    Buffer::open("bench", &config, dir).unwrap()
}

/// Pops, reads and acks `n` chunks.
async fn consume(buffer: &Buffer, n: usize) {
    for _ in 0..n {
        let lease = buffer.pop().await.expect("every chunk is queued");
        assert_eq!(lease.chunk().count() as usize, RECORDS_PER_CHUNK);
        lease.delivered();
    }
}

/// Pushes every chunk into a file buffer, then pops, reads and acks them all; does it
/// again with `PRODUCERS` producers and a consumer at once; and writes the same
/// encoded bytes to one plain file.
fn write_then_read(rt: &Runtime, dir: &Path, chunks: &[Chunk], fsync: FsyncPolicy) -> WriteRead {
    let bytes: u64 = chunks.iter().map(|c| c.byte_size() as u64).sum();
    let one = dir.join("one");
    let buffer = open_buffer(&one, fsync);
    let started = Instant::now();
    let disk_bytes = rt.block_on(async {
        for c in chunks {
            buffer.push(c.clone()).await.unwrap();
        }
        let disk = dir_bytes(&one.join("buffer"));
        consume(&buffer, chunks.len()).await;
        disk
    });
    let buffer_time = started.elapsed();
    assert_eq!(buffer.stats(), Default::default());

    let many = dir.join("many");
    let buffer = open_buffer(&many, fsync);
    let shares: Vec<Vec<Chunk>> = (0..PRODUCERS)
        .map(|p| chunks.iter().skip(p).step_by(PRODUCERS).cloned().collect())
        .collect();
    let started = Instant::now();
    rt.block_on(async {
        let producers: Vec<_> = shares
            .into_iter()
            .map(|share| {
                let buffer = buffer.clone();
                tokio::spawn(async move {
                    for c in share {
                        buffer.push(c).await.unwrap();
                    }
                })
            })
            .collect();
        consume(&buffer, chunks.len()).await;
        for p in producers {
            p.await.unwrap();
        }
    });
    let buffer_concurrent = started.elapsed();
    assert_eq!(buffer.stats(), Default::default());

    let started = Instant::now();
    let mut file = std::fs::File::create(dir.join("plain")).unwrap();
    for c in chunks {
        file.write_all(c.entries()).unwrap();
    }
    file.sync_all().unwrap();
    let plain = started.elapsed();
    drop(file);
    std::fs::remove_file(dir.join("plain")).unwrap();

    let started = Instant::now();
    let mut file = std::fs::File::create(dir.join("plain")).unwrap();
    for c in chunks {
        file.write_all(c.entries()).unwrap();
        file.sync_data().unwrap();
    }
    let plain_synced = started.elapsed();
    drop(file);
    std::fs::remove_file(dir.join("plain")).unwrap();
    WriteRead {
        bytes,
        disk_bytes,
        buffer: buffer_time,
        buffer_concurrent,
        plain,
        plain_synced,
    }
}

struct Outage {
    samples: Vec<(u64, u64)>,
    records: u64,
}

/// Feeds an aggregator whose destination never answers for `seconds`, sampling its
/// resident memory and file buffer every second.
fn outage(dir: &Path, seconds: u64) -> Outage {
    // The destination: accepts connections and never answers, as a stopped
    // Elasticsearch node does (`api_version` given: no `GET /` waits at start, the
    // sink leases and retries `_bulk` requests as in an outage mid-stream).
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hole_addr = hole.local_addr().unwrap();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for s in hole.incoming().flatten() {
                held.lock().unwrap().push(s);
            }
        });
    }
    let server_rt = runtime("aggregator", 2);
    let client_rt = runtime("client", 1);
    let buffer_dir = dir.join("outage");
    let buffer_config: BufferConfig = serde_norway::from_str(&format!(
        "type: file\npath: {}\ntotal_limit_size: 4GiB\nflush_interval: 1s\nretry_forever: true\nretry_wait: 1s\nretry_max_interval: 5s\n",
        buffer_dir.display()
    ))
    .unwrap();
    let buffer = Buffer::open("es", &buffer_config, dir).unwrap();
    let es_config: ElasticsearchConfig = serde_norway::from_str(&format!(
        "endpoints: [\"http://{hole_addr}\"]\nrequest_timeout: 5s\napi_version: v8\n"
    ))
    .unwrap();
    let mut routes = RouterBuilder::new();
    routes.sink("es", TagPattern::new("**").unwrap(), buffer.clone());
    let (ctx, stop) = source_context("nodes", routes.build(), dir);
    let (sink_ctx, abort) = sink_context("es", &buffer, dir);
    let (addr, server, sink) = server_rt.block_on(async {
        let config = ForwardSourceConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            ..ForwardSourceConfig::default()
        };
        let server = ForwardServer::bind(&config).await.unwrap();
        let sink = tokio::spawn(elasticsearch::run(es_config, sink_ctx));
        (server.local_addr(), tokio::spawn(server.run(ctx)), sink)
    });

    // The feed: 20 chunks of 1,000 records a second, each acked before it counts.
    let distinct: Vec<Chunk> = (0..20).map(chunk).collect();
    let acked = Arc::new(AtomicU64::new(0));
    let feeding = Arc::new(AtomicBool::new(true));
    let feed = {
        let (acked, feeding) = (acked.clone(), feeding.clone());
        client_rt.spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut rd, mut wr) = stream.into_split();
            let reader = {
                let acked = acked.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut part = [0u8; 4096];
                    loop {
                        let Ok(n) = rd.read(&mut part).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&part[..n]);
                        let mut at = 0;
                        while let Ok(Some((_, len))) = forward::decode_ack(&buf[at..]) {
                            at += len;
                            acked.fetch_add(RECORDS_PER_CHUNK as u64, Ordering::Relaxed);
                        }
                        buf.drain(..at);
                    }
                })
            };
            let per_chunk =
                Duration::from_secs_f64(RECORDS_PER_CHUNK as f64 / RECORDS_PER_SECOND as f64);
            let t0 = tokio::time::Instant::now();
            let mut n = 0u32;
            while feeding.load(Ordering::Relaxed) {
                let c = &distinct[n as usize % distinct.len()];
                let id = nagare_core::ChunkId::random().to_base64();
                let (head, tail) = forward::encode_packed_forward(
                    c.tag(),
                    c.entries().len(),
                    c.count(),
                    Some(&id),
                    Compression::None,
                );
                wr.write_all(&head).await.unwrap();
                wr.write_all(c.entries()).await.unwrap();
                wr.write_all(&tail).await.unwrap();
                n += 1;
                tokio::time::sleep_until(t0 + per_chunk * n).await;
            }
            drop(wr);
            reader.abort();
        })
    };

    let mut samples = Vec::new();
    let t0 = Instant::now();
    for second in 1..=seconds {
        std::thread::sleep(
            (t0 + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        samples.push((rss_kib(std::process::id()), dir_bytes(&buffer_dir)));
    }
    feeding.store(false, Ordering::Relaxed);
    let _ = client_rt.block_on(feed);
    let records = acked.load(Ordering::Relaxed);
    stop.cancel();
    server_rt.block_on(async {
        server.await.unwrap().unwrap();
        buffer.close();
        abort.cancel();
        sink.await.unwrap().unwrap();
    });
    drop(held);
    Outage { samples, records }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let rt = runtime("buffer", 2);
    let dir = tempfile::tempdir().unwrap();
    let (count, rounds) = if benching { (256, 3) } else { (8, 1) };
    let chunks: Vec<Chunk> = (0..count).map(chunk).collect();
    let mut runs = Vec::new();
    let mut unsynced = Vec::new();
    for round in 0..rounds {
        let round_dir = dir.path().join(format!("round-{round}"));
        std::fs::create_dir_all(&round_dir).unwrap();
        runs.push(write_then_read(
            &rt,
            &round_dir,
            &chunks,
            FsyncPolicy::PerChunk,
        ));
        if benching {
            let round_dir = dir.path().join(format!("never-{round}"));
            std::fs::create_dir_all(&round_dir).unwrap();
            unsynced.push(write_then_read(
                &rt,
                &round_dir,
                &chunks,
                FsyncPolicy::Never,
            ));
        }
    }
    let seconds = if benching {
        std::env::var("NAGARE_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120)
    } else {
        3
    };
    let out = outage(dir.path(), seconds);
    // Every chunk sent was acked: the aggregator kept taking data with its
    // destination gone (all but the last chunk or two in flight at the end).
    let sent_about = seconds * RECORDS_PER_SECOND as u64;
    assert!(
        out.records + 5 * RECORDS_PER_CHUNK as u64 >= sent_about,
        "{} of about {sent_about} records acked",
        out.records
    );
    let grown = out.samples.last().map_or(0, |s| s.1);
    assert!(grown > 0, "the file buffer holds the backlog");
    if !benching {
        return;
    }

    // The ceiling compression sets: zstd level 1 alone, compress then decompress each
    // chunk's bytes, on one core.
    let started = Instant::now();
    for c in &chunks {
        let packed = zstd::bulk::compress(c.entries(), 1).unwrap();
        let back = zstd::bulk::decompress(&packed, c.entries().len()).unwrap();
        assert_eq!(back.len(), c.entries().len());
    }
    let zstd_alone = started.elapsed();
    let first = &runs[0];
    println!(
        "file buffer write-then-read: {} chunks of {RECORDS_PER_CHUNK} records, {:.1} MiB of encoded records ({:.1} MiB on disk, zstd level 1, fsync per chunk)",
        count,
        first.bytes as f64 / 1048576.0,
        first.disk_bytes as f64 / 1048576.0
    );
    println!(
        "| round | fsync | producers | file buffer write+read MiB/s | plain sequential write (one fsync at the end) MiB/s | ratio | plain write fsynced per chunk MiB/s | ratio |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, (r, n)) in runs.iter().zip(&unsynced).enumerate() {
        for (policy, r) in [("per chunk", r), ("never", n)] {
            let (p, ps) = (mib(r.bytes, r.plain), mib(r.bytes, r.plain_synced));
            for (producers, took) in [
                ("1, then the reads".to_string(), r.buffer),
                (
                    format!("{PRODUCERS}, a consumer at once"),
                    r.buffer_concurrent,
                ),
            ] {
                let b = mib(r.bytes, took);
                println!(
                    "| {} | {policy} | {producers} | {b:.0} | {p:.0} | {:.0} % | {ps:.0} | {:.0} % |",
                    i + 1,
                    b / p * 100.0,
                    b / ps * 100.0
                );
            }
        }
    }

    println!(
        "zstd level 1 alone (compress + decompress of the same bytes, one core): {:.0} MiB/s",
        mib(first.bytes, zstd_alone)
    );

    // Flat memory: the peak after a warm-up (the first tenth of the run, at least
    // 10 s) beside the level at the end of the warm-up.
    let warm = ((seconds / 10).max(10) as usize).min(out.samples.len() - 1);
    let base = out.samples[warm - 1].0;
    let peak = out.samples[warm..]
        .iter()
        .map(|s| s.0)
        .max()
        .unwrap_or(base);
    let low = out.samples[warm..]
        .iter()
        .map(|s| s.0)
        .min()
        .unwrap_or(base);
    println!(
        "outage: {seconds} s at {RECORDS_PER_SECOND} records/s into an aggregator whose Elasticsearch never answers; {} records acked",
        out.records
    );
    println!(
        "RSS after {warm} s: {base} KiB; afterwards between {low} and {peak} KiB ({:+.1} % at the peak); file buffer on disk: {:.1} MiB at {warm} s, {:.1} MiB at the end",
        (peak as f64 / base as f64 - 1.0) * 100.0,
        out.samples[warm - 1].1 as f64 / 1048576.0,
        grown as f64 / 1048576.0
    );
    let every = (out.samples.len() / 12).max(1);
    let trace: Vec<String> = out
        .samples
        .iter()
        .enumerate()
        .filter(|(i, _)| (i + 1) % every == 0)
        .map(|(i, s)| {
            format!(
                "{}s:{}MiB/{:.0}MiB",
                i + 1,
                s.0 / 1024,
                s.1 as f64 / 1048576.0
            )
        })
        .collect();
    println!("RSS / buffer on disk: {}", trace.join(" "));
}
