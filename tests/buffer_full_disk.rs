//! A full disk under a file buffer, for real: the buffer's folder on a small tmpfs
//! that the test mounts (and unmounts at the end, also on failure), filled up.
//!
//! - The aggregator (forward source -> file buffer -> file sink), fed by Go's
//!   fluent-logger with acks: with no room at all, no post is acknowledged and the
//!   process keeps running and says why; stopped then, it stops; once the test frees
//!   room, every post (sent again by the client) is written and acknowledged. With
//!   less room than one segment, only what the sink delivers makes room: the buffer
//!   must give the room of delivered chunks back to go on.
//! - The forwarder (tail source -> file buffer -> forward sink): stopped (SIGTERM)
//!   while its buffer cannot write, it stops, and its checkpoint has not passed the
//!   lines that were not committed: after a restart with room, every line arrives.
//!
//! Mounting a tmpfs needs root; without it each test prints why it is skipped.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use nagare_testkit::{Tmpfs, free_port, wait_until};
use support::fault_client::{acked, aggregator_config, client_program, ids_in, posts, skip};
use support::{Nagare, plain, seqs_in};

/// The first log line of `process` that has every one of `words`, colours removed.
fn logged(process: &Nagare, words: &[&str]) -> Option<String> {
    plain(&process.child.stderr())
        .lines()
        .find(|l| words.iter().all(|w| l.contains(w)))
        .map(str::to_string)
}

/// Buffer keys: records stored uncompressed, so that they take on disk what they
/// weigh, in segments of 1 MiB (a sixteenth of the limit), each written at once.
const UNCOMPRESSED: &str =
    "      flush_mode: immediate\n      compress: none\n      total_limit_size: 16MiB\n";

/// Starts the aggregator of `aggregator_config` (its data in `dir/agg`) and waits
/// until it listens on `port`. Returns it and its config, to start it again.
fn start_aggregator(
    dir: &Path,
    port: u16,
    out: &Path,
    buffer: &Path,
    keys: &str,
) -> (Nagare, String) {
    let config = aggregator_config(&dir.join("agg"), port, out, buffer, keys);
    (Nagare::listening("aggregator", dir, &config, port), config)
}

/// Waits until `process` logs that its disk is full.
fn says_disk_full(process: &Nagare) -> bool {
    wait_until(Duration::from_secs(20), || {
        logged(process, &["No space left on device"]).is_some()
    })
}

#[test]
fn a_full_disk_under_the_aggregator_acks_nothing_unwritten_and_delivery_resumes_with_room() {
    if skip() {
        return;
    }
    let program = client_program();
    // Declared first, so it is unmounted last, after every process using it is gone.
    let tmpfs = Tmpfs::mount(8 << 20);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out/all.ndjson");
    let buffer = tmpfs.path().join("buffer");
    let (mut agg, config) = start_aggregator(dir.path(), port, &out, &buffer, UNCOMPRESSED);

    // 1. No room at all: nothing can be written, so nothing is acknowledged.
    let full = tmpfs.path().join("filler-all");
    tmpfs.fill(&full, u64::MAX);
    assert!(tmpfs.free_bytes() < 4096, "the tmpfs is full");
    let stop = dir.path().join("stop");
    let stop_arg = stop.display().to_string();
    let mut first = program.spawn(&[&port.to_string(), "2", "50", &stop_arg, "1000", "a"]);
    assert!(
        says_disk_full(&agg),
        "the aggregator does not say that its disk is full\n{}",
        agg.child.logs()
    );
    // A while with the disk full: the posts wait for their acks.
    let full_since = Instant::now();
    assert!(wait_until(Duration::from_secs(10), || {
        posts(&first).len() >= 2 && full_since.elapsed() >= Duration::from_secs(2)
    }));
    assert_eq!(
        acked(&first),
        0,
        "acks for posts the full disk kept from being written"
    );
    agg.assert_running();
    let said = logged(&agg, &["No space left on device"]).unwrap_or_default();
    println!("disk full: the aggregator logged: {said}");
    assert!(
        said.contains(&format!("cannot write {}/", buffer.display()))
            && said.contains(".segment")
            && said.contains("not committed")
            && said.contains("trying again"),
        "the log says which file, what failed and what happens: {said}"
    );

    // 2. Stopped while its disk is full, it stops (after shutdown_timeout); started
    //    again, still full, it runs; once there is room, the client's posts, sent
    //    again on a new connection, are written and acknowledged.
    let stopping = Instant::now();
    let status = agg.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", agg.child.logs());
    println!(
        "disk full: stopped in {:.1} s (shutdown_timeout 5 s)",
        stopping.elapsed().as_secs_f64()
    );
    assert_eq!(acked(&first), 0, "acks for posts never written");
    let mut agg = Nagare::listening("aggregator", dir.path(), &config, port);
    std::fs::remove_file(&full).unwrap();
    first.expect_success(Duration::from_secs(30));
    let sent = posts(&first);
    assert_eq!(sent.len(), 100);
    assert!(sent.values().all(|p| p.acked.is_some()));

    // 3. Less room than one segment, kept so: only what the sink delivers makes
    //    room. About 5 MiB of records go through 256 KiB.
    let room = 256 * 1024;
    tmpfs.fill(
        &tmpfs.path().join("filler-most"),
        tmpfs.free_bytes().saturating_sub(room),
    );
    let started = Instant::now();
    let mut second = program.spawn(&[&port.to_string(), "4", "1200", &stop_arg, "1000", "b"]);
    let done = second.wait_timeout(Duration::from_secs(40));
    assert!(
        done.is_some_and(|s| s.success()),
        "the posts did not all get through {room} bytes of room: {} of 4800 acked\n{}",
        acked(&second),
        agg.child.logs()
    );
    agg.assert_running();
    let took = started.elapsed();
    let mut all = posts(&first);
    all.extend(posts(&second));
    assert_eq!(all.len(), 100 + 4800);
    assert!(
        wait_until(Duration::from_secs(30), || ids_in(&out).len() >= all.len()),
        "{} of {} records in the file sink\n{}",
        ids_in(&out).len(),
        all.len(),
        agg.child.logs()
    );
    let ids = ids_in(&out);
    let missing: Vec<&String> = all.keys().filter(|id| !ids.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged and lost: {:?}",
        &missing[..missing.len().min(10)]
    );
    println!(
        "disk nearly full: 4,800 records of 1 KiB through {} KiB of room in {:.1} s",
        room / 1024,
        took.as_secs_f64()
    );
    assert!(agg.terminate(Duration::from_secs(30)).success());
}

#[test]
fn a_chunk_too_large_for_the_room_left_waits_without_holding_up_smaller_ones() {
    if skip() {
        return;
    }
    let program = client_program();
    let tmpfs = Tmpfs::mount(4 << 20);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out/all.ndjson");
    let buffer = tmpfs.path().join("buffer");
    let (mut agg, _) = start_aggregator(dir.path(), port, &out, &buffer, UNCOMPRESSED);
    let filler = tmpfs.path().join("filler");
    tmpfs.fill(&filler, tmpfs.free_bytes().saturating_sub(128 * 1024));
    let stop = dir.path().join("stop");
    let stop_arg = stop.display().to_string();

    // One client posts a record of 512 KiB: it cannot be written in 128 KiB.
    let port_arg = port.to_string();
    let mut large = program.spawn(&[&port_arg, "1", "1", &stop_arg, "524288", "large"]);
    assert!(says_disk_full(&agg), "{}", agg.child.logs());
    // Another client's small records fit: they are written and acknowledged while
    // the large one waits.
    let mut small = program.spawn(&[&port_arg, "2", "20", &stop_arg, "1000", "small"]);
    let through = wait_until(Duration::from_secs(20), || small.try_wait().is_some());
    assert!(
        through && acked(&small) == 40,
        "{} of 40 small records acknowledged while a large one waited for room\n{}",
        acked(&small),
        agg.child.logs()
    );
    assert_eq!(
        acked(&large),
        0,
        "the large record cannot have been written"
    );

    // With room, the large one is written too.
    std::fs::remove_file(&filler).unwrap();
    large.expect_success(Duration::from_secs(40));
    assert!(
        wait_until(Duration::from_secs(20), || ids_in(&out).len() == 41),
        "{:?}\n{}",
        ids_in(&out).keys().collect::<Vec<_>>(),
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(30)).success());
}

/// 2024-05-01T12:00:00Z.
const DAY: i64 = 1_714_564_800;

/// Appends CRI lines `from..to` to `path`, each with `{"seq":n}`.
fn write_lines(path: &Path, from: usize, to: usize) {
    let mut text = String::new();
    for n in from..to {
        let ts = nagare_core::EventTime::new(DAY + n as i64, 0).to_rfc3339();
        let _ = writeln!(
            text,
            "{ts} stdout F {{\"seq\":{n},\"msg\":\"{}\"}}",
            "y".repeat(200)
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_forwarder_stopped_while_its_disk_is_full_keeps_its_checkpoint_before_uncommitted_lines() {
    if skip() {
        return;
    }
    let tmpfs = Tmpfs::mount(4 << 20);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out/all.ndjson");
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let log = logs.join("app-0_shop_app-0000000000000000.log");
    let (mut agg, _) = start_aggregator(dir.path(), port, &out, &dir.path().join("agg-buffer"), "");
    // Checkpoints under data_dir on the test's disk; only the buffer on the tmpfs.
    let fwd_config = format!(
        "data_dir: {data}
shutdown_timeout: 5s
sources:
  app:
    type: tail
    paths: [\"{logs}/*.log\"]
    read_from_head: true
    refresh_interval: 100ms
    poll_interval: 50ms
    checkpoint_interval: 100ms
sinks:
  aggregator:
    type: forward
    match: \"**\"
    servers: [{{host: 127.0.0.1, port: {port}}}]
    buffer:
      type: file
      path: {buffer}
      flush_interval: 200ms
      retry_forever: true
",
        data = dir.path().join("fwd").display(),
        logs = logs.display(),
        buffer = tmpfs.path().join("buffer").display(),
    );
    let mut fwd = Nagare::start("forwarder", dir.path(), &fwd_config);

    // Lines flow while there is room.
    write_lines(&log, 0, 200);
    assert!(
        wait_until(Duration::from_secs(20), || seqs_in(&out).len() >= 200),
        "{}\n{}",
        fwd.child.logs(),
        agg.child.logs()
    );

    // No room: the lines read now cannot be committed.
    let full = tmpfs.path().join("filler");
    tmpfs.fill(&full, u64::MAX);
    write_lines(&log, 200, 2200);
    assert!(
        says_disk_full(&fwd),
        "the forwarder does not say that its disk is full\n{}",
        fwd.child.logs()
    );
    fwd.assert_running();

    let said = logged(&fwd, &["No space left on device"]).unwrap_or_default();
    println!("disk full: the forwarder logged: {said}");
    assert!(
        said.contains(&format!("{}/", tmpfs.path().join("buffer").display()))
            && said.contains("not committed"),
        "the log says which file and what happens: {said}"
    );

    // Stopped meanwhile: it stops (after shutdown_timeout), without moving its
    // checkpoint past them.
    let status = fwd.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", fwd.child.logs());
    let stopped = plain(&fwd.child.stderr());
    std::fs::remove_file(&full).unwrap();
    let mut fwd = Nagare::start("forwarder", dir.path(), &fwd_config);
    let all = wait_until(Duration::from_secs(30), || seqs_in(&out).len() >= 2200);
    let seqs = seqs_in(&out);
    let missing: Vec<u64> = (0..2200).filter(|n| !seqs.contains_key(n)).collect();
    assert!(
        all && missing.is_empty(),
        "{} lines lost after a stop with a full disk (first {:?})\nfirst run:\n{stopped}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        fwd.child.logs()
    );
    assert!(fwd.terminate(Duration::from_secs(30)).success());
    assert!(agg.terminate(Duration::from_secs(30)).success());
}
