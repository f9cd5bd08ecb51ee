//! Aggregator memory under a steady feed, for the `*_rss` benches: the real
//! `nagare` binary as the aggregator, fed PackedForward chunks of 1,000 Kubernetes
//! records (about 330 bytes each as JSON) at a fixed rate by a client that waits
//! for each ack (so a slow aggregator slows the feed instead of queueing in the
//! client), its RSS sampled every second.
//!
//! A bench starts its destination and the aggregator, then calls [`feed`] and
//! [`Samples::report`]; under `cargo bench` ([`Plan::from_args`]) it runs
//! `NAGARE_RSS_SECS` (default 60) seconds at 20,000 records/s, under `cargo test`
//! 4 s at 2,000 records/s.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use nagare_core::compression::Compression;
use nagare_core::{ChunkBuilder, ChunkId, EventTime, Tag, forward};
use nagare_testkit::proc::rss_kib;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::corpus::kubernetes_record;

/// The aggregator under test, killed when dropped, so that a bench that fails
/// midway leaves no process behind.
#[derive(Debug)]
pub struct Aggregator(pub std::process::Child);

impl Aggregator {
    /// Writes `config` to `dir/aggregator.yaml`, runs the plan's binary on it with
    /// `env` added (its log in `dir/aggregator.log`, see [`log`]) and waits until it
    /// listens on `port`.
    ///
    /// [`log`]: Aggregator::log
    pub fn start(plan: &Plan, dir: &Path, config: &str, env: &[(&str, &str)], port: u16) -> Self {
        let path = dir.join("aggregator.yaml");
        std::fs::write(&path, config).expect("write the aggregator's config");
        let log = std::fs::File::create(dir.join("aggregator.log")).expect("create its log");
        let child = Command::new(plan.binary())
            .args(["run", "-c"])
            .arg(&path)
            .env("NAGARE_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the aggregator");
        let aggregator = Aggregator(child);
        wait_listening(port);
        aggregator
    }

    /// What the aggregator started in `dir` has logged.
    pub fn log(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("aggregator.log")).unwrap_or_default()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Kills it and waits for it to be gone.
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Records in each chunk of the feed.
pub const RECORDS_PER_CHUNK: usize = 1_000;
/// Seconds of samples left out of the flatness check: the start fills caches and
/// pools.
const WARM_UP: usize = 10;

/// How long and how fast to feed.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Whether this is `cargo bench` (else `cargo test`: short and slow).
    pub benching: bool,
    /// Seconds of feed.
    pub seconds: u64,
    /// Records per second.
    pub rate: u64,
}

impl Plan {
    /// From the command line criterion's runner passes (`--bench` under `cargo
    /// bench`) and `NAGARE_RSS_SECS`.
    pub fn from_args() -> Plan {
        let benching = std::env::args().any(|a| a == "--bench");
        if !benching {
            return Plan {
                benching,
                seconds: 4,
                rate: 2_000,
            };
        }
        let seconds = std::env::var("NAGARE_RSS_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        Plan {
            benching,
            seconds,
            rate: 20_000,
        }
    }

    /// The `nagare` binary: `NAGARE_BIN`, else `target/release/nagare` when
    /// benching and `target/debug/nagare` under `cargo test`.
    pub fn binary(&self) -> PathBuf {
        if let Some(bin) = std::env::var_os("NAGARE_BIN") {
            return PathBuf::from(bin);
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let bin = target
            .join(if self.benching { "release" } else { "debug" })
            .join("nagare");
        assert!(
            bin.exists(),
            "{} is missing: build it first (cargo build --release), or name the binary in NAGARE_BIN",
            bin.display()
        );
        bin
    }
}

/// A PackedForward frame of `RECORDS_PER_CHUNK` records `from..` over `pods` pods,
/// tagged `tag` and timed `now`.
pub fn frame(tag: &str, from: usize, pods: usize, now: i64) -> Vec<u8> {
    let mut b = ChunkBuilder::new(Tag::new(tag));
    for i in from..from + RECORDS_PER_CHUNK {
        b.push(
            EventTime::new(now, (i % 1_000_000) as u32 * 1000),
            &kubernetes_record(i, pods),
        );
    }
    let chunk = b.finish().expect("records encode");
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

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs() as i64
}

/// Waits (20 s at most) for the aggregator to listen on `port`.
pub fn wait_listening(port: u16) {
    let listening = nagare_testkit::wait_until(Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(listening, "the aggregator does not listen on port {port}");
}

/// What a feed measured: the aggregator's RSS and the records acked so far, each
/// second, and the records acked in all.
#[derive(Debug)]
pub struct Samples {
    /// (RSS in KiB, records acked) at the end of each second.
    pub each_second: Vec<(u64, u64)>,
    /// Records the aggregator acknowledged.
    pub sent: u64,
}

/// Feeds the aggregator listening on `port` (process `pid`) records tagged `tag`
/// over `pods` pods, as `plan` says, sampling its RSS every second.
pub fn feed(pid: u32, port: u16, tag: &str, pods: usize, plan: &Plan) -> Samples {
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let acked = Arc::new(AtomicU64::new(0));
    let feeding = Arc::new(AtomicBool::new(true));
    let rate = plan.rate;
    let tag = tag.to_string();
    let feeder = {
        let (acked, feeding) = (acked.clone(), feeding.clone());
        std::thread::spawn(move || {
            client.block_on(async move {
                let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("the aggregator listens");
                stream.set_nodelay(true).expect("TCP_NODELAY");
                let per_chunk = Duration::from_secs_f64(RECORDS_PER_CHUNK as f64 / rate as f64);
                let t0 = tokio::time::Instant::now();
                let mut n = 0usize;
                let mut buf = Vec::new();
                while feeding.load(Ordering::Relaxed) {
                    let chunk = frame(&tag, n * RECORDS_PER_CHUNK, pods, now_secs());
                    stream
                        .write_all(&chunk)
                        .await
                        .expect("the aggregator reads");
                    loop {
                        if let Ok(Some((_, len))) = forward::decode_ack(&buf) {
                            buf.drain(..len);
                            break;
                        }
                        let mut part = [0u8; 512];
                        let got = stream.read(&mut part).await.expect("the aggregator acks");
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
    let mut each_second = Vec::new();
    let t0 = Instant::now();
    for second in 1..=plan.seconds {
        std::thread::sleep(
            (t0 + Duration::from_secs(second)).saturating_duration_since(Instant::now()),
        );
        each_second.push((rss_kib(pid), acked.load(Ordering::Relaxed)));
    }
    feeding.store(false, Ordering::Relaxed);
    feeder.join().expect("the feed ends");
    Samples {
        each_second,
        sent: acked.load(Ordering::Relaxed),
    }
}

impl Samples {
    /// Prints the samples and a summary line named `name`, with `delivered` (what
    /// the destination holds, `drain_secs` after the feed stopped); returns whether
    /// the RSS after the warm-up stayed within 20 %.
    pub fn report(&self, name: &str, plan: &Plan, delivered: &str, drain_secs: f64) -> bool {
        println!("second  rss_MiB  acked_records");
        for (i, (rss, acked)) in self.each_second.iter().enumerate() {
            println!("{:>6}  {:>7.1}  {:>13}", i + 1, *rss as f64 / 1024.0, acked);
        }
        let skip = WARM_UP.min(self.each_second.len() / 2);
        let steady: Vec<u64> = self.each_second.iter().skip(skip).map(|s| s.0).collect();
        let min = steady.iter().copied().min().unwrap_or(0) as f64;
        let max = steady.iter().copied().max().unwrap_or(0) as f64;
        let flat = max <= min * 1.2;
        println!(
            "{name}: {} records acked in {} s ({:.0}/s, target {}/s); RSS after {skip} s: {:.1} to {:.1} MiB ({:+.1} %): {}; {delivered} ({drain_secs:.1} s after the feed stopped)",
            self.sent,
            plan.seconds,
            self.sent as f64 / plan.seconds as f64,
            plan.rate,
            min / 1024.0,
            max / 1024.0,
            (max / min - 1.0) * 100.0,
            if flat {
                "flat within 20 %"
            } else {
                "NOT flat within 20 %"
            },
        );
        flat
    }
}
