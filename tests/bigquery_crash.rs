//! The crash loops for BigQuery: a forwarder tails 200,000 numbered lines to an
//! aggregator whose `bigquery` sink has a file buffer, and the aggregator is
//! SIGKILLed 10 times at random moments while it delivers them to local-bigquery.
//!
//! - insertAll: every line arrives. insertAll drops a row whose `insertId` it saw
//!   within about a minute, and the ids are derived from the chunk a line first
//!   arrived in, so most resends after a kill are dropped; the copies that remain
//!   (insertId dedupe is best-effort) are counted, printed, and must stay within what
//!   the configured sizes let be unacknowledged.
//! - Storage Write with committed streams, over gRPC: every line arrives exactly
//!   once, `COUNT(*)` and `COUNT(DISTINCT seq)` both 200,000. After each kill the
//!   chunks come back from the file buffer (and from the forwarder, for those it had
//!   not been acknowledged), the streams the killed process left open are finalized,
//!   and the offsets journal says which of their appends landed.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use nagare_testkit::{LocalBigQuery, free_port, wait_until};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{Nagare, forward_aggregator};

const LINES: usize = 200_000;
const FILES: usize = 4;
const KILLS: usize = 10;

/// Rows per insertAll request, requests in flight, and events per chunk of the
/// aggregator's buffer; events per chunk and chunks in flight of the forwarder.
const BATCH_ROWS: u64 = 2_000;
const FLUSH_THREADS: u64 = 2;
const AGGREGATOR_CHUNK: u64 = 1_000;
const FORWARDER_CHUNK: u64 = 1_000;
const FORWARDER_IN_FLIGHT: u64 = 4;

/// Appends numbered lines `from..to` to the `FILES` container log files of `dir`.
fn write_lines(dir: &Path, from: usize, to: usize, base: i64) {
    support::write_numbered_cri_lines(dir, FILES, from, to, base);
}

/// `COUNT(*)` and `COUNT(DISTINCT seq)` of the table, or zeros while it is missing.
fn counts(bq: &LocalBigQuery, dataset: &str) -> (u64, u64) {
    if bq.table(dataset, "lines").is_none() {
        return (0, 0);
    }
    let rows = bq.query(&format!(
        "SELECT COUNT(*) AS n, COUNT(DISTINCT seq) AS d FROM `{dataset}.lines`"
    ));
    let get = |k: &str| {
        rows[0][k]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    (get("n"), get("d"))
}

/// What a crash loop left in the table.
struct Outcome {
    rows: u64,
    distinct: u64,
    took: Duration,
    /// The logs of every aggregator process of the loop, killed or not, in order.
    aggregator_logs: String,
    /// The dataset the lines went to.
    dataset: String,
}

impl Outcome {
    /// The lines in the table more than once, as runs of consecutive `seq`s with
    /// their copies (`first..=last ×n`), for a failure message.
    fn copies(&self) -> String {
        let rows = LocalBigQuery::shared().query(&format!(
            "SELECT seq, COUNT(*) AS n FROM `{}.lines` GROUP BY seq HAVING COUNT(*) > 1 ORDER BY seq",
            self.dataset
        ));
        let get = |row: &serde_json::Value, k: &str| {
            row[k]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut runs: Vec<(u64, u64, u64)> = Vec::new();
        for row in &rows {
            let (seq, n) = (get(row, "seq"), get(row, "n"));
            match runs.last_mut() {
                Some((_, last, copies)) if *last + 1 == seq && *copies == n => *last = seq,
                _ => runs.push((seq, seq, n)),
            }
        }
        runs.iter()
            .map(|(first, last, n)| format!("{first}..={last} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Runs the crash loop with the `bigquery` sink's keys for its method (`method`
/// given as YAML lines, with `{grpc}` for local-bigquery's gRPC endpoint), into a
/// dataset named after `prefix`; waits until every line is in the table.
fn crash_loop(prefix: &str, method: &str) -> Outcome {
    let seed = std::env::var("NAGARE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash schedule seed: {seed} (NAGARE_CRASH_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let bq = LocalBigQuery::shared();
    let dataset = LocalBigQuery::unique(prefix);
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let base = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - 600;

    let aggregator_config = forward_aggregator(
        &dir.path().join("agg"),
        port,
        &format!(
            "  bigquery:
    type: bigquery
    match: \"**\"
    project: {project}
    dataset: {dataset}
    table: lines
    endpoint: \"{endpoint}\"
{method}    auto_create_dataset: true
    auto_create_table: true
    schema:
      - {{ name: time, type: TIMESTAMP }}
      - {{ name: seq, type: INTEGER }}
      - {{ name: msg, type: STRING }}
    time_field: time
    partition_field: time
    partition_type: DAY
    request_timeout: 20s
    batch: {{ max_events: {BATCH_ROWS}, timeout: 200ms }}
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
            project = bq.project(),
            endpoint = bq.url(),
            method = method.replace("{grpc}", bq.grpc_url()),
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
    ack_response_timeout: 20s
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

    let started = Instant::now();
    let mut aggregator =
        Nagare::listening_again("aggregator", dir.path(), &aggregator_config, port, &[]);
    let mut forwarder = Nagare::start("forwarder", dir.path(), &forwarder_config);

    // The lines are written over about 20 s while the aggregator is killed ten times
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
            Duration::from_millis(rng.random_range(1_000..WRITING.as_millis() as u64 + 15_000))
        })
        .collect();
    kills.sort();
    let mut kill_log = Vec::new();
    let mut aggregator_logs = String::new();
    for at in kills {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        let pause = Duration::from_millis(rng.random_range(0..1500));
        aggregator.kill9();
        aggregator_logs.push_str(&aggregator.child.logs());
        std::thread::sleep(pause);
        aggregator =
            Nagare::listening_again("aggregator", dir.path(), &aggregator_config, port, &[]);
        kill_log.push(format!(
            "{:.1} s (+{} ms down)",
            at.as_secs_f64(),
            pause.as_millis()
        ));
    }
    writer.join().unwrap();
    println!("aggregator kills: {}", kill_log.join(", "));

    let mut seen = (0, 0);
    let all_in = wait_until(Duration::from_secs(400), || {
        forwarder.assert_running();
        aggregator.assert_running();
        seen = counts(bq, &dataset);
        if seen.1 < LINES as u64 {
            std::thread::sleep(Duration::from_secs(1));
        }
        seen.1 == LINES as u64
    });
    assert!(
        all_in,
        "only {} of {LINES} lines in BigQuery after {:?}\n{}\n{}",
        seen.1,
        started.elapsed(),
        forwarder.child.logs(),
        aggregator.child.logs()
    );
    let took = started.elapsed();
    assert!(forwarder.terminate(Duration::from_secs(30)).success());
    assert!(aggregator.terminate(Duration::from_secs(30)).success());

    let (rows, distinct) = counts(bq, &dataset);
    let range = bq.query(&format!(
        "SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM `{dataset}.lines`"
    ));
    assert_eq!(range[0]["lo"], "0");
    assert_eq!(range[0]["hi"], (LINES - 1).to_string());
    aggregator_logs.push_str(&aggregator.child.logs());
    Outcome {
        rows,
        distinct,
        took,
        aggregator_logs,
        dataset,
    }
}

#[test]
fn insert_all_keeps_every_line_through_ten_sigkills_of_the_aggregator() {
    let Outcome {
        rows,
        distinct,
        took,
        ..
    } = crash_loop("crash", "");
    assert_eq!(distinct, LINES as u64, "every line is in BigQuery");
    let extra = rows - distinct;
    // What a kill can leave sent but unacknowledged, as for CloudWatch Logs (see
    // tests/cloudwatch_crash.rs); insertId drops most of it, so this bound is loose.
    let per_kill =
        FLUSH_THREADS * (BATCH_ROWS + AGGREGATOR_CHUNK) + FORWARDER_IN_FLIGHT * FORWARDER_CHUNK;
    println!(
        "crash loop: {LINES} lines, {KILLS} SIGKILLs of the aggregator, all in BigQuery (insertAll) in {:.1} s; COUNT(*) {rows}, COUNT(DISTINCT seq) {distinct}: {extra} copies ({:.3} %), bound {}",
        took.as_secs_f64(),
        extra as f64 * 100.0 / LINES as f64,
        KILLS as u64 * per_kill,
    );
    assert!(
        extra <= KILLS as u64 * per_kill,
        "{extra} copies: more than {KILLS} kills can leave unacknowledged ({per_kill} each)"
    );
}

#[test]
fn storage_write_puts_every_line_in_exactly_once_through_ten_sigkills() {
    let method =
        "    method: storage_write\n    write_stream: committed\n    grpc_endpoint: \"{grpc}\"\n";
    let outcome = crash_loop("write_crash", method);
    let Outcome {
        rows,
        distinct,
        took,
        ..
    } = outcome;
    println!(
        "crash loop: {LINES} lines, {KILLS} SIGKILLs of the aggregator, all in BigQuery (Storage Write, committed streams) in {:.1} s; COUNT(*) {rows}, COUNT(DISTINCT seq) {distinct}",
        took.as_secs_f64(),
    );
    assert_eq!(
        (rows, distinct),
        (LINES as u64, LINES as u64),
        "every line is in BigQuery exactly once; in it more than once: {}\n{}",
        outcome.copies(),
        outcome.aggregator_logs
    );
}
