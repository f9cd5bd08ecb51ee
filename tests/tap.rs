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
use support::{Nagare, metric};

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

/// A running `nagare` tailing `dir/logs/*.log` into `dir/out.ndjson` through a
/// filter that adds `cluster: tapped`, its admin API on the port returned, ready.
fn start(dir: &Path) -> (Nagare, u16) {
    let logs = dir.join("logs");
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
    # Small chunks, many of them: more than a tap's queue holds.
    chunk_limit_size: 32KiB
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
        data = dir.join("data").display(),
        logs = logs.display(),
        out = dir.join("out.ndjson").display(),
    );
    let mut nagare = Nagare::start("nagare", dir, &config);
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
    (nagare, api)
}

#[test]
fn tap_shows_events_at_each_point() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let (mut nagare, api) = start(dir.path());

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

/// Lines in the file sink's output so far.
fn delivered(dir: &Path) -> usize {
    std::fs::read(dir.join("out.ndjson")).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// Appends `n` lines to the tailed file, 500 a write (so that the tail source
/// makes many chunks), and waits until the sink has `expected` lines in all: how
/// long that took.
fn flow(dir: &Path, nagare: &mut Nagare, first: usize, n: usize, expected: usize) -> Duration {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("logs/app.log"))
        .unwrap();
    let started = Instant::now();
    for piece in (first..first + n).collect::<Vec<_>>().chunks(500) {
        let mut text = String::with_capacity(piece.len() * 100);
        for i in piece {
            text.push_str(&format!(
                "{i:08} a line long enough to fill the tap's socket and queue quickly ........\n"
            ));
        }
        file.write_all(text.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let done = nagare_testkit::wait_until(Duration::from_secs(120), || {
        nagare.assert_running();
        delivered(dir) >= expected
    });
    assert!(
        done,
        "{} of {expected} lines delivered\n{}",
        delivered(dir),
        nagare.child.logs()
    );
    started.elapsed()
}

#[test]
fn a_tap_nobody_reads_drops_its_copies_and_holds_nothing_back() {
    const LINES: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let (mut nagare, api) = start(dir.path());

    let alone = flow(dir.path(), &mut nagare, 0, LINES, LINES);
    assert_eq!(metric(api, "nagare_taps_open"), Some(0.0));
    assert_eq!(metric(api, "nagare_tap_dropped_events_total"), Some(0.0));

    // A tap whose reader never reads: its socket fills, then its queue, and the
    // pipeline drops the copies instead of waiting.
    let mut reader = std::net::TcpStream::connect(("127.0.0.1", api)).unwrap();
    // A small receive buffer (Linux otherwise lets it grow to tens of MiB), so
    // that the socket fills after a few chunks as a slow remote reader's would.
    nix::sys::socket::setsockopt(&reader, nix::sys::socket::sockopt::RcvBuf, &16_384).unwrap();
    write!(
        reader,
        "GET /api/v1/tap?pattern=**&at=source HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let open = nagare_testkit::wait_until(Duration::from_secs(10), || {
        metric(api, "nagare_taps_open") == Some(1.0)
    });
    assert!(open, "the tap did not open\n{}", nagare.child.logs());
    let tapped = flow(dir.path(), &mut nagare, LINES, LINES, 2 * LINES);
    let dropped = metric(api, "nagare_tap_dropped_events_total").unwrap_or(0.0);
    eprintln!(
        "{LINES} lines: {alone:?} with no tap, {tapped:?} with a tap nobody reads \
         ({:.2}x the time); {dropped} copies dropped",
        tapped.as_secs_f64() / alone.as_secs_f64()
    );
    assert!(
        dropped > 0.0 && dropped < LINES as f64,
        "the pipeline held {LINES} lines back for the tap or dropped none: {dropped}"
    );
    drop(reader);
    let closed = nagare_testkit::wait_until(Duration::from_secs(10), || {
        metric(api, "nagare_taps_open") == Some(0.0)
    });
    assert!(closed, "the tap outlived its reader");

    // Every line once.
    let mut seen: Vec<usize> = support::read_ndjson(&dir.path().join("out.ndjson"))
        .iter()
        .map(|event| {
            let line = event["record"]["message"]
                .as_str()
                .or_else(|| event["record"]["log"].as_str())
                .unwrap_or_else(|| panic!("{event}"));
            line[..8].parse().unwrap_or_else(|_| panic!("{event}"))
        })
        .collect();
    seen.sort_unstable();
    assert!(
        seen.iter().copied().eq(0..2 * LINES),
        "{} lines delivered, not each of 0..{} once",
        seen.len(),
        2 * LINES
    );
}
