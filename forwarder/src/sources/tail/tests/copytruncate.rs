//! Event ids of lines read again from a copy made by copytruncate. A line first read
//! from the original and read again from the copy after a crash (or the other way
//! round) must carry the id it had: the copy's lines take the original's identity.
//! Each test crashes the real source at one point of a copytruncate rotation (before
//! the copy, between copy and truncation, after the truncation, after the source
//! switched to the copy, and with a second rotation while it was down) and checks
//! that every line comes out and that all its readings carry one id. The last tests
//! are about the fingerprints that find a copy: one covers what was read, and a short
//! one is no proof that a file is a copy.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use super::*;

/// Every reading of every line: its `log`, offset and event id, in arrival order.
#[derive(Debug, Default)]
struct Readings(Vec<(String, u64, String)>);

impl Readings {
    fn add(&mut self, got: &[Got]) {
        self.0.extend(positions(got));
    }

    /// The lines read with more than one id, and those ids.
    fn with_two_ids(&self) -> BTreeMap<&str, BTreeSet<&str>> {
        let mut ids: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (line, _, id) in &self.0 {
            ids.entry(line).or_default().insert(id);
        }
        ids.retain(|_, ids| ids.len() > 1);
        ids
    }

    /// How many times `line` was read.
    fn count(&self, line: &str) -> usize {
        self.0.iter().filter(|(l, _, _)| l == line).count()
    }

    /// Checks that each of `lines` was read at least once, and that no line was read
    /// with two ids.
    fn check(&self, lines: &[String]) {
        let missing: Vec<&String> = lines.iter().filter(|l| self.count(l) == 0).collect();
        assert!(missing.is_empty(), "lines lost: {missing:?}\n{self:#?}");
        let twice = self.with_two_ids();
        assert!(
            twice.is_empty(),
            "{} lines were read with two different ids: {twice:#?}",
            twice.len()
        );
    }
}

/// Events arriving until none came for half a second, acknowledged.
async fn settle(tail: &Tail) -> Vec<Got> {
    let mut got = Vec::new();
    while let Ok(lease) = tokio::time::timeout(Duration::from_millis(500), tail.buffer.pop()).await
    {
        let lease = lease.expect("buffer open");
        got.extend(decode(lease.chunk()));
        lease.delivered();
    }
    got
}

/// Waits until the checkpoint file on disk satisfies `check`.
async fn on_disk(tail: &Tail, what: &str, check: impl Fn(&[checkpoint::Stored]) -> bool) {
    let store = tail.path("tail/tail/checkpoints");
    let written = wait_until_async(WAIT, || {
        let bytes = std::fs::read(&store).unwrap_or_default();
        checkpoint::decode(&bytes).is_ok_and(|e| check(&e))
    })
    .await;
    assert!(written, "the checkpoints on disk never showed {what}");
}

/// logrotate's copytruncate: copy, then empty the original in place.
fn copytruncate(path: &Path, copy: &Path) {
    std::fs::copy(path, copy).unwrap();
    truncate(path);
}

/// The first part of every scenario: `a 0..3` read and acknowledged (and the
/// checkpoint on disk past them), then `a 3..6` read but never acknowledged. Returns
/// the source, the readings, and the leases of the unacknowledged events.
async fn read_part(
    config: TailConfig,
    dir: tempfile::TempDir,
) -> (Tail, Readings, Vec<nagare_core::buffer::Lease>) {
    let path = dir.path().join("app.log");
    append(&path, numbered("a", 0..3).as_bytes());
    let tail = Tail::start(dir, config);
    let mut readings = Readings::default();
    readings.add(&tail.events(3).await);
    let acked = numbered("a", 0..3).len() as u64;
    on_disk(&tail, "the first lines delivered", |e| {
        e.iter().any(|e| e.offset == acked)
    })
    .await;
    append(&path, numbered("a", 3..6).as_bytes());
    let (got, leases) = unacked(&tail, 3).await;
    readings.add(&got);
    (tail, readings, leases)
}

/// Restarts the source after a crash.
async fn crash_and_restart(tail: Tail, between: impl FnOnce(&Path)) -> Tail {
    let (config, buffer) = (tail.config.clone(), tail.buffer_config.clone());
    let home = tail.crash().await;
    between(home.path());
    Tail::start_with(home, config, buffer, false)
}

/// A config with event ids, following `app.log` (and, with `copies`, the rotated
/// copies beside it too).
fn id_config(dir: &Path, copies: bool) -> TailConfig {
    let mut config = keyed(raw_config(dir));
    let glob = if copies { "app.log*" } else { "*.log" };
    config.paths = vec![format!("{}/{glob}", dir.display())];
    config
}

/// The crash came before the rotation, which happened while the source was down:
/// the lines past the checkpoint are read again from the copy, found beside the old
/// path (`app.log.1` not matched by the globs) or matched by the globs.
#[tokio::test]
async fn lines_read_again_from_a_copy_made_while_down_keep_their_ids() {
    for copies in [false, true] {
        let dir = Tail::dir();
        let config = id_config(dir.path(), copies);
        let (tail, mut readings, _leases) = read_part(config, dir).await;
        let tail = crash_and_restart(tail, |home| {
            let path = home.join("app.log");
            copytruncate(&path, &home.join("app.log.1"));
            append(&path, numbered("b", 0..2).as_bytes());
        })
        .await;
        readings.add(&settle(&tail).await);
        let mut want = expected("a", 0..6);
        want.extend(expected("b", 0..2));
        readings.check(&want);
        for line in expected("a", 3..6) {
            assert_eq!(readings.count(&line), 2, "{line}: {readings:#?}");
        }
        tail.stop().await;
    }
}

/// The crash came between the copy and the truncation, and the globs match the
/// copy: after the restart the copy is a copy of a file being followed; its lines
/// are the original's and take their ids. The truncation comes later.
#[tokio::test]
async fn a_copy_of_a_followed_file_takes_its_ids() {
    let dir = Tail::dir();
    let config = id_config(dir.path(), true);
    let (tail, mut readings, _leases) = read_part(config, dir).await;
    let tail = crash_and_restart(tail, |home| {
        std::fs::copy(home.join("app.log"), home.join("app.log.1")).unwrap();
    })
    .await;
    readings.add(&settle(&tail).await);
    truncate(&tail.path("app.log"));
    append(&tail.path("app.log"), numbered("b", 0..2).as_bytes());
    readings.add(&settle(&tail).await);
    let mut want = expected("a", 0..6);
    want.extend(expected("b", 0..2));
    readings.check(&want);
    for line in expected("a", 0..3) {
        assert_eq!(
            readings.count(&line),
            1,
            "delivered before the crash: {line}"
        );
    }
    tail.stop().await;
}

/// The source noticed the truncation and read the rest from the copy; the crash came
/// before any of it was delivered, so after the restart the copy is read again from
/// the checkpoint, which lies before lines first read from the original. With
/// `second`, logrotate ran once more while the source was down (`app.log.1` became
/// `app.log.2`, a new copy `app.log.1`). The copytruncate lands right after the
/// source read `a 3..6`, while it still hands their chunk over: the fingerprint that
/// finds the copy must be that of what was read, not of the emptied file.
#[tokio::test]
async fn lines_read_again_after_the_source_switched_to_the_copy_keep_their_ids() {
    for second in [false, true] {
        let dir = Tail::dir();
        let path = dir.path().join("app.log");
        let mut config = keyed(slow_config(&path));
        config.rotate_wait = HumanDuration::millis(10);
        let (tail, mut readings, mut leases) = read_part(config, dir).await;
        // Between two looks of the source: two more lines, the copy, the truncation.
        append(&path, numbered("a", 6..8).as_bytes());
        copytruncate(&path, &tail.path("app.log.1"));
        append(&path, numbered("b", 0..2).as_bytes());
        let (got, more) = unacked(&tail, 4).await;
        readings.add(&got);
        leases.extend(more);
        let copy = std::fs::metadata(tail.path("app.log.1")).unwrap().ino();
        on_disk(&tail, "the copy taking over the checkpoint", |e| {
            e.iter().any(|e| e.id.ino == copy)
        })
        .await;
        let m = tail.metrics.snapshot();
        assert_eq!((m.truncations, m.copies_recovered), (1, 1), "{m:?}");
        let tail = crash_and_restart(tail, |home| {
            if second {
                let (one, two) = (home.join("app.log.1"), home.join("app.log.2"));
                std::fs::rename(&one, two).unwrap();
                copytruncate(&home.join("app.log"), &one);
                append(&home.join("app.log"), numbered("c", 0..2).as_bytes());
            }
        })
        .await;
        drop(leases);
        readings.add(&settle(&tail).await);
        let mut want = expected("a", 0..8);
        want.extend(expected("b", 0..2));
        if second {
            want.extend(expected("c", 0..2));
        }
        readings.check(&want);
        for line in expected("a", 3..6) {
            assert_eq!(readings.count(&line), 2, "{line}: {readings:#?}");
        }
        tail.stop().await;
    }
}

/// Lines of the truncated file's new content get ids of their own: a copy's ids
/// are not given to the lines written after the truncation.
#[tokio::test]
async fn the_truncated_file_gets_new_ids_and_the_copy_keeps_the_old_ones() {
    let dir = Tail::dir();
    let config = id_config(dir.path(), false);
    let (tail, mut readings, _leases) = read_part(config, dir).await;
    let tail = crash_and_restart(tail, |home| {
        let path = home.join("app.log");
        copytruncate(&path, &home.join("app.log.1"));
        append(&path, numbered("b", 0..6).as_bytes());
    })
    .await;
    readings.add(&settle(&tail).await);
    let id = |line: &str| {
        let (_, offset, id) = readings.0.iter().rev().find(|(l, _, _)| l == line).unwrap();
        (*offset, id.clone())
    };
    for n in 0..6 {
        let (a, b) = (id(&format!("a {n}")), id(&format!("b {n}")));
        assert_eq!(a.0, b.0, "same offsets");
        assert_ne!(a.1, b.1, "other ids");
    }
    tail.stop().await;
}

/// The fingerprint grows from the bytes as they are read, so that a file emptied
/// right after it was read (while its chunk is being handed over) keeps the
/// fingerprint that finds its copy; grown piece by piece it is the fingerprint of the
/// whole prefix.
#[test]
fn a_fingerprint_grown_from_the_bytes_read_is_that_of_the_prefix() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    let text: String = (0..200).map(|n| format!("line {n}\n")).collect();
    append(&path, text.as_bytes());
    let handle = std::fs::File::open(&path).unwrap();
    let mut grown = file::Fingerprint::default();
    let bytes = text.as_bytes();
    // Overlapping and out-of-reach pieces are taken in only where they add bytes.
    for (start, end) in [
        (0, 5),
        (3, 9),
        (20, 30),
        (9, 700),
        (600, 1500),
        (1500, 1600),
    ] {
        grown.extend(start as u64, &bytes[start..end]);
    }
    assert_eq!(grown, file::Fingerprint::of(&handle).unwrap());
    assert!(grown.is_complete());
}

/// An entry whose fingerprint covers fewer bytes than its offset (written when its
/// file held a partial line) is no proof that a new file starting with those bytes
/// is its copy: the new file is read from its start, not from the entry's offset.
#[tokio::test]
async fn a_short_fingerprint_does_not_pass_a_new_file_for_a_copy() {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    append(&path, b"L000028 \n");
    let short = b"L000";
    let stale = checkpoint::Stored {
        id: file::FileId { dev: 1, ino: 1 },
        origin: file::FileId { dev: 1, ino: 1 },
        fingerprint: file::Fingerprint {
            len: short.len() as u32,
            hash: file::fnv1a(short),
        },
        offset: 9,
        path: dir.path().join("gone.log"),
        gone_since: None,
    };
    let store = dir.path().join("tail").join("tail");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("checkpoints"), checkpoint::encode(&[stale])).unwrap();
    let tail = Tail::start(dir, raw_config(Path::new("/")).with_paths(&path));
    assert_eq!(logs(&tail.events(1).await), ["L000028 "]);
    tail.stop().await;
}
