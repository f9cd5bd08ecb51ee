//! The `stdout` sink on a real pipe, the way `nagare run -c tail.yaml | jq` uses it:
//! the real binary tails a CRI file into its `stdout` sink, and its standard output
//! is a pipe into `cat`, whose output this test reads. Two busy threads keep both cores
//! loaded throughout, as on a machine that is building something.
//!
//! The reader keeps up first, then reads slowly, then `cat` is stopped (SIGSTOP) for
//! a while and resumed (SIGCONT), and the reader keeps up again to the end. Every
//! line must arrive exactly once, whole and in order. And while the reader waits
//! and nagare still holds lines, nagare must not leave it waiting for long. The sink
//! writes through a file buffer, whose chunks are 8 MiB: a sink that encodes a whole
//! batch of them before writing a byte, and acks none until all of it is written,
//! leaves the pipe silent for as long as that takes, again with every batch, which
//! is what a user sees as a stall (measured here in a debug build: 2.8 s without a
//! line, against 64 ms for the sink that writes as it encodes; in a release build
//! with four busy loops on two cores, 7 s against none over a second). The bound
//! below sits between the two; it is a liveness bound, not a speed target.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::{binary, signal};

/// Lines in the tailed file (about 400 bytes each: some 40 MiB).
const LINES: usize = 100_000;
/// The longest a waiting reader may go without a byte while nagare holds lines.
const MAX_SILENCE: Duration = Duration::from_secs(1);

/// A process this test wires up itself (its standard streams are pipes), killed by
/// its PID and reaped on drop.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two busy threads, one per core, in this test's own process (so they end with it,
/// whatever way it ends); they stop when this is dropped.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn load_both_cores() -> Load {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let threads = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    Load { stop, threads }
}

/// Writes `n` CRI lines whose messages carry their sequence number.
fn write_cri(path: &Path, n: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let pad = "p".repeat(320);
    for i in 0..n {
        writeln!(
            out,
            "2024-05-01T12:00:00.{:09}Z stdout F seq={i:07} GET /api/v1/orders 200 {pad}",
            i % 1_000_000_000
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// How the reader reads at each point of the run.
enum Pace {
    KeepUp,
    Slow,
}

#[test]
fn stdout_sink_keeps_a_pipe_flowing_for_fast_slow_and_stopped_readers() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    write_cri(&logs.join("web-1_shop_app-0123456789ab.log"), LINES);
    let config = tail_to_stdout(dir.path(), "    buffer: { type: file }\n");
    let _load = load_both_cores();

    let mut cat = Proc(
        Command::new("cat")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start cat"),
    );
    let cat_in = cat.0.stdin.take().unwrap();
    let mut cat_out = cat.0.stdout.take().unwrap();
    let stderr = dir.path().join("nagare.stderr");
    let mut nagare = Proc(
        Command::new(binary())
            .args(["run", "-c"])
            .arg(&config)
            .env("NAGARE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(cat_in))
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start nagare"),
    );
    let logs_of = |what: &str| {
        format!(
            "{what}\n--- nagare stderr ---\n{}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    };

    let started = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    let mut next = 0usize;
    let mut longest = (Duration::ZERO, 0usize);
    let mut stopped = false;
    while next < LINES {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{}",
            logs_of(&format!("only {next} of {LINES} lines after 3 minutes"))
        );
        let pace = if next < LINES * 3 / 10 {
            Pace::KeepUp
        } else if next < LINES * 4 / 10 {
            Pace::Slow
        } else {
            if !stopped {
                // The reader stops for a while: the pipe fills, nagare's writes block,
                // and its buffer fills behind them.
                stopped = true;
                signal(cat.0.id(), Signal::SIGSTOP);
                std::thread::sleep(Duration::from_secs(5));
                signal(cat.0.id(), Signal::SIGCONT);
            }
            Pace::KeepUp
        };
        let want = match pace {
            Pace::KeepUp => buf.len(),
            Pace::Slow => 16 * 1024,
        };
        let waited = Instant::now();
        let n = cat_out.read(&mut buf[..want]).unwrap();
        let waited = waited.elapsed();
        assert!(
            n > 0,
            "{}",
            logs_of(&format!("the output ended after {next} of {LINES} lines"))
        );
        if next > 0 && waited > longest.0 {
            longest = (waited, next);
        }
        partial.extend_from_slice(&buf[..n]);
        let whole = partial
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        for line in partial[..whole].lines() {
            // A whole envelope line of the next event: checked by its shape rather
            // than parsed, to keep this reader quick in a debug build (one line in
            // a thousand is parsed in full).
            let line = line.unwrap();
            let want = format!(",\"log\":\"seq={next:07} ");
            assert!(
                line.starts_with("{\"tag\":\"app\",\"time\":\"")
                    && line.contains(&want)
                    && line.ends_with('}'),
                "line {next} is not the next event's whole line: {line:?}"
            );
            if next.is_multiple_of(1000) {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("line {next} is not JSON ({e}): {line:?}"));
                assert_eq!(v["tag"], "app");
            }
            next += 1;
        }
        partial.drain(..whole);
        if let Pace::Slow = pace {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let took = started.elapsed();
    eprintln!(
        "{LINES} lines in {took:?}; longest wait for output {:?} (after line {})",
        longest.0, longest.1
    );
    assert!(
        longest.0 <= MAX_SILENCE,
        "{}",
        logs_of(&format!(
            "the reader waited {:?} for output after line {} while nagare held lines (at most {MAX_SILENCE:?} allowed)",
            longest.0, longest.1
        ))
    );
    signal(nagare.0.id(), Signal::SIGTERM);
    let status = nagare.0.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        logs_of(&format!("nagare exited with {status}"))
    );
    // Nothing after the last line: it was delivered once.
    let mut rest = Vec::new();
    cat_out.read_to_end(&mut rest).unwrap();
    assert!(
        partial.is_empty() && rest.is_empty(),
        "unexpected output after line {LINES}"
    );
}

/// The tail-to-stdout config of these tests, written to `dir/nagare.yaml`: the files
/// `dir/logs/*.log` read from their start and tagged `app`, to a stdout sink with the
/// further keys `sink_keys` (YAML indented by four spaces); data in `dir/data`.
fn tail_to_stdout(dir: &Path, sink_keys: &str) -> PathBuf {
    let config = dir.join("nagare.yaml");
    std::fs::write(
        &config,
        format!(
            "data_dir: {data}\n\
             sources:\n  app:\n    type: tail\n    paths: [{logs}/*.log]\n    read_from_head: true\n    tag: app\n\
             sinks:\n  out:\n    type: stdout\n    match: \"**\"\n{sink_keys}",
            data = dir.join("data").display(),
            logs = dir.join("logs").display(),
        ),
    )
    .unwrap();
    config
}

/// The sequence number in a `record` line of a line written by [`write_cri`].
fn seq(line: &str) -> usize {
    let at = line
        .find("seq=")
        .unwrap_or_else(|| panic!("no seq in {line:?}"))
        + 4;
    line[at..at + 7].parse().unwrap()
}

#[test]
fn when_its_reader_exits_nagare_stops_and_reads_the_lines_not_written_again_after_a_restart() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    write_cri(&dir.path().join("logs/web-1_shop_app-0123456789ab.log"), N);
    let config = tail_to_stdout(dir.path(), "    format: record\n");

    // `nagare run | head -n 100`: head exits after 100 lines, closing the pipe.
    let mut head = Proc(
        Command::new("head")
            .args(["-n", "100"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start head"),
    );
    let head_in = head.0.stdin.take().unwrap();
    let stderr = dir.path().join("first.stderr");
    let mut first = Proc(
        Command::new(binary())
            .args(["run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(head_in))
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start nagare"),
    );
    let mut shown = String::new();
    head.0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut shown)
        .unwrap();
    assert_eq!(shown.lines().count(), 100);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = first.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "nagare did not stop after its reader exited"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(
        said.contains("standard output was closed by its reader"),
        "{said}"
    );

    // Started again with a reader, it goes on from the last line it had delivered:
    // nothing is lost (lines written just before the pipe closed may come twice).
    let out = dir.path().join("second.out");
    let mut second = Proc(
        Command::new(binary())
            .args(["run", "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(dir.path().join("second.stderr")).unwrap())
            .spawn()
            .expect("start nagare again"),
    );
    let complete = nagare_testkit::wait_until(Duration::from_secs(60), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .last()
            .is_some_and(|l| l.ends_with('}') && seq(l) == N - 1)
    });
    assert!(complete, "the second run did not reach the last line");
    signal(second.0.id(), Signal::SIGTERM);
    assert!(second.0.wait().unwrap().success());
    let text = std::fs::read_to_string(&out).unwrap();
    let seqs: Vec<usize> = text.lines().map(seq).collect();
    let from = seqs[0];
    assert!(
        from <= 100,
        "the second run starts after line {from}: lines were lost"
    );
    assert_eq!(seqs, (from..N).collect::<Vec<_>>());
    drop(first);
}
