//! Which files the source follows, from where it reads them, and what wakes it.

use super::*;

#[tokio::test]
async fn read_from_head_false_skips_old_lines_but_new_files_are_read_whole() {
    let dir = Tail::dir();
    let old = dir.path().join("old.log");
    append(&old, b"old 1\nold 2\n");
    let mut config = config(dir.path());
    config.format = TailFormat::Raw;
    let tail = Tail::start(dir, config);
    // A file created after the first scan is read from its start.
    let scanned = wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await;
    assert!(scanned, "the old file is followed");
    append(&tail.path("new.log"), b"new 1\nnew 2\n");
    let got = tail.events(2).await;
    assert_eq!(
        got.iter()
            .map(|g| g.str("log").unwrap())
            .collect::<Vec<_>>(),
        ["new 1", "new 2"]
    );
    append(&old, b"old 3\n");
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("old 3"));
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn read_from_head_true_reads_files_present_at_start() {
    let dir = Tail::dir();
    append(&dir.path().join("old.log"), b"old 1\nold 2\n");
    let mut config = config(dir.path());
    config.format = TailFormat::Raw;
    config.read_from_head = true;
    let tail = Tail::start(dir, config);
    let got = tail.events(2).await;
    assert_eq!(got[0].str("log"), Some("old 1"));
    tail.stop().await;
}

#[tokio::test]
async fn a_line_written_in_two_pieces_is_one_event() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    std::fs::write(&path, b"").unwrap();
    let mut config = config(dir.path());
    config.format = TailFormat::Cri;
    let tail = Tail::start(dir, config);
    let open = wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await;
    assert!(open, "the empty file is followed");
    append(&path, format!("{T1} stdout F first ha").as_bytes());
    // Several polls see the incomplete line and emit nothing.
    tail.nothing_more().await;
    append(&path, b"lf\n");
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("first half"));
    tail.stop().await;
}

#[tokio::test]
async fn excluded_files_are_not_followed() {
    let dir = Tail::dir();
    append(&dir.path().join("keep.log"), b"kept\n");
    append(&dir.path().join("skip.log"), b"skipped\n");
    let mut config = head_config(dir.path());
    config.exclude_paths = vec![format!("{}/skip*", dir.path().display())];
    let tail = Tail::start(dir, config);
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("kept"));
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn max_open_files_makes_files_wait_and_ignore_older_skips_stale_ones() {
    let dir = Tail::dir();
    for name in ["a.log", "b.log", "c.log"] {
        append(&dir.path().join(name), format!("{name}\n").as_bytes());
    }
    let stale = dir.path().join("stale.log");
    append(&stale, b"stale\n");
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let mut config = raw_config(dir.path());
    config.max_open_files = 2;
    config.ignore_older = Some(HumanDuration::secs(3600));
    let tail = Tail::start(dir, config);
    let got = sorted(logs(&tail.events(2).await));
    assert_eq!(got, ["a.log", "b.log"]);
    tail.nothing_more().await;
    assert_eq!(tail.metrics.snapshot().files_waiting, 1);
    // One is let go: the waiting one is followed.
    std::fs::remove_file(tail.path("a.log")).unwrap();
    assert_eq!(logs(&tail.events(1).await), ["c.log"]);
    tail.nothing_more().await;
    tail.stop().await;
}

/// With the intervals at an hour, only the kernel's notifications (inotify) can make
/// the source find a new file and read what is appended to it.
#[tokio::test]
async fn the_kernel_wakes_the_source_for_new_files_and_writes() {
    let dir = Tail::dir();
    let mut config = raw_config(dir.path());
    config.refresh_interval = HumanDuration::secs(3600);
    config.poll_interval = HumanDuration::secs(3600);
    config.watch = true;
    let tail = Tail::start(dir, config);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let path = tail.path("new.log");
    append(&path, b"first\n");
    assert_eq!(logs(&tail.events(1).await), ["first"]);
    append(&path, b"second\n");
    assert_eq!(logs(&tail.events(1).await), ["second"]);
    tail.nothing_more().await;
    tail.stop().await;
}
