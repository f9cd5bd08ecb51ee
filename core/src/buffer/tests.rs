//! The buffer's tests: the queue and its policies on both kinds, the file buffer's
//! commit, recovery and quarantine, and a property test of both against a model.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::format;
use super::*;
use crate::chunk::{Chunk, ChunkId};
use crate::config::{ByteSize, HumanDuration};
use crate::receipt::{Delivery, Receipt};
use crate::testing::{self, numbers};
use crate::time::EventTime;
use crate::value::Map;

fn chunk_of(tag: &str, from: i64, n: i64) -> Chunk {
    let padded = |i: i64| {
        let mut m = Map::new();
        m.insert("n", i);
        m.insert("pad", "x".repeat(80));
        (EventTime::new(i, 0), m)
    };
    testing::chunk_of(tag, (from..from + n).map(padded))
}

fn chunk(n: u32) -> Chunk {
    chunk_of("t", i64::from(n), 1)
}

fn first_n(c: &Chunk) -> i64 {
    numbers(c)[0]
}

fn memory(limit: usize, overflow: OverflowAction) -> Buffer {
    Buffer::new(
        "test",
        &BufferConfig {
            total_limit_size: ByteSize(limit as u64),
            overflow_action: overflow,
            ..BufferConfig::default()
        },
    )
}

fn file_config(dir: &Path) -> BufferConfig {
    BufferConfig::file(dir.join("buf"))
}

fn files(dir: &Path, suffix: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---- The queue and its policies (memory) ----

#[tokio::test]
async fn fifo_with_retry_to_front() {
    let b = memory(1 << 20, OverflowAction::Block);
    for n in 0..3 {
        b.push(chunk(n)).await.unwrap();
    }
    let l0 = b.pop().await.unwrap();
    assert_eq!(first_n(l0.chunk()), 0);
    l0.put_back();
    let l0 = b.pop().await.unwrap();
    assert_eq!(first_n(l0.chunk()), 0, "a retried chunk comes back first");
    l0.delivered();
    assert_eq!(first_n(b.pop().await.unwrap().chunk()), 1);
}

#[tokio::test]
async fn block_waits_for_room_and_counts_in_flight() {
    let size = chunk(0).byte_size();
    let b = memory(size * 2, OverflowAction::Block);
    b.push(chunk(0)).await.unwrap();
    b.push(chunk(1)).await.unwrap();
    let lease = b.pop().await.unwrap();
    // In flight still counts: a third chunk must wait.
    let b2 = b.clone();
    let pusher = tokio::spawn(async move { b2.push(chunk(2)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pusher.is_finished(), "push should block while full");
    assert_eq!(b.stats().blocked, 1);
    lease.delivered();
    pusher.await.unwrap().unwrap();
    assert_eq!(b.stats().queued_chunks, 2);
}

#[tokio::test]
async fn drop_policies_mark_receipts() {
    let size = chunk(0).byte_size();
    let b = memory(size, OverflowAction::DropNewest);
    b.push(chunk(0)).await.unwrap();
    let (r, rx) = Receipt::channel();
    b.push(chunk(1).with_receipt(r)).await.unwrap();
    assert_eq!(rx.await.unwrap(), Delivery::Dropped);
    assert_eq!((b.stats().dropped_chunks, b.stats().dropped_events), (1, 1));

    let b = memory(size, OverflowAction::DropOldestChunk);
    let (r, rx) = Receipt::channel();
    b.push(chunk(0).with_receipt(r)).await.unwrap();
    b.push(chunk(1)).await.unwrap();
    assert_eq!(rx.await.unwrap(), Delivery::Dropped);
    assert_eq!(first_n(b.pop().await.unwrap().chunk()), 1);
}

#[tokio::test]
async fn close_drains_then_ends() {
    let b = memory(1 << 20, OverflowAction::Block);
    b.push(chunk(0)).await.unwrap();
    b.close();
    assert!(b.push(chunk(1)).await.is_err());
    let lease = b.pop().await.unwrap();
    lease.delivered();
    assert!(b.pop().await.is_none());
    assert!(b.drained(Duration::from_millis(10)).await);
}

#[tokio::test]
async fn oversized_chunk_is_accepted_when_empty() {
    let b = memory(10, OverflowAction::Block);
    b.push(chunk(0)).await.unwrap();
    assert_eq!(b.stats().queued_chunks, 1);
}

#[tokio::test]
async fn chunks_left_in_a_dropped_buffer_are_abandoned() {
    let b = memory(1 << 20, OverflowAction::Block);
    let (queued, queued_rx) = Receipt::channel();
    let (leased, leased_rx) = Receipt::channel();
    b.push(chunk(0).with_receipt(leased)).await.unwrap();
    b.push(chunk(1).with_receipt(queued)).await.unwrap();
    let lease = b.pop().await.unwrap();
    // A lease dropped without an ack puts its chunk back; then the buffer goes.
    drop(lease);
    drop(b);
    assert_eq!(queued_rx.await.unwrap(), Delivery::Abandoned);
    assert_eq!(leased_rx.await.unwrap(), Delivery::Abandoned);
}

#[tokio::test]
async fn memory_staging_merges_a_tag_and_keeps_each_chunks_id() {
    let b = Buffer::new(
        "staged",
        &BufferConfig {
            flush_mode: FlushMode::Interval,
            flush_interval: HumanDuration::millis(50),
            chunk_limit_records: Some(5),
            ..BufferConfig::default()
        },
    );
    let (a, c) = (chunk_of("a", 0, 2), chunk_of("a", 2, 2));
    let (ids_a, ids_c) = (a.id(), c.id());
    let (r, mut rx) = Receipt::channel();
    b.push(a.with_receipt(r)).await.unwrap();
    b.push(c).await.unwrap();
    b.push(chunk_of("other", 100, 1)).await.unwrap();
    assert_eq!(b.stats().staged_chunks, 2);
    assert!(
        b.try_pop().is_none(),
        "nothing is queued before the interval"
    );
    let started = std::time::Instant::now();
    let merged = b.pop().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(30));
    let merged = if &**merged.chunk().tag() == "a" {
        merged
    } else {
        merged.delivered();
        b.pop().await.unwrap()
    };
    assert_eq!(numbers(merged.chunk()), vec![0, 1, 2, 3]);
    let ids: Vec<_> = merged.chunk().event_ids().collect();
    assert_eq!(ids, vec![(ids_a, 0), (ids_a, 1), (ids_c, 0), (ids_c, 1)]);
    assert!(
        rx.try_recv().is_err(),
        "a memory buffer keeps receipts until the ack"
    );
    merged.delivered();
    assert_eq!(rx.await.unwrap(), Delivery::Delivered);
    while let Some(other) = b.try_pop() {
        other.delivered();
    }
    // The record limit queues a staged chunk at once.
    b.push(chunk_of("a", 10, 3)).await.unwrap();
    b.push(chunk_of("a", 13, 3)).await.unwrap();
    assert_eq!(numbers(b.try_pop().unwrap().chunk()), vec![10, 11, 12]);
}

#[tokio::test]
async fn a_producer_that_blocks_queues_staged_chunks_early() {
    let one = chunk_of("a", 0, 1).byte_size();
    let b = Buffer::new(
        "tight",
        &BufferConfig {
            flush_mode: FlushMode::Interval,
            flush_interval: HumanDuration::secs(3600),
            total_limit_size: ByteSize(one as u64 * 2),
            chunk_limit_size: Some(ByteSize(one as u64 * 2)),
            ..BufferConfig::default()
        },
    );
    b.push(chunk_of("a", 0, 1)).await.unwrap();
    b.push(chunk_of("b", 1, 1)).await.unwrap();
    let b2 = b.clone();
    let pusher = tokio::spawn(async move { b2.push(chunk_of("c", 2, 1)).await });
    // Without the early flush this would wait an hour.
    let lease = tokio::time::timeout(Duration::from_secs(5), b.pop())
        .await
        .unwrap()
        .unwrap();
    lease.delivered();
    pusher.await.unwrap().unwrap();
}

// ---- The file buffer ----

#[tokio::test]
async fn file_push_commits_and_releases_receipts_before_the_ack() {
    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    assert!(b.is_durable());
    let c = chunk_of("app", 0, 3);
    let id = c.id();
    let (r, rx) = Receipt::channel();
    b.push(c.with_receipt(r)).await.unwrap();
    // Committed: the receipt fired although nothing was sent.
    assert_eq!(rx.await.unwrap(), Delivery::Delivered);
    let staged = files(&dir.path().join("buf"), ".staged");
    assert_eq!(staged.len(), 1);
    b.flush().await;
    assert_eq!(files(&dir.path().join("buf"), ".queued").len(), 1);
    let lease = b.pop().await.unwrap();
    assert_eq!(numbers(lease.chunk()), vec![0, 1, 2]);
    assert_eq!(lease.chunk().event_ids().next(), Some((id, 0)));
    lease.delivered();
    assert!(files(&dir.path().join("buf"), ".queued").is_empty());
    assert_eq!(b.stats(), BufferStats::default());
}

#[tokio::test]
async fn file_chunks_survive_a_restart_in_order_and_unacked_leases_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig {
        flush_mode: FlushMode::Immediate,
        ..file_config(dir.path())
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    for i in 0..5 {
        b.push(chunk_of("app", i * 10, 2)).await.unwrap();
    }
    let first = b.pop().await.unwrap();
    assert_eq!(first_n(first.chunk()), 0);
    first.delivered();
    let held = b.pop().await.unwrap();
    assert_eq!(first_n(held.chunk()), 10);
    // A crash: the buffer goes away with a lease held and never acked.
    std::mem::forget(held);
    drop(b);
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    assert_eq!(b.stats().recovered_chunks, 4);
    let mut got = Vec::new();
    while let Some(l) = b.try_pop() {
        got.push(first_n(l.chunk()));
        l.delivered();
    }
    assert_eq!(got, vec![10, 20, 30, 40]);
}

#[tokio::test]
async fn file_buffer_memory_holds_metadata_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig {
        flush_mode: FlushMode::Immediate,
        total_limit_size: ByteSize(1 << 30),
        ..file_config(dir.path())
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    let c = chunk_of("app", 0, 200);
    let raw = c.byte_size();
    for _ in 0..50 {
        b.push(c.clone()).await.unwrap();
    }
    drop(c);
    let st = b.stats();
    assert_eq!(st.queued_chunks, 50);
    // What counts is bytes on disk, compressed well below the encoded size.
    assert!(
        st.queued_bytes < 50 * raw / 4,
        "{} vs {}",
        st.queued_bytes,
        50 * raw
    );
    let lease = b.pop().await.unwrap();
    assert_eq!(
        lease.chunk().byte_size(),
        raw,
        "read back whole when leased"
    );
}

#[tokio::test]
async fn file_buffer_blocks_on_its_disk_limit_and_drops_oldest_files() {
    let dir = tempfile::tempdir().unwrap();
    let probe = {
        let b = Buffer::open(
            "probe",
            &BufferConfig {
                flush_mode: FlushMode::Immediate,
                ..BufferConfig::file(dir.path().join("probe"))
            },
            dir.path(),
        )
        .unwrap();
        b.push(chunk_of("a", 0, 1)).await.unwrap();
        b.stats().queued_bytes
    };
    let config = BufferConfig {
        flush_mode: FlushMode::Immediate,
        total_limit_size: ByteSize(probe as u64 * 2 + 10),
        overflow_action: OverflowAction::DropOldestChunk,
        ..file_config(dir.path())
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    for i in 0..4 {
        b.push(chunk_of("a", i, 1)).await.unwrap();
    }
    assert_eq!(b.stats().dropped_chunks, 2);
    assert_eq!(first_n(b.pop().await.unwrap().chunk()), 2);
    drop(b);
    // The dropped ones are gone for good: a restart finds the two kept.
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    assert_eq!(b.stats().recovered_chunks, 2);
    assert_eq!(first_n(b.pop().await.unwrap().chunk()), 2);
}

#[tokio::test]
async fn flush_at_shutdown_off_leaves_chunks_on_disk_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = file_config(dir.path());
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    b.push(chunk_of("a", 0, 2)).await.unwrap();
    b.close();
    assert!(b.pop().await.is_none(), "closed: nothing handed out");
    drop(b);
    let config = BufferConfig {
        flush_at_shutdown: Some(true),
        ..config
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    b.close();
    let lease = b.pop().await.expect("flushed at shutdown");
    assert_eq!(numbers(lease.chunk()), vec![0, 1]);
    lease.delivered();
    assert!(b.pop().await.is_none());
}

/// `finished` resolves once a consumer holding no lease has nothing left to take:
/// closed and empty, or closed with chunks a file buffer keeps for the next start;
/// not while a chunk waits to be delivered at shutdown.
#[tokio::test]
async fn finished_once_closed_with_nothing_left_to_hand_out() {
    let quick = Duration::from_millis(200);
    let b = memory(1 << 20, OverflowAction::Block);
    assert!(
        tokio::time::timeout(quick, b.finished()).await.is_err(),
        "open"
    );
    b.close();
    tokio::time::timeout(quick, b.finished())
        .await
        .expect("closed and empty");

    let b = memory(1 << 20, OverflowAction::Block);
    b.push(chunk(0)).await.unwrap();
    b.close();
    assert!(
        tokio::time::timeout(quick, b.finished()).await.is_err(),
        "a chunk to deliver at shutdown"
    );
    let waiting = tokio::spawn({
        let b = b.clone();
        async move { b.finished().await }
    });
    // Parked before the last chunk is taken: taking it must wake the wait.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "a chunk to deliver at shutdown");
    let lease = b.pop().await.unwrap();
    tokio::time::timeout(quick, waiting)
        .await
        .expect("the last chunk taken")
        .unwrap();
    lease.delivered();

    let dir = tempfile::tempdir().unwrap();
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    b.push(chunk_of("a", 0, 2)).await.unwrap();
    b.close();
    tokio::time::timeout(quick, b.finished())
        .await
        .expect("the chunks stay on disk for the next start");
}

/// A wait for the end beside a consumer waiting for chunks takes none of the
/// consumer's wake-ups: a chunk pushed goes to the consumer at once.
#[tokio::test]
async fn waiting_for_the_end_does_not_take_a_consumers_wake_up() {
    let b = memory(1 << 20, OverflowAction::Block);
    let ending = tokio::spawn({
        let b = b.clone();
        async move { b.finished().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let consumer = tokio::spawn({
        let b = b.clone();
        async move { b.pop().await.map(|lease| lease.delivered()) }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.push(chunk(0)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), consumer)
        .await
        .expect("the consumer woke for the chunk")
        .unwrap()
        .expect("a lease");
    assert!(!ending.is_finished(), "the buffer is open");
    b.close();
    tokio::time::timeout(Duration::from_secs(2), ending)
        .await
        .expect("closed and empty")
        .unwrap();
}

/// Writes `n` one-event chunks queued as they come (into one segment) and returns
/// the segment's file and where each chunk starts in it.
async fn queued_segment(dir: &Path, n: i64) -> (std::path::PathBuf, Vec<usize>) {
    let config = BufferConfig {
        flush_mode: FlushMode::Immediate,
        ..file_config(dir)
    };
    let b = Buffer::open("fb", &config, dir).unwrap();
    for i in 0..n {
        b.push(chunk_of("a", i, 1)).await.unwrap();
    }
    drop(b);
    let segments = files(&dir.join("buf"), ".segment");
    assert_eq!(segments.len(), 1, "{segments:?}");
    let offsets = super::segment::chunk_offsets(&segments[0]);
    assert_eq!(offsets.len(), n as usize);
    (segments[0].clone(), offsets)
}

fn pop_all_now(b: &Buffer) -> Vec<i64> {
    let mut got = Vec::new();
    while let Some(l) = b.try_pop() {
        got.push(first_n(l.chunk()));
        l.delivered();
    }
    got
}

#[tokio::test]
async fn damaged_chunks_in_a_segment_are_quarantined_and_the_rest_load() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, at) = queued_segment(dir.path(), 6).await;
    // Zero one chunk, flip a bit in another, and cut the file inside the last one.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[at[1]..at[2]].fill(0);
    bytes[at[4] - 40] ^= 0x04;
    bytes.truncate(at[5] + (bytes.len() - at[5]) / 2);
    std::fs::write(&segment, bytes).unwrap();
    // And leave a file of an unknown name alone.
    std::fs::write(dir.path().join("buf/notes.txt"), b"mine").unwrap();

    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    assert_eq!(b.stats().recovered_chunks, 3);
    assert_eq!(b.stats().quarantined_chunks, 3);
    assert_eq!(pop_all_now(&b), vec![0, 2, 4]);
    let quarantine = dir.path().join("buf").join(QUARANTINE);
    let mut copies: Vec<Vec<u8>> = std::fs::read_dir(&quarantine)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    copies.sort_by_key(Vec::len);
    assert_eq!(copies.len(), 3);
    assert!(
        copies
            .iter()
            .any(|c| c.len() == at[2] - at[1] && c.iter().all(|&x| x == 0)),
        "the zeroed stretch is copied whole"
    );
    assert!(dir.path().join("buf/notes.txt").exists());
    drop(b);
    // Reported once: the next start finds nothing left, and no new damage.
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    assert_eq!(
        (b.stats().recovered_chunks, b.stats().quarantined_chunks),
        (0, 0)
    );
    assert_eq!(std::fs::read_dir(&quarantine).unwrap().count(), 3);
    assert!(
        files(&dir.path().join("buf"), ".segment").is_empty(),
        "a segment with nothing left in it is deleted"
    );
}

#[tokio::test]
async fn damaged_chunk_files_are_quarantined_and_the_rest_load() {
    // Chunks queued from staged ones have files of their own.
    let dir = tempfile::tempdir().unwrap();
    let config = file_config(dir.path());
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    for i in 0..4 {
        b.push(chunk_of(&format!("t{i}"), i, 1)).await.unwrap();
    }
    b.flush().await;
    drop(b);
    let f = files(&dir.path().join("buf"), ".queued");
    assert_eq!(f.len(), 4);
    let len = std::fs::metadata(&f[1]).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f[1])
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let mut bytes = std::fs::read(&f[2]).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x04;
    std::fs::write(&f[2], bytes).unwrap();
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    assert_eq!(
        (b.stats().recovered_chunks, b.stats().quarantined_chunks),
        (2, 2)
    );
    assert_eq!(pop_all_now(&b), vec![0, 3]);
    let quarantined = std::fs::read_dir(dir.path().join("buf").join(QUARANTINE))
        .unwrap()
        .count();
    assert_eq!(quarantined, 2);
}

#[tokio::test]
async fn a_chunk_damaged_after_start_is_quarantined_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, at) = queued_segment(dir.path(), 2).await;
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[at[1] - 30] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let lease = b.pop().await.unwrap();
    assert_eq!(first_n(lease.chunk()), 1, "the damaged one is skipped");
    assert_eq!(b.stats().quarantined_chunks, 1);
    lease.delivered();
    drop(b);
    // It was acked in its segment when it was quarantined: not found again.
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    assert_eq!(
        (b.stats().recovered_chunks, b.stats().quarantined_chunks),
        (0, 0)
    );
}

#[tokio::test]
async fn acked_chunks_of_a_segment_are_not_sent_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (segment, _) = queued_segment(dir.path(), 5).await;
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    // Ack the first and the fourth; hold the second; give back the third.
    let l0 = b.pop().await.unwrap();
    let l1 = b.pop().await.unwrap();
    let l2 = b.pop().await.unwrap();
    let l3 = b.pop().await.unwrap();
    l0.delivered();
    l3.delivered();
    l2.put_back();
    std::mem::forget(l1);
    drop(b);
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    assert_eq!(pop_all_now(&b), vec![1, 2, 4]);
    assert!(
        !segment.exists(),
        "every chunk delivered: the segment is deleted"
    );
    assert!(files(&dir.path().join("buf"), ".acks").is_empty());
}

#[tokio::test]
async fn an_append_cut_by_a_crash_is_dropped_and_the_staged_chunk_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = file_config(dir.path());
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    b.push(chunk_of("a", 0, 2)).await.unwrap();
    b.push(chunk_of("a", 2, 2)).await.unwrap();
    drop(b);
    let staged = files(&dir.path().join("buf"), ".staged");
    assert_eq!(staged.len(), 1);
    // Half of a third append made it to disk before the crash.
    let c = chunk_of("a", 4, 2);
    let segment = format::encode_part(c.id(), 2, c.byte_size(), c.entries());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&staged[0])
        .unwrap();
    std::io::Write::write_all(&mut f, &segment[..segment.len() / 2]).unwrap();
    drop(f);
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    assert_eq!(b.stats().quarantined_chunks, 0);
    let lease = b.pop().await.unwrap();
    assert_eq!(numbers(lease.chunk()), vec![0, 1, 2, 3]);
}

#[tokio::test]
async fn large_chunks_compressed_with_their_write_give_back_their_room() {
    // A chunk of 64 KiB or more whose worst-case size fits is compressed in the job
    // that writes it, on room reserved for that worst case: the room must come back
    // whole, or the buffer fills with nothing in it and the next push waits forever.
    let dir = tempfile::tempdir().unwrap();
    let large = chunk_of("a", 0, 1_000);
    assert!(large.byte_size() >= 64 * 1024);
    let config = BufferConfig {
        flush_mode: FlushMode::Immediate,
        total_limit_size: ByteSize(large.byte_size() as u64 * 3),
        ..file_config(dir.path())
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    for round in 0..20 {
        let c = chunk_of("a", round * 1_000, 1_000);
        tokio::time::timeout(Duration::from_secs(5), b.push(c))
            .await
            .expect("room came back")
            .unwrap();
        let lease = b.pop().await.unwrap();
        assert_eq!(first_n(lease.chunk()), round * 1_000);
        lease.delivered();
    }
    assert!(b.drained(Duration::from_secs(1)).await, "nothing held back");
}

/// Four producers push `each` chunks at once, `chunk(producer, i)`, each committed
/// before the next.
async fn push_from_four(b: &Buffer, each: i64, chunk: fn(i64, i64) -> Chunk) {
    let producers: Vec<_> = (0..4i64)
        .map(|p| {
            let b = b.clone();
            tokio::spawn(async move {
                for i in 0..each {
                    let (r, rx) = Receipt::channel();
                    b.push(chunk(p, i).with_receipt(r)).await.unwrap();
                    assert_eq!(rx.await.unwrap(), Delivery::Delivered);
                }
            })
        })
        .collect();
    for p in producers {
        p.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_fill_in_turn_and_are_deleted_once_delivered() {
    let dir = tempfile::tempdir().unwrap();
    // Segments of 1 MiB (the least); chunks of about 10 KiB, stored as they are.
    let config = BufferConfig {
        flush_mode: FlushMode::Immediate,
        compress: crate::compression::Compression::None,
        total_limit_size: ByteSize(16 << 20),
        ..file_config(dir.path())
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    push_from_four(&b, 100, |p, i| chunk_of("a", (p * 100 + i) * 100, 100)).await;
    let buf = dir.path().join("buf");
    let segments = files(&buf, ".segment");
    assert!(segments.len() >= 3, "{segments:?}");
    // Deliver the first half: every segment wholly delivered is gone at once.
    let mut first = Vec::new();
    for _ in 0..200 {
        let l = b.pop().await.unwrap();
        first.push(first_n(l.chunk()));
        l.delivered();
    }
    let left = files(&buf, ".segment");
    assert!(left.len() < segments.len(), "{left:?}");
    drop(b);
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    assert_eq!(b.stats().recovered_chunks, 200);
    let mut second = Vec::new();
    while let Some(l) = b.try_pop() {
        second.push(first_n(l.chunk()));
        l.delivered();
    }
    let mut all: Vec<i64> = first.into_iter().chain(second).collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).map(|c| c * 100).collect::<Vec<_>>());
    drop(b);
    // Nothing left to deliver: the next start deletes what is left.
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    assert_eq!(b.stats().recovered_chunks, 0);
    assert!(files(&buf, ".segment").is_empty() && files(&buf, ".acks").is_empty());
}

#[tokio::test]
async fn empty_chunk_files_are_removed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    queued_segment(dir.path(), 3).await;
    // Crashes right after a file was created: nothing of it on disk, nothing of it
    // acknowledged.
    let empty = [
        dir.path().join("buf/00000000000000000100.queued"),
        dir.path().join("buf/00000000000000000101.segment"),
    ];
    for f in &empty {
        std::fs::write(f, b"").unwrap();
    }
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    assert_eq!(
        (b.stats().recovered_chunks, b.stats().quarantined_chunks),
        (3, 0)
    );
    assert!(empty.iter().all(|f| !f.exists()));
    assert_eq!(pop_all_now(&b), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_file_pushes_are_queued_in_sequence_order() {
    // Producers write side by side; the queue must hold their chunks in the order
    // of their sequence numbers, the order a restart loads them in.
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig {
        flush_mode: FlushMode::Immediate,
        ..file_config(dir.path())
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    let producers = tokio::spawn({
        let b = b.clone();
        async move { push_from_four(&b, 25, |p, i| chunk_of("a", p * 1000 + i, 1)).await }
    });
    let mut live = Vec::new();
    while live.len() < 100 {
        let lease = b.pop().await.unwrap();
        live.push(first_n(lease.chunk()));
        // A crash: no lease is acked.
        std::mem::forget(lease);
    }
    producers.await.unwrap();
    for p in 0..4 {
        let mine: Vec<i64> = live.iter().copied().filter(|n| n / 1000 == p).collect();
        assert_eq!(mine, (p * 1000..p * 1000 + 25).collect::<Vec<_>>());
    }
    drop(b);
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    let mut loaded = Vec::new();
    while let Some(l) = b.try_pop() {
        loaded.push(first_n(l.chunk()));
        l.delivered();
    }
    assert_eq!(loaded, live);
}

#[tokio::test]
async fn a_cancelled_pop_puts_the_chunk_back() {
    let dir = tempfile::tempdir().unwrap();
    queued_segment(dir.path(), 1).await;
    let b = Buffer::open("fb", &file_config(dir.path()), dir.path()).unwrap();
    // Poll the pop once (it starts reading), then drop it.
    let mut pop = Box::pin(b.pop());
    let _ = futures_poll_once(pop.as_mut()).await;
    drop(pop);
    let lease = b.pop().await.expect("still there");
    assert_eq!(first_n(lease.chunk()), 0);
}

async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
    tokio::time::timeout(Duration::from_millis(0), f).await.ok()
}

// ---- A model: random appends, pops, acks, retries, flushes and crashes ----

#[derive(Debug, Clone)]
enum Op {
    /// A chunk of `n` events of tag `t`.
    Push { t: usize, n: i64 },
    /// Take the next chunk, if one is queued.
    Pop,
    /// Ack the held lease at this index (modulo those held).
    Ack(usize),
    /// Give back the held lease at this index.
    Retry(usize),
    /// Queue every staged chunk.
    Flush,
    /// The process dies (optionally in the middle of an append) and starts again.
    Crash { torn: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // From 7 events on (the record limit) a chunk is queued whole, in a segment.
        4 => (0..3usize, 1..10i64).prop_map(|(t, n)| Op::Push { t, n }),
        3 => Just(Op::Pop),
        2 => (0..8usize).prop_map(Op::Ack),
        1 => (0..8usize).prop_map(Op::Retry),
        1 => Just(Op::Flush),
        1 => any::<bool>().prop_map(|torn| Op::Crash { torn }),
    ]
}

const TAGS: [&str; 3] = ["x", "y", "z"];

fn model_config(dir: &Path) -> BufferConfig {
    BufferConfig {
        chunk_limit_records: Some(7),
        flush_interval: HumanDuration::secs(3600),
        fsync: FsyncPolicy::Never,
        ..BufferConfig::file(dir.join("buf"))
    }
}

/// Event numbers of every held lease.
fn held_numbers(held: &[Lease]) -> Vec<i64> {
    held.iter().flat_map(|l| numbers(l.chunk())).collect()
}

async fn run_model(ops: Vec<Op>, durable: bool) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let config = if durable {
        model_config(dir.path())
    } else {
        BufferConfig {
            flush_mode: FlushMode::Interval,
            ..BufferConfig {
                path: None,
                kind: BufferKind::Memory,
                ..model_config(dir.path())
            }
        }
    };
    let open = || Buffer::open("model", &config, dir.path()).unwrap();
    let mut b = open();
    // The model: every event pushed and not yet acked, by tag, in push order.
    let mut pending: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    let mut acked: Vec<i64> = Vec::new();
    let mut held: Vec<Lease> = Vec::new();
    let mut next = 0i64;
    for op in ops {
        match op {
            Op::Push { t, n } => {
                b.push(chunk_of(TAGS[t], next, n)).await.unwrap();
                pending.entry(t).or_default().extend(next..next + n);
                next += n;
            }
            Op::Pop => {
                if let Some(l) = b.try_pop() {
                    let got = numbers(l.chunk());
                    let t = TAGS.iter().position(|x| *x == &**l.chunk().tag()).unwrap();
                    for n in &got {
                        prop_assert!(
                            pending.get(&t).is_some_and(|v| v.contains(n)) && !acked.contains(n),
                            "leased event {n} was never committed or is acked already"
                        );
                    }
                    prop_assert!(
                        !held_numbers(&held).iter().any(|n| got.contains(n)),
                        "an event is leased twice at once"
                    );
                    held.push(l);
                }
            }
            Op::Ack(i) if !held.is_empty() => {
                let l = held.remove(i % held.len());
                let got = numbers(l.chunk());
                for v in pending.values_mut() {
                    v.retain(|n| !got.contains(n));
                }
                acked.extend(got);
                l.delivered();
            }
            Op::Retry(i) if !held.is_empty() => {
                held.remove(i % held.len()).put_back();
            }
            Op::Flush => b.flush().await,
            Op::Crash { torn } => {
                // Leases die with the process, unacked.
                for l in held.drain(..) {
                    std::mem::forget(l);
                }
                drop(b);
                if !durable {
                    // Nothing survives a memory buffer.
                    pending.clear();
                } else if torn {
                    // An append the crash cut short, never committed: to a staged
                    // chunk, and a whole chunk to the last segment.
                    let c = chunk_of("x", 1_000_000, 3);
                    let seg = format::encode_part(c.id(), 3, c.byte_size(), c.entries());
                    let buf = dir.path().join("buf");
                    let staged = files(&buf, ".staged");
                    let segments = files(&buf, ".segment");
                    let cuts = [
                        staged.first().map(|f| (f, &seg[..seg.len() - 7])),
                        segments.last().map(|f| (f, &seg[..seg.len() / 2])),
                    ];
                    for (f, cut) in cuts.into_iter().flatten() {
                        let mut file = std::fs::OpenOptions::new().append(true).open(f).unwrap();
                        std::io::Write::write_all(&mut file, cut).unwrap();
                    }
                }
                b = open();
            }
            _ => {}
        }
    }
    // Give everything back, start once more, and drain: exactly what was committed
    // and not acked comes out, each once, and in order within its tag.
    for l in held.drain(..) {
        if durable {
            std::mem::forget(l);
        } else {
            l.put_back();
        }
    }
    if durable {
        drop(b);
        b = open();
    }
    b.flush().await;
    let mut out: BTreeMap<usize, Vec<i64>> = BTreeMap::new();
    while let Some(l) = b.try_pop() {
        let t = TAGS.iter().position(|x| *x == &**l.chunk().tag()).unwrap();
        out.entry(t).or_default().extend(numbers(l.chunk()));
        l.delivered();
    }
    pending.retain(|_, v| !v.is_empty());
    if durable {
        prop_assert_eq!(out, pending);
    } else {
        // Retries may reorder a memory buffer's chunks: compare as sets.
        let sorted = |m: BTreeMap<usize, Vec<i64>>| {
            m.into_iter()
                .map(|(k, mut v)| {
                    v.sort_unstable();
                    (k, v)
                })
                .collect::<BTreeMap<_, _>>()
        };
        prop_assert_eq!(sorted(out), sorted(pending));
    }
    prop_assert_eq!(b.stats().queued_chunks + b.stats().staged_chunks, 0);
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn file_buffer_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        runtime().block_on(run_model(ops, true))?;
    }

    #[test]
    fn memory_buffer_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        runtime().block_on(run_model(ops, false))?;
    }
}

#[test]
fn chunk_ids_are_kept_by_the_file_format() {
    let c = chunk_of("a", 0, 1);
    let seg = format::encode_part(c.id(), 1, c.byte_size(), c.entries());
    assert_eq!(&seg[4..20], c.id().as_bytes());
    let _ = ChunkId::random();
}

#[tokio::test]
async fn file_staged_chunks_are_queued_after_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig {
        flush_interval: HumanDuration::millis(100),
        ..file_config(dir.path())
    };
    let b = Buffer::open("fb", &config, dir.path()).unwrap();
    b.push(chunk_of("a", 0, 2)).await.unwrap();
    let lease = tokio::time::timeout(Duration::from_secs(3), b.pop())
        .await
        .expect("queued after its interval")
        .unwrap();
    assert_eq!(numbers(lease.chunk()), vec![0, 1]);
}

#[tokio::test]
async fn a_waiting_pop_learns_the_deadline_of_a_chunk_staged_after_it_began() {
    for durable in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let config = BufferConfig {
            flush_mode: FlushMode::Interval,
            flush_interval: HumanDuration::millis(100),
            ..if durable {
                file_config(dir.path())
            } else {
                BufferConfig::default()
            }
        };
        let b = Buffer::open("fb", &config, dir.path()).unwrap();
        let waiting = tokio::spawn({
            let b = b.clone();
            async move { b.pop().await.map(|l| numbers(l.chunk())) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.push(chunk_of("a", 0, 2)).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), waiting)
            .await
            .expect("the waiting pop wakes at the deadline")
            .unwrap();
        assert_eq!(got, Some(vec![0, 1]), "durable: {durable}");
    }
}
