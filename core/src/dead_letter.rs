//! The dead-letter output: where a sink puts what it could not deliver, so that nothing
//! is silently lost and it can be fixed and replayed (Fluentd's `<secondary>` with
//! `secondary_file`).
//!
//! Two kinds of events end up there: records the destination refused for good (a
//! mapping conflict, a document too large), and the records of chunks that exhausted
//! their retries (`retry_timeout`, `retry_max_times`). Each is one NDJSON line with
//! the reason:
//! `{"time":"2024-01-15T10:30:00.000000000Z","tag":"app","index":"logs","status":400,
//! "reason":"mapper_parsing_exception: failed to parse field [n]","error":{...},
//! "record":{...}}`. `index` is the destination's own word for where the event was
//! going (an Elasticsearch index, a table); `status` and `error` appear when the
//! destination gave them. The file is opened in append mode and every write is
//! fsynced before the sink considers those events done.
//!
//! A third kind has no time or record to show: an entry of a chunk that cannot be
//! decoded (see [`Walk`](crate::chunk::Walk)). Its line says where it was and keeps
//! its bytes, Base64-encoded MessagePack, for whoever repairs it:
//! `{"tag":"app","reason":"undecodable entry 3 at byte 812: an entry's record must
//! be a map at byte 818","chunk":"<id hex>","entry":3,"offset":812,"events":1,
//! "msgpack":"kgGpbm90IGEgbWFw"}`. `events` is how many of the chunk's events the
//! bytes stand for: 1, or, when the rest of the chunk cannot be split into entries,
//! all the events from there to its end.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::chunk::{BadEntry, Chunk};
use crate::component::Invalid;
use crate::retry::Backoff;
use crate::shutdown::Shutdown;
use crate::time::EventTime;
use crate::value::Map;

/// The kinds of dead-letter output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// An append-only NDJSON file.
    #[default]
    File,
}

/// The `dead_letter:` section of a sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// What the dead-letter output is: `file`.
    #[serde(rename = "type", default)]
    pub kind: DeadLetterKind,
    /// The NDJSON file. Default: `<data_dir>/dead-letter/<sink name>.ndjson`.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl DeadLetterConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if let Some(p) = &self.path
            && (p.as_os_str().is_empty() || p.to_string_lossy().ends_with('/'))
        {
            return Err(Invalid::new(
                "path",
                "name a file, like `/var/lib/nagare/dead-letter/es.ndjson`",
            ));
        }
        Ok(())
    }

    /// The dead-letter output of sink `sink` under `data_dir`.
    pub fn open(&self, data_dir: &Path, sink: &str) -> DeadLetter {
        DeadLetter::new(
            self.path
                .clone()
                .unwrap_or_else(|| default_path(data_dir, sink)),
        )
    }
}

/// One event that did not make it.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterEntry<'a> {
    /// The event's tag.
    pub tag: &'a str,
    /// The event's time.
    pub time: EventTime,
    /// The record as the sink received it.
    pub record: &'a Map,
    /// Why it was refused, in words (`mapper_parsing_exception: failed to parse ...`).
    pub reason: &'a str,
    /// The destination's status for it, if it gave one.
    pub status: Option<u16>,
    /// Where it was going: the key to write it under and the value
    /// (`("index", "logstash-2024.01.15")`).
    pub destination: Option<(&'a str, &'a str)>,
    /// The destination's error object, as it sent it.
    pub error: Option<&'a serde_json::Value>,
}

/// Appends the entry as one JSON line.
pub fn encode_entry(entry: &DeadLetterEntry<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"time\":\"");
    let mut time = String::with_capacity(30);
    entry.time.write_rfc3339(&mut time);
    out.extend_from_slice(time.as_bytes());
    out.extend_from_slice(b"\",\"tag\":");
    write_json(out, entry.tag);
    if let Some((key, value)) = entry.destination {
        out.push(b',');
        write_json(out, key);
        out.push(b':');
        write_json(out, value);
    }
    if let Some(status) = entry.status {
        out.extend_from_slice(format!(",\"status\":{status}").as_bytes());
    }
    out.extend_from_slice(b",\"reason\":");
    write_json(out, entry.reason);
    if let Some(error) = entry.error {
        out.extend_from_slice(b",\"error\":");
        write_json(out, error);
    }
    out.extend_from_slice(b",\"record\":");
    write_json(out, entry.record);
    out.extend_from_slice(b"}\n");
}

/// Appends the line of an entry of `chunk` that cannot be decoded: where it is, why,
/// and its bytes. `context`, when given, comes first in the reason (why the chunk
/// was going to the dead-letter output anyway).
pub fn encode_undecodable(
    chunk: &Chunk,
    bad: &BadEntry<'_>,
    context: Option<&str>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"tag\":");
    write_json(out, chunk.tag().as_str());
    out.extend_from_slice(b",\"reason\":");
    match context {
        Some(context) => write_json(out, &format!("{context}; {}", bad.reason())),
        None => write_json(out, &bad.reason()),
    }
    out.extend_from_slice(b",\"chunk\":\"");
    out.extend_from_slice(chunk.id().to_hex().as_bytes());
    out.extend_from_slice(
        format!(
            "\",\"entry\":{},\"offset\":{},\"events\":{},\"msgpack\":\"",
            bad.index,
            bad.offset,
            bad.events(chunk.count())
        )
        .as_bytes(),
    );
    out.extend_from_slice(BASE64.encode(bad.bytes).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// Appends the lines for what of `chunk` did not reach its destination: every entry
/// that cannot be decoded and, when `gave_up` gives a position and a reason, every
/// event from that position on (its undecodable entries with that reason first).
/// Returns how many lines.
pub fn encode_undelivered(chunk: &Chunk, gave_up: Option<(u32, &str)>, out: &mut Vec<u8>) -> u32 {
    let mut n = 0;
    for (position, step) in chunk.walk().enumerate() {
        let given_up = gave_up.filter(|(from, _)| position as u64 >= u64::from(*from));
        match step {
            Ok((time, record)) => {
                let Some((_, reason)) = given_up else {
                    continue;
                };
                encode_entry(
                    &DeadLetterEntry {
                        tag: chunk.tag(),
                        time,
                        record: &record,
                        reason,
                        status: None,
                        destination: None,
                        error: None,
                    },
                    out,
                );
            }
            Err(bad) => encode_undecodable(chunk, &bad, given_up.map(|(_, r)| r), out),
        }
        n += 1;
    }
    n
}

/// Appends every entry of `chunk` as a line with `reason`; returns how many (see
/// [`encode_undelivered`]).
pub fn encode_chunk(chunk: &Chunk, reason: &str, out: &mut Vec<u8>) -> u32 {
    encode_undelivered(chunk, Some((0, reason)), out)
}

/// Serializes `value` as JSON onto `out`. Writing into a `Vec` cannot fail and every
/// value a sink holds serializes, so a failure can only write `null`.
pub fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The default file of a sink: `<data_dir>/dead-letter/<sink name>.ndjson`.
pub fn default_path(data_dir: &Path, sink_name: &str) -> PathBuf {
    data_dir
        .join("dead-letter")
        .join(format!("{}.ndjson", safe_name(sink_name)))
}

/// `name` with every character but letters, digits, `-`, `_` and `.` turned into `_`
/// (and a name of dots alone into `sink`), fit to be one path component.
pub fn safe_name(name: &str) -> String {
    safe_name_or(name, "sink")
}

/// [`safe_name`] with `fallback` for a name that is empty or dots alone.
pub fn safe_name_or(name: &str, fallback: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.chars().all(|c| c == '.') {
        fallback.to_string()
    } else {
        safe
    }
}

/// An append-only NDJSON file, opened on first use. Cloning gives another handle to
/// the same file.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    path: PathBuf,
    file: Arc<Mutex<Option<File>>>,
}

impl DeadLetter {
    /// A writer for `path`; nothing is created until the first write.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Arc::new(Mutex::new(None)),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `lines` (whole NDJSON lines) and fsyncs, creating the file and its
    /// folder if needed. On an error, what was partly written is cut back off. Runs
    /// on the blocking pool.
    pub async fn write(&self, lines: Vec<u8>) -> io::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_blocking(&lines))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
    }

    /// Writes every event of `chunk` with `reason` (see [`encode_chunk`]).
    pub async fn write_chunk(&self, chunk: &Chunk, reason: &str) -> io::Result<()> {
        let mut lines = Vec::with_capacity(chunk.byte_size() * 2);
        encode_chunk(chunk, reason, &mut lines);
        self.write(lines).await
    }

    /// Writes `lines` like [`write`](Self::write), trying again after `backoff`'s
    /// waits until it works: what a sink gives up on must not be dropped, so it waits
    /// for the dead-letter output to be writable (logging why it is not). Returns false
    /// when `abort` is cancelled first.
    pub async fn write_until_done(
        &self,
        lines: Vec<u8>,
        backoff: &Backoff,
        abort: &Shutdown,
        sink: &str,
    ) -> bool {
        let mut failures = 0;
        loop {
            let written = tokio::select! {
                biased;
                _ = abort.cancelled() => return false,
                written = self.write(lines.clone()) => written,
            };
            let Err(e) = written else {
                return true;
            };
            let delay = backoff.delay(failures);
            failures += 1;
            tracing::error!(sink = %sink, path = %self.path.display(), error = %e, retry_in = ?delay, "cannot write to the dead-letter output; trying again (fix the path or free space)");
            tokio::select! {
                biased;
                _ = abort.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// [`write`](Self::write) on the calling thread.
    pub fn write_blocking(&self, lines: &[u8]) -> io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(open_append(&self.path)?);
        }
        let Some(file) = guard.as_mut() else {
            return Err(io::Error::other("dead-letter file not open"));
        };
        let result = append_synced(file, lines);
        if result.is_err() {
            // Reopen next time: the handle may be what is broken.
            *guard = None;
        }
        result
    }
}

/// Opens `path` for appending, creating it and its folder if needed.
pub fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

/// Appends `bytes` to `file` and fsyncs it. On an error, what was partly written is
/// cut back off, so that a retry does not leave half a line.
pub fn append_synced(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    let before = file.metadata()?.len();
    let result = file.write_all(bytes).and_then(|()| file.sync_data());
    if result.is_err() {
        let _ = file.set_len(before);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkBuilder;
    use crate::event::Tag;
    use crate::value::Value;

    #[test]
    fn encodes_one_line_per_entry() {
        let mut record = Map::new();
        record.insert("msg", "quote \" here");
        record.insert("n", Value::Int(1));
        let error = serde_json::json!({"type": "mapper_parsing_exception", "reason": "bad"});
        let mut out = Vec::new();
        encode_entry(
            &DeadLetterEntry {
                tag: "app.web",
                time: EventTime::new(1_705_314_600, 5),
                record: &record,
                reason: "mapper_parsing_exception: bad",
                status: Some(400),
                destination: Some(("index", "logs")),
                error: Some(&error),
            },
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":\"2024-01-15T10:30:00.000000005Z\",\"tag\":\"app.web\",\"index\":\"logs\",\"status\":400,\"reason\":\"mapper_parsing_exception: bad\",\"error\":{\"reason\":\"bad\",\"type\":\"mapper_parsing_exception\"},\"record\":{\"msg\":\"quote \\\" here\",\"n\":1}}\n"
        );
    }

    #[test]
    fn a_whole_chunk_with_its_reason() {
        let mut b = ChunkBuilder::new(Tag::new("app"));
        for i in 0..2 {
            let mut m = Map::new();
            m.insert("i", Value::Int(i));
            b.push(EventTime::new(0, 0), &m);
        }
        let chunk = b.finish().unwrap();
        let mut out = Vec::new();
        assert_eq!(encode_chunk(&chunk, "gave up", &mut out), 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":\"1970-01-01T00:00:00.000000000Z\",\"tag\":\"app\",\"reason\":\"gave up\",\"record\":{\"i\":0}}\n{\"time\":\"1970-01-01T00:00:00.000000000Z\",\"tag\":\"app\",\"reason\":\"gave up\",\"record\":{\"i\":1}}\n"
        );
    }

    #[test]
    fn an_undecodable_entry_keeps_its_place_and_bytes() {
        let mut b = ChunkBuilder::new(Tag::new("app"));
        let mut m = Map::new();
        m.insert("i", Value::Int(0));
        b.push(EventTime::new(0, 0), &m);
        // [1, "not a map"], then a good entry again.
        let bad = [
            0x92, 0x01, 0xa9, b'n', b'o', b't', b' ', b'a', b' ', b'm', b'a', b'p',
        ];
        b.push_encoded(&bad);
        b.push(EventTime::new(0, 0), &m);
        let chunk = b.finish().unwrap();
        let mut out = Vec::new();
        assert_eq!(encode_chunk(&chunk, "gave up", &mut out), 3);
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["record"]["i"], 0);
        assert_eq!(lines[2]["record"]["i"], 0);
        assert_eq!(
            lines[1],
            serde_json::json!({
                "tag": "app",
                "reason": "gave up; undecodable entry 1 at byte 15: an entry's record must be a map at byte 17",
                "chunk": chunk.id().to_hex(),
                "entry": 1,
                "offset": 15,
                "events": 1,
                "msgpack": BASE64.encode(bad),
            })
        );
        // Delivered but for the bad entry: its line alone, with no other reason.
        let mut out = Vec::new();
        assert_eq!(encode_undelivered(&chunk, None, &mut out), 1);
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert!(
            line["reason"]
                .as_str()
                .unwrap()
                .starts_with("undecodable entry 1 ")
        );
        // Given up from the last event on: the bad entry as such, then that event.
        let mut out = Vec::new();
        assert_eq!(
            encode_undelivered(&chunk, Some((2, "gave up")), &mut out),
            2
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("\"reason\":\"undecodable entry 1 "),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("\"reason\":\"gave up\""), "{}", lines[1]);
    }

    #[test]
    fn default_path_is_per_sink_and_safe() {
        let p = default_path(Path::new("/var/lib/nagare"), "es/main");
        assert_eq!(p, Path::new("/var/lib/nagare/dead-letter/es_main.ndjson"));
        let p = default_path(Path::new("/d"), "..");
        assert_eq!(p, Path::new("/d/dead-letter/sink.ndjson"));
        let configured = DeadLetterConfig {
            kind: DeadLetterKind::File,
            path: Some("/x/y.ndjson".into()),
        };
        assert_eq!(
            configured.open(Path::new("/d"), "es").path(),
            Path::new("/x/y.ndjson")
        );
        assert!(
            DeadLetterConfig {
                path: Some("/x/".into()),
                ..DeadLetterConfig::default()
            }
            .validate()
            .is_err()
        );
    }

    #[tokio::test]
    async fn appends_and_creates_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dl.ndjson");
        let dl = DeadLetter::new(path.clone());
        dl.write(b"{\"a\":1}\n".to_vec()).await.unwrap();
        dl.clone().write(b"{\"a\":2}\n".to_vec()).await.unwrap();
        // A new writer appends too.
        DeadLetter::new(path.clone())
            .write(b"{\"a\":3}\n".to_vec())
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n"
        );
    }
}
