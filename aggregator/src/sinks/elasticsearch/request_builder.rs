//! Events to `_bulk` request bodies: no I/O, so every byte is testable.
//!
//! Each event becomes one item: an action line and the document, both NDJSON:
//!
//! ```text
//! {"index":{"_index":"logstash-2024.01.15","_id":"<chunk id hex>-<position>"}}
//! {"message":"hello","@timestamp":"2024-01-15T10:30:00.123456789Z"}
//! ```
//!
//! The document is the record without its `remove_keys` fields, then `@timestamp`
//! from the event time (unless the record has one, not removed), then the tag under
//! `tag_key` when `include_tag_key` is set (in place, if the record has that key). A
//! batch's items are concatenated and, with `compress`, gzipped.

use std::sync::Arc;

use bytes::Bytes;
use nagare_core::component::Invalid;
use nagare_core::compression::{self, Compression};
use nagare_core::sink::{Encoder, Event, Items};
use nagare_core::{ChunkId, EventTime, Map, Value};

use super::config::{ElasticsearchConfig, IndexTarget, OpType};
use nagare_core::dead_letter::write_json;

/// One event encoded as a bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedItem {
    /// The index it goes to.
    pub index: Arc<str>,
    /// The action line and the document, each ending in a newline.
    pub bytes: Vec<u8>,
}

/// A `_bulk` request body, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequest {
    /// The body (gzipped when `gzip`).
    pub body: Bytes,
    /// Whether the body is gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Items in the request.
    pub items: usize,
    /// Bytes of NDJSON before compression.
    pub ndjson_bytes: usize,
}

/// Turns events into bulk items and items into requests.
#[derive(Debug)]
pub struct RequestBuilder {
    index: IndexNamer,
    op_type: OpType,
    id_key: Option<String>,
    remove_keys: Vec<String>,
    tag_key: Option<String>,
    compress: bool,
    /// No `_id` in actions (OpenSearch Serverless refuses them).
    omit_ids: bool,
    scratch: String,
}

impl RequestBuilder {
    /// A builder for a validated config.
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, Invalid> {
        Ok(Self {
            index: IndexNamer::new(config.index_target()?),
            op_type: config.op_type,
            id_key: config.id_key.clone(),
            remove_keys: config.remove_keys.clone(),
            tag_key: config.include_tag_key.then(|| config.tag_key.clone()),
            compress: config.compress,
            omit_ids: false,
            scratch: String::with_capacity(32),
        })
    }

    /// Leaves `_id` out of every action, so the destination makes the ids: for
    /// OpenSearch Serverless time-series collections, which refuse a custom `_id`.
    /// A chunk sent again then duplicates its documents.
    pub fn omit_ids(mut self, omit: bool) -> Self {
        self.omit_ids = omit;
        self
    }

    /// The index an event of `time` goes to.
    pub fn index_for(&mut self, time: EventTime) -> Arc<str> {
        self.index.name(time)
    }

    /// Encodes the event at `position` of chunk `chunk`.
    pub fn encode(
        &mut self,
        chunk: ChunkId,
        position: u32,
        tag: &str,
        time: EventTime,
        record: &Map,
    ) -> EncodedItem {
        let index = self.index.name(time);
        let mut bytes = Vec::with_capacity(128 + record.len() * 32);
        bytes.extend_from_slice(b"{\"");
        bytes.extend_from_slice(self.op_type.as_str().as_bytes());
        bytes.extend_from_slice(b"\":{\"_index\":");
        write_json(&mut bytes, &*index);
        // The record's `id_key` field when it has one; otherwise (no `id_key`, or a
        // record without that field) the chunk and position, so a resent chunk
        // still overwrites its documents.
        let own_id = self
            .id_key
            .as_deref()
            .and_then(|key| record.get(key).or_else(|| record.get_path(key)))
            .and_then(id_text);
        match own_id {
            _ if self.omit_ids => {}
            Some(id) => {
                bytes.extend_from_slice(b",\"_id\":");
                write_json(&mut bytes, &id);
            }
            None => {
                bytes.extend_from_slice(b",\"_id\":\"");
                bytes.extend_from_slice(chunk.to_hex().as_bytes());
                bytes.extend_from_slice(format!("-{position}\"").as_bytes());
            }
        }
        bytes.extend_from_slice(b"}}\n");
        self.write_document(tag, time, record, &mut bytes);
        bytes.push(b'\n');
        EncodedItem { index, bytes }
    }

    fn write_document(&mut self, tag: &str, time: EventTime, record: &Map, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        let mut has_timestamp = false;
        let mut wrote_tag = false;
        for (key, value) in record.iter() {
            if self.remove_keys.iter().any(|k| k == key.as_str()) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_json(out, key.as_str());
            out.push(b':');
            if self.tag_key.as_deref() == Some(key.as_str()) {
                write_json(out, tag);
                wrote_tag = true;
            } else {
                has_timestamp |= key.as_str() == "@timestamp";
                write_json(out, value);
            }
        }
        if !has_timestamp {
            if !first {
                out.push(b',');
            }
            first = false;
            self.scratch.clear();
            time.write_rfc3339(&mut self.scratch);
            out.extend_from_slice(b"\"@timestamp\":\"");
            out.extend_from_slice(self.scratch.as_bytes());
            out.push(b'"');
        }
        if let Some(tag_key) = &self.tag_key
            && !wrote_tag
        {
            if !first {
                out.push(b',');
            }
            write_json(out, tag_key.as_str());
            out.push(b':');
            write_json(out, tag);
        }
        out.push(b'}');
    }

    /// Concatenates items into a request body, gzipped if configured.
    pub fn build<'a>(&self, items: impl IntoIterator<Item = &'a [u8]>) -> BulkRequest {
        build(self.compress, items)
    }
}

/// The kit's view: an event is one item, batched by its index (each request goes
/// to the `_bulk` endpoint, so indices could share one; batching per index keeps a
/// day's documents together and the dead-letter line names the index).
impl Encoder for RequestBuilder {
    type Key = Arc<str>;

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, Arc<str>>) {
        let (origin, at) = event.origin;
        let item = self.encode(origin, at, event.chunk.tag(), event.time, event.record);
        let size = item.bytes.len();
        out.push(item.index, item.bytes, size);
    }

    fn destination(&self, index: &Arc<str>) -> Option<(&'static str, String)> {
        Some(("index", index.to_string()))
    }
}

/// Concatenates items into a request body, gzipped when `compress`.
pub fn build<'a>(compress: bool, items: impl IntoIterator<Item = &'a [u8]>) -> BulkRequest {
    let mut ndjson = Vec::new();
    let mut count = 0;
    for item in items {
        ndjson.extend_from_slice(item);
        count += 1;
    }
    let ndjson_bytes = ndjson.len();
    let body = if compress { gzip(&ndjson) } else { ndjson };
    BulkRequest {
        body: Bytes::from(body),
        gzip: compress,
        items: count,
        ndjson_bytes,
    }
}

/// Gzips `data`. Level 1: log text compresses well already at the fastest level,
/// and the aggregator's CPU is better spent on throughput.
fn gzip(data: &[u8]) -> Vec<u8> {
    // Compressing into memory cannot fail.
    compression::compress(Compression::Gzip, 1, data)
        .map(|packed| packed.into_owned())
        .unwrap_or_default()
}

/// The `_id` text of an `id_key` value: strings as they are, numbers and booleans
/// printed; anything else gives none (the derived id is used).
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) if !s.is_empty() => Some(s.to_string()),
        Value::Int(_) | Value::UInt(_) | Value::Float(_) | Value::Bool(_) => Some(v.to_text()),
        _ => None,
    }
}

/// Names indices, caching the name of the current period: a chunk's events usually
/// share a day, and formatting a date per event would cost more than the rest of the
/// encoding.
#[derive(Debug)]
struct IndexNamer {
    target: IndexTarget,
    /// Seconds over which the name cannot change (a day for a date-only format).
    period: i64,
    cached: Option<(i64, Arc<str>)>,
}

impl IndexNamer {
    fn new(target: IndexTarget) -> Self {
        let period = match &target {
            IndexTarget::Fixed(_) => i64::MAX,
            IndexTarget::Daily { format, .. } => format_period(format),
        };
        Self {
            target,
            period,
            cached: None,
        }
    }

    fn name(&mut self, time: EventTime) -> Arc<str> {
        let key = time.secs().div_euclid(self.period);
        if let Some((k, name)) = &self.cached
            && *k == key
        {
            return name.clone();
        }
        let name: Arc<str> = match &self.target {
            IndexTarget::Fixed(index) => Arc::from(index.as_str()),
            IndexTarget::Daily { prefix, format } => {
                let ts = jiff::Timestamp::new(time.secs(), time.subsec_nanos() as i32)
                    .unwrap_or_default();
                // The format was checked by `validate`.
                let date = jiff::fmt::strtime::format(format, ts).unwrap_or_default();
                Arc::from(format!("{prefix}-{date}"))
            }
        };
        self.cached = Some((key, name.clone()));
        name
    }
}

/// The longest period (in seconds, aligned on UTC) over which `format` prints the same
/// text: a day when it has only date conversions, an hour or a minute when it has
/// those, a second otherwise.
pub fn format_period(format: &str) -> i64 {
    let mut period = 86_400;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        // Skip flags, width and modifiers up to the conversion letter.
        let conv = chars
            .by_ref()
            .find(|c| !matches!(c, '-' | '_' | '0'..='9' | '^' | '#' | ':' | 'E' | 'O'));
        let p = match conv {
            Some('%' | 'n' | 't') => 86_400,
            Some(
                'Y' | 'y' | 'C' | 'm' | 'd' | 'e' | 'j' | 'b' | 'B' | 'h' | 'a' | 'A' | 'u' | 'w'
                | 'U' | 'W' | 'V' | 'G' | 'g' | 'D' | 'F' | 'x',
            ) => 86_400,
            Some('H' | 'k' | 'I' | 'l' | 'p' | 'P') => 3_600,
            Some('M' | 'R') => 60,
            _ => 1,
        };
        period = period.min(p);
    }
    period
}
