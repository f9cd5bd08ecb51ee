//! The tail source against real files in a temporary directory: the real task runs
//! with a router whose sink is a real buffer, and the tests decode the chunks it
//! delivers. This file holds the harness (`Tail`, configs, writers, readers of what
//! came out); the tests are grouped by concern:
//!
//! - `parsing`: CRI, docker and raw lines, JSON merging, tags, over-long lines
//! - `following`: which files are read, from where, and what wakes the source
//! - `rotation`: rename, copytruncate and deletion while the source runs
//! - `checkpoints`: restarts, crashes, rotations while stopped, the checkpoint file
//! - `copytruncate`: event ids of lines read again from a copytruncate copy
//! - `source_keys`: the path, offset and event id keys
//! - `multiline`: stack traces joined, golden files, the flush timeout
//! - `backpressure`, `metrics`, `chunks`: a full buffer, counters, chunk sizes
//! - `config`: defaults, the documented example, validation
//! - `model`: random scripts against a model of which lines must come out

mod backpressure;
mod checkpoints;
mod chunks;
mod config;
mod copytruncate;
mod following;
mod metrics;
mod model;
mod multiline;
mod parsing;
mod rotation;
mod source_keys;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig, Lease};
use nagare_core::config::{ByteSize, HumanDuration};
use nagare_core::pattern::TagPattern;
use nagare_core::router::{Filter, RouterBuilder, Verdict};
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::source_context;
use nagare_core::{Event, EventTime, Map, Value};
use nagare_testkit::wait_until_async;
use tokio::task::JoinHandle;

use super::discover::tag_for;
use super::*;

/// How long a condition may take to hold.
const WAIT: Duration = Duration::from_secs(5);

const ID: &str = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";
const T1: &str = "2024-01-15T10:30:00.000000001Z";
const T2: &str = "2024-01-15T10:30:01.000000002Z";

/// An event as the tests look at it.
#[derive(Debug, Clone)]
struct Got {
    tag: String,
    time: EventTime,
    record: Map,
}

impl Got {
    fn str(&self, path: &str) -> Option<&str> {
        self.record.get_path(path).and_then(Value::as_str)
    }
}

/// A running tail source.
struct Tail {
    dir: Arc<tempfile::TempDir>,
    buffer: Buffer,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), TailSourceError>>,
    metrics: Arc<TailMetrics>,
    config: TailConfig,
    buffer_config: BufferConfig,
}

/// Adds `seen: true` to every event, so the tests can run the filter path.
struct MarkSeen;

impl Filter for MarkSeen {
    fn filter(&self, event: &mut Event) -> Verdict {
        event.record.insert("seen", true);
        Verdict::Keep
    }
}

/// A config following `*.log` in `dir`, with short intervals.
fn config(dir: &Path) -> TailConfig {
    let mut config = TailConfig::new(vec![format!("{}/*.log", dir.display())]);
    config.poll_interval = HumanDuration::millis(10);
    config.refresh_interval = HumanDuration::millis(20);
    config.checkpoint_interval = HumanDuration::millis(20);
    config.rotate_wait = HumanDuration::millis(50);
    config
}

/// A config that reads the files present at start from their start.
fn head_config(dir: &Path) -> TailConfig {
    let mut config = config(dir);
    config.read_from_head = true;
    config
}

/// A raw-format config, for tests about which lines come out.
fn raw_config(dir: &Path) -> TailConfig {
    let mut config = head_config(dir);
    config.format = TailFormat::Raw;
    config
}

/// The `log` field of each event.
fn logs(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| g.str("log").unwrap_or_default().to_string())
        .collect()
}

/// `v` in order, for lines that may come out of several files in any order.
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The lines `<prefix> <n>` for each `n` in `range`, as written to a file.
fn numbered(prefix: &str, range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

/// The `log` fields the lines of `numbered(prefix, range)` come out with.
fn expected(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i}")).collect()
}

impl Tail {
    /// A temporary directory whose name has no `.`, so that tags are simply the path
    /// with `/` turned into `.` (Fluentd collapses runs of dots).
    fn dir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("nagare-tail-")
            .tempdir()
            .unwrap()
    }

    /// Starts the source over `dir` with `config`, optionally with a filter.
    fn start_with(
        dir: impl Into<Arc<tempfile::TempDir>>,
        config: TailConfig,
        buffer_config: BufferConfig,
        filter: bool,
    ) -> Self {
        let mut rb = RouterBuilder::new();
        if filter {
            rb.filter("mark", TagPattern::new("**").unwrap(), Arc::new(MarkSeen));
        }
        Self::start_routed(dir, config, buffer_config, rb)
    }

    /// Starts the source over `dir` with `config`, into the filters and sinks of
    /// `rb` and a sink `out` for every tag.
    fn start_routed(
        dir: impl Into<Arc<tempfile::TempDir>>,
        config: TailConfig,
        buffer_config: BufferConfig,
        mut rb: RouterBuilder,
    ) -> Self {
        let dir = dir.into();
        let buffer = Buffer::new("out", &buffer_config);
        rb.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
        let (ctx, shutdown) = source_context("tail", rb.build(), dir.path());
        let metrics = TailMetrics::new();
        let task = tokio::spawn(run_with_metrics(config.clone(), ctx, metrics.clone()));
        let buffer_config = buffer_config.clone();
        Tail {
            dir,
            buffer,
            shutdown,
            task,
            metrics,
            config,
            buffer_config,
        }
    }

    fn start(dir: impl Into<Arc<tempfile::TempDir>>, config: TailConfig) -> Self {
        Self::start_with(dir, config, BufferConfig::default(), false)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Waits for at least `n` events (failing after a few seconds).
    async fn events(&self, n: usize) -> Vec<Got> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got.len() < n {
            let lease = self.next_chunk(deadline, n, &got).await;
            got.extend(decode(lease.chunk()));
            lease.delivered();
        }
        got
    }

    /// The events in the buffer, read without acknowledging them: their lines stay
    /// past the checkpoint. The leases are returned so that they stay out of the
    /// queue.
    async fn unacked(&self, n: usize) -> (Vec<Got>, Vec<Lease>) {
        let (mut got, mut leases) = (Vec::new(), Vec::new());
        while got.len() < n {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let lease = self.next_chunk(deadline, n, &got).await;
            got.extend(decode(lease.chunk()));
            leases.push(lease);
        }
        (got, leases)
    }

    /// The next chunk, failing at `deadline` with the `n` events waited for and
    /// those `got` so far.
    async fn next_chunk(&self, deadline: tokio::time::Instant, n: usize, got: &[Got]) -> Lease {
        tokio::time::timeout_at(deadline, self.buffer.pop())
            .await
            .unwrap_or_else(|_| panic!("waited for {n} events, got {}: {got:#?}", got.len()))
            .expect("buffer open")
    }

    /// The events that arrive until none came for `quiet`, acknowledged.
    async fn until_quiet(&self, quiet: Duration) -> Vec<Got> {
        let mut got = Vec::new();
        while let Ok(lease) = tokio::time::timeout(quiet, self.buffer.pop()).await {
            let lease = lease.expect("buffer open");
            got.extend(decode(lease.chunk()));
            lease.delivered();
        }
        got
    }

    /// Asserts that nothing more arrives for a few poll intervals.
    async fn nothing_more(&self) {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if let Some(lease) = self.buffer.try_pop() {
            panic!("unexpected events: {:#?}", decode(lease.chunk()));
        }
    }

    /// Waits until the checkpoint file on disk satisfies `check`.
    async fn on_disk(&self, what: &str, check: impl Fn(&[checkpoint::Stored]) -> bool) {
        let store = self.path("tail/tail/checkpoints");
        let written = wait_until_async(WAIT, || {
            let bytes = std::fs::read(&store).unwrap_or_default();
            checkpoint::decode(&bytes).is_ok_and(|e| check(&e))
        })
        .await;
        assert!(written, "the checkpoints on disk never showed {what}");
    }

    /// What it takes to start this source again.
    fn to_restart(&self) -> Stopped {
        Stopped {
            dir: self.dir.clone(),
            config: self.config.clone(),
            buffer_config: self.buffer_config.clone(),
        }
    }

    /// Stops the source gracefully, returning what it emitted while stopping
    /// (acked), and what it takes to start it again on the same directory and
    /// checkpoints.
    async fn stopped(self) -> (Vec<Got>, Stopped) {
        let stopped = self.to_restart();
        let got = self.stop().await;
        // The last checkpoint write may still be finishing on a blocking thread.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (got, stopped)
    }

    /// Stops the source gracefully (returning what it emitted while stopping, acked)
    /// and starts it again on the same directory and checkpoints.
    async fn restart(self) -> (Vec<Got>, Tail) {
        let (got, stopped) = self.stopped().await;
        (got, stopped.start())
    }

    /// Ends the source abruptly: the task is dropped mid-flight and its buffer with
    /// the chunks not yet acknowledged. Returns what it takes to start it again.
    async fn crash(self) -> Stopped {
        let stopped = self.to_restart();
        self.task.abort();
        let _ = self.task.await;
        drop(self.buffer);
        stopped
    }

    /// Stops the source and returns what it emitted while stopping.
    async fn stop(self) -> Vec<Got> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the source stops")
            .expect("the task does not panic")
            .expect("the source returns Ok");
        let mut got = Vec::new();
        while let Some(lease) = self.buffer.try_pop() {
            got.extend(decode(lease.chunk()));
            lease.delivered();
        }
        got
    }
}

/// A source stopped or killed, with what it takes to start it again on the same
/// directory (and so the same checkpoints), config and buffer config.
struct Stopped {
    dir: Arc<tempfile::TempDir>,
    config: TailConfig,
    buffer_config: BufferConfig,
}

impl Stopped {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the source again.
    fn start(self) -> Tail {
        Tail::start_with(self.dir, self.config, self.buffer_config, false)
    }
}

/// The events of `chunk`, each with its tag.
fn decode(chunk: &nagare_core::Chunk) -> Vec<Got> {
    chunk
        .events()
        .map(|e| {
            let (time, record) = e.expect("a well-formed entry");
            Got {
                tag: chunk.tag().to_string(),
                time,
                record,
            }
        })
        .collect()
}

/// Appends `data` to the file at `path`, creating it if need be.
fn append(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

/// A new directory for the source, with the file `file` names in it holding
/// `input`. Returns the directory and the file's path.
fn dir_with(file: fn(&Path) -> PathBuf, input: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = Tail::dir();
    let path = file(dir.path());
    append(&path, input);
    (dir, path)
}

/// `app.log` in `dir`.
fn app_log(dir: &Path) -> PathBuf {
    dir.join("app.log")
}

/// A container log in `dir`, named as the kubelet names it.
fn pod_file(dir: &Path) -> PathBuf {
    dir.join(format!("web-1_default_nginx-{ID}.log"))
}

fn cri_input() -> String {
    [
        format!("{T1} stdout P hello "),
        format!("{T1} stderr F an error"),
        format!("{T2} stdout P big "),
        format!("{T2} stdout F world"),
        format!(r#"{T2} stdout F {{"level":"info","msg":"json","n":3,"stream":"app's own"}}"#),
        format!("{T2} stdout P held without its F"),
    ]
    .join("\n")
        + "\n"
}

fn check_cri(got: &[Got], path: &Path) {
    assert_eq!(got.len(), 3, "{got:#?}");
    let expected_tag = format!("kube.{}", path.display().to_string()[1..].replace('/', "."));
    for g in got {
        assert_eq!(g.tag, expected_tag);
        assert_eq!(g.str("logtag"), Some("F"));
        assert_eq!(g.str("kubernetes.pod_name"), Some("web-1"));
        assert_eq!(g.str("kubernetes.namespace_name"), Some("default"));
        assert_eq!(g.str("kubernetes.container_name"), Some("nginx"));
        assert_eq!(g.str("kubernetes.container_id"), Some(ID));
    }
    assert_eq!(got[0].str("stream"), Some("stderr"));
    assert_eq!(got[0].str("log"), Some("an error"));
    assert_eq!(got[1].str("stream"), Some("stdout"));
    assert_eq!(got[1].str("log"), Some("hello big world"));
    assert_eq!(
        got[1].time,
        EventTime::parse_rfc3339(T1.as_bytes()).unwrap()
    );
    // The JSON message is merged; the source's own `stream` wins over the app's.
    assert_eq!(got[2].str("msg"), Some("json"));
    assert_eq!(got[2].record.get("n"), Some(&Value::Int(3)));
    assert_eq!(got[2].str("stream"), Some("stdout"));
    assert_eq!(got[2].record.get("log"), None);
    assert_eq!(
        got[2].time,
        EventTime::parse_rfc3339(T2.as_bytes()).unwrap()
    );
}

/// A config following the files beside a given one.
trait WithPaths {
    fn with_paths(self, path: &Path) -> Self;
}

impl WithPaths for TailConfig {
    /// Follows the `*.log` files beside `path`.
    fn with_paths(mut self, path: &Path) -> Self {
        self.paths = vec![format!("{}/*.log", path.parent().unwrap().display())];
        self
    }
}

/// Empties the file at `path` in place.
fn truncate(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// logrotate's copytruncate: copy, then empty the original in place.
fn copytruncate(path: &Path, copy: &Path) {
    std::fs::copy(path, copy).unwrap();
    truncate(path);
}

/// A raw-format config following the `*.log` files beside `path`.
fn raw_beside(path: &Path) -> TailConfig {
    raw_config(Path::new("/")).with_paths(path)
}

/// Starts the source with the config `config` makes for a new directory's
/// `app.log`, which holds the lines `a 0..n`, and waits until they came out.
/// Returns the source and the path of `app.log`.
async fn reading_app_log(config: fn(&Path) -> TailConfig, n: u32) -> (Tail, PathBuf) {
    let (dir, path) = dir_with(app_log, numbered("a", 0..n).as_bytes());
    let tail = Tail::start(dir, config(&path));
    assert_eq!(logs(&tail.events(n as usize).await), expected("a", 0..n));
    (tail, path)
}

/// A config that looks at files only every 300 ms and is not woken by the kernel, so
/// that a test can change a file between two looks.
fn slow_config(path: &Path) -> TailConfig {
    let mut config = raw_beside(path);
    config.poll_interval = HumanDuration::millis(300);
    config.refresh_interval = HumanDuration::millis(300);
    config.watch = false;
    config
}

/// A config adding the three source keys.
fn keyed(mut config: TailConfig) -> TailConfig {
    config.path_key = Some("path".into());
    config.offset_key = Some("offset".into());
    config.event_id_key = Some("line_id".into());
    config
}

/// Per event: its `log`, `offset` and `line_id`.
fn positions(got: &[Got]) -> Vec<(String, u64, String)> {
    got.iter()
        .map(|g| {
            let offset = g.record.get("offset").and_then(Value::as_i64);
            (
                g.str("log").unwrap_or_default().to_string(),
                offset.expect("an offset") as u64,
                g.str("line_id").expect("an event id").to_string(),
            )
        })
        .collect()
}

/// The part of an event id before its `-<offset>`, checked to be 16 hex digits and
/// to end in `offset`.
fn id_hash(id: &str, offset: u64) -> &str {
    let (hash, at) = id.split_once('-').expect("<hash>-<offset>");
    assert_eq!(at, offset.to_string(), "{id}");
    assert!(
        hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    hash
}
