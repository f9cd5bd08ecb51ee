//! The admin API of real `nagare` processes: a forwarder tailing a file and an
//! aggregator writing a file, each serving `/healthz`, `/readyz`, `/metrics` and
//! `/api/v1/components`; the counts match what went through; `promtool check
//! metrics` passes on the exposition; a real Prometheus scrapes both, and answers
//! every query of the Grafana dashboard.

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use nagare_testkit::{Osmem, Prometheus, free_port, http, promtool_check, wait_until};
use support::{Nagare, forward_aggregator};

const LINES: usize = 500;
/// Lines the aggregator's grep filter drops: `line 10` to `line 19`.
const DROPPED: usize = 10;

fn get(port: u16, path: &str) -> http::Response {
    http::send(&format!("http://127.0.0.1:{port}"), "GET", path, &[], b"")
        .unwrap_or_else(|e| panic!("GET {path} on port {port}: {e}"))
}

/// The value of the series `name{labels}` in an exposition.
fn value(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let head = format!("{name}{{{labels}}} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.parse().ok())
}

/// The names in the table under "### Metrics reference" in docs/operations.md.
fn documented_metrics() -> std::collections::BTreeSet<String> {
    let doc =
        std::fs::read_to_string(nagare_testkit::paths::repo_root().join("docs/operations.md"))
            .unwrap();
    let section = doc
        .split("### Metrics reference")
        .nth(1)
        .expect("docs/operations.md has a metrics reference");
    section
        .lines()
        .skip_while(|l| !l.starts_with("| name"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split('`').nth(1))
        .map(str::to_string)
        .collect()
}

fn component(kind: &str, id: &str, r#type: &str) -> String {
    format!(r#"component_id="{id}",component_kind="{kind}",component_type="{type}""#)
}

/// Every query of deploy/grafana/nagare-dashboard.json: each panel target's `expr`
/// and each variable's `label_values(...)` selector, with the panel or variable it
/// belongs to.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = nagare_testkit::paths::repo_root().join("deploy/grafana/nagare-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap().to_string();
            out.push((title, target["expr"].as_str().unwrap().to_string()));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            // label_values(SELECTOR, label): the selector is PromQL.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.rsplit_once(','))
                .map(|(selector, _)| selector.to_string())
                .unwrap_or_else(|| panic!("variable query {query:?} is not label_values"));
            out.push((format!("${}", variable["name"].as_str().unwrap()), inner));
        }
    }
    out
}

/// A dashboard expression with Grafana's variables replaced, as Prometheus gets it.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$instance", ".*")
        .replace("$component", ".*")
}

/// The metric names (`nagare_*`, `process_*`) an expression uses.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let word: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        // Skip label values: a word right after a quote.
        let quoted = rest[..at].ends_with('"');
        if !quoted && (word.starts_with("nagare_") || word.starts_with("process_")) {
            names.push(word.clone());
        }
        rest = &rest[at + word.len()..];
    }
    assert!(!names.is_empty(), "no nagare metric in {expr}");
    names
}

#[test]
fn probes_metrics_and_components_count_what_went_through() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = String::new();
    for n in 0..LINES {
        let _ = writeln!(text, "line {n} of the admin API test");
    }
    std::fs::write(logs.join("app.log"), text).unwrap();
    let out = dir.path().join("out.ndjson");

    let osmem = Osmem::start();
    let (port, agg_api, fwd_api) = (free_port(), free_port(), free_port());
    let sinks = format!(
        "  out:\n    type: file\n    match: \"**\"\n    path: {}\n\
         \x20 search:\n    type: elasticsearch\n    match: \"**\"\n    endpoints: [\"{}\"]\n    batch:\n      timeout: 200ms\n",
        out.display(),
        osmem.url(),
    );
    let config = format!(
        "api:\n  bind: 127.0.0.1:{agg_api}\n\
         filters:\n  drop_some:\n    type: grep\n    match: \"**\"\n    exclude:\n      - {{ key: log, pattern: \"^line 1[0-9] \" }}\n{}",
        forward_aggregator(&dir.path().join("agg"), port, &sinks)
    );
    let mut aggregator = Nagare::listening("aggregator", dir.path(), &config, port);
    let mut forwarder = Nagare::start(
        "forwarder",
        dir.path(),
        &format!(
            "data_dir: {data}\napi:\n  bind: 127.0.0.1:{fwd_api}\n\
             sources:\n  files:\n    type: tail\n    paths: [\"{logs}/*.log\"]\n    read_from_head: true\n    refresh_interval: 200ms\n\
             sinks:\n  to_aggregator:\n    type: forward\n    match: \"**\"\n    servers: [{{host: 127.0.0.1, port: {port}}}]\n",
            data = dir.path().join("fwd").display(),
            logs = logs.display(),
        ),
    );

    let ready = wait_until(Duration::from_secs(20), || {
        forwarder.assert_running();
        http::send(
            &format!("http://127.0.0.1:{fwd_api}"),
            "GET",
            "/readyz",
            &[],
            b"",
        )
        .is_ok_and(|r| r.status == 200)
    });
    assert!(
        ready,
        "the forwarder never got ready\n{}",
        forwarder.child.logs()
    );
    assert_eq!(get(fwd_api, "/readyz").json()["status"], "ready");
    assert_eq!(get(agg_api, "/healthz").json()["status"], "ok");

    let delivered = wait_until(Duration::from_secs(30), || {
        aggregator.assert_running();
        support::read_ndjson(&out).len() >= LINES - DROPPED
    });
    assert!(
        delivered,
        "{}\n{}",
        forwarder.child.logs(),
        aggregator.child.logs()
    );

    // Counters are read at each scrape: wait for the acks to be counted too.
    let fwd_sent = component("sink", "to_aggregator", "forward");
    let counted = wait_until(Duration::from_secs(10), || {
        let fwd = get(fwd_api, "/metrics").text();
        value(&fwd, "nagare_component_sent_events_total", &fwd_sent) == Some(LINES as f64)
            && value(
                &fwd,
                "nagare_tail_checkpoint_pending_lines",
                &component("source", "files", "tail"),
            ) == Some(0.0)
    });
    let fwd = get(fwd_api, "/metrics");
    assert!(counted, "{}", fwd.text());
    assert_eq!(
        http::header(&fwd.headers, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let fwd = fwd.text();
    let tail = component("source", "files", "tail");
    assert_eq!(
        value(&fwd, "nagare_component_received_events_total", &tail),
        Some(LINES as f64),
        "{fwd}"
    );
    assert!(value(&fwd, "nagare_component_received_bytes_total", &tail).unwrap() > 0.0);
    assert!(value(&fwd, "nagare_component_sent_bytes_total", &fwd_sent).unwrap() > 0.0);
    assert_eq!(
        value(
            &fwd,
            "nagare_buffer_chunks",
            &component("sink", "to_aggregator", "forward")
        ),
        Some(0.0),
        "{fwd}"
    );
    assert!(fwd.contains("\nprocess_resident_memory_bytes "), "{fwd}");
    assert!(fwd.contains("nagare_build_info{version=\""), "{fwd}");

    let agg = get(agg_api, "/metrics").text();
    let source = component("source", "nodes", "forward");
    assert_eq!(
        value(&agg, "nagare_component_received_events_total", &source),
        Some(LINES as f64),
        "{agg}"
    );
    let es = component("sink", "search", "elasticsearch");
    let counted = wait_until(Duration::from_secs(10), || {
        let agg = get(agg_api, "/metrics").text();
        value(
            &agg,
            "nagare_component_sent_events_total",
            &component("sink", "out", "file"),
        ) == Some((LINES - DROPPED) as f64)
            && value(&agg, "nagare_component_sent_events_total", &es)
                == Some((LINES - DROPPED) as f64)
    });
    assert!(counted, "{}", get(agg_api, "/metrics").text());
    let agg = get(agg_api, "/metrics").text();
    per_type_metrics_match_what_happened(&fwd, &agg, port);
    let indexed: u64 = osmem.indices().iter().map(|i| osmem.count(i)).sum();
    assert_eq!(indexed, (LINES - DROPPED) as u64);

    // Prometheus' own lint.
    for exposition in [&fwd, &agg] {
        if let Err(problems) = promtool_check(exposition) {
            panic!("promtool check metrics: {problems}\n{exposition}");
        }
    }

    // docs/operations.md's reference names every metric served, and only those.
    let served: std::collections::BTreeSet<String> = [&fwd, &agg]
        .iter()
        .flat_map(|e| e.lines())
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let documented = documented_metrics();
    assert_eq!(
        served, documented,
        "the metrics served (left) and those docs/operations.md lists (right) differ"
    );

    // The topology and counts as JSON.
    let components = get(agg_api, "/api/v1/components").json();
    let list = components["components"].as_array().unwrap();
    let out_sink = list
        .iter()
        .find(|c| c["id"] == "out")
        .expect("the sink is listed");
    assert_eq!(out_sink["kind"], "sink");
    assert_eq!(out_sink["type"], "file");
    assert_eq!(out_sink["match"], "**");
    assert_eq!(out_sink["sent_events"], (LINES - DROPPED) as u64);
    assert_eq!(out_sink["errors"], 0);
    assert_eq!(out_sink["discarded"], 0);
    let buffer = &out_sink["buffer"];
    assert_eq!(buffer["chunks"], 0, "{buffer}");
    assert_eq!(buffer["bytes"], 0, "{buffer}");
    assert_eq!(buffer["in_flight_chunks"], 0, "{buffer}");
    assert!(buffer["limit_bytes"].as_u64().unwrap() > 0, "{buffer}");
    assert_eq!(buffer["oldest_chunk_age_seconds"], 0.0, "{buffer}");
    let nodes = list
        .iter()
        .find(|c| c["id"] == "nodes")
        .expect("the source is listed");
    assert_eq!(nodes["received_events"], LINES as u64);
    assert!(nodes.get("buffer").is_none(), "{nodes}");
    assert!(nodes["details"]["connections"].is_number(), "{nodes}");
    let filter = list
        .iter()
        .find(|c| c["id"] == "drop_some")
        .expect("the filter is listed");
    assert_eq!(filter["kind"], "filter");
    assert_eq!(filter["type"], "grep");
    assert_eq!(filter["received_events"], LINES as u64);
    assert_eq!(filter["sent_events"], (LINES - DROPPED) as u64);
    let search = list
        .iter()
        .find(|c| c["id"] == "search")
        .expect("the elasticsearch sink is listed");
    assert_eq!(search["details"]["bulk_errors"], 0.0, "{search}");
    let fwd_components = get(fwd_api, "/api/v1/components").json();
    let fwd_list = fwd_components["components"].as_array().unwrap();
    let files = fwd_list.iter().find(|c| c["id"] == "files").unwrap();
    assert_eq!(files["details"]["files_open"], 1.0, "{files}");
    assert_eq!(files["details"]["files_paused"], 0.0, "{files}");
    assert_eq!(files["details"]["rotations"], 0.0, "{files}");
    let to_agg = fwd_list
        .iter()
        .find(|c| c["id"] == "to_aggregator")
        .unwrap();
    assert_eq!(to_agg["details"]["servers_up"], 1.0, "{to_agg}");
    assert_eq!(to_agg["details"]["servers_down"], 0.0, "{to_agg}");
    assert_eq!(to_agg["buffer"]["chunks"], 0, "{to_agg}");

    // Anything else is a 404 that lists the endpoints; writes are refused.
    let missing = get(agg_api, "/nope");
    assert_eq!(missing.status, 404);
    assert!(missing.text().contains("/readyz"), "{}", missing.text());
    let post = http::send(
        &format!("http://127.0.0.1:{agg_api}"),
        "POST",
        "/metrics",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(post.status, 405);

    // A real Prometheus scrapes both.
    let prometheus = Prometheus::start(&[
        format!("127.0.0.1:{fwd_api}"),
        format!("127.0.0.1:{agg_api}"),
    ]);
    let scraped = wait_until(Duration::from_secs(30), || {
        let up = prometheus.query("up");
        up.len() == 2 && up.iter().all(|(_, v)| *v == 1.0)
    });
    assert!(
        scraped,
        "up: {:?}\n{}",
        prometheus.query("up"),
        prometheus.logs()
    );
    let sent = prometheus.query(r#"nagare_component_sent_events_total{component_id="out"}"#);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, (LINES - DROPPED) as f64);
    assert_eq!(sent[0].0["component_type"], "file");
    let read = prometheus.query("nagare_tail_read_lines_total");
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].1, LINES as f64);
    let up = prometheus.query("nagare_forward_sink_server_up");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0].0["server"], format!("127.0.0.1:{port}"));
    assert_eq!(up[0].1, 1.0);

    // The Grafana dashboard asks only for metrics that exist, in PromQL that
    // Prometheus parses, and every panel shows something for these two processes.
    let served_samples: std::collections::BTreeSet<&str> = [&fwd, &agg]
        .iter()
        .flat_map(|e| e.lines())
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let queries = dashboard_queries();
    assert!(queries.len() >= 15, "{queries:?}");
    for (panel, expr) in &queries {
        for name in metric_names(expr) {
            assert!(
                served_samples.contains(name.as_str()),
                "the dashboard's {panel:?} asks for {name}, which neither process serves: {expr}"
            );
        }
    }
    let mut empty = Vec::new();
    let answered = wait_until(Duration::from_secs(30), || {
        empty = queries
            .iter()
            .filter(|(_, expr)| prometheus.query(&as_promql(expr)).is_empty())
            .map(|(panel, _)| panel.clone())
            .collect();
        empty.is_empty()
    });
    assert!(answered, "dashboard panels with no data: {empty:?}");

    assert!(forwarder.terminate(Duration::from_secs(20)).success());
    assert!(aggregator.terminate(Duration::from_secs(20)).success());
}

/// The per-type metrics of both processes against what the test did: one file of
/// `LINES` lines tailed, sent to one server, `DROPPED` lines dropped by the filter,
/// the rest indexed.
fn per_type_metrics_match_what_happened(fwd: &str, agg: &str, port: u16) {
    let tail = component("source", "files", "tail");
    let file_bytes: usize = (0..LINES)
        .map(|n| format!("line {n} of the admin API test\n").len())
        .sum();
    let expect = |text: &str, name: &str, labels: &str, want: f64| {
        assert_eq!(
            value(text, name, labels),
            Some(want),
            "{name}{{{labels}}}\n{text}"
        );
    };
    expect(fwd, "nagare_tail_read_lines_total", &tail, LINES as f64);
    expect(
        fwd,
        "nagare_tail_read_bytes_total",
        &tail,
        file_bytes as f64,
    );
    expect(fwd, "nagare_tail_files_open", &tail, 1.0);
    expect(fwd, "nagare_tail_files_waiting", &tail, 0.0);
    expect(fwd, "nagare_tail_rotations_total", &tail, 0.0);
    expect(fwd, "nagare_tail_paused", &tail, 0.0);
    expect(fwd, "nagare_tail_checkpoint_pending_lines", &tail, 0.0);
    expect(fwd, "nagare_tail_checkpoint_lag_seconds", &tail, 0.0);

    let server = format!(
        "{},server=\"127.0.0.1:{port}\"",
        component("sink", "to_aggregator", "forward")
    );
    expect(fwd, "nagare_forward_sink_server_up", &server, 1.0);
    expect(fwd, "nagare_forward_sink_ack_timeouts_total", &server, 0.0);
    expect(
        fwd,
        "nagare_forward_sink_handshake_failures_total",
        &server,
        0.0,
    );
    let acks = value(fwd, "nagare_forward_sink_acks_received_total", &server).unwrap();
    assert!(acks > 0.0, "{fwd}");

    let source = component("source", "nodes", "forward");
    expect(agg, "nagare_forward_source_acks_sent_total", &source, acks);
    expect(
        agg,
        "nagare_forward_source_handshake_failures_total",
        &source,
        0.0,
    );
    expect(
        agg,
        "nagare_forward_source_refused_frames_total",
        &source,
        0.0,
    );
    assert!(
        value(
            agg,
            "nagare_forward_source_connections_accepted_total",
            &source
        )
        .unwrap()
            >= 1.0
    );

    let filter = component("filter", "drop_some", "grep");
    expect(
        agg,
        "nagare_filter_dropped_events_total",
        &filter,
        DROPPED as f64,
    );
    expect(
        agg,
        "nagare_component_received_events_total",
        &filter,
        LINES as f64,
    );
    expect(
        agg,
        "nagare_component_sent_events_total",
        &filter,
        (LINES - DROPPED) as f64,
    );

    let es = component("sink", "search", "elasticsearch");
    let items = |class: &str| format!("{es},status=\"{class}\"");
    expect(
        agg,
        "nagare_elasticsearch_bulk_items_total",
        &items("2xx"),
        (LINES - DROPPED) as f64,
    );
    for class in ["409", "429", "4xx", "5xx"] {
        expect(
            agg,
            "nagare_elasticsearch_bulk_items_total",
            &items(class),
            0.0,
        );
    }
    expect(agg, "nagare_elasticsearch_index_fallbacks_total", &es, 0.0);
    let bulks = value(agg, "nagare_elasticsearch_bulk_requests_total", &es).unwrap();
    assert!(bulks >= 1.0, "{agg}");
    expect(agg, "nagare_sink_requests_total", &es, bulks);
    expect(agg, "nagare_sink_request_retries_total", &es, 0.0);
    expect(agg, "nagare_buffer_oldest_chunk_age_seconds", &es, 0.0);
    expect(agg, "nagare_buffer_queued_events", &es, 0.0);
    expect(agg, "nagare_buffer_retried_chunks_total", &es, 0.0);
}

#[test]
fn a_bind_that_is_taken_fails_the_start_and_the_api_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let sinks = "  out:\n    type: null\n    match: \"**\"\n";
    let config = format!(
        "api:\n  bind: 127.0.0.1:{port}\n{}",
        forward_aggregator(&dir.path().join("a"), free_port(), sinks)
    );
    let mut refused = Nagare::start("taken", dir.path(), &config);
    let status = refused
        .child
        .wait_timeout(Duration::from_secs(20))
        .expect("nagare exits when api.bind is taken");
    assert!(!status.success());
    let logs = support::plain(&refused.child.logs());
    assert!(
        logs.contains(&format!("api.bind: cannot listen on 127.0.0.1:{port}")),
        "{logs}"
    );

    let off = free_port();
    let fwd = free_port();
    let config = format!(
        "api:\n  enabled: false\n  bind: 127.0.0.1:{off}\n{}",
        forward_aggregator(&dir.path().join("b"), fwd, sinks)
    );
    let mut running = Nagare::listening("off", dir.path(), &config, fwd);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", off)).is_err(),
        "nothing listens when the API is off"
    );
    assert!(running.terminate(Duration::from_secs(20)).success());
}
