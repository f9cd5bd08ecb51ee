//! Rows built by the BigQuery sink's row builder, sent to local-bigquery (BigQuery's
//! REST API on DuckDB) with `tabledata.insertAll` and read back with `jobs.query`:
//! every column arrives with its type, a resent request is deduplicated by
//! `insertId`, and a row BigQuery refuses comes back `invalid` with its location
//! while the others of its request are inserted.

use nagare_aggregator::sinks::bigquery::rows::{RowBuilder, RowError, RowOptions, UnknownFields};
use nagare_aggregator::sinks::bigquery::schema::{FieldConfig, Schema};
use nagare_core::chunk::ChunkId;
use nagare_core::value::parse_json_object;
use nagare_core::{EventTime, Map};
use nagare_testkit::LocalBigQuery;
use serde_json::{Value, json};

const SCHEMA: &str = r#"
- { name: time, type: TIMESTAMP, mode: REQUIRED }
- { name: seq, type: INT64, mode: REQUIRED }
- { name: log, type: STRING }
- { name: n, type: INTEGER }
- { name: x, type: FLOAT }
- { name: ok, type: BOOL }
- { name: price, type: NUMERIC }
- { name: seen, type: TIMESTAMP }
- { name: day, type: DATE }
- { name: tags, type: STRING, mode: REPEATED }
- name: kubernetes
  type: RECORD
  fields:
    - { name: pod_name, type: STRING }
    - { name: namespace_name, type: STRING }
- { name: labels, type: JSON }
- { name: rest, type: JSON }
"#;

fn record(json: Value) -> Map {
    parse_json_object(json.to_string().as_bytes()).expect("a JSON object")
}

/// A table of [`SCHEMA`] in a dataset of its own, created from the schema's REST
/// form; (dataset, builder).
fn table(bq: &LocalBigQuery) -> (String, RowBuilder) {
    let fields: Vec<FieldConfig> = serde_norway::from_str(SCHEMA).unwrap();
    let schema = Schema::from_config(&fields).unwrap();
    let dataset = LocalBigQuery::unique("rows");
    bq.create_dataset(&dataset);
    bq.create_table(&dataset, "logs", &schema.to_table_schema());
    // The table BigQuery describes has the schema it was created with.
    let described = bq.table(&dataset, "logs").expect("the table");
    assert_eq!(
        Schema::from_table_schema(&described["schema"]).unwrap(),
        schema
    );
    let options = RowOptions {
        time_field: Some("time".into()),
        unknown_fields: UnknownFields::Column("rest".into()),
        insert_id_key: Some("seq".into()),
    };
    (dataset, RowBuilder::new(schema, options).unwrap())
}

/// An insertAll body of `rows` (already built), skipping invalid rows as the sink's
/// `skip_invalid_rows` does.
fn body(rows: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"{\"skipInvalidRows\":true,\"rows\":[".to_vec();
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(row);
    }
    out.extend_from_slice(b"]}");
    out
}

fn build(b: &RowBuilder, rec: &Map, time: EventTime, at: u32) -> Result<Vec<u8>, RowError> {
    let mut out = Vec::new();
    b.write_row(&mut out, rec, time, (ChunkId([7; 16]), at))?;
    Ok(out)
}

#[test]
fn rows_insert_with_their_types_and_a_bad_row_is_reported_alone() {
    let bq = LocalBigQuery::shared();
    let (dataset, builder) = table(bq);
    let time = EventTime::new(1_704_164_645, 123_456_789);
    let records = [
        // Every value as a string, as parsers leave them.
        json!({
            "seq": "1", "log": "first", "n": "42", "x": "1.5", "ok": "true",
            "price": "12.50", "seen": "2024-01-02T04:04:05.5+01:00", "day": "2024-01-02",
            "tags": ["a", "b"],
            "kubernetes": { "pod_name": "web-0", "namespace_name": "shop", "uid": "u1" },
            "labels": { "app": "web", "tier": ["front"] },
            "stream": "stdout",
        }),
        // A value that passes the builder (a DATE is sent as text) but that
        // BigQuery refuses.
        json!({ "seq": 2, "log": "bad date", "day": "2024-13-45" }),
        json!({ "seq": 3, "log": "third", "n": -7, "x": 2, "ok": false, "seen": 1704164645 }),
    ];
    let rows: Vec<Vec<u8>> = records
        .iter()
        .enumerate()
        .map(|(i, r)| build(&builder, &record(r.clone()), time, i as u32).unwrap())
        .collect();

    let resp = bq.insert_all_raw(&dataset, "logs", &body(&rows));
    assert_eq!(resp.status, 200, "{}", resp.text());
    let errors = resp.json()["insertErrors"].clone();
    let errors = errors.as_array().expect("insertErrors for the bad row");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["index"], 1);
    assert_eq!(errors[0]["errors"][0]["reason"], "invalid");
    assert_eq!(errors[0]["errors"][0]["location"], "day");

    // The same request again: insertId drops the copies.
    let again = bq.insert_all_raw(&dataset, "logs", &body(&rows));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(bq.rows(&dataset, "logs").len(), 2);

    let got = bq.query(&format!(
        "SELECT seq, time, log, n, n + 1 AS n1, x, ok, price, seen, day, tags, kubernetes,
                labels, JSON_VALUE(labels, '$.app') AS app, rest
         FROM `{dataset}.logs` ORDER BY seq"
    ));
    assert_eq!(got.len(), 2, "{got:?}");
    let first = &got[0];
    assert_eq!(first["seq"], "1");
    // The event time, to the microsecond (BigQuery's REST form: epoch seconds).
    assert_eq!(first["time"], "1704164645.123456");
    assert_eq!(first["log"], "first");
    assert_eq!(first["n"], "42");
    assert_eq!(first["n1"], "43", "n is an INTEGER");
    assert_eq!(first["x"], "1.5");
    assert_eq!(first["ok"], "true");
    assert_eq!(first["price"], "12.5");
    assert_eq!(first["seen"], "1704164645.5");
    assert_eq!(first["day"], "2024-01-02");
    assert_eq!(first["tags"], json!(["a", "b"]));
    assert_eq!(
        first["kubernetes"],
        json!({ "pod_name": "web-0", "namespace_name": "shop" })
    );
    // A JSON column holds the document, not a string: its fields can be queried.
    let labels: Value = serde_json::from_str(first["labels"].as_str().unwrap()).unwrap();
    assert_eq!(labels, json!({ "app": "web", "tier": ["front"] }));
    assert_eq!(first["app"], "web");
    // What the schema lacks, kept in `rest`, nested as it was.
    let rest: Value = serde_json::from_str(first["rest"].as_str().unwrap()).unwrap();
    assert_eq!(
        rest,
        json!({ "kubernetes": { "uid": "u1" }, "stream": "stdout" })
    );

    let third = &got[1];
    assert_eq!(third["seq"], "3");
    assert_eq!(third["n"], "-7");
    assert_eq!(third["x"], "2.0");
    assert_eq!(third["ok"], "false");
    assert_eq!(third["seen"], "1704164645.0");
    assert_eq!(third["rest"], Value::Null);
}

#[test]
fn what_the_builder_refuses_bigquery_refuses_too() {
    let bq = LocalBigQuery::shared();
    let (dataset, builder) = table(bq);
    let time = EventTime::new(1_704_164_645, 0);
    let bad = record(json!({ "seq": 1, "n": "forty-two" }));
    let err = build(&builder, &bad, time, 0).unwrap_err();
    assert!(
        matches!(&err, RowError::Convert { path, .. } if path == "n"),
        "{err}"
    );
    // Sent as it is, BigQuery refuses the same row for the same field.
    let raw = json!({ "rows": [{ "insertId": "x", "json": {
        "time": "2024-01-02T03:04:05.000000Z", "seq": 1, "n": "forty-two" } }] });
    let resp = bq.insert_all(&dataset, "logs", &raw);
    assert_eq!(resp["insertErrors"][0]["errors"][0]["reason"], "invalid");
    assert_eq!(resp["insertErrors"][0]["errors"][0]["location"], "n");
    assert!(bq.rows(&dataset, "logs").is_empty());
}
