//! How the source cuts its chunks: lines of a block read after a chunk filled up
//! are counted like the others, and events a filter rejects leave in chunks no
//! larger than `chunk_limit_size`, like the kept ones, rather than all at once when
//! the file is read to its end.

use super::*;

/// Rejects every event, as a `parser` filter does with lines it cannot parse.
struct RejectAll;

impl Filter for RejectAll {
    fn filter(&self, _: &mut Event) -> Verdict {
        Verdict::Reject("not the expected format".into())
    }
}

#[tokio::test]
async fn every_line_of_a_block_is_counted_when_chunks_fill_up_within_it() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    // 2,000 lines of 20 bytes: one read block, in which 1 KiB chunks fill up again
    // and again.
    append(&path, numbered("line number", 0..2000).as_bytes());
    let mut config = raw_config(dir.path());
    config.chunk_limit_size = ByteSize(1024);
    let tail = Tail::start(dir, config);
    let got = tail.events(2000).await;
    assert_eq!(logs(&got), expected("line number", 0..2000));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = tail.metrics.snapshot();
        if m.lines_read == 2000 && m.files.first().is_some_and(|f| f.lines_read == 2000) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "every line is counted as read: lines_read {}, the file's row {:?}",
            m.lines_read,
            m.files.first().map(|f| f.lines_read)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tail.stop().await;
}

#[tokio::test]
async fn rejected_lines_leave_in_chunks_of_at_most_chunk_limit_size() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    // 400 lines of about 1 KiB, read in one turn of the source.
    let pad = "x".repeat(1000);
    let text: String = (0..400).map(|i| format!("{i:04} {pad}\n")).collect();
    append(&path, text.as_bytes());
    let limit = 16 * 1024;
    let mut config = raw_config(dir.path());
    config.chunk_limit_size = ByteSize(limit as u64);

    let errors = Buffer::new("errors", &BufferConfig::default());
    let mut rb = RouterBuilder::new();
    rb.filter("check", TagPattern::new("**").unwrap(), Arc::new(RejectAll));
    rb.sink(
        "errors",
        TagPattern::new("@ERROR.**").unwrap(),
        errors.clone(),
    );
    let tail = Tail::start_routed(dir, config, BufferConfig::default(), rb);

    let mut sizes = Vec::new();
    let mut events = 0;
    while events < 400 {
        let lease = tokio::time::timeout(Duration::from_secs(10), errors.pop())
            .await
            .unwrap_or_else(|_| panic!("waited for 400 rejected events, got {events}"))
            .expect("buffer open");
        events += lease.chunk().count() as usize;
        sizes.push(lease.chunk().byte_size());
        lease.delivered();
    }
    // A chunk is sent once it reaches the limit, so it exceeds it by less than one
    // record (about 1 KiB with its `error` field).
    assert!(
        sizes.iter().all(|s| *s < limit + 2048),
        "chunks of rejected events, in bytes: {sizes:?}"
    );
    assert!(tail.stop().await.is_empty(), "no event was kept");
}
