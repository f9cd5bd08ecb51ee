//! The path, offset and event id keys a source can add to each record.

use super::*;

#[tokio::test]
async fn source_keys_are_absent_by_default() {
    let (dir, path) = dir_with(app_log, b"one\n");
    let tail = Tail::start(dir, raw_beside(&path));
    let got = tail.events(1).await;
    let keys: Vec<&str> = got[0].record.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["log"]);
    tail.stop().await;
}

#[tokio::test]
async fn plain_lines_carry_path_offset_and_event_id_on_both_record_paths() {
    for filter in [false, true] {
        let dir = Tail::dir();
        let path = dir.path().join("app.log");
        append(
            &path,
            b"one\ntwo\n{\"path\":\"app's own\",\"offset\":-1,\"n\":1}\n",
        );
        let config = keyed(raw_beside(&path));
        let tail = Tail::start_with(dir, config, BufferConfig::default(), filter);
        let got = tail.events(3).await;
        let at = positions(&got);
        assert_eq!(
            at.iter()
                .map(|(l, o, _)| (l.as_str(), *o))
                .collect::<Vec<_>>(),
            [("one", 0), ("two", 4), ("", 8)],
            "filter: {filter}"
        );
        let hash = id_hash(&at[0].2, 0);
        assert_eq!(id_hash(&at[1].2, 4), hash, "one hash per file");
        assert_eq!(id_hash(&at[2].2, 8), hash);
        for g in &got {
            assert_eq!(g.str("path"), Some(path.to_str().unwrap()));
        }
        // A merged JSON field named like a source key is replaced by the source's.
        assert_eq!(got[2].record.get("n"), Some(&Value::Int(1)));
        let keys: Vec<&str> = got[2].record.iter().map(|(k, _)| k.as_str()).collect();
        let mut want = vec!["n", "path", "offset", "line_id"];
        if filter {
            want.push("seen");
        }
        assert_eq!(keys, want);
        tail.stop().await;
    }
}

#[tokio::test]
async fn cri_partial_merges_carry_the_offset_of_their_first_piece() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let input = cri_input();
    append(&path, input.as_bytes());
    let line_at = |n: usize| -> u64 {
        input
            .split_inclusive('\n')
            .take(n)
            .map(|l| l.len() as u64)
            .sum()
    };
    let config = keyed(head_config(dir.path()));
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    check_cri(&got, &path);
    let offsets: Vec<u64> = positions(&got).iter().map(|p| p.1).collect();
    // stderr F (line 1); stdout P + P + F from line 0; the JSON message (line 4).
    assert_eq!(offsets, [line_at(1), line_at(0), line_at(4)]);
    tail.stop().await;
}

#[tokio::test]
async fn multiline_events_carry_the_offset_of_their_first_line() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let lines = [
        format!("{T1} stdout F started"),
        format!("{T2} stderr F java.lang.IllegalStateException: boom"),
        format!("{T2} stdout F in between"),
        format!("{T2} stderr P \tat com.example.App.run"),
        format!("{T2} stderr F (App.java:42)"),
        format!("{T2} stderr F \tat com.example.App.main(App.java:7)"),
        format!("{T2} stdout F done"),
    ];
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    append(&path, input.as_bytes());
    let line_at = |n: usize| -> u64 { lines[..n].iter().map(|l| l.len() as u64 + 1).sum() };
    let mut config = keyed(head_config(dir.path()));
    config.format = TailFormat::Cri;
    config.multiline =
        Some(serde_norway::from_str("languages: [java]\nflush_timeout: 200ms").unwrap());
    let tail = Tail::start(dir, config);
    let mut got = positions(&tail.events(4).await);
    got.sort_by_key(|p| p.1);
    let got: Vec<(&str, u64)> = got.iter().map(|(l, o, _)| (l.as_str(), *o)).collect();
    assert_eq!(
        got,
        [
            ("started", line_at(0)),
            (
                "java.lang.IllegalStateException: boom\n\tat com.example.App.run(App.java:42)\n\tat com.example.App.main(App.java:7)",
                line_at(1)
            ),
            ("in between", line_at(2)),
            ("done", line_at(6)),
        ]
    );
    tail.stop().await;
}

/// Lines read again after a crash get the ids they had, also when the file grew
/// past its first KiB meanwhile and was renamed by rotation while the source was
/// down, and for CRI messages merged from pieces; a new file gets other ids.
#[tokio::test]
async fn lines_read_again_after_a_crash_under_a_rotated_name_keep_their_ids() {
    let dir = Tail::dir();
    let path = dir.path().join("web-1_default_nginx-0.log");
    let cri = |n: u32| format!("{T1} stdout P piece {n} \n{T1} stdout F end {n}\n");
    append(&path, cri(0).as_bytes());
    let mut config = keyed(config(Path::new("/")).with_paths(&path));
    config.format = TailFormat::Cri;
    config.read_from_head = true;
    let tail = Tail::start(dir, config);
    assert_eq!(tail.events(1).await.len(), 1, "acknowledged: checkpointed");
    let acked = cri(0).len() as u64;
    tail.on_disk("the checkpoint written", |e| {
        e.first().is_some_and(|e| e.offset == acked)
    })
    .await;
    // Past the first KiB, never acknowledged.
    let more: String = (1..40).map(cri).collect();
    append(&path, more.as_bytes());
    let (first, _leases) = tail.unacked(39).await;
    let first = positions(&first);
    let stopped = tail.crash().await;
    std::fs::rename(&path, stopped.path("web-1_default_nginx-0.log.1")).unwrap();
    append(&path, cri(99).as_bytes());
    let tail = stopped.start();
    let got = tail.events(40).await;
    let again = positions(&got);
    let (old, new): (Vec<_>, Vec<_>) = again.into_iter().partition(|p| p.0 != "piece 99 end 99");
    assert_eq!(old, first, "the same lines, offsets and ids");
    assert_eq!(old[0].0, "piece 1 end 1");
    assert_ne!(
        id_hash(&new[0].2, 0),
        id_hash(&old[0].2, old[0].1),
        "a new file, new ids"
    );
    let rotated = got.iter().find(|g| g.str("log") == Some("piece 1 end 1"));
    let rotated = rotated.and_then(|g| g.str("path")).unwrap();
    assert!(rotated.ends_with(".log.1"), "{rotated}");
    tail.nothing_more().await;
    tail.stop().await;
}
