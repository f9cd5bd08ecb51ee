//! The `file` and `stdout` sinks: the lines they write, exactly as documented.

use std::time::Duration;

use nagare_aggregator::sinks::file::{self, FileConfig, Format};
use nagare_aggregator::sinks::stdout::{self, StdoutConfig};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::component::SinkContext;
use nagare_core::receipt::Delivery;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{
    UNDECODABLE_ENTRY, chunk_of, chunk_with_undecodable, sink_context, with_receipt,
};
use nagare_core::{Chunk, EventTime, Map, Value};
use tokio::sync::oneshot;

fn ctx(buffer: &Buffer, data: &std::path::Path) -> (SinkContext, Shutdown) {
    sink_context("out", buffer, data)
}

fn chunk(tag: &str, n: i64) -> (Chunk, oneshot::Receiver<Delivery>) {
    let record = |i: i64| {
        let mut r = Map::new();
        r.insert("msg", format!("line {i}"));
        r.insert("i", Value::Int(i));
        (EventTime::new(1_705_314_600 + i, 500), r)
    };
    with_receipt(chunk_of(tag, (0..n).map(record)))
}

/// An output in memory that the test keeps a handle on after the sink took it.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn envelope(tag: &str, i: i64) -> String {
    format!(
        "{{\"tag\":\"{tag}\",\"time\":\"2024-01-15T10:30:{i:02}.000000500Z\",\"record\":{{\"msg\":\"line {i}\",\"i\":{i}}}}}\n"
    )
}

#[tokio::test]
async fn file_sink_appends_envelope_lines_one_file_per_tag() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("logs");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("app.web.ndjson"), "kept\n").unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let (a, a_rx) = chunk("app.web", 2);
    let (b, b_rx) = chunk("app.db", 1);
    let (c, c_rx) = chunk("app.web", 1);
    let (evil, evil_rx) = chunk("../../evil", 1);
    for ch in [a, b, c, evil] {
        buffer.push(ch).await.unwrap();
    }
    buffer.close();
    let config = FileConfig {
        path: format!("{}/{{tag}}.ndjson", out.display()),
        format: Format::Envelope,
    };
    let (ctx, _abort) = ctx(&buffer, dir.path());
    tokio::time::timeout(Duration::from_secs(10), file::run(config, ctx))
        .await
        .unwrap()
        .unwrap();
    for rx in [a_rx, b_rx, c_rx, evil_rx] {
        assert_eq!(rx.await.unwrap(), Delivery::Delivered);
    }
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    assert_eq!(
        read("app.web.ndjson"),
        format!(
            "kept\n{}{}{}",
            envelope("app.web", 0),
            envelope("app.web", 1),
            envelope("app.web", 0)
        )
    );
    assert_eq!(read("app.db.ndjson"), envelope("app.db", 0));
    // The tag cannot climb out of the folder.
    assert_eq!(read(".._.._evil.ndjson"), envelope("../../evil", 0));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [".._.._evil.ndjson", "app.db.ndjson", "app.web.ndjson"]
    );
}

#[tokio::test]
async fn file_sink_record_format_and_retry_until_the_folder_can_be_made() {
    let dir = tempfile::tempdir().unwrap();
    // The folder's name is taken by a file: writes fail until it is removed.
    let blocker = dir.path().join("sub");
    std::fs::write(&blocker, "not a folder").unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let config: FileConfig = parse_config(&format!(
        "path: {}/sub/all.ndjson\nformat: record\n",
        dir.path().display()
    ));
    let (ctx, _abort) = ctx(&buffer, dir.path());
    let task = tokio::spawn(file::run(config, ctx));
    let (ch, mut rx) = chunk("t", 3);
    buffer.push(ch).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.try_recv().is_err(), "not written yet");
    assert_eq!(buffer.stats().in_flight_chunks, 1);
    std::fs::remove_file(&blocker).unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(delivered, Delivery::Delivered);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("sub/all.ndjson")).unwrap(),
        "{\"msg\":\"line 0\",\"i\":0}\n{\"msg\":\"line 1\",\"i\":1}\n{\"msg\":\"line 2\",\"i\":2}\n"
    );
    buffer.close();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn file_sink_out_of_retries_puts_the_chunk_in_the_dead_letter_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("sub");
    std::fs::write(&blocker, "not a folder").unwrap();
    let buffer = Buffer::new(
        "out",
        &BufferConfig {
            retry_max_times: Some(1),
            retry_wait: nagare_core::config::HumanDuration::millis(20),
            ..BufferConfig::default()
        },
    );
    let config: FileConfig = parse_config(&format!(
        "path: {}/sub/all.ndjson\nformat: record\n",
        dir.path().display()
    ));
    let (ctx, _abort) = ctx(&buffer, dir.path());
    let task = tokio::spawn(file::run(config, ctx));
    let (ch, rx) = chunk("t", 2);
    buffer.push(ch).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Delivery::Failed);
    // The default dead-letter file: <data_dir>/dead-letter/<sink>.ndjson, with the reason.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("dead-letter/out.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["record"]["msg"], "line 1");
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 2 failed attempts") && reason.contains("sub/all.ndjson"),
        "{reason}"
    );
    std::fs::remove_file(&blocker).unwrap();
    let (ch, rx) = chunk("t", 1);
    buffer.push(ch).await.unwrap();
    assert_eq!(rx.await.unwrap(), Delivery::Delivered);
    buffer.close();
    task.await.unwrap().unwrap();
}

/// Parses a component config as the binary does.
fn parse_config<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    nagare_core::config::ConfigDocument::from_text("test.yaml", yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn file_config_checks() {
    let c: FileConfig = parse_config("path: /var/log/nagare/\n");
    assert_eq!(c.validate().unwrap_err().key, "path");
    let c: FileConfig = parse_config("path: /var/log/nagare/{tag}.ndjson\n");
    assert_eq!(c.format, Format::Envelope);
    assert_eq!(
        file::path_for_tag(&c.path, "kube.var.log"),
        std::path::Path::new("/var/log/nagare/kube.var.log.ndjson")
    );
    assert_eq!(
        file::path_for_tag(&c.path, ".."),
        std::path::Path::new("/var/log/nagare/_.ndjson")
    );
    let err =
        nagare_core::config::ConfigDocument::from_text("t.yaml", "path: /x\nformat: xml\n", |_| {
            None
        })
        .unwrap()
        .parse::<FileConfig>()
        .unwrap_err();
    assert!(err.message.starts_with("unknown variant `xml`"), "{err}");
}

#[tokio::test]
async fn stdout_sink_writes_the_same_lines() {
    let dir = tempfile::tempdir().unwrap();
    for (format, want) in [
        (Format::Envelope, format!("{}{}{}", envelope("a", 0), envelope("a", 1), envelope("b", 0))),
        (
            Format::Record,
            "{\"msg\":\"line 0\",\"i\":0}\n{\"msg\":\"line 1\",\"i\":1}\n{\"msg\":\"line 0\",\"i\":0}\n".to_string(),
        ),
    ] {
        let buffer = Buffer::new("out", &BufferConfig::default());
        let (a, a_rx) = chunk("a", 2);
        let (b, b_rx) = chunk("b", 1);
        buffer.push(a).await.unwrap();
        buffer.push(b).await.unwrap();
        buffer.close();
        let (ctx, _abort) = ctx(&buffer, dir.path());
        let out = Shared::default();
        stdout::run_to(StdoutConfig { format }, ctx, out.clone())
            .await
            .unwrap();
        assert_eq!(out.text(), want);
        assert_eq!(a_rx.await.unwrap(), Delivery::Delivered);
        assert_eq!(b_rx.await.unwrap(), Delivery::Delivered);
    }
    let c: StdoutConfig = parse_config("format: record\n");
    assert_eq!(c.format, Format::Record);
}

#[tokio::test]
async fn sinks_return_at_once_on_abort() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let (ctx1, abort) = ctx(&buffer, dir.path());
    let ctx2 = SinkContext {
        abort: abort.clone(),
        ..ctx1.clone()
    };
    let f = tokio::spawn(file::run(
        FileConfig {
            path: format!("{}/x", dir.path().display()),
            format: Format::Record,
        },
        ctx1,
    ));
    let s = tokio::spawn(stdout::run_to(
        StdoutConfig::default(),
        ctx2,
        std::io::sink(),
    ));
    abort.cancel();
    tokio::time::timeout(Duration::from_secs(2), f)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), s)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// Events 0..n of [`chunk`], with an entry that cannot be decoded at position 1.
fn chunk_with_a_bad_entry(tag: &str, n: i64) -> (Chunk, oneshot::Receiver<Delivery>) {
    let record = |i: i64| {
        let mut r = Map::new();
        r.insert("msg", format!("line {i}"));
        r.insert("i", Value::Int(i));
        (EventTime::new(1_705_314_600 + i, 500), r)
    };
    with_receipt(chunk_with_undecodable(tag, (0..n).map(record), 1))
}

/// The dead-letter output's line for the entry of [`chunk_with_a_bad_entry`] that
/// cannot be decoded: where it is, why, and its bytes.
fn assert_set_apart(data: &std::path::Path) {
    let text = std::fs::read_to_string(data.join("dead-letter/out.ndjson")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["tag"], "t");
    assert_eq!(lines[0]["entry"], 1);
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("undecodable entry 1 at byte "),
        "{reason}"
    );
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(lines[0]["msgpack"].as_str().unwrap())
        .unwrap();
    assert_eq!(bytes, UNDECODABLE_ENTRY);
}

#[tokio::test]
async fn file_sink_sets_an_undecodable_entry_apart_and_writes_the_rest_of_its_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let path = dir.path().join("all.ndjson");
    let config: FileConfig = parse_config(&format!("path: {}\nformat: record\n", path.display()));
    let (bad, bad_rx) = chunk_with_a_bad_entry("t", 4);
    let (good, good_rx) = chunk("t", 1);
    buffer.push(bad).await.unwrap();
    buffer.push(good).await.unwrap();
    buffer.close();
    let (ctx, _abort) = ctx(&buffer, dir.path());
    file::run(config, ctx).await.unwrap();
    let want: String = [0, 1, 2, 3, 0]
        .iter()
        .map(|i| format!("{{\"msg\":\"line {i}\",\"i\":{i}}}\n"))
        .collect();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), want);
    assert_set_apart(dir.path());
    // Not all of it reached the file: its source learns so, as for a refused event.
    assert_eq!(bad_rx.await.unwrap(), Delivery::Failed);
    assert_eq!(good_rx.await.unwrap(), Delivery::Delivered);
}

#[tokio::test]
async fn stdout_sink_sets_an_undecodable_entry_apart_and_writes_the_rest_of_its_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::new("out", &BufferConfig::default());
    let (bad, bad_rx) = chunk_with_a_bad_entry("t", 4);
    buffer.push(bad).await.unwrap();
    buffer.close();
    let (ctx, _abort) = ctx(&buffer, dir.path());
    let out = Shared::default();
    stdout::run_to(
        StdoutConfig {
            format: Format::Record,
        },
        ctx,
        out.clone(),
    )
    .await
    .unwrap();
    let want: String = (0..4)
        .map(|i| format!("{{\"msg\":\"line {i}\",\"i\":{i}}}\n"))
        .collect();
    assert_eq!(out.text(), want);
    assert_set_apart(dir.path());
    assert_eq!(bad_rx.await.unwrap(), Delivery::Failed);
}
