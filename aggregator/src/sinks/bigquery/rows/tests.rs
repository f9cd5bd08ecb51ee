use serde_json::{Value as Json, json};

use super::*;
use crate::sinks::bigquery::schema::FieldConfig;

const CHUNK: ChunkId = ChunkId([0xab; 16]);

fn schema(yaml: &str) -> Schema {
    let fields: Vec<FieldConfig> = serde_norway::from_str(yaml).expect("schema YAML");
    Schema::from_config(&fields).expect("schema")
}

fn builder(yaml: &str, options: RowOptions) -> RowBuilder {
    RowBuilder::new(schema(yaml), options).expect("options fit the schema")
}

fn record(json: Json) -> Map {
    let text = json.to_string();
    nagare_core::value::parse_json_object(text.as_bytes()).expect("a JSON object")
}

/// The row as JSON (checks it is JSON at all).
fn row(b: &RowBuilder, rec: &Map, time: EventTime, at: u32) -> Result<Json, RowError> {
    let mut out = b"[".to_vec();
    b.write_row(&mut out, rec, time, (CHUNK, at))?;
    out.push(b']');
    let all: Json = serde_json::from_slice(&out).expect("rows are JSON");
    Ok(all[0].clone())
}

fn one(ty: &str, value: Json) -> Result<Json, RowError> {
    let b = builder(
        &format!("- {{ name: v, type: {ty} }}"),
        RowOptions::default(),
    );
    row(&b, &record(json!({ "v": value })), EventTime::new(0, 0), 0).map(|r| r["json"]["v"].clone())
}

fn refused(ty: &str, value: Json) -> RowError {
    one(ty, value.clone()).expect_err(&format!("{value} as {ty} must be refused"))
}

#[test]
fn timestamps_in_rfc3339_with_microseconds() {
    let want = json!("2024-01-02T03:04:05.123456Z");
    assert_eq!(
        one("TIMESTAMP", json!("2024-01-02T03:04:05.123456789Z")).unwrap(),
        want
    );
    assert_eq!(
        one("TIMESTAMP", json!("2024-01-02T04:04:05.123456+01:00")).unwrap(),
        want
    );
    // Zone-less text is UTC, as BigQuery reads it.
    assert_eq!(
        one("TIMESTAMP", json!("2024-01-02 03:04:05.123456")).unwrap(),
        want
    );
    // Numbers are epoch seconds.
    assert_eq!(
        one("TIMESTAMP", json!(1704164645)).unwrap(),
        json!("2024-01-02T03:04:05.000000Z")
    );
    assert_eq!(
        one("TIMESTAMP", json!(1704164645.5)).unwrap(),
        json!("2024-01-02T03:04:05.500000Z")
    );
    assert!(
        matches!(refused("TIMESTAMP", json!("yesterday")), RowError::Convert { reason, .. } if reason.contains("RFC 3339"))
    );
    assert!(matches!(
        refused("TIMESTAMP", json!(true)),
        RowError::Convert { .. }
    ));
}

#[test]
fn the_event_time_goes_to_time_field() {
    let b = builder(
        "[{ name: time, type: TIMESTAMP, mode: REQUIRED }, { name: log, type: STRING }]",
        RowOptions {
            time_field: Some("time".into()),
            ..RowOptions::default()
        },
    );
    let t = EventTime::new(1_704_164_645, 987_654_321);
    // A record field of the same name gives way to the event time.
    let r = row(&b, &record(json!({ "log": "x", "time": "ignored" })), t, 0).unwrap();
    assert_eq!(
        r["json"],
        json!({ "log": "x", "time": "2024-01-02T03:04:05.987654Z" })
    );
    // The REQUIRED time column is filled by the event time.
    assert!(row(&b, &record(json!({ "log": "x" })), t, 0).is_ok());
}

#[test]
fn integers_from_strings_only_where_lossless() {
    assert_eq!(one("INTEGER", json!("42")).unwrap(), json!(42));
    assert_eq!(
        one("INTEGER", json!("-9223372036854775808")).unwrap(),
        json!(i64::MIN)
    );
    assert_eq!(one("INT64", json!(7.0)).unwrap(), json!(7));
    for bad in [
        json!("4.2"),
        json!(" 42"),
        json!("9223372036854775808"),
        json!("0x10"),
        json!(4.5),
        json!(true),
        json!(""),
    ] {
        let err = refused("INTEGER", bad.clone());
        assert!(
            matches!(&err, RowError::Convert { path, field_type: FieldType::Integer, .. } if path == "v"),
            "{bad}: {err}"
        );
    }
    let message = refused("INTEGER", json!("4.2")).to_string();
    assert!(
        message.contains("`v`") && message.contains("\"4.2\"") && message.contains("INTEGER"),
        "{message}"
    );
}

#[test]
fn floats_from_strings_only_where_lossless() {
    assert_eq!(one("FLOAT", json!("0.1")).unwrap(), json!(0.1));
    assert_eq!(one("FLOAT64", json!("-1.5e3")).unwrap(), json!(-1500.0));
    assert_eq!(one("FLOAT", json!(3)).unwrap(), json!(3.0));
    assert_eq!(one("FLOAT", json!("NaN")).unwrap(), json!("NaN"));
    assert_eq!(
        one("FLOAT", json!("-Infinity")).unwrap(),
        json!("-Infinity")
    );
    // "1." is a decimal BigQuery reads too.
    assert_eq!(one("FLOAT", json!("1.")).unwrap(), json!(1.0));
    // 17 significant digits would not read back as the same decimal; 2^53 + 1 is not
    // a FLOAT at all.
    for bad in [
        json!("0.10000000000000001"),
        json!("1e400"),
        json!("abc"),
        json!("."),
        json!(9_007_199_254_740_993i64),
    ] {
        refused("FLOAT", bad);
    }
}

#[test]
fn booleans_and_numerics() {
    assert_eq!(one("BOOLEAN", json!("TRUE")).unwrap(), json!(true));
    assert_eq!(one("BOOL", json!(false)).unwrap(), json!(false));
    refused("BOOLEAN", json!("yes"));
    refused("BOOLEAN", json!(1));
    // NUMERIC as exact text.
    assert_eq!(
        one("NUMERIC", json!("12345678901234567890.123456789")).unwrap(),
        json!("12345678901234567890.123456789")
    );
    assert_eq!(one("NUMERIC", json!(12)).unwrap(), json!("12"));
    assert_eq!(one("NUMERIC", json!(1.25)).unwrap(), json!("1.25"));
    let err = refused("NUMERIC", json!("1.0000000001"));
    assert!(err.to_string().contains("more digits"), "{err}");
    refused("NUMERIC", json!("1e5"));
    assert_eq!(
        one("BIGNUMERIC", json!("1.0000000001")).unwrap(),
        json!("1.0000000001")
    );
}

#[test]
fn strings_bytes_json_and_civil_times() {
    assert_eq!(one("STRING", json!(42)).unwrap(), json!("42"));
    assert_eq!(
        one("STRING", json!({ "a": 1 })).unwrap(),
        json!("{\"a\":1}")
    );
    assert_eq!(one("BYTES", json!("hi")).unwrap(), json!("aGk="));
    assert_eq!(
        one("JSON", json!({ "a": [1, "x"] })).unwrap(),
        json!("{\"a\":[1,\"x\"]}")
    );
    assert_eq!(one("JSON", json!("text")).unwrap(), json!("\"text\""));
    // Quotes, backslashes and control characters survive the two levels of escaping.
    let tricky = json!({ "q": "say \"hi\"\\ \n\u{1}" });
    let text = one("JSON", tricky.clone()).unwrap();
    let back: Json = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(back, tricky);
    assert_eq!(
        one("DATE", json!("2024-01-02")).unwrap(),
        json!("2024-01-02")
    );
    refused("DATE", json!(5));
}

#[test]
fn records_and_repeated_fields() {
    let b = builder(
        r#"
- { name: tags, type: STRING, mode: REPEATED }
- name: req
  type: RECORD
  mode: REPEATED
  fields: [{ name: status, type: INTEGER }, { name: path, type: STRING }]
- name: kubernetes
  type: RECORD
  fields: [{ name: pod, type: STRING }, { name: labels, type: JSON }]
"#,
        RowOptions::default(),
    );
    let rec = record(json!({
        "tags": "single",
        "req": [{ "status": "200", "path": "/a" }, { "status": 404 }],
        "kubernetes": { "pod": "p", "labels": { "app": "x" }, "extra": 1 },
    }));
    let r = row(&b, &rec, EventTime::new(0, 0), 0).unwrap();
    assert_eq!(
        r["json"],
        json!({
            "tags": ["single"],
            "req": [{ "status": 200, "path": "/a" }, { "status": 404 }],
            "kubernetes": { "pod": "p", "labels": "{\"app\":\"x\"}" },
        })
    );
    // Errors name the place in lists and records.
    let rec = record(json!({ "req": [{ "status": 1 }, { "status": "x" }] }));
    let err = row(&b, &rec, EventTime::new(0, 0), 0).unwrap_err();
    assert!(
        matches!(&err, RowError::Convert { path, .. } if path == "req[1].status"),
        "{err}"
    );
    let err = row(
        &b,
        &record(json!({ "kubernetes": "flat" })),
        EventTime::new(0, 0),
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, RowError::Convert { path, reason, .. } if path == "kubernetes" && reason.contains("map")),
        "{err}"
    );
    let err = row(
        &b,
        &record(json!({ "tags": ["a", null] })),
        EventTime::new(0, 0),
        0,
    )
    .unwrap_err();
    assert!(
        matches!(&err, RowError::Convert { path, .. } if path == "tags[1]"),
        "{err}"
    );
}

#[test]
fn a_required_field_must_have_a_value() {
    let b = builder(
        "[{ name: id, type: STRING, mode: REQUIRED }, { name: r, type: RECORD, fields: [{ name: x, type: STRING, mode: REQUIRED }] }]",
        RowOptions::default(),
    );
    let t = EventTime::new(0, 0);
    assert!(row(&b, &record(json!({ "id": "1" })), t, 0).is_ok());
    let err = row(&b, &record(json!({ "id": null })), t, 0).unwrap_err();
    assert_eq!(err, RowError::Missing { path: "id".into() });
    let err = row(&b, &record(json!({ "id": "1", "r": {} })), t, 0).unwrap_err();
    assert_eq!(err, RowError::Missing { path: "r.x".into() });
}

#[test]
fn unknown_fields_dropped_kept_in_a_column_or_passed_on() {
    let yaml = "[{ name: log, type: STRING }, { name: k, type: RECORD, fields: [{ name: a, type: STRING }] }, { name: extra, type: JSON }]";
    let rec = record(json!({ "log": "x", "stray": 1, "k": { "a": "b", "deep": [true] } }));
    let t = EventTime::new(0, 0);

    let drop = builder(yaml, RowOptions::default());
    assert!(!drop.ignore_unknown_values());
    assert_eq!(
        row(&drop, &rec, t, 0).unwrap()["json"],
        json!({ "log": "x", "k": { "a": "b" } })
    );

    let column = builder(
        yaml,
        RowOptions {
            unknown_fields: UnknownFields::Column("extra".into()),
            ..RowOptions::default()
        },
    );
    let r = row(&column, &rec, t, 0).unwrap();
    assert_eq!(r["json"]["log"], "x");
    let kept: Json = serde_json::from_str(r["json"]["extra"].as_str().unwrap()).unwrap();
    assert_eq!(kept, json!({ "stray": 1, "k": { "deep": [true] } }));
    // No unknown field, no column value.
    let r = row(&column, &record(json!({ "log": "x" })), t, 0).unwrap();
    assert_eq!(r["json"], json!({ "log": "x" }));

    let ignore = builder(
        yaml,
        RowOptions {
            unknown_fields: UnknownFields::Ignore,
            ..RowOptions::default()
        },
    );
    assert!(ignore.ignore_unknown_values());
    assert_eq!(
        row(&ignore, &rec, t, 0).unwrap()["json"],
        json!({ "log": "x", "stray": 1, "k": { "a": "b", "deep": [true] } })
    );
}

#[test]
fn options_that_do_not_fit_the_schema_are_refused() {
    let s = || schema("[{ name: log, type: STRING }, { name: n, type: INTEGER }]");
    let opts = |time: Option<&str>, column: Option<&str>| RowOptions {
        time_field: time.map(str::to_string),
        unknown_fields: column.map_or(UnknownFields::Drop, |c| UnknownFields::Column(c.into())),
        insert_id_key: None,
    };
    assert_eq!(
        RowBuilder::new(s(), opts(Some("time"), None)).unwrap_err(),
        RowSetupError::NoTimeColumn("time".into())
    );
    assert!(matches!(
        RowBuilder::new(s(), opts(Some("n"), None)).unwrap_err(),
        RowSetupError::TimeColumnType {
            field_type: FieldType::Integer,
            ..
        }
    ));
    assert_eq!(
        RowBuilder::new(s(), opts(None, Some("rest"))).unwrap_err(),
        RowSetupError::NoUnknownColumn("rest".into())
    );
    let err = RowBuilder::new(s(), opts(None, Some("n"))).unwrap_err();
    assert!(err.to_string().contains("JSON or STRING"), "{err}");
}

#[test]
fn insert_ids_from_the_key_or_chunk_and_position() {
    let yaml = "[{ name: log, type: STRING }]";
    let t = EventTime::new(0, 0);
    let plain = builder(yaml, RowOptions::default());
    let r = row(&plain, &record(json!({ "log": "x" })), t, 7).unwrap();
    assert_eq!(r["insertId"], format!("{}-7", CHUNK.to_hex()));

    let keyed = builder(
        yaml,
        RowOptions {
            insert_id_key: Some("meta.event_id".into()),
            ..RowOptions::default()
        },
    );
    let r = row(
        &keyed,
        &record(json!({ "log": "x", "meta": { "event_id": "e-1" } })),
        t,
        7,
    )
    .unwrap();
    assert_eq!(r["insertId"], "e-1");
    let r = row(
        &keyed,
        &record(json!({ "log": "x", "meta": { "event_id": 12 } })),
        t,
        7,
    )
    .unwrap();
    assert_eq!(r["insertId"], "12");
    // A record without the key falls back to chunk and position.
    let r = row(&keyed, &record(json!({ "log": "x" })), t, 3).unwrap();
    assert_eq!(r["insertId"], format!("{}-3", CHUNK.to_hex()));
}

#[test]
fn a_refused_row_leaves_the_buffer_as_it_was() {
    let b = builder(
        "[{ name: n, type: INTEGER }, { name: s, type: STRING }]",
        RowOptions::default(),
    );
    let mut out = b"prefix".to_vec();
    let err = b.write_row(
        &mut out,
        &record(json!({ "s": "written first", "n": "bad" })),
        EventTime::new(0, 0),
        (CHUNK, 0),
    );
    assert!(err.is_err());
    assert_eq!(out, b"prefix");
}

#[test]
fn case_of_field_names_follows_the_schema() {
    let b = builder("[{ name: Log, type: STRING }]", RowOptions::default());
    let r = row(&b, &record(json!({ "log": "x" })), EventTime::new(0, 0), 0).unwrap();
    assert_eq!(r["json"], json!({ "Log": "x" }));
}
