//! The real `nagare` binaries delivering to BigQuery (local-bigquery): a forwarder
//! tails container log files and forwards them to an aggregator whose `bigquery`
//! sink creates a dataset and a table per namespace and inserts the lines with
//! `insertId`s from the tail's event ids. When the forwarder loses its checkpoints
//! and reads every file again, BigQuery drops the copies: one row per line.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use nagare_testkit::{LocalBigQuery, free_port, wait_until};
use serde_json::json;
use support::{Nagare, forward_aggregator};

const PER_FILE: usize = 500;

/// CRI lines `seq` 0.. of pod `pod` in namespace `ns`, a JSON message each.
fn write_file(dir: &Path, pod: &str, ns: &str, first: usize) {
    let mut text = String::new();
    for i in 0..PER_FILE {
        let seq = first + i;
        let _ = writeln!(
            text,
            "2024-01-15T10:20:{:02}.{:06}Z stdout F {{\"seq\":{seq},\"level\":\"info\",\"ok\":\"true\",\"msg\":\"line {seq}\"}}",
            i % 60,
            i
        );
    }
    std::fs::write(dir.join(format!("{pod}_{ns}_app-{:064x}.log", first)), text).unwrap();
}

fn count(bq: &LocalBigQuery, table: &str) -> u64 {
    bq.query(&format!("SELECT COUNT(*) AS n FROM `{table}`"))[0]["n"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_binaries_deliver_tailed_lines_to_a_table_per_namespace_once_each() {
    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique("e2e");
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    write_file(&logs, "web-0", "shop", 0);
    write_file(&logs, "web-1", "shop", PER_FILE);
    write_file(&logs, "api-0", "payments", 2 * PER_FILE);
    let port = free_port();
    let aggregator = forward_aggregator(
        &dir.path().join("agg"),
        port,
        &format!(
            "  bigquery:
    type: bigquery
    match: \"**\"
    project: {project}
    dataset: {dataset}
    table: \"logs_{{kubernetes.namespace_name}}\"
    endpoint: \"{endpoint}\"
    auto_create_dataset: true
    auto_create_table: true
    schema:
      - {{ name: time, type: TIMESTAMP, mode: REQUIRED }}
      - {{ name: seq, type: INTEGER, mode: REQUIRED }}
      - {{ name: level, type: STRING }}
      - {{ name: ok, type: BOOLEAN }}
      - {{ name: msg, type: STRING }}
      - name: kubernetes
        type: RECORD
        fields:
          - {{ name: namespace_name, type: STRING }}
          - {{ name: pod_name, type: STRING }}
      - {{ name: rest, type: JSON }}
    time_field: time
    unknown_fields: column
    unknown_fields_column: rest
    insert_id_key: line_id
    compression: gzip
    batch: {{ timeout: 200ms }}
  copies:
    type: file
    match: \"**\"
    path: {copies}
",
            project = bq.project(),
            endpoint = bq.url(),
            copies = dir.path().join("copies.ndjson").display(),
        ),
    );
    let forwarder = |data: &str| {
        format!(
            "data_dir: {data}
sources:
  containers:
    type: tail
    paths: [\"{logs}/*.log\"]
    read_from_head: true
    refresh_interval: 100ms
    event_id_key: line_id
sinks:
  aggregator:
    type: forward
    match: \"**\"
    servers: [{{host: 127.0.0.1, port: {port}}}]
    buffer: {{ flush_interval: 100ms }}
",
            data = dir.path().join(data).display(),
            logs = logs.display(),
        )
    };
    let mut agg = Nagare::listening("aggregator", dir.path(), &aggregator, port);
    let mut fwd = Nagare::start("forwarder", dir.path(), &forwarder("fwd"));
    let shop = format!("{dataset}.logs_shop");
    let payments = format!("{dataset}.logs_payments");
    let all_in = wait_until(Duration::from_secs(60), || {
        agg.assert_running();
        fwd.assert_running();
        bq.table(&dataset, "logs_shop").is_some()
            && bq.table(&dataset, "logs_payments").is_some()
            && count(bq, &shop) == 2 * PER_FILE as u64
            && count(bq, &payments) == PER_FILE as u64
    });
    assert!(all_in, "{}\n{}", fwd.child.logs(), agg.child.logs());

    let row = &bq.query(&format!(
        "SELECT seq, seq * 2 AS twice, time, level, ok, kubernetes, rest FROM `{payments}` WHERE seq = 1001"
    ))[0];
    assert_eq!(row["twice"], "2002", "seq is an INTEGER");
    assert_eq!(row["time"], "1705314001.000001");
    assert_eq!(row["ok"], "true");
    assert_eq!(
        row["kubernetes"],
        json!({ "namespace_name": "payments", "pod_name": "api-0" })
    );
    let rest: serde_json::Value = serde_json::from_str(row["rest"].as_str().unwrap()).unwrap();
    assert!(rest["line_id"].is_string(), "{rest}");
    assert_eq!(rest["stream"], "stdout");

    // The forwarder starts over without its checkpoints: every line again, with the
    // same ids, which BigQuery drops.
    assert!(fwd.terminate(Duration::from_secs(20)).success());
    let mut again = Nagare::start("forwarder", dir.path(), &forwarder("fwd-again"));
    // The aggregator's file sink sees each line twice.
    let lines = 3 * PER_FILE as u32;
    let reread = wait_until(Duration::from_secs(30), || {
        again.assert_running();
        let seen = support::seqs_in(&dir.path().join("copies.ndjson"));
        seen.len() == lines as usize && seen.values().all(|&n| n == 2)
    });
    assert!(reread, "{}", again.child.logs());
    // Sent to BigQuery too: the sinks share nothing but their input.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(bq, &shop), 2 * PER_FILE as u64);
    assert_eq!(count(bq, &payments), PER_FILE as u64);
    let distinct = bq.query(&format!("SELECT COUNT(DISTINCT seq) AS d FROM `{shop}`"));
    assert_eq!(distinct[0]["d"], (2 * PER_FILE).to_string());
    assert!(again.terminate(Duration::from_secs(20)).success());
    assert!(agg.terminate(Duration::from_secs(20)).success());
}

#[test]
fn demo_delivers_to_bigquery_and_counts_what_arrived() {
    let bq = LocalBigQuery::shared();
    let out = std::process::Command::new(support::binary())
        .args([
            "demo",
            "--lines",
            "200",
            "--timeout",
            "90",
            "--bigquery",
            bq.url(),
        ])
        .args(["--bigquery-project", bq.project()])
        .env_remove("NAGARE_CONFIG")
        .env_remove("NAGARE_CONFIG_YAML")
        .output()
        .expect("run nagare demo");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("delivered "))
        .unwrap_or_else(|| panic!("{stdout}"));
    let expected: usize = line.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(
        stdout.contains(&format!("in BigQuery: {expected} of {expected} rows")),
        "{stdout}"
    );
    assert!(
        stdout.contains("SELECT kubernetes.namespace_name"),
        "{stdout}"
    );
}
