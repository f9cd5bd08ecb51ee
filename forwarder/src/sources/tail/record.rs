//! Builds the record of one message.
//!
//! The fields are listed once, in order, by `RecordBuilder::fields`; two writers
//! consume that list. When no filter applies to the tag, the record is written
//! straight into MessagePack from borrowed text (no `Map`, no per-field
//! allocation, the `kubernetes` map copied from bytes encoded once per file). When a
//! filter applies, a [`Map`] is built so that the filter can see and change it.
//!
//! The fields asked for by `path_key`, `offset_key` and `event_id_key` come last; with
//! none of them set, the record is what it was without them, at no extra cost beyond
//! three checks per record.

use std::borrow::Cow;
use std::path::Path;

use nagare_core::EventTime;
use nagare_core::msgpack;
use nagare_core::value::{Map, Value, parse_json_object};
use nagare_parsers::container::{LogLine, decode_text, parse_pod_log_file_name};

use super::config::TailConfig;
use crate::filters::kubernetes::KubernetesMetadata;

/// Set (to `true`) when the message was longer than `max_line_bytes` and this record
/// holds one piece of it.
pub const TRUNCATED_KEY: &str = "_truncated";
/// Set when the line did not have the file's framing and is kept whole as text.
pub const MALFORMED_KEY: &str = "_malformed";
/// Set when the message was not valid UTF-8; invalid bytes became U+FFFD.
pub const INVALID_UTF8_KEY: &str = "_invalid_utf8";

/// Keys the source sets itself. A merged JSON field with one of these names is
/// replaced by the source's value when the source sets it for that record.
pub const RESERVED_KEYS: &[&str] = &[
    "stream",
    "logtag",
    "kubernetes",
    TRUNCATED_KEY,
    MALFORMED_KEY,
    INVALID_UTF8_KEY,
];

/// The per-file part of every record: the Kubernetes names in the file's name, what
/// the API server says about its pod, the file's path and the hash its lines' event
/// ids start with.
#[derive(Debug, Clone, Default)]
pub struct FileFields {
    /// The path the file was found under, for `path_key`.
    path: String,
    /// The hash that starts the event ids of the file's lines, once the file's head
    /// could be read (see [`super::file::event_id_hash`]).
    pub event_id_hash: Option<u64>,
    /// `(namespace, pod, container)` from the file name.
    names: Option<(String, String, String)>,
    /// The file name's four fields.
    base: Map,
    kubernetes: Option<Map>,
    /// `kubernetes`'s value, encoded once.
    kubernetes_msgpack: Vec<u8>,
    /// The pod is annotated `nagare.io/exclude: "true"`: its lines are not shipped.
    pub excluded: bool,
    /// The metadata cache generation the fields were built from.
    generation: Option<u64>,
}

impl FileFields {
    /// The fields for the file at `path`; none when `kubernetes_metadata` is off or
    /// the name is not a container log's.
    pub fn new(path: &Path, kubernetes_metadata: bool) -> Self {
        let text = path.to_string_lossy().into_owned();
        let name = path.file_name().map(|n| n.to_string_lossy());
        let Some(pod) = name
            .as_deref()
            .filter(|_| kubernetes_metadata)
            .and_then(parse_pod_log_file_name)
        else {
            return Self {
                path: text,
                ..Self::default()
            };
        };
        let mut map = Map::with_capacity(4);
        map.push_unchecked("pod_name", Value::from(pod.pod_name));
        map.push_unchecked("namespace_name", Value::from(pod.namespace_name));
        map.push_unchecked("container_name", Value::from(pod.container_name));
        map.push_unchecked("container_id", Value::from(pod.container_id));
        let kubernetes_msgpack = msgpack::encode_map(&map);
        Self {
            path: text,
            event_id_hash: None,
            names: Some((
                pod.namespace_name.to_string(),
                pod.pod_name.to_string(),
                pod.container_name.to_string(),
            )),
            base: map.clone(),
            kubernetes: Some(map),
            kubernetes_msgpack,
            excluded: false,
            generation: None,
        }
    }

    /// Adds what the API server's cache knows about the file's pod, if the cache
    /// changed since the last call. Returns whether the fields changed.
    pub fn refresh(&mut self, api: &KubernetesMetadata) -> bool {
        let generation = api.generation();
        if self.generation == Some(generation) {
            return false;
        }
        self.generation = Some(generation);
        let Some((namespace, pod, container)) = &self.names else {
            return false;
        };
        let Some(lookup) = api.lookup(namespace, pod, container) else {
            return false;
        };
        let mut map = self.base.clone();
        for (k, v) in lookup.fields.iter() {
            map.push_unchecked(k.as_str(), v.clone());
        }
        self.kubernetes_msgpack = msgpack::encode_map(&map);
        self.kubernetes = Some(map);
        self.excluded = lookup.excluded;
        true
    }

    /// `(namespace, pod, container)` from the file name.
    pub fn names(&self) -> Option<(&str, &str, &str)> {
        self.names
            .as_ref()
            .map(|(n, p, c)| (n.as_str(), p.as_str(), c.as_str()))
    }
}

/// One message, decoded and ready to be written as a record.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    time: Option<EventTime>,
    stream: Option<&'static str>,
    logtag: Option<&'static str>,
    text: Cow<'a, str>,
    json: Option<Map>,
    truncated: bool,
    malformed: bool,
    invalid_utf8: bool,
    /// Offset of the message's first line in its file.
    offset: u64,
}

impl Message<'_> {
    /// The event time: the line's own, else `read_time`.
    pub fn time_or(&self, read_time: EventTime) -> EventTime {
        self.time.unwrap_or(read_time)
    }

    /// Whether the message was not valid UTF-8.
    pub fn is_invalid_utf8(&self) -> bool {
        self.invalid_utf8
    }
}

/// One field's value, borrowed.
enum Field<'p> {
    Str(&'p str),
    True,
    Value(&'p Value),
    Map(&'p Map),
    Kubernetes,
    UInt(u64),
    /// The event id of the line at this offset.
    EventId(u64, u64),
}

/// The record-shaping part of the config.
#[derive(Debug, Clone)]
pub struct RecordBuilder {
    /// Key of a message not merged as JSON.
    pub log_key: String,
    /// Merge JSON object messages into the record.
    pub merge_json: bool,
    /// Merge under this key instead of at the top level.
    pub merge_json_key: Option<String>,
    /// Keep the text under `log_key` after a merge.
    pub keep_log: bool,
    /// Add the file's path under this key.
    pub path_key: Option<String>,
    /// Add the offset of the message's first line under this key.
    pub offset_key: Option<String>,
    /// Add the line's event id under this key.
    pub event_id_key: Option<String>,
    /// The node's name, mixed into event ids so that two nodes never give the same
    /// one (empty without `event_id_key`).
    pub node_name: String,
}

impl RecordBuilder {
    /// The record shape `config` asks for.
    pub fn new(config: &TailConfig) -> Self {
        Self {
            log_key: config.log_key.clone(),
            merge_json: config.merge_json,
            merge_json_key: config.merge_json_key.clone(),
            keep_log: config.keep_log,
            path_key: config.path_key.clone(),
            offset_key: config.offset_key.clone(),
            event_id_key: config.event_id_key.clone(),
            node_name: if config.event_id_key.is_some() {
                node_name()
            } else {
                String::new()
            },
        }
    }

    /// Decodes a message: text (lossy when not UTF-8) and, with `merge_json`, its
    /// JSON fields.
    pub fn message<'a>(&self, line: &LogLine<'a>) -> Message<'a> {
        let (text, invalid_utf8) = decode_text(line.message);
        let json = if self.merge_json && !line.malformed {
            parse_json_object(text.as_bytes())
        } else {
            None
        };
        Message {
            time: line.time,
            stream: line.stream.map(|s| s.as_str()),
            logtag: line.logtag,
            text,
            json,
            truncated: line.truncated,
            malformed: line.malformed,
            invalid_utf8,
            offset: line.offset,
        }
    }

    /// The node name event ids are made with, when `event_id_key` is set.
    pub fn event_id_node(&self) -> Option<&str> {
        self.event_id_key.as_ref().map(|_| self.node_name.as_str())
    }

    /// Whether `key` is one of the fields added on request (`path_key`, `offset_key`,
    /// `event_id_key`).
    fn is_source_key(&self, key: &str) -> bool {
        [&self.path_key, &self.offset_key, &self.event_id_key]
            .into_iter()
            .any(|k| k.as_deref() == Some(key))
    }

    /// Calls `f` with each field of the record, in order.
    fn fields<'p>(
        &'p self,
        m: &'p Message<'_>,
        file: &'p FileFields,
        mut f: impl FnMut(&'p str, Field<'p>),
    ) {
        if let Some(stream) = m.stream {
            f("stream", Field::Str(stream));
        }
        if let Some(logtag) = m.logtag {
            f("logtag", Field::Str(logtag));
        }
        match (&m.json, &self.merge_json_key) {
            (Some(json), Some(key)) => f(key, Field::Map(json)),
            (Some(json), None) => {
                for (k, v) in json.iter() {
                    let k = k.as_str();
                    let replaced = (self.keep_log && k == self.log_key)
                        || sets(m, file, k)
                        || self.is_source_key(k);
                    if !replaced {
                        f(k, Field::Value(v));
                    }
                }
            }
            (None, _) => {}
        }
        if m.json.is_none() || self.keep_log {
            f(&self.log_key, Field::Str(&m.text));
        }
        if m.truncated {
            f(TRUNCATED_KEY, Field::True);
        }
        if m.malformed {
            f(MALFORMED_KEY, Field::True);
        }
        if m.invalid_utf8 {
            f(INVALID_UTF8_KEY, Field::True);
        }
        if file.kubernetes.is_some() {
            f("kubernetes", Field::Kubernetes);
        }
        if let Some(key) = &self.path_key {
            f(key, Field::Str(&file.path));
        }
        if let Some(key) = &self.offset_key {
            f(key, Field::UInt(m.offset));
        }
        if let (Some(key), Some(hash)) = (&self.event_id_key, file.event_id_hash) {
            f(key, Field::EventId(hash, m.offset));
        }
    }

    /// Appends the entry `[time, record]` in MessagePack to `out`.
    pub fn write_entry(
        &self,
        time: EventTime,
        m: &Message<'_>,
        file: &FileFields,
        out: &mut Vec<u8>,
    ) {
        let mut count = 0u32;
        self.fields(m, file, |_, _| count += 1);
        out.push(0x92);
        msgpack::write_time(out, time);
        msgpack::write_map_len(out, count);
        self.fields(m, file, |key, value| {
            msgpack::write_str(out, key);
            match value {
                Field::Str(s) => msgpack::write_str(out, s),
                Field::True => out.push(0xc3),
                Field::Value(v) => msgpack::write_value(out, v),
                Field::Map(map) => msgpack::write_map(out, map),
                Field::Kubernetes => out.extend_from_slice(&file.kubernetes_msgpack),
                Field::UInt(n) => msgpack::write_uint(out, n),
                Field::EventId(hash, offset) => {
                    msgpack::write_str(out, EventId::new(hash, offset).as_str())
                }
            }
        });
    }

    /// The record as a map, for filters.
    pub fn to_map(&self, m: &Message<'_>, file: &FileFields) -> Map {
        let mut map = Map::with_capacity(8);
        self.fields(m, file, |key, value| {
            let value = match value {
                Field::Str(s) => Value::from(s),
                Field::True => Value::Bool(true),
                Field::Value(v) => v.clone(),
                Field::Map(json) => Value::Map(json.clone()),
                Field::Kubernetes => file.kubernetes.clone().map(Value::Map).unwrap_or_default(),
                Field::UInt(n) => Value::UInt(n),
                Field::EventId(hash, offset) => Value::from(EventId::new(hash, offset).as_str()),
            };
            map.push_unchecked(key, value);
        });
        map
    }
}

/// A line's event id, `<hash as 16 hex digits>-<offset>`, formatted on the stack.
struct EventId {
    buf: [u8; 40],
    len: usize,
}

impl EventId {
    /// Formats by hand: this runs for every record, and `format!` would cost more
    /// than writing the rest of the field.
    fn new(hash: u64, offset: u64) -> Self {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 40];
        for (i, b) in buf[..16].iter_mut().enumerate() {
            *b = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        }
        buf[16] = b'-';
        // The offset's digits, last first, then moved after the `-`.
        let mut digits = [0u8; 20];
        let (mut n, mut k) = (offset, 20);
        loop {
            k -= 1;
            digits[k] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let len = 17 + (20 - k);
        buf[17..len].copy_from_slice(&digits[k..]);
        Self { buf, len }
    }

    fn as_str(&self) -> &str {
        // Hex digits, `-` and decimal digits: ASCII.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Whether the source itself sets `key` in this record.
fn sets(m: &Message<'_>, file: &FileFields, key: &str) -> bool {
    match key {
        "stream" => m.stream.is_some(),
        "logtag" => m.logtag.is_some(),
        "kubernetes" => file.kubernetes.is_some(),
        TRUNCATED_KEY => m.truncated,
        MALFORMED_KEY => m.malformed,
        INVALID_UTF8_KEY => m.invalid_utf8,
        _ => false,
    }
}

/// The node's name for event ids: `NODE_NAME` (set from the downward API's
/// `spec.nodeName` in the DaemonSet: a pod's own host name changes when the pod is
/// replaced, the node's does not), else the machine's host name.
fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(nagare_core::host::machine_hostname)
}

#[cfg(test)]
mod tests {
    use super::EventId;

    #[test]
    fn event_ids_are_16_hex_digits_a_dash_and_the_offset() {
        for (hash, offset) in [(0, 0), (0xdead_beef, 42), (u64::MAX, u64::MAX)] {
            let id = EventId::new(hash, offset);
            assert_eq!(id.as_str(), format!("{hash:016x}-{offset}"));
        }
    }
}
