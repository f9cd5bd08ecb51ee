//! Index templates, `index_fallback` and data stream names; and the settings
//! `validate` refuses, each naming its key.

use nagare_core::metrics::Counter;

use super::*;

fn t() -> EventTime {
    EventTime::new(1_705_314_600, 0)
}

fn ns(namespace: Value) -> Map {
    let mut k = Map::new();
    k.insert("namespace_name", namespace);
    record(&[("log", "x".into()), ("kubernetes", Value::Map(k))])
}

fn builder(yaml: &str) -> (RequestBuilder, Counter) {
    let c = config(&format!("endpoints: [http://a:9200]\n{yaml}"));
    c.validate()
        .unwrap_or_else(|e| panic!("{}: {}", e.key, e.message));
    let counter = Counter::default();
    let b = RequestBuilder::new(&c)
        .unwrap()
        .count_fallbacks(counter.clone());
    (b, counter)
}

const TEMPLATE: &str =
    "index: 'logs-{kubernetes.namespace_name}-%Y.%m.%d'\nindex_fallback: 'logs-unknown-%Y.%m.%d'\n";

#[test]
fn an_index_per_namespace_and_day() {
    let (mut b, fallbacks) = builder(TEMPLATE);
    let mut seen = std::collections::BTreeMap::new();
    for (i, n) in [
        "shop",
        "payments",
        "kube-system",
        "shop",
        "payments",
        "shop",
    ]
    .iter()
    .enumerate()
    {
        let item = b
            .encode(CHUNK, i as u32, "t", t(), &ns((*n).into()))
            .unwrap();
        assert!(text(&item).starts_with(&format!("{{\"index\":{{\"_index\":\"{}\"", item.index)));
        *seen.entry(item.index.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            ("logs-kube-system-2024.01.15".to_string(), 1),
            ("logs-payments-2024.01.15".to_string(), 2),
            ("logs-shop-2024.01.15".to_string(), 3),
        ]
    );
    assert_eq!(fallbacks.get(), 0);
    // The date follows the event time, across midnight UTC and back.
    let next = EventTime::new(1_705_363_200, 0);
    assert_eq!(
        &*b.index_for("t", next, &ns("shop".into())).unwrap(),
        "logs-shop-2024.01.16"
    );
    assert_eq!(
        &*b.index_for("t", t(), &ns("shop".into())).unwrap(),
        "logs-shop-2024.01.15"
    );
    // Values are lower-cased; numbers print.
    assert_eq!(
        &*b.index_for("t", t(), &ns("Shop-EU".into())).unwrap(),
        "logs-shop-eu-2024.01.15"
    );
    assert_eq!(
        &*b.index_for("t", t(), &ns(Value::Int(7))).unwrap(),
        "logs-7-2024.01.15"
    );
    // A name seen before is the one shared name, whether the value comes lower-cased
    // or not.
    let first = b.index_for("t", t(), &ns("Shop-EU".into())).unwrap();
    for value in ["shop-eu", "SHOP-eu", "Shop-EU"] {
        let again = b.index_for("t", t(), &ns(value.into())).unwrap();
        assert!(std::sync::Arc::ptr_eq(&first, &again), "{value}: {again}");
    }
}

#[test]
fn a_missing_field_or_an_illegal_name_takes_the_fallback() {
    let (mut b, fallbacks) = builder(TEMPLATE);
    let cases = [
        record(&[("log", "no kubernetes".into())]),
        ns(Value::Null),
        ns("a b".into()),
        ns("x*y".into()),
        ns("with/slash".into()),
        ns(Value::Map(Map::new())),
    ];
    for (i, r) in cases.iter().enumerate() {
        let item = b.encode(CHUNK, i as u32, "t", t(), r).unwrap();
        assert_eq!(&*item.index, "logs-unknown-2024.01.15", "{r:?}");
    }
    assert_eq!(fallbacks.get(), cases.len() as u64);
    // A name that starts illegally, or is too long, too.
    let (mut b, fallbacks) =
        builder("index: '{kubernetes.namespace_name}'\nindex_fallback: other\n");
    for bad in ["_system".to_string(), "-x".into(), "a".repeat(256)] {
        assert_eq!(&*b.index_for("t", t(), &ns(bad.into())).unwrap(), "other");
    }
    let item = b.encode(CHUNK, 0, "t", t(), &ns("ok".into())).unwrap();
    assert_eq!(&*item.index, "ok");
    assert_eq!(fallbacks.get(), 0, "index_for does not count");
}

#[test]
fn an_index_over_the_tag_and_two_fields_across_days() {
    // Each event twice (the second time among the names seen recently), on two days
    // and back; an illegal value takes the fallback, and is counted, each time.
    let (mut b, fallbacks) = builder(
        "index: 'logs-{tag}-{kubernetes.namespace_name}-{app}-%Y.%m.%d'\nindex_fallback: 'logs-unknown-%Y.%m.%d'\n",
    );
    let event = |namespace: &str, app: Value| {
        let mut r = ns(namespace.into());
        r.insert("app", app);
        r
    };
    let next = EventTime::new(1_705_363_200, 0);
    let cases = [
        (
            "web",
            t(),
            event("shop", "api".into()),
            "logs-web-shop-api-2024.01.15",
        ),
        (
            "web",
            next,
            event("shop", "api".into()),
            "logs-web-shop-api-2024.01.16",
        ),
        (
            "web",
            t(),
            event("shop", "api".into()),
            "logs-web-shop-api-2024.01.15",
        ),
        (
            "db",
            t(),
            event("shop", "api".into()),
            "logs-db-shop-api-2024.01.15",
        ),
        (
            "web",
            t(),
            event("shop-api", "".into()),
            "logs-web-shop-api--2024.01.15",
        ),
        (
            "web",
            t(),
            event("Shop", Value::Int(7)),
            "logs-web-shop-7-2024.01.15",
        ),
        (
            "web",
            t(),
            event("a b", "api".into()),
            "logs-unknown-2024.01.15",
        ),
    ];
    for round in 0..2 {
        for (tag, time, r, expected) in &cases {
            let item = b.encode(CHUNK, 0, tag, *time, r).unwrap();
            assert_eq!(&*item.index, *expected, "round {round}: {tag} {r:?}");
        }
    }
    assert_eq!(fallbacks.get(), 2);
}

#[test]
fn without_a_fallback_the_reason_goes_to_the_dead_letter_output() {
    let (mut b, fallbacks) = builder("index: 'logs-{kubernetes.namespace_name}-%Y.%m.%d'\n");
    let err = b
        .encode(CHUNK, 0, "t", t(), &record(&[("log", "x".into())]))
        .unwrap_err();
    assert_eq!(
        err,
        "index `logs-{kubernetes.namespace_name}-%Y.%m.%d`: the record has no field `kubernetes.namespace_name`, and index_fallback is not set"
    );
    let err = b.encode(CHUNK, 0, "t", t(), &ns("a b".into())).unwrap_err();
    assert_eq!(
        err,
        "index `logs-{kubernetes.namespace_name}-%Y.%m.%d`: index name `logs-a b-2024.01.15` must not contain ` `, and index_fallback is not set"
    );
    assert_eq!(fallbacks.get(), 0);
    // A fallback that fails too says both.
    let (mut b, _) = builder("index: '{a}'\nindex_fallback: '{b}'\n");
    let err = b.encode(CHUNK, 0, "t", t(), &Map::new()).unwrap_err();
    assert_eq!(
        err,
        "index `{a}`: the record has no field `a`; index_fallback `{b}`: the record has no field `b`"
    );
}

#[test]
fn tags_prefixes_and_constant_templates() {
    let (mut b, _) = builder("index: '{tag_parts[0]}-{tag_parts[-1]}'\n");
    assert_eq!(
        &*b.index_for("kube.var.Shop", t(), &Map::new()).unwrap(),
        "kube-shop"
    );
    // A templated logstash_prefix: Fluent Bit's logstash_prefix_key.
    let (mut b, _) = builder(
        "logstash_prefix: '{kubernetes.namespace_name}'\nlogstash_dateformat: '%Y.%m'\nindex_fallback: 'logstash-%Y.%m'\n",
    );
    assert_eq!(
        &*b.index_for("t", t(), &ns("shop".into())).unwrap(),
        "shop-2024.01"
    );
    assert_eq!(
        &*b.index_for("t", t(), &Map::new()).unwrap(),
        "logstash-2024.01"
    );
    // A date-only template is as cheap as the daily indices; `%%` is a percent.
    let c = config("endpoints: [http://a:9200]\nindex: 'app-%Y'\n");
    assert!(matches!(
        c.index_target().unwrap(),
        IndexTarget::Templated { .. }
    ));
    let c = config("endpoints: [http://a:9200]\nindex: 'app-100%%'\n");
    assert_eq!(
        c.index_target().unwrap(),
        IndexTarget::Fixed("app-100%".into())
    );
    let (mut b, _) = builder("index: 'app-%Y-100%%'\n");
    assert_eq!(
        &*b.index_for("t", t(), &Map::new()).unwrap(),
        "app-2024-100%"
    );
}

#[test]
fn data_stream_names_follow_the_naming_scheme() {
    let (mut b, fallbacks) = builder(
        "mode: data_stream\ndata_stream: {dataset: '{kubernetes.namespace_name}', namespace: prod}\nindex_fallback: logs-unknown-prod\n",
    );
    assert_eq!(
        &*b.index_for("t", t(), &ns("shop".into())).unwrap(),
        "logs-shop-prod"
    );
    assert_eq!(
        &*b.index_for("t", t(), &ns("Shop".into())).unwrap(),
        "logs-shop-prod"
    );
    // `-` separates the parts, so a dataset cannot hold one; nor a space; nor be
    // longer than 100 characters, nor missing.
    for bad in [
        ns("kube-system".into()),
        ns("a b".into()),
        ns("x".repeat(101).into()),
        Map::new(),
    ] {
        let item = b.encode(CHUNK, 0, "t", t(), &bad).unwrap();
        assert_eq!(&*item.index, "logs-unknown-prod", "{bad:?}");
    }
    assert_eq!(fallbacks.get(), 4);
    // A templated fallback must make a data stream name too: one that does not
    // refuses the event (to the dead-letter output) with why.
    let (mut b, _) = builder(
        "mode: data_stream\ndata_stream: {dataset: '{app}'}\nindex_fallback: 'logs-{team}-default'\n",
    );
    let mut r = ns("shop".into());
    r.insert("team", "core");
    assert_eq!(
        &*b.encode(CHUNK, 0, "t", t(), &r).unwrap().index,
        "logs-core-default"
    );
    r.insert("team", "core-infra");
    assert_eq!(
        b.encode(CHUNK, 0, "t", t(), &r).unwrap_err(),
        "data_stream.dataset `{app}`: the record has no field `app`; index_fallback `logs-{team}-default`: `logs-core-infra-default` is not a data stream name `<type>-<dataset>-<namespace>`"
    );
    let (mut b, _) =
        builder("mode: data_stream\ndata_stream: {namespace: '{kubernetes.namespace_name}'}\n");
    assert_eq!(
        b.encode(CHUNK, 0, "t", t(), &ns("kube-system".into()))
            .unwrap_err(),
        "data_stream.namespace `{kubernetes.namespace_name}`: data stream namespace `kube-system` must not contain `-`, which separates type, dataset and namespace, and index_fallback is not set"
    );
}

#[test]
fn documented_index_examples_validate() {
    // The second example of config.rs's module docs: per namespace and data streams.
    let source = include_str!("../config.rs");
    let second = source.split("//! ```yaml").nth(2).unwrap();
    let block: String = second
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("//! ```"))
        .map(|l| format!("{}\n", l.strip_prefix("//! ").unwrap_or("")))
        .collect();
    let doc: serde_norway::Value = serde_norway::from_str(&block).unwrap();
    let sinks = doc["sinks"].as_mapping().unwrap();
    assert_eq!(sinks.len(), 2);
    for (_, sink) in sinks {
        let mut sink = sink.clone();
        let m = sink.as_mapping_mut().unwrap();
        m.remove("type");
        m.remove("match");
        let c = config(&serde_norway::to_string(&sink).unwrap());
        c.validate()
            .unwrap_or_else(|e| panic!("{}: {}", e.key, e.message));
    }
}

#[test]
fn refused_settings_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("index: 'logs-{ns'", "index", "never closed"),
        ("index: 'logs-%J'", "index", "strftime"),
        ("index: 'Logs-{a}'", "index", "lowercase"),
        ("index: 'logs-%b-{a}'", "index", "lowercase"),
        ("index: 'logs {a}'", "index", "` `"),
        ("index: '_logs'", "index", "must not start"),
        (
            "index: '{a}'\nindex_fallback: 'Bad'",
            "index_fallback",
            "lowercase",
        ),
        (
            "index: app\nindex_fallback: other",
            "index_fallback",
            "placeholders",
        ),
        ("index_fallback: other", "index_fallback", "placeholders"),
        (
            "mode: data_stream\nop_type: index",
            "op_type",
            "only `create`",
        ),
        (
            "mode: data_stream\nop_type: upsert\nid_key: x",
            "op_type",
            "only `create`",
        ),
        ("mode: data_stream\nindex: app", "index", "data_stream"),
        (
            "mode: data_stream\nlogstash_format: true",
            "logstash_format",
            "data_stream",
        ),
        (
            "data_stream: {dataset: x}",
            "data_stream",
            "mode: data_stream",
        ),
        (
            "mode: data_stream\nindex_fallback: logs--x",
            "index_fallback",
            "data stream dataset is empty",
        ),
        (
            "mode: data_stream\nindex_fallback: logs-unknown",
            "index_fallback",
            "not a data stream name",
        ),
        (
            "mode: data_stream\nindex_fallback: '_logs-unknown-%Y'",
            "index_fallback",
            "must not start with",
        ),
        (
            "mode: data_stream\ndata_stream: {dataset: nginx-access}",
            "data_stream.dataset",
            "`-`",
        ),
        (
            "mode: data_stream\ndata_stream: {namespace: 'prod-{a}'}",
            "data_stream.namespace",
            "`-`",
        ),
        (
            "mode: data_stream\ndata_stream: {namespace: Prod}",
            "data_stream.namespace",
            "lowercase",
        ),
        (
            "mode: data_stream\ndata_stream: {type: ''}",
            "data_stream.type",
            "empty",
        ),
        (
            "mode: data_stream\ndata_stream: {dataset: '{a'}",
            "data_stream.dataset",
            "never closed",
        ),
        (
            "mode: data_stream\nindex_fallback: logs",
            "index_fallback",
            "<type>-<dataset>-<namespace>",
        ),
        ("op_type: update", "op_type", "id_key"),
        ("op_type: upsert", "op_type", "id_key"),
        (
            "op_type: update\nid_key: id\npipeline: p",
            "pipeline",
            "`index` and `create`",
        ),
        ("pipeline: ''", "pipeline", "ingest pipeline"),
        ("routing_key: ''", "routing_key", "must not be empty"),
    ];
    let mut failures = Vec::new();
    for (yaml, key, words) in cases {
        let c = config(&format!("endpoints: [http://a:9200]\n{yaml}\n"));
        match c.validate() {
            Ok(()) => failures.push(format!("{yaml:?}: accepted")),
            Err(e) if e.key != *key || !e.message.contains(words) => failures.push(format!(
                "{yaml:?}: want `{key}` ... {words}, got `{}`: {}",
                e.key, e.message
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    let err = ConfigDocument::from_text(
        "t.yaml",
        "endpoints: [http://a:9200]\nmode: stream\n",
        |_| None,
    )
    .unwrap()
    .parse::<ElasticsearchConfig>()
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("mode"), "{err}");
}
