//! The kit against a fake destination in-process: the kit is a library, and what it
//! does with each kind of answer is what these tests pin down (the sinks built on it
//! are tested against real servers, files and pipes in their own tests).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::buffer::{Buffer, BufferConfig};
use crate::config::HumanDuration;
use crate::dead_letter::DeadLetter;
use crate::receipt::Delivery;
use crate::testing::{chunk_of, chunk_with_undecodable, sink_context, with_receipt};
use crate::time::EventTime;
use crate::value::{Map, Value};

/// Encodes the event `{"n": N, "k": KEY, ...}` as the item `N` of key `KEY` (or
/// `""`), of size `size` when the record says so; refuses an event with `refuse`.
/// With `lines`, consecutive events of a key share an item, as a file's lines do.
struct TestEncoder {
    lines: bool,
    seen: Arc<Mutex<Destination>>,
}

impl Encoder for TestEncoder {
    type Key = String;

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, String>) {
        self.seen.lock().unwrap().encoded += 1;
        let r = event.record;
        if r.get("refuse").is_some() {
            out.refuse("the test destination takes no `refuse`");
            return;
        }
        let key = r.get("k").and_then(Value::as_str).unwrap_or("").to_string();
        let n = r.get("n").and_then(Value::as_i64).unwrap_or(-1);
        if self.lines {
            out.append(key, |buf| {
                buf.extend_from_slice(format!("{n}\n").as_bytes())
            });
            return;
        }
        let bytes = n.to_string().into_bytes();
        let size = r
            .get("size")
            .and_then(Value::as_i64)
            .map_or(bytes.len(), |s| s as usize);
        out.push(key, bytes, size);
    }

    fn destination(&self, key: &String) -> Option<(&'static str, String)> {
        Some(("key", key.clone()))
    }
}

/// What the fake destination saw and answers.
#[derive(Default)]
struct Destination {
    /// Every request sent: its key and items' bytes as text.
    sent: Vec<(String, Vec<String>)>,
    /// Requests built.
    built: usize,
    /// Events encoded so far.
    encoded: usize,
    /// Events encoded when each request was sent.
    encoded_at_send: Vec<usize>,
}

type Answer = Box<dyn FnMut(&[String], usize) -> BatchOutcome + Send>;

/// A fake destination: answers each request with `answer(items, attempt number)`.
struct TestService {
    seen: Arc<Mutex<Destination>>,
    answer: Answer,
    /// Never answers: the test aborts.
    hang: bool,
    /// Has the kit gzip batches as they fill, at this level.
    gzip: Option<u32>,
}

struct TestRequest {
    key: String,
    items: Vec<String>,
    /// The batch as the kit gzipped it, when it did.
    gzipped: Option<Gzipped>,
}

impl Service<String> for TestService {
    type Request = TestRequest;

    fn build(&mut self, key: &String, items: &mut [Item<String>]) -> TestRequest {
        self.seen.lock().unwrap().built += 1;
        TestRequest {
            key: key.clone(),
            // The bytes move into the request, as a service that saves a copy does:
            // every test that sends items again checks that `restore` gave them back.
            items: items
                .iter_mut()
                .map(|i| String::from_utf8(std::mem::take(&mut i.bytes)).unwrap())
                .collect(),
            gzipped: None,
        }
    }

    fn gzip_level(&self) -> Option<u32> {
        self.gzip
    }

    fn build_gzipped(
        &mut self,
        key: &String,
        items: &mut [Item<String>],
        gzipped: Gzipped,
    ) -> TestRequest {
        self.seen.lock().unwrap().built += 1;
        assert!(
            items.iter().all(|i| i.bytes.is_empty()),
            "the items let their bytes go once gzipped"
        );
        // The items as the destination reads them: the body unpacked, cut at each
        // item's length.
        let raw = crate::compression::decompress(
            crate::compression::Compression::Gzip,
            &gzipped.body,
            gzipped.raw_len(),
        )
        .unwrap();
        let mut at = 0;
        let items = gzipped
            .lengths
            .iter()
            .map(|&len| {
                let text = String::from_utf8(raw[at..at + len as usize].to_vec()).unwrap();
                at += len as usize;
                text
            })
            .collect();
        assert_eq!(at, raw.len(), "the lengths cover the body");
        TestRequest {
            key: key.clone(),
            items,
            gzipped: Some(gzipped),
        }
    }

    fn restore(&mut self, request: TestRequest, items: &mut [Item<String>]) {
        if let Some(g) = request.gzipped {
            Gzipped::restore(&g.body, &g.lengths, items);
            return;
        }
        for (item, text) in items.iter_mut().zip(request.items) {
            item.bytes = text.into_bytes();
        }
    }

    async fn send(&mut self, request: &mut TestRequest) -> Sent {
        if self.hang {
            std::future::pending::<()>().await;
        }
        let attempt = {
            let mut seen = self.seen.lock().unwrap();
            seen.sent.push((request.key.clone(), request.items.clone()));
            let encoded = seen.encoded;
            seen.encoded_at_send.push(encoded);
            seen.sent.len() - 1
        };
        Sent {
            destination: "test".into(),
            outcome: (self.answer)(&request.items, attempt),
        }
    }
}

fn record(n: i64, key: &str) -> (EventTime, Map) {
    let mut m = Map::new();
    m.insert("n", n);
    if !key.is_empty() {
        m.insert("k", key);
    }
    (EventTime::new(n, 0), m)
}

fn limits(max_events: usize, max_bytes: usize) -> BatchLimits {
    BatchLimits {
        max_events,
        max_bytes,
        max_span: None,
        timeout: Duration::ZERO,
        chunk_at_a_time: false,
    }
}

struct Run {
    /// Whether the kit gzips batches as they fill.
    gzip: Option<u32>,
    buffer: Buffer,
    metrics: crate::metrics::Metrics,
    seen: Arc<Mutex<Destination>>,
    dead_letter: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn setup(config: BufferConfig) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("dl/out.ndjson");
    let buffer = Buffer::new("out", &config).with_dead_letter(DeadLetter::new(dead_letter.clone()));
    Run {
        gzip: None,
        buffer,
        metrics: crate::metrics::Metrics::new("test"),
        seen: Arc::default(),
        dead_letter,
        _dir: dir,
    }
}

fn quick_retries() -> BufferConfig {
    BufferConfig {
        retry_wait: HumanDuration(Duration::from_millis(1)),
        retry_max_interval: HumanDuration(Duration::from_millis(5)),
        ..BufferConfig::default()
    }
}

const WORDS: Words = Words {
    kind: "test",
    rejected: "the test destination refused events for good; wrote them to the dead-letter output",
    retry_some: "the test destination refused some events for now; sending them again",
    retry_all: "the test request failed; sending it again",
    split: "the test request was refused as a whole; splitting it",
};

impl Run {
    /// Runs the kit over `chunks` until the buffer is drained; returns each chunk's
    /// delivery.
    async fn drain(
        &self,
        chunks: Vec<crate::Chunk>,
        limits: BatchLimits,
        lines: bool,
        answer: Answer,
    ) -> Vec<Delivery> {
        let mut receipts = Vec::new();
        for chunk in chunks {
            let (chunk, rx) = with_receipt(chunk);
            self.buffer.push(chunk).await.unwrap();
            receipts.push(rx);
        }
        self.buffer.close();
        let (mut ctx, _abort) = sink_context("out", &self.buffer, Path::new("/nonexistent"));
        ctx.metrics = self.metrics.component("out", "sink", "test");
        let worker = (
            TestEncoder {
                lines,
                seen: self.seen.clone(),
            },
            TestService {
                seen: self.seen.clone(),
                answer,
                hang: false,
                gzip: self.gzip,
            },
        );
        tokio::time::timeout(
            Duration::from_secs(30),
            run(&ctx, limits, WORDS, vec![worker]),
        )
        .await
        .expect("the kit drains its buffer");
        let mut out = Vec::new();
        for rx in receipts {
            out.push(rx.await.unwrap());
        }
        out
    }

    /// [`drain`](Self::drain) of one chunk of the numbers `0..n`, in batches of up to
    /// 100 items.
    async fn numbers(&self, n: i64, answer: Answer) -> Vec<Delivery> {
        self.numbers_in(n, limits(100, 1000), answer).await
    }

    /// [`numbers`](Self::numbers) under `limits`.
    async fn numbers_in(&self, n: i64, limits: BatchLimits, answer: Answer) -> Vec<Delivery> {
        let chunk = chunk_of("t", (0..n).map(|n| record(n, "")));
        self.drain(vec![chunk], limits, false, answer).await
    }

    /// [`drain`](Self::drain) of one chunk of `events` into a destination that takes
    /// everything; checks that the chunk was delivered.
    async fn one_chunk(
        &self,
        events: impl IntoIterator<Item = (EventTime, Map)>,
        limits: BatchLimits,
    ) {
        let chunk = chunk_of("t", events);
        let got = self.drain(vec![chunk], limits, false, delivered()).await;
        assert_eq!(got, vec![Delivery::Delivered]);
    }

    /// A worker's encoder (an item per event) and a service answering with
    /// `answer`, or never (`hang`).
    fn worker(&self, answer: Answer, hang: bool) -> (TestEncoder, TestService) {
        let service = TestService {
            seen: self.seen.clone(),
            answer,
            hang,
            gzip: self.gzip,
        };
        let encoder = TestEncoder {
            lines: false,
            seen: self.seen.clone(),
        };
        (encoder, service)
    }

    fn sent(&self) -> Vec<(String, Vec<String>)> {
        self.seen.lock().unwrap().sent.clone()
    }

    fn dead(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.dead_letter)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Waits up to 10 s for `check` to hold.
async fn wait_for(mut check: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the condition did not hold within 10 s");
}

fn delivered() -> Answer {
    Box::new(|_, _| BatchOutcome::All(Outcome::Delivered))
}

/// Answers `outcome` to the requests `when` picks (by their items and number), and
/// "all delivered" to the others.
fn unless(
    when: impl Fn(&[String], usize) -> bool + Send + 'static,
    outcome: BatchOutcome,
) -> Answer {
    Box::new(move |items, attempt| {
        if when(items, attempt) {
            outcome.clone()
        } else {
            BatchOutcome::All(Outcome::Delivered)
        }
    })
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn batches_by_events_and_bytes_across_chunks() {
    let t = setup(BufferConfig::default());
    let chunks = vec![
        chunk_of("t", (0..3).map(|n| record(n, ""))),
        chunk_of("t", (3..5).map(|n| record(n, ""))),
    ];
    let got = t.drain(chunks, limits(2, 1000), false, delivered()).await;
    assert_eq!(got, vec![Delivery::Delivered; 2]);
    let sent: Vec<Vec<String>> = t.sent().into_iter().map(|(_, i)| i).collect();
    assert_eq!(
        sent,
        vec![texts(&["0", "1"]), texts(&["2", "3"]), texts(&["4"])]
    );

    // Items of size 4 under a limit of 10 bytes: two a batch; one larger than the
    // limit goes alone.
    let t = setup(BufferConfig::default());
    let mut events: Vec<_> = (0..5).map(|n| record(n, "")).collect();
    for (_, m) in &mut events {
        m.insert("size", 4);
    }
    events[4].1.insert("size", 50);
    t.one_chunk(events, limits(100, 10)).await;
    let sent: Vec<Vec<String>> = t.sent().into_iter().map(|(_, i)| i).collect();
    assert_eq!(
        sent,
        vec![texts(&["0", "1"]), texts(&["2", "3"]), texts(&["4"])]
    );
}

#[tokio::test]
async fn a_chunk_larger_than_a_batch_is_sent_as_it_is_encoded() {
    let t = setup(BufferConfig::default());
    let got = t.numbers_in(5, limits(2, 1000), delivered()).await;
    // Acked once, after its last batch.
    assert_eq!(got, vec![Delivery::Delivered]);
    let sent: Vec<Vec<String>> = t.sent().into_iter().map(|(_, i)| i).collect();
    assert_eq!(
        sent,
        vec![texts(&["0", "1"]), texts(&["2", "3"]), texts(&["4"])]
    );
    // The first batch went out when the event after it was encoded (it could still
    // have joined the last item), not once the whole chunk was.
    assert_eq!(t.seen.lock().unwrap().encoded_at_send, vec![3, 5, 5]);
}

#[tokio::test]
async fn batches_per_key_and_within_a_span() {
    let t = setup(BufferConfig::default());
    let events = [(0, "a"), (1, "b"), (2, "a"), (3, "b"), (4, "a")]
        .into_iter()
        .map(|(n, k)| record(n, k));
    t.one_chunk(events, limits(100, 1000)).await;
    let mut sent = t.sent();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            ("a".to_string(), texts(&["0", "2", "4"])),
            ("b".to_string(), texts(&["1", "3"])),
        ]
    );

    // Event times 0, 5, 20 and 25 s under a span of 10 s: two batches.
    let t = setup(BufferConfig::default());
    let events = [0, 5, 20, 25].into_iter().map(|n| record(n, ""));
    let span = BatchLimits {
        max_span: Some(Duration::from_secs(10)),
        ..limits(100, 1000)
    };
    t.one_chunk(events, span).await;
    let sent: Vec<Vec<String>> = t.sent().into_iter().map(|(_, i)| i).collect();
    assert_eq!(sent, vec![texts(&["0", "5"]), texts(&["20", "25"])]);
}

#[tokio::test]
async fn a_partial_batch_waits_its_timeout() {
    let t = setup(BufferConfig::default());
    let (chunk, rx) = with_receipt(chunk_of("t", (0..2).map(|n| record(n, ""))));
    t.buffer.push(chunk).await.unwrap();
    let (ctx, abort) = sink_context("out", &t.buffer, Path::new("/nonexistent"));
    let worker = t.worker(delivered(), false);
    let limits = BatchLimits {
        timeout: Duration::from_millis(300),
        ..limits(100, 1000)
    };
    let start = tokio::time::Instant::now();
    let task = tokio::spawn(async move { run(&ctx, limits, WORDS, vec![worker]).await });
    assert_eq!(rx.await.unwrap(), Delivery::Delivered);
    // The buffer stayed open: only the timeout sent the batch (a lower bound,
    // whatever the machine's load).
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(t.sent().len(), 1);
    abort.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn per_item_outcomes_ack_or_mark_each_lease() {
    let t = setup(BufferConfig::default());
    let chunks = vec![
        chunk_of("t", (0..2).map(|n| record(n, "a"))),
        chunk_of("t", (2..4).map(|n| record(n, "a"))),
    ];
    // Item "1" (of the first chunk) is refused for good.
    let answer: Answer = Box::new(|items, _| {
        BatchOutcome::Items(
            items
                .iter()
                .map(|i| match i.as_str() {
                    "1" => Outcome::Rejected {
                        status: Some(400),
                        reason: "bad field".into(),
                        error: Some(serde_json::json!({"type": "bad"})),
                    },
                    _ => Outcome::Delivered,
                })
                .collect(),
        )
    });
    let got = t.drain(chunks, limits(100, 1000), false, answer).await;
    assert_eq!(got, vec![Delivery::Failed, Delivery::Delivered]);
    assert_eq!(t.sent().len(), 1);
    let dead = t.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["record"], serde_json::json!({"n": 1, "k": "a"}));
    assert_eq!(dead[0]["reason"], "bad field");
    assert_eq!(dead[0]["status"], 400);
    assert_eq!(dead[0]["key"], "a");
    assert_eq!(dead[0]["error"], serde_json::json!({"type": "bad"}));
    // Counted: three delivered (one byte each), one refused for good.
    let text = t.metrics.render();
    let labels = r#"component_id="out",component_kind="sink",component_type="test""#;
    for line in [
        format!("nagare_component_sent_events_total{{{labels}}} 3"),
        format!("nagare_component_sent_bytes_total{{{labels}}} 3"),
        format!("nagare_component_errors_total{{{labels},error_type=\"rejected\"}} 1"),
        format!("nagare_component_errors_total{{{labels},error_type=\"request_failed\"}} 0"),
        format!("nagare_component_discarded_events_total{{{labels},reason=\"dead_letter\"}} 1"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
}

#[tokio::test]
async fn a_failed_request_is_sent_again_with_its_bytes_and_retried_items_alone() {
    sent_again_as_built_and_retried_items_alone(None).await;
}

#[tokio::test]
async fn a_batch_gzipped_as_it_filled_is_sent_again_as_built_and_its_retried_items_alone() {
    sent_again_as_built_and_retried_items_alone(Some(1)).await;
}

async fn sent_again_as_built_and_retried_items_alone(gzip: Option<u32>) {
    // The whole request fails twice: it is sent again as built.
    let mut t = setup(quick_retries());
    t.gzip = gzip;
    let unavailable = BatchOutcome::All(Outcome::Retry {
        status: Some(503),
        reason: "unavailable".into(),
    });
    let answer = unless(|_, attempt| attempt < 2, unavailable);
    let got = t.numbers(3, answer).await;
    assert_eq!(got, vec![Delivery::Delivered]);
    assert_eq!(t.sent().len(), 3);
    assert_eq!(
        t.seen.lock().unwrap().built,
        1,
        "built once, sent three times"
    );

    // Items refused for now go again, and only they (a gzipped batch's items given
    // back their bytes first).
    let mut t = setup(quick_retries());
    t.gzip = gzip;
    let answer: Answer = Box::new(|items, attempt| {
        BatchOutcome::Items(
            items
                .iter()
                .map(|i| {
                    if attempt == 0 && i != "0" {
                        Outcome::Retry {
                            status: Some(429),
                            reason: "too many requests".into(),
                        }
                    } else {
                        Outcome::Delivered
                    }
                })
                .collect(),
        )
    });
    let got = t.numbers(3, answer).await;
    assert_eq!(got, vec![Delivery::Delivered]);
    let sent: Vec<Vec<String>> = t.sent().into_iter().map(|(_, i)| i).collect();
    assert_eq!(sent, vec![texts(&["0", "1", "2"]), texts(&["1", "2"])]);
    assert!(t.dead().is_empty());
}

#[tokio::test]
async fn a_request_refused_as_a_whole_is_split_until_the_culprit_is_alone() {
    split_until_the_culprit_is_alone(None).await;
}

#[tokio::test]
async fn a_batch_gzipped_as_it_filled_is_split_until_the_culprit_is_alone() {
    split_until_the_culprit_is_alone(Some(1)).await;
}

async fn split_until_the_culprit_is_alone(gzip: Option<u32>) {
    let mut t = setup(BufferConfig::default());
    t.gzip = gzip;
    let too_large = BatchOutcome::Split {
        status: Some(413),
        reason: "too large".into(),
    };
    let answer = unless(|items, _| items.iter().any(|i| i == "2"), too_large);
    let got = t.numbers(4, answer).await;
    assert_eq!(got, vec![Delivery::Failed]);
    let sent: Vec<Vec<String>> = t.sent().into_iter().map(|(_, i)| i).collect();
    assert_eq!(
        sent,
        vec![
            texts(&["0", "1", "2", "3"]),
            texts(&["0", "1"]),
            texts(&["2", "3"]),
            texts(&["2"]),
            texts(&["3"]),
        ]
    );
    let dead = t.dead();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["record"]["n"], 2);
    assert_eq!(
        (dead[0]["status"].clone(), dead[0]["reason"].clone()),
        (413.into(), "too large".into())
    );
}

#[tokio::test]
async fn retries_run_out_into_the_dead_letter_output() {
    let t = setup(BufferConfig {
        retry_max_times: Some(1),
        ..quick_retries()
    });
    let answer: Answer = Box::new(|_, _| {
        BatchOutcome::All(Outcome::Retry {
            status: None,
            reason: "connection refused".into(),
        })
    });
    let got = t.numbers(2, answer).await;
    assert_eq!(got, vec![Delivery::Failed]);
    assert_eq!(t.sent().len(), 2);
    let dead = t.dead();
    assert_eq!(dead.len(), 2);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 2 failed attempts over ")
            && reason.ends_with("s; last error: connection refused"),
        "{reason}"
    );
}

#[tokio::test]
async fn undecodable_entries_and_refused_events_go_alone_and_lines_share_an_item() {
    let t = setup(BufferConfig::default());
    let mut events: Vec<_> = (0..5).map(|n| record(n, "")).collect();
    events[3].1.insert("refuse", true);
    let chunk = chunk_with_undecodable("t", events, 1);
    let got = t
        .drain(vec![chunk], limits(100, 1000), true, delivered())
        .await;
    assert_eq!(got, vec![Delivery::Failed]);
    // Entries: 0, bad, 1, 2, 3 (refused), 4: the lines of consecutive events share an
    // item, and an entry not sent starts another.
    assert_eq!(
        t.sent(),
        vec![(String::new(), texts(&["0\n", "1\n2\n", "4\n"]))]
    );
    let dead = t.dead();
    assert_eq!(dead.len(), 2);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("undecodable entry 1 ")
    );
    assert_eq!(dead[1]["record"]["n"], 3);
}

#[tokio::test]
async fn a_failed_dead_letter_write_is_tried_again_until_it_works() {
    let dir = tempfile::tempdir().unwrap();
    // The dead-letter folder's place is taken by a file: no write can work.
    let blocker = dir.path().join("dl");
    std::fs::write(&blocker, "").unwrap();
    let buffer = Buffer::new("out", &quick_retries())
        .with_dead_letter(DeadLetter::new(blocker.join("out.ndjson")));
    let (chunk, rx) = with_receipt(chunk_of("t", [record(0, "")]));
    buffer.push(chunk).await.unwrap();
    buffer.close();
    let (ctx, _abort) = sink_context("out", &buffer, dir.path());
    let seen = Arc::new(Mutex::new(Destination::default()));
    let worker = (
        TestEncoder {
            lines: false,
            seen: seen.clone(),
        },
        TestService {
            seen: seen.clone(),
            answer: Box::new(|_, _| {
                BatchOutcome::All(Outcome::Rejected {
                    status: None,
                    reason: "no".into(),
                    error: None,
                })
            }),
            hang: false,
            gzip: None,
        },
    );
    let task = tokio::spawn(async move { run(&ctx, limits(10, 1000), WORDS, vec![worker]).await });
    let mut rx = rx;
    wait_for(|| !seen.lock().unwrap().sent.is_empty()).await;
    // Rejected, and the write fails: the lease waits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rx.try_recv().is_err(),
        "resolved before its dead letter was written"
    );
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(rx.await.unwrap(), Delivery::Failed);
    task.await.unwrap();
    let written = std::fs::read_to_string(blocker.join("out.ndjson")).unwrap();
    assert!(written.contains("\"reason\":\"no\""), "{written}");
}

#[tokio::test]
async fn abort_returns_at_once_and_the_leases_go_back() {
    let t = setup(BufferConfig::default());
    let (chunk, _rx) = with_receipt(chunk_of("t", [record(0, "")]));
    let id = chunk.id();
    t.buffer.push(chunk).await.unwrap();
    let (ctx, abort) = sink_context("out", &t.buffer, Path::new("/nonexistent"));
    let worker = t.worker(delivered(), true);
    let task = tokio::spawn(async move { run(&ctx, limits(1, 1000), WORDS, vec![worker]).await });
    wait_for(|| t.buffer.stats().queued_chunks == 0).await;
    abort.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("abort returns at once")
        .unwrap();
    let again = crate::testing::take(&t.buffer, Duration::from_secs(5)).await;
    assert_eq!(again.id(), id);
}

#[test]
fn a_batcher_bounds_what_it_holds_over_many_keys() {
    let mut b = Batcher::new(limits(100, 10));
    let now = tokio::time::Instant::now();
    for (i, key) in ["a", "b", "c", "d"].into_iter().enumerate() {
        b.push(
            Item {
                key: key.to_string(),
                bytes: vec![],
                size: 4,
                time: EventTime::new(0, 0),
                ticket: Ticket {
                    slot: 0,
                    position: i as u32,
                    events: 1,
                },
            },
            now,
        );
    }
    // Three keys of 4 bytes reach the limit of 10: the oldest, then the next, were
    // sealed.
    let ready: Vec<String> = std::iter::from_fn(|| b.take()).map(|b| b.key).collect();
    assert_eq!(ready, ["a", "b"]);
    assert!(!b.is_empty());
    b.seal_all();
    let ready: Vec<String> = std::iter::from_fn(|| b.take()).map(|b| b.key).collect();
    assert_eq!(ready, ["c", "d"]);
}

/// An item of `key` with `bytes`, at position `n`.
fn item(key: &str, bytes: &[u8], n: u32) -> Item<String> {
    Item {
        key: key.to_string(),
        bytes: bytes.to_vec(),
        size: bytes.len(),
        time: EventTime::new(0, 0),
        ticket: Ticket {
            slot: 0,
            position: n,
            events: 1,
        },
    }
}

/// The items' bytes, one after the other.
fn concat(items: &[Item<String>]) -> Vec<u8> {
    items.iter().flat_map(|i| i.bytes.clone()).collect()
}

#[test]
fn a_gzipping_batcher_holds_batches_gzipped_and_gives_the_bytes_back() {
    let mut b = Batcher::new(limits(1000, 1 << 20)).gzip(Some(1));
    let now = tokio::time::Instant::now();
    let keys: Vec<String> = (0..=GZIP_STREAMS).map(|k| format!("k{k}")).collect();
    // Items of every key in turn: one key more than are gzipped at a time.
    let mut n = 0;
    for round in 0..300 {
        for key in &keys {
            let line = format!("{{\"key\":\"{key}\",\"round\":{round}}}\n");
            b.push(item(key, line.as_bytes(), n), now);
            n += 1;
        }
    }
    b.seal_all();
    let batches: Vec<Batch<String>> = std::iter::from_fn(|| b.take()).collect();
    assert_eq!(batches.len(), keys.len());
    for (i, batch) in batches.into_iter().enumerate() {
        let expected: Vec<u8> = (0..300)
            .flat_map(|round| {
                format!("{{\"key\":\"{}\",\"round\":{round}}}\n", batch.key).into_bytes()
            })
            .collect();
        let Batch {
            key,
            mut items,
            gzipped,
        } = batch;
        if i == GZIP_STREAMS {
            // The batch opened when every stream was taken holds its bytes as they are.
            assert!(gzipped.is_none(), "{key}");
            assert_eq!(concat(&items), expected);
            continue;
        }
        let gzipped = gzipped.unwrap_or_else(|| panic!("{key} gzipped"));
        assert!(
            items.iter().all(|i| i.bytes.is_empty()),
            "{key}: bytes let go"
        );
        assert_eq!(gzipped.raw_len(), expected.len());
        assert!(gzipped.body.len() < expected.len() / 4, "{key}: compressed");
        assert_eq!(
            crate::compression::decompress(
                crate::compression::Compression::Gzip,
                &gzipped.body,
                expected.len()
            )
            .unwrap(),
            expected,
            "{key}: the body is the items' bytes in order"
        );
        Gzipped::restore(&gzipped.body, &gzipped.lengths, &mut items);
        assert_eq!(concat(&items), expected);
        assert_eq!(
            items[7].bytes,
            format!("{{\"key\":\"{key}\",\"round\":7}}\n").into_bytes()
        );
    }

    // Sealed batches give their streams back: the next batches are gzipped again.
    for key in &keys[..GZIP_STREAMS] {
        b.push(item(key, b"again\n", 0), now);
    }
    b.seal_all();
    assert!(std::iter::from_fn(|| b.take()).all(|batch| batch.gzipped.is_some()));
}

mod blocked;
