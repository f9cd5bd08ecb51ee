//! Events to `_bulk` request bodies: no I/O, so every byte is testable.
//!
//! Each event becomes one item: an action line and the document, both NDJSON, in
//! the shapes of Elasticsearch's bulk API:
//!
//! ```text
//! {"index":{"_index":"logstash-2024.01.15","_id":"<chunk id hex>-<position>"}}
//! {"message":"hello","@timestamp":"2024-01-15T10:30:00.123456789Z"}
//!
//! {"create":{"_index":"logs-generic-default","_id":"...","routing":"web-1","pipeline":"p"}}
//! {"message":"hello","@timestamp":"..."}                        data streams: create
//!
//! {"update":{"_index":"app","_id":"42"}}
//! {"doc":{"message":"hello","@timestamp":"..."}}                op_type: update
//! {"doc":{"message":"hello","@timestamp":"..."},"doc_as_upsert":true}   op_type: upsert
//!
//! {"index":{"_index":"app","_type":"_doc","_id":"..."}}        Elasticsearch 6
//! ```
//!
//! The action's keys come in the order `_index`, `_type` (Elasticsearch 6 only, see
//! [`RequestBuilder::set_type_name`]), `_id` (left out with
//! [`RequestBuilder::set_omit_ids`]), `routing` (`routing_key`), `pipeline`.
//!
//! The document is the record without its `remove_keys` fields (with the dots of
//! field names written as `_` where `replace_dots` says: by default the keys of the
//! Kubernetes label and annotation maps), then `@timestamp`
//! from the event time (unless the record has one, not removed; with `mode:
//! data_stream`, one that is not null), then the tag under
//! `tag_key` when `include_tag_key` is set (in place, if the record has that key). A
//! batch's items are concatenated and, with `compress`, gzipped.

use std::sync::Arc;

use bytes::Bytes;
use nagare_core::component::Invalid;
use nagare_core::compression;
use nagare_core::json::{write_map_keyed, write_str, write_u64, write_value, write_value_keyed};
use nagare_core::metrics::Counter;
use nagare_core::sink::{Encoder, Event, Gzipped, Items};
use nagare_core::{ChunkId, EventTime, Map, Value};

use super::config::{ElasticsearchConfig, OpType, ReplaceDots};
use super::index::Mode;
use super::namer::IndexNamer;

/// One event encoded as a bulk item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedItem {
    /// The index (or data stream) it goes to.
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
    /// Each item's length, when the body was gzipped as its batch filled and the
    /// items let their bytes go ([`Gzipped`]): to give them back their bytes.
    pub item_lengths: Option<Vec<u32>>,
}

/// Turns events into bulk items and items into requests.
#[derive(Debug)]
pub struct RequestBuilder {
    index: IndexNamer,
    op_type: OpType,
    id_key: Option<String>,
    routing_key: Option<String>,
    pipeline: Option<String>,
    remove_keys: Vec<String>,
    replace_dots: ReplaceDots,
    tag_key: Option<String>,
    compress: bool,
    suppress_type_name: bool,
    /// `mode: data_stream`: every document has a date in `@timestamp`.
    data_stream: bool,
    type_name: bool,
    omit_ids: bool,
    fallbacks: Counter,
    /// `,"_id":"<hex>-` of the last chunk an id was derived from.
    id_prefix: Option<(ChunkId, [u8; ID_PREFIX])>,
    /// `"@timestamp":"YYYY-MM-DDTHH:MM:SS.` of the last second an event was in.
    stamp: Option<(i64, [u8; STAMP_PREFIX])>,
    scratch: String,
    /// The size of the last item and some: room for the next (the JSON writer needs
    /// up to 66 bytes free to write a string of up to 64).
    hint: usize,
}

impl RequestBuilder {
    /// A builder for a validated config.
    pub fn new(config: &ElasticsearchConfig) -> Result<Self, Invalid> {
        Ok(Self {
            index: IndexNamer::new(config.index_target()?),
            op_type: config.op_type(),
            id_key: config.id_key.clone(),
            routing_key: config.routing_key.clone(),
            pipeline: config.pipeline.clone(),
            remove_keys: config.remove_keys.clone(),
            replace_dots: config.replace_dots,
            tag_key: config.include_tag_key.then(|| config.tag_key.clone()),
            compress: config.compress,
            suppress_type_name: config.suppress_type_name,
            data_stream: config.mode == Mode::DataStream,
            type_name: false,
            omit_ids: false,
            fallbacks: Counter::default(),
            id_prefix: None,
            stamp: None,
            scratch: String::with_capacity(32),
            hint: 512,
        })
    }

    /// Counts events sent to `index_fallback` into `counter` (the sink's
    /// `nagare_elasticsearch_index_fallbacks_total`).
    pub fn count_fallbacks(mut self, counter: Counter) -> Self {
        self.fallbacks = counter;
        self
    }

    /// Whether each action carries `"_type":"_doc"`: for Elasticsearch 6 clusters,
    /// whose bulk API still reads a mapping type; ignored with `suppress_type_name`.
    pub fn set_type_name(&mut self, es6: bool) {
        self.type_name = es6;
    }

    /// Whether actions carry no `_id` at all (OpenSearch Serverless refuses custom
    /// ids): the cluster assigns one, so a chunk sent again duplicates its documents.
    /// `update` and `upsert` need an `_id`: whoever turns this on refuses them.
    pub fn set_omit_ids(&mut self, omit: bool) {
        self.omit_ids = omit;
    }

    /// [`set_type_name`](Self::set_type_name), by value.
    pub fn type_name(mut self, es6: bool) -> Self {
        self.set_type_name(es6);
        self
    }

    /// [`set_omit_ids`](Self::set_omit_ids), by value.
    pub fn omit_ids(mut self, omit: bool) -> Self {
        self.set_omit_ids(omit);
        self
    }

    /// The index (or data stream) of an event, or why it has none.
    pub fn index_for(
        &mut self,
        tag: &str,
        time: EventTime,
        record: &Map,
    ) -> Result<Arc<str>, String> {
        self.index.name(tag, time, record).map(|n| n.index)
    }

    /// Encodes the event at `position` of chunk `chunk`; the reason when its index
    /// cannot be named (it goes to the dead-letter output).
    pub fn encode(
        &mut self,
        chunk: ChunkId,
        position: u32,
        tag: &str,
        time: EventTime,
        record: &Map,
    ) -> Result<EncodedItem, String> {
        // The record's own id, looked up once: `write_id` writes it.
        let own_id = self
            .id_key
            .as_deref()
            .and_then(|key| field(record, key))
            .and_then(id_text);
        if let (OpType::Update | OpType::Upsert, Some(key), None) =
            (self.op_type, &self.id_key, &own_id)
        {
            // A derived id names no document an update could find (and would make a
            // stray one for an upsert).
            return Err(format!(
                "op_type {} needs a document id from the record's `{key}` field (id_key), and this record has {}",
                self.op_type.config_name(),
                match field(record, key) {
                    None => "no such field".to_string(),
                    Some(Value::Str(_)) => "an empty string there".to_string(),
                    Some(v) => format!("a value of type {} there, which cannot be an id", v.kind()),
                }
            ));
        }
        let named = self.index.name(tag, time, record)?;
        if named.fallback {
            self.fallbacks.inc();
        }
        let index = named.index;
        let mut bytes = Vec::with_capacity(self.hint);
        bytes.extend_from_slice(b"{\"");
        bytes.extend_from_slice(self.op_type.as_str().as_bytes());
        bytes.extend_from_slice(b"\":{\"_index\":");
        write_str(&mut bytes, &index);
        if self.type_name && !self.suppress_type_name {
            bytes.extend_from_slice(b",\"_type\":\"_doc\"");
        }
        if !self.omit_ids {
            self.write_id(chunk, position, own_id.as_deref(), &mut bytes);
        }
        if let Some(routing) = self
            .routing_key
            .as_deref()
            .and_then(|key| field(record, key))
            .and_then(id_text)
        {
            bytes.extend_from_slice(b",\"routing\":");
            write_str(&mut bytes, &routing);
        }
        if let Some(pipeline) = &self.pipeline {
            bytes.extend_from_slice(b",\"pipeline\":");
            write_str(&mut bytes, pipeline);
        }
        bytes.extend_from_slice(b"}}\n");
        match self.op_type {
            OpType::Index | OpType::Create => self.write_document(tag, time, record, &mut bytes),
            OpType::Update => {
                bytes.extend_from_slice(b"{\"doc\":");
                self.write_document(tag, time, record, &mut bytes);
                bytes.push(b'}');
            }
            OpType::Upsert => {
                bytes.extend_from_slice(b"{\"doc\":");
                self.write_document(tag, time, record, &mut bytes);
                bytes.extend_from_slice(b",\"doc_as_upsert\":true}");
            }
        }
        bytes.push(b'\n');
        self.hint = bytes.len() + 128;
        Ok(EncodedItem { index, bytes })
    }

    /// `,"_id":...`: the record's `id_key` field when it has one; otherwise (no
    /// `id_key`, or a record without that field) the chunk and position, so a
    /// resent chunk still overwrites its documents.
    fn write_id(
        &mut self,
        chunk: ChunkId,
        position: u32,
        own_id: Option<&str>,
        bytes: &mut Vec<u8>,
    ) {
        if let Some(id) = own_id {
            bytes.extend_from_slice(b",\"_id\":");
            write_str(bytes, id);
            return;
        }
        let prefix = match &self.id_prefix {
            Some((c, prefix)) if *c == chunk => prefix,
            _ => {
                let mut prefix = [0u8; ID_PREFIX];
                let text = format!(",\"_id\":\"{}-", chunk.to_hex());
                prefix.copy_from_slice(text.as_bytes());
                &self.id_prefix.insert((chunk, prefix)).1
            }
        };
        // Fixed-size copies compile to a few moves; the slices of the text they
        // replaced were each a call to `memmove`.
        bytes.extend_from_slice(prefix);
        write_u64(bytes, u64::from(position));
        bytes.push(b'"');
    }

    /// `"@timestamp":"2024-01-15T10:30:00.123456789Z"`: the text up to the second
    /// is formatted once per second (events come in runs of the same second), the
    /// nanoseconds written by hand (in all, 3.7 % of the time building gzipped,
    /// signed requests before, in the request bench's profile).
    fn write_timestamp(&mut self, time: EventTime, out: &mut Vec<u8>) {
        let prefix = match &self.stamp {
            Some((secs, prefix)) if *secs == time.secs() => prefix,
            _ => {
                self.scratch.clear();
                self.scratch.push_str("\"@timestamp\":\"");
                time.write_rfc3339(&mut self.scratch);
                let mut prefix = [0u8; STAMP_PREFIX];
                prefix.copy_from_slice(&self.scratch.as_bytes()[..STAMP_PREFIX]);
                &self.stamp.insert((time.secs(), prefix)).1
            }
        };
        out.extend_from_slice(prefix);
        let mut rest = *b"000000000Z\"";
        let mut nanos = time.subsec_nanos();
        for digit in rest[..9].iter_mut().rev() {
            *digit = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        out.extend_from_slice(&rest);
    }

    fn write_document(&mut self, tag: &str, time: EventTime, record: &Map, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        let mut has_timestamp = false;
        let mut wrote_tag = false;
        for (key, value) in record.iter() {
            if !self.remove_keys.is_empty() && self.remove_keys.iter().any(|k| k == key.as_str()) {
                continue;
            }
            // A data stream needs a date in `@timestamp`: a null one gives way to the
            // event time.
            if self.data_stream && matches!(value, Value::Null) && key.as_str() == "@timestamp" {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            if self.replace_dots == ReplaceDots::All {
                write_key_dedotted(out, key.as_str());
            } else {
                write_str(out, key.as_str());
            }
            out.push(b':');
            if self.tag_key.as_deref() == Some(key.as_str()) {
                write_str(out, tag);
                wrote_tag = true;
            } else {
                has_timestamp |= key.as_str() == "@timestamp";
                match (self.replace_dots, value) {
                    (ReplaceDots::None, _) => write_value(out, value),
                    (ReplaceDots::Labels, Value::Map(k8s)) if key.as_str() == "kubernetes" => {
                        write_kubernetes(out, k8s)
                    }
                    (ReplaceDots::Labels, _) => write_value(out, value),
                    (ReplaceDots::All, _) => write_value_keyed(out, value, write_key_dedotted),
                }
            }
        }
        if !has_timestamp {
            if !first {
                out.push(b',');
            }
            first = false;
            self.write_timestamp(time, out);
        }
        if let Some(tag_key) = &self.tag_key
            && !wrote_tag
        {
            if !first {
                out.push(b',');
            }
            write_str(out, tag_key.as_str());
            out.push(b':');
            write_str(out, tag);
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
/// day's documents together and the dead-letter line names the index). An event
/// whose index cannot be named is refused with the reason.
impl Encoder for RequestBuilder {
    type Key = Arc<str>;

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, Arc<str>>) {
        let (origin, at) = event.origin;
        match self.encode(origin, at, event.chunk.tag(), event.time, event.record) {
            Ok(item) => {
                let size = item.bytes.len();
                out.push(item.index, item.bytes, size);
            }
            Err(reason) => out.refuse(&reason),
        }
    }

    fn destination(&self, index: &Arc<str>) -> Option<(&'static str, String)> {
        Some(("index", index.to_string()))
    }
}

/// The maps under `kubernetes` whose keys are Kubernetes label or annotation keys
/// (`app.kubernetes.io/name`), never paths.
const LABEL_MAPS: [&str; 4] = [
    "labels",
    "annotations",
    "namespace_labels",
    "namespace_annotations",
];

/// The `kubernetes` map with the keys of its label and annotation maps dedotted.
fn write_kubernetes(out: &mut Vec<u8>, k8s: &Map) {
    out.push(b'{');
    for (i, (key, value)) in k8s.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key.as_str());
        out.push(b':');
        match value {
            Value::Map(labels) if LABEL_MAPS.contains(&key.as_str()) => {
                write_map_keyed(out, labels, &[], write_key_dedotted);
            }
            _ => write_value(out, value),
        }
    }
    out.push(b'}');
}

/// A field name as a JSON string, each `.` written as `_`: in place in what was
/// written, with no copy of the name (JSON's escapes never hold a `.`).
fn write_key_dedotted(out: &mut Vec<u8>, key: &str) {
    let start = out.len();
    write_str(out, key);
    if key.contains('.') {
        for byte in &mut out[start..] {
            if *byte == b'.' {
                *byte = b'_';
            }
        }
    }
}

/// A record's field: a top-level key as written (dots included), else a dotted path.
fn field<'a>(record: &'a Map, key: &str) -> Option<&'a Value> {
    record.get(key).or_else(|| record.get_path(key))
}

/// The length of `,"_id":"` and a chunk id's 32 hex digits and `-`.
const ID_PREFIX: usize = 8 + 32 + 1;

/// The length of `"@timestamp":"` and `YYYY-MM-DDTHH:MM:SS.`.
const STAMP_PREFIX: usize = 14 + 20;

/// The gzip level of request bodies: log text compresses well already at the
/// fastest level, and the aggregator's CPU is better spent on throughput.
pub const GZIP_LEVEL: u32 = 1;

/// Concatenates items into a request body, gzipped when `compress`.
pub fn build<'a>(compress: bool, items: impl IntoIterator<Item = &'a [u8]>) -> BulkRequest {
    let items: Vec<&[u8]> = items.into_iter().collect();
    let count = items.len();
    let ndjson_bytes = items.iter().map(|i| i.len()).sum();
    let body = if compress {
        // The items go to the compressor in blocks of 64 KiB, never concatenated
        // into a whole body first.
        compression::gzip_parts(GZIP_LEVEL, ndjson_bytes, items)
    } else {
        // Allocated once at its size: growing a buffer of megabytes by doubling
        // copies it again and again.
        let mut ndjson = Vec::with_capacity(ndjson_bytes);
        for item in items {
            ndjson.extend_from_slice(item);
        }
        ndjson
    };
    BulkRequest {
        body: Bytes::from(body),
        gzip: compress,
        items: count,
        ndjson_bytes,
        item_lengths: None,
    }
}

/// The request of a batch gzipped as its items joined it (the kit's
/// [`Batcher::gzip`](nagare_core::sink::Batcher::gzip), at [`GZIP_LEVEL`]): its
/// body as it is.
pub fn build_gzipped(gzipped: Gzipped) -> BulkRequest {
    BulkRequest {
        items: gzipped.lengths.len(),
        ndjson_bytes: gzipped.raw_len(),
        body: Bytes::from(gzipped.body),
        gzip: true,
        item_lengths: Some(gzipped.lengths),
    }
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
