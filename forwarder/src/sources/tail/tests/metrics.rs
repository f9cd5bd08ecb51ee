//! The counters of what the source read and flagged.

use super::*;

#[tokio::test]
async fn metrics_count_what_was_read_and_flagged() {
    let dir = Tail::dir();
    let path = pod_file(dir.path());
    let long = "y".repeat(60);
    let input = [
        format!("{T1} stdout F ok"),
        "not a cri line".to_string(),
        format!("{T1} stdout F {long}"),
        format!("{T1} stderr F bad \u{0}"),
    ]
    .join("\n")
        + "\n";
    let mut bytes = input.into_bytes();
    bytes.extend_from_slice(format!("{T1} stdout F ").as_bytes());
    bytes.extend_from_slice(b"\xff\n");
    let n = bytes.len() as u64;
    let mut config = head_config(dir.path());
    config.format = TailFormat::Cri;
    config.max_line_bytes = ByteSize(64);
    append(&path, &bytes);
    let tail = Tail::start(dir, config);
    let got = tail.events(6).await;
    assert_eq!(got.len(), 6, "{got:#?}");
    let m = tail.metrics.snapshot();
    assert_eq!(m.open_files, 1);
    assert_eq!(m.bytes_read, n);
    assert_eq!(m.lines_read, 6, "the long line is read in two pieces");
    assert_eq!(m.records_emitted, 6);
    assert_eq!(m.lines_malformed, 1);
    assert_eq!(m.lines_truncated, 2);
    assert_eq!(m.lines_invalid_utf8, 1);
    assert_eq!(m.files.len(), 1);
    assert_eq!(m.files[0].read_offset, n);
    assert_eq!(m.files[0].lines_read, 6);
    tail.stop().await;
}

#[tokio::test]
async fn invalid_utf8_is_counted() {
    let dir = Tail::dir();
    append(&dir.path().join("app.log"), b"fine\nbad \xff\xfe\n");
    let config = raw_config(dir.path());
    let tail = Tail::start(dir, config);
    let got = tail.events(2).await;
    assert_eq!(
        got[1].record.get(INVALID_UTF8_KEY),
        Some(&Value::Bool(true))
    );
    assert_eq!(tail.metrics.snapshot().lines_invalid_utf8, 1);
    tail.stop().await;
}
