//! The tail source against real files in a temporary directory: the real task runs
//! with a router whose sink is a real buffer, and the tests decode the chunks it
//! delivers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig};
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

/// A raw-format config, for tests about which lines come out.
fn raw_config(dir: &Path) -> TailConfig {
    let mut config = config(dir);
    config.format = TailFormat::Raw;
    config.read_from_head = true;
    config
}

/// The `log` field of each event.
fn logs(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| g.str("log").unwrap_or_default().to_string())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn numbered(prefix: &str, range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("{prefix} {i}\n")).collect()
}

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
            let lease = tokio::time::timeout_at(deadline, self.buffer.pop())
                .await
                .unwrap_or_else(|_| panic!("waited for {n} events, got {}: {got:#?}", got.len()))
                .expect("buffer open");
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

    /// Stops the source gracefully (returning what it emitted while stopping, acked)
    /// and starts it again on the same directory and checkpoints.
    async fn restart(self) -> (Vec<Got>, Tail) {
        let (dir, config, buffer_config) = (
            self.dir.clone(),
            self.config.clone(),
            self.buffer_config.clone(),
        );
        let got = self.stop().await;
        // The last checkpoint write may still be finishing on a blocking thread.
        tokio::time::sleep(Duration::from_millis(100)).await;
        (got, Tail::start_with(dir, config, buffer_config, false))
    }

    /// Ends the source abruptly: the task is dropped mid-flight and its buffer with
    /// the chunks not yet acknowledged. Returns the directory to restart on.
    async fn crash(self) -> Arc<tempfile::TempDir> {
        self.task.abort();
        let _ = self.task.await;
        drop(self.buffer);
        self.dir
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

fn append(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(data).unwrap();
}

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

#[tokio::test]
async fn cri_lines_are_merged_and_json_messages_merged() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    append(&path, cri_input().as_bytes());
    let mut config = config(dir.path());
    config.read_from_head = true;
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    check_cri(&got, &path);
    let keys: Vec<&str> = got[1].record.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["stream", "logtag", "log", "kubernetes"]);
    tail.nothing_more().await;
    assert!(
        tail.stop().await.is_empty(),
        "a P piece without its F is not emitted"
    );
}

#[tokio::test]
async fn filters_see_the_same_records() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    append(&path, cri_input().as_bytes());
    let mut config = config(dir.path());
    config.read_from_head = true;
    let tail = Tail::start_with(dir, config, BufferConfig::default(), true);
    let mut got = tail.events(3).await;
    for g in &mut got {
        assert_eq!(g.record.remove("seen"), Some(Value::Bool(true)));
    }
    check_cri(&got, &path);
    tail.stop().await;
}

#[tokio::test]
async fn docker_json_file_lines_are_merged() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let line = |log: &str, stream: &str| {
        format!(
            "{{\"log\":{},\"stream\":\"{stream}\",\"time\":\"{T1}\"}}\n",
            serde_json::to_string(log).unwrap()
        )
    };
    let piece = "x".repeat(16 * 1024);
    let input = [
        line(&piece, "stdout"),
        line("tail\n", "stdout"),
        line("{\"msg\":\"from json\"}\n", "stderr"),
        "not json at all\n".to_string(),
    ]
    .concat();
    append(&path, input.as_bytes());
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.keep_log = true;
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    assert_eq!(got[0].str("log").map(str::len), Some(16 * 1024 + 4));
    assert_eq!(got[0].str("stream"), Some("stdout"));
    assert_eq!(
        got[0].record.get("logtag"),
        None,
        "docker lines have no logtag"
    );
    assert_eq!(
        got[0].time,
        EventTime::parse_rfc3339(T1.as_bytes()).unwrap()
    );
    assert_eq!(got[1].str("msg"), Some("from json"));
    assert_eq!(
        got[1].str("log"),
        Some("{\"msg\":\"from json\"}"),
        "keep_log"
    );
    assert_eq!(got[1].str("stream"), Some("stderr"));
    assert_eq!(got[2].str("log"), Some("not json at all"));
    assert_eq!(got[2].record.get(MALFORMED_KEY), Some(&Value::Bool(true)));
    assert_eq!(got[2].str("kubernetes.pod_name"), Some("web-1"));
    tail.stop().await;
}

#[tokio::test]
async fn raw_lines_are_messages_timed_when_read() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, b"plain line\n{\"a\":1}\nbad \xff byte\n");
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.format = TailFormat::Raw;
    config.merge_json_key = Some("json".into());
    config.tag = "app.*.raw".into();
    let before = EventTime::now();
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    let after = EventTime::now();
    let expected_tag = format!(
        "app.{}.raw",
        path.display().to_string()[1..].replace('/', ".")
    );
    for g in &got {
        assert_eq!(g.tag, expected_tag);
        assert!(before <= g.time && g.time <= after, "read time");
        assert_eq!(g.record.get("stream"), None);
        assert_eq!(g.record.get("kubernetes"), None, "not a container log name");
    }
    assert_eq!(got[0].str("log"), Some("plain line"));
    assert_eq!(got[1].record.get_path("json.a"), Some(&Value::Int(1)));
    assert_eq!(got[1].record.get("log"), None);
    assert_eq!(got[2].str("log"), Some("bad \u{fffd} byte"));
    assert_eq!(
        got[2].record.get(INVALID_UTF8_KEY),
        Some(&Value::Bool(true))
    );
    tail.stop().await;
}

#[tokio::test]
async fn auto_reads_a_file_of_neither_format_as_raw() {
    let dir = Tail::dir();
    append(&pod_file(dir.path()), b"just text\n");
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.kubernetes_metadata = false;
    let tail = Tail::start(dir, config);
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("just text"));
    assert_eq!(
        got[0].record.get("kubernetes"),
        None,
        "kubernetes_metadata: false"
    );
    assert_eq!(got[0].record.get(MALFORMED_KEY), None);
    tail.stop().await;
}

#[test]
fn tags_follow_fluentd() {
    let path = Path::new(&"/var/log/containers/web-1_default_nginx-ID.log");
    assert_eq!(
        tag_for("kube.*", path),
        "kube.var.log.containers.web-1_default_nginx-ID.log"
    );
    assert_eq!(tag_for("*", Path::new("/a//b/./c")), "a.b.c");
    assert_eq!(tag_for("pre.*.post", Path::new("/x.log")), "pre.x.log.post");
    assert_eq!(tag_for("fixed", path), "fixed");
}

#[tokio::test]
async fn read_from_head_false_skips_old_lines_but_new_files_are_read_whole() {
    let dir = Tail::dir();
    let old = dir.path().join("old.log");
    append(&old, b"old 1\nold 2\n");
    let mut config = config(dir.path());
    config.format = TailFormat::Raw;
    let tail = Tail::start(dir, config);
    // A file created after the first scan is read from its start.
    let scanned = wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await;
    assert!(scanned, "the old file is followed");
    append(&tail.path("new.log"), b"new 1\nnew 2\n");
    let got = tail.events(2).await;
    assert_eq!(
        got.iter()
            .map(|g| g.str("log").unwrap())
            .collect::<Vec<_>>(),
        ["new 1", "new 2"]
    );
    append(&old, b"old 3\n");
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("old 3"));
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn read_from_head_true_reads_files_present_at_start() {
    let dir = Tail::dir();
    append(&dir.path().join("old.log"), b"old 1\nold 2\n");
    let mut config = config(dir.path());
    config.format = TailFormat::Raw;
    config.read_from_head = true;
    let tail = Tail::start(dir, config);
    let got = tail.events(2).await;
    assert_eq!(got[0].str("log"), Some("old 1"));
    tail.stop().await;
}

#[tokio::test]
async fn a_line_written_in_two_pieces_is_one_event() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    std::fs::write(&path, b"").unwrap();
    let mut config = config(dir.path());
    config.format = TailFormat::Cri;
    let tail = Tail::start(dir, config);
    let open = wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await;
    assert!(open, "the empty file is followed");
    append(&path, format!("{T1} stdout F first ha").as_bytes());
    // Several polls see the incomplete line and emit nothing.
    tail.nothing_more().await;
    append(&path, b"lf\n");
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("first half"));
    tail.stop().await;
}

#[tokio::test]
async fn excluded_files_are_not_followed() {
    let dir = Tail::dir();
    append(&dir.path().join("keep.log"), b"kept\n");
    append(&dir.path().join("skip.log"), b"skipped\n");
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.exclude_paths = vec![format!("{}/skip*", dir.path().display())];
    let tail = Tail::start(dir, config);
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("kept"));
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn a_truncated_file_is_read_again_from_its_start() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, b"a fairly long first line\nand a second one\n");
    let mut config = config(dir.path());
    config.read_from_head = true;
    let tail = Tail::start(dir, config);
    assert_eq!(tail.events(2).await.len(), 2);
    // copytruncate: the file is emptied in place, then written again.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, b"after\n");
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("after"));
    tail.stop().await;
}

#[tokio::test]
async fn a_rotated_file_is_read_to_its_end_and_the_new_one_from_its_start() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, b"one\n");
    let mut config = config(dir.path());
    config.read_from_head = true;
    let tail = Tail::start(dir, config);
    assert_eq!(tail.events(1).await[0].str("log"), Some("one"));
    append(&path, b"two\n");
    std::fs::rename(&path, tail.path("app.log.1")).unwrap();
    append(&path, b"three\n");
    let got = tail.events(2).await;
    let mut logs: Vec<&str> = got.iter().map(|g| g.str("log").unwrap()).collect();
    logs.sort();
    assert_eq!(logs, ["three", "two"]);
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn backpressure_pauses_reading_and_shutdown_emits_what_was_read() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    // 1999 lines (not a whole number of chunks) in one read block: the source checks for shutdown only between
    // blocks, so every line must come out, the last ones emitted by the shutdown.
    let lines: String = (0..1999)
        .map(|i| format!("line {i:05} {}\n", "x".repeat(80)))
        .collect();
    assert!(lines.len() < 256 * 1024);
    append(&path, lines.as_bytes());
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.chunk_limit_size = ByteSize(1024);
    let buffer = BufferConfig {
        total_limit_size: ByteSize(1),
        ..BufferConfig::default()
    };
    let tail = Tail::start_with(dir, config, buffer, false);
    let first = tail.buffer.pop().await.unwrap();
    let mut got = decode(first.chunk());
    // The buffer holds one chunk at a time (in flight counts), so the source is now
    // waiting for room, in the middle of the block.
    let blocked = wait_until_async(WAIT, || tail.buffer.stats().blocked >= 1).await;
    assert!(blocked, "the source waits for room");
    let stats = tail.buffer.stats();
    assert_eq!((stats.queued_chunks, stats.in_flight_chunks), (0, 1));
    assert!(stats.blocked >= 1);
    first.delivered();
    tail.shutdown.cancel();
    while !tail.task.is_finished() {
        if let Ok(Some(lease)) =
            tokio::time::timeout(Duration::from_millis(50), tail.buffer.pop()).await
        {
            got.extend(decode(lease.chunk()));
            lease.delivered();
        }
    }
    got.extend(tail.stop().await);
    let logs: Vec<String> = got
        .iter()
        .map(|g| g.str("log").unwrap()[..10].to_string())
        .collect();
    let expected: Vec<String> = (0..1999).map(|i| format!("line {i:05}")).collect();
    assert_eq!(logs, expected);
}

#[test]
fn config_parses_with_defaults_and_validates() {
    let config: TailConfig = serde_norway::from_str("paths: [/var/log/containers/*.log]").unwrap();
    assert_eq!(config.tag, "kube.*");
    assert_eq!(config.format, TailFormat::Auto);
    assert!(!config.read_from_head && config.merge_json && !config.keep_log);
    assert!(config.kubernetes_metadata);
    assert_eq!(config.log_key, "log");
    assert_eq!(config.max_line_bytes, ByteSize(16 << 20));
    assert_eq!(config.chunk_limit_size, ByteSize(1 << 20));
    assert_eq!(config.poll_interval, HumanDuration::millis(250));
    assert_eq!(config.refresh_interval, HumanDuration::secs(1));
    assert!(config.watch && config.ignore_older.is_none() && config.multiline.is_none());
    assert!(config.path_key.is_none() && config.offset_key.is_none());
    assert!(config.event_id_key.is_none());
    assert_eq!(config.max_open_files, 1024);
    assert_eq!(config.rotate_wait, HumanDuration::secs(5));
    assert_eq!(config.checkpoint_interval, HumanDuration::secs(1));
    assert_eq!(config.checkpoint_forget_after, HumanDuration::secs(3600));
    config.validate().unwrap();

    let documented = r#"
paths: [/var/log/containers/*.log]
exclude_paths: ["/var/log/containers/*_kube-system_*.log"]
read_from_head: true
tag: kube.*
format: cri
refresh_interval: 5s
poll_interval: 100ms
merge_json: true
merge_json_key: app
keep_log: true
log_key: message
kubernetes_metadata: true
max_line_bytes: 1MiB
chunk_limit_size: 512k
watch: false
ignore_older: 24h
max_open_files: 500
rotate_wait: 2s
checkpoint_interval: 500ms
checkpoint_forget_after: 2h
path_key: file
offset_key: offset
event_id_key: line_id
multiline:
  languages: [java, python, go, ruby, nodejs]
  custom: {start: '^\\d{4}-', continuation: '^\\s'}
  flush_timeout: 2s
kubernetes:
  api: enabled
  api_server: https://kubernetes.default.svc
  node_name: node-1
  labels: true
  annotations: ["team.example.com/*"]
  namespace_labels: false
"#;
    let config: TailConfig = serde_norway::from_str(documented).unwrap();
    config.validate().unwrap();
    assert_eq!(config.format, TailFormat::Cri);
    assert_eq!(config.checkpoint_interval, HumanDuration::millis(500));
    assert_eq!(config.max_open_files, 500);
    assert!(config.multiline.is_some() && !config.kubernetes.namespace_labels);
    assert_eq!(config.event_id_key.as_deref(), Some("line_id"));

    assert!(serde_norway::from_str::<TailConfig>("paths: [a]\nfollow: yes").is_err());
    let invalid = |yaml: &str| {
        serde_norway::from_str::<TailConfig>(yaml)
            .unwrap()
            .validate()
            .unwrap_err()
            .key
    };
    assert_eq!(invalid("paths: []"), "paths");
    assert_eq!(invalid("paths: ['a[']"), "paths.0");
    assert_eq!(
        invalid("paths: [a]\nexclude_paths: [b, 'c[']"),
        "exclude_paths.1"
    );
    assert_eq!(invalid("paths: [a]\ntag: 'a.*.*'"), "tag");
    assert_eq!(invalid("paths: [a]\nlog_key: stream"), "log_key");
    assert_eq!(
        invalid("paths: [a]\nmerge_json_key: kubernetes"),
        "merge_json_key"
    );
    assert_eq!(
        invalid("paths: [a]\nchunk_limit_size: 0"),
        "chunk_limit_size"
    );
    assert_eq!(invalid("paths: [a]\npoll_interval: 0s"), "poll_interval");
    assert_eq!(invalid("paths: [a]\nmax_open_files: 0"), "max_open_files");
    assert_eq!(invalid("paths: [a]\npath_key: ''"), "path_key");
    assert_eq!(invalid("paths: [a]\noffset_key: stream"), "offset_key");
    assert_eq!(invalid("paths: [a]\nevent_id_key: log"), "event_id_key");
    assert_eq!(
        invalid("paths: [a]\npath_key: file\nevent_id_key: file"),
        "event_id_key"
    );
    assert_eq!(
        invalid("paths: [a]\nmultiline: {max_lines: 5}"),
        "multiline.languages"
    );
    assert_eq!(
        invalid("paths: [a]\nkubernetes: {api_server: 'nope'}"),
        "kubernetes.api_server"
    );
}

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoint_without_duplicates() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..3).as_bytes());
    let tail = Tail::start(dir, raw_config(Path::new("/")).with_paths(&path));
    assert_eq!(logs(&tail.events(3).await), expected("a", 0..3));
    let (during_stop, tail) = tail.restart().await;
    assert!(during_stop.is_empty());
    append(&path, numbered("a", 3..5).as_bytes());
    assert_eq!(logs(&tail.events(2).await), expected("a", 3..5));
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn lines_not_acknowledged_before_a_crash_are_read_again() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..5).as_bytes());
    let tail = Tail::start(dir, raw_config(Path::new("/")).with_paths(&path));
    assert_eq!(logs(&tail.events(5).await), expected("a", 0..5));
    append(&path, numbered("a", 5..8).as_bytes());
    // Wait until the new lines are in the buffer, but never acknowledge them.
    let queued = wait_until_async(WAIT, || tail.buffer.stats().queued_chunks > 0).await;
    assert!(queued, "the new lines were read");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let (dir, config) = (tail.config.clone(), tail.buffer_config.clone());
    let home = tail.crash().await;
    let tail = Tail::start_with(home, dir, config, false);
    assert_eq!(logs(&tail.events(3).await), expected("a", 5..8));
    tail.nothing_more().await;
    tail.stop().await;
}

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

#[tokio::test]
async fn history_is_skipped_on_the_first_start_only() {
    let dir = Tail::dir();
    let old = dir.path().join("old.log");
    append(&old, numbered("old", 0..2).as_bytes());
    let mut config = raw_config(dir.path());
    config.read_from_head = false;
    let tail = Tail::start(dir, config);
    assert!(wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await);
    append(&old, numbered("old", 2..3).as_bytes());
    assert_eq!(logs(&tail.events(1).await), expected("old", 2..3));
    let home = tail.dir.clone();
    let (config, buffer) = (tail.config.clone(), tail.buffer_config.clone());
    tail.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Stopped meanwhile: a file that appeared is read whole, the old one resumes.
    append(
        &home.path().join("new.log"),
        numbered("new", 0..2).as_bytes(),
    );
    append(&old, numbered("old", 3..4).as_bytes());
    let tail = Tail::start_with(home, config, buffer, false);
    let got = sorted(logs(&tail.events(3).await));
    assert_eq!(got, ["new 0", "new 1", "old 3"]);
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn a_file_rotated_while_stopped_is_finished_from_its_checkpoint() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..3).as_bytes());
    let tail = Tail::start(dir, raw_config(Path::new("/")).with_paths(&path));
    assert_eq!(logs(&tail.events(3).await), expected("a", 0..3));
    let home = tail.dir.clone();
    let (config, buffer) = (tail.config.clone(), tail.buffer_config.clone());
    tail.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&path, numbered("a", 3..5).as_bytes());
    std::fs::rename(&path, home.path().join("app.log.1")).unwrap();
    append(&path, numbered("b", 0..1).as_bytes());
    let tail = Tail::start_with(home, config, buffer, false);
    let got = sorted(logs(&tail.events(3).await));
    assert_eq!(got, ["a 3", "a 4", "b 0"]);
    tail.nothing_more().await;
    assert_eq!(tail.metrics.snapshot().copies_recovered, 1);
    tail.stop().await;
}

#[tokio::test]
async fn copytruncate_while_stopped_reads_the_rest_from_the_copy() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..3).as_bytes());
    let tail = Tail::start(dir, raw_config(Path::new("/")).with_paths(&path));
    assert_eq!(logs(&tail.events(3).await), expected("a", 0..3));
    let home = tail.dir.clone();
    let (config, buffer) = (tail.config.clone(), tail.buffer_config.clone());
    tail.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&path, numbered("a", 3..5).as_bytes());
    std::fs::copy(&path, home.path().join("app.log.1")).unwrap();
    truncate(&path);
    append(&path, numbered("b", 0..1).as_bytes());
    let tail = Tail::start_with(home, config, buffer, false);
    let got = sorted(logs(&tail.events(3).await));
    assert_eq!(got, ["a 3", "a 4", "b 0"]);
    tail.nothing_more().await;
    tail.stop().await;
}

fn truncate(path: &Path) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// A config that looks at files only every 300 ms and is not woken by the kernel, so
/// that a test can change a file between two looks.
fn slow_config(path: &Path) -> TailConfig {
    let mut config = raw_config(Path::new("/")).with_paths(path);
    config.poll_interval = HumanDuration::millis(300);
    config.refresh_interval = HumanDuration::millis(300);
    config.watch = false;
    config
}

#[tokio::test]
async fn copytruncate_while_running_recovers_unread_lines_from_the_copy() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..3).as_bytes());
    let tail = Tail::start(dir, slow_config(&path));
    assert_eq!(logs(&tail.events(3).await), expected("a", 0..3));
    // Between two looks: lines appended, the file copied and emptied, more written.
    append(&path, numbered("a", 3..5).as_bytes());
    std::fs::copy(&path, tail.path("app.log.1")).unwrap();
    truncate(&path);
    append(&path, numbered("b", 0..2).as_bytes());
    let got = sorted(logs(&tail.events(4).await));
    assert_eq!(got, ["a 3", "a 4", "b 0", "b 1"]);
    tail.nothing_more().await;
    let m = tail.metrics.snapshot();
    assert_eq!((m.truncations, m.copies_recovered), (1, 1));
    tail.stop().await;
}

#[tokio::test]
async fn a_file_truncated_and_rewritten_past_the_offset_is_read_again() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, b"short 0\n");
    let tail = Tail::start(dir, slow_config(&path));
    assert_eq!(logs(&tail.events(1).await), ["short 0"]);
    truncate(&path);
    // Longer than what was read: only the fingerprint tells.
    append(&path, numbered("longer line", 0..3).as_bytes());
    assert_eq!(logs(&tail.events(3).await), expected("longer line", 0..3));
    assert_eq!(tail.metrics.snapshot().truncations, 1);
    tail.stop().await;
}

#[tokio::test]
async fn a_file_deleted_while_followed_is_read_to_its_end() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..1).as_bytes());
    let tail = Tail::start(dir, slow_config(&path));
    assert_eq!(logs(&tail.events(1).await), ["a 0"]);
    append(&path, numbered("a", 1..3).as_bytes());
    std::fs::remove_file(&path).unwrap();
    assert_eq!(logs(&tail.events(2).await), expected("a", 1..3));
    // Recreated under the same name: a new file, read from its start.
    append(&path, numbered("b", 0..2).as_bytes());
    assert_eq!(logs(&tail.events(2).await), expected("b", 0..2));
    let gone = wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await;
    let m = tail.metrics.snapshot();
    assert!(gone, "the deleted file is let go: {m:?}");
    assert_eq!(m.deletions + m.rotations, 1);
    tail.stop().await;
}

#[tokio::test]
async fn a_reused_inode_is_told_apart_by_the_fingerprint() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("new file", 0..3).as_bytes());
    // A checkpoint for this very inode, but for other content (the file it once was).
    let meta = std::fs::metadata(&path).unwrap();
    let stale = checkpoint::Stored {
        id: file::FileId::of(&meta),
        origin: file::FileId::of(&meta),
        fingerprint: file::Fingerprint { len: 9, hash: 42 },
        offset: 12,
        path: path.clone(),
        gone_since: None,
    };
    let store = dir.path().join("tail").join("tail");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("checkpoints"), checkpoint::encode(&[stale])).unwrap();
    let mut config = raw_config(dir.path());
    config.read_from_head = false;
    let tail = Tail::start(dir, config);
    assert_eq!(logs(&tail.events(3).await), expected("new file", 0..3));
    tail.stop().await;
}

#[tokio::test]
async fn a_torn_checkpoint_file_is_ignored_and_files_are_read_from_their_start() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..2).as_bytes());
    let meta = std::fs::metadata(&path).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let whole = checkpoint::encode(&[checkpoint::Stored {
        id: file::FileId::of(&meta),
        origin: file::FileId::of(&meta),
        fingerprint: file::Fingerprint::of(&file).unwrap(),
        offset: meta.len(),
        path: path.clone(),
        gone_since: None,
    }]);
    let store = dir.path().join("tail").join("tail");
    std::fs::create_dir_all(&store).unwrap();
    // The write stopped half way.
    std::fs::write(store.join("checkpoints"), &whole[..whole.len() - 10]).unwrap();
    let mut config = raw_config(dir.path());
    config.read_from_head = false;
    let tail = Tail::start(dir, config);
    assert_eq!(logs(&tail.events(2).await), expected("a", 0..2));
    tail.stop().await;
}

#[test]
fn checkpoint_files_round_trip_and_refuse_damage() {
    let entries = vec![
        checkpoint::Stored {
            id: file::FileId { dev: 2049, ino: 77 },
            // A copy: its lines' ids come from the original's inode.
            origin: file::FileId { dev: 2049, ino: 12 },
            fingerprint: file::Fingerprint {
                len: 1024,
                hash: 0xdead_beef,
            },
            offset: 123_456,
            path: PathBuf::from("/var/log/pods/a b/\"quoted\"/0.log"),
            gone_since: Some(1_700_000_000),
        },
        checkpoint::Stored {
            id: file::FileId { dev: 1, ino: 2 },
            origin: file::FileId { dev: 1, ino: 2 },
            fingerprint: file::Fingerprint::default(),
            offset: 0,
            path: PathBuf::from("/x.log"),
            gone_since: None,
        },
    ];
    let bytes = checkpoint::encode(&entries);
    assert_eq!(checkpoint::decode(&bytes).unwrap(), entries);
    assert!(
        checkpoint::decode(&bytes[..bytes.len() - 1]).is_ok(),
        "a missing final newline is fine"
    );
    for cut in [10, bytes.len() / 2, bytes.len() - 3] {
        assert!(checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[40] ^= 1;
    assert!(checkpoint::decode(&flipped).is_err());
    assert!(checkpoint::decode(b"").is_err());
    // A file written before entries had an origin: each file is its own.
    let mut v1 = String::from(
        "nagare-tail-checkpoints 1\n2049 77 1024 00000000deadbeef 123456 - \"/x.log\"\n",
    );
    let sum = file::fnv1a(v1.as_bytes());
    v1.push_str(&format!("end 1 {sum:016x}\n"));
    let old = checkpoint::decode(v1.as_bytes()).unwrap();
    assert_eq!((old[0].origin, old[0].offset), (old[0].id, 123_456));
}

#[tokio::test]
async fn backpressure_pauses_reading_until_there_is_room() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    let lines: String = (0..3000)
        .map(|i| format!("line {i:05} {}\n", "x".repeat(80)))
        .collect();
    append(&path, lines.as_bytes());
    let mut config = raw_config(dir.path());
    config.chunk_limit_size = ByteSize(4096);
    let buffer = BufferConfig {
        total_limit_size: ByteSize(8192),
        ..BufferConfig::default()
    };
    let tail = Tail::start_with(dir, config, buffer, false);
    let paused = wait_until_async(WAIT, || tail.metrics.snapshot().paused).await;
    assert!(paused, "the source waits for room");
    let before = tail.metrics.snapshot();
    let offset = before.files[0].read_offset;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = tail.metrics.snapshot();
    assert!(after.paused && after.backpressure_waits >= 1, "{after:?}");
    assert_eq!(
        after.bytes_read, before.bytes_read,
        "nothing is read while blocked"
    );
    assert_eq!(after.files[0].read_offset, offset);
    assert!(
        offset < lines.len() as u64,
        "it stopped before the end of the file"
    );
    // Make room: reading resumes where it stopped, every line once and in order.
    let got = tail.events(3000).await;
    let got: Vec<String> = got
        .iter()
        .map(|g| g.str("log").unwrap()[..10].to_string())
        .collect();
    let want: Vec<String> = (0..3000).map(|i| format!("line {i:05}")).collect();
    assert_eq!(got, want);
    let done = tail.metrics.snapshot();
    assert!(!done.paused);
    assert_eq!(done.bytes_read, lines.len() as u64);
    tail.stop().await;
}

#[tokio::test]
async fn metrics_count_what_was_read_and_flagged() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let long = "y".repeat(60);
    let input = [
        format!("{T1} stdout F ok"),
        "not a cri line".to_string(),
        format!("{T1} stdout F {long}"),
        format!("{T1} stderr F bad \u{0}"),
    ]
    .join("\n")
        + "\n";
    let mut bytes = input.into_bytes();
    bytes.extend_from_slice(format!("{T1} stdout F ").as_bytes());
    bytes.extend_from_slice(b"\xff\n");
    let n = bytes.len() as u64;
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.format = TailFormat::Cri;
    config.max_line_bytes = ByteSize(64);
    append(&path, &bytes);
    let tail = Tail::start(dir, config);
    let got = tail.events(6).await;
    assert_eq!(got.len(), 6, "{got:#?}");
    let m = tail.metrics.snapshot();
    assert_eq!(m.open_files, 1);
    assert_eq!(m.bytes_read, n);
    assert_eq!(m.lines_read, 6, "the long line is read in two pieces");
    assert_eq!(m.records_emitted, 6);
    assert_eq!(m.lines_malformed, 1);
    assert_eq!(m.lines_truncated, 2);
    assert_eq!(m.lines_invalid_utf8, 1);
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].read_offset, n);
    assert_eq!(m.files[0].lines_read, 6);
    tail.stop().await;
}

/// A CRI message over `max_line_bytes` (here 100 bytes), whether merged from `P`
/// pieces or written as one physical line, comes out in pieces no longer than the
/// cap, each flagged `_truncated`, that put together give the whole message; the
/// lines around it are untouched.
#[tokio::test]
async fn over_long_messages_come_out_in_flagged_pieces() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let big: String = (0..350)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut input = format!("{T1} stdout F before\n");
    let pieces: Vec<&str> = big
        .as_bytes()
        .chunks(40)
        .map(|p| std::str::from_utf8(p).unwrap())
        .collect();
    for (i, piece) in pieces.iter().enumerate() {
        let tag = if i + 1 == pieces.len() { "F" } else { "P" };
        input.push_str(&format!("{T1} stdout {tag} {piece}\n"));
    }
    input.push_str(&format!("{T2} stdout F between\n"));
    input.push_str(&format!("{T2} stdout F {big}\n"));
    input.push_str(&format!("{T2} stdout F after\n"));
    append(&path, input.as_bytes());
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.format = TailFormat::Cri;
    config.max_line_bytes = ByteSize(100);
    let tail = Tail::start(dir, config);
    let mut got = Vec::new();
    while got.last().and_then(|g: &Got| g.str("log")) != Some("after") {
        got.extend(tail.events(1).await);
    }
    let logs = logs(&got);
    let between = logs.iter().position(|l| l == "between").unwrap();
    assert_eq!(logs[0], "before");
    for (range, what) in [(1..between, "merged"), (between + 1..got.len() - 1, "long")] {
        let pieces = &got[range];
        assert!(pieces.len() >= 4, "{what}: {pieces:#?}");
        assert!(
            pieces
                .iter()
                .all(|g| g.record.get(TRUNCATED_KEY) == Some(&Value::Bool(true))),
            "{what}: every piece is flagged: {pieces:#?}"
        );
        assert!(pieces.iter().all(|g| g.str("log").unwrap().len() <= 100));
        let joined: String = pieces.iter().map(|g| g.str("log").unwrap()).collect();
        assert_eq!(joined, big, "{what}: nothing is lost");
    }
    for g in [&got[0], &got[between], got.last().unwrap()] {
        assert_eq!(g.record.get(TRUNCATED_KEY), None);
    }
    assert!(tail.metrics.snapshot().lines_truncated >= 8);
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn invalid_utf8_is_counted() {
    let dir = Tail::dir();
    append(&dir.path().join("app.log"), b"fine\nbad \xff\xfe\n");
    let config = raw_config(dir.path());
    let tail = Tail::start(dir, config);
    let got = tail.events(2).await;
    assert_eq!(
        got[1].record.get(INVALID_UTF8_KEY),
        Some(&Value::Bool(true))
    );
    assert_eq!(tail.metrics.snapshot().lines_invalid_utf8, 1);
    tail.stop().await;
}

#[tokio::test]
async fn max_open_files_makes_files_wait_and_ignore_older_skips_stale_ones() {
    let dir = Tail::dir();
    for name in ["a.log", "b.log", "c.log"] {
        append(&dir.path().join(name), format!("{name}\n").as_bytes());
    }
    let stale = dir.path().join("stale.log");
    append(&stale, b"stale\n");
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let mut config = raw_config(dir.path());
    config.max_open_files = 2;
    config.ignore_older = Some(HumanDuration::secs(3600));
    let tail = Tail::start(dir, config);
    let got = sorted(logs(&tail.events(2).await));
    assert_eq!(got, ["a.log", "b.log"]);
    tail.nothing_more().await;
    assert_eq!(tail.metrics.snapshot().files_waiting, 1);
    // One is let go: the waiting one is followed.
    std::fs::remove_file(tail.path("a.log")).unwrap();
    assert_eq!(logs(&tail.events(1).await), ["c.log"]);
    tail.nothing_more().await;
    tail.stop().await;
}

/// Golden files: real Java, Python, Go, Ruby and Node.js output (stack traces among
/// ordinary lines) on stderr, with stdout lines interleaved and long lines split by
/// the runtime into CRI `P` pieces, in `tests/fixtures/tail_multiline/<lang>_*.log`;
/// the records expected in `<lang>.json`. `NAGARE_BLESS=1` rewrites the expectations
/// (review the diff).
#[tokio::test]
async fn multiline_golden_files() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tail_multiline");
    let mut checked = 0;
    for lang in ["java", "python", "go", "ruby", "nodejs"] {
        let input = std::fs::read_dir(&fixtures)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with(&format!("{lang}_")) && name.ends_with(".log")
            })
            .unwrap_or_else(|| panic!("no input for {lang}"));
        let dir = Tail::dir();
        std::fs::copy(&input, dir.path().join(input.file_name().unwrap())).unwrap();
        let mut config = config(dir.path());
        config.read_from_head = true;
        config.format = TailFormat::Cri;
        config.multiline =
            Some(serde_norway::from_str("languages: [all]\nflush_timeout: 200ms").unwrap());
        let tail = Tail::start(dir, config);
        let mut got = Vec::new();
        // Everything arrives, the last held event after its flush timeout.
        while let Ok(Some(lease)) =
            tokio::time::timeout(Duration::from_millis(800), tail.buffer.pop()).await
        {
            got.extend(decode(lease.chunk()));
            lease.delivered();
        }
        tail.stop().await;
        let actual: Vec<serde_json::Value> = got
            .iter()
            .map(|g| {
                let mut o = serde_json::Map::new();
                for key in ["stream", "logtag", "log", "msg"] {
                    if let Some(v) = g.str(key) {
                        o.insert(key.into(), v.into());
                    }
                }
                if g.record.get(TRUNCATED_KEY).is_some() {
                    o.insert(TRUNCATED_KEY.into(), true.into());
                }
                serde_json::Value::Object(o)
            })
            .collect();
        let expected_path = fixtures.join(format!("{lang}.json"));
        if std::env::var_os("NAGARE_BLESS").is_some() {
            let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            std::fs::write(&expected_path, text).unwrap();
        }
        let expected: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        if actual != expected {
            panic!(
                "{lang}: records differ from {}\n--- expected\n{}\n--- actual\n{}",
                expected_path.display(),
                serde_json::to_string_pretty(&expected).unwrap(),
                serde_json::to_string_pretty(&actual).unwrap()
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 5);
}

/// With the intervals at an hour, only the kernel's notifications (inotify) can make
/// the source find a new file and read what is appended to it.
#[tokio::test]
async fn the_kernel_wakes_the_source_for_new_files_and_writes() {
    let dir = Tail::dir();
    let mut config = raw_config(dir.path());
    config.refresh_interval = HumanDuration::secs(3600);
    config.poll_interval = HumanDuration::secs(3600);
    config.watch = true;
    let tail = Tail::start(dir, config);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = tail.path("new.log");
    append(&path, b"first\n");
    assert_eq!(logs(&tail.events(1).await), ["first"]);
    append(&path, b"second\n");
    assert_eq!(logs(&tail.events(1).await), ["second"]);
    tail.nothing_more().await;
    tail.stop().await;
}

/// The last stack trace of a container that then goes quiet is emitted whole once
/// `flush_timeout` passed without a line, not held until the next line.
#[tokio::test]
async fn a_held_multiline_event_is_flushed_after_its_timeout() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let trace = [
        "Exception in thread \"main\" java.lang.IllegalStateException: boom",
        "\tat com.example.App.run(App.java:42)",
        "\tat com.example.App.main(App.java:7)",
    ];
    let mut input = format!("{T1} stdout F started\n");
    for line in trace {
        input.push_str(&format!("{T2} stderr F {line}\n"));
    }
    append(&path, input.as_bytes());
    let mut config = config(dir.path());
    config.read_from_head = true;
    config.format = TailFormat::Cri;
    config.multiline =
        Some(serde_norway::from_str("languages: [java]\nflush_timeout: 400ms").unwrap());
    let started = std::time::Instant::now();
    let tail = Tail::start(dir, config);
    assert_eq!(logs(&tail.events(1).await), ["started"]);
    let got = tail.events(1).await;
    let waited = started.elapsed();
    assert_eq!(logs(&got), [trace.join("\n")]);
    assert_eq!(got[0].str("stream"), Some("stderr"));
    assert!(
        waited >= Duration::from_millis(400),
        "the trace was held for flush_timeout, came after {waited:?}"
    );
    tail.nothing_more().await;
    tail.stop().await;
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

/// The events in the buffer, read without acknowledging them: their lines stay past
/// the checkpoint. The leases are returned so that they stay out of the queue.
async fn unacked(tail: &Tail, n: usize) -> (Vec<Got>, Vec<nagare_core::buffer::Lease>) {
    let (mut got, mut leases) = (Vec::new(), Vec::new());
    while got.len() < n {
        let lease = tokio::time::timeout(Duration::from_secs(10), tail.buffer.pop())
            .await
            .unwrap_or_else(|_| panic!("waited for {n} events, got {got:#?}"))
            .expect("buffer open");
        got.extend(decode(lease.chunk()));
        leases.push(lease);
    }
    (got, leases)
}

#[tokio::test]
async fn source_keys_are_absent_by_default() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, b"one\n");
    let tail = Tail::start(dir, raw_config(Path::new("/")).with_paths(&path));
    let got = tail.events(1).await;
    let keys: Vec<&str> = got[0].record.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["log"]);
    tail.stop().await;
}

#[tokio::test]
async fn plain_lines_carry_path_offset_and_event_id_on_both_record_paths() {
    for filter in [false, true] {
        let dir = Tail::dir();
        let path = dir.path().join("app.log");
        append(
            &path,
            b"one\ntwo\n{\"path\":\"app's own\",\"offset\":-1,\"n\":1}\n",
        );
        let config = keyed(raw_config(Path::new("/")).with_paths(&path));
        let tail = Tail::start_with(dir, config, BufferConfig::default(), filter);
        let got = tail.events(3).await;
        let at = positions(&got);
        assert_eq!(
            at.iter()
                .map(|(l, o, _)| (l.as_str(), *o))
                .collect::<Vec<_>>(),
            [("one", 0), ("two", 4), ("", 8)],
            "filter: {filter}"
        );
        let hash = id_hash(&at[0].2, 0);
        assert_eq!(id_hash(&at[1].2, 4), hash, "one hash per file");
        assert_eq!(id_hash(&at[2].2, 8), hash);
        for g in &got {
            assert_eq!(g.str("path"), Some(path.to_str().unwrap()));
        }
        // A merged JSON field named like a source key is replaced by the source's.
        assert_eq!(got[2].record.get("n"), Some(&Value::Int(1)));
        let keys: Vec<&str> = got[2].record.iter().map(|(k, _)| k.as_str()).collect();
        let mut want = vec!["n", "path", "offset", "line_id"];
        if filter {
            want.push("seen");
        }
        assert_eq!(keys, want);
        tail.stop().await;
    }
}

#[tokio::test]
async fn cri_partial_merges_carry_the_offset_of_their_first_piece() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let input = cri_input();
    append(&path, input.as_bytes());
    let line_at = |n: usize| -> u64 {
        input
            .split_inclusive('\n')
            .take(n)
            .map(|l| l.len() as u64)
            .sum()
    };
    let mut config = keyed(config(dir.path()));
    config.read_from_head = true;
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    check_cri(&got, &path);
    let offsets: Vec<u64> = positions(&got).iter().map(|p| p.1).collect();
    // stderr F (line 1); stdout P + P + F from line 0; the JSON message (line 4).
    assert_eq!(offsets, [line_at(1), line_at(0), line_at(4)]);
    tail.stop().await;
}

#[tokio::test]
async fn multiline_events_carry_the_offset_of_their_first_line() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let lines = [
        format!("{T1} stdout F started"),
        format!("{T2} stderr F java.lang.IllegalStateException: boom"),
        format!("{T2} stdout F in between"),
        format!("{T2} stderr P \tat com.example.App.run"),
        format!("{T2} stderr F (App.java:42)"),
        format!("{T2} stderr F \tat com.example.App.main(App.java:7)"),
        format!("{T2} stdout F done"),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    append(&path, input.as_bytes());
    let line_at = |n: usize| -> u64 { lines[..n].iter().map(|l| l.len() as u64 + 1).sum() };
    let mut config = keyed(config(dir.path()));
    config.read_from_head = true;
    config.format = TailFormat::Cri;
    config.multiline =
        Some(serde_norway::from_str("languages: [java]\nflush_timeout: 200ms").unwrap());
    let tail = Tail::start(dir, config);
    let mut got = positions(&tail.events(4).await);
    got.sort_by_key(|p| p.1);
    let got: Vec<(&str, u64)> = got.iter().map(|(l, o, _)| (l.as_str(), *o)).collect();
    assert_eq!(
        got,
        [
            ("started", line_at(0)),
            (
                "java.lang.IllegalStateException: boom\n\tat com.example.App.run(App.java:42)\n\tat com.example.App.main(App.java:7)",
                line_at(1)
            ),
            ("in between", line_at(2)),
            ("done", line_at(6)),
        ]
    );
    tail.stop().await;
}

/// Lines read again after a crash get the ids they had, also when the file grew
/// past its first KiB meanwhile and was renamed by rotation while the source was
/// down, and for CRI messages merged from pieces; a new file gets other ids.
#[tokio::test]
async fn lines_read_again_after_a_crash_under_a_rotated_name_keep_their_ids() {
    let dir = Tail::dir();
    let path = dir.path().join("web-1_default_nginx-0.log");
    let cri = |n: u32| format!("{T1} stdout P piece {n} \n{T1} stdout F end {n}\n");
    append(&path, cri(0).as_bytes());
    let mut config = keyed(config(Path::new("/")).with_paths(&path));
    config.format = TailFormat::Cri;
    config.read_from_head = true;
    let tail = Tail::start(dir, config.clone());
    assert_eq!(tail.events(1).await.len(), 1, "acknowledged: checkpointed");
    let store = tail.path("tail/tail/checkpoints");
    let on_disk = || {
        let text = std::fs::read_to_string(&store).unwrap_or_default();
        let offset = text.lines().nth(1).and_then(|l| l.split(' ').nth(4));
        offset == Some(cri(0).len().to_string().as_str())
    };
    assert!(
        wait_until_async(WAIT, on_disk).await,
        "the checkpoint is written"
    );
    // Past the first KiB, never acknowledged.
    let more: String = (1..40).map(cri).collect();
    append(&path, more.as_bytes());
    let (first, _leases) = unacked(&tail, 39).await;
    let first = positions(&first);
    let home = tail.crash().await;
    std::fs::rename(&path, home.path().join("web-1_default_nginx-0.log.1")).unwrap();
    append(&path, cri(99).as_bytes());
    let tail = Tail::start_with(home, config, BufferConfig::default(), false);
    let got = tail.events(40).await;
    let again = positions(&got);
    let (old, new): (Vec<_>, Vec<_>) = again.into_iter().partition(|p| p.0 != "piece 99 end 99");
    assert_eq!(old, first, "the same lines, offsets and ids");
    assert_eq!(old[0].0, "piece 1 end 1");
    assert_ne!(
        id_hash(&new[0].2, 0),
        id_hash(&old[0].2, old[0].1),
        "a new file, new ids"
    );
    let rotated = got.iter().find(|g| g.str("log") == Some("piece 1 end 1"));
    let rotated = rotated.and_then(|g| g.str("path")).unwrap();
    assert!(rotated.ends_with(".log.1"), "{rotated}");
    tail.nothing_more().await;
    tail.stop().await;
}

/// Checkpoints of files no longer followed are kept (and saved) for the grace period,
/// then forgotten; those of followed files never are.
#[test]
fn checkpoints_of_files_gone_longer_than_the_grace_period_are_forgotten() {
    let dir = Tail::dir();
    let entry = |ino: u64, name: &str| checkpoint::Stored {
        id: file::FileId { dev: 1, ino },
        origin: file::FileId { dev: 1, ino },
        fingerprint: file::Fingerprint { len: 3, hash: 7 },
        offset: 100,
        path: dir.path().join(name),
        gone_since: None,
    };
    let (store, loaded) =
        checkpoint::Checkpoints::open(dir.path(), "tail", TailMetrics::new()).unwrap();
    assert_eq!(loaded, checkpoint::Loaded::Fresh);
    store.register(entry(1, "followed.log"));
    let gone = store.register(entry(2, "gone.log"));
    store.release(gone);
    assert_eq!(
        store.forget(Duration::from_secs(3600)),
        0,
        "within the grace period"
    );
    store.write_now();
    drop(store);

    // After a restart the released entry is still known...
    let (store, loaded) =
        checkpoint::Checkpoints::open(dir.path(), "tail", TailMetrics::new()).unwrap();
    assert_eq!(loaded, checkpoint::Loaded::Restored);
    assert_eq!(store.unclaimed().len(), 2);
    let again = store.claim(|e| e.id.ino == 1).unwrap();
    assert_eq!(store.stored(again).unwrap().offset, 100);
    assert_eq!(store.forget(Duration::from_secs(3600)), 0);
    // ...and forgotten once gone for longer than the grace period (zero here); the
    // followed one stays.
    assert_eq!(store.forget(Duration::ZERO), 1);
    assert_eq!(store.forget(Duration::ZERO), 0);
    store.write_now();
    drop(store);
    let (store, _) = checkpoint::Checkpoints::open(dir.path(), "tail", TailMetrics::new()).unwrap();
    let left: Vec<u64> = store.unclaimed().iter().map(|e| e.id.ino).collect();
    assert_eq!(left, [1]);
}

mod chunks;
mod copytruncate;

/// Model-based test: random scripts of writes, partial writes, rename rotations,
/// copytruncates, deletions, recreations, graceful restarts and crashes are played
/// against the real tail source on real files, and what comes out is checked against
/// a model of which lines must: every line completed in a file the source had a
/// chance to see comes out at least once, nothing else comes out, without crashes
/// nothing comes out twice, and a line that comes out twice (read again after a
/// crash, from the file, from its rotated name or from a copytruncate copy) carries
/// the same event id each time.
mod model {
    use std::collections::{BTreeMap, BTreeSet};
    use std::os::unix::fs::MetadataExt;

    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    pub(super) enum Op {
        Write(u8),
        PartialWrite,
        Rotate,
        CopyTruncate,
        Delete,
        Recreate,
        Restart,
        /// The next hop acknowledges what the source emitted so far (until then it
        /// lies past the checkpoint).
        Ack,
        /// The source is killed; with `true`, what it emitted was acknowledged first,
        /// with `false` what was not acknowledged yet never will be (chunks in
        /// flight), so it is read again after the restart.
        Crash(bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u8..40).prop_map(Op::Write),
            2 => Just(Op::PartialWrite),
            2 => Just(Op::Rotate),
            2 => Just(Op::CopyTruncate),
            1 => Just(Op::Delete),
            1 => Just(Op::Recreate),
            1 => Just(Op::Restart),
            2 => Just(Op::Ack),
            1 => any::<bool>().prop_map(Op::Crash),
        ]
    }

    /// The writer's side of the model.
    #[derive(Default)]
    struct Model {
        next: u32,
        /// A line of which only the first half is written: its number and the rest.
        partial: Option<(u32, String)>,
        /// Lines that must come out.
        must: BTreeSet<String>,
        rotations: u32,
        exists: bool,
        /// Lines in the file now at the path.
        current: Vec<String>,
        /// Lines of deleted files: a crash before they were delivered loses them (no
        /// process can read a deleted file it did not hold open).
        deleted: Vec<String>,
        /// Lines that may come out but need not.
        may: BTreeSet<String>,
    }

    impl Model {
        fn line(n: u32) -> String {
            // Long enough that the fingerprint of each file differs quickly.
            format!("L{n:06} {}", "p".repeat((n % 7) as usize * 10))
        }
    }

    struct Run {
        tail: Option<Tail>,
        got: BTreeMap<String, usize>,
        /// The event ids each line came out with.
        ids: BTreeMap<String, BTreeSet<String>>,
        /// Chunks taken from the buffer and not acknowledged yet: their lines lie
        /// past the checkpoint.
        held: Vec<nagare_core::buffer::Lease>,
        /// Chunks a crashed source had handed out, never acknowledged: kept until
        /// the end so that dropping them neither hands them back nor fires their
        /// receipts (as after a kill, nothing of that process acts again).
        dead: Vec<nagare_core::buffer::Lease>,
    }

    impl Run {
        fn tail(&self) -> &Tail {
            self.tail.as_ref().expect("running")
        }

        fn record(&mut self, got: &[Got]) {
            for g in got {
                let line = g.str("log").unwrap().to_string();
                let id = g.str("line_id").expect("an event id").to_string();
                self.ids.entry(line.clone()).or_default().insert(id);
                *self.got.entry(line).or_default() += 1;
            }
        }

        /// Takes what the source emitted and acknowledges everything taken.
        fn drain(&mut self) {
            self.take();
            for lease in self.held.drain(..) {
                lease.delivered();
            }
        }

        /// Takes what the source emitted so far, recorded but not acknowledged.
        fn take(&mut self) {
            while let Some(lease) = self.tail().buffer.try_pop() {
                self.record(&decode(lease.chunk()));
                self.held.push(lease);
            }
        }

        /// Waits until the source follows the file now at `path` (it has seen it, so
        /// what is written to it can no longer be lost).
        async fn wait_followed(&mut self, path: &Path) {
            let Ok(meta) = std::fs::metadata(path) else {
                return;
            };
            for _ in 0..300 {
                self.take();
                let m = self.tail().metrics.snapshot();
                if m.files
                    .iter()
                    .any(|f| f.inode == meta.ino() && f.path == path)
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("the source never followed {}", path.display());
        }
    }

    pub(super) async fn play(ops: Vec<Op>) {
        let dir = Tail::dir();
        let path = dir.path().join("app.log");
        let mut config = raw_config(dir.path());
        config.rotate_wait = HumanDuration::millis(30);
        config.event_id_key = Some("line_id".into());
        let mut model = Model::default();
        let mut run = Run {
            tail: Some(Tail::start(dir, config)),
            got: BTreeMap::new(),
            ids: BTreeMap::new(),
            held: Vec::new(),
            dead: Vec::new(),
        };
        let crashes = ops.iter().filter(|o| matches!(o, Op::Crash(_))).count();
        let complete_partial = |model: &mut Model| {
            if let Some((n, rest)) = model.partial.take() {
                append(&path, format!("{rest}\n").as_bytes());
                model.must.insert(Model::line(n));
            }
        };
        for op in &ops {
            match op {
                Op::Write(k) => {
                    let mut text = String::new();
                    if let Some((n, rest)) = model.partial.take() {
                        text.push_str(&rest);
                        text.push('\n');
                        model.must.insert(Model::line(n));
                    }
                    for _ in 0..*k {
                        let line = Model::line(model.next);
                        model.next += 1;
                        text.push_str(&line);
                        text.push('\n');
                        model.current.push(line.clone());
                        model.must.insert(line);
                    }
                    append(&path, text.as_bytes());
                    model.exists = true;
                }
                Op::PartialWrite if model.partial.is_none() => {
                    // Half a line: the rest and its newline come with the next write.
                    let n = model.next;
                    model.next += 1;
                    let line = Model::line(n);
                    let (head, rest) = line.split_at(line.len() / 2);
                    append(&path, head.as_bytes());
                    model.partial = Some((n, rest.to_string()));
                    model.current.push(line);
                    model.exists = true;
                }
                Op::Rotate | Op::CopyTruncate | Op::Delete if model.exists => {
                    complete_partial(&mut model);
                    run.wait_followed(&path).await;
                    model.rotations += 1;
                    let rotated = path.with_file_name(format!("app.log.{}", model.rotations));
                    match op {
                        Op::Rotate => {
                            std::fs::rename(&path, &rotated).unwrap();
                            model.exists = false;
                        }
                        Op::CopyTruncate => {
                            std::fs::copy(&path, &rotated).unwrap();
                            truncate(&path);
                        }
                        _ => {
                            std::fs::remove_file(&path).unwrap();
                            model.deleted.append(&mut model.current);
                            model.exists = false;
                        }
                    }
                    model.current.clear();
                }
                Op::Recreate => {
                    complete_partial(&mut model);
                    if model.exists {
                        run.wait_followed(&path).await;
                        std::fs::remove_file(&path).unwrap();
                        model.deleted.append(&mut model.current);
                    }
                    let line = Model::line(model.next);
                    model.next += 1;
                    append(&path, format!("{line}\n").as_bytes());
                    model.current.push(line.clone());
                    model.must.insert(line);
                    model.exists = true;
                }
                Op::Ack => run.drain(),
                Op::Restart => {
                    run.drain();
                    let (got, tail) = run.tail.take().unwrap().restart().await;
                    run.record(&got);
                    run.tail = Some(tail);
                }
                Op::Crash(ack) => {
                    if *ack {
                        run.drain();
                    } else {
                        run.take();
                        let in_flight = std::mem::take(&mut run.held);
                        run.dead.extend(in_flight);
                    }
                    for line in model.deleted.drain(..) {
                        if !run.got.contains_key(&line) && model.must.remove(&line) {
                            model.may.insert(line);
                        }
                    }
                    let tail = run.tail.take().unwrap();
                    let (config, buffer) = (tail.config.clone(), tail.buffer_config.clone());
                    let home = tail.crash().await;
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    run.tail = Some(Tail::start_with(home, config, buffer, false));
                }
                _ => {}
            }
            run.take();
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        // Everything that must come out does.
        for _ in 0..1000 {
            run.drain();
            if model.must.iter().all(|l| run.got.contains_key(l)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        run.drain();
        let tail = run.tail.take().unwrap();
        let got = tail.stop().await;
        run.record(&got);
        let missing: Vec<&String> = model
            .must
            .iter()
            .filter(|l| !run.got.contains_key(*l))
            .collect();
        assert!(missing.is_empty(), "lines lost: {missing:?}\nops: {ops:?}");
        let unexpected: Vec<&String> = run
            .got
            .keys()
            .filter(|l| !model.must.contains(*l) && !model.may.contains(*l))
            .collect();
        assert!(
            unexpected.is_empty(),
            "lines that were never written whole: {unexpected:?}\nops: {ops:?}"
        );
        if crashes == 0 {
            let dups: Vec<(&String, &usize)> = run.got.iter().filter(|(_, c)| **c > 1).collect();
            assert!(
                dups.is_empty(),
                "duplicates without a crash: {dups:?}\nops: {ops:?}"
            );
        }
        let two_ids: Vec<(&String, &BTreeSet<String>)> =
            run.ids.iter().filter(|(_, ids)| ids.len() > 1).collect();
        assert!(
            two_ids.is_empty(),
            "{} lines came out with two different ids: {two_ids:?}\nops: {ops:?}",
            two_ids.len()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn the_tailer_follows_the_model(ops in proptest::collection::vec(op(), 1..14)) {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(play(ops));
        }
    }
}
