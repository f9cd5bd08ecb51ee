//! Every action shape, byte for byte, against Elasticsearch's documented bulk
//! formats: data stream `create`, `update` (`{"doc": ...}`), upsert
//! (`"doc_as_upsert": true`), `_type` for Elasticsearch 6, no `_id` for OpenSearch
//! Serverless, `routing` and `pipeline`.

use super::*;

const TS: &str = "\"@timestamp\":\"2024-01-15T10:30:00.000000000Z\"";

fn t() -> EventTime {
    EventTime::new(1_705_314_600, 0)
}

fn builder(yaml: &str) -> RequestBuilder {
    let c = config(&format!("endpoints: [http://a:9200]\n{yaml}"));
    c.validate()
        .unwrap_or_else(|e| panic!("{}: {}", e.key, e.message));
    RequestBuilder::new(&c).unwrap()
}

fn kube(namespace: &str, pod: &str) -> Map {
    let mut k = Map::new();
    k.insert("namespace_name", namespace);
    k.insert("pod_name", pod);
    k.insert("container_name", "app");
    record(&[("log", "hi".into()), ("kubernetes", Value::Map(k))])
}

const KUBE_DOC: &str = "{\"log\":\"hi\",\"kubernetes\":{\"namespace_name\":\"shop\",\"pod_name\":\"web-1\",\"container_name\":\"app\"},\"@timestamp\":\"2024-01-15T10:30:00.000000000Z\"}";

#[test]
fn data_stream_create() {
    let mut b = builder("mode: data_stream\n");
    let item = b
        .encode(CHUNK, 0, "t", t(), &record(&[("log", "hi".into())]))
        .unwrap();
    assert_eq!(
        text(&item),
        format!(
            "{{\"create\":{{\"_index\":\"logs-generic-default\",\"_id\":\"{CHUNK_HEX}-0\"}}}}\n{{\"log\":\"hi\",{TS}}}\n"
        )
    );
    // Templated parts, lower-cased; the record's own @timestamp is kept.
    let mut b = builder(
        "mode: data_stream\ndata_stream:\n  dataset: '{kubernetes.container_name}'\n  namespace: '{kubernetes.namespace_name}'\n",
    );
    let mut r = kube("Shop", "web-1");
    r.insert("@timestamp", "2024-01-01T00:00:00Z");
    let item = b.encode(CHUNK, 9, "t", t(), &r).unwrap();
    assert_eq!(&*item.index, "logs-app-shop");
    assert_eq!(
        text(&item),
        format!(
            "{{\"create\":{{\"_index\":\"logs-app-shop\",\"_id\":\"{CHUNK_HEX}-9\"}}}}\n{{\"log\":\"hi\",\"kubernetes\":{{\"namespace_name\":\"Shop\",\"pod_name\":\"web-1\",\"container_name\":\"app\"}},\"@timestamp\":\"2024-01-01T00:00:00Z\"}}\n"
        )
    );
    // A null `@timestamp` (no date: the data stream would refuse the document) gives
    // way to the event time; under `mode: index` the record is written as it is.
    let mut b = builder("mode: data_stream\n");
    let r = record(&[("@timestamp", Value::Null), ("log", "hi".into())]);
    let item = b.encode(CHUNK, 2, "t", t(), &r).unwrap();
    assert!(
        text(&item).ends_with(&format!("\n{{\"log\":\"hi\",{TS}}}\n")),
        "{}",
        text(&item)
    );
    let mut plain = builder("index: app\n");
    let item = plain.encode(CHUNK, 2, "t", t(), &r).unwrap();
    assert!(
        text(&item).ends_with("\n{\"@timestamp\":null,\"log\":\"hi\"}\n"),
        "{}",
        text(&item)
    );
    // `@timestamp` is always there, even when `remove_keys` takes the record's.
    let mut b = builder("mode: data_stream\nremove_keys: ['@timestamp']\n");
    let r = record(&[("@timestamp", "x".into())]);
    let item = b.encode(CHUNK, 1, "t", t(), &r).unwrap();
    assert!(
        text(&item).ends_with(&format!("\n{{{TS}}}\n")),
        "{}",
        text(&item)
    );
}

#[test]
fn update_and_upsert() {
    let r = record(&[("id", Value::Int(42)), ("n", Value::Int(1))]);
    let mut b = builder("index: app\nop_type: update\nid_key: id\n");
    assert_eq!(
        text(&b.encode(CHUNK, 0, "t", t(), &r).unwrap()),
        format!(
            "{{\"update\":{{\"_index\":\"app\",\"_id\":\"42\"}}}}\n{{\"doc\":{{\"id\":42,\"n\":1,{TS}}}}}\n"
        )
    );
    let mut b = builder("index: app\nop_type: upsert\nid_key: id\nremove_keys: [id]\n");
    assert_eq!(
        text(&b.encode(CHUNK, 0, "t", t(), &r).unwrap()),
        format!(
            "{{\"update\":{{\"_index\":\"app\",\"_id\":\"42\"}}}}\n{{\"doc\":{{\"n\":1,{TS}}},\"doc_as_upsert\":true}}\n"
        )
    );
    // The body is valid NDJSON: two JSON lines per item.
    let item = b.encode(CHUNK, 0, "t", t(), &r).unwrap();
    for line in text(&item).lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
}

/// An update names the document it changes: an event whose record gives no id is
/// refused with the reason (it goes to the dead-letter output) rather than sent with
/// a derived id no document has (an upsert would make a stray document of it).
#[test]
fn update_and_upsert_refuse_a_record_without_an_id() {
    for op in ["update", "upsert"] {
        let mut b = builder(&format!("index: app\nop_type: {op}\nid_key: id\n"));
        let cases = [
            (record(&[("n", Value::Int(1))]), "no such field"),
            (
                record(&[("id", "".into()), ("n", Value::Int(1))]),
                "an empty string there",
            ),
            (
                record(&[("id", Value::Null), ("n", Value::Int(1))]),
                "a value of type null there, which cannot be an id",
            ),
        ];
        for (r, why) in cases {
            let reason = b.encode(CHUNK, 0, "t", t(), &r).unwrap_err();
            assert_eq!(
                reason,
                format!(
                    "op_type {op} needs a document id from the record's `id` field (id_key), and this record has {why}"
                )
            );
        }
        // A dotted path finds a nested id.
        let mut b = builder(&format!("index: app\nop_type: {op}\nid_key: doc.id\n"));
        let mut inner = Map::new();
        inner.insert("id", "a-1");
        let r = record(&[("doc", Value::Map(inner))]);
        let item = b.encode(CHUNK, 0, "t", t(), &r).unwrap();
        assert!(
            text(&item).starts_with("{\"update\":{\"_index\":\"app\",\"_id\":\"a-1\"}}\n"),
            "{}",
            text(&item)
        );
    }
    // `index` and `create` keep the derived id for such a record.
    let mut b = builder("index: app\nid_key: id\n");
    let item = b
        .encode(CHUNK, 3, "t", t(), &record(&[("n", Value::Int(1))]))
        .unwrap();
    assert!(text(&item).contains(&format!("\"_id\":\"{CHUNK_HEX}-3\"")));
}

/// Kubernetes label keys are names, not paths: `app.kubernetes.io/name` beside `app`
/// would be read by Elasticsearch as an object under a keyword and refused. By
/// default their dots are written as `_` (and only theirs); `all` does it for every
/// field name, `none` for none.
#[test]
fn dots_in_label_keys_are_replaced() {
    let mut labels = Map::new();
    labels.insert("app", "web");
    labels.insert("app.kubernetes.io/name", "web");
    let mut k = Map::new();
    k.insert("pod_name", "web-1");
    k.insert("labels", Value::Map(labels.clone()));
    k.insert("namespace_labels", Value::Map(labels));
    let mut nested = Map::new();
    nested.insert("a.b", Value::Int(1));
    let r = record(&[
        ("log.level", "info".into()),
        ("kubernetes", Value::Map(k)),
        ("http", Value::Map(nested)),
    ]);
    let doc = |yaml: &str| {
        let mut b = builder(&format!("index: app\n{yaml}"));
        let item = b.encode(CHUNK, 0, "t", t(), &r).unwrap();
        text(&item).lines().nth(1).unwrap().to_string()
    };
    let labels = r#"{"app":"web","app_kubernetes_io/name":"web"}"#;
    assert_eq!(
        doc(""),
        format!(
            r#"{{"log.level":"info","kubernetes":{{"pod_name":"web-1","labels":{labels},"namespace_labels":{labels}}},"http":{{"a.b":1}},{TS}}}"#
        )
    );
    assert_eq!(doc(""), doc("replace_dots: labels\n"));
    assert_eq!(
        doc("replace_dots: all\n"),
        format!(
            r#"{{"log_level":"info","kubernetes":{{"pod_name":"web-1","labels":{labels},"namespace_labels":{labels}}},"http":{{"a_b":1}},{TS}}}"#
        )
    );
    let dotted = r#"{"app":"web","app.kubernetes.io/name":"web"}"#;
    assert_eq!(
        doc("replace_dots: none\n"),
        format!(
            r#"{{"log.level":"info","kubernetes":{{"pod_name":"web-1","labels":{dotted},"namespace_labels":{dotted}}},"http":{{"a.b":1}},{TS}}}"#
        )
    );
}

#[test]
fn type_name_for_elasticsearch_6_unless_suppressed() {
    let r = record(&[("log", "hi".into())]);
    let mut b = builder("index: app\n");
    b.set_type_name(true);
    assert_eq!(
        text(&b.encode(CHUNK, 2, "t", t(), &r).unwrap()),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_type\":\"_doc\",\"_id\":\"{CHUNK_HEX}-2\"}}}}\n{{\"log\":\"hi\",{TS}}}\n"
        )
    );
    b.set_type_name(false);
    assert_eq!(
        text(&b.encode(CHUNK, 2, "t", t(), &r).unwrap()),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-2\"}}}}\n{{\"log\":\"hi\",{TS}}}\n"
        )
    );
    let mut b = builder("index: app\nsuppress_type_name: true\n").type_name(true);
    assert_eq!(
        text(&b.encode(CHUNK, 2, "t", t(), &r).unwrap()),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-2\"}}}}\n{{\"log\":\"hi\",{TS}}}\n"
        )
    );
}

#[test]
fn no_ids_at_all_when_omitted() {
    let r = record(&[("uid", "u-1".into())]);
    let mut b = builder("index: app\nop_type: create\nid_key: uid\n").omit_ids(true);
    assert_eq!(
        text(&b.encode(CHUNK, 0, "t", t(), &r).unwrap()),
        format!("{{\"create\":{{\"_index\":\"app\"}}}}\n{{\"uid\":\"u-1\",{TS}}}\n")
    );
    let mut b = builder("index: app\n");
    b.set_omit_ids(true);
    let item = b.encode(CHUNK, 5, "t", t(), &r).unwrap();
    assert!(!text(&item).contains("_id"), "{}", text(&item));
    b.set_omit_ids(false);
    let item = b.encode(CHUNK, 5, "t", t(), &r).unwrap();
    assert!(text(&item).contains(&format!("\"_id\":\"{CHUNK_HEX}-5\"")));
}

#[test]
fn routing_and_pipeline() {
    let mut b = builder("index: app\npipeline: k8s-logs\nrouting_key: kubernetes.pod_name\n");
    assert_eq!(
        text(
            &b.encode(CHUNK, 1, "t", t(), &kube("shop", "web-1"))
                .unwrap()
        ),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-1\",\"routing\":\"web-1\",\"pipeline\":\"k8s-logs\"}}}}\n{KUBE_DOC}\n"
        )
    );
    // A record without the routing field is routed by `_id`.
    let item = b
        .encode(CHUNK, 2, "t", t(), &record(&[("log", "hi".into())]))
        .unwrap();
    assert_eq!(
        text(&item),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-2\",\"pipeline\":\"k8s-logs\"}}}}\n{{\"log\":\"hi\",{TS}}}\n"
        )
    );
    // Every key at once, in Elasticsearch 6's order of the docs: _index, _type, _id,
    // routing, pipeline.
    let mut b = builder(
        "mode: data_stream\npipeline: p\nrouting_key: kubernetes.pod_name\nid_key: kubernetes.pod_name\n",
    )
    .type_name(true);
    assert_eq!(
        text(
            &b.encode(CHUNK, 1, "t", t(), &kube("shop", "web-1"))
                .unwrap()
        ),
        format!(
            "{{\"create\":{{\"_index\":\"logs-generic-default\",\"_type\":\"_doc\",\"_id\":\"web-1\",\"routing\":\"web-1\",\"pipeline\":\"p\"}}}}\n{KUBE_DOC}\n"
        )
    );
}

#[test]
fn op_type_defaults_follow_the_mode() {
    assert_eq!(
        config("endpoints: [http://a:9200]\n").op_type(),
        OpType::Index
    );
    assert_eq!(
        config("endpoints: [http://a:9200]\nmode: data_stream\n").op_type(),
        OpType::Create
    );
    assert_eq!(
        config("endpoints: [http://a:9200]\nop_type: upsert\nid_key: x\n").op_type(),
        OpType::Upsert
    );
    // A 409 under update is a conflict, not "already stored".
    assert!(matches!(
        classify_item(409, None, OpType::Update),
        Outcome::Rejected { .. }
    ));
}
