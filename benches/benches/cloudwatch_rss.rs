//! Aggregator resident memory while delivering 20,000 events/s to CloudWatch Logs.
//!
//! The real `nagare` binary as the aggregator (forward source -> memory buffer ->
//! `cloudwatch_logs` sink, four PutLogEvents in flight) delivers to moto's server
//! (signatures checked), fed PackedForward chunks of 1,000 Kubernetes records (about
//! 330 bytes each as JSON) at 20,000 records/s by a client that waits for each ack.
//! The aggregator's RSS is sampled every second; after a warm-up of 10 s the samples
//! must stay within 20 % of each other. At the end, the events moto holds are
//! counted (it stores them all, so it falls behind if it cannot keep up; the feed's
//! acks show whether the aggregator did).
//!
//!   cargo build --release && cargo bench -p nagare-benches --bench cloudwatch_rss
//!
//! `NAGARE_BIN` names the binary (default: `target/release/nagare`, or
//! `target/debug/nagare` under `cargo test`); `NAGARE_RSS_SECS` the duration
//! (default 60). Under `cargo test` it runs 4 s at 2,000 records/s and checks that
//! every event arrives. The feed and the sampling are `nagare_benches::rss`'s.

use std::time::{Duration, Instant};

use nagare_benches::rss::{Aggregator, Plan, feed};
use nagare_testkit::moto::{Moto, REGION};
use nagare_testkit::{free_port, wait_until};

/// Pods, so streams, the records are spread over.
const PODS: usize = 8;

fn main() {
    let plan = Plan::from_args();
    let moto = Moto::shared();
    let key = moto.credentials();
    let group = Moto::unique("/bench/rss");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "data_dir: {data}
sources:
  nodes:
    type: forward
    bind: 127.0.0.1:{port}
sinks:
  cloudwatch:
    type: cloudwatch_logs
    match: \"kube.**\"
    log_group_name: \"{group}\"
    log_stream_name: \"{{kubernetes.pod_name}}\"
    endpoint: \"{endpoint}\"
    aws:
      region: {REGION}
    buffer:
      total_limit_size: 256MiB
      flush_thread_count: 4
",
        data = dir.path().join("data").display(),
        endpoint = moto.url(),
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", key.id.as_str()),
        ("AWS_SECRET_ACCESS_KEY", key.secret.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ];
    let mut aggregator = Aggregator::start(&plan, dir.path(), &config, &env, port);
    let pid = aggregator.pid();

    let samples = feed(pid, port, "kube.shop.checkout", PODS, &plan);
    let sent = samples.sent;

    // Everything the aggregator acknowledged reaches moto.
    let count = || -> u64 {
        moto.streams(&group)
            .iter()
            .map(|s| moto.events(&group, s).len() as u64)
            .sum()
    };
    let drained = Instant::now();
    let mut stored = 0;
    let all = wait_until(Duration::from_secs(600), || {
        stored = count();
        stored >= sent
    });
    let drain_secs = drained.elapsed().as_secs_f64();
    // Measured and delivered: no need for a graceful stop.
    aggregator.stop();

    samples.report(
        "cloudwatch_rss",
        &plan,
        &format!("moto holds {stored} events"),
        drain_secs,
    );
    assert!(
        all,
        "moto holds {stored} of the {sent} events the aggregator acknowledged"
    );
    if !plan.benching {
        assert_eq!(stored, sent);
    }
}
