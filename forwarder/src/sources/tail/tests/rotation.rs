//! Files rotated by rename, copytruncate or deletion while the source follows them.

use super::*;

#[tokio::test]
async fn a_truncated_file_is_read_again_from_its_start() {
    let (dir, path) = dir_with(app_log, b"a fairly long first line\nand a second one\n");
    let config = head_config(dir.path());
    let tail = Tail::start(dir, config);
    assert_eq!(tail.events(2).await.len(), 2);
    // copytruncate: the file is emptied in place, then written again.
    truncate(&path);
    append(&path, b"after\n");
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("after"));
    tail.stop().await;
}

#[tokio::test]
async fn a_rotated_file_is_read_to_its_end_and_the_new_one_from_its_start() {
    let (dir, path) = dir_with(app_log, b"one\n");
    let config = head_config(dir.path());
    let tail = Tail::start(dir, config);
    assert_eq!(tail.events(1).await[0].str("log"), Some("one"));
    append(&path, b"two\n");
    std::fs::rename(&path, tail.path("app.log.1")).unwrap();
    append(&path, b"three\n");
    let got = tail.events(2).await;
    let mut logs: Vec<&str> = got.iter().map(|g| g.str("log").unwrap()).collect();
    logs.sort();
    assert_eq!(logs, ["three", "two"]);
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn copytruncate_while_running_recovers_unread_lines_from_the_copy() {
    let (tail, path) = reading_app_log(slow_config, 3).await;
    // Between two looks: lines appended, the file copied and emptied, more written.
    append(&path, numbered("a", 3..5).as_bytes());
    copytruncate(&path, &tail.path("app.log.1"));
    append(&path, numbered("b", 0..2).as_bytes());
    let got = sorted(logs(&tail.events(4).await));
    assert_eq!(got, ["a 3", "a 4", "b 0", "b 1"]);
    tail.nothing_more().await;
    let m = tail.metrics.snapshot();
    assert_eq!((m.truncations, m.copies_recovered), (1, 1));
    tail.stop().await;
}

#[tokio::test]
async fn a_file_truncated_and_rewritten_past_the_offset_is_read_again() {
    let (dir, path) = dir_with(app_log, b"short 0\n");
    let tail = Tail::start(dir, slow_config(&path));
    assert_eq!(logs(&tail.events(1).await), ["short 0"]);
    truncate(&path);
    // Longer than what was read: only the fingerprint tells.
    append(&path, numbered("longer line", 0..3).as_bytes());
    assert_eq!(logs(&tail.events(3).await), expected("longer line", 0..3));
    assert_eq!(tail.metrics.snapshot().truncations, 1);
    tail.stop().await;
}

#[tokio::test]
async fn a_file_deleted_while_followed_is_read_to_its_end() {
    let (tail, path) = reading_app_log(slow_config, 1).await;
    append(&path, numbered("a", 1..3).as_bytes());
    std::fs::remove_file(&path).unwrap();
    assert_eq!(logs(&tail.events(2).await), expected("a", 1..3));
    // Recreated under the same name: a new file, read from its start.
    append(&path, numbered("b", 0..2).as_bytes());
    assert_eq!(logs(&tail.events(2).await), expected("b", 0..2));
    let gone = wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await;
    let m = tail.metrics.snapshot();
    assert!(gone, "the deleted file is let go: {m:?}");
    assert_eq!(m.deletions + m.rotations, 1);
    tail.stop().await;
}
