//! Failover across real processes: three `nagare` aggregators and one `nagare`
//! forwarder tailing a file. Mid-stream one aggregator is killed with SIGKILL, then a
//! second; then both are started again. Every record must arrive, the survivor must
//! carry the load while the others are down, and the load must come back to the
//! restarted ones.
//!
//! The aggregators buffer in files: a chunk is acknowledged only once it is committed
//! there, so what a killed aggregator acknowledged but had not yet written out is
//! delivered by the same aggregator when it starts again; chunks in flight to it and
//! not acknowledged are resent by the forwarder to the others.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use nagare_testkit::{free_port, wait_until};
use support::{Nagare, read_ndjson};

const LINES_PER_BATCH: usize = 100;
const BATCH_PAUSE: Duration = Duration::from_millis(40);

fn aggregator(dir: &Path, i: usize, generation: usize, port: u16) -> Nagare {
    let mut agg = Nagare::start(
        &format!("aggregator-{i}-{generation}"),
        dir,
        &format!(
            "data_dir: {data}\n\
             sources:\n  from_nodes:\n    type: forward\n    bind: 127.0.0.1:{port}\n\
             sinks:\n  out:\n    type: file\n    match: \"**\"\n    path: {out}\n    format: record\n\
             \x20   buffer:\n      type: file\n      flush_interval: 100ms\n",
            data = dir.join(format!("agg-{i}")).display(),
            out = dir.join(format!("out-{i}-{generation}.ndjson")).display(),
        ),
    );
    support::wait_listening(&mut agg, port);
    agg
}

fn forwarder(dir: &Path, ports: &[u16]) -> Nagare {
    let servers: String = ports
        .iter()
        .map(|p| format!("      - host: 127.0.0.1\n        port: {p}\n"))
        .collect();
    Nagare::start(
        "forwarder",
        dir,
        &format!(
            "data_dir: {data}\n\
             sources:\n  app:\n    type: tail\n    paths: [{input}]\n    read_from_head: true\n    format: raw\n    poll_interval: 50ms\n    tag: app.input\n    kubernetes_metadata: false\n\
             sinks:\n  aggregators:\n    type: forward\n    match: \"**\"\n    servers:\n{servers}\
             \x20   heartbeat_type: udp\n    heartbeat_interval: 200ms\n    recover_wait: 1s\n    connect_timeout: 1s\n    ack_response_timeout: 5s\n",
            data = dir.join("fwd").display(),
            input = dir.join("input.log").display(),
        ),
    )
}

/// Event numbers in one output file, with how often each arrived.
fn numbers(path: &Path) -> Vec<usize> {
    read_ndjson(path)
        .iter()
        .map(|r| {
            let log = r["log"].as_str().unwrap_or_else(|| panic!("no log in {r}"));
            log.strip_prefix("n=").unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn three_aggregators_survive_two_stops_and_take_the_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ports = [free_port(), free_port(), free_port()];
    let mut aggs: Vec<Option<Nagare>> = (0..3)
        .map(|i| Some(aggregator(dir, i, 0, ports[i])))
        .collect();
    let input = dir.join("input.log");
    let mut file = std::fs::File::create(&input).unwrap();
    let mut fwd = forwarder(dir, &ports);

    let mut n = 0;
    // Appends `count` batches; returns the next number.
    let mut write_batches = |count: usize, fwd: &mut Nagare| {
        for _ in 0..count {
            let mut text = String::new();
            for _ in 0..LINES_PER_BATCH {
                text.push_str(&format!("n={n}\n"));
                n += 1;
            }
            file.write_all(text.as_bytes()).unwrap();
            file.flush().unwrap();
            std::thread::sleep(BATCH_PAUSE);
            fwd.assert_running();
        }
        n
    };

    write_batches(20, &mut fwd);
    let stop = |agg: &mut Option<Nagare>| {
        agg.as_mut().unwrap().child.kill();
        *agg = None;
    };
    stop(&mut aggs[0]);
    write_batches(15, &mut fwd);
    let alone_from = write_batches(0, &mut fwd);
    stop(&mut aggs[1]);
    let alone_until = write_batches(20, &mut fwd);
    aggs[0] = Some(aggregator(dir, 0, 1, ports[0]));
    aggs[1] = Some(aggregator(dir, 1, 1, ports[1]));
    let restarted_at = Instant::now();
    let back_from = alone_until;
    let total = write_batches(100, &mut fwd);

    // Every record arrives somewhere.
    let outputs: Vec<_> = [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1)]
        .iter()
        .map(|(i, g)| dir.join(format!("out-{i}-{g}.ndjson")))
        .collect();
    let arrived = || {
        let mut seen = vec![0usize; total];
        for o in &outputs {
            for x in numbers(o) {
                seen[x] += 1;
            }
        }
        seen
    };
    let all = wait_until(Duration::from_secs(30), || arrived().iter().all(|c| *c > 0));
    let seen = arrived();
    let missing: Vec<usize> = (0..total).filter(|x| seen[*x] == 0).collect();
    assert!(
        all,
        "{} of {total} records missing, first {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        fwd.child.logs()
    );
    let duplicates: usize = seen.iter().map(|c| c - 1).sum();

    let per_output: BTreeMap<String, Vec<usize>> = outputs
        .iter()
        .map(|o| {
            (
                o.file_name().unwrap().to_string_lossy().into_owned(),
                numbers(o),
            )
        })
        .collect();
    let counts: BTreeMap<&str, usize> = per_output
        .iter()
        .map(|(k, v)| (k.as_str(), v.len()))
        .collect();
    println!(
        "{total} records, {duplicates} duplicates; per aggregator: {counts:?}; restarted {:.1}s before the end of the stream",
        restarted_at.elapsed().as_secs_f64()
    );

    // While two were down, the survivor carried everything.
    let alone: Vec<usize> = (alone_from + 5 * LINES_PER_BATCH..alone_until).collect();
    let survivor: std::collections::HashSet<usize> =
        per_output["out-2-0.ndjson"].iter().copied().collect();
    let carried = alone.iter().filter(|x| survivor.contains(x)).count();
    assert_eq!(
        carried,
        alone.len(),
        "the survivor got everything written while alone"
    );

    // After the restart the load comes back: each restarted aggregator gets a fair
    // share of what was written once it had recovered.
    let after = total - back_from;
    for name in ["out-0-1.ndjson", "out-1-1.ndjson"] {
        let got = per_output[name].iter().filter(|x| **x >= back_from).count();
        assert!(
            got * 6 >= after,
            "{name} got {got} of the {after} records written after the restart: {counts:?}"
        );
    }
    drop(aggs);
    assert!(fwd.terminate(Duration::from_secs(20)).success());
}
