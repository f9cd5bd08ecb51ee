//! `/readyz` of a real aggregator whose destination is down: not ready while its
//! file buffer is full and holds the forward server back, and, after a restart, not
//! ready while the buffer recovers its many chunks, then ready.

mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use nagare_testkit::{free_port, http, wait_until};
use support::Nagare;

/// Lines the forwarder has to ship: more than the aggregator's buffer holds.
const LINES: usize = 100_000;

/// `/readyz` once: its status and `waiting_for`, or `None` while nothing answers.
fn readyz(port: u16) -> Option<(u16, Vec<String>)> {
    let r = http::send(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        "/readyz",
        &[],
        b"",
    )
    .ok()?;
    let body = r.json();
    let waiting = body["waiting_for"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some((r.status, waiting))
}

fn metric(port: u16, name: &str) -> Option<f64> {
    let r = http::send(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        "/metrics",
        &[],
        b"",
    )
    .ok()?;
    let head = format!(
        "{name}{{component_id=\"stuck\",component_kind=\"sink\",component_type=\"forward\"}} "
    );
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix(&head).and_then(|v| v.parse().ok()))
}

#[test]
fn a_full_buffer_and_a_recovering_one_are_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut text = String::with_capacity(LINES * 40);
    for n in 0..LINES {
        let _ = writeln!(text, "line {n} waiting for a dead destination");
    }
    std::fs::write(logs.join("app.log"), text).unwrap();

    // The aggregator forwards to a port nothing listens on, through a file buffer;
    // the forwarder sends chunks of about ten lines: thousands of chunks to recover.
    let (port, api, fwd_api) = (free_port(), free_port(), free_port());
    let dead = free_port();
    let config = format!(
        "data_dir: {data}\nshutdown_timeout: 2s\napi:\n  bind: 127.0.0.1:{api}\n\
         sources:\n  nodes:\n    type: forward\n    bind: 127.0.0.1:{port}\n\
         sinks:\n  stuck:\n    type: forward\n    match: \"**\"\n    servers: [{{host: 127.0.0.1, port: {dead}}}]\n\
         \x20   buffer:\n      type: file\n      flush_mode: interval\n      chunk_limit_size: 1KiB\n      fsync: never\n      compress: none\n      total_limit_size: 4MiB\n      retry_forever: true\n",
        data = dir.path().join("agg").display(),
    );
    let mut aggregator = Nagare::listening("aggregator", dir.path(), &config, port);
    let mut forwarder = Nagare::start(
        "forwarder",
        dir.path(),
        &format!(
            "data_dir: {data}\napi:\n  bind: 127.0.0.1:{fwd_api}\n\
             sources:\n  files:\n    type: tail\n    paths: [\"{logs}/*.log\"]\n    read_from_head: true\n    chunk_limit_size: 1KiB\n\
             sinks:\n  to_aggregator:\n    type: forward\n    match: \"**\"\n    servers: [{{host: 127.0.0.1, port: {port}}}]\n",
            data = dir.path().join("fwd").display(),
            logs = logs.display(),
        ),
    );

    // 1. The buffer fills up; the forward server waits for room: not ready, and
    //    the reason says which buffer.
    let mut last = None;
    let full = wait_until(Duration::from_secs(90), || {
        aggregator.assert_running();
        forwarder.assert_running();
        last = readyz(api);
        matches!(&last, Some((503, w)) if w.iter().any(|r| r.contains("buffer of sink `stuck`") && r.contains("full")))
    });
    assert!(
        full,
        "the aggregator never said its buffer is full: {last:?}, {} chunks\n{}",
        metric(api, "nagare_buffer_chunks").unwrap_or(-1.0),
        aggregator.child.logs()
    );
    let chunks = metric(api, "nagare_buffer_chunks").unwrap();
    assert!(chunks >= 2_000.0, "{chunks} chunks held");
    let age = metric(api, "nagare_buffer_oldest_chunk_age_seconds").unwrap();
    assert!(age > 0.0, "oldest chunk age {age}");

    // 2. Stop both (the forwarder, which cannot deliver what it holds, for good);
    //    the aggregator keeps its chunks on disk.
    forwarder.kill9();
    assert!(aggregator.terminate(Duration::from_secs(30)).success());

    // 3. Start it again and watch /readyz from its first answer: not ready while
    //    the buffer recovers its chunks, then ready.
    let started = Instant::now();
    let mut restarted = Nagare::start("aggregator-again", dir.path(), &config);
    let mut states: Vec<(Duration, u16, Vec<String>)> = Vec::new();
    // Polled every millisecond (not wait_until's 20 ms), so that a recovery of a
    // tenth of a second shows.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ready = false;
    while Instant::now() < deadline {
        restarted.assert_running();
        if let Some((status, waiting)) = readyz(api) {
            if states
                .last()
                .is_none_or(|(_, s, w)| (*s, w) != (status, &waiting))
            {
                states.push((started.elapsed(), status, waiting));
            }
            if status == 200 {
                ready = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let sequence: Vec<String> = states
        .iter()
        .map(|(at, s, w)| format!("{:>6} ms {s} {w:?}", at.as_millis()))
        .collect();
    let sequence = sequence.join("\n");
    println!("/readyz after the restart, with {chunks} chunks to recover:\n{sequence}");
    assert!(
        ready,
        "never ready again:\n{sequence}\n{}",
        restarted.child.logs()
    );
    let (_, first, waiting) = &states[0];
    assert_eq!(*first, 503, "{sequence}");
    assert!(
        waiting.iter().any(|r| r.contains("buffers to open")),
        "the first answer does not say the buffers are recovering:\n{sequence}"
    );
    assert_eq!(states.last().unwrap().1, 200, "{sequence}");
    let recovered = metric(api, "nagare_buffer_recovered_chunks_total").unwrap();
    assert!(
        recovered >= chunks - 1.0,
        "{recovered} chunks recovered of the {chunks} held"
    );
    // The recovered chunks count their age from their files.
    let age_after = metric(api, "nagare_buffer_oldest_chunk_age_seconds").unwrap();
    assert!(age_after >= age, "{age_after} < {age}");
    assert!(restarted.terminate(Duration::from_secs(30)).success());
}
