use std::sync::Arc;

use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::pattern::TagPattern;
use nagare_core::router::{Filter, RouterBuilder, Verdict};
use nagare_core::value::{Map, Value};
use nagare_core::{ChunkBuilder, Event, EventTime, Tag};
use nagare_testkit::docs::documented_example;

use super::{ParserFilter, ParserFilterConfig};

const APACHE: &str = r#"192.168.1.20 - alice [15/Jan/2024:10:30:00 +0000] "GET /index.html HTTP/1.1" 200 2326 "-" "curl/8.5.0""#;

fn filter(yaml: &str) -> ParserFilter {
    let config: ParserFilterConfig = serde_norway::from_str(yaml).unwrap();
    ParserFilter::new(&config).unwrap()
}

fn event(log: &str) -> Event {
    let mut record = Map::new();
    record.insert("log", log);
    record.insert("stream", "stdout");
    Event::new(
        Tag::new("kube.web"),
        EventTime::new(1_700_000_000, 0),
        record,
    )
}

fn json(e: &Event) -> String {
    serde_json::to_string(&e.record).unwrap()
}

#[test]
fn replaces_the_record_and_takes_the_time() {
    let f = filter("parse: {format: apache2}\n");
    let mut e = event(APACHE);
    assert_eq!(f.filter(&mut e), Verdict::Keep);
    assert_eq!(
        json(&e),
        r#"{"host":"192.168.1.20","user":"alice","method":"GET","path":"/index.html","code":200,"size":2326,"referer":null,"agent":"curl/8.5.0"}"#
    );
    assert_eq!(e.time.to_rfc3339(), "2024-01-15T10:30:00.000000000Z");
}

#[test]
fn reserve_data_remove_key_and_reserve_time() {
    let f = filter(
        "reserve_data: true\nremove_key_name_field: true\nreserve_time: true\nparse: {format: logfmt}\n",
    );
    let mut e = event("level=info msg=\"hello there\" stream=ignored");
    assert_eq!(f.filter(&mut e), Verdict::Keep);
    // Parsed fields win over the original ones, as in Fluentd.
    assert_eq!(
        json(&e),
        r#"{"stream":"ignored","level":"info","msg":"hello there"}"#
    );
    assert_eq!(e.time, EventTime::new(1_700_000_000, 0));
}

#[test]
fn prefix_and_hash_value_field() {
    let f = filter(
        "reserve_data: true\ninject_key_prefix: 'app_'\nhash_value_field: parsed\nparse: {format: json}\n",
    );
    let mut e = event(r#"{"level":"warn","n":1}"#);
    assert_eq!(f.filter(&mut e), Verdict::Keep);
    assert_eq!(
        json(&e),
        r#"{"log":"{\"level\":\"warn\",\"n\":1}","stream":"stdout","parsed":{"app_level":"warn","app_n":1}}"#
    );
}

#[test]
fn nested_key_path() {
    let f = filter(
        "key_name: $.kubernetes.annotation\nreserve_data: true\nremove_key_name_field: true\nparse: {format: ltsv}\n",
    );
    let mut e = event("x");
    e.record
        .map_mut("kubernetes")
        .insert("annotation", "team:web\ttier:front");
    e.record.map_mut("kubernetes").insert("pod_name", "web-1");
    assert_eq!(f.filter(&mut e), Verdict::Keep);
    assert_eq!(
        json(&e),
        r#"{"log":"x","stream":"stdout","kubernetes":{"pod_name":"web-1"},"team":"web","tier":"front"}"#
    );
}

#[test]
fn invalid_records_are_rejected_with_the_reason_or_kept() {
    let f = filter("parse: {format: apache2}\n");
    let mut e = event("not an access log");
    assert_eq!(
        f.filter(&mut e),
        Verdict::Reject(
            "parser: the field `log`: apache2: expected `[` before the time at byte 14".into()
        )
    );
    let mut e = event("x");
    e.record.remove("log");
    assert_eq!(
        f.filter(&mut e),
        Verdict::Reject("parser: the field `log` does not exist".into())
    );
    let mut e = event("x");
    e.record.insert("log", Value::Array(vec![]));
    assert_eq!(
        f.filter(&mut e),
        Verdict::Reject("parser: the field `log` is an array, not text".into())
    );
    let keep = filter("emit_invalid_record_to_error: false\nparse: {format: apache2}\n");
    let mut e = event("not an access log");
    let before = e.clone();
    assert_eq!(keep.filter(&mut e), Verdict::Keep);
    assert_eq!(e, before, "passes through unchanged");
}

#[test]
fn config_errors_name_the_key() {
    for (yaml, key) in [
        ("key_name: ''\nparse: {format: json}\n", "key_name"),
        ("key_name: '$.a..b'\nparse: {format: json}\n", "key_name"),
        (
            "hash_value_field: ''\nparse: {format: json}\n",
            "hash_value_field",
        ),
        (
            "parse: {format: regex, expression: '('}\n",
            "parse.expression",
        ),
    ] {
        let config: ParserFilterConfig = serde_norway::from_str(yaml).unwrap();
        assert_eq!(config.validate().unwrap_err().key, key, "{yaml}");
    }
    let err = serde_norway::from_str::<ParserFilterConfig>("key: log\nparse: {format: json}\n")
        .unwrap_err();
    assert!(err.to_string().contains("unknown field `key`"), "{err}");
}

/// Through the real router: parsed events reach the sink, unparsable ones reach the
/// `@ERROR.**` sink with the reason in `error`.
#[tokio::test]
async fn rejected_records_reach_the_error_route() {
    let all = Buffer::new("all", &BufferConfig::default());
    let errors = Buffer::new("errors", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.filter(
        "parse",
        TagPattern::new("kube.**").unwrap(),
        Arc::new(filter("parse: {format: apache2}\n")),
    );
    rb.sink("all", TagPattern::new("**").unwrap(), all.clone());
    rb.sink(
        "errors",
        TagPattern::new("@ERROR.**").unwrap(),
        errors.clone(),
    );
    let router = rb.build();
    let mut chunk = ChunkBuilder::new(Tag::new("kube.web"));
    for e in [event(APACHE), event("garbage")] {
        chunk.push(e.time, &e.record);
    }
    router.emit(chunk.finish().unwrap()).await.unwrap();
    let kept = all.pop().await.unwrap();
    let (time, record) = kept.chunk().events().next().unwrap().unwrap();
    assert_eq!(time.to_rfc3339(), "2024-01-15T10:30:00.000000000Z");
    assert_eq!(record.get("code"), Some(&Value::Int(200)));
    assert_eq!(kept.chunk().count(), 1);
    let rejected = errors.pop().await.unwrap();
    assert_eq!(rejected.chunk().tag().as_str(), "@ERROR.kube.web");
    let (_, record) = rejected.chunk().events().next().unwrap().unwrap();
    assert_eq!(record.get("log").and_then(Value::as_str), Some("garbage"));
    assert_eq!(
        record.get("error").and_then(Value::as_str),
        Some("parser: the field `log`: apache2: expected a space after the host at byte 7")
    );
}

#[test]
fn the_documented_example_parses() {
    // The filter's own keys from the module docs, as written there (the binary takes
    // `type` and `match`).
    let f = filter(&documented_example(include_str!("mod.rs")));
    let mut e = event(
        r#"10.0.0.1 - - [15/Jan/2024:10:30:00 +0000] "GET / HTTP/1.1" 200 612 "-" "curl/8.5.0" "-""#,
    );
    assert_eq!(f.filter(&mut e), Verdict::Keep);
    assert_eq!(e.record.get("code"), Some(&Value::Int(200)));
    assert_eq!(e.record.get("log"), None);
    assert_eq!(
        e.record.get("stream").and_then(Value::as_str),
        Some("stdout")
    );
}
