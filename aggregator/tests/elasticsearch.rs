//! The Elasticsearch sink against a real osmem-server (the OpenSearch REST API), with
//! nagare-testkit's FaultProxy in front of it where a test needs Elasticsearch's
//! refusals (429, 503) on demand.

use std::path::Path;
use std::time::Duration;

use nagare_aggregator::sinks::elasticsearch::{self, ElasticsearchConfig};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::chunk::Origin;
use nagare_core::config::{ConfigDocument, HumanDuration};
use nagare_core::dead_letter::DeadLetter;
use nagare_core::receipt::{Delivery, Receipt};
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{
    chunk_of, chunk_with_undecodable, close_and_drain, sink_context, with_receipt,
};
use nagare_core::{Chunk, ChunkBuilder, EventTime, Map, Tag, Value};
use nagare_testkit::{BulkFault, FaultProxy, Osmem, free_port, wait_until};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// 2024-01-15T10:30:00Z.
const T0: i64 = 1_705_314_600;

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("nagare_aggregator=debug")
        .with_test_writer()
        .try_init();
}

fn es_config(endpoint: &str, extra: &str) -> ElasticsearchConfig {
    let yaml = format!(
        "endpoints: ['{endpoint}']\nbatch: {{ max_events: 50, timeout: 100ms }}\nrequest_timeout: 5s\n{extra}"
    );
    ConfigDocument::from_text("test.yaml", &yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn record(i: usize) -> Map {
    let mut m = Map::new();
    m.insert("message", format!("line {i}"));
    m.insert("n", Value::Int(i as i64));
    m
}

/// A chunk of `records` at T0 + position seconds (+ `nanos`), with a receipt.
fn chunk(tag: &str, records: Vec<Map>, nanos: u32) -> (Chunk, oneshot::Receiver<Delivery>) {
    let timed = records
        .into_iter()
        .enumerate()
        .map(|(i, r)| (EventTime::new(T0 + i as i64, nanos), r));
    with_receipt(chunk_of(tag, timed))
}

struct Running {
    buffer: Buffer,
    abort: Shutdown,
    task: JoinHandle<Result<(), elasticsearch::ElasticsearchSinkError>>,
    _data: tempfile::TempDir,
}

/// A memory buffer with short waits between retries, so that they happen within a
/// test's time.
fn fast_retries() -> BufferConfig {
    BufferConfig {
        retry_wait: HumanDuration::millis(50),
        retry_max_interval: HumanDuration::millis(200),
        ..BufferConfig::default()
    }
}

fn buffer() -> Buffer {
    Buffer::new("es", &fast_retries())
}

fn start(config: ElasticsearchConfig) -> Running {
    start_with(config, buffer())
}

/// Starts the sink on a buffer that may already hold chunks.
fn start_with(config: ElasticsearchConfig, buffer: Buffer) -> Running {
    init_logs();
    let data = tempfile::tempdir().unwrap();
    let (ctx, abort) = sink_context("es", &buffer, data.path());
    let task = tokio::spawn(elasticsearch::run(config, ctx));
    Running {
        buffer,
        abort,
        task,
        _data: data,
    }
}

impl Running {
    /// Closes the buffer and waits for the sink to drain it and return.
    async fn finish(self) {
        close_and_drain(&self.buffer, self.task, Duration::from_secs(10)).await;
    }
}

async fn outcome(rx: oneshot::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("the chunk is resolved in time")
        .expect("the receipt fires")
}

fn ids_of(chunk: &Chunk) -> Vec<String> {
    (0..chunk.count())
        .map(|i| format!("{}-{i}", chunk.id().to_hex()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_searchable_with_timestamp_fields_and_daily_index() {
    let os = Osmem::start();
    let sink = start(es_config(os.url(), "include_tag_key: true\n"));
    // A chunk larger than a batch (120 events, batches of 50), and one whose events
    // straddle midnight UTC.
    let (big, big_rx) = chunk("app.web", (0..120).map(record).collect(), 123_456_789);
    let mut b = ChunkBuilder::new(Tag::new("app.db"));
    let midnight = 1_705_363_200; // 2024-01-16T00:00:00Z
    b.push(EventTime::new(midnight - 1, 999_999_999), &record(1000));
    b.push(EventTime::new(midnight, 0), &record(1001));
    let (receipt, late_rx) = Receipt::channel();
    let late = b.finish().unwrap().with_receipt(receipt);
    let (big_ids, late_ids) = (ids_of(&big), ids_of(&late));
    sink.buffer.push(big).await.unwrap();
    sink.buffer.push(late).await.unwrap();
    assert_eq!(outcome(big_rx).await, Delivery::Delivered);
    assert_eq!(outcome(late_rx).await, Delivery::Delivered);

    let day1 = os.documents("logstash-2024.01.15");
    assert_eq!(day1.len(), 121, "120 events of app.web and one of app.db");
    let doc7 = day1
        .iter()
        .find(|d| d.id == big_ids[7])
        .expect("event 7 by its id");
    assert_eq!(
        doc7.source,
        json!({
            "message": "line 7",
            "n": 7,
            "@timestamp": "2024-01-15T10:30:07.123456789Z",
            "tag": "app.web",
        })
    );
    let before = day1.iter().find(|d| d.id == late_ids[0]).unwrap();
    assert_eq!(
        before.source["@timestamp"],
        "2024-01-15T23:59:59.999999999Z"
    );
    assert_eq!(before.source["tag"], "app.db");
    let day2 = os.documents("logstash-2024.01.16");
    assert_eq!(day2.len(), 1);
    assert_eq!(day2[0].id, late_ids[1]);
    assert_eq!(
        day2[0].source["@timestamp"],
        "2024-01-16T00:00:00.000000000Z"
    );
    assert_eq!(os.indices(), ["logstash-2024.01.15", "logstash-2024.01.16"]);
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_span_chunks_and_split_large_ones() {
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    // Queue everything before the sink starts: ten chunks of 3, then one of 70.
    let buffer = buffer();
    let mut receipts = Vec::new();
    let mut small_ids = Vec::new();
    for c in 0..10 {
        let (ch, rx) = chunk("app", (0..3).map(|i| record(c * 3 + i)).collect(), 0);
        small_ids.extend(ids_of(&ch));
        receipts.push(rx);
        buffer.push(ch).await.unwrap();
    }
    let (large, rx) = chunk("app", (0..70).map(record).collect(), 0);
    let large_ids = ids_of(&large);
    receipts.push(rx);
    buffer.push(large).await.unwrap();
    let sink = start_with(es_config(&proxy.url(), "index: batched\n"), buffer);
    for rx in receipts {
        assert_eq!(outcome(rx).await, Delivery::Delivered);
    }
    assert_eq!(os.count("batched"), 100);
    let log = proxy.bulk_log();
    let sent: Vec<String> = log
        .iter()
        .flat_map(|x| x.ids.iter().flatten().cloned())
        .collect();
    let mut expected = small_ids.clone();
    expected.extend(large_ids.iter().cloned());
    assert_eq!(sent, expected, "every event sent once, in order");
    assert!(
        log.iter()
            .all(|x| x.ids.len() <= 50 && x.gzip && x.status == 200),
        "{log:?}"
    );
    // The ten small chunks share the first request with 20 events of the large one,
    // whose other 50 fill the second.
    let sizes: Vec<usize> = log.iter().map(|x| x.ids.len()).collect();
    assert_eq!(sizes, [50, 50]);
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_entry_goes_to_the_dead_letter_alone_and_the_rest_of_its_chunk_is_indexed() {
    let os = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("es.ndjson");
    let sink = start_with(
        es_config(os.url(), "index: mixed\ncompress: false\n"),
        buffer().with_dead_letter(DeadLetter::new(dead_letter.clone())),
    );
    let timed = (0..10).map(|i| (EventTime::new(T0 + i as i64, 0), record(i)));
    let (ch, rx) = with_receipt(chunk_with_undecodable("app.api", timed, 4));
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(
        outcome(rx).await,
        Delivery::Failed,
        "its source learns one entry did not arrive"
    );
    assert_eq!(os.count("mixed"), 10, "every event that can be decoded");
    let lines = read_lines(&dead_letter);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["tag"], "app.api");
    assert_eq!(lines[0]["entry"], 4);
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("undecodable entry 4 at byte "),
        "{reason}"
    );
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_conflicts_go_to_the_dead_letter_file_and_the_rest_is_indexed() {
    let os = Osmem::start();
    os.put_mapping(
        "typed",
        json!({ "properties": { "n": { "type": "long" } } }),
    );
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("dl/es.ndjson");
    let sink = start_with(
        es_config(os.url(), "index: typed\ncompress: false\n"),
        buffer().with_dead_letter(DeadLetter::new(dead_letter.clone())),
    );
    let records: Vec<Map> = (0..20)
        .map(|i| {
            let mut r = record(i);
            if i % 7 == 3 {
                r.insert("n", format!("not a number {i}"));
            }
            r
        })
        .collect();
    let (ch, rx) = chunk("app.api", records, 0);
    let (good, good_rx) = chunk("app.api", vec![record(100)], 0);
    sink.buffer.push(ch).await.unwrap();
    sink.buffer.push(good).await.unwrap();
    assert_eq!(
        outcome(rx).await,
        Delivery::Failed,
        "its source learns some events were refused"
    );
    assert_eq!(outcome(good_rx).await, Delivery::Delivered);
    assert_eq!(os.count("typed"), 18);

    let lines = read_lines(&dead_letter);
    assert_eq!(lines.len(), 3, "events 3, 10 and 17");
    for (line, i) in lines.iter().zip([3, 10, 17]) {
        assert_eq!(line["time"], format!("2024-01-15T10:30:{i:02}.000000000Z"));
        assert_eq!(line["tag"], "app.api");
        assert_eq!(line["index"], "typed");
        assert_eq!(line["status"], 400);
        let reason = line["reason"].as_str().unwrap();
        assert!(reason.starts_with("mapper_parsing_exception: "), "{reason}");
        assert_eq!(line["error"]["type"], "mapper_parsing_exception");
        assert_eq!(
            line["record"],
            json!({ "message": format!("line {i}"), "n": format!("not a number {i}") })
        );
    }
    sink.finish().await;
}

fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_request_429_and_503_are_retried_with_auth_until_indexed() {
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    proxy.push(BulkFault::Reject(429));
    proxy.push(BulkFault::Reject(503));
    let sink = start(es_config(
        &proxy.url(),
        "index: retried\nuser: nagare\npassword: s3cret\n",
    ));
    let (ch, rx) = chunk("app", (0..10).map(record).collect(), 0);
    let ids = ids_of(&ch);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert_eq!(os.count("retried"), 10);
    let log = proxy.bulk_log();
    let statuses: Vec<u16> = log.iter().map(|x| x.status).collect();
    assert_eq!(statuses, [429, 503, 200]);
    let want: Vec<Option<String>> = ids.into_iter().map(Some).collect();
    assert!(
        log.iter().all(|x| x.ids == want),
        "the same batch each time: {log:?}"
    );
    assert!(
        log.iter()
            .all(|x| x.authorization.as_deref() == Some("Basic bmFnYXJlOnMzY3JldA==")),
        "basic auth on every request: {log:?}"
    );
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_level_429_retries_only_those_items() {
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    proxy.push(BulkFault::RejectItems {
        positions: vec![1, 3],
        status: 429,
    });
    proxy.push(BulkFault::RejectItems {
        positions: vec![0],
        status: 503,
    });
    let sink = start(es_config(&proxy.url(), "index: items\n"));
    let (ch, rx) = chunk("app", (0..5).map(record).collect(), 0);
    let ids = ids_of(&ch);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    let stored: Vec<String> = os.documents("items").into_iter().map(|d| d.id).collect();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(stored, want);
    let log = proxy.bulk_log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0].ids.len(), 5);
    assert_eq!(
        log[1].ids,
        [Some(ids[1].clone()), Some(ids[3].clone())],
        "only the refused items"
    );
    assert_eq!(
        log[2].ids,
        [Some(ids[1].clone())],
        "only the item refused again"
    );
    sink.finish().await;
}

/// Security refusing some items (credentials that may not write their index) blocks
/// them: sent again, alone, past the retry limit, never dead-lettered; the rest of
/// the request is indexed at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_refused_to_the_credentials_are_sent_again_until_they_are_stored() {
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    for _ in 0..3 {
        proxy.push(BulkFault::RejectItems {
            positions: vec![0],
            status: 403,
        });
    }
    // One retry allowed: a refusal for now would go to the dead-letter file.
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("es.ndjson");
    let buffer = Buffer::new(
        "es",
        &BufferConfig {
            retry_max_times: Some(1),
            ..fast_retries()
        },
    )
    .with_dead_letter(DeadLetter::new(dead_letter.clone()));
    let sink = start_with(es_config(&proxy.url(), "index: secured\n"), buffer);
    let (ch, rx) = chunk("app", (0..4).map(record).collect(), 0);
    let ids = ids_of(&ch);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    let mut stored: Vec<String> = os.documents("secured").into_iter().map(|d| d.id).collect();
    stored.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(stored, want, "every event stored in the end");
    let log = proxy.bulk_log();
    let sent: Vec<usize> = log.iter().map(|x| x.ids.len()).collect();
    assert_eq!(sent, [4, 1, 1, 1], "{log:?}");
    assert!(
        log[1..].iter().all(|x| x.ids == [Some(ids[0].clone())]),
        "only the refused item, three times (past the one retry): {log:?}"
    );
    assert!(
        !dead_letter.exists(),
        "nothing dead-lettered for credentials"
    );
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_refused_as_a_whole_is_split_to_isolate_the_event() {
    // Bodies gzipped (made as the batch filled, the halves built from the items'
    // bytes given back from it) and plain (the items concatenated when sent).
    for compress in [true, false] {
        split_to_isolate_the_event(compress).await;
    }
}

async fn split_to_isolate_the_event(compress: bool) {
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    // [a b c d] refused, then [a b] refused, then [a] refused alone: a goes to the
    // dead-letter file; b, c and d are indexed.
    for _ in 0..3 {
        proxy.push(BulkFault::Reject(400));
    }
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("es.ndjson");
    let index = format!("split-{compress}");
    let sink = start_with(
        es_config(
            &proxy.url(),
            &format!("index: {index}\ncompress: {compress}\n"),
        ),
        buffer().with_dead_letter(DeadLetter::new(dead_letter.clone())),
    );
    let (ch, rx) = chunk("app", (0..4).map(record).collect(), 0);
    let ids = ids_of(&ch);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Failed);
    let sent: Vec<usize> = proxy.bulk_log().iter().map(|x| x.ids.len()).collect();
    assert_eq!(sent, [4, 2, 1, 1, 2], "compress: {compress}");
    let stored: Vec<String> = os.documents(&index).into_iter().map(|d| d.id).collect();
    assert_eq!(stored, ids[1..], "compress: {compress}");
    let lines = read_lines(&dead_letter);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["status"], 400);
    assert_eq!(lines[0]["record"]["message"], "line 0");
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn osmem_down_at_start_then_up_is_delivered() {
    let port = free_port();
    // `api_version` given, so that no `GET /` at start waits for the server: this
    // is about `_bulk` retries (tests/elasticsearch_connection.rs has the start-up).
    let sink = start(es_config(
        &format!("http://127.0.0.1:{port}"),
        "index: late\napi_version: v8\n",
    ));
    let (ch, mut rx) = chunk("app", (0..25).map(record).collect(), 0);
    sink.buffer.push(ch).await.unwrap();
    // Several connection attempts fail meanwhile.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(rx.try_recv().is_err(), "nothing can be delivered yet");
    assert_eq!(
        sink.buffer.stats().in_flight_chunks,
        1,
        "the chunk stays leased while retried"
    );
    let os = Osmem::start_on(port);
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert_eq!(os.count("late"), 25);
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_chunk_does_not_duplicate_documents() {
    let os = Osmem::start();
    for (index, op) in [("idx-op", "index"), ("create-op", "create")] {
        let sink = start(es_config(
            os.url(),
            &format!("index: {index}\nop_type: {op}\n"),
        ));
        let (ch, rx) = chunk("app", (0..8).map(record).collect(), 0);
        // The same chunk (same id, without the first copy's receipt) delivered twice,
        // as after a crash before the ack.
        let again = Chunk::new(ch.id(), ch.tag().clone(), ch.entries().clone(), ch.count());
        sink.buffer.push(ch).await.unwrap();
        assert_eq!(outcome(rx).await, Delivery::Delivered);
        let (receipt, rx) = Receipt::channel();
        sink.buffer.push(again.with_receipt(receipt)).await.unwrap();
        assert_eq!(
            outcome(rx).await,
            Delivery::Delivered,
            "{op}: 409 under create counts as stored"
        );
        assert_eq!(os.count(index), 8, "{op}");
        sink.finish().await;
    }
}

/// A record for `op_type: update`/`upsert`: the document id in `key`, and `fields`.
fn keyed(i: usize, fields: &[(&str, &str)]) -> Map {
    let mut m = Map::new();
    m.insert("key", format!("doc-{i}"));
    for (k, v) in fields {
        m.insert(*k, *v);
    }
    m
}

/// `(id, state, message)` of each document of `index`, by id.
fn states(os: &Osmem, index: &str) -> Vec<(String, serde_json::Value, serde_json::Value)> {
    let mut docs: Vec<_> = os
        .documents(index)
        .into_iter()
        .map(|d| (d.id, d.source["state"].clone(), d.source["message"].clone()))
        .collect();
    docs.sort_by(|a, b| a.0.cmp(&b.0));
    docs
}

/// `upsert` creates the documents of `id_key` then merges a second batch into them;
/// `update` merges into documents already there. Partial updates: a field the
/// second batch does not carry keeps its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_and_upsert_change_the_documents_of_id_key() {
    let os = Osmem::start();
    let ids: Vec<String> = (0..5).map(|i| format!("doc-{i}")).collect();
    let first: Vec<Map> = (0..5)
        .map(|i| keyed(i, &[("message", "placed"), ("state", "new")]))
        .collect();
    let second: Vec<Map> = (0..5).map(|i| keyed(i, &[("state", "done")])).collect();
    let want = |state: &str| -> Vec<(String, serde_json::Value, serde_json::Value)> {
        ids.iter()
            .map(|id| (id.clone(), json!(state), json!("placed")))
            .collect()
    };

    let config = |index: &str, op: &str| {
        es_config(
            os.url(),
            &format!("index: {index}\nop_type: {op}\nid_key: key\n"),
        )
    };

    // upsert: created from the first batch, changed by the second.
    let sink = start(config("upserted", "upsert"));
    let (ch, rx) = chunk("app", first.clone(), 0);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert_eq!(states(&os, "upserted"), want("new"), "created by upsert");
    let (ch, rx) = chunk("app", second.clone(), 0);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert_eq!(os.count("upserted"), 5, "the same documents");
    assert_eq!(states(&os, "upserted"), want("done"), "changed by upsert");
    sink.finish().await;

    // update: the documents indexed first (by the same ids), then changed.
    let sink = start(config("updated", "index"));
    let (ch, rx) = chunk("app", first, 0);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    sink.finish().await;
    assert_eq!(states(&os, "updated"), want("new"));
    let sink = start(config("updated", "update"));
    let (ch, rx) = chunk("app", second, 0);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert_eq!(os.count("updated"), 5, "the same documents");
    assert_eq!(states(&os, "updated"), want("done"), "changed by update");
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_returns_at_once_and_leaves_the_chunk_in_the_buffer() {
    let port = free_port();
    let sink = start(es_config(
        &format!("http://127.0.0.1:{port}"),
        "index: never\napi_version: v8\n",
    ));
    let (ch, _rx) = chunk("app", (0..3).map(record).collect(), 0);
    sink.buffer.push(ch).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || sink
        .buffer
        .stats()
        .in_flight_chunks
        == 1));
    sink.buffer.close();
    sink.abort.cancel();
    tokio::time::timeout(Duration::from_secs(2), sink.task)
        .await
        .expect("abort is prompt")
        .unwrap()
        .unwrap();
    let stats = sink.buffer.stats();
    assert_eq!(
        (stats.queued_chunks, stats.in_flight_chunks),
        (1, 0),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_an_error_naming_the_key() {
    let sink = start(es_config("http://127.0.0.1:9", "index: Upper\n"));
    let err = sink.task.await.unwrap().unwrap_err();
    assert_eq!(
        err.to_string(),
        "elasticsearch sink `es`: `index`: index name `Upper` must be lowercase"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_out_of_retries_go_to_the_dead_letter_with_the_last_error() {
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    for _ in 0..3 {
        proxy.push(BulkFault::Reject(503));
    }
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("gave-up.ndjson");
    let buffer = Buffer::new(
        "es",
        &BufferConfig {
            retry_max_times: Some(2),
            ..fast_retries()
        },
    )
    .with_dead_letter(DeadLetter::new(dead_letter.clone()));
    let sink = start_with(es_config(&proxy.url(), "index: tired\n"), buffer);
    let (ch, rx) = chunk("app", (0..4).map(record).collect(), 0);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Failed);
    let statuses: Vec<u16> = proxy.bulk_log().iter().map(|x| x.status).collect();
    assert_eq!(statuses, [503, 503, 503], "the first try and two retries");
    let lines = read_lines(&dead_letter);
    assert_eq!(lines.len(), 4);
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 3 failed attempts") && reason.contains("503"),
        "{reason}"
    );
    assert_eq!(lines[0]["status"], 503);
    assert_eq!(lines[3]["record"]["message"], "line 3");
    // The sink goes on: the next chunk is indexed.
    let (next, rx) = chunk("app", vec![record(9)], 0);
    sink.buffer.push(next).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert_eq!(os.count("tired"), 1);
    sink.finish().await;
}

/// Accepts connections and reads requests, and never answers: a destination that
/// hangs. Returns its port and the number of connections that sent a request.
fn hanging_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                if conn.read(&mut buf).is_ok_and(|n| n > 0) {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                // Hold the connection open, unanswered, until the client goes.
                while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
            });
        }
    });
    (port, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_thread_count_sends_that_many_requests_at_once() {
    for workers in [1usize, 3] {
        let (port, requests) = hanging_server();
        let buffer = Buffer::new(
            "es",
            &BufferConfig {
                flush_thread_count: workers,
                ..fast_retries()
            },
        );
        for c in 0..5 {
            // A chunk fills a batch (50 events), so each worker sends one chunk.
            let (ch, _) = chunk("app", (0..50).map(|i| record(c * 50 + i)).collect(), 0);
            buffer.push(ch).await.unwrap();
        }
        let sink = start_with(
            // No `GET /` at start: the hanging server would hold it.
            es_config(
                &format!("http://127.0.0.1:{port}"),
                "index: slow\napi_version: v8\n",
            ),
            buffer,
        );
        let all_sent = wait_until(Duration::from_secs(10), || {
            requests.load(std::sync::atomic::Ordering::SeqCst) >= workers
        });
        assert!(all_sent, "{workers} workers");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(requests.load(std::sync::atomic::Ordering::SeqCst), workers);
        assert_eq!(sink.buffer.stats().in_flight_chunks, workers);
        sink.abort.cancel();
        sink.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merged_chunk_keeps_the_ids_of_the_chunks_it_was_merged_from() {
    let os = Osmem::start();
    let sink = start(es_config(os.url(), "index: merged\n"));
    let (first, _) = chunk("app", (0..2).map(record).collect(), 0);
    let (second, _) = chunk("app", (2..5).map(record).collect(), 0);
    let mut want = ids_of(&first);
    want.extend(ids_of(&second));
    // What a staging buffer hands the sink: both chunks' events under a new id.
    let mut entries = first.entries().to_vec();
    entries.extend_from_slice(second.entries());
    let merged = Chunk::new(
        nagare_core::ChunkId::random(),
        Tag::new("app"),
        entries.into(),
        5,
    )
    .with_origins(vec![
        Origin {
            id: first.id(),
            count: 2,
        },
        Origin {
            id: second.id(),
            count: 3,
        },
    ]);
    let (receipt, rx) = Receipt::channel();
    sink.buffer
        .push(merged.with_receipt(receipt))
        .await
        .unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    let stored: Vec<String> = os.documents("merged").into_iter().map(|d| d.id).collect();
    want.sort();
    assert_eq!(stored, want);
    sink.finish().await;
}

/// A record of a pod labelled as Kubernetes recommends (`app.kubernetes.io/name`) or
/// the old way (`app`).
fn labelled(i: usize, label: &str) -> Map {
    let mut labels = Map::new();
    labels.insert(label, "web");
    let mut k = Map::new();
    k.insert("namespace_name", "shop");
    k.insert("labels", Value::Map(labels));
    let mut r = record(i);
    r.insert("kubernetes", Value::Map(k));
    r
}

/// Pods labelled `app` and pods labelled `app.kubernetes.io/name` in one index: as
/// they are, the cluster reads the second as an object under the first's keyword
/// and refuses it (`replace_dots: none` shows it); by default the label keys' dots
/// are written as `_` and every document is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_labelled_both_ways_share_an_index() {
    let os = Osmem::start();
    let records = || -> Vec<Map> {
        (0..10)
            .map(|i| {
                labelled(
                    i,
                    if i % 2 == 0 {
                        "app"
                    } else {
                        "app.kubernetes.io/name"
                    },
                )
            })
            .collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("dl/es.ndjson");
    let sink = start_with(
        es_config(os.url(), "index: as-they-are\nreplace_dots: none\n"),
        buffer().with_dead_letter(DeadLetter::new(dead_letter.clone())),
    );
    let (ch, rx) = chunk("kube.shop", records(), 0);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Failed);
    sink.finish().await;
    assert_eq!(os.count("as-they-are"), 5);
    let refused = read_lines(&dead_letter);
    assert_eq!(refused.len(), 5, "{refused:?}");
    for line in &refused {
        let reason = line["reason"].as_str().unwrap();
        assert!(
            reason.contains("kubernetes.labels.app"),
            "the cluster names the clash: {reason}"
        );
    }

    let sink = start(es_config(os.url(), "index: dedotted\n"));
    let (ch, rx) = chunk("kube.shop", records(), 0);
    sink.buffer.push(ch).await.unwrap();
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    sink.finish().await;
    assert_eq!(os.count("dedotted"), 10);
    let r = os.request("GET", "/dedotted/_mapping", None).unwrap();
    let mapping: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let labels = &mapping["dedotted"]["mappings"]["properties"]["kubernetes"]["properties"]["labels"]
        ["properties"];
    assert!(labels["app"].is_object(), "{labels}");
    assert!(labels["app_kubernetes_io/name"].is_object(), "{labels}");
}
