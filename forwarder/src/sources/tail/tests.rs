//! The tail source against real files in a temporary directory: the real task runs
//! with a router whose sink is a real buffer, and the tests decode the chunks it
//! delivers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::component::SourceContext;
use nagare_core::config::{ByteSize, HumanDuration};
use nagare_core::pattern::TagPattern;
use nagare_core::router::{Filter, RouterBuilder, Verdict};
use nagare_core::shutdown::Shutdown;
use nagare_core::{Event, EventTime, Map, Value};
use tokio::task::JoinHandle;

use super::discover::tag_for;
use super::*;

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
    dir: tempfile::TempDir,
    buffer: Buffer,
    shutdown: Shutdown,
    task: JoinHandle<Result<(), TailError>>,
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
    config
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
        dir: tempfile::TempDir,
        config: TailConfig,
        buffer: BufferConfig,
        filter: bool,
    ) -> Self {
        let buffer = Buffer::new("out", &buffer);
        let mut rb = RouterBuilder::new();
        if filter {
            rb.filter("mark", TagPattern::new("**").unwrap(), Arc::new(MarkSeen));
        }
        rb.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
        let shutdown = Shutdown::new();
        let ctx = SourceContext {
            name: "tail".into(),
            router: Arc::new(rb.build()),
            shutdown: shutdown.clone(),
            data_dir: dir.path().to_path_buf(),
        };
        let task = tokio::spawn(run(config, ctx));
        Tail {
            dir,
            buffer,
            shutdown,
            task,
        }
    }

    fn start(dir: tempfile::TempDir, config: TailConfig) -> Self {
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
            lease.ack();
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
            lease.ack();
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
    // A file created after start is read from its start; once its lines arrive the
    // first scan is certainly done.
    tokio::time::sleep(Duration::from_millis(30)).await;
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
    tokio::time::sleep(Duration::from_millis(50)).await;
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
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stats = tail.buffer.stats();
    assert_eq!((stats.queued_chunks, stats.in_flight_chunks), (0, 1));
    assert!(stats.blocked >= 1);
    first.ack();
    tail.shutdown.cancel();
    while !tail.task.is_finished() {
        if let Ok(Some(lease)) =
            tokio::time::timeout(Duration::from_millis(50), tail.buffer.pop()).await
        {
            got.extend(decode(lease.chunk()));
            lease.ack();
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
"#;
    let config: TailConfig = serde_norway::from_str(documented).unwrap();
    config.validate().unwrap();
    assert_eq!(config.format, TailFormat::Cri);

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
}
