//! The Elasticsearch sink's connection path against a real osmem-server: TLS (a
//! CA file, a client certificate, a wrong CA) through a TLS-terminating front, API
//! keys seen by the fault proxy, `GET /` refused, and the index template installed
//! at start. Certificates are made per test with rcgen; nothing is committed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use nagare_aggregator::sinks::elasticsearch::{self, ElasticsearchConfig};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::{ConfigDocument, HumanDuration};
use nagare_core::receipt::Delivery;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{chunk_of, close_and_drain, sink_context, with_receipt};
use nagare_core::{EventTime, Map, Value};
use nagare_testkit::{FaultProxy, LogCapture, Osmem, TlsFront, capture_logs, free_port};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use tokio::task::JoinHandle;
use tracing::Level;

/// 2024-01-15T10:30:00Z.
const T0: i64 = 1_705_314_600;

/// A CA and what it signed, as PEM files in a temporary folder.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ca(&self, name: &str) -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(self.path(&format!("{name}.crt")), cert.pem()).unwrap();
        Issuer::new(params, key)
    }

    fn leaf(&self, file: &str, names: &[&str], ca: &Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        let cert = params.signed_by(&key, ca).unwrap();
        std::fs::write(self.path(&format!("{file}.crt")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{file}.key")), key.serialize_pem()).unwrap();
    }
}

/// A cluster CA with a server certificate for localhost, a client CA with a
/// client certificate, and an unrelated CA.
fn pki() -> Pki {
    let pki = Pki::new();
    let cluster = pki.ca("cluster");
    pki.leaf("es", &["localhost"], &cluster);
    let clients = pki.ca("clients");
    pki.leaf("nagare", &["nagare"], &clients);
    pki.ca("other");
    pki
}

fn es_config(yaml: &str) -> ElasticsearchConfig {
    let yaml = format!("batch: {{ max_events: 50, timeout: 100ms }}\nrequest_timeout: 5s\n{yaml}");
    let config: ElasticsearchConfig = ConfigDocument::from_text("test.yaml", &yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"));
    config
        .validate()
        .unwrap_or_else(|e| panic!("{}: {}", e.key, e.message));
    config
}

fn record(i: usize) -> Map {
    let mut m = Map::new();
    m.insert("message", format!("line {i}"));
    let mut k8s = Map::new();
    k8s.insert("namespace_name", "payments");
    k8s.insert("pod_name", format!("api-{i}"));
    m.insert("kubernetes", Value::Map(k8s));
    m
}

struct Running {
    buffer: Buffer,
    abort: Shutdown,
    task: JoinHandle<Result<(), elasticsearch::ElasticsearchSinkError>>,
    _data: tempfile::TempDir,
}

fn buffer() -> Buffer {
    Buffer::new(
        "es",
        &BufferConfig {
            retry_wait: HumanDuration::millis(50),
            retry_max_interval: HumanDuration::millis(200),
            ..BufferConfig::default()
        },
    )
}

fn start(config: ElasticsearchConfig, buffer: Buffer) -> Running {
    let data = tempfile::tempdir().unwrap();
    let (ctx, abort) = sink_context("es", &buffer, data.path());
    let task = tokio::spawn(elasticsearch::run(config, ctx));
    Running {
        buffer,
        abort,
        task,
        _data: data,
    }
}

/// Pushes `n` events; waits until they are delivered.
async fn deliver(sink: &Running, n: usize) {
    let (chunk, rx) = with_receipt(chunk_of(
        "kube.payments",
        (0..n).map(|i| (EventTime::new(T0 + i as i64, 0), record(i))),
    ));
    sink.buffer.push(chunk).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("the chunk is resolved in time")
        .expect("the receipt fires");
    assert_eq!(delivery, Delivery::Delivered);
}

async fn wait_for(logs: &LogCapture, needles: &[&str]) -> String {
    logs.wait_for(Duration::from_secs(10), needles)
        .await
        .unwrap_or_else(|| panic!("no log line with {needles:?}: {:#?}", logs.lines()))
}

fn api_key() -> String {
    base64::engine::general_purpose::STANDARD.encode("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_ca_file_carries_the_api_key() {
    let pki = pki();
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    let proxy_addr = proxy.url().trim_start_matches("http://").parse().unwrap();
    let front = TlsFront::start(proxy_addr, &pki.path("es.crt"), &pki.path("es.key"), None);
    let key = api_key();
    let sink = start(
        es_config(&format!(
            "endpoints: ['{}']\napi_key: {key}\ntls:\n  ca_path: {}\n",
            front.url(),
            pki.path("cluster.crt").display()
        )),
        buffer(),
    );
    deliver(&sink, 30).await;
    assert_eq!(os.count("logstash-2024.01.15"), 30);
    let bulks = proxy.bulk_log();
    assert!(!bulks.is_empty());
    for exchange in &bulks {
        assert_eq!(
            exchange.authorization.as_deref(),
            Some(format!("ApiKey {key}").as_str())
        );
    }
    // GET / at start carried it too.
    let others = proxy.other_requests();
    assert!(
        others
            .iter()
            .any(|(r, auth)| r == "GET /" && auth.as_deref() == Some(&format!("ApiKey {key}"))),
        "{others:?}"
    );
    assert!(
        front.failed_handshakes().is_empty(),
        "{:?}",
        front.failed_handshakes()
    );
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_front_that_requires_client_certificates_takes_the_configured_one() {
    let pki = pki();
    let os = Osmem::start();
    let upstream = format!("127.0.0.1:{}", os.port()).parse().unwrap();
    let front = TlsFront::start(
        upstream,
        &pki.path("es.crt"),
        &pki.path("es.key"),
        Some(&pki.path("clients.crt")),
    );
    let tls = |cert: bool| {
        let mut yaml = format!("tls:\n  ca_path: {}\n", pki.path("cluster.crt").display());
        if cert {
            yaml.push_str(&format!(
                "  cert_path: {}\n  private_key_path: {}\n",
                pki.path("nagare.crt").display(),
                pki.path("nagare.key").display()
            ));
        }
        format!("endpoints: ['{}']\n{yaml}", front.url())
    };
    let sink = start(es_config(&tls(true)), buffer());
    deliver(&sink, 10).await;
    assert_eq!(os.count("logstash-2024.01.15"), 10);
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
    assert!(front.failed_handshakes().is_empty());

    // Without the certificate the front refuses the handshake.
    let refused = start(es_config(&tls(false)), buffer());
    let failed = nagare_testkit::wait_until_async(Duration::from_secs(10), || {
        !front.failed_handshakes().is_empty()
    })
    .await;
    assert!(failed, "the front refused a client without a certificate");
    refused.abort.cancel();
    refused.task.await.unwrap().unwrap();
}

/// A server certificate from a CA the sink does not trust: refused with the
/// reason, retried, nothing dead-lettered; with the right CA everything arrives.
#[tokio::test]
async fn a_wrong_ca_is_refused_with_a_clear_error_and_nothing_is_lost() {
    let logs = capture_logs(Level::WARN);
    let pki = pki();
    let os = Osmem::start();
    let upstream = format!("127.0.0.1:{}", os.port()).parse().unwrap();
    let front = TlsFront::start(upstream, &pki.path("es.crt"), &pki.path("es.key"), None);
    let with_ca = |ca: &Path| {
        es_config(&format!(
            "endpoints: ['{}']\ntls:\n  ca_path: {}\n",
            front.url(),
            ca.display()
        ))
    };
    let shared = buffer();
    let wrong = start(with_ca(&pki.path("other.crt")), shared.clone());
    let (chunk, rx) = with_receipt(chunk_of(
        "kube.payments",
        (0..20).map(|i| (EventTime::new(T0 + i as i64, 0), record(i))),
    ));
    shared.push(chunk).await.unwrap();
    let line = wait_for(
        &logs,
        &["WARN", "cannot reach Elasticsearch", "UnknownIssuer"],
    )
    .await;
    assert!(line.contains(&front.url()), "{line}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(os.count("logstash-2024.01.15"), 0);
    wrong.abort.cancel();
    wrong.task.await.unwrap().unwrap();
    assert_eq!(
        shared.stats().queued_chunks,
        1,
        "the chunk waits in the buffer"
    );

    let right = start(with_ca(&pki.path("cluster.crt")), shared.clone());
    let delivery = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery, Delivery::Delivered);
    assert_eq!(os.count("logstash-2024.01.15"), 20);
    assert!(
        !right
            ._data
            .path()
            .join("dead-letter")
            .join("es.ndjson")
            .exists()
    );
    close_and_drain(&right.buffer, right.task, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_refused_get_root_is_taken_for_elasticsearch_8_and_delivery_goes_on() {
    let logs = capture_logs(Level::WARN);
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    proxy.refuse_root(403);
    let sink = start(
        es_config(&format!("endpoints: ['{}']\n", proxy.url())),
        buffer(),
    );
    deliver(&sink, 5).await;
    wait_for(&logs, &["WARN", "GET / is not allowed", "status=403"]).await;
    assert_eq!(os.count("logstash-2024.01.15"), 5);
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
}

/// With `api_version: auto` and a template, a cluster down at start is asked again
/// until it answers; the chunks wait in the buffer, then everything arrives, typed.
#[tokio::test]
async fn a_cluster_down_at_start_is_asked_again_until_it_answers() {
    let logs = capture_logs(Level::WARN);
    let port = free_port();
    let sink = start(
        es_config(&format!(
            "endpoints: ['http://127.0.0.1:{port}']\ntemplate: {{name: late}}\n"
        )),
        buffer(),
    );
    let (chunk, rx) = with_receipt(chunk_of(
        "kube.payments",
        (0..25).map(|i| (EventTime::new(T0 + i as i64, 0), record(i))),
    ));
    sink.buffer.push(chunk).await.unwrap();
    wait_for(
        &logs,
        &[
            "WARN",
            "cannot reach Elasticsearch at start",
            "Connection refused",
        ],
    )
    .await;
    assert_eq!(
        sink.buffer.stats().queued_chunks,
        1,
        "the chunk waits in the buffer"
    );
    let os = Osmem::start_on(port);
    let delivery = tokio::time::timeout(Duration::from_secs(40), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery, Delivery::Delivered);
    assert_eq!(os.count("logstash-2024.01.15"), 25);
    assert_eq!(
        template_of(&os, "late")["index_patterns"],
        json!(["logstash-*"])
    );
    close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
}

/// A cluster that says it is Elasticsearch 6.8 (its recorded `GET /` answer) gets
/// `_type: _doc` in every action: osmem, an OpenSearch 3, refuses the field, which
/// shows it was sent; with `suppress_type_name` the same events are indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_6_detected_at_start_gets_the_doc_type_unless_suppressed() {
    let es68 = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/es_root/elasticsearch-6.8.23.json"
    ))
    .unwrap();
    let os = Osmem::start();
    let proxy = FaultProxy::start(os.url());
    proxy.answer_root(200, &es68);
    let config = |suppress: bool| {
        es_config(&format!(
            "endpoints: ['{}']\nindex: es6\nsuppress_type_name: {suppress}\n",
            proxy.url()
        ))
    };
    let typed = start(config(false), buffer());
    let (chunk, rx) = with_receipt(chunk_of(
        "kube.payments",
        [(EventTime::new(T0, 0), record(0))],
    ));
    typed.buffer.push(chunk).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivery, Delivery::Failed, "osmem refuses `_type`");
    let dead = std::fs::read_to_string(typed._data.path().join("dead-letter/es.ndjson")).unwrap();
    assert!(dead.contains("unknown parameter [_type]"), "{dead}");
    assert_eq!(os.count("es6"), 0);
    close_and_drain(&typed.buffer, typed.task, Duration::from_secs(10)).await;

    let suppressed = start(config(true), buffer());
    deliver(&suppressed, 3).await;
    assert_eq!(os.count("es6"), 3);
    close_and_drain(&suppressed.buffer, suppressed.task, Duration::from_secs(10)).await;
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

fn template_of(os: &Osmem, name: &str) -> serde_json::Value {
    let r = os
        .request("GET", &format!("/_index_template/{name}"), None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["index_templates"][0]["index_template"].clone()
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
    let mapping = os
        .request("GET", "/logstash-2024.01.15/_mapping", None)
        .unwrap();
    let mapping: serde_json::Value = serde_json::from_slice(&mapping.body).unwrap();
    let props = &mapping["logstash-2024.01.15"]["mappings"]["properties"];
    assert_eq!(props["@timestamp"]["type"], "date", "{mapping}");
    assert_eq!(props["message"]["type"], "text", "{mapping}");
    assert_eq!(
        props["kubernetes"]["properties"]["namespace_name"]["type"], "keyword",
        "{mapping}"
    );
    assert_eq!(
        props["kubernetes"]["properties"]["pod_name"]["type"], "keyword",
        "{mapping}"
    );

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
