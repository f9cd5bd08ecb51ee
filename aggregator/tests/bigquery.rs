//! The bigquery sink (`method: insert_all`) run in-process against local-bigquery
//! (BigQuery's REST API on DuckDB), some tests through the testkit's BigQueryProxy,
//! which injects the faults BigQuery answers with under load (rate limits, 5xx,
//! connections cut before or after the rows are stored).

use std::path::PathBuf;
use std::time::Duration;

use nagare_aggregator::sinks::bigquery::{self, BigQueryConfig, BigQuerySinkError};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::chunk::{Chunk, ChunkId};
use nagare_core::config::{ConfigDocument, HumanDuration};
use nagare_core::receipt::Delivery;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{chunk_of, close_and_drain, sink_context, with_receipt};
use nagare_core::value::parse_json_object;
use nagare_core::{EventTime, Map};
use nagare_testkit::{BigQueryProxy, InsertFault, LocalBigQuery};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SCHEMA: &str = "schema:\n\
  - { name: time, type: TIMESTAMP, mode: REQUIRED }\n\
  - { name: seq, type: INTEGER, mode: REQUIRED }\n\
  - { name: log, type: STRING }\n\
  - { name: day, type: DATE }\n\
  - { name: ok, type: BOOLEAN }\n\
  - { name: kubernetes, type: RECORD, fields: [{ name: namespace_name, type: STRING }, { name: pod_name, type: STRING }] }\n\
  - { name: rest, type: JSON }\n";

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("nagare_aggregator=debug,nagare_core=info")
        .with_test_writer()
        .try_init();
}

/// The sink's config: `endpoint`, the project, quick batches, then `extra`.
fn config(endpoint: &str, extra: &str) -> BigQueryConfig {
    let batch = if extra.contains("batch:") {
        ""
    } else {
        "batch: { timeout: 100ms }\n"
    };
    let yaml = format!(
        "project: {}\nendpoint: '{endpoint}'\nrequest_timeout: 10s\n{batch}{extra}",
        LocalBigQuery::shared().project()
    );
    ConfigDocument::from_text("test.yaml", &yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

struct Running {
    buffer: Buffer,
    _abort: Shutdown,
    task: JoinHandle<Result<(), BigQuerySinkError>>,
    dead_letter: PathBuf,
    _data: tempfile::TempDir,
}

fn start(config: BigQueryConfig) -> Running {
    init_logs();
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
        _data: data,
    }
}

impl Running {
    async fn push_chunk(&self, chunk: Chunk) -> oneshot::Receiver<Delivery> {
        let (chunk, rx) = with_receipt(chunk);
        self.buffer.push(chunk).await.unwrap();
        rx
    }

    async fn push(&self, tag: &str, events: Vec<(EventTime, Map)>) -> oneshot::Receiver<Delivery> {
        self.push_chunk(chunk_of(tag, events)).await
    }

    fn dead(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.dead_letter)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    async fn finish(self) {
        close_and_drain(&self.buffer, self.task, Duration::from_secs(30)).await;
    }
}

async fn outcome(rx: oneshot::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("the chunk is resolved in time")
        .expect("the receipt fires")
}

fn record(json: Value) -> Map {
    parse_json_object(json.to_string().as_bytes()).expect("a JSON object")
}

/// 2024-01-15T10:20:30.123456Z.
fn jan15(plus_secs: i64) -> EventTime {
    EventTime::new(1_705_314_030 + plus_secs, 123_456_000)
}

fn pod(seq: usize, ns: &str) -> Map {
    record(json!({
        "seq": seq, "log": format!("line {seq}"), "ok": "true", "day": "2024-01-15",
        "stream": "stdout",
        "kubernetes": { "namespace_name": ns, "pod_name": format!("{ns}-0"), "uid": "u" },
    }))
}

fn seqs(bq: &LocalBigQuery, table: &str) -> Vec<i64> {
    bq.query(&format!("SELECT seq FROM `{table}` ORDER BY seq"))
        .iter()
        .map(|r| r["seq"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dataset_and_a_partitioned_clustered_table_are_created_and_rows_have_their_types() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("created");
    let sink = start(config(
        bq.url(),
        &format!(
            "dataset: {dataset}\ntable: logs\nauto_create_dataset: true\nauto_create_table: true\n\
             {SCHEMA}time_field: time\nunknown_fields: column\nunknown_fields_column: rest\n\
             partition_field: time\npartition_type: DAY\npartition_expiration: 30d\n\
             clustering_fields: [log]\ncompression: gzip\n"
        ),
    ));
    let events = (0..20).map(|n| (jan15(n as i64), pod(n, "shop"))).collect();
    assert_eq!(
        outcome(sink.push("kube.x", events).await).await,
        Delivery::Delivered
    );
    sink.finish().await;

    let table = bq.table(&dataset, "logs").expect("the table was created");
    assert_eq!(
        table["timePartitioning"],
        json!({ "type": "DAY", "field": "time", "expirationMs": "2592000000" }),
        "{table}"
    );
    assert_eq!(table["clustering"], json!({ "fields": ["log"] }));
    assert_eq!(table["schema"]["fields"][0]["name"], "time");
    assert_eq!(table["schema"]["fields"][0]["type"], "TIMESTAMP");

    let rows = bq.query(&format!(
        "SELECT seq, seq + 1 AS next, time, log, day, ok, kubernetes, rest FROM `{dataset}.logs` ORDER BY seq"
    ));
    assert_eq!(rows.len(), 20);
    let r = &rows[3];
    assert_eq!(r["seq"], "3");
    assert_eq!(r["next"], "4", "seq is an INTEGER");
    assert_eq!(
        r["time"], "1705314033.123456",
        "the event time, to the microsecond"
    );
    assert_eq!(r["log"], "line 3");
    assert_eq!(r["day"], "2024-01-15");
    assert_eq!(r["ok"], "true");
    assert_eq!(
        r["kubernetes"],
        json!({ "namespace_name": "shop", "pod_name": "shop-0" })
    );
    let rest: Value = serde_json::from_str(r["rest"].as_str().unwrap()).unwrap();
    assert_eq!(
        rest,
        json!({ "stream": "stdout", "kubernetes": { "uid": "u" } })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_chunk_leaves_one_row_per_record() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("resend");
    bq.create_dataset(&dataset);
    let sink = start(config(
        bq.url(),
        &format!(
            "dataset: {dataset}\ntable: logs\nauto_create_table: true\n{SCHEMA}time_field: time\n"
        ),
    ));
    let events: Vec<_> = (0..50).map(|n| (jan15(n as i64), pod(n, "shop"))).collect();
    let chunk = chunk_of("kube.x", events).with_id(ChunkId([9; 16]));
    // Delivered, then delivered again (a forwarder resending after a lost ack).
    assert_eq!(
        outcome(sink.push_chunk(chunk.clone()).await).await,
        Delivery::Delivered
    );
    assert_eq!(
        outcome(sink.push_chunk(chunk).await).await,
        Delivery::Delivered
    );
    sink.finish().await;
    assert_eq!(
        seqs(bq, &format!("{dataset}.logs")),
        (0..50).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_bigquery_refuses_is_dead_lettered_with_its_message_and_the_others_are_inserted() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("invalid");
    let proxy = BigQueryProxy::start(bq.url());
    let sink = start(config(
        &proxy.url(),
        &format!(
            "dataset: {dataset}\ntable: logs\nauto_create_dataset: true\nauto_create_table: true\n{SCHEMA}time_field: time\n"
        ),
    ));
    let mut events: Vec<_> = (0..10).map(|n| (jan15(n as i64), pod(n, "shop"))).collect();
    // A DATE the row builder passes on as text, and BigQuery refuses.
    events[4].1 = record(json!({ "seq": 4, "log": "bad", "day": "2024-13-45" }));
    assert_eq!(
        outcome(sink.push("kube.x", events).await).await,
        Delivery::Failed
    );
    let dead = sink.dead();
    sink.finish().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record"]["seq"], 4);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "BigQuery refused the row for test-proj.{dataset}.logs: invalid at `day`: "
        )),
        "{reason}"
    );
    assert_eq!(dead[0]["table"], format!("test-proj.{dataset}.logs"));
    assert_eq!(
        dead[0]["error"][0]["location"], "day",
        "BigQuery's error, as sent"
    );
    assert_eq!(
        seqs(bq, &format!("{dataset}.logs")),
        [0, 1, 2, 3, 5, 6, 7, 8, 9]
    );
    // Without skipInvalidRows BigQuery inserted none of the first request (the others
    // were `stopped`): they went again, alone.
    let inserts = proxy.inserts();
    assert_eq!(inserts.len(), 3, "{inserts:?}");
    assert_eq!(
        inserts[1].insert_ids.len(),
        10,
        "after the table was created"
    );
    assert_eq!(inserts[2].insert_ids.len(), 9);
    assert!(!inserts[2].insert_ids.contains(&inserts[1].insert_ids[4]));
    assert_eq!(inserts[1].flags["skipInvalidRows"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_server_errors_and_cut_connections_are_retried_without_loss() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("faults");
    bq.create_dataset(&dataset);
    let proxy = BigQueryProxy::start(bq.url());
    let sink = start(config(
        &proxy.url(),
        &format!(
            "dataset: {dataset}\ntable: logs\nauto_create_table: true\n{SCHEMA}time_field: time\n\
             compression: gzip\nbatch: {{ max_events: 20, timeout: 50ms }}\n"
        ),
    ));
    // The first request creates the table (a 404 first); then the faults.
    let faults = [
        InsertFault::Reject(429, "rateLimitExceeded"),
        InsertFault::Reject(403, "rateLimitExceeded"),
        InsertFault::Reject(403, "quotaExceeded"),
        InsertFault::Reject(500, "backendError"),
        InsertFault::Reject(503, "backendError"),
        InsertFault::Cut,
        InsertFault::CutAfter,
        InsertFault::CutAfter,
    ];
    let first = (0..20).map(|n| (jan15(n as i64), pod(n, "shop"))).collect();
    assert_eq!(
        outcome(sink.push("kube.x", first).await).await,
        Delivery::Delivered
    );
    for f in &faults {
        proxy.push(f.clone());
    }
    let mut receipts = Vec::new();
    for c in 1..10 {
        let events = (c * 20..c * 20 + 20)
            .map(|n| (jan15(n as i64), pod(n, "shop")))
            .collect();
        receipts.push(sink.push("kube.x", events).await);
    }
    for rx in receipts {
        assert_eq!(outcome(rx).await, Delivery::Delivered);
    }
    assert!(sink.dead().is_empty(), "{:?}", sink.dead());
    sink.finish().await;
    assert_eq!(proxy.pending_faults(), 0);
    let inserts = proxy.inserts();
    assert!(inserts.iter().all(|i| i.gzip && i.insert_ids.len() <= 20));
    // Every row once: those stored before a cut were sent again with the same
    // insertIds, and BigQuery dropped the copies.
    assert_eq!(
        seqs(bq, &format!("{dataset}.logs")),
        (0..200).collect::<Vec<_>>()
    );
    let cut_after: Vec<_> = inserts
        .iter()
        .filter(|i| i.fault == Some(InsertFault::CutAfter))
        .collect();
    assert_eq!(cut_after.len(), 2);
    for c in cut_after {
        assert!(
            inserts
                .iter()
                .filter(|i| i.fault.is_none() && i.insert_ids == c.insert_ids)
                .count()
                >= 1,
            "the rows of a cut request went again with the same insertIds"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_and_a_missing_table_are_waited_for_never_dead_lettered() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("blocked");
    bq.create_dataset(&dataset);
    let proxy = BigQueryProxy::start(bq.url());
    for _ in 0..3 {
        proxy.push(InsertFault::Reject(403, "accessDenied"));
    }
    proxy.push(InsertFault::Reject(401, "authError"));
    // No auto_create_table: the missing table is waited for.
    let sink = start(config(
        &proxy.url(),
        &format!("dataset: {dataset}\ntable: logs\n{SCHEMA}time_field: time\n"),
    ));
    let events = (0..5).map(|n| (jan15(n as i64), pod(n, "shop"))).collect();
    let rx = sink.push("kube.x", events).await;
    let waited = nagare_testkit::wait_until_async(Duration::from_secs(20), || {
        proxy.pending_faults() == 0 && proxy.inserts().iter().any(|i| i.status == 404)
    })
    .await;
    assert!(waited, "{:?}", proxy.inserts());
    assert!(sink.dead().is_empty());
    let fields: Value = serde_json::to_value(
        ConfigDocument::from_text("s.yaml", SCHEMA, |_| None)
            .unwrap()
            .parse::<serde_json::Value>()
            .unwrap()["schema"]
            .clone(),
    )
    .unwrap();
    bq.create_table(&dataset, "logs", &fields);
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert!(sink.dead().is_empty());
    sink.finish().await;
    assert_eq!(seqs(bq, &format!("{dataset}.logs")), [0, 1, 2, 3, 4]);
    // Nothing tried to create the table.
    assert!(
        proxy.others().iter().all(|(m, _, _)| m != "POST"),
        "{:?}",
        proxy.others()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_per_namespace_and_per_day_and_an_event_without_a_name_is_dead_lettered() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("templates");
    let sink = start(config(
        bq.url(),
        &format!(
            "dataset: {dataset}\ntable: 'logs_{{kubernetes.namespace_name}}_%Y%m%d'\n\
             auto_create_dataset: true\nauto_create_table: true\n{SCHEMA}time_field: time\n"
        ),
    ));
    let mut events = Vec::new();
    for n in 0..40 {
        let ns = if n % 2 == 0 { "shop" } else { "payments" };
        let day = if n < 20 { 0 } else { 86_400 };
        events.push((jan15(day + n as i64), pod(n, ns)));
    }
    events.push((
        jan15(0),
        record(json!({ "seq": 99, "log": "no namespace" })),
    ));
    assert_eq!(
        outcome(sink.push("kube.x", events).await).await,
        Delivery::Failed
    );
    let dead = sink.dead();
    sink.finish().await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the record has no field `kubernetes.namespace_name`"),
        "{}",
        dead[0]
    );
    let t = |name: &str| format!("{dataset}.{name}");
    assert_eq!(
        seqs(bq, &t("logs_shop_20240115")),
        [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    );
    assert_eq!(
        seqs(bq, &t("logs_payments_20240115")),
        [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    );
    assert_eq!(seqs(bq, &t("logs_shop_20240116")).len(), 10);
    assert_eq!(seqs(bq, &t("logs_payments_20240116")).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_from_a_bq_file_and_from_the_table_with_a_daily_suffix() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("schemas");
    bq.create_dataset(&dataset);
    // A `bq show --schema` file.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logs.json");
    std::fs::write(
        &file,
        r#"[{"name":"time","type":"TIMESTAMP","mode":"REQUIRED"},{"name":"seq","type":"INT64"},
            {"name":"log","type":"STRING","mode":"NULLABLE","policyTags":{}}]"#,
    )
    .unwrap();
    let sink = start(config(
        bq.url(),
        &format!(
            "dataset: {dataset}\ntable: from_file\nauto_create_table: true\nschema_file: {}\ntime_field: time\n",
            file.display()
        ),
    ));
    let events = (0..3).map(|n| (jan15(n as i64), pod(n, "shop"))).collect();
    assert_eq!(
        outcome(sink.push("kube.x", events).await).await,
        Delivery::Delivered
    );
    sink.finish().await;
    assert_eq!(seqs(bq, &format!("{dataset}.from_file")), [0, 1, 2]);

    // fetch_schema: the base table's schema, read at start; the daily tables are
    // created from it.
    bq.create_table(
        &dataset,
        "base",
        &json!([
            { "name": "at", "type": "TIMESTAMP" },
            { "name": "seq", "type": "INTEGER" },
            { "name": "ok", "type": "BOOLEAN" },
        ]),
    );
    let sink = start(config(
        bq.url(),
        &format!(
            "dataset: {dataset}\ntable: base\ntemplate_suffix: '_%Y%m%d'\nfetch_schema: true\n\
             auto_create_table: true\ntime_field: at\n"
        ),
    ));
    let events = vec![(jan15(0), pod(1, "a")), (jan15(86_400), pod(2, "b"))];
    assert_eq!(
        outcome(sink.push("kube.x", events).await).await,
        Delivery::Delivered
    );
    sink.finish().await;
    let day1 = bq.query(&format!(
        "SELECT seq, at, ok FROM `{dataset}.base_20240115`"
    ));
    assert_eq!(
        day1,
        [json!({ "seq": "1", "at": "1705314030.123456", "ok": "true" })]
    );
    assert_eq!(seqs(bq, &format!("{dataset}.base_20240116")), [2]);
    let created = bq.table(&dataset, "base_20240116").unwrap();
    assert_eq!(
        created["schema"]["fields"].as_array().unwrap().len(),
        3,
        "{created}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_refused_for_a_field_the_table_lost_are_written_again_for_its_schema_read_again() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("refetch");
    bq.create_dataset(&dataset);
    let columns = |extra: bool| {
        let mut fields = vec![
            json!({ "name": "at", "type": "TIMESTAMP" }),
            json!({ "name": "seq", "type": "INTEGER" }),
            json!({ "name": "labels", "type": "JSON" }),
        ];
        if extra {
            fields.push(json!({ "name": "log", "type": "STRING" }));
        }
        Value::Array(fields)
    };
    bq.create_table(&dataset, "logs", &columns(true));
    let sink = start(config(
        bq.url(),
        &format!("dataset: {dataset}\ntable: logs\nfetch_schema: true\ntime_field: at\n"),
    ));
    let labelled = |n: usize| record(json!({ "seq": n, "log": "x", "labels": { "app": "web" } }));
    let events = (0..3).map(|n| (jan15(n as i64), labelled(n))).collect();
    assert_eq!(
        outcome(sink.push("kube.x", events).await).await,
        Delivery::Delivered
    );
    // The table is made again without `log`: the sink's schema still has it.
    let resp = bq.request("DELETE", &format!("/datasets/{dataset}/tables/logs"), None);
    assert!(resp.status < 300, "{}", resp.text());
    bq.create_table(&dataset, "logs", &columns(false));
    let events = (3..6).map(|n| (jan15(n as i64), labelled(n))).collect();
    assert_eq!(
        outcome(sink.push("kube.x", events).await).await,
        Delivery::Delivered
    );
    assert!(sink.dead().is_empty(), "{:?}", sink.dead());
    sink.finish().await;
    let rows = bq.query(&format!(
        "SELECT seq, at, labels FROM `{dataset}.logs` ORDER BY seq"
    ));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0]["seq"], "3");
    assert_eq!(rows[0]["at"], "1705314033.123456");
    let labels: Value = serde_json::from_str(rows[0]["labels"].as_str().unwrap()).unwrap();
    assert_eq!(
        labels,
        json!({ "app": "web" }),
        "the JSON column holds the document"
    );
}
