//! What the Elasticsearch connection and template tests share: a config from YAML,
//! Kubernetes-style records, the sink started on a buffer, delivery and log waits.

#![allow(dead_code)]

use std::time::Duration;

use base64::Engine;
use nagare_aggregator::sinks::elasticsearch::{self, ElasticsearchConfig};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::{ConfigDocument, HumanDuration};
use nagare_core::receipt::Delivery;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{chunk_of, sink_context, with_receipt};
use nagare_core::{EventTime, Map, Value};
use nagare_testkit::{LogCapture, Osmem};
use tokio::task::JoinHandle;

/// 2024-01-15T10:30:00Z.
pub const T0: i64 = 1_705_314_600;

/// A validated sink config: `yaml` with small batches and a short timeout.
pub fn es_config(yaml: &str) -> ElasticsearchConfig {
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

/// A record with a message and Kubernetes metadata.
pub fn record(i: usize) -> Map {
    let mut m = Map::new();
    m.insert("message", format!("line {i}"));
    let mut k8s = Map::new();
    k8s.insert("namespace_name", "payments");
    k8s.insert("pod_name", format!("api-{i}"));
    m.insert("kubernetes", Value::Map(k8s));
    m
}

/// A sink running on a task.
pub struct Running {
    pub buffer: Buffer,
    pub abort: Shutdown,
    pub task: JoinHandle<Result<(), elasticsearch::ElasticsearchSinkError>>,
    pub _data: tempfile::TempDir,
}

/// A memory buffer with short waits between retries.
pub fn buffer() -> Buffer {
    Buffer::new(
        "es",
        &BufferConfig {
            retry_wait: HumanDuration::millis(50),
            retry_max_interval: HumanDuration::millis(200),
            ..BufferConfig::default()
        },
    )
}

/// Starts the sink on `buffer`.
pub fn start(config: ElasticsearchConfig, buffer: Buffer) -> Running {
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
pub async fn deliver(sink: &Running, n: usize) {
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

/// Waits (10 s at most) for a log line with every one of `needles`.
pub async fn wait_for(logs: &LogCapture, needles: &[&str]) -> String {
    logs.wait_for(Duration::from_secs(10), needles)
        .await
        .unwrap_or_else(|| panic!("no log line with {needles:?}: {:#?}", logs.lines()))
}

/// An API key in the form Elasticsearch issues (base64 of `id:api_key`).
pub fn api_key() -> String {
    base64::engine::general_purpose::STANDARD.encode("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw")
}

/// The composable template `name` as osmem stores it.
pub fn template_of(os: &Osmem, name: &str) -> serde_json::Value {
    let r = os
        .request("GET", &format!("/_index_template/{name}"), None)
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["index_templates"][0]["index_template"].clone()
}
