//! Pod metadata against recorded Kubernetes API responses.
//!
//! No API server can run on the machines these tests run on, so a small HTTP/1.1
//! server in the test plays one, following the documented list/watch protocol:
//! `GET /api/v1/pods?fieldSelector=spec.nodeName=...` answers a `PodList` (with its
//! `resourceVersion`); the same with `watch=true&resourceVersion=...` answers a
//! chunked stream of watch events (`BOOKMARK`, then `ADDED` / `MODIFIED` / `DELETED`
//! as the test sends them), held open like the real server does. The JSON bodies
//! are in `tests/fixtures/kubernetes/`, shaped like the API server's. The real `kube`
//! client and watcher talk to it through the real tail source.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::HumanDuration;
use nagare_core::pattern::TagPattern;
use nagare_core::router::RouterBuilder;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::source_context;
use nagare_core::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use super::*;
use crate::sources::tail::{TailConfig, TailFormat, TailMetrics, run_with_metrics};

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kubernetes")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The recorded API server.
struct ApiServer {
    url: String,
    /// Request targets, in order.
    requests: Arc<Mutex<Vec<String>>>,
    /// Watch events for the pod watch streams, one JSON object each.
    pod_events: broadcast::Sender<String>,
}

impl ApiServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (pod_events, _) = broadcast::channel(16);
        let (reqs, events) = (requests.clone(), pod_events.clone());
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, reqs.clone(), events.clone()));
            }
        });
        Self {
            url,
            requests,
            pod_events,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Serves one connection: requests in turn (keep-alive), until a watch takes it over.
async fn serve(
    conn: tokio::net::TcpStream,
    requests: Arc<Mutex<Vec<String>>>,
    events: broadcast::Sender<String>,
) {
    let (r, mut w) = conn.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut request_line = String::new();
        if r.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if r.read_line(&mut header).await.unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" || header == "\n" {
                break;
            }
        }
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string();
        requests.lock().unwrap().push(target.clone());
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let watch = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let (list, kind) = match path {
            "/api/v1/pods" => (fixture("pods-list.json"), "Pod"),
            "/api/v1/namespaces" => (fixture("namespaces-list.json"), "Namespace"),
            _ => {
                let body = r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#;
                let head = format!(
                    "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = w.write_all(head.as_bytes()).await;
                let _ = w.write_all(body.as_bytes()).await;
                continue;
            }
        };
        if !watch {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                list.len()
            );
            if w.write_all(head.as_bytes()).await.is_err()
                || w.write_all(list.as_bytes()).await.is_err()
            {
                return;
            }
            continue;
        }
        // A watch: chunked JSON events, one per line, held open.
        let mut rx = events.subscribe();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if w.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let bookmark = fixture("bookmark.json")
            .trim()
            .replace("\"Pod\"", &format!("\"{kind}\""));
        if send_chunk(&mut w, &bookmark).await.is_err() {
            return;
        }
        loop {
            let event = if kind == "Pod" {
                match rx.recv().await {
                    Ok(e) => e,
                    Err(_) => return,
                }
            } else {
                std::future::pending::<()>().await;
                return;
            };
            if send_chunk(&mut w, &event).await.is_err() {
                return;
            }
        }
    }
}

async fn send_chunk(w: &mut tokio::net::tcp::OwnedWriteHalf, json: &str) -> std::io::Result<()> {
    let data = format!("{json}\n");
    w.write_all(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes())
        .await?;
    w.flush().await
}

const ID: &str = "3f2a1b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708";

fn write_log(dir: &Path, pod: &str, ns: &str, container: &str, lines: &[&str]) -> PathBuf {
    let path = dir.join(format!("{pod}_{ns}_{container}-{ID}.log"));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    for l in lines {
        writeln!(f, "2024-05-01T12:00:00.000000007Z stdout F {l}").unwrap();
    }
    path
}

struct Running {
    buffer: Buffer,
    shutdown: Shutdown,
    metrics: Arc<TailMetrics>,
    task: tokio::task::JoinHandle<Result<(), crate::sources::tail::TailSourceError>>,
}

impl Running {
    /// Waits for `n` records.
    async fn records(&self, n: usize) -> Vec<Map> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while got.len() < n {
            let lease = tokio::time::timeout_at(deadline, self.buffer.pop())
                .await
                .unwrap_or_else(|_| panic!("waited for {n} records, got {got:#?}"))
                .unwrap();
            for e in lease.chunk().events() {
                got.push(e.unwrap().1);
            }
            lease.delivered();
        }
        got
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the source stops")
            .unwrap()
            .unwrap();
    }
}

fn start(dir: &Path, kubernetes: KubernetesConfig) -> Running {
    let mut config = TailConfig::new(vec![format!("{}/*.log", dir.display())]);
    config.read_from_head = true;
    config.format = TailFormat::Cri;
    config.poll_interval = HumanDuration::millis(20);
    config.refresh_interval = HumanDuration::millis(50);
    config.kubernetes = kubernetes;
    let buffer = Buffer::new("out", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
    let (ctx, shutdown) = source_context("containers", rb.build(), &dir.join("state"));
    let metrics = TailMetrics::new();
    let task = tokio::spawn(run_with_metrics(config, ctx, metrics.clone()));
    Running {
        buffer,
        shutdown,
        metrics,
        task,
    }
}

fn api_config(url: &str) -> KubernetesConfig {
    KubernetesConfig {
        api: ApiMode::Enabled,
        api_server: Some(url.to_string()),
        node_name: Some("node-1".into()),
        annotations: vec!["team.example.com/*".into()],
        token_file: PathBuf::from("/nonexistent/token"),
        ..KubernetesConfig::default()
    }
}

fn str_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_map)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.to_string(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_for(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn records_are_enriched_from_the_api_and_excluded_pods_are_not_shipped() {
    let api = ApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tail = start(dir.path(), api_config(&api.url));
    // The pods are listed and watched before their files appear (as on a node: the
    // pod is scheduled, then its containers start).
    assert!(
        wait_for(|| api
            .requests()
            .iter()
            .any(|r| r.contains("watch=true") && r.starts_with("/api/v1/pods")))
        .await,
        "the pods are watched: {:?}",
        api.requests()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    write_log(
        dir.path(),
        "noisy-batch-28573920-x7k2p",
        "batch",
        "job",
        &["spam 1", "spam 2"],
    );
    write_log(
        dir.path(),
        "checkout-7f9c8d7b5-q4m8n",
        "shop",
        "checkout",
        &[r#"{"msg":"order placed"}"#],
    );
    let got = tail.records(1).await;
    let k = got[0].get("kubernetes").and_then(Value::as_map).unwrap();
    let s = |key: &str| k.get(key).and_then(Value::as_str).map(str::to_string);
    assert_eq!(
        got[0].get("msg").and_then(Value::as_str),
        Some("order placed")
    );
    assert_eq!(s("pod_name").as_deref(), Some("checkout-7f9c8d7b5-q4m8n"));
    assert_eq!(s("namespace_name").as_deref(), Some("shop"));
    assert_eq!(s("container_name").as_deref(), Some("checkout"));
    assert_eq!(s("container_id").as_deref(), Some(ID));
    assert_eq!(
        s("pod_id").as_deref(),
        Some("5b1c0c7e-3a0d-4d8f-9a57-2f1a8e0c4b11")
    );
    assert_eq!(s("host").as_deref(), Some("node-1"));
    assert_eq!(
        s("container_image").as_deref(),
        Some("registry.example.com/shop/checkout:1.14.2")
    );
    assert_eq!(
        str_map(k.get("labels")),
        [
            ("app", "checkout"),
            ("pod-template-hash", "7f9c8d7b5"),
            ("tier", "backend")
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
    );
    // Only the allowed annotations.
    assert_eq!(
        str_map(k.get("annotations"))
            .into_keys()
            .collect::<Vec<_>>(),
        ["team.example.com/oncall", "team.example.com/owner"]
    );
    assert_eq!(
        str_map(k.get("namespace_labels"))
            .get("env")
            .map(String::as_str),
        Some("prod")
    );
    assert_eq!(
        str_map(k.get("owner")),
        [("kind", "Deployment"), ("name", "checkout")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        "the ReplicaSet is resolved to its Deployment"
    );
    // The excluded pod's lines were read and dropped, and counted.
    assert!(wait_for(|| tail.metrics.snapshot().lines_dropped["excluded"] == 2).await);

    // A pod created after the start: the watch reports it, its file appears.
    api.pod_events
        .send(fixture("pod-added.json").replace('\n', ""))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_log(
        dir.path(),
        "db-0",
        "shop",
        "postgres",
        &["ready to accept connections"],
    );
    let got = tail.records(1).await;
    let k = got[0].get("kubernetes").and_then(Value::as_map).unwrap();
    assert_eq!(
        k.get("pod_id").and_then(Value::as_str),
        Some("0d0d0d0d-aaaa-4bbb-8ccc-dddddddddddd")
    );
    assert_eq!(
        k.get("container_image").and_then(Value::as_str),
        Some("postgres:16.3")
    );
    assert_eq!(
        str_map(k.get("owner")).get("kind").map(String::as_str),
        Some("StatefulSet")
    );
    assert!(
        tail.buffer.try_pop().is_none(),
        "nothing from the excluded pod"
    );
    // Only this node's pods were asked for.
    for r in api
        .requests()
        .iter()
        .filter(|r| r.starts_with("/api/v1/pods"))
    {
        assert!(r.contains("fieldSelector=spec.nodeName%3Dnode-1"), "{r}");
    }
    tail.stop().await;
}

#[tokio::test]
async fn without_a_reachable_api_records_keep_the_file_name_metadata() {
    // Nothing listens there: the watch fails and retries in the background.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "web-1", "default", "nginx", &["GET / 200"]);
    let tail = start(dir.path(), api_config(&format!("http://127.0.0.1:{port}")));
    let got = tail.records(1).await;
    let k = got[0].get("kubernetes").and_then(Value::as_map).unwrap();
    assert_eq!(k.get("pod_name").and_then(Value::as_str), Some("web-1"));
    assert_eq!(k.get("pod_id"), None);
    tail.stop().await;

    // An API server that takes the connection and never answers (a slow or hung
    // server): tailing does not wait for it either.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hung.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "web-1", "default", "nginx", &["GET / 200"]);
    let started = std::time::Instant::now();
    let tail = start(dir.path(), api_config(&format!("http://127.0.0.1:{port}")));
    let got = tail.records(1).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let k = got[0].get("kubernetes").and_then(Value::as_map).unwrap();
    assert_eq!(k.get("pod_name").and_then(Value::as_str), Some("web-1"));
    assert_eq!(k.get("pod_id"), None);
    tail.stop().await;
    drop(hung);

    // And with the API disabled.
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), "web-1", "default", "nginx", &["GET / 200"]);
    let config = KubernetesConfig {
        api: ApiMode::Disabled,
        ..KubernetesConfig::default()
    };
    let tail = start(dir.path(), config);
    let got = tail.records(1).await;
    assert_eq!(
        got[0]
            .get_path("kubernetes.namespace_name")
            .and_then(Value::as_str),
        Some("default")
    );
    tail.stop().await;
}

#[test]
fn pod_metadata_is_extracted_as_records_need_it() {
    let list: serde_json::Value = serde_json::from_str(&fixture("pods-list.json")).unwrap();
    let pods: Vec<Pod> = serde_json::from_value(list["items"].clone()).unwrap();
    let config = KubernetesConfig {
        annotations: vec!["team.example.com/owner".into()],
        labels: false,
        ..KubernetesConfig::default()
    };
    let checkout = PodMeta::from_pod(&pods[0], &config);
    assert!(checkout.labels.is_empty(), "labels: false");
    assert_eq!(checkout.annotations.len(), 1, "exact key only");
    assert_eq!(
        checkout.owner,
        Some(("Deployment".into(), "checkout".into()))
    );
    assert_eq!(checkout.images["envoy"], "envoyproxy/envoy:v1.30.1");
    assert!(!checkout.excluded);
    let batch = PodMeta::from_pod(&pods[1], &config);
    assert!(batch.excluded);
    assert_eq!(
        batch.owner,
        Some(("Job".into(), "noisy-batch-28573920".into()))
    );

    let labels = [("pod-template-hash".to_string(), "abc".to_string())].into();
    assert_eq!(
        cache::workload("ReplicaSet", "web-abc", &labels),
        ("Deployment".into(), "web".into())
    );
    assert_eq!(
        cache::workload("ReplicaSet", "web-xyz", &labels),
        ("ReplicaSet".into(), "web-xyz".into())
    );
    assert_eq!(
        cache::workload("DaemonSet", "agent", &labels),
        ("DaemonSet".into(), "agent".into())
    );

    let fields = checkout.fields("checkout", None);
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["pod_id", "host", "container_image", "annotations", "owner"]
    );
}

#[test]
fn config_checks_its_keys() {
    let ok: KubernetesConfig = serde_norway::from_str(
        "api: enabled\napi_server: https://10.0.0.1:6443\nnode_name: n1\nannotations: ['prometheus.io/*', team]\n",
    )
    .unwrap();
    ok.validate().unwrap();
    assert!(ok.allows_annotation("prometheus.io/scrape"));
    assert!(ok.allows_annotation("team"));
    assert!(!ok.allows_annotation("teams"));
    let bad = |yaml: &str| {
        serde_norway::from_str::<KubernetesConfig>(yaml)
            .unwrap()
            .validate()
            .unwrap_err()
            .key
    };
    assert_eq!(bad("api_server: kubernetes.default"), "api_server");
    assert_eq!(bad("annotations: ['a*b*']"), "annotations.0");
    assert_eq!(bad("node_name: ' '"), "node_name");
    assert!(serde_norway::from_str::<KubernetesConfig>("lables: true").is_err());
}

#[tokio::test]
async fn an_https_api_server_gets_a_tls_client() {
    // Nothing listens; building the client (TLS set up) must work and lookups must
    // not wait for the server.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = api_config(&format!("https://127.0.0.1:{port}"));
    let shutdown = Shutdown::new();
    let meta = KubernetesMetadata::start(&config, "test", &shutdown)
        .await
        .unwrap()
        .expect("enabled");
    assert_eq!(meta.lookup("shop", "web", "app"), None);
    shutdown.cancel();
}
