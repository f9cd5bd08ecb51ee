//! The `file` sink on a file system that really runs out of space (a small tmpfs):
//! the kit's retries hold the chunk until there is room, and its dead-letter output
//! takes the lines once the retries run out. More of the sink's behaviour (lines,
//! files per tag, a folder that cannot be made, undecodable entries) is tested in
//! `aggregator/tests/file_and_stdout.rs`.

use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::{ConfigDocument, HumanDuration};
use nagare_core::receipt::Delivery;
use nagare_core::testing::{chunk_of, sink_context, with_receipt};
use nagare_core::{Chunk, EventTime, Map};
use nagare_testkit::Tmpfs;
use tokio::sync::oneshot;

use super::*;

/// Why these tests cannot run here (mounting a tmpfs needs root), if they cannot.
fn skip() -> bool {
    match nagare_testkit::faults::unavailable() {
        Some(why) => {
            eprintln!("skipped: {why}");
            true
        }
        None => false,
    }
}

/// A chunk of `n` records of about 1 KiB each.
fn big_chunk(n: i64) -> (Chunk, oneshot::Receiver<Delivery>) {
    let padding = "x".repeat(1000);
    with_receipt(chunk_of(
        "app",
        (0..n).map(|i| {
            let mut m = Map::new();
            m.insert("i", i);
            m.insert("pad", padding.as_str());
            (EventTime::new(i, 0), m)
        }),
    ))
}

fn config(path: &std::path::Path) -> FileConfig {
    let yaml = format!("path: {}\nformat: record\n", path.display());
    ConfigDocument::from_text("test.yaml", &yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap()
}

fn quick_retries(max_times: Option<u32>) -> BufferConfig {
    BufferConfig {
        retry_wait: HumanDuration(Duration::from_millis(20)),
        retry_max_interval: HumanDuration(Duration::from_millis(100)),
        retry_max_times: max_times,
        ..BufferConfig::default()
    }
}

#[tokio::test]
async fn a_full_disk_holds_the_chunk_until_there_is_room_and_leaves_no_half_line() {
    if skip() {
        return;
    }
    let tmpfs = Tmpfs::mount(1 << 20);
    let data = tempfile::tempdir().unwrap();
    let filler = tmpfs.path().join("filler");
    tmpfs.fill(&filler, tmpfs.free_bytes().saturating_sub(64 * 1024));
    let out = tmpfs.path().join("out.ndjson");
    let buffer = Buffer::new("out", &quick_retries(None));
    let (ctx, _abort) = sink_context("out", &buffer, data.path());
    let task = tokio::spawn(run(config(&out), ctx));
    // About 200 KiB of lines for 64 KiB of room.
    let (chunk, mut rx) = big_chunk(200);
    buffer.push(chunk).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(rx.try_recv().is_err(), "acked without room to write it");
    assert_eq!(buffer.stats().in_flight_chunks, 1);
    // A failed attempt cut its partial write back off.
    assert_eq!(std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0), 0);
    std::fs::remove_file(&filler).unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("written once there is room")
        .unwrap();
    assert_eq!(delivered, Delivery::Delivered);
    let text = std::fs::read_to_string(&out).unwrap();
    let numbers: Vec<i64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["i"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        numbers,
        (0..200).collect::<Vec<_>>(),
        "each line once, whole"
    );
    buffer.close();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_full_disk_past_the_retries_sends_the_lines_to_the_dead_letter_file() {
    if skip() {
        return;
    }
    let tmpfs = Tmpfs::mount(1 << 20);
    let data = tempfile::tempdir().unwrap();
    tmpfs.fill(&tmpfs.path().join("filler"), u64::MAX);
    let out = tmpfs.path().join("out.ndjson");
    let buffer = Buffer::new("out", &quick_retries(Some(2)));
    let (ctx, _abort) = sink_context("out", &buffer, data.path());
    let task = tokio::spawn(run(config(&out), ctx));
    let (chunk, rx) = big_chunk(20);
    buffer.push(chunk).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(20), rx)
        .await
        .expect("given up within the retries")
        .unwrap();
    assert_eq!(outcome, Delivery::Failed);
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(data.path().join("dead-letter/out.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(lines[19]["record"]["i"], 19);
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 3 failed attempts")
            && reason.contains("cannot append to ")
            && reason.contains("No space left on device"),
        "{reason}"
    );
    buffer.close();
    task.await.unwrap().unwrap();
}
