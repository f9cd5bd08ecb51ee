//! The sink's pure parts: config validation, table names, insertAll bodies, and what
//! answers mean. Against local-bigquery: aggregator/tests/bigquery.rs.

use std::sync::{Arc, RwLock};

use nagare_core::component::Invalid;
use nagare_core::config::ConfigDocument;
use nagare_core::sink::{BatchOutcome, Outcome};
use nagare_core::{EventTime, Map};

use super::*;

fn parse(yaml: &str) -> BigQueryConfig {
    ConfigDocument::from_text("test.yaml", yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

const SCHEMA: &str = "schema:\n  - { name: time, type: TIMESTAMP }\n  - { name: log, type: STRING }\n  - { name: n, type: INTEGER }\n  - { name: extra, type: JSON }\n";

fn base(extra: &str) -> BigQueryConfig {
    parse(&format!(
        "project: test-proj\ndataset: logs\ntable: events\n{SCHEMA}{extra}"
    ))
}

fn invalid(config: &BigQueryConfig) -> Invalid {
    config.validate().expect_err("the config is refused")
}

#[test]
fn a_full_config_is_valid() {
    let c = base(
        "method: insert_all\ntemplate_suffix: '_%Y%m%d'\nauto_create_table: true\nauto_create_dataset: true\n\
         partition_field: time\npartition_type: DAY\npartition_expiration: 90d\nclustering_fields: [log]\n\
         time_field: time\nunknown_fields: column\nunknown_fields_column: extra\nskip_invalid_rows: true\n\
         ignore_unknown_values: true\ninsert_id_key: event_id\nendpoint: http://127.0.0.1:9050\n\
         compression: gzip\nrequest_timeout: 10s\nbatch: { max_events: 1000, max_bytes: 5MiB, timeout: 2s }\n",
    );
    c.validate().unwrap();
    assert_eq!(c.batch.limits().max_events, 1000);
    assert_eq!(c.endpoint(), "http://127.0.0.1:9050");
    assert!(matches!(
        credentials(&c),
        crate::gcp::CredentialsSource::None
    ));
}

#[test]
fn validate_names_the_key_of_each_problem() {
    let cases = [
        ("batch: { max_events: 50001 }", "batch.max_events"),
        ("batch: { max_events: 0 }", "batch.max_events"),
        ("batch: { max_bytes: 10MB }", "batch.max_bytes"),
        ("request_timeout: 0s", "request_timeout"),
        ("compression: zstd", "compression"),
        ("endpoint: localhost:9050", "endpoint"),
        ("write_stream: committed", "write_stream"),
        ("grpc_endpoint: http://127.0.0.1:1", "grpc_endpoint"),
        ("method: storage_write\ninsert_id_key: seq", "insert_id_key"),
        (
            "method: storage_write\nunknown_fields: ignore",
            "unknown_fields",
        ),
        ("time_field: nope", "time_field"),
        ("time_field: n", "time_field"),
        ("unknown_fields: column", "unknown_fields_column"),
        ("unknown_fields_column: extra", "unknown_fields_column"),
        (
            "unknown_fields: column\nunknown_fields_column: n",
            "unknown_fields_column",
        ),
        ("schema_file: /x.json", "schema_file"),
        ("fetch_schema: true", "fetch_schema"),
        ("partition_type: DAY", "partition_type"),
        (
            "auto_create_table: true\npartition_field: time",
            "partition_type",
        ),
        (
            "auto_create_table: true\npartition_type: DAY\npartition_field: log",
            "partition_field",
        ),
        (
            "auto_create_table: true\npartition_type: HOUR\npartition_field: nope",
            "partition_field",
        ),
        (
            "auto_create_table: true\npartition_type: DAY\npartition_expiration: 0s",
            "partition_expiration",
        ),
        ("clustering_fields: [log]", "clustering_fields"),
        (
            "auto_create_table: true\nclustering_fields: [extra]",
            "clustering_fields.0",
        ),
        (
            "auto_create_table: true\nclustering_fields: [log, nope]",
            "clustering_fields.1",
        ),
        (
            "auto_create_table: true\nclustering_fields: [a, b, c, d, e]",
            "clustering_fields",
        ),
        ("insert_id_key: ''", "insert_id_key"),
        ("template_suffix: '_{oops'", "template_suffix"),
        ("template_suffix: ''", "template_suffix"),
    ];
    for (extra, key) in cases {
        let e = invalid(&base(extra));
        assert_eq!(e.key, key, "{extra}: {e:?}");
        assert!(!e.message.is_empty());
    }
    let e = invalid(&parse("project: test-proj\ndataset: logs\ntable: events\n"));
    assert_eq!(e.key, "schema");
    assert!(e.message.contains("fetch_schema"), "{}", e.message);
    let e = invalid(&parse(
        "project: Test_Proj\ndataset: logs\ntable: t\nfetch_schema: true\n",
    ));
    assert_eq!(e.key, "project");
    let e = invalid(&parse(
        "project: p-1\ndataset: lo-gs\ntable: t\nfetch_schema: true\n",
    ));
    assert_eq!(e.key, "dataset");
    let e = invalid(&parse(
        "project: p-1\ndataset: logs\ntable: 'a.b'\nfetch_schema: true\n",
    ));
    assert_eq!(e.key, "table");
    let e = invalid(&parse(
        "project: p-1\ndataset: logs\ntable: 'e_%J'\nfetch_schema: true\n",
    ));
    assert_eq!(e.key, "table");
    assert!(e.message.contains("strftime"), "{}", e.message);
    let e = invalid(&parse(
        "project: p-1\ndataset: logs\ntable: '{tag}'\nfetch_schema: true\n",
    ));
    assert_eq!(e.key, "table");
    assert!(e.message.contains("template_suffix"), "{}", e.message);
    let e = invalid(&parse(
        "project: p-1\ndataset: logs\ntable: t\nfetch_schema: true\nauto_create_table: true\n",
    ));
    assert_eq!(e.key, "auto_create_table");
    parse("project: p-1\ndataset: logs\ntable: t\nfetch_schema: true\nauto_create_table: true\ntemplate_suffix: '_%Y'\n")
        .validate()
        .unwrap();
}

#[test]
fn unknown_keys_are_refused() {
    let e = ConfigDocument::from_text(
        "t.yaml",
        &format!("project: p-1\ndataset: d\ntable: t\n{SCHEMA}tabel: x\n"),
        |_| None,
    )
    .unwrap()
    .parse::<BigQueryConfig>()
    .unwrap_err();
    assert!(e.to_string().contains("tabel"), "{e}");
}

fn record(ns: Option<&str>) -> Map {
    let mut m = Map::new();
    m.insert("log", "hello");
    if let Some(ns) = ns {
        let mut k = Map::new();
        k.insert("namespace_name", ns);
        m.insert("kubernetes", k);
    }
    m
}

/// 2024-01-15T10:20:30Z.
const JAN15: i64 = 1_705_314_030;

#[test]
fn tables_come_from_the_tag_fields_and_the_event_time() {
    let c = base("");
    let mut c2 = c.clone();
    c2.project = "{tag_parts[0]}".into();
    c2.table = "logs_{kubernetes.namespace_name}_%Y%m%d".into();
    c2.template_suffix = Some("_%H".into());
    let mut t = TableTemplates::new(&c2).unwrap();
    assert!(!t.fixed_table());
    let at = |s| EventTime::new(s, 0);
    let k = t
        .key_for("proj-a.x", &record(Some("shop")), at(JAN15))
        .unwrap();
    assert_eq!(k.to_string(), "proj-a.logs.logs_shop_20240115_10");
    assert_eq!(k.base.as_deref(), Some("logs_shop_20240115"));
    // The same table: the same shared key.
    let k2 = t
        .key_for("proj-a.x", &record(Some("shop")), at(JAN15 + 5))
        .unwrap();
    assert!(Arc::ptr_eq(&k, &k2));
    // The next day and hour.
    let k3 = t
        .key_for(
            "proj-a.x",
            &record(Some("shop")),
            at(JAN15 + 86_400 + 3_600),
        )
        .unwrap();
    assert_eq!(k3.table, "logs_shop_20240116_11");
    // A `%` in a field is not a conversion: and it is no legal table name either.
    let e = t
        .key_for("proj-a.x", &record(Some("a%Y")), at(JAN15))
        .unwrap_err();
    assert!(e.contains("`logs_a%Y_20240115_10` holds `%`"), "{e}");
    let e = t.key_for("proj-a.x", &record(None), at(JAN15)).unwrap_err();
    assert!(e.contains("kubernetes.namespace_name"), "{e}");
    let e = t
        .key_for("Proj.x", &record(Some("shop")), at(JAN15))
        .unwrap_err();
    assert!(e.contains("project id `Proj`"), "{e}");
    let mut long = record(Some(&"x".repeat(1100)));
    long.insert("log", "x");
    assert!(
        t.key_for("p-1", &long, at(JAN15))
            .unwrap_err()
            .contains("1 to 1024")
    );
}

#[test]
fn table_names_follow_bigquery_rules() {
    assert_eq!(table_problem("events_2024 01-ü"), None);
    assert!(table_problem("a/b").is_some());
    assert!(table_problem("").is_some());
    assert_eq!(dataset_problem("logs_1"), None);
    assert!(dataset_problem("logs-1").is_some());
    assert_eq!(project_problem("example.com:my-proj"), None);
    assert!(project_problem("my_proj").is_some());
}

fn rows_of(c: &BigQueryConfig) -> SharedRows {
    let schema = c.configured_schema().unwrap().unwrap();
    Arc::new(RwLock::new(Arc::new(c.row_builder(schema).unwrap())))
}

#[test]
fn bodies_are_byte_exact_and_gzipped_when_asked() {
    let key = Arc::new(TableKey::new("p-1", "d", "t", None));
    let rows: [&[u8]; 2] = [
        br#"{"insertId":"a","json":{"n":"1"}}"#,
        br#"{"insertId":"b","json":{}}"#,
    ];
    let plain = build(&key, rows.iter().copied(), BodyOptions::default());
    assert_eq!(
        String::from_utf8(plain.body.clone()).unwrap(),
        r#"{"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":false,"ignoreUnknownValues":false,"rows":[{"insertId":"a","json":{"n":"1"}},{"insertId":"b","json":{}}]}"#
    );
    assert_eq!(
        (plain.rows, plain.gzip, plain.json_bytes),
        (2, false, plain.body.len())
    );
    let options = BodyOptions {
        skip_invalid_rows: true,
        ignore_unknown_values: true,
        gzip: true,
    };
    let packed = build(&key, rows.iter().copied(), options);
    assert!(packed.gzip);
    let unpacked = nagare_core::compression::decompress(
        nagare_core::compression::Compression::Gzip,
        &packed.body,
        1 << 20,
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&unpacked).unwrap();
    assert_eq!(json["skipInvalidRows"], true);
    assert_eq!(json["ignoreUnknownValues"], true);
    assert_eq!(json["rows"].as_array().unwrap().len(), 2);
    let empty = build(&key, std::iter::empty(), BodyOptions::default());
    assert!(
        String::from_utf8(empty.body)
            .unwrap()
            .ends_with(r#""rows":[]}"#)
    );
}

#[test]
fn ignore_unknown_values_follows_unknown_fields_ignore() {
    assert!(!BodyOptions::of(&base("")).ignore_unknown_values);
    assert!(BodyOptions::of(&base("unknown_fields: ignore")).ignore_unknown_values);
    assert!(BodyOptions::of(&base("compression: gzip")).gzip);
    let _ = rows_of(&base(""));
}

#[test]
fn insert_errors_reject_invalid_rows_and_retry_stopped_ones() {
    let body = br#"{"kind":"bigquery#tableDataInsertAllResponse","insertErrors":[
        {"index":1,"errors":[{"reason":"invalid","location":"n","debugInfo":"","message":"Cannot convert value to integer."}]},
        {"index":0,"errors":[{"reason":"stopped","location":"","message":""}]},
        {"index":9,"errors":[{"reason":"invalid"}]}]}"#;
    let BatchOutcome::Items(out) = outcomes(body, 3, "p.d.t") else {
        panic!("per row");
    };
    assert!(matches!(&out[0], Outcome::Retry { reason, .. } if reason.contains("stopped")));
    match &out[1] {
        Outcome::Rejected { reason, error, .. } => {
            assert_eq!(
                reason,
                "BigQuery refused the row for p.d.t: invalid at `n`: Cannot convert value to integer."
            );
            assert_eq!(error.as_ref().unwrap()[0]["location"], "n");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out[2], Outcome::Delivered);
    assert_eq!(
        outcomes(br#"{"kind":"x"}"#, 3, "t"),
        BatchOutcome::All(Outcome::Delivered)
    );
    assert!(matches!(
        outcomes(b"<html>", 3, "t"),
        BatchOutcome::All(Outcome::Retry { .. })
    ));
}

fn failure(status: u16, reason: &str) -> Failure {
    Failure::from_answer(
        status,
        format!(r#"{{"error":{{"code":{status},"message":"said so","errors":[{{"reason":"{reason}","message":"said so"}}]}}}}"#).as_bytes(),
    )
}

#[test]
fn answers_are_classified() {
    let retry = |o: &BatchOutcome| matches!(o, BatchOutcome::All(Outcome::Retry { .. }));
    let blocked = |o: &BatchOutcome| matches!(o, BatchOutcome::Blocked { .. });
    for (status, reason) in [
        (403, "rateLimitExceeded"),
        (403, "quotaExceeded"),
        (429, "rateLimitExceeded"),
        (500, "backendError"),
        (503, "backendError"),
    ] {
        let o = classify(&failure(status, reason), "p.d.t", "HINT");
        assert!(retry(&o), "{status} {reason}: {o:?}");
    }
    for (status, reason) in [
        (401, "unauthorized"),
        (403, "accessDenied"),
        (403, "forbidden"),
    ] {
        let o = classify(&failure(status, reason), "p.d.t", "HINT");
        assert!(blocked(&o), "{status} {reason}: {o:?}");
        let BatchOutcome::Blocked { reason: why, .. } = o else {
            unreachable!()
        };
        assert!(
            why.contains("p.d.t") && why.contains("said so") && why.ends_with("HINT"),
            "{why}"
        );
    }
    assert!(matches!(
        classify(&failure(400, "invalid"), "t", "h"),
        BatchOutcome::Split { .. }
    ));
    assert!(retry(&classify(
        &Failure::transport("connection reset".into()),
        "t",
        "h"
    )));
    let f = Failure::from_answer(502, b"Bad Gateway");
    assert_eq!(f.describe(), "HTTP 502: Bad Gateway");
    assert!(failure(404, "notFound").is_not_found());
    assert!(failure(409, "duplicate").is_already_there());
}
