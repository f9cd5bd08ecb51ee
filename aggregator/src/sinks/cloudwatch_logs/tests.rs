//! The sink's pure parts: config validation, names, messages, oversize events, the
//! PutLogEvents input, and what answers mean. Against moto: aggregator/tests.

use std::sync::Arc;

use aws_sdk_cloudwatchlogs::types::RejectedLogEventsInfo;
use nagare_core::config::ConfigDocument;
use nagare_core::sink::{BatchOutcome, Item, Outcome, Ticket};
use nagare_core::{EventTime, Map, Value};

use super::*;

fn parse(yaml: &str) -> CloudWatchLogsConfig {
    ConfigDocument::from_text("test.yaml", yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn base(extra: &str) -> CloudWatchLogsConfig {
    parse(&format!(
        "log_group_name: '/eks/{{kubernetes.namespace_name}}'\nlog_stream_name: '{{kubernetes.pod_name}}'\n{extra}"
    ))
}

fn record() -> Map {
    let mut k = Map::new();
    k.insert("namespace_name", "shop");
    k.insert("pod_name", "web-1");
    let mut m = Map::new();
    m.insert("log", "hello");
    m.insert("stream", "stdout");
    m.insert("kubernetes", k);
    m
}

#[test]
fn validate_names_the_key_of_each_problem() {
    let cases = [
        ("batch: { max_events: 10001 }", "batch.max_events"),
        ("batch: { max_bytes: 1048577 }", "batch.max_bytes"),
        ("batch: { max_events: 0 }", "batch.max_events"),
        ("max_event_bytes: 262119", "max_event_bytes"),
        ("log_retention_days: 2", "log_retention_days"),
        ("log_stream_prefix: from-", "log_stream_prefix"),
        (
            "log_group_name_fallback: '/eks/{oops'",
            "log_group_name_fallback",
        ),
        (
            "log_stream_name_fallback: 'a:b'",
            "log_stream_name_fallback",
        ),
        ("request_timeout: 0s", "request_timeout"),
        ("endpoint: localhost:5000", "endpoint"),
        ("log_key: ''", "log_key"),
        ("remove_keys: ['']", "remove_keys.0"),
        ("aws: { external_id: x }", "aws.external_id"),
        ("aws: { service: es }", "aws.service"),
        ("log_group_tags: { 'aws:x': y }", "log_group_tags.aws:x"),
    ];
    for (extra, key) in cases {
        let e = base(extra).validate().expect_err(extra);
        assert_eq!(e.key, key, "{extra}: {}", e.message);
    }
    let e = parse("log_group_name: 'bad name'\nlog_stream_prefix: x")
        .validate()
        .unwrap_err();
    assert_eq!(e.key, "log_group_name");
    assert!(e.message.contains("holds ` `"), "{}", e.message);
    let e = parse("log_group_name: '/eks/{a'\nlog_stream_prefix: x")
        .validate()
        .unwrap_err();
    assert_eq!(e.key, "log_group_name");
    assert!(e.message.contains("at character 5"), "{}", e.message);
    let e = parse("log_group_name: g").validate().unwrap_err();
    assert_eq!(e.key, "log_stream_name");
    for days in limits::RETENTION_DAYS {
        base(&format!("log_retention_days: {days}"))
            .validate()
            .unwrap();
    }
    let e = ConfigDocument::from_text(
        "t.yaml",
        "log_group_name: g\nlog_stream_prefix: p\nlog_group_class: COLD",
        |_| None,
    )
    .unwrap()
    .parse::<CloudWatchLogsConfig>()
    .unwrap_err();
    assert!(e.to_string().contains("log_group_class"), "{e}");
    base("batch: { max_events: 10000, max_bytes: 1048576 }\nlog_group_class: INFREQUENT_ACCESS")
        .validate()
        .unwrap();
}

#[test]
fn names_from_templates_fallbacks_and_prefix() {
    let mut b = RequestBuilder::new(
        &base("log_group_name_fallback: '/eks/unknown'\nlog_stream_name_fallback: '{tag}'"),
        "cw",
    )
    .unwrap();
    let key = b.key_for("kube.a", &record()).unwrap();
    assert_eq!(
        (key.group.as_str(), key.stream.as_str()),
        ("/eks/shop", "web-1")
    );
    // The same names: the same shared key.
    assert!(Arc::ptr_eq(&key, &b.key_for("kube.a", &record()).unwrap()));
    let key = b.key_for("kube.b", &Map::new()).unwrap();
    assert_eq!(
        (key.group.as_str(), key.stream.as_str()),
        ("/eks/unknown", "kube.b")
    );
    // An illegal rendered name takes the fallback too.
    let mut bad = record();
    bad.map_mut("kubernetes").insert("namespace_name", "a b");
    bad.map_mut("kubernetes").insert("pod_name", "x:y");
    let key = b.key_for("t", &bad).unwrap();
    assert_eq!(
        (key.group.as_str(), key.stream.as_str()),
        ("/eks/unknown", "t")
    );

    let mut strict = RequestBuilder::new(&base(""), "cw").unwrap();
    let reason = strict.key_for("t", &Map::new()).unwrap_err();
    assert_eq!(
        reason,
        "log_group_name `/eks/{kubernetes.namespace_name}`: the record has no field `kubernetes.namespace_name`, and log_group_name_fallback is not set"
    );
    let mut prefixed = RequestBuilder::new(
        &parse("log_group_name: g\nlog_stream_prefix: 'from-{'"),
        "cw",
    )
    .unwrap();
    assert_eq!(
        prefixed.key_for("app.web", &Map::new()).unwrap().stream,
        "from-{app.web"
    );
}

#[test]
fn messages_are_compact_json_without_removed_keys_or_the_log_key_text() {
    let message = |extra: &str, r: &Map| {
        let b = RequestBuilder::new(&base(extra), "cw").unwrap();
        let mut out = Vec::new();
        b.message(r, &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        message("", &record()),
        r#"{"log":"hello","stream":"stdout","kubernetes":{"namespace_name":"shop","pod_name":"web-1"}}"#
    );
    assert_eq!(
        message("remove_keys: [stream, kubernetes]", &record()),
        r#"{"log":"hello"}"#
    );
    assert_eq!(message("log_key: log", &record()), "hello");
    let mut n = Map::new();
    n.insert("log", Value::Int(7));
    assert_eq!(message("log_key: log", &n), "7");
    // A record without the field is sent whole, as JSON.
    assert_eq!(message("log_key: msg", &n), r#"{"log":7}"#);
}

#[test]
fn oversize_messages_are_split_or_truncated_at_character_boundaries() {
    let text = "é".repeat(150) + &"x".repeat(100); // 400 bytes
    let pieces = split(&text, 100);
    assert!(pieces.iter().all(|p| p.len() <= 100), "{pieces:?}");
    let n = pieces.len();
    let mut joined = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let suffix = format!(" [split {}/{n}]", i + 1);
        joined.push_str(p.strip_suffix(&suffix).expect("each piece is flagged"));
    }
    assert_eq!(joined, text);
    // Many pieces: the count's digits are reserved too.
    let long = "y".repeat(5000);
    let pieces = split(&long, 64);
    assert!(pieces.len() > 99 && pieces.iter().all(|p| p.len() <= 64));
    assert!(pieces[0].ends_with(&format!(" [split 1/{}]", pieces.len())));

    let cut = truncate(&text, 100);
    assert!(cut.len() <= 100, "{cut}");
    let kept = cut.split(" [truncated ").next().unwrap();
    assert!(text.starts_with(kept));
    assert!(cut.ends_with(&format!(" [truncated {} bytes]", text.len() - kept.len())));
}

fn item(key: &Key, secs: i64, text: &str, n: u32) -> Item<Key> {
    Item {
        key: key.clone(),
        bytes: text.as_bytes().to_vec(),
        size: text.len() + 26,
        time: EventTime::new(secs, 500_000_000),
        ticket: Ticket {
            slot: 0,
            position: n,
            events: 1,
        },
    }
}

#[test]
fn the_input_is_sorted_by_time_stably_and_maps_rejections_back() {
    let key: Key = Arc::new(StreamKey::new("g", "s"));
    let original = [
        item(&key, 30, "c", 0),
        item(&key, 10, "a", 1),
        item(&key, 20, "b1", 2),
        item(&key, 20, "b2", 3),
    ];
    let mut items = original.clone();
    let request = build(&key, &mut items);
    // The messages moved into the call, and come back, each to its own item.
    assert!(items.iter().all(|i| i.bytes.is_empty()), "{items:?}");
    let mut back = items.clone();
    restore(request.clone(), &mut back);
    assert_eq!(back, original);
    let sent: Vec<(i64, &str)> = request
        .events
        .iter()
        .map(|e| (e.timestamp, e.message.as_str()))
        .collect();
    assert_eq!(
        sent,
        [(10_500, "a"), (20_500, "b1"), (20_500, "b2"), (30_500, "c")]
    );
    assert_eq!(request.order, [1, 2, 3, 0]);
    // The first event sent (item 1) too old, the last (item 0) too new.
    let info = RejectedLogEventsInfo::builder()
        .too_old_log_event_end_index(0)
        .too_new_log_event_start_index(3)
        .build();
    let BatchOutcome::Items(out) = outcomes(Some(&info), &request.order) else {
        panic!("per-item outcomes");
    };
    let rejected = |o: &Outcome, words: &str| matches!(o, Outcome::Rejected { reason, .. } if reason.contains(words));
    assert!(rejected(&out[0], "too new"), "{out:?}");
    assert!(rejected(&out[1], "too old"), "{out:?}");
    assert_eq!(out[2..], [Outcome::Delivered, Outcome::Delivered]);
    assert_eq!(
        outcomes(None, &request.order),
        BatchOutcome::All(Outcome::Delivered)
    );
}

fn failure(code: Option<&str>, status: Option<u16>) -> Failure {
    Failure {
        code: code.map(str::to_string),
        status,
        message: "the message".into(),
        credentials: false,
    }
}

#[test]
fn answers_are_classified() {
    let hint = auth_hint(Some("arn:aws:iam::1:role/r"), None, "eu-west-1");
    let blocked = |f: &Failure| matches!(classify(f, &hint), BatchOutcome::Blocked { reason, .. } if reason.contains("arn:aws:iam::1:role/r") && reason.contains("eu-west-1"));
    for code in [
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredTokenException",
    ] {
        assert!(blocked(&failure(Some(code), Some(400))), "{code}");
    }
    assert!(blocked(&failure(None, Some(403))));
    assert!(blocked(&Failure {
        credentials: true,
        ..failure(None, None)
    }));
    let retried =
        |f: &Failure| matches!(classify(f, &hint), BatchOutcome::All(Outcome::Retry { .. }));
    assert!(retried(&failure(Some("ThrottlingException"), Some(400))));
    assert!(retried(&failure(
        Some("ServiceUnavailableException"),
        Some(503)
    )));
    assert!(retried(&failure(None, Some(500))));
    assert!(retried(&failure(None, None)));
    assert!(matches!(
        classify(
            &failure(Some("InvalidParameterException"), Some(400)),
            &hint
        ),
        BatchOutcome::Split { .. }
    ));
    assert!(failure(Some("ResourceNotFoundException"), Some(400)).is_not_found());
}
