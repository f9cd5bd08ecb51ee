//! Helpers shared by the tests that run the real `nagare` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nagare_testkit::{Child, wait_until};

#[cfg(all(feature = "forwarder", feature = "aggregator"))]
pub mod fault_client;
#[cfg(all(feature = "forwarder", feature = "aggregator"))]
pub mod link;
pub mod openssl;

/// The `nagare` binary cargo built for these tests.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nagare"))
}

/// A `nagare run` process with its config written to a file, stopped on drop.
pub struct Nagare {
    pub child: Child,
    pub config: PathBuf,
}

impl Nagare {
    /// Writes `config` to `dir/<name>.yaml` and runs `nagare run -c` on it.
    pub fn start(name: &str, dir: &Path, config: &str) -> Nagare {
        Nagare::start_with_env(name, dir, config, &[])
    }

    /// Like `start`, with the variables `env` added to its environment.
    pub fn start_with_env(name: &str, dir: &Path, config: &str, env: &[(&str, &str)]) -> Nagare {
        Nagare::start_with_args(name, dir, config, env, &[])
    }

    /// Like `start_with_env`, with `args` after `nagare run -c <config>`.
    pub fn start_with_args(
        name: &str,
        dir: &Path,
        config: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Nagare {
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, config).expect("write the config");
        let mut cmd = Command::new(binary());
        cmd.args(["run", "-c"])
            .arg(&path)
            .args(args)
            .env("NAGARE_LOG", "info")
            .envs(env.iter().copied());
        Nagare {
            child: Child::spawn(name, cmd),
            config: path,
        }
    }

    /// Starts like `start`, then waits until it accepts connections on `port`.
    pub fn listening(name: &str, dir: &Path, config: &str, port: u16) -> Nagare {
        let mut process = Nagare::start(name, dir, config);
        wait_listening(&mut process, port);
        process
    }

    /// Sends SIGTERM and waits for the exit status (graceful shutdown).
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        signal(self.child.pid(), nix::sys::signal::Signal::SIGTERM);
        match self.child.wait_timeout(timeout) {
            Some(status) => status,
            None => {
                self.child.kill();
                panic!(
                    "{} did not stop within {timeout:?} of SIGTERM\n{}",
                    self.child.name(),
                    self.child.logs()
                )
            }
        }
    }

    /// Starts like `start_with_env` and waits until it listens on `port`, starting it
    /// again while it exits at once (the port not free yet after a kill).
    pub fn listening_again(
        name: &str,
        dir: &Path,
        config: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Nagare {
        for _ in 0..50 {
            let mut process = Nagare::start_with_env(name, dir, config, env);
            let up = wait_until(Duration::from_secs(20), || {
                process.child.try_wait().is_some()
                    || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if up && process.child.try_wait().is_none() {
                return process;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{name} does not start on port {port}");
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill9(&mut self) {
        signal(self.child.pid(), nix::sys::signal::Signal::SIGKILL);
        assert!(
            self.child.wait_timeout(Duration::from_secs(10)).is_some(),
            "{} survived SIGKILL",
            self.child.name()
        );
    }

    /// Panics with the process's output if it has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait() {
            panic!(
                "{} exited early with {status}\n{}",
                self.child.name(),
                self.child.logs()
            );
        }
    }
}

/// `nagare run -c <config>` with nothing of this machine's AWS set-up: an empty
/// environment, `home` as its home (no shared config or credentials files), no
/// instance metadata; only `env` gives it credentials.
pub fn run_without_aws_setup(config: &Path, home: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.args(["run", "-c"])
        .arg(config)
        .env_clear()
        .env("HOME", home)
        .env("NAGARE_LOG", "info")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("no-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`.
pub fn wait_listening(process: &mut Nagare, port: u16) {
    let ok = wait_until(Duration::from_secs(20), || {
        process.assert_running();
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(
        ok,
        "nothing listens on port {port}\n{}",
        process.child.logs()
    );
}

/// An aggregator config: `data_dir` `data`, a forward source `nodes` on
/// 127.0.0.1:`port`, and `sinks` (YAML, each sink indented by two spaces).
pub fn forward_aggregator(data: &Path, port: u16, sinks: &str) -> String {
    format!(
        "data_dir: {data}
sources:
  nodes:
    type: forward
    bind: 127.0.0.1:{port}
sinks:
{sinks}",
        data = data.display()
    )
}

/// Reads an NDJSON file into values (missing file: none).
pub fn read_ndjson(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad NDJSON line {l:?}: {e}")))
        .collect()
}

/// Every `"seq":N` in the NDJSON file, counted (missing file: none): which numbered
/// lines arrived, and how often.
pub fn seqs_in(path: &Path) -> std::collections::HashMap<u64, u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(at) = line.find("\"seq\":") {
            let digits: String = line[at + 6..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse() {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
    }
    counts
}

/// `text` without the terminal colour codes of nagare's text logs.
pub fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence runs to its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Appends numbered CRI lines `from..to` (`{"seq":N,"msg":"order placed"}`) to
/// `files` container log files of `dir` (line `n` to file `n % files`), timed from
/// `base` (seconds since the epoch) on, a millisecond apart: the crash loops' input.
pub fn write_numbered_cri_lines(dir: &Path, files: usize, from: usize, to: usize, base: i64) {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let mut per_file = vec![String::new(); files];
    for n in from..to {
        let ts =
            nagare_core::EventTime::new(base + (n / 1000) as i64, (n % 1000) as u32 * 1_000_000)
                .to_rfc3339();
        let _ = writeln!(
            per_file[n % files],
            "{ts} stdout F {{\"seq\":{n},\"msg\":\"order placed\"}}"
        );
    }
    for (i, text) in per_file.into_iter().enumerate() {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("app-{i}_shop_app-{i:064x}.log")))
            .expect("open a container log file");
        f.write_all(text.as_bytes())
            .expect("append to a container log file");
    }
}

/// The value of the series `series` (name and labels, as `/metrics` writes them)
/// in the `/metrics` of the admin API on `api`, if it is there.
pub fn metric(api: u16, series: &str) -> Option<f64> {
    let text = nagare_testkit::http::send(
        &format!("http://127.0.0.1:{api}"),
        "GET",
        "/metrics",
        &[],
        b"",
    )
    .ok()?
    .text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{series} ")))
        .and_then(|v| v.parse().ok())
}
