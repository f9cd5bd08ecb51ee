//! The Elasticsearch sink's index template against a real osmem-server: installed
//! at start, left alone when there (even changed by hand), replaced with
//! `overwrite`, a user's file as written, a policy that does not apply left out, a
//! legacy template for a cluster that has only those; documents then have the
//! template's types.

mod es_support;

use std::time::Duration;

use es_support::{buffer, deliver, es_config, start, template_of, wait_for};
use nagare_core::testing::close_and_drain;
use nagare_testkit::{FaultProxy, Osmem, capture_logs};
use serde_json::json;
use tracing::Level;

/// The mapped `properties` of `index` in osmem.
fn properties(os: &Osmem, index: &str) -> serde_json::Value {
    let r = os
        .request("GET", &format!("/{index}/_mapping"), None)
        .unwrap();
    let mapping: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    mapping[index]["mappings"]["properties"].clone()
}

/// Checks that `props` (an index's mapped `properties`) has the types of nagare's
/// template, in what osmem's dynamic mapping would not give: `message` a text with
/// no `.keyword` subfield, `log`, `stream` and Kubernetes fields the records do not
/// carry mapped anyway, the Kubernetes metadata keywords rather than text.
fn assert_template_types(props: &serde_json::Value) {
    // Dynamic mapping gives a date here too: checked, but it proves nothing alone.
    assert_eq!(props["@timestamp"], json!({"type": "date"}), "{props}");
    // Dynamic mapping: `{"type": "text", "fields": {"keyword": ...}}`.
    assert_eq!(props["message"], json!({"type": "text"}), "{props}");
    // No record has these: only a template maps them.
    assert_eq!(props["log"], json!({"type": "text"}), "{props}");
    assert_eq!(props["stream"], json!({"type": "keyword"}), "{props}");
    let k8s = &props["kubernetes"]["properties"];
    for field in ["namespace_name", "pod_name", "container_name", "host"] {
        assert_eq!(k8s[field], json!({"type": "keyword"}), "{field}: {props}");
    }
}

/// An ILM policy means nothing to OpenSearch (osmem refuses `index.lifecycle.name`):
/// found to be OpenSearch at start, the template goes in without it, with a warning.
#[tokio::test]
async fn an_ilm_policy_is_left_out_for_opensearch_with_a_warning() {
    let logs = capture_logs(Level::WARN);
    let os = Osmem::start();
    let sink = start(
        es_config(&format!(
            "endpoints: ['{}']\ntemplate: {{name: ilm, ilm_policy: logs-30d}}\n",
            os.url()
        )),
        buffer(),
    );
    deliver(&sink, 1).await;
    wait_for(
        &logs,
        &["WARN", "ilm_policy does not apply", "OpenSearch 3"],
    )
    .await;
    let t = template_of(&os, "ilm");
    assert!(!t.to_string().contains("logs-30d"), "{t}");
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_is_installed_left_alone_then_replaced_with_overwrite() {
    let os = Osmem::start();
    let config = |overwrite: bool| {
        es_config(&format!(
            "endpoints: ['{}']\ntemplate:\n  name: nagare-logs\n  overwrite: {overwrite}\n  ism_policy: logs-30d\n",
            os.url()
        ))
    };
    // First start: installed, then documents get its types.
    let sink = start(config(false), buffer());
    deliver(&sink, 10).await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    let installed = template_of(&os, "nagare-logs");
    assert_eq!(installed["index_patterns"], json!(["logstash-*"]));
    assert_eq!(installed["_meta"]["managed_by"], "nagare");
    assert!(
        installed["template"]["settings"]
            .to_string()
            .contains("logs-30d"),
        "{installed}"
    );
    // `log` (the raw line of a container, when nothing parsed it) is text too; these
    // records have `message` only, so the template says it.
    assert_eq!(
        installed["template"]["mappings"]["properties"]["log"]["type"], "text",
        "{installed}"
    );
    assert_template_types(&properties(&os, "logstash-2024.01.15"));

    // Changed by hand between starts: a second start leaves it so.
    let mut modified = installed.clone();
    modified["priority"] = json!(42);
    modified.as_object_mut().unwrap().remove("composed_of");
    let r = os
        .request("PUT", "/_index_template/nagare-logs", Some(&modified))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sink = start(config(false), buffer());
    deliver(&sink, 1).await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    assert_eq!(template_of(&os, "nagare-logs")["priority"], 42);

    // With overwrite it is replaced.
    let sink = start(config(true), buffer());
    deliver(&sink, 1).await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    assert_eq!(template_of(&os, "nagare-logs")["priority"], 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_file_is_installed_as_written() {
    let os = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("template.json");
    let body = json!({
        "index_patterns": ["app-*"],
        "priority": 7,
        "template": {"mappings": {"properties": {"level": {"type": "keyword"}}}}
    });
    std::fs::write(&file, body.to_string()).unwrap();
    let sink = start(
        es_config(&format!(
            "endpoints: ['{}']\nindex: app-logs\ntemplate:\n  name: mine\n  file: {}\n",
            os.url(),
            file.display()
        )),
        buffer(),
    );
    deliver(&sink, 1).await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    let t = template_of(&os, "mine");
    assert_eq!(t["index_patterns"], json!(["app-*"]));
    assert_eq!(t["priority"], 7);
}

/// A cluster that says it is Elasticsearch 7.2 (its recorded `GET /` answer, relayed
/// by the fault proxy; everything else is osmem's) has legacy templates only: the
/// template goes to `_template/<name>`, is left alone on a second start, and
/// documents then have its types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_cluster_gets_a_legacy_template() {
    let es72 = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/es_root/elasticsearch-7.2.0.json"
    ))
    .unwrap();
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    proxy.answer_root(200, &es72);
    let config = es_config(&format!(
        "endpoints: ['{}']\ntemplate: {{name: nagare-legacy}}\n",
        proxy.url()
    ));
    let legacy = |os: &Osmem| {
        let r = os.request("GET", "/_template/nagare-legacy", None).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["nagare-legacy"].clone()
    };
    let sink = start(config.clone(), buffer());
    deliver(&sink, 5).await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    let installed = legacy(&os);
    assert_eq!(
        installed["index_patterns"],
        json!(["logstash-*"]),
        "{installed}"
    );
    let r = os
        .request("GET", "/_index_template/nagare-legacy", None)
        .unwrap();
    assert_eq!(r.status, 404, "no composable template on a legacy cluster");
    let requests: Vec<String> = proxy.other_requests().into_iter().map(|(r, _)| r).collect();
    assert!(
        requests.contains(&"PUT /_template/nagare-legacy".to_string()),
        "{requests:?}"
    );
    // Legacy (7.2): the mappings without a `_doc` around them.
    assert_eq!(
        installed["mappings"]["properties"]["log"],
        json!({"type": "text"}),
        "{installed}"
    );
    assert_template_types(&properties(&os, "logstash-2024.01.15"));

    // Changed by hand: a second start asks, finds it, and leaves it.
    let mut modified = installed.clone();
    modified["order"] = json!(7);
    let r = os
        .request("PUT", "/_template/nagare-legacy", Some(&modified))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let sink = start(config, buffer());
    deliver(&sink, 1).await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    assert_eq!(legacy(&os)["order"], 7);
    let puts = proxy
        .other_requests()
        .iter()
        .filter(|(r, _)| r == "PUT /_template/nagare-legacy")
        .count();
    assert_eq!(puts, 1, "installed once");
}

/// What the cluster answers about the template does not stop delivery: a template
/// it refuses (400, a mapping it cannot parse) is logged with its reason, a user
/// not allowed to read templates (403) is logged with the privilege it needs and
/// nothing is put, a failing cluster (500) is asked again until it answers; each
/// time the documents are delivered. (On one thread: the logs are captured there.)
#[tokio::test]
async fn a_refused_or_failing_template_does_not_stop_delivery() {
    let logs = capture_logs(Level::WARN);
    let os = Osmem::start();

    // 400: a template file whose mapping the cluster cannot parse.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"{"index_patterns": ["bad-*"], "template": {"mappings": {"properties": {"a": {"type": "nonsense"}}}}}"#,
    )
    .unwrap();
    let sink = start(
        es_config(&format!(
            "endpoints: ['{}']\nindex: bad-logs\ntemplate: {{name: bad, file: '{}'}}\n",
            os.url(),
            file.display()
        )),
        buffer(),
    );
    deliver(&sink, 3).await;
    wait_for(
        &logs,
        &[
            "ERROR",
            "the cluster refused the index template",
            "No handler for type [nonsense]",
        ],
    )
    .await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    let r = os.request("GET", "/_index_template/bad", None).unwrap();
    assert_eq!(r.status, 404, "not installed");
    assert_eq!(os.count("bad-logs"), 3);

    // 403 on the GET: no privilege to manage templates; nothing is put.
    let proxy = FaultProxy::start(os.url());
    let forbidden = json!({"error": {"type": "security_exception", "reason": "action [indices:admin/index_template/get] is unauthorized for user [nagare]"}, "status": 403});
    proxy.answer(
        "GET",
        "/_index_template/denied",
        403,
        forbidden.to_string().as_bytes(),
    );
    let sink = start(
        es_config(&format!(
            "endpoints: ['{}']\nindex: denied-logs\ntemplate: {{name: denied}}\n",
            proxy.url()
        )),
        buffer(),
    );
    deliver(&sink, 3).await;
    wait_for(
        &logs,
        &[
            "WARN",
            "not allowed to install the index template",
            "manage_index_templates",
        ],
    )
    .await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    let requests: Vec<String> = proxy.other_requests().into_iter().map(|(r, _)| r).collect();
    assert!(
        !requests.iter().any(|r| r.starts_with("PUT ")),
        "{requests:?}"
    );
    assert_eq!(os.count("denied-logs"), 3);

    // 500 on the GET: asked again (GET / only once) until the cluster answers.
    let proxy = FaultProxy::start(os.url());
    proxy.answer(
        "GET",
        "/_index_template/later",
        500,
        b"{\"error\":\"busy\"}",
    );
    let sink = start(
        es_config(&format!(
            "endpoints: ['{}']\nindex: later-logs\ntemplate: {{name: later}}\n",
            proxy.url()
        )),
        buffer(),
    );
    wait_for(
        &logs,
        &[
            "WARN",
            "cannot reach Elasticsearch at start",
            "answered 500",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.relay("GET", "/_index_template/later");
    deliver(&sink, 3).await;
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    let requests: Vec<String> = proxy.other_requests().into_iter().map(|(r, _)| r).collect();
    let asked = |what: &str| requests.iter().filter(|r| *r == what).count();
    assert!(asked("GET /_index_template/later") >= 2, "{requests:?}");
    assert_eq!(
        asked("GET /"),
        1,
        "the version is learnt once: {requests:?}"
    );
    assert_eq!(asked("PUT /_index_template/later"), 1, "{requests:?}");
    assert_eq!(
        template_of(&os, "later")["index_patterns"],
        json!(["later-logs"])
    );
    assert_eq!(os.count("later-logs"), 3);
}
