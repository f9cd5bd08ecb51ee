//! `nagare top` in a real terminal: tmux runs it against a real forwarder and
//! aggregator while logs are being written; every component shows with its counts,
//! the sort keys reorder the rows, `q` (Esc, Ctrl-C) exits with status 0 and gives
//! the terminal back, and a process that
//! cannot be reached is a message on the screen while `top` keeps polling. `nagare
//! health` answers from the same processes.

mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nagare_testkit::{free_port, http, wait_until};
use support::{Nagare, forward_aggregator};

/// A tmux server of this test's own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn new() -> Tmux {
        Tmux {
            socket: format!("nagare-top-test-{}", std::process::id()),
        }
    }

    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    /// Runs `nagare top ARGS` in a 160×50 session `name`; its exit status goes to
    /// `dir/name.status`, its standard error to `dir/name.err`, and the terminal's
    /// settings after it (`stty -a`) to `dir/name.tty`.
    fn top(&self, name: &str, dir: &Path, args: &str) -> Session<'_> {
        let status = dir.join(format!("{name}.status"));
        let err = dir.join(format!("{name}.err"));
        let tty = dir.join(format!("{name}.tty"));
        let command = format!(
            "{} top {args} 2> {}; code=$?; stty -a > {}; echo $code > {}",
            support::binary().display(),
            err.display(),
            tty.display(),
            status.display()
        );
        let out = self.tmux(&["new", "-d", "-s", name, "-x", "160", "-y", "50", &command]);
        assert!(out.status.success(), "tmux new: {out:?}");
        Session {
            tmux: self,
            name: name.to_string(),
            status,
            err,
            tty,
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

struct Session<'a> {
    tmux: &'a Tmux,
    name: String,
    status: PathBuf,
    err: PathBuf,
    tty: PathBuf,
}

impl Session<'_> {
    fn screen(&self) -> String {
        let out = self.tmux.tmux(&["capture-pane", "-p", "-t", &self.name]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let out = self.tmux.tmux(&["send-keys", "-t", &self.name, keys]);
        assert!(out.status.success(), "tmux send-keys: {out:?}");
    }

    /// Waits until the screen satisfies `check`, and returns it.
    fn wait_for(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(20), || {
            if self.status.exists() {
                panic!(
                    "nagare top exited while waiting for {what}: status {}, stderr {}\n{last}",
                    std::fs::read_to_string(&self.status).unwrap_or_default(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            last = self.screen();
            check(&last)
        });
        assert!(ok, "the screen never showed {what}:\n{last}");
        last
    }

    /// Presses `key` (tmux's name: `q`, `Escape`, `C-c`) and returns the exit status,
    /// after checking that the terminal was given back (out of raw mode).
    fn quit(&self, key: &str) -> String {
        self.keys(key);
        let ok = wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&self.status).is_ok_and(|s| !s.trim().is_empty())
        });
        assert!(ok, "nagare top did not exit on {key}:\n{}", self.screen());
        let tty = std::fs::read_to_string(&self.tty).unwrap();
        let settings: Vec<&str> = tty.split_whitespace().collect();
        assert!(
            settings.contains(&"icanon") && settings.contains(&"echo"),
            "the terminal is left in raw mode after {key}:\n{tty}"
        );
        std::fs::read_to_string(&self.status)
            .unwrap()
            .trim()
            .to_string()
    }
}

/// The table's cells of the row of component `id` (split on whitespace), if shown.
fn row<'s>(screen: &'s str, id: &str) -> Option<Vec<&'s str>> {
    screen.lines().find_map(|l| {
        let cells: Vec<&str> = l.trim_matches(['│', ' ']).split_whitespace().collect();
        (cells.first() == Some(&id)).then_some(cells)
    })
}

/// Whether the row of `id` shows a rate or a total above zero (columns 4 to 9:
/// events and bytes per second in and out, events in and out).
fn counts_something(screen: &str, id: &str) -> bool {
    row(screen, id).is_some_and(|cells| {
        cells.iter().skip(3).take(6).any(|c| {
            c.trim_end_matches(|ch: char| ch.is_ascii_alphabetic())
                .parse::<f64>()
                .is_ok_and(|v| v > 0.0)
        })
    })
}

/// The ids in the order the screen shows them.
fn order<'a>(screen: &str, ids: &[&'a str]) -> Vec<&'a str> {
    let mut at: Vec<(usize, &str)> = ids
        .iter()
        .map(|id| {
            let line = screen
                .lines()
                .position(|l| {
                    l.trim_matches(['│', ' '])
                        .split_whitespace()
                        .next()
                        .is_some_and(|c| c == *id)
                })
                .unwrap_or_else(|| panic!("{id} is not on the screen:\n{screen}"));
            (line, *id)
        })
        .collect();
    at.sort();
    at.into_iter().map(|(_, id)| id).collect()
}

#[test]
fn top_shows_every_component_sorts_and_quits_cleanly() {
    if !Tmux::available() {
        eprintln!(
            "SKIPPED: tmux is not installed (scripts/test installs it); `nagare top` was not tested in a terminal"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("app.log");
    std::fs::write(&log, "first line\n").unwrap();

    let (port, agg_api, fwd_api) = (free_port(), free_port(), free_port());
    let sinks = format!(
        "  out:\n    type: file\n    match: \"**\"\n    path: {}\n  archive:\n    type: file\n    match: \"**\"\n    path: {}\n",
        dir.path().join("out.ndjson").display(),
        dir.path().join("archive.ndjson").display(),
    );
    let config = format!(
        "api:\n  bind: 127.0.0.1:{agg_api}\n{}",
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
        aggregator.assert_running();
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

    // `nagare health`, the containers' health check command, asks the same API.
    let health = |args: &[&str]| {
        let out = Command::new(support::binary())
            .arg("health")
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let agg_url = format!("http://127.0.0.1:{agg_api}");
    let (code, text) = health(&["--url", &agg_url]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(r#""status":"ok""#), "{text}");
    let (code, text) = health(&["--url", &agg_url, "--ready"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(r#""status":"ready""#), "{text}");
    let unused = format!("http://127.0.0.1:{}", free_port());
    let (code, text) = health(&["--url", &unused, "--timeout", "2s"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("nagare health: cannot reach {unused}")),
        "{text}"
    );

    // Logs keep coming while `top` watches, so the rates are not zero.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let log = log.clone();
        std::thread::spawn(move || {
            let mut n = 0;
            while writing.load(Ordering::Relaxed) {
                let mut batch = String::new();
                for _ in 0..20 {
                    n += 1;
                    let _ = writeln!(batch, "line {n} while top watches");
                }
                // The folder is gone once the test failed: nothing left to feed.
                let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&log) else {
                    return;
                };
                let _ = file.write_all(batch.as_bytes());
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let tmux = Tmux::new();
    let agg = tmux.top(
        "agg",
        dir.path(),
        &format!("--url http://127.0.0.1:{agg_api} --interval 500ms"),
    );
    let ids = ["nodes", "archive", "out"];
    let screen = agg.wait_for("every aggregator component counting", |s| {
        ids.iter().all(|id| counts_something(s, id))
    });
    assert!(
        screen.contains(&format!("http://127.0.0.1:{agg_api}")),
        "{screen}"
    );
    assert!(screen.contains("version "), "{screen}");
    assert!(screen.contains("  up "), "the process's uptime: {screen}");
    assert!(screen.contains("every 500ms"), "{screen}");
    assert!(screen.contains("q/Esc quit"), "{screen}");
    assert_eq!(
        order(&screen, &ids),
        ["nodes", "archive", "out"],
        "{screen}"
    );
    // Events per second are shown once two polls are in.
    let rates = agg.wait_for("a rate in the source's row", |s| {
        row(s, "nodes").is_some_and(|c| c[3].parse::<f64>().is_ok_and(|v| v > 0.0))
    });

    agg.keys("s");
    let by_id = agg.wait_for("the sort by id", |s| s.contains("sorted by id"));
    assert_eq!(
        order(&by_id, &ids),
        ["archive", "nodes", "out"],
        "{rates}\n{by_id}"
    );
    agg.keys("r");
    let reversed = agg.wait_for("the reversed sort", |s| s.contains("(reversed)"));
    assert_eq!(
        order(&reversed, &ids),
        ["out", "nodes", "archive"],
        "{reversed}"
    );
    assert_eq!(
        agg.quit("q"),
        "0",
        "{}",
        std::fs::read_to_string(&agg.err).unwrap_or_default()
    );

    let fwd = tmux.top(
        "fwd",
        dir.path(),
        &format!("--url http://127.0.0.1:{fwd_api}"),
    );
    fwd.wait_for("every forwarder component counting", |s| {
        ["files", "to_aggregator"]
            .iter()
            .all(|id| counts_something(s, id))
    });
    assert_eq!(fwd.quit("Escape"), "0");

    writing.store(false, Ordering::Relaxed);
    writer.join().unwrap();

    // Nothing listens there: an error on the screen, polled again, not a crash.
    let nowhere = free_port();
    let gone = tmux.top(
        "gone",
        dir.path(),
        &format!("--url http://127.0.0.1:{nowhere} --interval 200ms"),
    );
    let screen = gone.wait_for("the error, twice", |s| {
        s.contains(&format!("cannot reach http://127.0.0.1:{nowhere}"))
            && s.contains("times in a row")
    });
    assert!(screen.contains("nothing read yet"), "{screen}");
    assert_eq!(gone.quit("C-c"), "0", "Ctrl-C is a key to quit, not a kill");

    assert!(forwarder.terminate(Duration::from_secs(20)).success());
    assert!(aggregator.terminate(Duration::from_secs(20)).success());
}
