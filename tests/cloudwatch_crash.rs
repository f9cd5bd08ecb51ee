//! The crash loop for CloudWatch Logs: a forwarder tails 200,000 numbered lines to an
//! aggregator whose `cloudwatch_logs` sink has a file buffer, and the aggregator is
//! SIGKILLed 5 times while it delivers them to moto (signatures checked). Every line
//! arrives. CloudWatch Logs has no idempotency key, so what was sent but not yet
//! acknowledged at a kill arrives twice: the copies are counted and must stay within
//! what the configured sizes let be unacknowledged.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nagare_testkit::moto::{Moto, REGION};
use nagare_testkit::{free_port, wait_until};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{Nagare, forward_aggregator};

const LINES: usize = 200_000;
const FILES: usize = 4;
const KILLS: usize = 5;

/// Events per PutLogEvents call, calls in flight, and events per chunk of the
/// aggregator's buffer; events per chunk and chunks in flight of the forwarder.
const BATCH_EVENTS: u64 = 2_000;
const FLUSH_THREADS: u64 = 2;
const AGGREGATOR_CHUNK: u64 = 1_000;
const FORWARDER_CHUNK: u64 = 1_000;
const FORWARDER_IN_FLIGHT: u64 = 4;

/// Appends numbered lines `from..to` to the `FILES` container log files of `dir`.
fn write_lines(dir: &Path, from: usize, to: usize, base: i64) {
    support::write_numbered_cri_lines(dir, FILES, from, to, base);
}

/// How often each `seq` is in `group`'s streams.
fn seqs_in_cloudwatch(moto: &Moto, group: &str) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    for stream in moto.streams(group) {
        for event in moto.events(group, &stream) {
            if let Some(at) = event.message.find("\"seq\":") {
                let digits: String = event.message[at + 6..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                if let Ok(n) = digits.parse() {
                    *counts.entry(n).or_insert(0) += 1;
                }
            }
        }
    }
    counts
}

#[test]
fn two_hundred_thousand_lines_survive_five_sigkills_of_the_aggregator() {
    let seed = std::env::var("NAGARE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash schedule seed: {seed} (NAGARE_CRASH_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let moto = Moto::shared();
    let key = moto.credentials();
    let group = Moto::unique("/crash");
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    // Ten minutes ago: within what CloudWatch Logs (and moto) accept.
    let base = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 600;

    let aggregator_config = forward_aggregator(
        &dir.path().join("agg"),
        port,
        &format!(
            "  cloudwatch:
    type: cloudwatch_logs
    match: \"**\"
    log_group_name: \"{group}\"
    log_stream_name: \"{{kubernetes.pod_name}}\"
    endpoint: \"{endpoint}\"
    request_timeout: 10s
    batch: {{ max_events: {BATCH_EVENTS}, timeout: 200ms }}
    aws:
      region: {REGION}
    buffer:
      type: file
      total_limit_size: 256MiB
      chunk_limit_records: {AGGREGATOR_CHUNK}
      flush_interval: 200ms
      flush_thread_count: {FLUSH_THREADS}
      retry_wait: 100ms
      retry_max_interval: 2s
      retry_forever: true
",
            endpoint = moto.url(),
        ),
    );
    let forwarder_config = format!(
        "data_dir: {data}
sources:
  containers:
    type: tail
    paths: [\"{logs}/*.log\"]
    read_from_head: true
    refresh_interval: 100ms
    poll_interval: 50ms
    chunk_limit_size: 64KiB
sinks:
  aggregator:
    type: forward
    match: \"**\"
    servers: [{{host: 127.0.0.1, port: {port}}}]
    ack_response_timeout: 10s
    max_in_flight: {FORWARDER_IN_FLIGHT}
    buffer:
      type: file
      chunk_limit_records: {FORWARDER_CHUNK}
      flush_interval: 200ms
      retry_forever: true
",
        data = dir.path().join("fwd").display(),
        logs = logs.display(),
    );

    // The aggregator signs with moto's key, from its environment.
    let env = [
        ("AWS_ACCESS_KEY_ID", key.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];

    let started = Instant::now();
    let mut aggregator =
        Nagare::listening_again("aggregator", dir.path(), &aggregator_config, port, &env);
    let mut forwarder = Nagare::start("forwarder", dir.path(), &forwarder_config);

    // The lines are written over about 20 s while the aggregator is killed five times
    // at random moments, and started again at once or after a short pause.
    const WRITING: Duration = Duration::from_secs(20);
    let writer = {
        let logs = logs.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let steps = 200;
            for step in 0..steps {
                write_lines(
                    &logs,
                    step * LINES / steps,
                    (step + 1) * LINES / steps,
                    base,
                );
                let next = t0 + WRITING * (step as u32 + 1) / steps as u32;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let mut kills: Vec<Duration> = (0..KILLS)
        .map(|_| {
            Duration::from_millis(rng.random_range(1_000..WRITING.as_millis() as u64 + 10_000))
        })
        .collect();
    kills.sort();
    let mut kill_log = Vec::new();
    for at in kills {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        let pause = Duration::from_millis(rng.random_range(0..1500));
        aggregator.kill9();
        std::thread::sleep(pause);
        aggregator =
            Nagare::listening_again("aggregator", dir.path(), &aggregator_config, port, &env);
        kill_log.push(format!(
            "{:.1} s (+{} ms down)",
            at.as_secs_f64(),
            pause.as_millis()
        ));
    }
    writer.join().unwrap();
    println!("aggregator kills: {}", kill_log.join(", "));

    let mut seen = HashMap::new();
    let all_in = wait_until(Duration::from_secs(300), || {
        forwarder.assert_running();
        aggregator.assert_running();
        seen = seqs_in_cloudwatch(moto, &group);
        seen.len() == LINES
    });
    assert!(
        all_in,
        "only {} of {LINES} lines in CloudWatch Logs after {:?}\n{}\n{}",
        seen.len(),
        started.elapsed(),
        forwarder.child.logs(),
        aggregator.child.logs()
    );
    let took = started.elapsed();
    assert!(forwarder.terminate(Duration::from_secs(30)).success());
    assert!(aggregator.terminate(Duration::from_secs(30)).success());

    let seen = seqs_in_cloudwatch(moto, &group);
    assert_eq!(seen.len(), LINES, "every line is in CloudWatch Logs");
    assert!(seen.keys().all(|&n| (n as usize) < LINES));
    let events: u64 = seen.values().map(|&c| u64::from(c)).sum();
    let extra = events - LINES as u64;
    // What a kill can leave sent but unacknowledged, from the sizes configured above:
    // - each of the sink's FLUSH_THREADS workers: the PutLogEvents call in flight (at
    //   most BATCH_EVENTS events, stored by CloudWatch Logs before the kill cut the
    //   answer off) and the part already delivered of the one chunk that straddles
    //   its batches (at most AGGREGATOR_CHUNK events); the buffer sends those chunks
    //   whole again after the restart;
    // - the forwarder's chunks the aggregator had committed but not yet acknowledged
    //   (at most FORWARDER_IN_FLIGHT chunks of FORWARDER_CHUNK events), which the
    //   forwarder sends again.
    let per_kill =
        FLUSH_THREADS * (BATCH_EVENTS + AGGREGATOR_CHUNK) + FORWARDER_IN_FLIGHT * FORWARDER_CHUNK;
    println!(
        "crash loop: {LINES} lines, {KILLS} SIGKILLs of the aggregator, all in CloudWatch Logs in {:.1} s; {extra} copies ({:.2} %), bound {} ({per_kill} per kill)",
        took.as_secs_f64(),
        extra as f64 * 100.0 / LINES as f64,
        KILLS as u64 * per_kill,
    );
    assert!(
        extra <= KILLS as u64 * per_kill,
        "{extra} copies: more than {KILLS} kills can leave unacknowledged ({per_kill} each)"
    );
}
