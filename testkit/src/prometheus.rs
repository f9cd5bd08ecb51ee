//! [`Prometheus`]: a real Prometheus server (Debian's package, unpacked into
//! `.testenv/prometheus` by `scripts/test`) scraping the targets a test gives it, and
//! [`promtool_check`], Prometheus' own lint of an exposition.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::child::Child;
use crate::http;
use crate::paths;
use crate::wait::{free_port, wait_until};

fn bin(name: &str) -> std::path::PathBuf {
    paths::require(
        paths::testenv().join("prometheus/usr/bin").join(name),
        "Prometheus (Debian's package, unpacked)",
    )
}

/// `promtool check metrics` on `exposition`: `Err` with promtool's output when it
/// finds a problem (lint warnings included).
pub fn promtool_check(exposition: &str) -> Result<(), String> {
    let mut child = Command::new(bin("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("wait for promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.trim().is_empty() {
        Ok(())
    } else {
        Err(text)
    }
}

/// A Prometheus server scraping `targets` every second, stopped on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with one job `nagare` over `targets` (`127.0.0.1:PORT`,
    /// path `/metrics`) and waits until it answers.
    pub fn start(targets: &[String]) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temp dir");
        let list = targets
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n\
             scrape_configs:\n  - job_name: nagare\n    static_configs:\n      - targets: [{list}]\n"
        );
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).expect("write prometheus.yml");
        let port = free_port();
        let mut cmd = Command::new(bin("prometheus"));
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let mut child = Child::spawn("prometheus", cmd);
        let url = format!("http://127.0.0.1:{port}");
        let up = wait_until(Duration::from_secs(30), || {
            assert!(
                child.try_wait().is_none(),
                "prometheus exited\n{}",
                child.logs()
            );
            http::send(&url, "GET", "/-/ready", &[], b"").is_ok_and(|r| r.status == 200)
        });
        assert!(up, "prometheus did not become ready\n{}", child.logs());
        Prometheus {
            child,
            url,
            _dir: dir,
        }
    }

    /// The result vector of instant query `query`: each series' labels and value.
    pub fn query(&self, query: &str) -> Vec<(serde_json::Map<String, Value>, f64)> {
        let q: String = url_encode(query);
        let r = http::send(
            &self.url,
            "GET",
            &format!("/api/v1/query?query={q}"),
            &[],
            b"",
        )
        .expect("query prometheus");
        let body = r.json();
        assert_eq!(body["status"], "success", "{body}");
        body["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| {
                        let labels = s["metric"].as_object().cloned().unwrap_or_default();
                        let value = s["value"][1].as_str().and_then(|v| v.parse().ok());
                        (labels, value.unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the server logged.
    pub fn logs(&self) -> String {
        self.child.logs()
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
