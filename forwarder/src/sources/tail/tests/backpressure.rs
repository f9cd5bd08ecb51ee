//! A full buffer pauses reading; nothing read is lost, also when the source stops
//! while waiting for room.

use super::*;

#[tokio::test]
async fn backpressure_pauses_reading_and_shutdown_emits_what_was_read() {
    // 1999 lines (not a whole number of chunks) in one read block: the source checks
    // for shutdown only between blocks, so every line must come out, the last ones
    // emitted by the shutdown.
    let lines = long_lines(1999);
    assert!(lines.len() < 256 * 1024);
    let tail = start_small(&lines, head_config, 1024, 1);
    let first = tail.buffer.pop().await.unwrap();
    let mut got = decode(first.chunk());
    // The buffer holds one chunk at a time (in flight counts), so the source is now
    // waiting for room, in the middle of the block.
    let blocked = wait_until_async(WAIT, || tail.buffer.stats().blocked >= 1).await;
    assert!(blocked, "the source waits for room");
    let stats = tail.buffer.stats();
    assert_eq!((stats.queued_chunks, stats.in_flight_chunks), (0, 1));
    assert!(stats.blocked >= 1);
    first.delivered();
    tail.shutdown.cancel();
    while !tail.task.is_finished() {
        if let Ok(Some(lease)) =
            tokio::time::timeout(Duration::from_millis(50), tail.buffer.pop()).await
        {
            got.extend(decode(lease.chunk()));
            lease.delivered();
        }
    }
    got.extend(tail.stop().await);
    assert_eq!(line_numbers(&got), long_line_numbers(1999));
}

#[tokio::test]
async fn backpressure_pauses_reading_until_there_is_room() {
    let lines = long_lines(3000);
    let tail = start_small(&lines, raw_config, 4096, 8192);
    let paused = wait_until_async(WAIT, || tail.metrics.snapshot().paused).await;
    assert!(paused, "the source waits for room");
    let before = tail.metrics.snapshot();
    let offset = before.files[0].read_offset;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = tail.metrics.snapshot();
    assert!(after.paused && after.backpressure_waits >= 1, "{after:?}");
    assert_eq!(
        after.bytes_read, before.bytes_read,
        "nothing is read while blocked"
    );
    assert_eq!(after.files[0].read_offset, offset);
    assert!(
        offset < lines.len() as u64,
        "it stopped before the end of the file"
    );
    // Make room: reading resumes where it stopped, every line once and in order.
    let got = tail.events(3000).await;
    assert_eq!(line_numbers(&got), long_line_numbers(3000));
    let done = tail.metrics.snapshot();
    assert!(!done.paused);
    assert_eq!(done.bytes_read, lines.len() as u64);
    tail.stop().await;
}

/// Starts the source with `config` on an `app.log` holding `lines`, cutting chunks
/// of `chunk_limit` bytes into a buffer that holds `total_limit` bytes.
fn start_small(
    lines: &str,
    config: fn(&Path) -> TailConfig,
    chunk_limit: u64,
    total_limit: u64,
) -> Tail {
    let (dir, _) = dir_with(app_log, lines.as_bytes());
    let mut config = config(dir.path());
    config.chunk_limit_size = ByteSize(chunk_limit);
    let buffer = BufferConfig {
        total_limit_size: ByteSize(total_limit),
        ..BufferConfig::default()
    };
    Tail::start_with(dir, config, buffer, false)
}

/// `n` lines `line 00000 xxx…` of 91 bytes each.
fn long_lines(n: u32) -> String {
    (0..n)
        .map(|i| format!("line {i:05} {}\n", "x".repeat(80)))
        .collect()
}

/// What `line_numbers` gives for the lines of `long_lines(n)`.
fn long_line_numbers(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("line {i:05}")).collect()
}

/// The first ten bytes of each event's `log`: `line 00000` for `long_lines`.
fn line_numbers(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| g.str("log").unwrap()[..10].to_string())
        .collect()
}
