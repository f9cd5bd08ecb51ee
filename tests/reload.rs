//! Reloading the config of a running `nagare`: SIGHUP, `POST /api/v1/reload` (behind
//! `api.token`) and `--watch-config`. An invalid config is refused and the pipeline
//! keeps running as it was; a valid one is applied by difference: an unchanged
//! tail source keeps its files and position (no line twice), an unchanged forward
//! source keeps its client's connection open, an unchanged sink keeps running, a
//! changed sink is restarted on its buffer, an added one starts and a removed one
//! stops; nothing is lost.

mod support;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nagare_core::forward::{decode_ack, encode_message};
use nagare_core::{EventTime, Map};
use nagare_testkit::{free_port, http, wait_until};
use support::{Nagare, metric, signal};

const TOKEN: &str = "reload-token-1";

/// A test's folders (data, tailed logs, sink output) and ports.
struct Setup {
    dir: tempfile::TempDir,
    data: PathBuf,
    logs: PathBuf,
    out: PathBuf,
    port: u16,
    api: u16,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let (data, logs, out) = (
            dir.path().join("data"),
            dir.path().join("logs"),
            dir.path().join("out"),
        );
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        Setup {
            dir,
            data,
            logs,
            out,
            port: free_port(),
            api: free_port(),
        }
    }
}

/// The config: a forward and a tail source; sinks `kept` and `changed` (and the
/// YAML of more sinks in `extra`), `changed` writing to `changed_to`.
fn config(s: &Setup, changed_to: &str, extra: &str) -> String {
    format!(
        "data_dir: {data}
api:
  bind: 127.0.0.1:{api}
  token: {TOKEN}
sources:
  nodes:
    type: forward
    bind: 127.0.0.1:{port}
  files:
    type: tail
    paths: [\"{logs}/*.log\"]
    read_from_head: true
    refresh_interval: 200ms
sinks:
  kept:
    type: file
    match: \"**\"
    path: {out}/kept.ndjson
  changed:
    type: file
    match: \"**\"
    path: {out}/{changed_to}
{extra}",
        data = s.data.display(),
        api = s.api,
        port = s.port,
        logs = s.logs.display(),
        out = s.out.display(),
    )
}

fn request(api: u16, method: &str, path: &str, token: Option<&str>) -> http::Response {
    let headers: Vec<(String, String)> = token
        .map(|t| vec![("authorization".to_string(), format!("Bearer {t}"))])
        .unwrap_or_default();
    http::send(
        &format!("http://127.0.0.1:{api}"),
        method,
        path,
        &headers,
        b"",
    )
    .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

fn component_ids(api: u16) -> Vec<String> {
    request(api, "GET", "/api/v1/components", None).json()["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}/{}",
                c["kind"].as_str().unwrap(),
                c["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// Appends lines `<phase>-0 .. <phase>-<n>` to the tailed file.
fn write_lines(logs: &Path, phase: &str, n: usize) {
    let mut text = String::new();
    for i in 0..n {
        let _ = writeln!(text, "{phase}-{i}");
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join("app.log"))
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Sends one event `{"line": "<phase>-net"}` on the open connection and waits for
/// its ack.
fn send_event(conn: &mut TcpStream, phase: &str) {
    let mut record = Map::new();
    record.insert("line", format!("{phase}-net"));
    let chunk = format!("chunk-{phase}");
    conn.write_all(&encode_message(
        "net",
        EventTime::new(1_700_000_000, 0),
        &record,
        Some(&chunk),
    ))
    .expect("the forward connection is still open");
    let mut buf = Vec::new();
    loop {
        if let Ok(Some((acked, _))) = decode_ack(&buf) {
            assert_eq!(acked, chunk);
            return;
        }
        let mut part = [0u8; 256];
        let n = conn
            .read(&mut part)
            .expect("the ack arrives on the same connection");
        assert!(n > 0, "the aggregator closed the forward connection");
        buf.extend_from_slice(&part[..n]);
    }
}

/// How often each line of `phase` (the tailed `<phase>-N` and the forwarded
/// `<phase>-net`) is in the NDJSON file: (lines seen, most copies of one).
fn phase_in(path: &Path, phase: &str) -> (usize, u32) {
    let mut counts = std::collections::HashMap::new();
    for v in support::read_ndjson(path) {
        let text = v.to_string();
        let prefix = format!("{phase}-");
        if let Some(at) = text.find(&prefix) {
            let key: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            *counts.entry(key).or_insert(0u32) += 1;
        }
    }
    (counts.len(), counts.values().copied().max().unwrap_or(0))
}

const N: usize = 200;

#[test]
fn reloads_apply_by_difference_and_refuse_what_does_not_load() {
    let s = Setup::new();
    let (dir, logs, out) = (&s.dir, &s.logs, &s.out);
    let mut nagare = Nagare::start("nagare", dir.path(), &config(&s, "b.ndjson", ""));
    support::wait_listening(&mut nagare, s.port);
    let mut conn = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();

    // Phase 1, before any reload.
    write_lines(logs, "p1", N);
    send_event(&mut conn, "p1");
    let all = |file: &str, phase: &str| phase_in(&out.join(file), phase).0 == N + 1;
    assert!(
        wait_until(Duration::from_secs(30), || all("kept.ndjson", "p1")
            && all("b.ndjson", "p1")),
        "{}",
        nagare.child.logs()
    );

    // An invalid config: refused by SIGHUP and by the API, the pipeline untouched.
    std::fs::write(
        &nagare.config,
        config(
            &s,
            "c.ndjson",
            "  broken:\n    type: file\n    match: \"**\"\n    bogus_key: 1\n",
        ),
    )
    .unwrap();
    signal(nagare.child.pid(), nix::sys::signal::Signal::SIGHUP);
    let failed = r#"nagare_config_reloads_total{result="failed"}"#;
    assert!(
        wait_until(Duration::from_secs(10), || metric(s.api, failed)
            == Some(1.0)),
        "{}",
        nagare.child.logs()
    );
    assert_eq!(
        metric(s.api, "nagare_config_last_reload_successful"),
        Some(0.0)
    );
    let unauthorized = request(s.api, "POST", "/api/v1/reload", None);
    assert_eq!(unauthorized.status, 401, "{}", unauthorized.text());
    assert_eq!(
        request(s.api, "POST", "/api/v1/reload", Some("wrong")).status,
        401
    );
    let refused = request(s.api, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(refused.status, 422, "{}", refused.text());
    let error = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("bogus_key") && error.contains("sinks.broken"),
        "{error}"
    );
    assert_eq!(metric(s.api, failed), Some(2.0));
    nagare.assert_running();
    assert!(nagare.child.logs().contains("the config was not reloaded"));

    // A valid one by SIGHUP: `changed` writes elsewhere, `added` starts.
    let added = "  added:\n    type: file\n    match: \"**\"\n    path: {OUT}/d.ndjson\n"
        .replace("{OUT}", &out.display().to_string());
    std::fs::write(&nagare.config, config(&s, "c.ndjson", &added)).unwrap();
    signal(nagare.child.pid(), nix::sys::signal::Signal::SIGHUP);
    let applied = r#"nagare_config_reloads_total{result="applied"}"#;
    assert!(
        wait_until(Duration::from_secs(20), || metric(s.api, applied)
            == Some(1.0)),
        "{}",
        nagare.child.logs()
    );
    assert_eq!(
        metric(s.api, "nagare_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(component_ids(s.api).contains(&"sink/added".to_string()));
    write_lines(logs, "p2", N);
    send_event(&mut conn, "p2");
    assert!(
        wait_until(Duration::from_secs(30), || all("kept.ndjson", "p2")
            && all("c.ndjson", "p2")
            && all("d.ndjson", "p2")),
        "{}",
        nagare.child.logs()
    );

    // By the API: `added` removed.
    std::fs::write(&nagare.config, config(&s, "c.ndjson", "")).unwrap();
    let reloaded = request(s.api, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(reloaded.status, 200, "{}", reloaded.text());
    let changes = &reloaded.json()["changes"];
    assert_eq!(
        changes["sinks"]["removed"],
        serde_json::json!(["added"]),
        "{changes}"
    );
    assert_eq!(
        changes["sources"]["changed"],
        serde_json::json!([]),
        "{changes}"
    );
    assert!(!component_ids(s.api).contains(&"sink/added".to_string()));
    write_lines(logs, "p3", N);
    send_event(&mut conn, "p3");
    assert!(
        wait_until(Duration::from_secs(30), || all("kept.ndjson", "p3")
            && all("c.ndjson", "p3")),
        "{}",
        nagare.child.logs()
    );

    // Every line once in the sink that never changed (the tail source kept its
    // files and position); the changed sink's lines before and after its change
    // in its two files; the removed sink got only what came while it was there.
    for phase in ["p1", "p2", "p3"] {
        assert_eq!(
            phase_in(&out.join("kept.ndjson"), phase),
            (N + 1, 1),
            "{phase} in kept"
        );
    }
    assert_eq!(phase_in(&out.join("b.ndjson"), "p2").0, 0);
    assert_eq!(phase_in(&out.join("c.ndjson"), "p1").0, 0);
    assert_eq!(phase_in(&out.join("c.ndjson"), "p3"), (N + 1, 1));
    assert_eq!(phase_in(&out.join("d.ndjson"), "p3").0, 0);
    assert_eq!(metric(s.api, applied), Some(2.0));
    let status = nagare.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", nagare.child.logs());
}

#[test]
fn watch_config_reloads_when_the_file_changes() {
    let s = Setup::new();
    let (dir, logs, out) = (&s.dir, &s.logs, &s.out);
    let mut nagare = Nagare::start_with_args(
        "watched",
        dir.path(),
        &config(&s, "b.ndjson", ""),
        &[],
        &["--watch-config"],
    );
    support::wait_listening(&mut nagare, s.port);
    std::fs::write(&nagare.config, config(&s, "c.ndjson", "")).unwrap();
    let applied = r#"nagare_config_reloads_total{result="applied"}"#;
    assert!(
        wait_until(Duration::from_secs(20), || metric(s.api, applied)
            == Some(1.0)),
        "{}",
        nagare.child.logs()
    );
    write_lines(logs, "w", 10);
    assert!(
        wait_until(Duration::from_secs(30), || phase_in(
            &out.join("c.ndjson"),
            "w"
        )
        .0 == 10),
        "{}",
        nagare.child.logs()
    );
    assert_eq!(phase_in(&out.join("b.ndjson"), "w").0, 0);
    assert!(nagare.child.logs().contains("the config file changed"));
}

/// A config with a forward source `name` on `port`, a tail source and one sink.
fn forward_config(s: &Setup, name: &str, port: u16) -> String {
    format!(
        "data_dir: {data}
api:
  bind: 127.0.0.1:{api}
  token: {TOKEN}
sources:
  {name}:
    type: forward
    bind: 127.0.0.1:{port}
  files:
    type: tail
    paths: [\"{logs}/*.log\"]
    read_from_head: true
    refresh_interval: 200ms
sinks:
  kept:
    type: file
    match: \"**\"
    path: {out}/kept.ndjson
",
        data = s.data.display(),
        api = s.api,
        logs = s.logs.display(),
        out = s.out.display(),
    )
}

/// Sends one event of `phase` on a new connection to `port` and waits for its ack.
fn send_on_new_connection(port: u16, phase: &str) {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    send_event(&mut conn, phase);
}

#[test]
fn a_new_source_takes_a_removed_ones_port_and_one_that_cannot_start_is_rolled_back() {
    let s = Setup::new();
    let (dir, logs, out) = (&s.dir, &s.logs, &s.out);
    let kept = out.join("kept.ndjson");
    let mut nagare = Nagare::start("nagare", dir.path(), &forward_config(&s, "nodes", s.port));
    support::wait_listening(&mut nagare, s.port);
    send_on_new_connection(s.port, "r0");

    // `nodes` renamed `edge` on the same port: the port is handed over.
    std::fs::write(&nagare.config, forward_config(&s, "edge", s.port)).unwrap();
    let reloaded = request(s.api, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(
        reloaded.status,
        200,
        "{}\n{}",
        reloaded.text(),
        nagare.child.logs()
    );
    let ids = component_ids(s.api);
    assert!(
        ids.contains(&"source/edge".to_string()) && !ids.contains(&"source/nodes".to_string()),
        "{ids:?}"
    );
    send_on_new_connection(s.port, "r1");
    write_lines(logs, "r1", N);

    // `edge` moved to a port another process holds: it cannot start, so the old
    // `edge` starts again on its port and the reload fails, counted.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    std::fs::write(&nagare.config, forward_config(&s, "edge", taken)).unwrap();
    let refused = request(s.api, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(refused.status, 422, "{}", refused.text());
    let error = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("source `edge`")
            && error.contains(&taken.to_string())
            && error.contains("run again as before"),
        "{error}"
    );
    assert_eq!(
        metric(s.api, r#"nagare_config_reloads_total{result="failed"}"#),
        Some(1.0)
    );
    assert_eq!(
        metric(s.api, "nagare_config_last_reload_successful"),
        Some(0.0)
    );
    nagare.assert_running();
    assert!(component_ids(s.api).contains(&"source/edge".to_string()));
    send_on_new_connection(s.port, "r2");
    write_lines(logs, "r2", N);

    // The running config is still the one before the failed reload: once the port
    // is free, the same file applies as a change of `edge`.
    drop(holder);
    let applied = request(s.api, "POST", "/api/v1/reload", Some(TOKEN));
    assert_eq!(applied.status, 200, "{}", applied.text());
    assert_eq!(
        applied.json()["changes"]["sources"]["changed"],
        serde_json::json!(["edge"])
    );
    send_on_new_connection(taken, "r3");
    write_lines(logs, "r3", N);

    // Every event once: the tail source, unchanged throughout, read each line once.
    for phase in ["r1", "r2", "r3"] {
        let want = (N + 1, 1);
        assert!(
            wait_until(Duration::from_secs(30), || phase_in(&kept, phase) == want),
            "{phase}: {:?}\n{}",
            phase_in(&kept, phase),
            nagare.child.logs()
        );
    }
    assert_eq!(phase_in(&kept, "r0"), (1, 1));
    let status = nagare.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", nagare.child.logs());
}
