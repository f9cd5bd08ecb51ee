//! `nagare tap` against a running `nagare`: the events of a tailed file seen at the
//! source (before a filter adds a field), after the filters, and on their way into
//! one sink; a sink that gets nothing shows nothing; the token is required; a tap
//! never holds the pipeline back.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nagare_testkit::free_port;
use support::Nagare;

const TOKEN: &str = "tap-token-7";

/// Runs `nagare tap ARGS` against port `api` while appending lines to the tailed
/// file, until it exits: its exit status, standard output and standard error.
fn tap(api: u16, logs: &Path, args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    let mut child = Command::new(support::binary())
        .arg("tap")
        .args(args)
        .args(["--url", &format!("http://127.0.0.1:{api}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut n = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nagare tap did not end"
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(logs.join("app.log"))
            .unwrap();
        writeln!(f, "tapped line {n}").unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    (
        status.success(),
        lines,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn tap_shows_events_at_each_point() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("app.log"), "").unwrap();
    let api = free_port();
    let config = format!(
        "data_dir: {data}
api:
  bind: 127.0.0.1:{api}
  token: {TOKEN}
sources:
  files:
    type: tail
    paths: [\"{logs}/*.log\"]
    refresh_interval: 100ms
filters:
  mark:
    type: record_modifier
    match: \"**\"
    records: {{ cluster: tapped }}
sinks:
  all:
    type: file
    match: \"**\"
    path: {out}
  none:
    type: null
    match: \"nothing.**\"
",
        data = dir.path().join("data").display(),
        logs = logs.display(),
        out = dir.path().join("out.ndjson").display(),
    );
    let mut nagare = Nagare::start("nagare", dir.path(), &config);
    let ready = nagare_testkit::wait_until(Duration::from_secs(20), || {
        nagare.assert_running();
        nagare_testkit::http::send(
            &format!("http://127.0.0.1:{api}"),
            "GET",
            "/readyz",
            &[],
            b"",
        )
        .is_ok_and(|r| r.status == 200)
    });
    assert!(ready, "{}", nagare.child.logs());

    // At the source: the line as read, without the filter's field.
    let (ok, lines, err) = tap(
        api,
        &logs,
        &["**", "--at", "source", "-n", "3", "--token", TOKEN],
    );
    assert!(ok, "{err}");
    assert_eq!(lines.len(), 4, "3 events and the end: {lines:?}");
    for event in &lines[..3] {
        assert!(
            event["tag"].as_str().unwrap().contains("app.log"),
            "{event}"
        );
        assert!(
            event["record"]["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("tapped line")
                || event["record"]["log"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("tapped line"),
            "{event}"
        );
        assert!(event["record"].get("cluster").is_none(), "{event}");
        assert!(event["time"].as_str().unwrap().ends_with('Z'), "{event}");
    }
    assert_eq!(lines[3]["tap"], "end");
    assert_eq!(lines[3]["events"], 3);

    // After the filters, and into sink `all`: with it.
    for args in [
        vec!["**", "--at", "after-filters", "-n", "2", "--token", TOKEN],
        vec![
            "**", "--at", "sink", "--sink", "all", "-n", "2", "--token", TOKEN,
        ],
    ] {
        let (ok, lines, err) = tap(api, &logs, &args);
        assert!(ok, "{args:?}: {err}");
        assert_eq!(lines.len(), 3, "{args:?}: {lines:?}");
        assert_eq!(lines[0]["record"]["cluster"], "tapped", "{args:?}");
    }

    // Into sink `none`, and for tags nothing has: nothing but the end.
    for args in [
        vec![
            "**",
            "--at",
            "sink",
            "--sink",
            "none",
            "--duration",
            "1s",
            "--token",
            TOKEN,
        ],
        vec!["other.**", "--duration", "1s", "--token", TOKEN],
    ] {
        let (ok, lines, err) = tap(api, &logs, &args);
        assert!(ok, "{args:?}: {err}");
        assert_eq!(lines.len(), 1, "{args:?}: {lines:?}");
        assert_eq!(lines[0]["events"], 0, "{args:?}");
    }

    // The token is required; a wrong request says why.
    let (ok, lines, err) = tap(api, &logs, &["**", "-n", "1"]);
    assert!(!ok && lines.is_empty());
    assert!(
        err.contains("401") && err.contains("Authorization: Bearer"),
        "{err}"
    );
    let (ok, _, err) = tap(api, &logs, &["**", "--at", "sink", "--token", TOKEN]);
    assert!(!ok && err.contains("--at sink needs --sink NAME"), "{err}");

    // The pipeline went on all along: every line written reached the sink.
    nagare.assert_running();
    let written = std::fs::read_to_string(logs.join("app.log"))
        .unwrap()
        .lines()
        .count();
    let delivered = nagare_testkit::wait_until(Duration::from_secs(20), || {
        support::read_ndjson(&dir.path().join("out.ndjson")).len() == written
    });
    assert!(delivered, "{}", nagare.child.logs());
}
