//! Restarts and crashes: the source resumes from its checkpoints, also for files
//! rotated while it was down; the checkpoint file itself.

use super::*;

#[tokio::test]
async fn a_restart_resumes_from_the_checkpoint_without_duplicates() {
    let (tail, path) = reading_app_log(raw_beside, 3).await;
    let (during_stop, tail) = tail.restart().await;
    assert!(during_stop.is_empty());
    append(&path, numbered("a", 3..5).as_bytes());
    assert_eq!(logs(&tail.events(2).await), expected("a", 3..5));
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn lines_not_acknowledged_before_a_crash_are_read_again() {
    let (tail, path) = reading_app_log(raw_beside, 5).await;
    append(&path, numbered("a", 5..8).as_bytes());
    // Wait until the new lines are in the buffer, but never acknowledge them.
    let queued = wait_until_async(WAIT, || tail.buffer.stats().queued_chunks > 0).await;
    assert!(queued, "the new lines were read");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let tail = tail.crash().await.start();
    assert_eq!(logs(&tail.events(3).await), expected("a", 5..8));
    tail.nothing_more().await;
    tail.stop().await;
}

#[tokio::test]
async fn history_is_skipped_on_the_first_start_only() {
    let dir = Tail::dir();
    let old = dir.path().join("old.log");
    append(&old, numbered("old", 0..2).as_bytes());
    let mut config = raw_config(dir.path());
    config.read_from_head = false;
    let tail = Tail::start(dir, config);
    assert!(wait_until_async(WAIT, || tail.metrics.snapshot().open_files == 1).await);
    append(&old, numbered("old", 2..3).as_bytes());
    assert_eq!(logs(&tail.events(1).await), expected("old", 2..3));
    let (_, stopped) = tail.stopped().await;
    // Stopped meanwhile: a file that appeared is read whole, the old one resumes.
    append(&stopped.path("new.log"), numbered("new", 0..2).as_bytes());
    append(&old, numbered("old", 3..4).as_bytes());
    let tail = stopped.start();
    let got = sorted(logs(&tail.events(3).await));
    assert_eq!(got, ["new 0", "new 1", "old 3"]);
    tail.nothing_more().await;
    tail.stop().await;
}

/// `a 0..3` read, the source stopped, `a 3..5` appended and the file rotated by
/// `rotate` (to `app.log.1`), `b 0` written to a new `app.log`: after the restart
/// the lines past the checkpoint come out of the rotated file, the new one whole.
/// Returns the source running again.
async fn rotated_while_stopped(rotate: fn(&Path, &Path)) -> Tail {
    let (tail, path) = reading_app_log(raw_beside, 3).await;
    let (_, stopped) = tail.stopped().await;
    append(&path, numbered("a", 3..5).as_bytes());
    rotate(&path, &stopped.path("app.log.1"));
    append(&path, numbered("b", 0..1).as_bytes());
    let tail = stopped.start();
    let got = sorted(logs(&tail.events(3).await));
    assert_eq!(got, ["a 3", "a 4", "b 0"]);
    tail.nothing_more().await;
    tail
}

#[tokio::test]
async fn a_file_rotated_while_stopped_is_finished_from_its_checkpoint() {
    let tail = rotated_while_stopped(|from, to| std::fs::rename(from, to).unwrap()).await;
    assert_eq!(tail.metrics.snapshot().copies_recovered, 1);
    tail.stop().await;
}

#[tokio::test]
async fn copytruncate_while_stopped_reads_the_rest_from_the_copy() {
    let tail = rotated_while_stopped(copytruncate).await;
    tail.stop().await;
}

#[tokio::test]
async fn a_reused_inode_is_told_apart_by_the_fingerprint() {
    let (dir, path) = dir_with(app_log, numbered("new file", 0..3).as_bytes());
    // A checkpoint for this very inode, but for other content (the file it once was).
    let meta = std::fs::metadata(&path).unwrap();
    let stale = checkpoint::Stored {
        id: file::FileId::of(&meta),
        origin: file::FileId::of(&meta),
        fingerprint: file::Fingerprint { len: 9, hash: 42 },
        offset: 12,
        path: path.clone(),
        gone_since: None,
    };
    let store = dir.path().join("tail").join("tail");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("checkpoints"), checkpoint::encode(&[stale])).unwrap();
    let mut config = raw_config(dir.path());
    config.read_from_head = false;
    let tail = Tail::start(dir, config);
    assert_eq!(logs(&tail.events(3).await), expected("new file", 0..3));
    tail.stop().await;
}

#[tokio::test]
async fn a_torn_checkpoint_file_is_ignored_and_files_are_read_from_their_start() {
    let (dir, path) = dir_with(app_log, numbered("a", 0..2).as_bytes());
    let meta = std::fs::metadata(&path).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let whole = checkpoint::encode(&[checkpoint::Stored {
        id: file::FileId::of(&meta),
        origin: file::FileId::of(&meta),
        fingerprint: file::Fingerprint::of(&file).unwrap(),
        offset: meta.len(),
        path: path.clone(),
        gone_since: None,
    }]);
    let store = dir.path().join("tail").join("tail");
    std::fs::create_dir_all(&store).unwrap();
    // The write stopped half way.
    std::fs::write(store.join("checkpoints"), &whole[..whole.len() - 10]).unwrap();
    let mut config = raw_config(dir.path());
    config.read_from_head = false;
    let tail = Tail::start(dir, config);
    assert_eq!(logs(&tail.events(2).await), expected("a", 0..2));
    tail.stop().await;
}

#[test]
fn checkpoint_files_round_trip_and_refuse_damage() {
    let entries = vec![
        checkpoint::Stored {
            id: file::FileId { dev: 2049, ino: 77 },
            // A copy: its lines' ids come from the original's inode.
            origin: file::FileId { dev: 2049, ino: 12 },
            fingerprint: file::Fingerprint {
                len: 1024,
                hash: 0xdead_beef,
            },
            offset: 123_456,
            path: PathBuf::from("/var/log/pods/a b/\"quoted\"/0.log"),
            gone_since: Some(1_700_000_000),
        },
        checkpoint::Stored {
            id: file::FileId { dev: 1, ino: 2 },
            origin: file::FileId { dev: 1, ino: 2 },
            fingerprint: file::Fingerprint::default(),
            offset: 0,
            path: PathBuf::from("/x.log"),
            gone_since: None,
        },
    ];
    let bytes = checkpoint::encode(&entries);
    assert_eq!(checkpoint::decode(&bytes).unwrap(), entries);
    assert!(
        checkpoint::decode(&bytes[..bytes.len() - 1]).is_ok(),
        "a missing final newline is fine"
    );
    for cut in [10, bytes.len() / 2, bytes.len() - 3] {
        assert!(checkpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    flipped[40] ^= 1;
    assert!(checkpoint::decode(&flipped).is_err());
    assert!(checkpoint::decode(b"").is_err());
    // A file written before entries had an origin: each file is its own.
    let mut v1 = String::from(
        "nagare-tail-checkpoints 1\n2049 77 1024 00000000deadbeef 123456 - \"/x.log\"\n",
    );
    let sum = file::fnv1a(v1.as_bytes());
    v1.push_str(&format!("end 1 {sum:016x}\n"));
    let old = checkpoint::decode(v1.as_bytes()).unwrap();
    assert_eq!((old[0].origin, old[0].offset), (old[0].id, 123_456));
}

/// Checkpoints of files no longer followed are kept (and saved) for the grace period,
/// then forgotten; those of followed files never are.
#[test]
fn checkpoints_of_files_gone_longer_than_the_grace_period_are_forgotten() {
    let dir = Tail::dir();
    let entry = |ino: u64, name: &str| checkpoint::Stored {
        id: file::FileId { dev: 1, ino },
        origin: file::FileId { dev: 1, ino },
        fingerprint: file::Fingerprint { len: 3, hash: 7 },
        offset: 100,
        path: dir.path().join(name),
        gone_since: None,
    };
    let (store, loaded) =
        checkpoint::Checkpoints::open(dir.path(), "tail", TailMetrics::new()).unwrap();
    assert_eq!(loaded, checkpoint::Loaded::Fresh);
    store.register(entry(1, "followed.log"));
    let gone = store.register(entry(2, "gone.log"));
    store.release(gone);
    assert_eq!(
        store.forget(Duration::from_secs(3600)),
        0,
        "within the grace period"
    );
    store.write_now();
    drop(store);

    // After a restart the released entry is still known...
    let (store, loaded) =
        checkpoint::Checkpoints::open(dir.path(), "tail", TailMetrics::new()).unwrap();
    assert_eq!(loaded, checkpoint::Loaded::Restored);
    assert_eq!(store.unclaimed().len(), 2);
    let again = store.claim(|e| e.id.ino == 1).unwrap();
    assert_eq!(store.stored(again).unwrap().offset, 100);
    assert_eq!(store.forget(Duration::from_secs(3600)), 0);
    // ...and forgotten once gone for longer than the grace period (zero here); the
    // followed one stays.
    assert_eq!(store.forget(Duration::ZERO), 1);
    assert_eq!(store.forget(Duration::ZERO), 0);
    store.write_now();
    drop(store);
    let (store, _) = checkpoint::Checkpoints::open(dir.path(), "tail", TailMetrics::new()).unwrap();
    let left: Vec<u64> = store.unclaimed().iter().map(|e| e.id.ino).collect();
    assert_eq!(left, [1]);
}

#[test]
fn checkpoint_lag_is_the_age_of_the_oldest_chunk_not_confirmed() {
    let dir = Tail::dir();
    let (store, _) = checkpoint::Checkpoints::open(dir.path(), "tail", TailMetrics::new()).unwrap();
    let read = store.lag_reader();
    let slot = store.register(checkpoint::Stored {
        id: file::FileId { dev: 1, ino: 1 },
        origin: file::FileId { dev: 1, ino: 1 },
        fingerprint: file::Fingerprint { len: 3, hash: 7 },
        offset: 0,
        path: dir.path().join("app.log"),
        gone_since: None,
    });
    assert_eq!(store.lag(), Duration::ZERO, "nothing handed over");
    let first = store.track(slot, 100, 2);
    std::thread::sleep(Duration::from_millis(30));
    let second = store.track(slot, 200, 2);
    assert!(
        store.lag() >= Duration::from_millis(30),
        "{:?}",
        store.lag()
    );
    // The later chunk confirmed first: the checkpoint still waits for the older one.
    drop(second);
    assert!(read() >= 0.03, "{}", read());
    drop(first);
    assert_eq!(store.lag(), Duration::ZERO);
    assert_eq!(store.stored(slot).unwrap().offset, 200);
    drop(store);
    assert_eq!(read(), 0.0, "read after the source dropped its store");
}
