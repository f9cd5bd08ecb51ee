//! Copytruncate and the fingerprints that find a copy: a fingerprint covers what
//! was read, and a short one is no proof that a file is a copy.

use super::*;

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
