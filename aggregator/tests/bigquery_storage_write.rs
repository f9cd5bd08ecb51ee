//! The Storage Write API path against local-bigquery's gRPC port (BigQuery's
//! `BigQueryWrite` service on DuckDB): rows built by the protobuf row encoder and sent
//! by the sink's write service over tonic arrive with their types (read back with
//! `jobs.query`); a row BigQuery refuses in `row_errors` is rejected with its message
//! while the others of its append land; and appends are exactly once through a crash,
//! whether it came before the append was sent or after it landed unanswered. (Several
//! workers: `bigquery_storage_write_workers.rs`.)

use std::time::Duration;

use bytes::Bytes;
use nagare_aggregator::sinks::bigquery::storage_write::client::Appended;
use nagare_aggregator::sinks::bigquery::storage_write::descriptor::descriptor;
use nagare_aggregator::sinks::bigquery::storage_write::journal::{Journal, runs};
use nagare_aggregator::sinks::bigquery::storage_write::recovery::Committed;
use nagare_aggregator::sinks::bigquery::storage_write::service::Streams;
use nagare_core::EventTime;
use nagare_core::sink::{BatchOutcome, Outcome};
use nagare_testkit::LocalBigQuery;
use serde_json::{Value, json};

mod bq_write_support;

use bq_write_support::*;

#[tokio::test]
async fn rows_arrive_with_their_types() {
    let bq = LocalBigQuery::shared();
    let t = table(bq);
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j")).unwrap();
    let mut s = service(bq, &t, Streams::Committed(Committed::new(journal)));
    let records = [json!({
        "seq": "7", "log": "hello \"world\"", "x": "0.5", "ok": "true", "price": 12.25,
        "day": "2024-02-29", "at": "2024-02-29T10:11:12", "tags": ["a", "b"],
        "kubernetes": {"pod_name": "web-1", "namespace_name": "default", "node": "n1"},
        "stream": "stdout"
    })];
    let outcome = send(&mut s, &t, &items(&t, &records)).await;
    assert!(delivered(&outcome, 1), "{outcome:?}");
    let rows = bq.query(&format!(
        "SELECT time, seq, log, x, ok, price, day, at, tags, kubernetes, rest FROM `{}.logs`",
        t.dataset
    ));
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["seq"], json!("7"), "{row}");
    assert_eq!(row["log"], json!("hello \"world\""));
    assert_eq!(row["ok"], json!("true"));
    assert_eq!(row["day"], json!("2024-02-29"));
    assert_eq!(row["tags"], json!(["a", "b"]), "{row}");
    assert_eq!(row["kubernetes"]["pod_name"], json!("web-1"), "{row}");
    // jobs.query answers a TIMESTAMP as epoch seconds: the event time, to the
    // microsecond.
    assert_eq!(row["time"], json!("1700000000.25"), "{row}");
    assert_eq!(row["x"], json!("0.5"));
    assert_eq!(row["price"], json!("12.25"));
    assert_eq!(row["at"], json!("2024-02-29T10:11:12"));
    let rest: Value = serde_json::from_str(row["rest"].as_str().unwrap()).unwrap();
    assert_eq!(
        rest,
        json!({"stream": "stdout", "kubernetes": {"node": "n1"}})
    );
}

#[tokio::test]
async fn a_row_refused_in_row_errors_is_rejected_with_the_message_and_the_others_land() {
    let bq = LocalBigQuery::shared();
    let t = table(bq);
    let mut records = seqs(5);
    // Text the encoder passes on as it is, which BigQuery does not read as a DATETIME.
    records[2]["at"] = json!("not a datetime");
    let mut s = service(bq, &t, Streams::Default);
    let outcome = send(&mut s, &t, &items(&t, &records)).await;
    let BatchOutcome::Items(outcomes) = &outcome else {
        panic!("{outcome:?}")
    };
    for (i, o) in outcomes.iter().enumerate() {
        match (i, o) {
            (2, Outcome::Rejected { reason, .. }) => {
                assert!(reason.contains("BigQuery refused the row"), "{reason}")
            }
            (2, other) => panic!("the bad row: {other:?}"),
            (_, o) => assert_eq!(*o, Outcome::Delivered, "row {i}"),
        }
    }
    assert_eq!(count(bq, &t.dataset), (4, 4));
}

#[tokio::test]
async fn an_append_sent_again_at_its_offset_is_not_duplicated() {
    let bq = LocalBigQuery::shared();
    let t = table(bq);
    let c = client(bq);
    let stream = c.create_committed(&t.path).await.unwrap();
    let schema = descriptor(t.encoder.schema()).unwrap();
    let rows: Vec<Bytes> = items(&t, &seqs(3))
        .into_iter()
        .map(|i| Bytes::from(i.bytes[20..].to_vec()))
        .collect();
    let mut a = c.open(&stream).await.unwrap();
    assert_eq!(
        a.append(&schema, Some(0), rows.clone()).await.unwrap(),
        Appended::Ok
    );
    let again = a.append(&schema, Some(0), rows.clone()).await.unwrap();
    assert!(
        matches!(
            &again,
            Appended::Refused {
                code: tonic::Code::AlreadyExists,
                ..
            }
        ),
        "{again:?}"
    );
    let past = a.append(&schema, Some(9), rows).await.unwrap();
    assert!(
        matches!(
            &past,
            Appended::Refused {
                code: tonic::Code::OutOfRange,
                ..
            }
        ),
        "{past:?}"
    );
    assert_eq!(count(bq, &t.dataset), (3, 3));
}

/// A crash after an append landed but before its chunk was acknowledged: the next
/// run gets the same rows again; finalizing the stream the journal left open says
/// the append landed, so they are delivered without being appended twice. And a
/// crash after an append was recorded but before it was sent: the rows are appended
/// on a new stream, once.
#[tokio::test]
async fn rows_are_in_the_table_once_through_crashes_before_and_after_the_append() {
    let bq = LocalBigQuery::shared();
    let t = table(bq);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let batch = items(&t, &seqs(10));
    {
        let mut s = service(
            bq,
            &t,
            Streams::Committed(Committed::new(Journal::open(&path).unwrap())),
        );
        let outcome = send(&mut s, &t, &batch[..6]).await;
        assert!(delivered(&outcome, 6), "{outcome:?}");
        // The crash: the service is gone without finalizing its stream.
    }
    {
        // Recorded, never sent: the journal has the plan of rows 6..10 on a stream.
        let mut j = Journal::open(&path).unwrap();
        let c = client(bq);
        let stream = c.create_committed(&t.path).await.unwrap();
        let sid = j.new_stream(&t.path, &stream).unwrap();
        j.plan(sid, &[(0, 4, runs((6..10).map(|i| (ORIGIN, i))))])
            .unwrap();
    }
    let mut s = service(
        bq,
        &t,
        Streams::Committed(Committed::new(Journal::open(&path).unwrap())),
    );
    let outcome = send(&mut s, &t, &batch).await;
    assert!(delivered(&outcome, 10), "{outcome:?}");
    assert_eq!(count(bq, &t.dataset), (10, 10));
    // And the forwarder sending the same chunk again later changes nothing.
    let outcome = send(&mut s, &t, &batch).await;
    assert!(delivered(&outcome, 10), "{outcome:?}");
    assert_eq!(count(bq, &t.dataset), (10, 10));
}

mod through_the_sink {
    //! The whole sink with `method: storage_write`, run in-process on a memory
    //! buffer: dataset and table created, rows appended, a row BigQuery refuses in
    //! `row_errors` in the dead-letter file with its message, a chunk sent again
    //! (as the forwarder does after a lost ack) not appended twice.

    use std::path::PathBuf;

    use nagare_aggregator::sinks::bigquery::{self, BigQueryConfig, BigQuerySinkError};
    use nagare_core::buffer::{Buffer, BufferConfig};
    use nagare_core::chunk::Chunk;
    use nagare_core::config::{ConfigDocument, HumanDuration};
    use nagare_core::receipt::Delivery;
    use nagare_core::shutdown::Shutdown;
    use nagare_core::testing::{chunk_of, close_and_drain, sink_context, with_receipt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    use super::*;

    struct Running {
        buffer: Buffer,
        _abort: Shutdown,
        task: JoinHandle<Result<(), BigQuerySinkError>>,
        dead_letter: PathBuf,
        data: tempfile::TempDir,
    }

    fn start(yaml: &str) -> Running {
        let config: BigQueryConfig = ConfigDocument::from_text("test.yaml", yaml, |_| None)
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let settings = BufferConfig {
            retry_wait: HumanDuration::millis(50),
            retry_max_interval: HumanDuration::millis(300),
            ..BufferConfig::default()
        };
        let buffer = Buffer::new("bq", &settings);
        let data = tempfile::tempdir().unwrap();
        let (ctx, abort) = sink_context("bq", &buffer, data.path());
        let dead_letter = ctx.dead_letter().path().to_path_buf();
        let task = tokio::spawn(bigquery::run(config, ctx));
        Running {
            buffer,
            _abort: abort,
            task,
            dead_letter,
            data,
        }
    }

    async fn push(sink: &Running, chunk: Chunk) -> Delivery {
        let (chunk, rx): (Chunk, oneshot::Receiver<Delivery>) = with_receipt(chunk);
        sink.buffer.push(chunk).await.unwrap();
        tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .expect("the chunk is resolved in time")
            .expect("the receipt fires")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_land_once_and_a_refused_row_is_dead_lettered_with_bigquerys_message() {
        let bq = LocalBigQuery::shared();
        let dataset = LocalBigQuery::unique("write_sink");
        let schema: String = SCHEMA.lines().map(|l| format!("  {l}\n")).collect();
        let sink = start(&format!(
            "project: {}\ndataset: {dataset}\ntable: logs\nmethod: storage_write\n\
             endpoint: '{}'\ngrpc_endpoint: '{}'\nauto_create_dataset: true\n\
             auto_create_table: true\ntime_field: time\nunknown_fields: column\n\
             unknown_fields_column: rest\nbatch: {{ timeout: 100ms }}\nschema:\n{schema}",
            bq.project(),
            bq.url(),
            bq.grpc_url()
        ));
        let mut events: Vec<_> = (0..10)
            .map(|i| {
                let time = EventTime::new(1_705_314_030 + i, 0);
                (
                    time,
                    record(json!({"seq": i, "log": format!("line {i}"), "pod": "web"})),
                )
            })
            .collect();
        // Text the encoder passes on as it is, which BigQuery does not read as a
        // DATETIME: refused in `row_errors`.
        events[4].1 = record(json!({"seq": 4, "at": "not a datetime"}));
        let chunk = chunk_of("kube.x", events);
        assert_eq!(push(&sink, chunk.clone()).await, Delivery::Failed);
        // The same chunk again: its rows are known to have landed.
        assert_eq!(push(&sink, chunk).await, Delivery::Failed);
        let journal = sink.data.path().join("bigquery-storage-write/bq.journal");
        let dead = std::fs::read_to_string(&sink.dead_letter).unwrap_or_default();
        close_and_drain(&sink.buffer, sink.task, Duration::from_secs(30)).await;
        let dead: Vec<Value> = dead
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(dead.len(), 2, "once per push: {dead:?}");
        assert_eq!(dead[0]["record"]["seq"], 4);
        let reason = dead[0]["reason"].as_str().unwrap();
        assert!(reason.starts_with("BigQuery refused the row: "), "{reason}");
        assert_eq!(dead[0]["table"], format!("test-proj.{dataset}.logs"));
        assert_eq!(count(bq, &dataset), (9, 9));
        let rest = bq.query(&format!("SELECT rest FROM `{dataset}.logs` WHERE seq = 0"));
        assert_eq!(rest[0]["rest"], json!(r#"{"pod":"web"}"#));
        assert!(
            journal.exists(),
            "the offsets journal is at {}",
            journal.display()
        );
    }
}
