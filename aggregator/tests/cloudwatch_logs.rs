//! The cloudwatch_logs sink against moto's server (the standard AWS emulator) with
//! signature checking on: names from templates, groups and streams created with
//! their settings, events readable in order with their JSON fields, and refused
//! credentials retried, never dead-lettered. One moto for the whole binary; each
//! test keeps to group names of its own.

mod cw_support;

use std::time::Duration;

use cw_support::{
    Swappable, config, fast_retries, from_now, numbered, outcome, start, start_with, stored_numbers,
};
use nagare_core::buffer::BufferConfig;
use nagare_core::receipt::Delivery;
use nagare_core::{Map, Value};
use nagare_testkit::moto::{AccessKey, Moto};
use nagare_testkit::{AwsProxy, wait_until};
use serde_json::{Value as Json, json};

fn pod_record(n: usize, namespace: Option<&str>, pod: &str) -> Map {
    let mut m = numbered(n, "hello");
    m.insert("stream", "stdout");
    if let Some(ns) = namespace {
        let mut k = Map::new();
        k.insert("namespace_name", ns);
        k.insert("pod_name", pod);
        k.insert("container_name", "app");
        k.insert("labels", {
            let mut l = Map::new();
            l.insert("tier", "web");
            l
        });
        m.insert("kubernetes", k);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_streams_from_templates_are_created_with_their_settings() {
    let moto = Moto::shared();
    // moto stores no log group class: the proxy's record shows the one asked for.
    let proxy = AwsProxy::start(moto.url());
    let root = Moto::unique("/cw-templates");
    let sink = start(
        config(
            &proxy.url(),
            &format!(
                "log_group_name: '{root}/{{kubernetes.namespace_name}}'\n\
                 log_group_name_fallback: '{root}/unknown'\n\
                 log_stream_name: '{{kubernetes.pod_name}}/{{kubernetes.container_name}}'\n\
                 log_stream_name_fallback: '{{tag}}'\n\
                 log_retention_days: 30\n\
                 log_group_class: INFREQUENT_ACCESS\n\
                 log_group_tags: {{ team: platform, env: test }}\n\
                 kms_key_id: 'arn:aws:kms:us-east-1:123456789012:key/abcd'\n\
                 remove_keys: [stream]\n"
            ),
        ),
        None,
    );
    // Out of order within the chunk; three pods in two namespaces, and records
    // without kubernetes fields (fallbacks).
    let mut events = Vec::new();
    for n in 0..30 {
        let (ns, pod) = match n % 3 {
            0 => (Some("shop"), "web-1"),
            1 => (Some("shop"), "web-2"),
            _ => (Some("payments"), "api-1"),
        };
        events.push((
            from_now(-600 + ((n * 7) % 30) as i64),
            pod_record(n, ns, pod),
        ));
    }
    events.push((from_now(-100), pod_record(30, None, "")));
    let rx = sink.push("kube.var.log", events).await;
    assert_eq!(outcome(rx).await, Delivery::Delivered);

    let groups: Vec<String> = moto
        .log_groups()
        .into_iter()
        .filter(|g| g.starts_with(&root))
        .collect();
    assert_eq!(
        groups,
        [
            format!("{root}/payments"),
            format!("{root}/shop"),
            format!("{root}/unknown")
        ]
    );
    let shop = moto.describe_group(&format!("{root}/shop")).unwrap();
    assert_eq!(shop.retention_days, Some(30));
    assert_eq!(
        shop.kms_key_id.as_deref(),
        Some("arn:aws:kms:us-east-1:123456789012:key/abcd")
    );
    assert_eq!(
        shop.tags,
        [
            ("env".to_string(), "test".to_string()),
            ("team".to_string(), "platform".to_string())
        ]
    );
    let creates = proxy.calls("CreateLogGroup");
    assert_eq!(creates.len(), 3);
    assert!(
        creates
            .iter()
            .all(|c| c.body["logGroupClass"] == "INFREQUENT_ACCESS")
    );
    assert_eq!(
        moto.streams(&format!("{root}/shop")),
        ["web-1/app", "web-2/app"]
    );
    assert_eq!(moto.streams(&format!("{root}/unknown")), ["kube.var.log"]);

    // In time order, each with its JSON fields (the time order of n: n*7 % 30).
    let events = moto.events(&format!("{root}/shop"), "web-1/app");
    assert_eq!(events.len(), 10);
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let mut expected: Vec<i64> = (0..30).filter(|n| n % 3 == 0).collect();
    expected.sort_by_key(|n| (n * 7) % 30);
    assert_eq!(
        stored_numbers(moto, &format!("{root}/shop"), "web-1/app"),
        expected
    );
    let first: Json = serde_json::from_str(&events[0].message).unwrap();
    assert_eq!(
        first,
        json!({
            "n": expected[0], "msg": "hello",
            "kubernetes": {
                "namespace_name": "shop", "pod_name": "web-1", "container_name": "app",
                "labels": { "tier": "web" },
            },
        }),
        "compact JSON of the record without `stream`"
    );
    assert!(
        !events[0].message.contains(": "),
        "compact: {}",
        events[0].message
    );
    sink.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_key_sends_text_to_a_prefixed_stream_and_a_missing_name_is_dead_lettered() {
    let moto = Moto::shared();
    let group = Moto::unique("/cw-logkey");
    let sink = start(
        config(
            moto.url(),
            &format!("log_group_name: '{group}'\nlog_stream_prefix: 'from-'\nlog_key: log\n"),
        ),
        None,
    );
    let events = (0..5)
        .map(|n| {
            let mut m = Map::new();
            m.insert("log", format!("plain line {n}"));
            m.insert("n", n as i64);
            (from_now(-60 + n as i64), m)
        })
        .collect();
    assert_eq!(
        outcome(sink.push("app.web", events).await).await,
        Delivery::Delivered
    );
    let messages: Vec<String> = moto
        .events(&group, "from-app.web")
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(
        messages,
        (0..5)
            .map(|n| format!("plain line {n}"))
            .collect::<Vec<_>>()
    );

    // No fallback: an event whose group cannot be named goes to the dead-letter
    // output, naming the field; the others of its chunk are delivered.
    let strict = start(
        config(
            moto.url(),
            &format!("log_group_name: '{group}-{{team}}'\nlog_stream_name: s\n"),
        ),
        None,
    );
    let mut with_team = numbered(1, "kept");
    with_team.insert("team", Value::from("a"));
    let events = vec![
        (from_now(-5), with_team),
        (from_now(-4), numbered(2, "lost")),
    ];
    assert_eq!(
        outcome(strict.push("t", events).await).await,
        Delivery::Failed
    );
    assert_eq!(stored_numbers(moto, &format!("{group}-a"), "s"), [1]);
    let dead = strict.dead();
    assert_eq!(dead.len(), 1);
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("the record has no field `team`")
            && reason.contains("log_group_name_fallback is not set"),
        "{reason}"
    );
    assert_eq!(dead[0]["record"]["n"], 2);
    sink.finish().await;
    strict.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_refused_retried_never_dead_lettered_then_delivered() {
    let moto = Moto::shared();
    let proxy = AwsProxy::start(moto.url());
    let group = Moto::unique("/cw-auth");
    let right = moto.credentials().clone();
    let credentials = Swappable::new(AccessKey {
        id: right.id.clone(),
        secret: "not-the-secret".into(),
    });
    // One retry allowed: a failure counted under the retry policy would give up.
    let sink = start_with(
        config(
            &proxy.url(),
            &format!("log_group_name: '{group}'\nlog_stream_name: s\n"),
        ),
        Some(&credentials),
        BufferConfig {
            retry_max_times: Some(1),
            ..fast_retries()
        },
    );
    let events = (0..20)
        .map(|n| (from_now(-30 + n as i64), numbered(n, "x")))
        .collect();
    let mut rx = sink.push("t", events).await;
    // Refused (403 SignatureDoesNotMatch) again and again, past any retry limit.
    let refused = wait_until(Duration::from_secs(30), || {
        proxy.log().iter().filter(|e| e.status == 403).count() >= 4
    });
    assert!(refused, "{:?}", proxy.log());
    assert!(rx.try_recv().is_err(), "not resolved while refused");
    assert!(sink.dead().is_empty(), "{:?}", sink.dead());
    assert!(moto.describe_group(&group).is_none());

    credentials.set(right);
    assert_eq!(outcome(rx).await, Delivery::Delivered);
    assert_eq!(
        stored_numbers(moto, &group, "s"),
        (0..20).collect::<Vec<i64>>()
    );
    assert!(sink.dead().is_empty());
    sink.finish().await;
}
