//! `Chunk`: events of one tag, encoded once as MessagePack `[time, record]` entries.
//!
//! A chunk is what is buffered, compressed, written to disk, sent (its entries *are*
//! the PackedForward payload, its id the `chunk` option that the ack echoes), retried
//! and acknowledged. Its bytes are a `Bytes`, so handing a chunk to two sinks or to a
//! socket never copies them.
//!
//! - `walk.rs`: [`Walk`], decoding entry by entry past the ones that cannot be.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::event::{Event, Tag};
use crate::msgpack::{self, ReadError, Reader};
use crate::receipt::{Delivery, Receipt};
use crate::time::EventTime;
use crate::value::Map;

mod walk;

pub use walk::{BadEntry, Walk};

/// A chunk's 16-byte unique id (Fluentd's `unique_id`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 16]);

impl ChunkId {
    /// A fresh random id.
    pub fn random() -> Self {
        ChunkId(rand::random())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The id as the forward protocol's `chunk` option carries it: Base64 of the
    /// 16 bytes.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    /// The id as lowercase hex, used in file names and document ids.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The id a received forward `chunk` option stands for. Fluentd and nagare send
    /// Base64 of 16 bytes; any other string stands for the first 16 bytes of its
    /// SHA-256, so that a client's resend of the same chunk still maps to the same id
    /// (which keeps destination ids idempotent). The hash must be one whose output is
    /// specified, not `std`'s `DefaultHasher`: ids end up in stored documents, and a
    /// chunk resent after an upgrade must get the ids it had before.
    pub fn from_forward_option(option: &str) -> Self {
        if let Ok(bytes) = BASE64.decode(option.trim())
            && let Ok(id) = <[u8; 16]>::try_from(bytes.as_slice())
        {
            return ChunkId(id);
        }
        let digest = Sha256::digest(option.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&digest[..16]);
        ChunkId(out)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A run of consecutive events of a chunk that arrived together, in a chunk of
/// their own: a buffer that merges small chunks into one keeps where each came from,
/// so that ids derived from (chunk id, position) stay the same when the original
/// chunk is sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The id of the chunk these events arrived in.
    pub id: ChunkId,
    /// How many events.
    pub count: u32,
}

/// Events of one tag, encoded once.
#[derive(Clone)]
pub struct Chunk {
    id: ChunkId,
    tag: Tag,
    entries: Bytes,
    count: u32,
    receipts: Vec<Receipt>,
    /// Set when the chunk was merged from others (see [`Origin`]).
    origins: Option<Arc<[Origin]>>,
    /// When it was made, for the age of the oldest chunk a buffer holds.
    born: std::time::SystemTime,
}

impl Chunk {
    /// A chunk over already encoded entries. `count` must be the number of entries in
    /// `entries` (see [`count_entries`] for bytes from an untrusted peer).
    pub fn new(id: ChunkId, tag: Tag, entries: Bytes, count: u32) -> Self {
        Self {
            id,
            tag,
            entries,
            count,
            receipts: Vec::new(),
            origins: None,
            born: std::time::SystemTime::now(),
        }
    }

    /// When the chunk was made.
    pub fn born(&self) -> std::time::SystemTime {
        self.born
    }

    /// Records that the events are runs of the chunks `origins` name, in order.
    /// Their counts must add up to the chunk's count; a single origin carrying the
    /// chunk's own id says nothing and is not kept.
    pub fn with_origins(mut self, origins: Vec<Origin>) -> Self {
        debug_assert_eq!(
            origins.iter().map(|s| u64::from(s.count)).sum::<u64>(),
            u64::from(self.count)
        );
        self.origins = match origins.as_slice() {
            [] => None,
            [only] if only.id == self.id => None,
            _ => Some(origins.into()),
        };
        self
    }

    /// Gives the chunk another id (a filter that re-encodes a chunk keeps the
    /// original's id, so that ids derived from it survive a resend).
    pub fn with_id(mut self, id: ChunkId) -> Self {
        self.id = id;
        self
    }

    /// The runs of events by the chunk they arrived in: the chunk itself, unless it
    /// was merged from others.
    pub fn origins(&self) -> Vec<Origin> {
        match &self.origins {
            Some(s) => s.to_vec(),
            None => vec![Origin {
                id: self.id,
                count: self.count,
            }],
        }
    }

    /// For each event in order, the id of the chunk it arrived in and its position
    /// there: what idempotent destination ids (Elasticsearch `_id`, BigQuery
    /// `insertId`) derive from.
    pub fn event_ids(&self) -> impl Iterator<Item = (ChunkId, u32)> + '_ {
        let own = [Origin {
            id: self.id,
            count: self.count,
        }];
        let origins: Vec<Origin> = match &self.origins {
            Some(s) => s.to_vec(),
            None => own.to_vec(),
        };
        origins
            .into_iter()
            .flat_map(|s| (0..s.count).map(move |i| (s.id, i)))
    }

    /// Attaches a receipt that reports this chunk's outcome.
    pub fn with_receipt(mut self, receipt: Receipt) -> Self {
        self.receipts.push(receipt);
        self
    }

    /// The chunk's id.
    pub fn id(&self) -> ChunkId {
        self.id
    }

    /// The tag every event in the chunk carries.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    /// The encoded entries: a MessagePack stream of `[time, record]` arrays.
    pub fn entries(&self) -> &Bytes {
        &self.entries
    }

    /// Number of events.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Size of the encoded entries in bytes.
    pub fn byte_size(&self) -> usize {
        self.entries.len()
    }

    /// Decodes the events one by one, stopping at the first entry that cannot be
    /// decoded.
    pub fn events(&self) -> Entries<'_> {
        Entries::new(&self.entries)
    }

    /// Decodes the events one by one, going on past an entry that cannot be decoded
    /// (it comes out located, as a [`BadEntry`]): what sinks deliver from.
    pub fn walk(&self) -> Walk<'_> {
        Walk::new(&self.entries)
    }

    /// The receipts riding on this chunk.
    pub fn receipts(&self) -> &[Receipt] {
        &self.receipts
    }

    /// Detaches the receipts (a durable buffer does this once the chunk is safely
    /// written, which tells the source its data is committed).
    pub fn take_receipts(&mut self) -> Vec<Receipt> {
        std::mem::take(&mut self.receipts)
    }

    /// Moves receipts from another chunk onto this one (a filter that re-encodes a
    /// chunk keeps the original's receipts).
    pub fn adopt_receipts(&mut self, receipts: Vec<Receipt>) {
        self.receipts.extend(receipts);
    }

    /// Marks the outcome on every receipt; the sources learn it once every copy of
    /// the chunk is dropped.
    pub fn mark(&self, outcome: Delivery) {
        for r in &self.receipts {
            r.mark(outcome);
        }
    }
}

impl fmt::Debug for Chunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunk")
            .field("id", &self.id)
            .field("tag", &self.tag)
            .field("count", &self.count)
            .field("bytes", &self.entries.len())
            .finish()
    }
}

/// An iterator over a chunk's `(time, record)` entries that ends after the first
/// one it cannot decode; [`Walk`] goes on past it.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Entries<'a> {
    /// Iterates the entries in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            reader: Reader::new(bytes),
            failed: false,
        }
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<(EventTime, Map), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let r = read_entry(&mut self.reader);
        self.failed = r.is_err();
        Some(r)
    }
}

/// Reads one entry. Accepts `[time, record]` with any time form the forward protocol
/// allows, and Fluent Bit's `[[time, metadata], record]`.
pub fn read_entry(r: &mut Reader<'_>) -> Result<(EventTime, Map), ReadError> {
    let time = read_entry_head(r)?;
    let record = r.read_map()?;
    Ok((time, record))
}

fn read_entry_head(r: &mut Reader<'_>) -> Result<EventTime, ReadError> {
    let start = r.position();
    let n = r.read_array_len()?;
    if n < 2 {
        return Err(ReadError::Invalid {
            what: format!("an entry must be [time, record], found an array of {n}"),
            offset: start,
        });
    }
    let time = if matches!(
        r.peek_marker()?,
        rmp::Marker::FixArray(_) | rmp::Marker::Array16 | rmp::Marker::Array32
    ) {
        // Fluent Bit 2.x: [[time, metadata], record].
        let m = r.read_array_len()?;
        if m == 0 {
            return Err(ReadError::Invalid {
                what: "an entry's [time, metadata] header is empty".into(),
                offset: start,
            });
        }
        let t = r.read_time()?;
        for _ in 1..m {
            r.skip_value()?;
        }
        t
    } else {
        r.read_time()?
    };
    if !matches!(
        r.peek_marker()?,
        rmp::Marker::FixMap(_) | rmp::Marker::Map16 | rmp::Marker::Map32
    ) {
        return Err(ReadError::Invalid {
            what: "an entry's record must be a map".into(),
            offset: r.position(),
        });
    }
    // The record is read (or skipped) by the caller; extra elements after it are not
    // part of the protocol, so they are refused rather than silently dropped.
    if n > 2 {
        return Err(ReadError::Invalid {
            what: format!("an entry must be [time, record], found an array of {n}"),
            offset: start,
        });
    }
    Ok(time)
}

/// Checks that `bytes` is a well-formed stream of entries and counts them, without
/// decoding the records. Used on every chunk received from a peer, so that garbage is
/// refused at the door with the offset of the first bad byte, and every entry that
/// passes can be decoded downstream: a record must be a map, nested at most
/// [`MAX_DEPTH`](crate::msgpack::MAX_DEPTH) levels.
pub fn count_entries(bytes: &[u8]) -> Result<u32, ReadError> {
    let mut r = Reader::new(bytes);
    let mut n = 0u32;
    let mut open = Vec::new();
    while !r.is_empty() {
        // The head checks that the record is a map.
        read_entry_head(&mut r)?;
        r.skip_value_nested(&mut open)?;
        n += 1;
    }
    Ok(n)
}

/// Builds a chunk by appending events of one tag.
#[derive(Debug)]
pub struct ChunkBuilder {
    tag: Tag,
    buf: Vec<u8>,
    count: u32,
    receipts: Vec<Receipt>,
    started: Option<Instant>,
}

impl ChunkBuilder {
    /// An empty builder for `tag`.
    pub fn new(tag: Tag) -> Self {
        Self {
            tag,
            buf: Vec::new(),
            count: 0,
            receipts: Vec::new(),
            started: None,
        }
    }

    /// The tag of the chunk being built.
    pub fn tag(&self) -> &Tag {
        &self.tag
    }

    /// Appends one event.
    pub fn push(&mut self, time: EventTime, record: &Map) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
            self.buf.reserve(4096);
        }
        self.buf.push(0x92);
        msgpack::write_time(&mut self.buf, time);
        msgpack::write_map(&mut self.buf, record);
        self.count += 1;
    }

    /// Appends one already encoded `[time, record]` entry.
    pub fn push_encoded(&mut self, entry: &[u8]) {
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        self.buf.extend_from_slice(entry);
        self.count += 1;
    }

    /// Appends one event.
    pub fn push_event(&mut self, event: &Event) {
        self.push(event.time, &event.record);
    }

    /// Attaches a receipt to the chunk being built.
    pub fn add_receipt(&mut self, receipt: Receipt) {
        self.receipts.push(receipt);
    }

    /// Encoded size so far.
    pub fn byte_size(&self) -> usize {
        self.buf.len()
    }

    /// Events so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Whether nothing was appended since the last `finish`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How long ago the first event of the current chunk was appended.
    pub fn age(&self) -> std::time::Duration {
        self.started.map(|s| s.elapsed()).unwrap_or_default()
    }

    /// Takes the chunk built so far, leaving the builder empty; `None` when empty.
    pub fn finish(&mut self) -> Option<Chunk> {
        if self.count == 0 {
            return None;
        }
        let entries = Bytes::from(std::mem::take(&mut self.buf));
        let mut chunk = Chunk::new(ChunkId::random(), self.tag.clone(), entries, self.count);
        chunk.receipts = std::mem::take(&mut self.receipts);
        self.count = 0;
        self.started = None;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    fn record(i: i64) -> Map {
        let mut m = Map::new();
        m.insert("message", format!("line {i}"));
        m.insert("n", i);
        m
    }

    /// One entry `[time, {"a": {"a": ... 1}}]` whose record nests `levels` maps.
    fn nested_entry(levels: usize) -> Vec<u8> {
        let mut out = Vec::new();
        crate::msgpack::write_array_len(&mut out, 2);
        crate::msgpack::write_int(&mut out, 1_700_000_000);
        for _ in 0..levels {
            crate::msgpack::write_map_len(&mut out, 1);
            crate::msgpack::write_str(&mut out, "a");
        }
        crate::msgpack::write_int(&mut out, 1);
        out
    }

    #[test]
    fn entries_that_pass_the_door_can_be_decoded() {
        use crate::msgpack::MAX_DEPTH;
        // Decoding allows values down to MAX_DEPTH - 1 levels below the record: the
        // check at the door draws the line at the same place.
        for levels in [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 5_000] {
            let bytes = nested_entry(levels);
            let counted = count_entries(&bytes);
            let decoded = read_entry(&mut Reader::new(&bytes));
            assert_eq!(counted.is_ok(), decoded.is_ok(), "{levels} levels");
            assert_eq!(counted.is_ok(), levels < MAX_DEPTH, "{levels} levels");
            if let Err(e) = counted {
                assert!(e.to_string().contains("nested deeper"), "{e}");
            }
        }
        // A record that is not a map is refused at the door too.
        let mut bytes = Vec::new();
        crate::msgpack::write_array_len(&mut bytes, 2);
        crate::msgpack::write_int(&mut bytes, 1_700_000_000);
        crate::msgpack::write_str(&mut bytes, "not a map");
        let e = count_entries(&bytes).unwrap_err();
        assert!(e.to_string().contains("must be a map"), "{e}");
        assert!(read_entry(&mut Reader::new(&bytes)).is_err());
        // Many containers side by side are not deep.
        let mut wide = Vec::new();
        crate::msgpack::write_array_len(&mut wide, 2);
        crate::msgpack::write_int(&mut wide, 1_700_000_000);
        crate::msgpack::write_map_len(&mut wide, 1);
        crate::msgpack::write_str(&mut wide, "list");
        crate::msgpack::write_array_len(&mut wide, 2 * MAX_DEPTH as u32);
        for _ in 0..2 * MAX_DEPTH {
            crate::msgpack::write_map_len(&mut wide, 1);
            crate::msgpack::write_str(&mut wide, "k");
            crate::msgpack::write_int(&mut wide, 1);
        }
        assert_eq!(count_entries(&wide).unwrap(), 1);
        assert!(read_entry(&mut Reader::new(&wide)).is_ok());
        // Entries after a good one still count.
        let mut two = nested_entry(3);
        two.extend(nested_entry(MAX_DEPTH - 1));
        assert_eq!(count_entries(&two).unwrap(), 2);
    }

    #[test]
    fn builds_and_decodes() {
        let mut b = ChunkBuilder::new(Tag::new("app.web"));
        for i in 0..3 {
            b.push(EventTime::new(1_700_000_000 + i, 0), &record(i));
        }
        let chunk = b.finish().unwrap();
        assert!(b.finish().is_none());
        assert_eq!(chunk.count(), 3);
        assert_eq!(count_entries(chunk.entries()).unwrap(), 3);
        let events: Vec<_> = chunk.events().map(Result::unwrap).collect();
        assert_eq!(events[2].0, EventTime::new(1_700_000_002, 0));
        assert_eq!(events[2].1.get("n"), Some(&Value::Int(2)));
    }

    #[test]
    fn accepts_fluent_bit_metadata_entries() {
        // [[time, {}], {"a": 1}]
        let bytes = [
            0x92, 0x92, 0xce, 0x65, 0x53, 0xf1, 0x00, 0x80, 0x81, 0xa1, b'a', 0x01,
        ];
        assert_eq!(count_entries(&bytes).unwrap(), 1);
        let (t, m) = Entries::new(&bytes).next().unwrap().unwrap();
        assert_eq!(t.secs(), 0x6553_f100);
        assert_eq!(m.get("a"), Some(&Value::Int(1)));
    }

    #[test]
    fn refuses_garbage_with_an_offset() {
        let err = count_entries(&[0x92, 0x01, 0x02]).unwrap_err();
        assert_eq!(
            err,
            ReadError::Invalid {
                what: "an entry's record must be a map".into(),
                offset: 2
            }
        );
        let err = count_entries(b"hello").unwrap_err();
        assert!(
            matches!(err, ReadError::Invalid { offset: 0, .. }),
            "{err:?}"
        );
        assert_eq!(count_entries(&[0x92, 0x01]), Err(ReadError::Incomplete));
    }

    #[test]
    fn merged_chunks_keep_where_each_event_came_from() {
        let mut b = ChunkBuilder::new(Tag::new("t"));
        for i in 0..3 {
            b.push(EventTime::new(i, 0), &record(i));
        }
        let plain = b.finish().unwrap();
        let own: Vec<_> = plain.event_ids().collect();
        assert_eq!(own, vec![(plain.id(), 0), (plain.id(), 1), (plain.id(), 2)]);

        let (a, c) = (ChunkId([1; 16]), ChunkId([2; 16]));
        let merged = plain
            .clone()
            .with_origins(vec![Origin { id: a, count: 2 }, Origin { id: c, count: 1 }]);
        assert_eq!(
            merged.event_ids().collect::<Vec<_>>(),
            vec![(a, 0), (a, 1), (c, 0)]
        );
        assert_eq!(merged.origins().len(), 2);
        // A single origin of the chunk's own id is the same as none.
        let same = plain.clone().with_origins(vec![Origin {
            id: plain.id(),
            count: 3,
        }]);
        assert!(same.origins.is_none());
    }

    #[test]
    fn chunk_ids_from_forward_options() {
        let id = ChunkId::random();
        assert_eq!(ChunkId::from_forward_option(&id.to_base64()), id);
        // Fluentd's Base64.encode64 appends a newline.
        assert_eq!(
            ChunkId::from_forward_option(&format!("{}\n", id.to_base64())),
            id
        );
        let a = ChunkId::from_forward_option("not base64 at all");
        assert_eq!(a, ChunkId::from_forward_option("not base64 at all"));
        assert_ne!(a, ChunkId::from_forward_option("something else"));
        assert_eq!(id.to_hex().len(), 32);
    }

    #[test]
    fn chunk_ids_from_other_options_are_pinned() {
        // Ids of options that are not Base64 of 16 bytes must never change (they end
        // up in Elasticsearch `_id`s and BigQuery `insertId`s): each is the first 16
        // bytes of the option's SHA-256, as `printf %s OPTION | sha256sum` prints.
        for (option, want) in [
            ("not base64 at all", "8e9cff4762910e8fccd9830de684d87d"),
            // Fluent Bit's option: 32 hex digits of a checksum of the chunk.
            (
                "9b74c9897bac770ffc029102a200c5de",
                "b04f77f605ec755626a28950534d2454",
            ),
            ("chunk-0001", "e44b6524b2afee0f8d9df44d3f8662e4"),
            ("", "e3b0c44298fc1c149afbf4c8996fb924"),
        ] {
            assert_eq!(
                ChunkId::from_forward_option(option).to_hex(),
                want,
                "{option:?}"
            );
        }
    }
}
