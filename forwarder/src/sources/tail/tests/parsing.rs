//! What comes out of each line: CRI and docker lines merged, JSON messages merged,
//! raw lines, tags, and messages over `max_line_bytes` cut into flagged pieces.

use super::*;

#[tokio::test]
async fn cri_lines_are_merged_and_json_messages_merged() {
    let (dir, path) = dir_with(pod_file, cri_input().as_bytes());
    let config = head_config(dir.path());
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    check_cri(&got, &path);
    let keys: Vec<&str> = got[1].record.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["stream", "logtag", "log", "kubernetes"]);
    tail.nothing_more().await;
    assert!(
        tail.stop().await.is_empty(),
        "a P piece without its F is not emitted"
    );
}

#[tokio::test]
async fn filters_see_the_same_records() {
    let (dir, path) = dir_with(pod_file, cri_input().as_bytes());
    let config = head_config(dir.path());
    let tail = Tail::start_with(dir, config, BufferConfig::default(), true);
    let mut got = tail.events(3).await;
    for g in &mut got {
        assert_eq!(g.record.remove("seen"), Some(Value::Bool(true)));
    }
    check_cri(&got, &path);
    tail.stop().await;
}

#[tokio::test]
async fn docker_json_file_lines_are_merged() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let line = |log: &str, stream: &str| {
        format!(
            "{{\"log\":{},\"stream\":\"{stream}\",\"time\":\"{T1}\"}}\n",
            serde_json::to_string(log).unwrap()
        )
    };
    let piece = "x".repeat(16 * 1024);
    let input = [
        line(&piece, "stdout"),
        line("tail\n", "stdout"),
        line("{\"msg\":\"from json\"}\n", "stderr"),
        "not json at all\n".to_string(),
    ]
    .concat();
    append(&path, input.as_bytes());
    let mut config = head_config(dir.path());
    config.keep_log = true;
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    assert_eq!(got[0].str("log").map(str::len), Some(16 * 1024 + 4));
    assert_eq!(got[0].str("stream"), Some("stdout"));
    assert_eq!(
        got[0].record.get("logtag"),
        None,
        "docker lines have no logtag"
    );
    assert_eq!(
        got[0].time,
        EventTime::parse_rfc3339(T1.as_bytes()).unwrap()
    );
    assert_eq!(got[1].str("msg"), Some("from json"));
    assert_eq!(
        got[1].str("log"),
        Some("{\"msg\":\"from json\"}"),
        "keep_log"
    );
    assert_eq!(got[1].str("stream"), Some("stderr"));
    assert_eq!(got[2].str("log"), Some("not json at all"));
    assert_eq!(got[2].record.get(MALFORMED_KEY), Some(&Value::Bool(true)));
    assert_eq!(got[2].str("kubernetes.pod_name"), Some("web-1"));
    tail.stop().await;
}

#[tokio::test]
async fn raw_lines_are_messages_timed_when_read() {
    let (dir, path) = dir_with(app_log, b"plain line\n{\"a\":1}\nbad \xff byte\n");
    let mut config = raw_config(dir.path());
    config.merge_json_key = Some("json".into());
    config.tag = "app.*.raw".into();
    let before = EventTime::now();
    let tail = Tail::start(dir, config);
    let got = tail.events(3).await;
    let after = EventTime::now();
    let expected_tag = format!(
        "app.{}.raw",
        path.display().to_string()[1..].replace('/', ".")
    );
    for g in &got {
        assert_eq!(g.tag, expected_tag);
        assert!(before <= g.time && g.time <= after, "read time");
        assert_eq!(g.record.get("stream"), None);
        assert_eq!(g.record.get("kubernetes"), None, "not a container log name");
    }
    assert_eq!(got[0].str("log"), Some("plain line"));
    assert_eq!(got[1].record.get_path("json.a"), Some(&Value::Int(1)));
    assert_eq!(got[1].record.get("log"), None);
    assert_eq!(got[2].str("log"), Some("bad \u{fffd} byte"));
    assert_eq!(
        got[2].record.get(INVALID_UTF8_KEY),
        Some(&Value::Bool(true))
    );
    tail.stop().await;
}

#[tokio::test]
async fn auto_reads_a_file_of_neither_format_as_raw() {
    let dir = Tail::dir();
    append(&pod_file(dir.path()), b"just text\n");
    let mut config = head_config(dir.path());
    config.kubernetes_metadata = false;
    let tail = Tail::start(dir, config);
    let got = tail.events(1).await;
    assert_eq!(got[0].str("log"), Some("just text"));
    assert_eq!(
        got[0].record.get("kubernetes"),
        None,
        "kubernetes_metadata: false"
    );
    assert_eq!(got[0].record.get(MALFORMED_KEY), None);
    tail.stop().await;
}

#[test]
fn tags_follow_fluentd() {
    let path = Path::new(&"/var/log/containers/web-1_default_nginx-ID.log");
    assert_eq!(
        tag_for("kube.*", path),
        "kube.var.log.containers.web-1_default_nginx-ID.log"
    );
    assert_eq!(tag_for("*", Path::new("/a//b/./c")), "a.b.c");
    assert_eq!(tag_for("pre.*.post", Path::new("/x.log")), "pre.x.log.post");
    assert_eq!(tag_for("fixed", path), "fixed");
}

/// A CRI message over `max_line_bytes` (here 100 bytes), whether merged from `P`
/// pieces or written as one physical line, comes out in pieces no longer than the
/// cap, each flagged `_truncated`, that put together give the whole message; the
/// lines around it are untouched.
#[tokio::test]
async fn over_long_messages_come_out_in_flagged_pieces() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let big: String = (0..350)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let mut input = format!("{T1} stdout F before\n");
    let pieces: Vec<&str> = big
        .as_bytes()
        .chunks(40)
        .map(|p| std::str::from_utf8(p).unwrap())
        .collect();
    for (i, piece) in pieces.iter().enumerate() {
        let tag = if i + 1 == pieces.len() { "F" } else { "P" };
        input.push_str(&format!("{T1} stdout {tag} {piece}\n"));
    }
    input.push_str(&format!("{T2} stdout F between\n"));
    input.push_str(&format!("{T2} stdout F {big}\n"));
    input.push_str(&format!("{T2} stdout F after\n"));
    append(&path, input.as_bytes());
    let mut config = head_config(dir.path());
    config.format = TailFormat::Cri;
    config.max_line_bytes = ByteSize(100);
    let tail = Tail::start(dir, config);
    let mut got = Vec::new();
    while got.last().and_then(|g: &Got| g.str("log")) != Some("after") {
        got.extend(tail.events(1).await);
    }
    let logs = logs(&got);
    let between = logs.iter().position(|l| l == "between").unwrap();
    assert_eq!(logs[0], "before");
    for (range, what) in [(1..between, "merged"), (between + 1..got.len() - 1, "long")] {
        let pieces = &got[range];
        assert!(pieces.len() >= 4, "{what}: {pieces:#?}");
        assert!(
            pieces
                .iter()
                .all(|g| g.record.get(TRUNCATED_KEY) == Some(&Value::Bool(true))),
            "{what}: every piece is flagged: {pieces:#?}"
        );
        assert!(pieces.iter().all(|g| g.str("log").unwrap().len() <= 100));
        let joined: String = pieces.iter().map(|g| g.str("log").unwrap()).collect();
        assert_eq!(joined, big, "{what}: nothing is lost");
    }
    for g in [&got[0], &got[between], got.last().unwrap()] {
        assert_eq!(g.record.get(TRUNCATED_KEY), None);
    }
    assert!(tail.metrics.snapshot().lines_truncated >= 8);
    tail.nothing_more().await;
    tail.stop().await;
}
