//! The Elasticsearch sink's connection path against a real osmem-server: TLS (a
//! CA file, a client certificate, a server name, a wrong CA) through a
//! TLS-terminating front, API keys seen by the fault proxy, `GET /` refused,
//! answered as another version or not asked (an explicit `api_version`), a cluster
//! down at start. Certificates are made per test with rcgen; nothing is committed.

mod es_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use es_support::{T0, api_key, buffer, deliver, es_config, record, start, template_of, wait_for};
use nagare_core::EventTime;
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::HumanDuration;
use nagare_core::dead_letter::DeadLetter;
use nagare_core::receipt::Delivery;
use nagare_core::testing::{chunk_of, close_and_drain, with_receipt};
use nagare_testkit::{
    FaultProxy, Osmem, RouteSpec, SigV4Proxy, TlsFront, capture_logs, free_port, wait_until_async,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::json;
use tracing::Level;

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

/// A wrong API key: the cluster answers 401 (testkit's SigV4 proxy, which takes an
/// `Authorization: ApiKey` only with one of its route's keys, as Elasticsearch's
/// security does). The events are sent again past the retry limit, never
/// dead-lettered, and the log says what authenticated; the sink started again with
/// the right key on the same buffer delivers every one.
#[tokio::test]
async fn a_wrong_api_key_is_sent_again_never_dead_lettered_and_the_right_one_delivers() {
    let logs = capture_logs(Level::WARN);
    let os = Osmem::start();
    let key = api_key();
    let route = SigV4Proxy::shared().route(&RouteSpec {
        upstream: os.url().to_string(),
        api_keys: vec![key.clone()],
        ..RouteSpec::default()
    });
    let config = |api_key: &str| {
        es_config(&format!(
            "endpoints: ['{}']\napi_key: {api_key}\n",
            route.url()
        ))
    };
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("es.ndjson");
    // One retry allowed: a refusal handled as an error would be dead-lettered.
    let buffer = Buffer::new(
        "es",
        &BufferConfig {
            retry_wait: HumanDuration::millis(50),
            retry_max_interval: HumanDuration::millis(200),
            retry_max_times: Some(1),
            ..BufferConfig::default()
        },
    )
    .with_dead_letter(DeadLetter::new(dead_letter.clone()));
    let wrong =
        base64::engine::general_purpose::STANDARD.encode("VuaCfGcBCdbkQm-e5aOx:not-the-key");
    let sink = start(config(&wrong), buffer.clone());
    let (chunk, mut rx) = with_receipt(chunk_of(
        "kube.payments",
        (0..30).map(|i| (EventTime::new(T0 + i as i64, 0), record(i))),
    ));
    buffer.push(chunk).await.unwrap();
    let refused = wait_until_async(Duration::from_secs(20), || {
        route
            .log()
            .iter()
            .filter(|s| s.path == "/_bulk" && s.status == 401)
            .count()
            >= 4
    })
    .await;
    assert!(refused, "{:?}", route.log());
    let line = wait_for(&logs, &["sending again without end", "401"]).await;
    assert!(
        line.contains("check `api_key`"),
        "the log says what to check: {line}"
    );
    assert!(!line.contains(&wrong), "the key is never logged: {line}");
    assert!(rx.try_recv().is_err(), "the chunk is still held");
    assert_eq!(os.count("logstash-2024.01.15"), 0);
    assert!(
        !dead_letter.exists(),
        "nothing dead-lettered for credentials"
    );
    // Stopped, and started again with the right key on the same buffer.
    sink.abort.cancel();
    tokio::time::timeout(Duration::from_secs(5), sink.task)
        .await
        .expect("abort is prompt")
        .unwrap()
        .unwrap();
    let sink = start(config(&key), buffer);
    let delivery = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("delivered in time")
        .expect("the receipt fires");
    assert_eq!(delivery, Delivery::Delivered);
    assert_eq!(os.count("logstash-2024.01.15"), 30);
    let accepted = route.log();
    assert!(
        accepted
            .iter()
            .any(|s| s.path == "/_bulk" && s.status == 200 && s.auth["api_key"] == true),
        "{accepted:?}"
    );
    assert!(!dead_letter.exists());
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

/// A TLS front to `os` with a certificate for `es.logging.internal` only, from the
/// CA `internal.crt` of `pki`: reached at 127.0.0.1, its name is not the host's.
fn internal_front(pki: &Pki, os: &Osmem) -> TlsFront {
    let internal = pki.ca("internal");
    pki.leaf("es-internal", &["es.logging.internal"], &internal);
    let upstream = format!("127.0.0.1:{}", os.port()).parse().unwrap();
    TlsFront::start(
        upstream,
        &pki.path("es-internal.crt"),
        &pki.path("es-internal.key"),
        None,
    )
}

/// A certificate for another name than the endpoint's host (an IP address, an
/// alias) is accepted with `tls.server_name` naming it, and refused without.
#[tokio::test]
async fn server_name_names_the_certificate_of_an_endpoint_known_by_another_name() {
    let logs = capture_logs(Level::WARN);
    let pki = pki();
    let os = Osmem::start();
    let front = internal_front(&pki, &os);
    let config = |server_name: &str| {
        es_config(&format!(
            "endpoints: ['https://127.0.0.1:{}']\ntls:\n  ca_path: {}\n{server_name}",
            front.port(),
            pki.path("internal.crt").display()
        ))
    };
    let wrong = start(config(""), buffer());
    wait_for(
        &logs,
        &[
            "WARN",
            "cannot reach Elasticsearch",
            "certificate not valid for name",
        ],
    )
    .await;
    wrong.abort.cancel();
    wrong.task.await.unwrap().unwrap();
    let named = start(config("  server_name: es.logging.internal\n"), buffer());
    deliver(&named, 4).await;
    assert_eq!(os.count("logstash-2024.01.15"), 4);
    close_and_drain(&named.buffer, named.task, Duration::from_secs(10)).await;
}

/// Verification turned down: `verify_hostname: false` takes a certificate for
/// another name (its chain still checked: from an untrusted CA it is refused), and
/// `insecure_skip_verify: true` takes one from a CA it was not given at all.
#[tokio::test]
async fn verification_off_takes_what_it_says_and_no_more() {
    let logs = capture_logs(Level::WARN);
    let pki = pki();
    let os = Osmem::start();
    let front = internal_front(&pki, &os);
    let config = |tls: &str| {
        es_config(&format!(
            "endpoints: ['https://127.0.0.1:{}']
tls:
{tls}",
            front.port()
        ))
    };
    let ca = |name: &str| {
        format!(
            "  ca_path: {}
",
            pki.path(name).display()
        )
    };

    // The name is not checked, the chain is: a CA that did not sign it is refused.
    let untrusted = start(
        config(&format!(
            "{}  verify_hostname: false
",
            ca("other.crt")
        )),
        buffer(),
    );
    wait_for(
        &logs,
        &["WARN", "cannot reach Elasticsearch", "UnknownIssuer"],
    )
    .await;
    untrusted.abort.cancel();
    untrusted.task.await.unwrap().unwrap();

    // The right CA: the certificate for es.logging.internal is taken at 127.0.0.1.
    let by_chain = start(
        config(&format!(
            "{}  verify_hostname: false
",
            ca("internal.crt")
        )),
        buffer(),
    );
    deliver(&by_chain, 3).await;
    assert_eq!(os.count("logstash-2024.01.15"), 3);
    close_and_drain(&by_chain.buffer, by_chain.task, Duration::from_secs(10)).await;

    // Nothing checked: no CA given, the certificate taken as it is.
    let unchecked = start(
        config(
            "  insecure_skip_verify: true
",
        ),
        buffer(),
    );
    deliver(&unchecked, 2).await;
    assert_eq!(os.count("logstash-2024.01.15"), 5);
    close_and_drain(&unchecked.buffer, unchecked.task, Duration::from_secs(10)).await;
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

/// A stop while the cluster has not answered yet: with nothing to deliver the sink
/// ends at once instead of waiting for the cluster (a stop would otherwise wait out
/// `shutdown_timeout`); with a chunk to deliver it keeps asking until it is aborted,
/// and the chunk stays in the buffer.
#[tokio::test]
async fn a_sink_waiting_for_its_cluster_at_start_stops_at_once_with_nothing_to_deliver() {
    let logs = capture_logs(Level::WARN);
    let port = free_port();
    let config = es_config(&format!("endpoints: ['http://127.0.0.1:{port}']\n"));
    let idle = start(config.clone(), buffer());
    wait_for(&logs, &["WARN", "cannot reach Elasticsearch at start"]).await;
    idle.buffer.close();
    tokio::time::timeout(Duration::from_secs(5), idle.task)
        .await
        .expect("ended without being aborted")
        .unwrap()
        .unwrap();

    let busy = start(config, buffer());
    let (chunk, _rx) = with_receipt(chunk_of(
        "kube.payments",
        (0..5).map(|i| (EventTime::new(T0 + i as i64, 0), record(i))),
    ));
    busy.buffer.push(chunk).await.unwrap();
    busy.buffer.close();
    let mut task = busy.task;
    assert!(
        tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err(),
        "a chunk to deliver: the sink keeps asking the cluster"
    );
    busy.abort.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ended once aborted")
        .unwrap()
        .unwrap();
    assert_eq!(busy.buffer.stats().queued_chunks, 1, "the chunk is kept");
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

/// An explicit `api_version` is taken as it is: no `GET /` at start (the route logs
/// every request), only `_bulk`; `v6` puts `"_type": "_doc"` in every action (which
/// osmem, an OpenSearch 3, refuses), `v7` and `opensearch` none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_api_version_skips_get_root_and_v6_sends_the_doc_type() {
    let os = Osmem::start();
    let key = api_key();
    for version in ["v6", "v7", "opensearch"] {
        let route = SigV4Proxy::shared().route(&RouteSpec {
            upstream: os.url().to_string(),
            api_keys: vec![key.clone()],
            ..RouteSpec::default()
        });
        let index = format!("explicit-{version}");
        let sink = start(
            es_config(&format!(
                "endpoints: ['{}']\napi_key: {key}\napi_version: {version}\nindex: {index}\n",
                route.url()
            )),
            buffer(),
        );
        let (chunk, rx) = with_receipt(chunk_of(
            "kube.payments",
            (0..3).map(|i| (EventTime::new(T0 + i as i64, 0), record(i))),
        ));
        sink.buffer.push(chunk).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(20), rx)
            .await
            .expect("resolved in time")
            .expect("the receipt fires");
        close_and_drain(&sink.buffer, sink.task, Duration::from_secs(10)).await;
        let seen = route.log();
        let requests: Vec<(&str, &str)> = seen
            .iter()
            .map(|s| (s.method.as_str(), s.path.as_str()))
            .collect();
        assert!(
            !requests.is_empty() && requests.iter().all(|r| *r == ("POST", "/_bulk")),
            "{version}: no `GET /`, only `_bulk`: {requests:?}"
        );
        let actions: Vec<&serde_json::Value> = seen
            .iter()
            .flat_map(|s| s.actions.iter().flatten())
            .collect();
        assert!(!actions.is_empty(), "{version}");
        for action in &actions {
            let (kind, meta) = action
                .as_object()
                .and_then(|o| o.iter().next())
                .unwrap_or_else(|| panic!("{version}: an action: {action}"));
            assert_eq!(kind, "index", "{version}: {action}");
            let want = (version == "v6").then(|| json!("_doc"));
            assert_eq!(meta.get("_type").cloned(), want, "{version}: {action}");
        }
        if version == "v6" {
            assert_eq!(delivery, Delivery::Failed, "osmem refuses `_type`");
            assert_eq!(os.count(&index), 0);
        } else {
            assert_eq!(delivery, Delivery::Delivered, "{version}");
            assert_eq!(os.count(&index), 3, "{version}");
        }
    }
}
