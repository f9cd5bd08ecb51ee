//! The secondary output: where a sink puts what it could not deliver, so that nothing
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

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::chunk::Chunk;
use crate::component::Invalid;
use crate::time::EventTime;
use crate::value::Map;

/// The kinds of secondary output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecondaryKind {
    /// An append-only NDJSON file.
    #[default]
    File,
}

/// The `secondary:` section of a sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecondaryConfig {
    /// What the secondary output is: `file`.
    #[serde(rename = "type", default)]
    pub kind: SecondaryKind,
    /// The NDJSON file. Default: `<data_dir>/dead-letter/<sink name>.ndjson`.
    #[serde(default)]
    pub path: Option<PathBuf>,
}

impl SecondaryConfig {
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

    /// The secondary output of sink `sink` under `data_dir`.
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

/// Appends every event of `chunk` as a line with `reason`; returns how many. An
/// undecodable entry ends the chunk (the lines before it are kept).
pub fn encode_chunk(chunk: &Chunk, reason: &str, out: &mut Vec<u8>) -> u32 {
    let mut n = 0;
    for (time, record) in chunk.events().map_while(Result::ok) {
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
        n += 1;
    }
    n
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
        "sink".to_string()
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

    /// [`write`](Self::write) on the calling thread.
    pub fn write_blocking(&self, lines: &[u8]) -> io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            if let Some(dir) = self.path.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            *guard = Some(file);
        }
        let Some(file) = guard.as_mut() else {
            return Err(io::Error::other("dead-letter file not open"));
        };
        let before = file.metadata()?.len();
        let result = file.write_all(lines).and_then(|()| file.sync_data());
        if result.is_err() {
            // Cut a partial write back off, so a retry does not leave half a line;
            // and reopen next time: the handle may be what is broken.
            let _ = file.set_len(before);
            *guard = None;
        }
        result
    }
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
    fn default_path_is_per_sink_and_safe() {
        let p = default_path(Path::new("/var/lib/nagare"), "es/main");
        assert_eq!(p, Path::new("/var/lib/nagare/dead-letter/es_main.ndjson"));
        let p = default_path(Path::new("/d"), "..");
        assert_eq!(p, Path::new("/d/dead-letter/sink.ndjson"));
        let configured = SecondaryConfig {
            kind: SecondaryKind::File,
            path: Some("/x/y.ndjson".into()),
        };
        assert_eq!(
            configured.open(Path::new("/d"), "es").path(),
            Path::new("/x/y.ndjson")
        );
        assert!(
            SecondaryConfig {
                path: Some("/x/".into()),
                ..SecondaryConfig::default()
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
