//! The tail source's throughput and memory.
//!
//! 1. Resident memory while tailing 200 container log files (read from their start,
//!    then appended to while the source runs): the process's peak RSS (VmHWM).
//! 2. Throughput on one core over one file of realistic CRI lines (70 % JSON
//!    messages, 80-1000 bytes, some split into `P` pieces): the real tail source
//!    (discovery, CRI framing and merge, JSON merge, record and chunk encoding,
//!    checkpoint tracking) on a current-thread runtime, delivering into a null next hop
//!    (a buffer whose consumer acknowledges at once); beside it, in the same run, a
//!    bare loop that reads the file, splits the CRI fields and parses JSON messages
//!    with serde_json.
//!
//! 3. What metrics cost: the same run with the source's metrics in a registry that a
//!    thread renders (as a `/metrics` scrape does) every 100 ms, against a run whose
//!    metrics nothing reads, in paired rounds (`NAGARE_BENCH_METRICS_ROUNDS`, default
//!    7; the order swapped each round): the best of each, and the median of the
//!    rounds' ratios.
//!
//! `cargo bench --bench tail_throughput` uses a 1 GiB file; run as a test (`cargo
//! test --benches`) it uses a small one and finishes in a few seconds.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nagare_aggregator::sinks::null::{self, NullConfig};
use nagare_benches::cri_workload::generate;
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::component::SourceContext;
use nagare_core::config::HumanDuration;
use nagare_core::metrics::{ComponentMetrics, Metrics};
use nagare_core::pattern::TagPattern;
use nagare_core::router::RouterBuilder;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::sink_context;
use nagare_forwarder::filters::kubernetes::ApiMode;
use nagare_forwarder::sources::tail::{
    TailConfig, TailFormat, TailMetrics, TailSourceError, run_with_metrics,
};

/// The `nagare` binary's allocator, so that the figures are the binary's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const MIB: f64 = 1024.0 * 1024.0;

struct Sizes {
    big_file: u64,
    files: usize,
    per_file: u64,
    append_for: Duration,
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes = if bench {
        Sizes {
            big_file: 1 << 30,
            files: 200,
            per_file: 256 << 10,
            append_for: Duration::from_secs(5),
        }
    } else {
        Sizes {
            big_file: 16 << 20,
            files: 200,
            per_file: 16 << 10,
            append_for: Duration::from_millis(500),
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("nagare-tail-bench-")
        .tempdir()
        .expect("temporary directory");

    let rss = many_files(dir.path(), &sizes);
    println!(
        "tail_throughput: resident memory while tailing {} files: {:.1} MiB peak (VmHWM), {:.1} MiB at the end (VmRSS)",
        sizes.files,
        rss.0 as f64 / 1024.0,
        rss.1 as f64 / 1024.0
    );

    let big = dir.path().join("big");
    std::fs::create_dir_all(&big).unwrap();
    let path = big.join(format!(
        "checkout-7f9c8d7b5-q4m8n_shop_checkout-{}.log",
        "ab".repeat(32)
    ));
    let stats = generate(&path, sizes.big_file, 1);
    let size = std::fs::metadata(&path).unwrap().len();
    // Warm the page cache so both sides read from memory.
    bare_loop(&path);
    let (bare_secs, bare_json) = bare_loop(&path);
    let (tail_secs, records) = tail_file(&big, dir.path().join("state"), stats.messages);
    assert_eq!(records, stats.messages, "every message became a record");
    assert!(bare_json > 0);

    let mib = size as f64 / MIB;
    println!(
        "tail_throughput: {:.1} MiB of CRI lines, {} lines ({:.0} % JSON messages, {:.1} % of messages split into P pieces), {} messages",
        mib,
        stats.lines,
        stats.json as f64 * 100.0 / stats.messages as f64,
        stats.split as f64 * 100.0 / stats.messages as f64,
        stats.messages
    );
    println!(
        "  bare read + CRI split + serde_json (one core): {:>7.1} MiB/s",
        mib / bare_secs
    );
    if std::env::var_os("NAGARE_BENCH_SOURCE_KEYS").is_some() {
        println!("  (NAGARE_BENCH_SOURCE_KEYS: records carry path_key, offset_key, event_id_key)");
    }
    println!(
        "  nagare tail source -> null next hop (one core): {:>7.1} MiB/s  ({:.2}x the bare loop, {:.0} records/s)",
        mib / tail_secs,
        bare_secs / tail_secs,
        records as f64 / tail_secs
    );

    let cost = scrape_cost(&big, dir.path(), stats.messages);
    println!(
        "  metrics: unread {:>7.1} MiB/s, rendered every 100 ms {:>7.1} MiB/s (best of {} each: {:.3}x the unread speed; median of the {} paired rounds: {:.3}x), slowest render of its registry {:.0} µs",
        mib / cost.quiet,
        mib / cost.scraped,
        cost.ratios.len(),
        cost.quiet / cost.scraped,
        cost.ratios.len(),
        cost.median_ratio(),
        cost.slowest.as_secs_f64() * 1e6
    );
}

/// What reading the metrics costs the tail source.
struct ScrapeCost {
    /// Best seconds with metrics nothing reads.
    quiet: f64,
    /// Best seconds with metrics rendered every 100 ms.
    scraped: f64,
    /// Each round's rendered speed over its unread speed.
    ratios: Vec<f64>,
    /// The slowest render seen.
    slowest: Duration,
}

impl ScrapeCost {
    fn median_ratio(&self) -> f64 {
        let mut r = self.ratios.clone();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    }
}

/// Tails the file in paired rounds (`NAGARE_BENCH_METRICS_ROUNDS`, default 7): with
/// metrics nothing reads, and with them in a registry a thread renders every 100 ms,
/// the order swapped each round so that a drift of the machine's speed cancels out.
fn scrape_cost(big: &Path, root: &Path, messages: u64) -> ScrapeCost {
    let rounds: usize = std::env::var("NAGARE_BENCH_METRICS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let mut cost = ScrapeCost {
        quiet: f64::MAX,
        scraped: f64::MAX,
        ratios: Vec::new(),
        slowest: Duration::ZERO,
    };
    for round in 0..rounds {
        let unread = || {
            let (secs, records) =
                tail_file(big, root.join(format!("state-quiet-{round}")), messages);
            assert_eq!(records, messages);
            secs
        };
        let (quiet, scraped) = if round % 2 == 0 {
            let q = unread();
            (
                q,
                scraped_round(big, root, messages, round, &mut cost.slowest),
            )
        } else {
            let s = scraped_round(big, root, messages, round, &mut cost.slowest);
            (unread(), s)
        };
        cost.quiet = cost.quiet.min(quiet);
        cost.scraped = cost.scraped.min(scraped);
        cost.ratios.push(quiet / scraped);
    }
    cost
}

/// One round with the metrics rendered every 100 ms: the seconds it took.
fn scraped_round(
    big: &Path,
    root: &Path,
    messages: u64,
    round: usize,
    slowest: &mut Duration,
) -> f64 {
    {
        let registry = Metrics::new("bench");
        let metrics = registry.component("bench", "source", "tail");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let scraper = {
            let (registry, stop) = (registry.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut slowest = Duration::ZERO;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let at = Instant::now();
                    let text = registry.render();
                    slowest = slowest.max(at.elapsed());
                    assert!(text.contains("nagare_component_received_events_total"));
                    std::thread::sleep(Duration::from_millis(100));
                }
                slowest
            })
        };
        let state = root.join(format!("state-scraped-{round}"));
        let (secs, records) = tail_file_counted(big, state, messages, metrics);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        *slowest = (*slowest).max(scraper.join().unwrap());
        assert_eq!(records, messages);
        assert!(registry.render().contains("nagare_tail_read_lines_total"));
        secs
    }
}

/// Reads the file, splits each line's CRI fields and parses JSON messages with
/// serde_json. Returns the seconds taken and how many messages parsed as JSON.
fn bare_loop(path: &Path) -> (f64, u64) {
    let start = Instant::now();
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry: Vec<u8> = Vec::new();
    let mut json = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        carry.extend_from_slice(&buf[..n]);
        let mut pos = 0;
        while let Some(i) = memchr::memchr(b'\n', &carry[pos..]) {
            let line = &carry[pos..pos + i];
            pos += i + 1;
            let mut fields = line.splitn(4, |&b| b == b' ');
            let (_time, _stream, _tag) = (fields.next(), fields.next(), fields.next());
            let Some(message) = fields.next() else {
                continue;
            };
            if message.first() == Some(&b'{')
                && serde_json::from_slice::<serde_json::Value>(message).is_ok()
            {
                json += 1;
            }
        }
        carry.drain(..pos);
    }
    (start.elapsed().as_secs_f64(), json)
}

fn tail_config(dir: &Path) -> TailConfig {
    let mut config = TailConfig::new(vec![format!("{}/*.log", dir.display())]);
    config.read_from_head = true;
    config.format = TailFormat::Cri;
    config.poll_interval = HumanDuration::millis(50);
    config.kubernetes.api = ApiMode::Disabled;
    // NAGARE_BENCH_SOURCE_KEYS=1: records also carry the file's path, the line's
    // offset and its event id, to measure what those cost.
    if std::env::var_os("NAGARE_BENCH_SOURCE_KEYS").is_some() {
        config.path_key = Some("path".into());
        config.offset_key = Some("offset".into());
        config.event_id_key = Some("line_id".into());
    }
    config
}

/// A router whose only sink is the `null` sink, which acks each chunk at once.
fn null_next_hop(
    rt: &tokio::runtime::Runtime,
) -> (Arc<nagare_core::router::Router>, Arc<null::Counters>) {
    let buffer = Buffer::new("null", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.sink("null", TagPattern::new("**").unwrap(), buffer.clone());
    let records = null::Counters::new();
    let (ctx, _abort) = sink_context("null", &buffer, Path::new(""));
    rt.spawn(null::run_counted(
        NullConfig::default(),
        ctx,
        records.clone(),
    ));
    (Arc::new(rb.build()), records)
}

/// A tail source running on a runtime of its own (one core) into a null next hop.
struct Running {
    rt: tokio::runtime::Runtime,
    records: Arc<null::Counters>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), TailSourceError>>,
}

/// Starts a tail source named `name` on the files of `dir`, with its state in
/// `state`.
fn start_tail(name: &str, dir: &Path, state: PathBuf) -> Running {
    start_tail_counted(dir, state, ComponentMetrics::detached(name))
}

/// [`start_tail`], counting into `metrics`.
fn start_tail_counted(dir: &Path, state: PathBuf, metrics: ComponentMetrics) -> Running {
    let name = metrics.labels().component_id.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (router, records) = null_next_hop(&rt);
    let shutdown = Shutdown::new();
    let ctx = SourceContext {
        name,
        router,
        shutdown: shutdown.clone(),
        data_dir: state,
        metrics,
    };
    let task = rt.spawn(run_with_metrics(tail_config(dir), ctx, TailMetrics::new()));
    Running {
        rt,
        records,
        shutdown,
        task,
    }
}

/// Runs the tail source on one core until `messages` records went out. Returns the
/// seconds taken and the records counted.
fn tail_file(dir: &Path, state: PathBuf, messages: u64) -> (f64, u64) {
    tail_file_counted(dir, state, messages, ComponentMetrics::detached("bench"))
}

/// [`tail_file`], counting into `metrics`.
fn tail_file_counted(
    dir: &Path,
    state: PathBuf,
    messages: u64,
    metrics: ComponentMetrics,
) -> (f64, u64) {
    let Running {
        rt,
        records,
        shutdown,
        task,
    } = start_tail_counted(dir, state, metrics);
    let start = Instant::now();
    rt.block_on(async {
        while records.totals().events < messages {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    shutdown.cancel();
    rt.block_on(task).unwrap().unwrap();
    (secs, records.totals().events)
}

/// Tails `sizes.files` files (read from their start, then appended to); returns the
/// process's peak and final resident memory in KiB.
fn many_files(root: &Path, sizes: &Sizes) -> (u64, u64) {
    let dir = root.join("many");
    std::fs::create_dir_all(&dir).unwrap();
    let mut paths = Vec::new();
    let mut total = 0u64;
    for i in 0..sizes.files {
        let p = dir.join(format!(
            "pod-{i}-5d8f7c9b4-abcde_ns-{}_app-{:064x}.log",
            i % 7,
            i
        ));
        total += generate(&p, sizes.per_file, i as u64 + 100).messages;
        paths.push(p);
    }
    let Running {
        rt,
        records,
        shutdown,
        task,
    } = start_tail("many", &dir, root.join("state-many"));
    // Keep writing to every file while they are tailed.
    let writer = std::thread::spawn({
        let paths = paths.clone();
        let until = Instant::now() + sizes.append_for;
        move || {
            let mut appended = 0u64;
            let mut handles: Vec<File> = paths
                .iter()
                .map(|p| File::options().append(true).open(p).unwrap())
                .collect();
            let mut n = 0u64;
            while Instant::now() < until {
                for h in &mut handles {
                    n += 1;
                    writeln!(h, "2024-05-01T12:00:00.{n:09}Z stdout F {{\"msg\":\"tick {n}\",\"level\":\"info\"}}").unwrap();
                    appended += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            appended
        }
    });
    // The source runs (on this thread's runtime) while the writer appends.
    rt.block_on(async {
        while !writer.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let appended = writer.join().unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while records.totals().events < total + appended && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    assert_eq!(
        records.totals().events,
        total + appended,
        "every line of the {} files was tailed",
        sizes.files
    );
    let rss = memory();
    shutdown.cancel();
    rt.block_on(task).unwrap().unwrap();
    rss
}

/// (VmHWM, VmRSS) of this process in KiB.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
