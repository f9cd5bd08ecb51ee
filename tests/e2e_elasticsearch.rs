//! The whole path with real processes: container log files -> `nagare` forwarder
//! (tail, CRI framing, JSON merge, kubernetes fields) -> Forward Protocol ->
//! `nagare` aggregator -> Elasticsearch `_bulk` (osmem-server, the OpenSearch API).

mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use nagare_core::EventTime;
use nagare_testkit::{Osmem, free_port, wait_until};
use support::{Nagare, forward_aggregator};

const FILES: usize = 4;
const LINES: usize = 10_000;

struct Pod {
    pod: String,
    namespace: String,
    container: String,
    id: String,
}

fn pods() -> Vec<Pod> {
    (0..FILES)
        .map(|i| Pod {
            pod: format!("shop-{i}-7d9f8b6c5-x{i}k2p"),
            namespace: if i % 2 == 0 {
                "shop".into()
            } else {
                "payments".into()
            },
            container: format!("app-{i}"),
            id: format!("{:064x}", 0xc0ffee_u64 + i as u64),
        })
        .collect()
}

/// The line number `n`'s time: 2024-05-01T12:00:00Z plus n milliseconds and a few
/// nanoseconds, so precision is checked too.
fn time_of(n: usize) -> EventTime {
    EventTime::new(
        1_714_564_800 + (n / 1000) as i64,
        ((n % 1000) * 1_000_000 + 7) as u32,
    )
}

/// Writes the numbered lines: even ones JSON, odd ones plain text, every 25th split
/// by the runtime into P pieces.
fn write_logs(dir: &std::path::Path, pods: &[Pod], from: usize, to: usize) {
    let mut per_file = vec![String::new(); pods.len()];
    for n in from..to {
        let out = &mut per_file[n % pods.len()];
        let ts = time_of(n).to_rfc3339();
        let message = if n % 2 == 0 {
            format!(
                "{{\"seq\":{n},\"level\":\"info\",\"msg\":\"order placed\",\"user\":{{\"id\":{}}}}}",
                n * 3
            )
        } else {
            format!("plain line seq={n} GET /cart 200")
        };
        if n % 25 == 0 {
            let (a, b) = message.split_at(message.len() / 2);
            let _ = writeln!(out, "{ts} stdout P {a}");
            let _ = writeln!(out, "{ts} stdout F {b}");
        } else {
            let stream = if n % 7 == 0 { "stderr" } else { "stdout" };
            let _ = writeln!(out, "{ts} {stream} F {message}");
        }
    }
    for (pod, text) in pods.iter().zip(per_file) {
        let name = format!(
            "{}_{}_{}-{}.log",
            pod.pod, pod.namespace, pod.container, pod.id
        );
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    }
}

#[test]
fn ten_thousand_cri_lines_reach_elasticsearch_exactly_once() {
    let osmem = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let pods = pods();

    let sinks = format!(
        "  es:\n    type: elasticsearch\n    match: \"kube.**\"\n    endpoints: [\"{url}\"]\n    batch:\n      max_events: 2000\n      timeout: 200ms\n",
        url = osmem.url(),
    );
    let aggregator_config = forward_aggregator(&dir.path().join("agg-data"), port, &sinks);
    let mut aggregator = Nagare::listening("aggregator", dir.path(), &aggregator_config, port);

    // Half the lines exist before the forwarder starts, half are appended while it runs.
    write_logs(&logs, &pods, 0, LINES / 2);
    let started = Instant::now();
    let mut forwarder = Nagare::start(
        "forwarder",
        dir.path(),
        &format!(
            "data_dir: {data}\n\
             sources:\n  containers:\n    type: tail\n    paths: [\"{logs}/*.log\"]\n    read_from_head: true\n    refresh_interval: 200ms\n    poll_interval: 50ms\n\
             sinks:\n  aggregator:\n    type: forward\n    match: \"**\"\n    servers: [{{host: 127.0.0.1, port: {port}}}]\n",
            data = dir.path().join("fwd-data").display(),
            logs = logs.display(),
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    write_logs(&logs, &pods, LINES / 2, LINES);

    let all_in = wait_until(Duration::from_secs(90), || {
        forwarder.assert_running();
        aggregator.assert_running();
        osmem.count("logstash-*") >= LINES as u64
    });
    let took = started.elapsed();
    assert!(
        all_in,
        "only {} of {LINES} documents arrived\n{}\n{}",
        osmem.count("logstash-*"),
        forwarder.child.logs(),
        aggregator.child.logs()
    );
    println!(
        "end to end: {LINES} records in {:.2} s = {:.0} records/s (tail -> forward -> aggregator -> _bulk)",
        took.as_secs_f64(),
        LINES as f64 / took.as_secs_f64()
    );

    // Graceful shutdown of both: exit 0, nothing more sent, no duplicate.
    assert!(
        forwarder.terminate(Duration::from_secs(30)).success(),
        "{}",
        forwarder.child.logs()
    );
    assert!(
        aggregator.terminate(Duration::from_secs(30)).success(),
        "{}",
        aggregator.child.logs()
    );
    assert_eq!(
        osmem.count("logstash-*"),
        LINES as u64,
        "exactly {LINES} documents, no duplicates"
    );
    assert_eq!(osmem.indices(), vec!["logstash-2024.05.01".to_string()]);

    let docs = osmem.documents("logstash-*");
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for d in &docs {
        let s = &d.source;
        let n = match s["seq"].as_u64() {
            Some(n) => {
                // JSON message: merged at top level, no `log` left.
                assert_eq!(s["level"], "info", "{s}");
                assert_eq!(s["msg"], "order placed", "{s}");
                assert_eq!(s["user"]["id"].as_u64(), Some(n * 3), "{s}");
                assert!(s.get("log").is_none(), "merged JSON drops `log`: {s}");
                n as usize
            }
            None => {
                let log = s["log"]
                    .as_str()
                    .unwrap_or_else(|| panic!("plain line has `log`: {s}"));
                let n: usize = log
                    .strip_prefix("plain line seq=")
                    .and_then(|r| r.split(' ').next())
                    .and_then(|x| x.parse().ok())
                    .unwrap_or_else(|| panic!("unexpected log text {log:?}"));
                assert_eq!(log, format!("plain line seq={n} GET /cart 200"));
                n
            }
        };
        *seen.entry(n).or_default() += 1;
        assert_eq!(s["@timestamp"], time_of(n).to_rfc3339(), "{s}");
        let stream = if n % 25 != 0 && n % 7 == 0 {
            "stderr"
        } else {
            "stdout"
        };
        assert_eq!(s["stream"], stream, "{s}");
        let pod = &pods[n % FILES];
        let k = &s["kubernetes"];
        assert_eq!(k["pod_name"], pod.pod.as_str(), "{s}");
        assert_eq!(k["namespace_name"], pod.namespace.as_str(), "{s}");
        assert_eq!(k["container_name"], pod.container.as_str(), "{s}");
        assert_eq!(k["container_id"], pod.id.as_str(), "{s}");
    }
    assert_eq!(seen.len(), LINES, "every line number is present");
    assert!(seen.values().all(|&c| c == 1), "no line is there twice");
}

/// An index per namespace, through the real binary: records of three namespaces in
/// over the http source land in three indices with the right counts; records whose
/// namespace is missing or not a legal index name land in `index_fallback` (counted
/// in `/metrics`); a second sink without a fallback sends those to its dead-letter
/// output with the reason.
#[test]
fn an_index_per_namespace_with_a_fallback() {
    let osmem = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let api = free_port();
    let dead = dir.path().join("strict-dead.ndjson");
    let config = format!(
        "data_dir: {data}\napi:\n  bind: 127.0.0.1:{api}\n\
         sources:\n  in:\n    type: http\n    bind: 127.0.0.1:{port}\n\
         sinks:\n\
        \x20 es:\n    type: elasticsearch\n    match: \"kube.**\"\n    endpoints: [\"{url}\"]\n\
        \x20   index: \"logs-{{kubernetes.namespace_name}}-%Y.%m.%d\"\n\
        \x20   index_fallback: \"logs-unknown-%Y.%m.%d\"\n\
        \x20   batch: {{ timeout: 200ms }}\n\
        \x20 strict:\n    type: elasticsearch\n    match: \"kube.**\"\n    endpoints: [\"{url}\"]\n\
        \x20   index: \"strict-{{kubernetes.namespace_name}}\"\n\
        \x20   batch: {{ timeout: 200ms }}\n\
        \x20   dead_letter: {{ path: {dead} }}\n",
        data = dir.path().join("data").display(),
        url = osmem.url(),
        dead = dead.display(),
    );
    let mut nagare = Nagare::listening("aggregator", dir.path(), &config, port);

    // 2024-05-01T12:00:00Z.
    let time = 1_714_564_800;
    let mut records = Vec::new();
    for (namespace, count) in [("shop", 30), ("payments", 20), ("kube-system", 10)] {
        for n in 0..count {
            records.push(serde_json::json!({
                "time": time, "n": n, "log": format!("{namespace} line {n}"),
                "kubernetes": { "namespace_name": namespace, "pod_name": "web-1" },
            }));
        }
    }
    for n in 0..4 {
        records.push(serde_json::json!({ "time": time, "n": n, "log": "no metadata" }));
    }
    for n in 0..3 {
        records.push(serde_json::json!({
            "time": time, "n": n, "log": "odd namespace",
            "kubernetes": { "namespace_name": "has space", "pod_name": "web-1" },
        }));
    }
    let status = reqwest::blocking::Client::new()
        .post(format!("http://127.0.0.1:{port}/kube.app"))
        .json(&records)
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 200);

    let expected = [
        ("logs-kube-system-2024.05.01", 10),
        ("logs-payments-2024.05.01", 20),
        ("logs-shop-2024.05.01", 30),
        ("logs-unknown-2024.05.01", 7),
        ("strict-kube-system", 10),
        ("strict-payments", 20),
        ("strict-shop", 30),
    ];
    let total: u64 = expected.iter().map(|(_, n)| n).sum();
    let arrived = wait_until(Duration::from_secs(30), || {
        nagare.assert_running();
        let dead_lines = std::fs::read_to_string(&dead)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        osmem.count("logs-*") + osmem.count("strict-*") >= total && dead_lines >= 7
    });
    assert!(
        arrived,
        "{} of {total} documents, indices {:?}\n{}",
        osmem.count("logs-*") + osmem.count("strict-*"),
        osmem.indices(),
        nagare.child.logs()
    );
    let mut indices = osmem.indices();
    indices.sort();
    assert_eq!(
        indices,
        expected
            .iter()
            .map(|(i, _)| i.to_string())
            .collect::<Vec<_>>()
    );
    for (index, count) in expected {
        assert_eq!(osmem.count(index), count, "{index}");
    }
    // The fallback's documents are the records without a usable namespace.
    for d in osmem.documents("logs-unknown-*") {
        let log = d.source["log"].as_str().unwrap_or_default();
        assert!(
            log == "no metadata" || log == "odd namespace",
            "{}",
            d.source
        );
    }

    // Without a fallback: dead-lettered, each with why.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&dead)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    let missing = lines
        .iter()
        .filter(|l| {
            l["reason"]
                == "index `strict-{kubernetes.namespace_name}`: the record has no field `kubernetes.namespace_name`, and index_fallback is not set"
        })
        .count();
    let illegal = lines
        .iter()
        .filter(|l| {
            l["reason"]
                == "index `strict-{kubernetes.namespace_name}`: index name `strict-has space` must not contain ` `, and index_fallback is not set"
        })
        .count();
    assert_eq!((missing, illegal), (4, 3), "{lines:?}");

    let metrics = reqwest::blocking::get(format!("http://127.0.0.1:{api}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let fallbacks = |id: &str| {
        let head = format!(
            "nagare_elasticsearch_index_fallbacks_total{{component_id=\"{id}\",component_kind=\"sink\",component_type=\"elasticsearch\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(head.as_str()))
            .map(str::to_string)
    };
    assert_eq!(fallbacks("es").as_deref(), Some("7"), "{metrics}");
    assert_eq!(fallbacks("strict").as_deref(), Some("0"), "{metrics}");
    assert!(
        nagare.terminate(Duration::from_secs(30)).success(),
        "{}",
        nagare.child.logs()
    );
}
