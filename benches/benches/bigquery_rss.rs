//! Aggregator resident memory while delivering 20,000 rows/s to BigQuery.
//!
//! The real `nagare` binary as the aggregator (forward source -> buffer ->
//! `bigquery` sink, four requests in flight, a table partitioned by day) delivers to
//! local-bigquery, fed PackedForward chunks of 1,000 Kubernetes records (about 330
//! bytes each as JSON) at 20,000 records/s by a client that waits for each ack. The
//! aggregator's RSS is sampled every second; after a warm-up of 10 s the samples
//! must stay within 20 % of each other. At the end, the rows in the table are
//! counted.
//!
//!   cargo build --release && cargo bench -p nagare-benches --bench bigquery_rss
//!
//! `NAGARE_RSS_BUFFER` sets the buffer's `total_limit_size` (default 256MiB; a
//! smaller memory buffer makes a destination slower than the feed push back on it,
//! so the buffer stops growing); `NAGARE_RSS_BUFFER_TYPE=file` gives the sink a
//! file buffer instead (as the aggregator manifests do), which keeps what the
//! destination has not taken yet on disk, not in memory; `NAGARE_RSS_CHUNK` sets
//! the buffer's `chunk_limit_size` (default: the sink's, 1 MiB);
//! `NAGARE_BQ_METHOD` picks the method (`storage_write`, the default, or
//! `insert_all`); `NAGARE_BIN` names the binary (default: `target/release/nagare`,
//! or `target/debug/nagare` under `cargo test`); `NAGARE_RSS_SECS` the duration
//! (default 60). Under `cargo test` it runs 4 s at 2,000 records/s and checks that
//! every row arrives. The feed and the sampling are `nagare_benches::rss`'s.

use std::time::{Duration, Instant};

use nagare_benches::rss::{Aggregator, Plan, feed};
use nagare_testkit::{LocalBigQuery, free_port, wait_until};

/// Pods the records are spread over.
const PODS: usize = 8;

/// The rows in `dataset.logs`, or 0 while the table is missing or the server, busy
/// inserting, drops the query (it is asked again).
fn rows(bq: &LocalBigQuery, dataset: &str) -> u64 {
    bq.try_query(&format!("SELECT COUNT(*) AS n FROM `{dataset}.logs`"))
        .ok()
        .and_then(|rows| rows.first()?["n"].as_str()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let plan = Plan::from_args();
    let method = std::env::var("NAGARE_BQ_METHOD").unwrap_or_else(|_| "storage_write".into());
    let limit = std::env::var("NAGARE_RSS_BUFFER").unwrap_or_else(|_| "256MiB".into());
    let buffer_type = std::env::var("NAGARE_RSS_BUFFER_TYPE").unwrap_or_else(|_| "memory".into());
    let chunk = std::env::var("NAGARE_RSS_CHUNK")
        .map(|size| format!("\n      chunk_limit_size: {size}"))
        .unwrap_or_default();
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("bench_rss");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "data_dir: {data}
sources:
  nodes:
    type: forward
    bind: 127.0.0.1:{port}
sinks:
  bigquery:
    type: bigquery
    match: \"kube.**\"
    method: {method}
    project: {project}
    dataset: {dataset}
    table: logs
    endpoint: \"{endpoint}\"{grpc}
    auto_create_dataset: true
    auto_create_table: true
    time_field: time
    partition_field: time
    partition_type: DAY
    schema:
      - {{ name: time, type: TIMESTAMP }}
      - {{ name: stream, type: STRING }}
      - {{ name: level, type: STRING }}
      - {{ name: msg, type: STRING }}
      - {{ name: took_ms, type: INTEGER }}
      - name: kubernetes
        type: RECORD
        fields:
          - {{ name: namespace_name, type: STRING }}
          - {{ name: pod_name, type: STRING }}
          - {{ name: container_name, type: STRING }}
          - {{ name: host, type: STRING }}
          - {{ name: labels, type: JSON }}
    buffer:
      type: {buffer_type}
      total_limit_size: {limit}
      flush_thread_count: 4{chunk}
",
        data = dir.path().join("data").display(),
        project = bq.project(),
        endpoint = bq.url(),
        // `grpc_endpoint` is refused with `insert_all`.
        grpc = if method == "storage_write" {
            format!("\n    grpc_endpoint: \"{}\"", bq.grpc_url())
        } else {
            String::new()
        },
    );
    let mut aggregator = Aggregator::start(&plan, dir.path(), &config, &[], port);
    let pid = aggregator.pid();

    let samples = feed(pid, port, "kube.shop.checkout", PODS, &plan);
    let sent = samples.sent;

    // Everything the aggregator acknowledged reaches the table.
    let drained = Instant::now();
    let mut stored = 0;
    let all = wait_until(Duration::from_secs(600), || {
        stored = rows(bq, &dataset);
        stored >= sent
    });
    let drain_secs = drained.elapsed().as_secs_f64();
    aggregator.stop();
    let log = Aggregator::log(dir.path());

    samples.report(
        &format!("bigquery_rss ({method}, {buffer_type} buffer of {limit})"),
        &plan,
        &format!("the table holds {stored} rows"),
        drain_secs,
    );
    assert!(
        all,
        "the table holds {stored} of the {sent} rows the aggregator acknowledged; its log:\n{log}"
    );
    if !plan.benching {
        assert_eq!(stored, sent);
    }
}
