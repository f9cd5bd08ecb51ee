use super::*;

const A: ChunkId = ChunkId([0xaa; 16]);
const B: ChunkId = ChunkId([0xbb; 16]);
const T: &str = "projects/p/datasets/d/tables/t";

#[test]
fn runs_join_consecutive_positions_of_one_origin() {
    let rows = [(A, 0), (A, 1), (A, 2), (B, 0), (A, 4), (A, 5)];
    assert_eq!(
        runs(rows),
        vec![
            Run {
                origin: A,
                start: 0,
                len: 3
            },
            Run {
                origin: B,
                start: 0,
                len: 1
            },
            Run {
                origin: A,
                start: 4,
                len: 2
            },
        ]
    );
}

#[test]
fn after_a_restart_the_appends_below_the_finalized_length_are_written_and_the_rest_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sink.journal");
    {
        let mut j = Journal::open(&path).unwrap();
        let sid = j
            .new_stream(T, "projects/p/datasets/d/tables/t/streams/s1")
            .unwrap();
        let first = runs((0..10).map(|i| (A, i)));
        let second = runs((10..20).map(|i| (A, i)).chain((0..5).map(|i| (B, i))));
        j.plan(sid, &[(0, 10, first), (10, 15, second)]).unwrap();
        // A crash: nothing more is recorded.
    }
    let mut j = Journal::open(&path).unwrap();
    let open = j.open_streams();
    assert_eq!(open.len(), 1, "the stream is still open: {open:?}");
    assert!(
        !j.is_written(T, A, 0),
        "unknown until the stream's length is"
    );
    // The stream holds 10 rows: the first append landed, the second did not.
    j.finalized(open[0].0, Some(10)).unwrap();
    assert!((0..10).all(|i| j.is_written(T, A, i)));
    assert!(!(10..20).any(|i| j.is_written(T, A, i)));
    assert!(!j.is_written(T, B, 0));
    assert!(!j.is_written("projects/p/datasets/d/tables/other", A, 0));
    assert!(j.open_streams().is_empty());
    // And that is what the file says after another restart.
    drop(j);
    let j = Journal::open(&path).unwrap();
    assert!((0..10).all(|i| j.is_written(T, A, i)));
    assert!(!j.is_written(T, A, 10));
}

#[test]
fn a_stream_that_is_gone_counts_none_of_its_appends_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sink.journal");
    let mut j = Journal::open(&path).unwrap();
    let sid = j.new_stream(T, "s").unwrap();
    j.plan(sid, &[(0, 3, runs((0..3).map(|i| (A, i))))])
        .unwrap();
    j.finalized(sid, None).unwrap();
    assert!(!j.is_written(T, A, 0));
}

#[test]
fn appends_answered_within_the_run_are_written_and_refused_ones_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::open(&dir.path().join("j")).unwrap();
    let sid = j.new_stream(T, "s").unwrap();
    j.plan(
        sid,
        &[(0, 2, runs([(A, 0), (A, 1)])), (2, 1, runs([(A, 2)]))],
    )
    .unwrap();
    j.landed(sid, 0);
    j.refused(sid, 2);
    assert!(j.is_written(T, A, 1));
    assert!(!j.is_written(T, A, 2));
    // Replanned at the same offset with other rows, which is what a restart sees.
    j.plan(sid, &[(2, 1, runs([(A, 3)]))]).unwrap();
    drop(j);
    let mut j = Journal::open(&dir.path().join("j")).unwrap();
    j.finalized(sid, Some(3)).unwrap();
    assert!(j.is_written(T, A, 3));
    assert!(
        !j.is_written(T, A, 2),
        "the refused append's rows never landed"
    );
}

#[test]
fn a_record_cut_short_by_a_crash_is_ignored_and_the_file_is_usable_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    {
        let mut j = Journal::open(&path).unwrap();
        let sid = j.new_stream(T, "s").unwrap();
        j.plan(sid, &[(0, 1, runs([(A, 0)]))]).unwrap();
    }
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(format!("A 0 1 1 1 {}:1:", A.to_hex()).as_bytes())
        .unwrap();
    drop(f);
    let mut j = Journal::open(&path).unwrap();
    let sid = j.open_streams()[0].0;
    j.plan(sid, &[(1, 1, runs([(A, 7)]))]).unwrap();
    drop(j);
    let mut j = Journal::open(&path).unwrap();
    j.finalized(sid, Some(2)).unwrap();
    assert!(j.is_written(T, A, 0) && j.is_written(T, A, 7));
    assert!(!j.is_written(T, A, 1));
}

#[test]
fn rows_in_an_append_not_answered_yet_are_claimed_from_the_other_streams_until_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let mut j = Journal::open(&path).unwrap();
    // Two workers, each with its own stream on the table.
    let one = j.new_stream(T, "s1").unwrap();
    let two = j.new_stream(T, "s2").unwrap();
    j.plan(one, &[(0, 3, runs((0..3).map(|i| (A, i))))])
        .unwrap();
    j.plan(one, &[(3, 2, runs((0..2).map(|i| (B, i))))])
        .unwrap();
    // The same rows again (a chunk the forwarder sent twice) at the other worker.
    assert!((0..3).all(|i| j.claimed_elsewhere(T, A, i, Some(two))));
    assert!(j.claimed_elsewhere(T, A, 0, None));
    assert!(!j.claimed_elsewhere(T, A, 3, Some(two)));
    assert!(
        !j.claimed_elsewhere(T, A, 0, Some(one)),
        "a worker's own appends are its queue's business"
    );
    assert!(!j.claimed_elsewhere("projects/p/datasets/d/tables/other", A, 0, Some(two)));
    // Answered: the rows are written, no longer claimed.
    j.landed(one, 0);
    assert!(!j.claimed_elsewhere(T, A, 0, Some(two)));
    assert!(j.is_written(T, A, 0));
    // Refused: free to plan again, anywhere.
    j.refused(one, 3);
    assert!(!j.claimed_elsewhere(T, B, 0, Some(two)) && !j.is_written(T, B, 0));

    // After a crash the appends recorded on open streams are claimed until recovery
    // finalizes their streams, which answers them.
    j.plan(one, &[(3, 2, runs((0..2).map(|i| (B, i))))])
        .unwrap();
    drop(j);
    let mut j = Journal::open(&path).unwrap();
    assert!(j.claimed_elsewhere(T, B, 1, None));
    j.finalized(one, Some(5)).unwrap();
    j.finalized(two, Some(0)).unwrap();
    assert!(!j.claimed_elsewhere(T, B, 1, None));
    assert!(j.is_written(T, B, 1));
}

#[test]
fn a_stream_finalized_twice_keeps_what_the_first_finalize_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let mut j = Journal::open(&path).unwrap();
    let one = j.new_stream(T, "s1").unwrap();
    assert_eq!(j.stream_state(one), StreamState::Open("s1".into()));
    j.plan(one, &[(0, 3, runs((0..3).map(|i| (A, i))))])
        .unwrap();
    j.plan(one, &[(3, 2, runs((0..2).map(|i| (B, i))))])
        .unwrap();
    // Another worker finalized the stream: the first append landed, the second not.
    j.finalized(one, Some(3)).unwrap();
    assert_eq!(j.stream_state(one), StreamState::Finalized(Some(3)));
    // The stream's own worker, refused on it, asks again and hears it is gone.
    j.finalized(one, None).unwrap();
    let check = |j: &Journal| {
        assert_eq!(j.stream_state(one), StreamState::Finalized(Some(3)));
        assert!((0..3).all(|i| j.is_written(T, A, i)));
        assert!(!j.is_written(T, B, 0) && !j.claimed_elsewhere(T, B, 0, None));
    };
    check(&j);
    // And so it reads back.
    drop(j);
    let j = Journal::open(&path).unwrap();
    assert!((0..3).all(|i| j.is_written(T, A, i)));
    assert_eq!(
        j.stream_state(one),
        StreamState::Unknown,
        "forgotten once compacted"
    );
    assert_eq!(j.stream_state(99), StreamState::Unknown);
}
