//! The `stdout` sink's writes: a reader that lags, writes that fail and are tried
//! again, retries that run out, and a reader that goes away. The output is a real
//! pipe (`std::io::pipe`) or the real `/dev/full` wherever that can show the case;
//! only a write that fails for a while and then works again needs an output of the
//! test's own (`Flaky`), since no real standard output does that on demand.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nagare_aggregator::sinks::file::Format;
use nagare_aggregator::sinks::stdout::{self, StdoutConfig, StdoutSinkError};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::component::SinkContext;
use nagare_core::config::HumanDuration;
use nagare_core::receipt::{Delivery, Receipt};
use nagare_core::shutdown::Shutdown;
use nagare_core::{Chunk, ChunkBuilder, EventTime, Map, Tag, Value};
use nagare_testkit::wait_until;
use tokio::sync::oneshot;

fn ctx(buffer: &Buffer, data: &std::path::Path) -> SinkContext {
    SinkContext {
        name: "out".into(),
        buffer: buffer.clone(),
        abort: Shutdown::new(),
        data_dir: data.to_path_buf(),
        metrics: nagare_core::metrics::ComponentMetrics::detached("out"),
    }
}

/// A memory buffer that gives up after one retry, 20 ms later.
fn one_retry() -> Buffer {
    Buffer::new(
        "out",
        &BufferConfig {
            retry_max_times: Some(1),
            retry_wait: HumanDuration::millis(20),
            ..BufferConfig::default()
        },
    )
}

/// Events `first..first + n` of tag `t`, each a line of about 120 bytes.
fn chunk(first: i64, n: i64) -> (Chunk, oneshot::Receiver<Delivery>) {
    let mut b = ChunkBuilder::new(Tag::new("t"));
    for i in first..first + n {
        let mut r = Map::new();
        r.insert("i", Value::Int(i));
        r.insert("msg", format!("line {i:06} {}", "x".repeat(80)));
        b.push(EventTime::new(1_705_314_600, 0), &r);
    }
    let (receipt, rx) = Receipt::channel();
    (b.finish().unwrap().with_receipt(receipt), rx)
}

fn line(i: i64) -> String {
    format!("{{\"i\":{i},\"msg\":\"line {i:06} {}\"}}\n", "x".repeat(80))
}

fn lines(range: std::ops::Range<i64>) -> String {
    range.map(line).collect()
}

fn record_format() -> StdoutConfig {
    StdoutConfig {
        format: Format::Record,
    }
}

/// The stdout sink running on `buffer`, writing to `out`, in `record` format.
fn start(
    buffer: &Buffer,
    dir: &std::path::Path,
    out: impl Write + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), StdoutSinkError>> {
    tokio::spawn(stdout::run_to(record_format(), ctx(buffer, dir), out))
}

/// How a chunk was delivered, waiting at most 10 s.
async fn outcome(rx: oneshot::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("the chunk is resolved in time")
        .expect("the receipt fires")
}

fn read_dead_letter(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("dead-letter/out.ndjson"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_reader_holds_one_chunk_in_flight_and_gets_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let mut receipts = Vec::new();
    for c in 0..30 {
        let (ch, rx) = chunk(c * 1000, 1000);
        buffer.push(ch).await.unwrap();
        receipts.push(rx);
    }
    buffer.close();
    let (mut reader, writer) = io::pipe().unwrap();
    let sink = start(&buffer, dir.path(), writer);
    // Nobody reads yet: the pipe fills and the write blocks. The sink holds the chunk
    // it is writing and nothing more; the others wait in the buffer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = buffer.stats();
    assert_eq!(
        (stats.in_flight_chunks, stats.queued_chunks),
        (1, 29),
        "{stats:?}"
    );
    let read = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        reader.read_to_string(&mut out).unwrap();
        out
    });
    tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        read.await.unwrap() == lines(0..30_000),
        "every line, once, in order"
    );
    for rx in receipts {
        assert_eq!(rx.await.unwrap(), Delivery::Delivered);
    }
}

/// An output that accepts at most `step` bytes a call, and fails while `failing` is
/// set (after taking `before_failing` more bytes). It stands in for a standard
/// output redirected to a disk that fills up and is then freed, which no test can
/// arrange for real without mounting a file system.
#[derive(Clone)]
struct Flaky {
    got: Arc<Mutex<Vec<u8>>>,
    step: usize,
    failing: Arc<AtomicBool>,
    before_failing: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
}

impl Flaky {
    fn new(step: usize) -> Self {
        Self {
            got: Arc::default(),
            step,
            failing: Arc::default(),
            before_failing: Arc::default(),
            failures: Arc::default(),
        }
    }

    /// An output that takes `step` bytes a write and fails once `bytes` are out.
    fn failing_after(step: usize, bytes: usize) -> Self {
        let out = Self::new(step);
        out.before_failing.store(bytes, Ordering::SeqCst);
        out.failing.store(true, Ordering::SeqCst);
        out
    }

    fn text(&self) -> String {
        String::from_utf8(self.got.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Flaky {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut n = buf.len().min(self.step);
        if self.failing.load(Ordering::SeqCst) {
            let room = self.before_failing.load(Ordering::SeqCst);
            if room == 0 {
                self.failures.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            n = n.min(room);
            self.before_failing.store(room - n, Ordering::SeqCst);
        }
        self.got.lock().unwrap().extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_tried_again_from_the_byte_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::new(
        "out",
        &BufferConfig {
            retry_wait: HumanDuration::millis(20),
            ..BufferConfig::default()
        },
    );
    // The output fails in the middle of a line, 2,500 bytes in.
    let out = Flaky::failing_after(1000, 2500);
    let (ch, rx) = chunk(0, 100);
    buffer.push(ch).await.unwrap();
    let sink = start(&buffer, dir.path(), out.clone());
    assert!(
        wait_until(Duration::from_secs(10), || out
            .failures
            .load(Ordering::SeqCst)
            >= 3),
        "the write is tried again"
    );
    out.failing.store(false, Ordering::SeqCst);
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert!(out.text() == lines(0..100), "no line twice, no half line");
    assert!(read_dead_letter(dir.path()).is_empty());
    buffer.close();
    sink.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_retries_the_events_not_written_go_to_the_dead_letter_and_the_sink_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = one_retry();
    // 2,500 bytes out: 20 whole lines and part of the 21st, then the output fails
    // for good.
    let out = Flaky::failing_after(1000, 2500);
    let (ch, rx) = chunk(0, 100);
    buffer.push(ch).await.unwrap();
    let sink = start(&buffer, dir.path(), out.clone());
    assert_eq!(outcome(rx).await, Delivery::Failed);
    let all = lines(0..100);
    let whole = all[..2500].matches('\n').count();
    let dead_letter = read_dead_letter(dir.path());
    let given_up: Vec<i64> = dead_letter
        .iter()
        .map(|l| l["record"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(given_up, (whole as i64..100).collect::<Vec<_>>());
    let reason = dead_letter[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 2 failed attempts")
            && reason.contains("cannot write to standard output"),
        "{reason}"
    );
    // The output works again: the cut line is ended before the next chunk's lines.
    out.failing.store(false, Ordering::SeqCst);
    let (ch, rx) = chunk(100, 3);
    buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    let text = out.text();
    assert!(
        text == format!("{}\n{}", &all[..2500], lines(100..103)),
        "{text}"
    );
    buffer.close();
    sink.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_device_sends_everything_to_the_dead_letter_without_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = one_retry();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let sink = start(&buffer, dir.path(), full);
    for c in 0..2 {
        let (ch, rx) = chunk(c * 10, 10);
        buffer.push(ch).await.unwrap();
        assert_eq!(outcome(rx).await, Delivery::Failed);
    }
    let dead_letter = read_dead_letter(dir.path());
    assert_eq!(dead_letter.len(), 20);
    for (i, l) in dead_letter.iter().enumerate() {
        assert_eq!(l["record"]["i"], i as i64);
        let reason = l["reason"].as_str().unwrap();
        assert!(reason.contains("No space left on device"), "{reason}");
    }
    buffer.close();
    sink.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_stops_the_sink_and_its_chunk_stays_in_the_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let (reader, writer) = io::pipe().unwrap();
    drop(reader);
    let (ch, mut rx) = chunk(0, 10);
    buffer.push(ch).await.unwrap();
    let stopped = tokio::time::timeout(
        Duration::from_secs(10),
        stdout::run_to(record_format(), ctx(&buffer, dir.path()), writer),
    )
    .await
    .unwrap();
    let err = stopped.unwrap_err();
    assert!(matches!(err, StdoutSinkError::Closed { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("standard output was closed by its reader"),
        "{err}"
    );
    // Not written, not given up: back in the buffer, undelivered, and not in the
    // dead-letter output.
    let stats = buffer.stats();
    assert_eq!((stats.queued_chunks, stats.in_flight_chunks), (1, 0));
    assert!(rx.try_recv().is_err());
    assert!(read_dead_letter(dir.path()).is_empty());
}
