//! Events to PutLogEvents inputs: no I/O, so every byte is testable.
//!
//! Each event becomes an item keyed by its log group and stream (rendered from the
//! templates, or their fallbacks), whose bytes are the message: the record as
//! compact JSON without its `remove_keys` fields, or the text of its `log_key`
//! field. An item's size is what CloudWatch Logs counts: its UTF-8 bytes + 26.
//!
//! A message over `max_event_bytes` is never dropped in silence: it is split into
//! pieces at character boundaries, each ending in ` [split i/n]`, or truncated,
//! ending in ` [truncated N bytes]` (so that Logs Insights finds them), or written to
//! the dead-letter output, by `oversize`; each is counted and logged.
//!
//! A batch (one stream, at most the API's events, bytes and 24-hour span, which the
//! kit's batcher enforces) is built into a call with its events sorted by time
//! (stably), keeping which item each event came from, to map `rejectedLogEventsInfo`
//! indices back to items.

use std::sync::Arc;

use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use nagare_core::component::Invalid;
use nagare_core::sink::{Encoder, Event, Item, Items};
use nagare_core::template::Template;
use nagare_core::{EventTime, Map, Value};

use super::config::{
    CloudWatchLogsConfig, Oversize, Templates, group_name_problem, limits, stream_name_problem,
};

/// A log group and stream: what items are batched by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StreamKey {
    /// The log group.
    pub group: String,
    /// The log stream.
    pub stream: String,
    /// A hash of both, computed once: the batcher hashes the key of every item.
    hash: u64,
}

impl StreamKey {
    /// The key of `group` and `stream`.
    pub fn new(group: &str, stream: &str) -> StreamKey {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one((group, stream));
        StreamKey {
            group: group.to_string(),
            stream: stream.to_string(),
            hash,
        }
    }
}

impl std::hash::Hash for StreamKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Equal keys have equal names, hence equal hashes.
        state.write_u64(self.hash);
    }
}

/// How many recent keys a builder keeps.
const RECENT_KEYS: usize = 16;

/// The kit's key: shared, since every item of a stream holds it.
pub type Key = Arc<StreamKey>;

/// Oversize events seen by one builder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OversizeCounts {
    /// Events sent as several pieces.
    pub split: u64,
    /// Events cut.
    pub truncated: u64,
    /// Events written to the dead-letter output.
    pub dead_lettered: u64,
}

/// Turns events into items, and batches into PutLogEvents inputs.
#[derive(Debug)]
pub struct RequestBuilder {
    sink: String,
    templates: Templates,
    log_key: Option<String>,
    remove_keys: Vec<String>,
    max_event_bytes: usize,
    oversize: Oversize,
    /// The keys of recent events, newest last: a chunk's events mostly go to one
    /// stream, or a few; a name among these is known legal, and its key is shared.
    recent: Vec<Key>,
    group: String,
    stream: String,
    counts: OversizeCounts,
    /// The last message's length: room for the next.
    hint: usize,
}

/// One PutLogEvents call, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct PutRequest {
    /// Its log group and stream.
    pub key: Key,
    /// The events, sorted by time.
    pub events: Vec<InputLogEvent>,
    /// For each event, in order, the index of the item it came from.
    pub order: Vec<u32>,
}

impl RequestBuilder {
    /// A builder for a validated config; `sink` names it in logs.
    pub fn new(config: &CloudWatchLogsConfig, sink: &str) -> Result<Self, Invalid> {
        Ok(Self {
            sink: sink.to_string(),
            templates: config.templates()?,
            log_key: config.log_key.clone(),
            remove_keys: config.remove_keys.clone(),
            max_event_bytes: config.max_event_bytes,
            oversize: config.oversize,
            recent: Vec::with_capacity(RECENT_KEYS),
            group: String::new(),
            stream: String::new(),
            counts: OversizeCounts::default(),
            hint: 256,
        })
    }

    /// Oversize events seen so far.
    pub fn counts(&self) -> OversizeCounts {
        self.counts
    }

    /// The group and stream of an event, or why it has none.
    pub fn key_for(&mut self, tag: &str, record: &Map) -> Result<Key, String> {
        let t = &self.templates;
        // Most events go to a stream seen just before: render both names, and take
        // its key if they match one (their names were checked when it was made).
        self.group.clear();
        self.stream.clear();
        if t.group.render_into(tag, record, &mut self.group).is_ok()
            && t.stream.render_into(tag, record, &mut self.stream).is_ok()
            && let Some(key) = self
                .recent
                .iter()
                .rev()
                .find(|k| k.stream == self.stream && k.group == self.group)
        {
            return Ok(key.clone());
        }
        let recent = &self.recent;
        resolve(
            ("log_group_name", &t.group, t.group_fallback.as_ref()),
            (tag, record),
            (group_name_problem, &|name| {
                recent.iter().any(|k| k.group == name)
            }),
            &mut self.group,
        )?;
        resolve(
            ("log_stream_name", &t.stream, t.stream_fallback.as_ref()),
            (tag, record),
            (stream_name_problem, &|name| {
                recent.iter().any(|k| k.stream == name)
            }),
            &mut self.stream,
        )?;
        if let Some(key) = self
            .recent
            .iter()
            .rev()
            .find(|k| k.stream == self.stream && k.group == self.group)
        {
            return Ok(key.clone());
        }
        let key = Arc::new(StreamKey::new(&self.group, &self.stream));
        if self.recent.len() == RECENT_KEYS {
            self.recent.remove(0);
        }
        self.recent.push(key.clone());
        Ok(key)
    }

    /// The message of a record: its `log_key` field's text, or the record as JSON.
    pub fn message(&self, record: &Map, out: &mut Vec<u8>) {
        if let Some(field) = self.log_key.as_deref().and_then(|k| record.get(k)) {
            match field {
                Value::Str(s) => out.extend_from_slice(s.as_bytes()),
                other => out.extend_from_slice(other.to_text().as_bytes()),
            }
            return;
        }
        nagare_core::json::write_map(out, record, &self.remove_keys);
    }

    fn oversized(&mut self, message: Vec<u8>, tag: &str) -> Result<Vec<Vec<u8>>, String> {
        let max = self.max_event_bytes;
        let bytes = message.len();
        // The message is UTF-8: JSON written by serde, or a string's text.
        let text = String::from_utf8_lossy(&message);
        match self.oversize {
            Oversize::Split => {
                let pieces = split(&text, max);
                self.counts.split += 1;
                tracing::warn!(
                    sink = %self.sink, tag, bytes, max_event_bytes = max, pieces = pieces.len(),
                    split_total = self.counts.split,
                    "an event over max_event_bytes was sent as several events, each ending in ` [split i/n]`"
                );
                Ok(pieces.into_iter().map(String::into_bytes).collect())
            }
            Oversize::Truncate => {
                self.counts.truncated += 1;
                tracing::warn!(
                    sink = %self.sink, tag, bytes, max_event_bytes = max,
                    truncated_total = self.counts.truncated,
                    "an event over max_event_bytes was cut, ending in ` [truncated N bytes]`"
                );
                Ok(vec![truncate(&text, max).into_bytes()])
            }
            Oversize::DeadLetter => {
                self.counts.dead_lettered += 1;
                Err(format!(
                    "the message is {bytes} bytes, over max_event_bytes ({max}), and `oversize` is dead_letter"
                ))
            }
        }
    }
}

/// Why a name is illegal, if it is.
type NameCheck = fn(&str) -> Option<String>;

/// Renders `template` into `out`, or its fallback; the reason when neither gives a
/// legal name. A name `known` says was checked already is not checked again.
fn resolve(
    (key, template, fallback): (&str, &Template, Option<&Template>),
    (tag, record): (&str, &Map),
    (problem, known): (NameCheck, &dyn Fn(&str) -> bool),
    out: &mut String,
) -> Result<(), String> {
    let attempt = |t: &Template, out: &mut String| -> Result<(), String> {
        out.clear();
        t.render_into(tag, record, out).map_err(|m| m.to_string())?;
        if known(out) {
            return Ok(());
        }
        problem(out).map_or(Ok(()), Err)
    };
    let Err(first) = attempt(template, out) else {
        return Ok(());
    };
    match fallback {
        None => Err(format!(
            "{key} `{template}`: {first}, and {key}_fallback is not set"
        )),
        Some(f) => attempt(f, out).map_err(|second| {
            format!("{key} `{template}`: {first}; {key}_fallback `{f}`: {second}")
        }),
    }
}

/// The largest index ≤ `at` on a character boundary of `s`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn digits(n: usize) -> usize {
    n.to_string().len()
}

/// `text` in pieces of at most `max` bytes, each ending in ` [split i/n]`, cut at
/// character boundaries.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let mut width = 1;
    loop {
        // ` [split ` + i + `/` + n + `]`, with i and n of `width` digits at most.
        let budget = max.saturating_sub(10 + 2 * width).max(4);
        let mut cuts = Vec::new();
        let mut start = 0;
        while start < text.len() {
            let mut end = floor_boundary(text, start + budget);
            if end == start {
                // A character wider than the budget cannot happen with max ≥ 64.
                end = text[start..]
                    .char_indices()
                    .nth(1)
                    .map_or(text.len(), |(i, _)| start + i);
            }
            cuts.push((start, end));
            start = end;
        }
        if digits(cuts.len()) <= width {
            let n = cuts.len();
            return cuts
                .into_iter()
                .enumerate()
                .map(|(i, (a, b))| format!("{} [split {}/{n}]", &text[a..b], i + 1))
                .collect();
        }
        width += 1;
    }
}

/// `text` cut to at most `max` bytes, ending in ` [truncated N bytes]`.
pub fn truncate(text: &str, max: usize) -> String {
    // Room for the suffix with as many digits as the whole length has.
    let reserve = " [truncated  bytes]".len() + digits(text.len());
    let keep = floor_boundary(text, max.saturating_sub(reserve));
    format!("{} [truncated {} bytes]", &text[..keep], text.len() - keep)
}

/// The event time as CloudWatch's timestamp: milliseconds since the epoch.
pub fn timestamp(time: EventTime) -> i64 {
    time.as_unix_millis()
}

/// An item's bytes as the SDK's message, moved, not copied. They are UTF-8 (JSON
/// from nagare's writer, or a string's text), so the strict check passes.
fn message_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The PutLogEvents input for `items` of `key`: events sorted by time, stably. Each
/// item's message moves into the call (the items are left empty): [`restore`] puts
/// them back when some are to be sent again.
pub fn build(key: &Key, items: &mut [Item<Key>]) -> PutRequest {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    if !items.is_sorted_by_key(|i| timestamp(i.time)) {
        order.sort_by_key(|&i| timestamp(items[i as usize].time));
    }
    let events = order
        .iter()
        .map(|&i| {
            let item = &mut items[i as usize];
            InputLogEvent::builder()
                .timestamp(timestamp(item.time))
                .message(message_text(std::mem::take(&mut item.bytes)))
                .build()
                .expect("an InputLogEvent with its timestamp and message set")
        })
        .collect();
    PutRequest {
        key: key.clone(),
        events,
        order,
    }
}

/// Gives each item of `request` its message back, for another call.
pub fn restore(request: PutRequest, items: &mut [Item<Key>]) {
    for (event, i) in request.events.into_iter().zip(request.order) {
        if let Some(item) = items.get_mut(i as usize) {
            item.bytes = event.message.into_bytes();
        }
    }
}

/// The kit's view: an event is one item (or one per piece of a split message),
/// batched by its group and stream.
impl Encoder for RequestBuilder {
    type Key = Key;

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, Key>) {
        let tag = event.chunk.tag();
        let key = match self.key_for(tag, event.record) {
            Ok(key) => key,
            Err(reason) => return out.refuse(&reason),
        };
        // Some room over the last length: the JSON writer needs up to 66 bytes free
        // to write a string of up to 64.
        let mut message = Vec::with_capacity(self.hint + 96);
        self.message(event.record, &mut message);
        self.hint = message.len();
        if message.is_empty() {
            return out.refuse("the message is empty, and CloudWatch Logs takes no empty event");
        }
        if message.len() <= self.max_event_bytes {
            let size = message.len() + limits::EVENT_OVERHEAD;
            return out.push(key, message, size);
        }
        match self.oversized(message, tag) {
            Ok(pieces) => {
                for piece in pieces {
                    let size = piece.len() + limits::EVENT_OVERHEAD;
                    out.push(key.clone(), piece, size);
                }
            }
            Err(reason) => out.refuse(&reason),
        }
    }

    fn destination(&self, key: &Key) -> Option<(&'static str, String)> {
        Some(("log_stream", format!("{}:{}", key.group, key.stream)))
    }
}
