//! PutLogEvents' limits, faults and refusals, through nagare-testkit's AwsProxy
//! between the cloudwatch_logs sink and moto's server. moto does not enforce the
//! per-call limits, so every call the proxy recorded is checked against them, and
//! what moto stored against what was sent: nothing lost, nothing duplicated.

mod cw_support;

use std::collections::BTreeMap;

use cw_support::{config, from_now, numbered, outcome, start};
use nagare_core::receipt::Delivery;
use nagare_core::{EventTime, Map};
use nagare_testkit::moto::Moto;
use nagare_testkit::{AwsError, AwsExchange, AwsFault, AwsProxy};
use serde_json::Value;

const MAX_EVENT_BYTES: usize = 262_118;

/// Checks one recorded PutLogEvents call against the API's limits.
fn check_call(call: &AwsExchange) {
    let events = call.body["logEvents"].as_array().expect("logEvents");
    assert!(
        !events.is_empty() && events.len() <= 10_000,
        "{} events",
        events.len()
    );
    let bytes: usize = events
        .iter()
        .map(|e| e["message"].as_str().unwrap().len() + 26)
        .sum();
    assert!(bytes <= 1_048_576, "{bytes} bytes in one call");
    let times: Vec<i64> = events
        .iter()
        .map(|e| e["timestamp"].as_i64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order");
    assert!(
        times[times.len() - 1] - times[0] <= 86_400_000,
        "spans over 24 h"
    );
    for e in events {
        assert!(e["message"].as_str().unwrap().len() <= MAX_EVENT_BYTES);
    }
}

fn record(n: usize, stream: &str, pad: usize) -> Map {
    let mut m = numbered(n, &"x".repeat(pad));
    m.insert("s", stream);
    m
}

/// The `n` of each stored event of `group`/`stream`, reassembling split ones.
fn stored(moto: &Moto, group: &str, stream: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut pieces = String::new();
    for e in moto.events(group, stream) {
        let message = match e.message.rfind(" [split ") {
            Some(at) if e.message.ends_with(']') => {
                let (text, flag) = e.message.split_at(at);
                pieces.push_str(text);
                let (i, n) = flag[8..flag.len() - 1].split_once('/').unwrap();
                if i != n {
                    continue;
                }
                std::mem::take(&mut pieces)
            }
            _ => e.message,
        };
        let v: Value = serde_json::from_str(&message).unwrap();
        out.push(v["n"].as_i64().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_keeps_the_limits_and_nothing_is_lost_or_duplicated() {
    let moto = Moto::shared();
    let proxy = AwsProxy::start(moto.url());
    let group = Moto::unique("/cw-limits");
    let sink = start(
        config(
            &proxy.url(),
            &format!("log_group_name: '{group}'\nlog_stream_name: '{{s}}'\n"),
        ),
        None,
    );
    let mut sent: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut chunks: Vec<(&str, Vec<(EventTime, Map)>)> = Vec::new();
    // 10,001 small events: more than one call's events.
    let small = (0..10_001)
        .map(|n| (from_now(-600), record(n, "small", 10)))
        .collect();
    chunks.push(("small", small));
    // 40 events of 60 KiB: more than one call's bytes.
    let large = (0..40)
        .map(|n| (from_now(-500 + n as i64), record(n, "large", 60 * 1024)))
        .collect();
    chunks.push(("large", large));
    // 60 events over 30 hours, out of order: more than one call's span.
    let span = (0..60)
        .map(|n| {
            (
                from_now(-30 * 3600 + ((n * 37) % 60) as i64 * 1800),
                record(n, "span", 10),
            )
        })
        .collect();
    chunks.push(("span", span));
    // One event of 300 KiB between two small ones: split in pieces.
    let huge = vec![
        (from_now(-20), record(0, "huge", 10)),
        (from_now(-19), record(1, "huge", 300 * 1024)),
        (from_now(-18), record(2, "huge", 10)),
    ];
    chunks.push(("huge", huge));
    let mut receipts = Vec::new();
    for (stream, events) in chunks {
        let mut numbers: Vec<(EventTime, i64)> = events
            .iter()
            .map(|(t, r)| (*t, r.get("n").and_then(|v| v.as_i64()).unwrap()))
            .collect();
        numbers.sort_by_key(|(t, _)| *t);
        sent.insert(stream, numbers.into_iter().map(|(_, n)| n).collect());
        receipts.push(sink.push("app", events).await);
    }
    for rx in receipts {
        assert_eq!(outcome(rx).await, Delivery::Delivered);
    }
    let calls = proxy.calls("PutLogEvents");
    calls.iter().for_each(check_call);
    let per_stream = |s: &str| {
        calls
            .iter()
            .filter(|c| c.body["logStreamName"] == s)
            .count()
    };
    assert!(per_stream("small") >= 2, "10,001 events need two calls");
    assert!(per_stream("large") >= 3, "2.4 MB need three calls");
    assert!(per_stream("span") >= 2, "30 hours need two calls");
    for (stream, numbers) in &sent {
        assert_eq!(&stored(moto, &group, stream), numbers, "stream {stream}");
    }
    let huge = moto.events(&group, "huge");
    assert_eq!(
        huge.len(),
        4,
        "a small one, the 300 KiB in two pieces, a small one"
    );
    assert!(huge[1].message.ends_with(" [split 1/2]") && huge[2].message.ends_with(" [split 2/2]"));
    assert!(sink.dead().is_empty());
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_event_is_truncated_or_dead_lettered_when_asked() {
    let moto = Moto::shared();
    let group = Moto::unique("/cw-oversize");
    let events = || {
        vec![
            (from_now(-10), record(0, "s", 300 * 1024)),
            (from_now(-9), record(1, "s", 10)),
        ]
    };
    let truncate = start(
        config(
            moto.url(),
            &format!("log_group_name: '{group}-t'\nlog_stream_name: s\noversize: truncate\n"),
        ),
        None,
    );
    assert_eq!(
        outcome(truncate.push("t", events()).await).await,
        Delivery::Delivered
    );
    let stored = moto.events(&format!("{group}-t"), "s");
    assert_eq!(stored.len(), 2);
    assert!(stored[0].message.len() <= MAX_EVENT_BYTES);
    let kept = stored[0].message.split(" [truncated ").next().unwrap();
    let cut = 300 * 1024 + r#"{"n":0,"msg":"","s":"s"}"#.len() - kept.len();
    assert!(
        stored[0]
            .message
            .ends_with(&format!(" [truncated {cut} bytes]")),
        "{}",
        &stored[0].message[kept.len()..]
    );

    let dead = start(
        config(
            moto.url(),
            &format!("log_group_name: '{group}-d'\nlog_stream_name: s\noversize: dead_letter\n"),
        ),
        None,
    );
    assert_eq!(
        outcome(dead.push("t", events()).await).await,
        Delivery::Failed
    );
    assert_eq!(moto.events(&format!("{group}-d"), "s").len(), 1);
    let lines = dead.dead();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["record"]["n"], 0);
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("over max_event_bytes (262118)")
    );
    truncate.finish().await;
    dead.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_server_errors_are_retried() {
    let moto = Moto::shared();
    let proxy = AwsProxy::start(moto.url());
    let group = Moto::unique("/cw-faults");
    for (status, kind) in [
        (400, "ThrottlingException"),
        (503, "ServiceUnavailableException"),
        (500, "InternalFailure"),
    ] {
        proxy.fail_once("PutLogEvents", AwsError::new(status, kind));
    }
    let sink = start(
        config(
            &proxy.url(),
            &format!("log_group_name: '{group}'\nlog_stream_name: s\n"),
        ),
        None,
    );
    let events = (0..100)
        .map(|n| (from_now(-100 + n as i64), numbered(n, "x")))
        .collect();
    assert_eq!(
        outcome(sink.push("t", events).await).await,
        Delivery::Delivered
    );
    let calls = proxy.calls("PutLogEvents");
    let statuses: Vec<u16> = calls.iter().map(|c| c.status).collect();
    assert_eq!(statuses, [400, 503, 500, 200]);
    assert_eq!(
        cw_support::stored_numbers(moto, &group, "s"),
        (0..100).collect::<Vec<i64>>()
    );
    assert!(sink.dead().is_empty());
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_too_old_or_too_new_are_dead_lettered_with_the_reason_and_the_rest_arrive() {
    let moto = Moto::shared();
    let group = Moto::unique("/cw-rejected");
    let sink = start(
        config(
            moto.url(),
            &format!("log_group_name: '{group}'\nlog_stream_name: s\n"),
        ),
        None,
    );
    let mut events: Vec<(EventTime, Map)> = (0..10)
        .map(|n| (from_now(-50 + n as i64), numbered(n, "ok")))
        .collect();
    events.push((from_now(-15 * 86_400), numbered(100, "old")));
    events.push((from_now(3 * 3600), numbered(101, "new")));
    assert_eq!(
        outcome(sink.push("t", events).await).await,
        Delivery::Failed
    );
    assert_eq!(
        cw_support::stored_numbers(moto, &group, "s"),
        (0..10).collect::<Vec<i64>>()
    );
    let mut dead: Vec<(i64, String)> = sink
        .dead()
        .iter()
        .map(|d| {
            (
                d["record"]["n"].as_i64().unwrap(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    dead.sort();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert!(dead[0].1.contains("too old"), "{dead:?}");
    assert!(dead[1].1.contains("too new"), "{dead:?}");
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_refused_for_one_event_is_split_and_only_that_event_dead_lettered() {
    let moto = Moto::shared();
    let proxy = AwsProxy::start(moto.url());
    proxy.push(AwsFault::WhenContains {
        operation: "PutLogEvents".into(),
        needle: "poison".into(),
        error: AwsError::new(400, "InvalidParameterException"),
    });
    let group = Moto::unique("/cw-split");
    let sink = start(
        config(
            &proxy.url(),
            &format!("log_group_name: '{group}'\nlog_stream_name: s\n"),
        ),
        None,
    );
    let events = (0..16)
        .map(|n| {
            (
                from_now(-40 + n as i64),
                numbered(n, if n == 11 { "poison" } else { "fine" }),
            )
        })
        .collect();
    assert_eq!(
        outcome(sink.push("t", events).await).await,
        Delivery::Failed
    );
    let expected: Vec<i64> = (0..16).filter(|n| *n != 11).collect();
    assert_eq!(cw_support::stored_numbers(moto, &group, "s"), expected);
    let dead = sink.dead();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["record"]["n"], 11);
    assert!(
        dead[0]["reason"]
            .as_str()
            .unwrap()
            .contains("InvalidParameterException")
    );
    let refused = proxy
        .calls("PutLogEvents")
        .iter()
        .filter(|c| c.status == 400)
        .count();
    assert_eq!(
        refused, 5,
        "16 events, then halves down to the culprit alone: 16, 8, 4, 2, 1"
    );
    sink.finish().await;
}
