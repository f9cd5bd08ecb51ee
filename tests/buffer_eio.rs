//! A disk that fails to make writes durable, for real: an aggregator process
//! (forward source -> file buffer -> file sink) fed by Go's fluent-logger with acks,
//! whose buffer's fdatasyncs and fsyncs strace makes fail with EIO for a few
//! seconds, once for segment files (chunks queued whole, group commit) and once for
//! staged chunk files (and the folder's fsync).
//!
//! What each checks: no post whose write could not be made durable is acknowledged;
//! those pushes are written again once the disk works and then acknowledged; nothing
//! acknowledged is lost and nothing is delivered twice (a copy whose sync failed is
//! never sent, not even after a restart); the process keeps running and its log says
//! which file, which operation, what error and what the buffer does about it.
//!
//! strace needs root (to trace another process) and `--inject` (`scripts/test`
//! installs it); without them each test prints why it is skipped.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::time::Duration;

use nagare_testkit::{Strace, free_port, wait_until};
use support::fault_client::{
    Post, acked, aggregator_config, buffer_files, client_program, ids_in, now_ns, posts, skip,
};
use support::{Nagare, plain, wait_listening};

/// How long the client may take to finish its last posts once told to stop: a guard
/// against a post never acknowledged, not a speed limit. strace stops the aggregator at
/// every traced call, which on a loaded machine slows its acks many times over.
const CLIENT_FINISHES: Duration = Duration::from_secs(90);

/// Runs the EIO scenario against an aggregator whose buffer has `keys`; `what`
/// names the storage in messages, `file_ending` the files whose fdatasync fails
/// (the folder's fsync fails too).
fn failing_syncs_are_not_acknowledged(keys: &str, what: &str, file_ending: &str) {
    let program = client_program();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out/all.ndjson");
    let buffer = dir.path().join("buffer");
    let config = aggregator_config(&dir.path().join("agg"), port, &out, &buffer, keys);
    let mut agg = Nagare::start("aggregator", dir.path(), &config);
    wait_listening(&mut agg, port);

    let stop = dir.path().join("stop");
    let stop_arg = stop.display().to_string();
    let mut client = program.spawn(&[&port.to_string(), "4", "1000000", &stop_arg, "200", ""]);
    assert!(
        wait_until(Duration::from_secs(20), || acked(&client) >= 200),
        "the client got no acks\n{}\n{}",
        client.logs(),
        agg.child.logs()
    );

    // Every fdatasync and fsync of the buffer's files fails from now on.
    let mut strace = Strace::inject(
        agg.child.pid(),
        "fdatasync,fsync",
        "EIO",
        &buffer_files(&buffer, 400),
    );
    assert!(
        wait_until(Duration::from_secs(20), || strace.injected() >= 1),
        "no sync of the buffer failed\n{}",
        strace.log_text()
    );
    let failing_since = now_ns();
    let before = acked(&client);
    // Long enough for several attempts of a push (they back off from 0.5 s).
    let failed_enough = wait_until(Duration::from_secs(20), || {
        strace.injected() >= 3 && now_ns() - failing_since >= 3_000_000_000
    });
    let failing_until = now_ns();
    let during = acked(&client);
    let log = strace.detach();
    assert!(failed_enough, "the buffer did not try again\n{log}");
    agg.assert_running();

    // No post sent while its write could not be made durable was acknowledged.
    let early: Vec<(String, Post)> = posts(&client)
        .into_iter()
        .filter(|(_, p)| p.sent > failing_since && p.acked.is_some_and(|a| a < failing_until))
        .collect();
    assert!(
        early.is_empty(),
        "{what}: {} posts sent after fdatasync began to fail were acked before it worked again: {:?}\n{}",
        early.len(),
        &early[..early.len().min(5)],
        agg.child.logs()
    );
    // The posts under way when the syncs began to fail waited through it.
    assert!(
        during - before <= 4,
        "{what}: {} acks while every sync failed",
        during - before
    );

    // Once syncs work again, the waiting pushes are written again and acknowledged.
    assert!(
        wait_until(Duration::from_secs(30), || acked(&client) >= during + 200),
        "{what}: the client got no acks after the fault ended\n{}\n{}",
        client.logs(),
        agg.child.logs()
    );
    std::fs::write(&stop, b"").unwrap();
    client.expect_success(CLIENT_FINISHES);
    agg.assert_running();
    let posts = posts(&client);
    assert!(
        posts.values().all(|p| p.acked.is_some()),
        "every post acked in the end"
    );
    assert!(
        wait_until(Duration::from_secs(30), || ids_in(&out).len()
            >= posts.len()),
        "{what}: {} of {} records in the file sink\n{}",
        ids_in(&out).len(),
        posts.len(),
        agg.child.logs()
    );

    // The log says what failed, on which file, and what the buffer does about it;
    // and then that it works again.
    let logs = plain(&agg.child.stderr());
    let said = logs.lines().find(|l| {
        let file = l.contains(&format!("cannot fdatasync {}/", buffer.display()))
            && l.contains(file_ending);
        let folder = l.contains(&format!("cannot fsync the folder {}", buffer.display()));
        (file || folder)
            && l.contains("Input/output error")
            && l.contains("not committed")
            && l.contains("trying again")
    });
    if file_ending == ".segment" {
        // Each failed fdatasync of a segment says what becomes of the chunks it
        // covered.
        let covered = logs.lines().find(|l| {
            l.contains("cannot fdatasync a buffer segment")
                && l.contains(&format!("segment={}/", buffer.display()))
                && l.contains("Input/output error")
                && l.contains("written again to a new segment")
        });
        assert!(
            covered.is_some(),
            "{what}: no log line for a failed fdatasync of a segment\n{logs}"
        );
        println!(
            "{what}: the aggregator logged: {}",
            covered.unwrap_or_default()
        );
    }
    let Some(said) = said else {
        panic!("{what}: no log line says which sync of which file failed and what happens\n{logs}");
    };
    println!("{what}: the aggregator logged: {said}");
    assert!(
        logs.contains("the file buffer writes again"),
        "{what}: the log does not say that writes work again\n{logs}"
    );

    // A restart sends nothing again: the copies whose sync failed were marked done.
    assert!(agg.terminate(Duration::from_secs(30)).success());
    let mut agg = Nagare::start("aggregator", dir.path(), &config);
    wait_listening(&mut agg, port);
    assert!(
        wait_until(Duration::from_secs(10), || agg
            .child
            .stderr()
            .contains("file buffer opened")),
        "{}",
        agg.child.logs()
    );
    let opened = plain(&agg.child.stderr());
    let opened = opened
        .lines()
        .find(|l| l.contains("file buffer opened"))
        .unwrap_or_default()
        .to_string();
    assert!(opened.contains("chunks=0"), "{what}: {opened}");
    agg.child.kill();
    let ids = ids_in(&out);
    let missing = posts.keys().filter(|id| !ids.contains_key(*id)).count();
    let copies: u32 = ids.values().sum();
    assert_eq!(missing, 0, "{what}: acknowledged records lost");
    assert_eq!(
        copies as usize,
        posts.len(),
        "{what}: every record delivered once (a copy whose sync failed is never sent)"
    );
    println!(
        "{what}: {} records, {} acked while syncs failed for {:.1} s, {} syncs failed",
        posts.len(),
        during - before,
        (failing_until - failing_since) as f64 / 1e9,
        log.matches("(INJECTED)").count()
    );
}

#[test]
fn segment_fdatasync_failing_with_eio_acks_nothing_it_covered_and_loses_nothing() {
    if skip() {
        return;
    }
    failing_syncs_are_not_acknowledged("      flush_mode: immediate\n", "segments", ".segment");
}

#[test]
fn staged_chunk_fdatasync_failing_with_eio_acks_nothing_and_loses_nothing() {
    if skip() {
        return;
    }
    failing_syncs_are_not_acknowledged(
        "      flush_mode: interval\n      flush_interval: 200ms\n",
        "staged chunks",
        ".staged",
    );
}

/// A `writev` of a chunk to a segment in strace's log: where in the log, to which
/// segment, and which chunk (its id and sequence number, bytes 16..40 of its header,
/// the same in every copy of it).
#[derive(Debug)]
struct ChunkWrite {
    line: usize,
    segment: String,
    chunk: Vec<u8>,
}

/// Bytes written `\xNN\xNN...` (strace's `-xx`).
fn unhex(text: &str) -> Vec<u8> {
    text.split("\\x")
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect()
}

/// The path in `<...>` after a call's descriptor: `writev(16</x/1.segment>, ...`.
fn descriptor_path(call: &str) -> Option<String> {
    let start = call.find('<')? + 1;
    let end = start + call[start..].find('>')?;
    Some(String::from_utf8_lossy(&unhex(&call[start..end])).into_owned())
}

/// The bytes of the first `iov_base="\xNN..."` in a call logged with `-xx`.
fn first_iov(call: &str) -> Vec<u8> {
    let Some(start) = call.find("iov_base=\"") else {
        return Vec::new();
    };
    let text = &call[start + 10..];
    unhex(&text[..text.find('"').unwrap_or(text.len())])
}

/// What strace's log shows of segments: the writes of chunks, the failed fdatasyncs
/// as (segment, first line, last line) of the time they ran, and how many
/// fdatasyncs are still running at its end.
struct SegmentCalls {
    writes: Vec<ChunkWrite>,
    failed: Vec<(String, usize, usize)>,
    running: usize,
}

impl SegmentCalls {
    /// The chunks written to a segment while an fdatasync of it ran and failed.
    fn during_failures(&self) -> Vec<&ChunkWrite> {
        self.writes
            .iter()
            .filter(|w| {
                self.failed.iter().any(|(segment, start, end)| {
                    *segment == w.segment && w.line > *start && w.line < *end
                })
            })
            .collect()
    }

    /// Of those, the ones not (yet) written again to another segment.
    fn not_written_again(&self) -> Vec<&ChunkWrite> {
        self.during_failures()
            .into_iter()
            .filter(|w| {
                !self.writes.iter().any(|again| {
                    again.line > w.line && again.segment != w.segment && again.chunk == w.chunk
                })
            })
            .collect()
    }
}

/// Reads strace's log: see [`SegmentCalls`].
fn segment_calls(log: &str) -> SegmentCalls {
    let mut writes = Vec::new();
    let mut running: std::collections::HashMap<String, (String, usize)> = Default::default();
    let mut failed = Vec::new();
    for (line, text) in log.lines().enumerate() {
        // strace pads the thread id to a column: `4697  21:57:12.245 writev(…` with
        // two spaces for a four-digit id, one for a five-digit id.
        let Some((thread, rest)) = text.split_once(' ') else {
            continue;
        };
        let Some((_time, call)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        if call.starts_with("writev(") {
            let header = first_iov(call);
            if let (Some(segment), true) = (descriptor_path(call), header.len() >= 40) {
                writes.push(ChunkWrite {
                    line,
                    segment,
                    chunk: header[16..40].to_vec(),
                });
            }
        } else if call.starts_with("fdatasync(") && call.contains("<unfinished ...>") {
            if let Some(segment) = descriptor_path(call) {
                running.insert(thread.to_string(), (segment, line));
            }
        } else if call.starts_with("<... fdatasync resumed>")
            && let Some((segment, start)) = running.remove(thread)
            && call.contains("(INJECTED)")
        {
            failed.push((segment, start, line));
        }
    }
    SegmentCalls {
        writes,
        failed,
        running: running.len(),
    }
}

#[test]
fn a_push_written_while_a_segment_fdatasync_fails_is_written_again() {
    if skip() {
        return;
    }
    let program = client_program();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out/all.ndjson");
    let buffer = dir.path().join("buffer");
    let keys = "      flush_mode: immediate\n";
    let config = aggregator_config(&dir.path().join("agg"), port, &out, &buffer, keys);
    let mut agg = Nagare::start("aggregator", dir.path(), &config);
    wait_listening(&mut agg, port);
    let stop = dir.path().join("stop");
    let stop_arg = stop.display().to_string();
    let mut client = program.spawn(&[&port.to_string(), "8", "1000000", &stop_arg, "200", ""]);
    assert!(wait_until(Duration::from_secs(20), || acked(&client) >= 200));

    // The first fdatasync of a segment on each thread fails after 300 ms, while
    // other pushes write to the same segment; the thread's next fdatasync of it (the
    // one that closes the segment) succeeds, as a real disk's may after an error
    // whose pages it dropped.
    let paths: Vec<_> = (0..400)
        .map(|i| buffer.join(format!("{i:020}.segment")))
        .collect();
    let mut strace = Strace::attach(
        agg.child.pid(),
        &[
            "--trace=fdatasync,writev".to_string(),
            "--inject=fdatasync:error=EIO:delay_enter=300ms:when=1".to_string(),
        ],
        &paths,
    );
    // strace counts calls per thread, so each new thread of the blocking pool (they
    // end after 10 s idle) fails its first fdatasync again. It lets go once its log
    // holds what is checked: at least two failed fdatasyncs, chunks written to a
    // segment while one of them ran, each of those written again to another segment,
    // and no fdatasync running (one starting later is delayed 300 ms before it fails,
    // longer than strace takes to let go).
    let before = acked(&client);
    let mut calls = segment_calls("");
    let seen = wait_until(Duration::from_secs(90), || {
        std::thread::sleep(Duration::from_millis(200));
        calls = segment_calls(&strace.log_text());
        calls.failed.len() >= 2
            && calls.running == 0
            && !calls.during_failures().is_empty()
            && calls.not_written_again().is_empty()
            && acked(&client) >= before + 100
    });
    let log = strace.detach();
    let during = calls.during_failures();
    assert!(
        !during.is_empty(),
        "no push wrote while a failing fdatasync ran ({} failed, {} writes); nothing to check\n{log}",
        calls.failed.len(),
        calls.writes.len()
    );
    let not_again = calls.not_written_again();
    assert!(
        not_again.is_empty(),
        "{} of {} chunks written to a segment while its fdatasync failed were never written again (acknowledged on a later fdatasync of the failed file): {:?}",
        not_again.len(),
        during.len(),
        &not_again[..not_again.len().min(3)]
    );
    assert!(
        seen,
        "strace saw {} failed fdatasyncs of segments, {} still running, {} acks since it attached\n{log}\n{}",
        calls.failed.len(),
        calls.running,
        acked(&client) - before,
        agg.child.logs()
    );
    // Every push finishes, its retries included, now that fdatasyncs work.
    std::fs::write(&stop, b"").unwrap();
    client.expect_success(CLIENT_FINISHES);

    // And nothing acknowledged is lost.
    let posts = posts(&client);
    assert!(
        wait_until(Duration::from_secs(30), || ids_in(&out).len()
            >= posts.len()),
        "{} of {} records in the file sink\n{}",
        ids_in(&out).len(),
        posts.len(),
        agg.child.logs()
    );
    agg.assert_running();
    println!(
        "{} failed fdatasyncs of segments; {} chunks written while one ran, each written again",
        calls.failed.len(),
        during.len()
    );
    assert!(agg.terminate(Duration::from_secs(30)).success());
}
