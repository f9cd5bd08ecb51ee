//! Reloading a forwarder ten times while 100,000 lines flow forwarder -> aggregator:
//! by SIGHUP and by the API, changing a filter, adding sinks, once with an invalid
//! config. Nothing is lost or sent twice; the unchanged tail source does not read
//! its file again and the unchanged forward sink keeps its one connection (the
//! counters say so); the invalid config is refused with its error while the old
//! topology goes on delivering.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use nagare_testkit::{free_port, http, wait_until};
use support::{Nagare, forward_aggregator, metric, signal};

const LINES: usize = 100_000;
const RELOADS: usize = 10;

/// The forwarder's config: the tail source and forward sink never change; the
/// filter stamps `round`, and `extra` null sinks come and go. Heartbeats go by
/// UDP, so every TCP connection the aggregator accepts carries data.
fn forwarder_config(
    data: &Path,
    logs: &Path,
    api: u16,
    port: u16,
    round: usize,
    extra: usize,
) -> String {
    let mut sinks = String::new();
    for i in 0..extra {
        sinks += &format!("  extra_{i}:\n    type: null\n    match: \"**\"\n");
    }
    format!(
        "data_dir: {data}
api:
  bind: 127.0.0.1:{api}
sources:
  files:
    type: tail
    paths: [\"{logs}/*.log\"]
    format: raw
    read_from_head: true
    kubernetes_metadata: false
filters:
  stamp:
    type: record_modifier
    match: \"**\"
    records: {{ round: {round} }}
sinks:
  to_aggregator:
    type: forward
    match: \"**\"
    servers: [{{host: 127.0.0.1, port: {port}}}]
    heartbeat_type: udp
{sinks}",
        data = data.display(),
        logs = logs.display(),
    )
}

fn reload_by_api(api: u16) -> http::Response {
    http::send(
        &format!("http://127.0.0.1:{api}"),
        "POST",
        "/api/v1/reload",
        &[],
        b"",
    )
    .unwrap()
}

#[test]
fn ten_reloads_while_lines_flow_lose_nothing_and_reopen_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("out.ndjson");
    let (port, agg_api, fwd_api) = (free_port(), free_port(), free_port());
    let sinks = format!(
        "  out:\n    type: file\n    match: \"**\"\n    path: {}\n",
        out.display()
    );
    let aggregator_config = format!(
        "api:\n  bind: 127.0.0.1:{agg_api}\n{}",
        forward_aggregator(&dir.path().join("agg"), port, &sinks)
    );
    let mut aggregator = Nagare::listening("aggregator", dir.path(), &aggregator_config, port);
    let nodes = r#"component_id="nodes",component_kind="source",component_type="forward""#;
    let accepted = format!("nagare_forward_source_connections_accepted_total{{{nodes}}}");
    // The start-up probe's connection, before the forwarder's.
    let probes = metric(agg_api, &accepted).unwrap();
    let fwd_data = dir.path().join("fwd");
    let mut forwarder = Nagare::start(
        "forwarder",
        dir.path(),
        &forwarder_config(&fwd_data, &logs, fwd_api, port, 0, 0),
    );

    let mut file = std::fs::File::create(logs.join("app.log")).unwrap();
    let per_round = LINES / RELOADS;
    let mut written_bytes = 0usize;
    for round in 0..RELOADS {
        let mut text = String::new();
        for seq in round * per_round..(round + 1) * per_round {
            text += &format!("{{\"seq\":{seq}}}\n");
        }
        file.write_all(text.as_bytes()).unwrap();
        written_bytes += text.len();
        // Lines are flowing while the forwarder reloads.
        std::thread::sleep(Duration::from_millis(150));
        let applied_before = metric(fwd_api, r#"nagare_config_reloads_total{result="applied"}"#);
        if round == 4 {
            // An invalid config: refused, the old topology keeps delivering.
            std::fs::write(
                &forwarder.config,
                "sources: {files: {type: tail}}\nsinks: {}\n",
            )
            .unwrap();
            let refused = reload_by_api(fwd_api);
            assert_eq!(refused.status, 422, "{}", refused.text());
            assert!(
                refused.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("forwarder.yaml"),
                "{}",
                refused.text()
            );
            continue;
        }
        std::fs::write(
            &forwarder.config,
            forwarder_config(&fwd_data, &logs, fwd_api, port, round + 1, round / 2),
        )
        .unwrap();
        if round % 2 == 0 {
            signal(forwarder.child.pid(), nix::sys::signal::Signal::SIGHUP);
        } else {
            let answer = reload_by_api(fwd_api);
            assert_eq!(answer.status, 200, "{}", answer.text());
            assert_eq!(
                answer.json()["changes"]["sources"]["changed"],
                serde_json::json!([])
            );
        }
        let target = applied_before.unwrap_or(0.0) + 1.0;
        let applied = wait_until(Duration::from_secs(20), || {
            forwarder.assert_running();
            metric(fwd_api, r#"nagare_config_reloads_total{result="applied"}"#) >= Some(target)
        });
        assert!(applied, "round {round}\n{}", forwarder.child.logs());
    }

    let delivered = wait_until(Duration::from_secs(60), || {
        aggregator.assert_running();
        support::seqs_in(&out).len() >= LINES
    });
    let seqs = support::seqs_in(&out);
    assert!(
        delivered,
        "{} of {LINES} lines\n{}",
        seqs.len(),
        forwarder.child.logs()
    );
    assert!(
        (0..LINES as u64).all(|s| seqs.contains_key(&s)),
        "a line is missing"
    );
    let copies: u32 = seqs.values().map(|n| n - 1).sum();
    assert_eq!(copies, 0, "lines sent twice");

    // The counters: 9 reloads applied, 1 refused; the tail read the file once;
    // the aggregator saw one connection from the forwarder.
    assert_eq!(
        metric(fwd_api, r#"nagare_config_reloads_total{result="applied"}"#),
        Some(9.0)
    );
    assert_eq!(
        metric(fwd_api, r#"nagare_config_reloads_total{result="failed"}"#),
        Some(1.0)
    );
    let tail = r#"component_id="files",component_kind="source",component_type="tail""#;
    assert_eq!(
        metric(fwd_api, &format!("nagare_tail_read_bytes_total{{{tail}}}")),
        Some(written_bytes as f64)
    );
    assert_eq!(
        metric(fwd_api, &format!("nagare_tail_read_lines_total{{{tail}}}")),
        Some(LINES as f64)
    );
    assert_eq!(
        metric(agg_api, &accepted),
        Some(probes + 1.0),
        "the forward connection was opened again"
    );
    // The changed filter took effect reload after reload.
    let rounds: std::collections::BTreeSet<String> = support::read_ndjson(&out)
        .iter()
        .map(|v| v["record"]["round"].to_string())
        .collect();
    assert!(rounds.len() >= 5, "the filter's stamps seen: {rounds:?}");
    assert!(forwarder.terminate(Duration::from_secs(20)).success());
}
