//! Unit tests: config, request bodies byte for byte, and answer classification.

use std::io::Read;

use nagare_core::config::{ByteSize, ConfigDocument, HumanDuration};
use nagare_core::sink::{BatchOutcome, Outcome};
use nagare_core::{ChunkId, EventTime, Map, Value};
use nagare_testkit::docs::documented_example;
use serde_json::json;

use super::*;

mod connection;

fn config(yaml: &str) -> ElasticsearchConfig {
    ConfigDocument::from_text("test.yaml", yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn invalid_key(yaml: &str) -> String {
    let c = config(yaml);
    c.validate().expect_err("should be invalid").key
}

const CHUNK: ChunkId = ChunkId([
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
]);
const CHUNK_HEX: &str = "00112233445566778899aabbccddeeff";

fn record(pairs: &[(&str, Value)]) -> Map {
    pairs.iter().map(|(k, v)| (*k, v.clone())).collect()
}

fn text(item: &EncodedItem) -> &str {
    std::str::from_utf8(&item.bytes).unwrap()
}

#[test]
fn documented_example_parses_with_defaults() {
    // The example in config.rs, as written there.
    let text = documented_example(include_str!("config.rs"));
    let c: ElasticsearchConfig =
        ConfigDocument::from_text("nagare.yaml", &text, |name| Some(format!("<{name}>")))
            .unwrap()
            .parse()
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
    c.validate().unwrap();
    assert_eq!(c.endpoints.len(), 2);
    assert_eq!(c.id_key.as_deref(), Some("line_id"));
    assert_eq!(c.remove_keys, ["line_id"]);
    assert_eq!(format!("{:?}", c.password), "Some(Secret(****))");

    let d = config("endpoints: [http://localhost:9200]\n");
    d.validate().unwrap();
    assert_eq!(
        d.index_target().unwrap(),
        IndexTarget::Daily {
            prefix: "logstash".into(),
            format: "%Y.%m.%d".into()
        }
    );
    assert!(d.compress);
    assert_eq!(d.batch.max_events, 1000);
    assert_eq!(d.batch.max_bytes, ByteSize(5 << 20));
    assert_eq!(d.batch.timeout, HumanDuration::secs(1));
    assert_eq!(d.request_timeout, HumanDuration::secs(30));
    assert_eq!(d.op_type(), OpType::Index);
    assert_eq!(d.id_key, None);
    assert!(d.remove_keys.is_empty());
    assert!(!d.include_tag_key);
    assert_eq!(d.tag_key, "tag");

    let f = config("endpoints: [http://localhost:9200]\nindex: app-logs\nop_type: create\n");
    f.validate().unwrap();
    assert_eq!(
        f.index_target().unwrap(),
        IndexTarget::Fixed("app-logs".into())
    );
}

#[test]
fn unknown_keys_are_refused() {
    let err = ConfigDocument::from_text(
        "t.yaml",
        "endpoints: [http://a:9200]\nbatch:\n  max_event: 5\n",
        |_| None,
    )
    .unwrap()
    .parse::<ElasticsearchConfig>()
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("batch.max_event"), "{err}");
}

#[test]
fn invalid_settings_name_their_key() {
    assert_eq!(invalid_key("endpoints: []\n"), "endpoints");
    assert_eq!(
        invalid_key("endpoints: [http://a:9200, 'es-1:9200']\n"),
        "endpoints.1"
    );
    assert_eq!(
        invalid_key("endpoints: ['http://u:p@a:9200']\n"),
        "endpoints.0"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\nindex: x\nlogstash_format: true\n"),
        "logstash_format"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\nlogstash_format: false\n"),
        "logstash_format"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\nindex: Logs\n"),
        "index"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\nlogstash_dateformat: '%Y.%J'\n"),
        "logstash_dateformat"
    );
    // %b prints "Nov": an index name must be lowercase.
    let c = config("endpoints: [http://a:9200]\nlogstash_dateformat: '%Y.%b'\n");
    let e = c.validate().unwrap_err();
    assert_eq!(e.key, "logstash_prefix");
    assert!(e.message.contains("must be lowercase"), "{}", e.message);
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\npassword: x\n"),
        "password"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\nbatch: {max_events: 0}\n"),
        "batch.max_events"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\ninclude_tag_key: true\ntag_key: '@timestamp'\n"),
        "tag_key"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\nremove_keys: [a, '']\n"),
        "remove_keys.1"
    );
    assert_eq!(
        invalid_key("endpoints: [http://a:9200]\ninclude_tag_key: true\nremove_keys: [tag]\n"),
        "remove_keys.0"
    );
}

#[test]
fn action_line_and_document_per_event() {
    let mut b = RequestBuilder::new(&config("endpoints: [http://a:9200]\nindex: app\n")).unwrap();
    let t = EventTime::new(1_705_314_600, 123_456_789);
    let r = record(&[("message", "hello \"world\"".into()), ("n", Value::Int(7))]);
    let item = b.encode(CHUNK, 0, "app.web", t, &r).unwrap();
    assert_eq!(&*item.index, "app");
    assert_eq!(
        text(&item),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-0\"}}}}\n{{\"message\":\"hello \\\"world\\\"\",\"n\":7,\"@timestamp\":\"2024-01-15T10:30:00.123456789Z\"}}\n"
        )
    );
    let item = b.encode(CHUNK, 41, "app.web", t, &Map::new()).unwrap();
    assert_eq!(
        text(&item),
        format!(
            "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-41\"}}}}\n{{\"@timestamp\":\"2024-01-15T10:30:00.123456789Z\"}}\n"
        )
    );
}

#[test]
fn create_op_tag_key_and_existing_timestamp() {
    let mut b = RequestBuilder::new(&config(
        "endpoints: [http://a:9200]\nindex: app\nop_type: create\ninclude_tag_key: true\ntag_key: fluent_tag\n",
    ))
    .unwrap();
    let t = EventTime::new(0, 5);
    // The record's own @timestamp is kept; a tag key it carries is replaced in place.
    let r = record(&[
        ("fluent_tag", "spoofed".into()),
        ("@timestamp", "2020-01-01T00:00:00Z".into()),
        ("a", Value::Null),
    ]);
    let item = b.encode(CHUNK, 3, "kube.app", t, &r).unwrap();
    assert_eq!(
        text(&item),
        format!(
            "{{\"create\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-3\"}}}}\n{{\"fluent_tag\":\"kube.app\",\"@timestamp\":\"2020-01-01T00:00:00Z\",\"a\":null}}\n"
        )
    );
    let item = b
        .encode(CHUNK, 4, "kube.app", t, &record(&[("a", Value::Int(1))]))
        .unwrap();
    assert!(
        text(&item).ends_with("\n{\"a\":1,\"@timestamp\":\"1970-01-01T00:00:00.000000005Z\",\"fluent_tag\":\"kube.app\"}\n"),
        "{}",
        text(&item)
    );
}

#[test]
fn ids_from_id_key() {
    let mut b = RequestBuilder::new(&config(
        "endpoints: [http://a:9200]\nindex: app\nid_key: meta.uid\n",
    ))
    .unwrap();
    let t = EventTime::new(0, 0);
    let mut meta = Map::new();
    meta.insert("uid", "a\"b");
    let item = b
        .encode(CHUNK, 0, "t", t, &record(&[("meta", Value::Map(meta))]))
        .unwrap();
    assert!(
        text(&item).starts_with("{\"index\":{\"_index\":\"app\",\"_id\":\"a\\\"b\"}}\n"),
        "{}",
        text(&item)
    );
    let item = b
        .encode(CHUNK, 0, "t", t, &record(&[("meta.uid", Value::Int(42))]))
        .unwrap();
    assert!(
        text(&item).starts_with("{\"index\":{\"_index\":\"app\",\"_id\":\"42\"}}\n"),
        "{}",
        text(&item)
    );
    // A record without the field keeps the chunk-derived id, so a resend of its
    // chunk still overwrites rather than duplicates it.
    let item = b.encode(CHUNK, 7, "t", t, &Map::new()).unwrap();
    assert!(
        text(&item).starts_with(&format!(
            "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-7\"}}}}\n"
        )),
        "{}",
        text(&item)
    );
}

#[test]
fn remove_keys_are_left_out_of_documents_after_id_key_read_them() {
    let mut b = RequestBuilder::new(&config(
        "endpoints: [http://a:9200]\nindex: app\nid_key: line_id\nremove_keys: [line_id, '@timestamp', absent]\n",
    ))
    .unwrap();
    let t = EventTime::new(1_705_314_600, 0);
    let r = record(&[
        ("line_id", "0123456789abcdef-4096".into()),
        ("log", "hello".into()),
        ("@timestamp", "2020-01-01T00:00:00Z".into()),
        ("meta", Value::Map(record(&[("line_id", Value::Int(1))]))),
    ]);
    let item = b.encode(CHUNK, 0, "t", t, &r).unwrap();
    // Only top-level keys go; a removed `@timestamp` is written from the event time.
    assert_eq!(
        text(&item),
        "{\"index\":{\"_index\":\"app\",\"_id\":\"0123456789abcdef-4096\"}}\n{\"log\":\"hello\",\"meta\":{\"line_id\":1},\"@timestamp\":\"2024-01-15T10:30:00.000000000Z\"}\n"
    );
    // A record of removed keys only is an empty document but for `@timestamp`.
    let item = b
        .encode(CHUNK, 1, "t", t, &record(&[("line_id", "x-1".into())]))
        .unwrap();
    assert!(
        text(&item).ends_with("\n{\"@timestamp\":\"2024-01-15T10:30:00.000000000Z\"}\n"),
        "{}",
        text(&item)
    );
}

#[test]
fn daily_indices_across_a_date_boundary() {
    let mut b = RequestBuilder::new(&config("endpoints: [http://a:9200]\n")).unwrap();
    // 2024-01-15T23:59:59.999999999Z and one nanosecond later.
    let before = EventTime::new(1_705_363_199, 999_999_999);
    let after = EventTime::new(1_705_363_200, 0);
    let r = Map::new();
    let a = b.encode(CHUNK, 0, "t", before, &r).unwrap();
    let c = b.encode(CHUNK, 1, "t", after, &r).unwrap();
    let d = b.encode(CHUNK, 2, "t", before, &r).unwrap();
    assert_eq!(&*a.index, "logstash-2024.01.15");
    assert_eq!(&*c.index, "logstash-2024.01.16");
    assert_eq!(&*d.index, "logstash-2024.01.15");
    assert!(text(&c).starts_with(&format!(
        "{{\"index\":{{\"_index\":\"logstash-2024.01.16\",\"_id\":\"{CHUNK_HEX}-1\"}}}}\n{{\"@timestamp\":\"2024-01-16T00:00:00.000000000Z\"}}"
    )));
    // Back to the earlier second, and another chunk: its time and id as they are.
    let e = b.encode(ChunkId([0xab; 16]), 4_294_967_295, "t", before, &r);
    assert_eq!(
        text(&e.unwrap()),
        format!(
            "{{\"index\":{{\"_index\":\"logstash-2024.01.15\",\"_id\":\"{}-4294967295\"}}}}\n{{\"@timestamp\":\"2024-01-15T23:59:59.999999999Z\"}}\n",
            "ab".repeat(16)
        )
    );
    // Before the epoch, and a year boundary, with a custom prefix and format.
    let mut b = RequestBuilder::new(&config(
        "endpoints: [http://a:9200]\nlogstash_prefix: k8s\nlogstash_dateformat: '%Y%m%d.%H'\n",
    ))
    .unwrap();
    assert_eq!(
        &*b.index_for("t", EventTime::new(-1, 0), &Map::new())
            .unwrap(),
        "k8s-19691231.23"
    );
    assert_eq!(
        &*b.index_for("t", EventTime::new(1_704_067_199, 0), &Map::new())
            .unwrap(),
        "k8s-20231231.23"
    );
    assert_eq!(
        &*b.index_for("t", EventTime::new(1_704_067_200, 0), &Map::new())
            .unwrap(),
        "k8s-20240101.00"
    );
    assert_eq!(
        &*b.index_for("t", EventTime::new(1_704_070_800, 0), &Map::new())
            .unwrap(),
        "k8s-20240101.01"
    );
}

#[test]
fn format_periods() {
    assert_eq!(format_period("%Y.%m.%d"), 86_400);
    assert_eq!(format_period("%G-W%V"), 86_400);
    assert_eq!(format_period("%Y.%m.%d.%H"), 3_600);
    assert_eq!(format_period("%F %-I%p"), 3_600);
    assert_eq!(format_period("%Y%m%d%H%M"), 60);
    assert_eq!(format_period("%s"), 1);
    assert_eq!(format_period("100%%"), 86_400);
}

#[test]
fn batch_body_plain_and_gzipped() {
    let yaml = "endpoints: [http://a:9200]\nindex: app\ncompress: false\n";
    let mut plain = RequestBuilder::new(&config(yaml)).unwrap();
    let t = EventTime::new(1_705_314_600, 0);
    let items: Vec<EncodedItem> = (0..3)
        .map(|i| {
            plain
                .encode(
                    CHUNK,
                    i,
                    "t",
                    t,
                    &record(&[("i", Value::Int(i64::from(i)))]),
                )
                .unwrap()
        })
        .collect();
    let req = plain.build(items.iter().map(|i| i.bytes.as_slice()));
    let expected: String = (0..3)
        .map(|i| {
            format!(
                "{{\"index\":{{\"_index\":\"app\",\"_id\":\"{CHUNK_HEX}-{i}\"}}}}\n{{\"i\":{i},\"@timestamp\":\"2024-01-15T10:30:00.000000000Z\"}}\n"
            )
        })
        .collect();
    assert!(!req.gzip);
    assert_eq!((req.items, req.ndjson_bytes), (3, expected.len()));
    assert_eq!(std::str::from_utf8(&req.body).unwrap(), expected);

    let gz = RequestBuilder::new(&config("endpoints: [http://a:9200]\nindex: app\n")).unwrap();
    let req = gz.build(items.iter().map(|i| i.bytes.as_slice()));
    assert!(req.gzip);
    assert_eq!(&req.body[..2], &[0x1f, 0x8b], "gzip magic");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&req.body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, expected);
    assert_eq!(req.ndjson_bytes, expected.len());

    // Gzipped by the kit's batcher as the items joined their batch: the same text,
    // and the items given back their bytes from the body when some go again.
    let limits = config("endpoints: [http://a:9200]\n").batch.limits();
    let mut batcher = nagare_core::sink::Batcher::new(limits).gzip(Some(GZIP_LEVEL));
    for (i, item) in items.iter().enumerate() {
        batcher.push(
            nagare_core::sink::Item {
                key: item.index.clone(),
                bytes: item.bytes.clone(),
                size: item.bytes.len(),
                time: t,
                ticket: nagare_core::sink::Ticket {
                    slot: 0,
                    position: i as u32,
                    events: 1,
                },
            },
            tokio::time::Instant::now(),
        );
    }
    batcher.seal_all();
    let mut batch = batcher.take().unwrap();
    let req = build_gzipped(batch.gzipped.take().expect("gzipped as it filled"));
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&req.body[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert!(req.gzip);
    assert_eq!(
        (unzipped, req.items, req.ndjson_bytes),
        (expected.clone(), 3, expected.len())
    );
    assert!(batch.items.iter().all(|i| i.bytes.is_empty()));
    let lengths = req.item_lengths.as_deref().unwrap();
    nagare_core::sink::Gzipped::restore(&req.body, lengths, &mut batch.items);
    let restored: Vec<&[u8]> = batch.items.iter().map(|i| i.bytes.as_slice()).collect();
    let encoded: Vec<&[u8]> = items.iter().map(|i| i.bytes.as_slice()).collect();
    assert_eq!(restored, encoded);
}

#[test]
fn aws_signing_settings_and_what_serverless_refuses() {
    let base = "endpoints: [https://search-x.eu-west-1.es.amazonaws.com]\n";
    let es = config(&format!("{base}aws: {{ region: eu-west-1 }}\n"));
    es.validate().unwrap();
    assert_eq!(es.aws_service(), Some(crate::aws::AwsService::Es));
    assert!(!es.serverless());
    let aoss = config(&format!(
        "{base}op_type: create\naws: {{ service: aoss }}\n"
    ));
    aoss.validate().unwrap();
    assert!(aoss.serverless());
    assert_eq!(config(base).aws_service(), None);
    for (extra, key) in [
        ("aws: { service: aoss }\nid_key: line_id\n", "id_key"),
        (
            "aws: { service: aoss }\nop_type: create\nid_key: line_id\n",
            "id_key",
        ),
        ("aws: { region: eu-west-1 }\nuser: elastic\n", "user"),
        ("aws: { region: 'EU West' }\n", "aws.region"),
        // Serverless keeps indices by its own data lifecycle policies.
        (
            "aws: { service: aoss }\ntemplate: { ism_policy: logs-30d }\n",
            "template.ism_policy",
        ),
        (
            "aws: { service: aoss }\ntemplate: { ilm_policy: logs-30d }\n",
            "template.ilm_policy",
        ),
    ] {
        assert_eq!(invalid_key(&format!("{base}{extra}")), key, "{extra}");
    }
}

#[test]
fn serverless_actions_carry_no_id() {
    let c = config("endpoints: [http://a:9200]\nindex: app\nid_key: line_id\n");
    let mut b = RequestBuilder::new(&c).unwrap().omit_ids(true);
    let t = EventTime::new(1_705_314_600, 0);
    for r in [record(&[("line_id", "abc".into())]), Map::new()] {
        let item = b.encode(CHUNK, 3, "app", t, &r).unwrap();
        assert!(
            text(&item).starts_with("{\"index\":{\"_index\":\"app\"}}\n"),
            "{}",
            text(&item)
        );
    }
}
mod actions;
mod answers;
mod indices;
