//! Rows are checked by decoding them with prost-reflect's `DynamicMessage` under the
//! descriptor built for the same schema: the bytes must be what a protobuf library
//! reads as that message.

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value as Proto};
use prost_types::{FileDescriptorProto, FileDescriptorSet};
use serde_json::{Value as Json, json};

use super::super::descriptor::{ROW_MESSAGE, descriptor};
use super::*;
use crate::sinks::bigquery::rows::{RowOptions, UnknownFields};
use crate::sinks::bigquery::schema::FieldConfig;

fn schema(yaml: &str) -> Schema {
    let fields: Vec<FieldConfig> = serde_norway::from_str(yaml).expect("schema YAML");
    Schema::from_config(&fields).expect("schema")
}

fn encoder(yaml: &str, options: RowOptions) -> RowEncoder {
    RowEncoder::new(RowBuilder::new(schema(yaml), options).expect("options fit"))
}

fn record(json: Json) -> Map {
    nagare_core::value::parse_json_object(json.to_string().as_bytes()).expect("a JSON object")
}

/// The row decoded by the descriptor of the encoder's schema.
fn decode(e: &RowEncoder, rec: &Map, time: EventTime) -> Result<DynamicMessage, RowError> {
    let mut out = Vec::new();
    e.write_row(&mut out, rec, time)?;
    let file = FileDescriptorProto {
        name: Some("row.proto".into()),
        package: Some("t".into()),
        message_type: vec![descriptor(e.schema()).expect("descriptor")],
        syntax: Some("proto2".into()),
        ..Default::default()
    };
    let set = FileDescriptorSet { file: vec![file] };
    let pool = DescriptorPool::decode(set.encode_to_vec().as_slice()).expect("a valid descriptor");
    let message = pool
        .get_message_by_name(&format!("t.{ROW_MESSAGE}"))
        .expect("the row message");
    Ok(DynamicMessage::decode(message, out.as_slice()).expect("the row decodes"))
}

fn one(ty: &str, value: Json) -> Result<Option<Proto>, RowError> {
    let e = encoder(
        &format!("- {{ name: v, type: {ty} }}"),
        RowOptions::default(),
    );
    let m = decode(&e, &record(json!({ "v": value })), EventTime::new(0, 0))?;
    Ok(m.has_field_by_name("v")
        .then(|| m.get_field_by_name("v").unwrap().into_owned()))
}

#[test]
fn scalars_take_the_documented_proto_types() {
    let t = "2024-01-02T03:04:05.123456789Z";
    let micros = 1_704_164_645_123_456i64;
    assert_eq!(
        one("TIMESTAMP", json!(t)).unwrap(),
        Some(Proto::I64(micros))
    );
    assert_eq!(
        one("DATE", json!("2024-01-02")).unwrap(),
        Some(Proto::I32(19_724))
    );
    assert_eq!(
        one("DATE", json!("1969-12-31")).unwrap(),
        Some(Proto::I32(-1))
    );
    assert_eq!(one("INTEGER", json!("-42")).unwrap(), Some(Proto::I64(-42)));
    assert_eq!(one("FLOAT", json!("0.1")).unwrap(), Some(Proto::F64(0.1)));
    assert_eq!(
        one("BOOLEAN", json!("TRUE")).unwrap(),
        Some(Proto::Bool(true))
    );
    assert_eq!(
        one("NUMERIC", json!(1.25)).unwrap(),
        Some(Proto::String("1.25".into()))
    );
    assert_eq!(
        one("JSON", json!({"a": [1, "x\""]})).unwrap(),
        Some(Proto::String(r#"{"a":[1,"x\""]}"#.into()))
    );
    assert_eq!(
        one("STRING", json!(7)).unwrap(),
        Some(Proto::String("7".into()))
    );
    assert_eq!(
        one("BYTES", json!("raw")).unwrap(),
        Some(Proto::Bytes(b"raw".to_vec().into()))
    );
    assert_eq!(
        one("DATETIME", json!("2024-01-02T03:04:05")).unwrap(),
        Some(Proto::String("2024-01-02T03:04:05".into()))
    );
    // Null is no value at all.
    assert_eq!(one("STRING", json!(null)).unwrap(), None);
}

#[test]
fn values_that_cannot_be_converted_name_the_field() {
    for (ty, value) in [
        ("INTEGER", json!("4.2")),
        ("DATE", json!("2024-02-30")),
        ("TIMESTAMP", json!("yesterday")),
        ("BOOLEAN", json!(1)),
        ("NUMERIC", json!("1.0000000001")),
    ] {
        let err = one(ty, value.clone()).expect_err(&format!("{value} as {ty}"));
        assert!(
            matches!(&err, RowError::Convert { path, .. } if path == "v"),
            "{ty} {value}: {err}"
        );
    }
}

const KUBERNETES: &str = r#"
- { name: time, type: TIMESTAMP, mode: REQUIRED }
- { name: log, type: STRING }
- { name: seq, type: INTEGER }
- { name: tags, type: STRING, mode: REPEATED }
- { name: extra, type: JSON }
- name: kubernetes
  type: RECORD
  fields:
    - { name: namespace_name, type: STRING }
    - { name: labels, type: JSON }
    - name: container
      type: RECORD
      fields:
        - { name: name, type: STRING }
        - { name: restarts, type: INTEGER, mode: REPEATED }
"#;

#[test]
fn records_repeated_fields_time_and_unknowns() {
    let options = RowOptions {
        time_field: Some("time".into()),
        unknown_fields: UnknownFields::Column("extra".into()),
        insert_id_key: None,
    };
    let e = encoder(KUBERNETES, options);
    let long = "x".repeat(300);
    let rec = record(json!({
        "log": long,
        "seq": 3,
        "time": "ignored: the event time wins",
        "tags": ["a", "b"],
        "stream": "stdout",
        "kubernetes": {
            "namespace_name": "default",
            "labels": {"app": "web"},
            "pod_ip": "10.0.0.1",
            "container": { "name": "web", "restarts": 2 }
        }
    }));
    let m = decode(&e, &rec, EventTime::new(1_700_000_000, 5_000)).unwrap();
    let get = |name: &str| m.get_field_by_name(name).unwrap().into_owned();
    assert_eq!(get("time"), Proto::I64(1_700_000_000_000_005));
    assert_eq!(get("log"), Proto::String(long));
    assert_eq!(get("seq"), Proto::I64(3));
    assert_eq!(
        get("tags"),
        Proto::List(vec![Proto::String("a".into()), Proto::String("b".into())])
    );
    let Proto::Message(k) = get("kubernetes") else {
        panic!("kubernetes is a message")
    };
    assert_eq!(
        k.get_field_by_name("labels").unwrap().as_str(),
        Some(r#"{"app":"web"}"#)
    );
    let Proto::Message(c) = k.get_field_by_name("container").unwrap().into_owned() else {
        panic!("container is a message")
    };
    assert_eq!(
        c.get_field_by_name("restarts").unwrap().into_owned(),
        Proto::List(vec![Proto::I64(2)]),
        "a single value is a list of one"
    );
    let extra: Json = serde_json::from_str(get("extra").as_str().unwrap()).unwrap();
    assert_eq!(
        extra,
        json!({"stream": "stdout", "kubernetes": {"pod_ip": "10.0.0.1"}})
    );
}

#[test]
fn a_missing_required_column_or_bad_nested_value_fails_the_row_and_writes_nothing() {
    let e = encoder(KUBERNETES, RowOptions::default());
    let mut out = b"keep".to_vec();
    let err = e
        .write_row(&mut out, &record(json!({"log": "x"})), EventTime::new(0, 0))
        .unwrap_err();
    assert_eq!(
        err,
        RowError::Missing {
            path: "time".into()
        }
    );
    let bad = record(json!({
        "time": 1, "kubernetes": {"container": {"restarts": [1, "two"]}}
    }));
    let err = e
        .write_row(&mut out, &bad, EventTime::new(0, 0))
        .unwrap_err();
    assert!(
        matches!(&err, RowError::Convert { path, .. } if path == "kubernetes.container.restarts[1]"),
        "{err}"
    );
    assert_eq!(out, b"keep");
}

#[test]
fn column_names_that_are_not_proto_names_are_refused_with_the_path() {
    let s = schema("- { name: r, type: RECORD, fields: [ { name: 'a-b', type: STRING } ] }");
    assert_eq!(descriptor(&s).unwrap_err().path, "r.a-b");
}
