//! Aggregator resident memory while delivering 20,000 events/s to CloudWatch Logs.
//!
//! The real `nagare` binary as the aggregator (forward source -> memory buffer ->
//! `cloudwatch_logs` sink, four PutLogEvents in flight) delivers to moto's server
//! (signatures checked), fed PackedForward chunks of 1,000 Kubernetes records (about
//! 330 bytes each as JSON) at 20,000 records/s by a client that waits for each ack.
//! The aggregator's RSS is sampled every second; after a warm-up of 10 s the samples
//! must stay within 20 % of each other. At the end, the events moto holds are
//! counted (it stores them all, so it falls behind if it cannot keep up; the feed's
//! acks show whether the aggregator did).
//!
//!   cargo build --release && cargo bench -p nagare-benches --bench cloudwatch_rss
//!
//! `NAGARE_BIN` names the binary (default: `target/release/nagare`, or
//! `target/debug/nagare` under `cargo test`); `NAGARE_RSS_SECS` the duration
//! (default 60). Under `cargo test` it runs 4 s at 2,000 records/s and checks that
//! every event arrives.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nagare_benches::corpus::kubernetes_record;
use nagare_core::compression::Compression;
use nagare_core::{ChunkBuilder, ChunkId, EventTime, Tag, forward};
use nagare_testkit::moto::{Moto, REGION};
use nagare_testkit::proc::rss_kib;
use nagare_testkit::{free_port, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RECORDS_PER_CHUNK: usize = 1_000;
/// Pods, so streams, the records are spread over.
const PODS: usize = 8;
const WARM_UP: usize = 10;

/// A PackedForward frame of `RECORDS_PER_CHUNK` records `from..`, timed `now`.
fn frame(from: usize, now: i64) -> Vec<u8> {
    let mut b = ChunkBuilder::new(Tag::new("kube.shop.checkout"));
    for i in from..from + RECORDS_PER_CHUNK {
        b.push(
            EventTime::new(now, (i % 1_000_000) as u32 * 1000),
            &kubernetes_record(i, PODS),
        );
    }
    let chunk = b.finish().unwrap();
    let id = ChunkId::random().to_base64();
    let (mut out, tail) = forward::encode_packed_forward(
        chunk.tag(),
        chunk.entries().len(),
        chunk.count(),
        Some(&id),
        Compression::None,
    );
    out.extend_from_slice(chunk.entries());
    out.extend_from_slice(&tail);
    out
}

fn binary(benching: bool) -> PathBuf {
    if let Some(bin) = std::env::var_os("NAGARE_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target
        .join(if benching { "release" } else { "debug" })
        .join("nagare");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build --release), or name the binary in NAGARE_BIN",
        bin.display()
    );
    bin
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (seconds, rate) = if benching {
        let secs = std::env::var("NAGARE_RSS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        (secs, 20_000)
    } else {
        (4, 2_000)
    };
    let moto = Moto::shared();
    let key = moto.credentials();
    let group = Moto::unique("/bench/rss");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "data_dir: {data}
sources:
  nodes:
    type: forward
    bind: 127.0.0.1:{port}
sinks:
  cloudwatch:
    type: cloudwatch_logs
    match: \"kube.**\"
    log_group_name: \"{group}\"
    log_stream_name: \"{{kubernetes.pod_name}}\"
    endpoint: \"{endpoint}\"
    aws:
      region: {REGION}
    buffer:
      total_limit_size: 256MiB
      flush_thread_count: 4
",
        data = dir.path().join("data").display(),
        endpoint = moto.url(),
    );
    let path = dir.path().join("aggregator.yaml");
    std::fs::write(&path, config).unwrap();
    let mut aggregator = Command::new(binary(benching))
        .args(["run", "-c"])
        .arg(&path)
        .env("AWS_ACCESS_KEY_ID", &key.id)
        .env("AWS_SECRET_ACCESS_KEY", &key.secret)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NAGARE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("aggregator.log")).unwrap())
        .spawn()
        .unwrap();
    let pid = aggregator.id();
    assert!(
        wait_until(Duration::from_secs(20), || std::net::TcpStream::connect((
            "127.0.0.1",
            port
        ))
        .is_ok()),
        "the aggregator does not listen"
    );

    // The feed: a chunk every 1,000 / rate seconds, each sent once the last one's ack
    // came, so a slow aggregator slows the feed rather than queueing in the client.
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    let feeding = Arc::new(AtomicBool::new(true));
    let feed = {
        let (acked, feeding) = (acked.clone(), feeding.clone());
        std::thread::spawn(move || {
            client.block_on(async move {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                stream.set_nodelay(true).unwrap();
                let per_chunk = Duration::from_secs_f64(RECORDS_PER_CHUNK as f64 / rate as f64);
                let t0 = tokio::time::Instant::now();
                let mut n = 0usize;
                let mut buf = Vec::new();
                while feeding.load(Ordering::Relaxed) {
                    stream
                        .write_all(&frame(n * RECORDS_PER_CHUNK, now_secs()))
                        .await
                        .unwrap();
                    loop {
                        if let Ok(Some((_, len))) = forward::decode_ack(&buf) {
                            buf.drain(..len);
                            break;
                        }
                        let mut part = [0u8; 512];
                        let got = stream.read(&mut part).await.unwrap();
                        assert!(got > 0, "the aggregator closed the connection");
                        buf.extend_from_slice(&part[..got]);
                    }
                    acked.fetch_add(RECORDS_PER_CHUNK as u64, Ordering::Relaxed);
                    n += 1;
                    tokio::time::sleep_until(t0 + per_chunk * n as u32).await;
                }
            })
        })
    };

    let mut samples = Vec::new();
    let t0 = Instant::now();
    for second in 1..=seconds {
        std::thread::sleep(
            (t0 + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        samples.push((rss_kib(pid), acked.load(Ordering::Relaxed)));
    }
    feeding.store(false, Ordering::Relaxed);
    feed.join().unwrap();
    let sent = acked.load(Ordering::Relaxed);

    // Everything the aggregator acknowledged reaches moto.
    let count = || -> u64 {
        moto.streams(&group)
            .iter()
            .map(|s| moto.events(&group, s).len() as u64)
            .sum()
    };
    let drained = Instant::now();
    let mut stored = 0;
    let all = wait_until(Duration::from_secs(600), || {
        stored = count();
        stored >= sent
    });
    let drain_secs = drained.elapsed().as_secs_f64();
    // Measured and delivered: no need for a graceful stop.
    let _ = aggregator.kill();
    let _ = aggregator.wait();

    println!("second  rss_MiB  acked_records");
    for (i, (rss, acked)) in samples.iter().enumerate() {
        println!("{:>6}  {:>7.1}  {:>13}", i + 1, *rss as f64 / 1024.0, acked);
    }
    let skip = WARM_UP.min(samples.len() / 2);
    let steady: Vec<u64> = samples.iter().skip(skip).map(|s| s.0).collect();
    let (min, max) = (
        *steady.iter().min().unwrap() as f64,
        *steady.iter().max().unwrap() as f64,
    );
    let flat = max <= min * 1.2;
    println!(
        "cloudwatch_rss: {sent} records acked in {seconds} s ({:.0}/s, target {rate}/s); RSS after {skip} s: {:.1} to {:.1} MiB ({:+.1} %): {}; moto holds {stored} events ({:.1} s after the feed stopped)",
        sent as f64 / seconds as f64,
        min / 1024.0,
        max / 1024.0,
        (max / min - 1.0) * 100.0,
        if flat {
            "flat within 20 %"
        } else {
            "NOT flat within 20 %"
        },
        drain_secs,
    );
    assert!(
        all,
        "moto holds {stored} of the {sent} events the aggregator acknowledged"
    );
    if !benching {
        assert_eq!(stored, sent);
    }
}
