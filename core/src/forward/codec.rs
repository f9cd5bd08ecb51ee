//! Forward Protocol v1 frames.
//!
//! ```text
//! Message:                 [tag, time, record, option?]
//! Forward:                 [tag, [[time, record], ...], option?]
//! PackedForward:           [tag, bin|str <entries>, option?]
//! CompressedPackedForward: [tag, bin <gzip entries>, {"compressed": "gzip", ...}]
//! Heartbeat:               nil
//! Ack (server -> client):  {"ack": <chunk>}
//! ```
//!
//! Whatever the mode, a decoded frame carries its events as one normalized entry
//! stream (back-to-back `[time, record]`), which is exactly a [`Chunk`]'s payload.
//! `compressed: "zstd"` is accepted as an extension between nagare peers; any other
//! `compressed` value (Node's fluent-logger sends `"text"`) means "not compressed".
//!
//! [`Chunk`]: crate::chunk::Chunk

use std::fmt;

use bytes::Bytes;
use rmp::Marker;
use thiserror::Error;

use crate::chunk::count_entries;
use crate::compression::{self, Compression, DecompressError};
use crate::msgpack::{self, ReadError, Reader};
use crate::time::EventTime;
use crate::value::Map;

/// How the entries of a frame were carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One event.
    Message,
    /// An array of entries.
    Forward,
    /// A binary (or string) stream of entries.
    PackedForward,
    /// A compressed binary stream of entries.
    CompressedPackedForward,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Message => "Message",
            Mode::Forward => "Forward",
            Mode::PackedForward => "PackedForward",
            Mode::CompressedPackedForward => "CompressedPackedForward",
        })
    }
}

/// The option map of an events frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `size`: what the client says the event count is (informational only: Node's
    /// fluent-logger sends a byte count here).
    pub size: Option<u64>,
    /// `chunk`: the id to echo in the ack. Present means the client waits for one.
    pub chunk: Option<String>,
    /// `compressed`: the compression of the entries, if recognized (`None` when
    /// absent or not a compression).
    pub compressed: Compression,
}

/// A decoded events frame.
#[derive(Debug, Clone, PartialEq)]
pub struct EventsMessage {
    /// The tag of every event in the frame.
    pub tag: String,
    /// How the events were carried.
    pub mode: Mode,
    /// The events as back-to-back `[time, record]` entries (decompressed).
    pub entries: Bytes,
    /// Number of entries, counted (never taken from the `size` option).
    pub count: u32,
    /// The frame's options.
    pub options: Options,
}

/// One decoded frame from a client.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `nil`: a client's heartbeat.
    Heartbeat,
    /// One or more events.
    Events(EventsMessage),
}

/// Limits that protect a server from hostile or broken peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest frame accepted, in bytes as received.
    pub max_frame_bytes: usize,
    /// Largest decompressed payload accepted (guards against compression bombs).
    pub max_decompressed_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 32 << 20,
            max_decompressed_bytes: 128 << 20,
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is larger than allowed.
    #[error("frame of at least {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Bytes the frame has or announces.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The bytes are not a valid frame.
    #[error("not a valid forward protocol frame: {what} (at byte {offset})")]
    Invalid {
        /// What was wrong.
        what: String,
        /// Where in the frame.
        offset: usize,
    },
    /// The compressed payload could not be decompressed.
    #[error("cannot decompress the {compression} entries: {reason}")]
    Decompress {
        /// The announced compression.
        compression: &'static str,
        /// Why.
        reason: String,
    },
}

fn invalid(what: impl Into<String>, offset: usize) -> DecodeError {
    DecodeError::Invalid {
        what: what.into(),
        offset,
    }
}

fn from_read(e: ReadError, base: usize, context: &str) -> DecodeError {
    match e {
        ReadError::Incomplete => invalid(format!("{context}: truncated"), base),
        ReadError::Invalid { what, offset } => invalid(format!("{context}: {what}"), base + offset),
    }
}

/// Whether a whole frame sits at the start of `buf`: `Ok(Some(len))` if so,
/// `Ok(None)` if more bytes are needed. Fails as soon as the frame is known to be
/// larger than the limit (even if only its header has arrived) or is not MessagePack.
pub fn frame_len(buf: &[u8], limits: &DecodeLimits) -> Result<Option<usize>, DecodeError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let mut r = Reader::new(buf);
    match r.skip_value() {
        Ok(frame) if frame.len() > limits.max_frame_bytes => Err(DecodeError::TooLarge {
            size: frame.len(),
            limit: limits.max_frame_bytes,
        }),
        Ok(frame) => Ok(Some(frame.len())),
        Err(ReadError::Incomplete) => {
            let need = r.needed().max(buf.len() + 1);
            if need > limits.max_frame_bytes {
                Err(DecodeError::TooLarge {
                    size: need,
                    limit: limits.max_frame_bytes,
                })
            } else {
                Ok(None)
            }
        }
        Err(ReadError::Invalid { what, offset }) => Err(invalid(what, offset)),
    }
}

/// Decodes one complete frame (as delimited by [`frame_len`]).
pub fn decode_frame(frame: Bytes, limits: &DecodeLimits) -> Result<Frame, DecodeError> {
    let mut r = Reader::new(&frame);
    if r.peek_is_nil() {
        return Ok(Frame::Heartbeat);
    }
    let n = r
        .read_array_len()
        .map_err(|e| from_read(e, 0, "a frame must be an array"))?;
    if !(2..=4).contains(&n) {
        return Err(invalid(
            format!("a frame is an array of 2 to 4 elements, this one has {n}"),
            0,
        ));
    }
    let tag = r
        .read_str()
        .map_err(|e| from_read(e, 0, "the first element must be the tag"))?
        .to_string();
    let second_at = r.position();
    let marker = r
        .peek_marker()
        .map_err(|e| from_read(e, second_at, "missing entries"))?;
    match marker {
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let m = r
                .read_array_len()
                .map_err(|e| from_read(e, second_at, "entries"))?;
            let start = r.position();
            for _ in 0..m {
                r.skip_value()
                    .map_err(|e| from_read(e, r.position(), "entries"))?;
            }
            let end = r.position();
            let options = read_options(&mut r, n - 2)?;
            let entries = frame.slice(start..end);
            let count =
                count_entries(&entries).map_err(|e| from_read(e, start, "Forward entries"))?;
            if count as usize != m {
                return Err(invalid("Forward entries do not add up", start));
            }
            Ok(Frame::Events(EventsMessage {
                tag,
                mode: Mode::Forward,
                entries,
                count,
                options,
            }))
        }
        Marker::FixStr(_)
        | Marker::Str8
        | Marker::Str16
        | Marker::Str32
        | Marker::Bin8
        | Marker::Bin16
        | Marker::Bin32 => {
            let payload = r
                .read_str_or_bin()
                .map_err(|e| from_read(e, second_at, "entries"))?;
            let start = payload.as_ptr() as usize - frame.as_ptr() as usize;
            let end = start + payload.len();
            let options = read_options(&mut r, n - 2)?;
            let (mode, entries) = match options.compressed {
                Compression::None => (Mode::PackedForward, frame.slice(start..end)),
                c => (
                    Mode::CompressedPackedForward,
                    decompress(c, &frame[start..end], limits.max_decompressed_bytes)?,
                ),
            };
            let count =
                count_entries(&entries).map_err(|e| from_read(e, 0, &format!("{mode} entries")))?;
            Ok(Frame::Events(EventsMessage {
                tag,
                mode,
                entries,
                count,
                options,
            }))
        }
        _ => {
            // Message mode: [tag, time, record, option?].
            if n < 3 {
                return Err(invalid(
                    "a Message frame needs a time and a record",
                    second_at,
                ));
            }
            let time_bytes_start = r.position();
            r.read_time().map_err(|e| from_read(e, 0, "Message time"))?;
            let time_end = r.position();
            let rec_start = r.position();
            if !matches!(
                r.peek_marker(),
                Ok(Marker::FixMap(_) | Marker::Map16 | Marker::Map32)
            ) {
                return Err(invalid("a Message record must be a map", rec_start));
            }
            r.skip_value_nested(&mut Vec::new())
                .map_err(|e| from_read(e, rec_start, "Message record"))?;
            let rec_end = r.position();
            let options = read_options(&mut r, n - 3)?;
            let mut entry = Vec::with_capacity(1 + rec_end - time_bytes_start);
            entry.push(0x92);
            entry.extend_from_slice(&frame[time_bytes_start..time_end]);
            entry.extend_from_slice(&frame[rec_start..rec_end]);
            Ok(Frame::Events(EventsMessage {
                tag,
                mode: Mode::Message,
                entries: Bytes::from(entry),
                count: 1,
                options,
            }))
        }
    }
}

fn read_options(r: &mut Reader<'_>, remaining: usize) -> Result<Options, DecodeError> {
    let mut options = Options::default();
    if remaining == 0 {
        return Ok(options);
    }
    let at = r.position();
    if r.peek_is_nil() {
        r.skip_value().map_err(|e| from_read(e, at, "option"))?;
        return Ok(options);
    }
    let n = r
        .read_map_len()
        .map_err(|e| from_read(e, at, "option must be a map"))?;
    for _ in 0..n {
        let key_at = r.position();
        let key = r
            .read_str_or_bin()
            .map_err(|e| from_read(e, key_at, "option key"))?;
        let value_at = r.position();
        match key {
            b"size" => {
                options.size = match r.peek_marker() {
                    Ok(Marker::Null) => {
                        r.skip_value()
                            .map_err(|e| from_read(e, value_at, "option size"))?;
                        None
                    }
                    _ => {
                        let v = r
                            .read_int()
                            .map_err(|e| from_read(e, value_at, "option size"))?;
                        u64::try_from(v).ok()
                    }
                }
            }
            b"chunk" => {
                let v = r
                    .read_str()
                    .map_err(|e| from_read(e, value_at, "option chunk"))?;
                options.chunk = Some(v.to_string());
            }
            b"compressed" => {
                let v = r
                    .read_str_or_bin()
                    .map_err(|e| from_read(e, value_at, "option compressed"))?;
                options.compressed = match v {
                    b"gzip" => Compression::Gzip,
                    b"zstd" => Compression::Zstd,
                    _ => Compression::None,
                };
            }
            _ => {
                r.skip_value()
                    .map_err(|e| from_read(e, value_at, "option value"))?;
            }
        }
    }
    if !r.is_empty() {
        return Err(invalid(
            "unexpected bytes after the option map",
            r.position(),
        ));
    }
    Ok(options)
}

fn decompress(c: Compression, data: &[u8], limit: usize) -> Result<Bytes, DecodeError> {
    match compression::decompress(c, data, limit) {
        Ok(out) => Ok(Bytes::from(out)),
        // It inflated past the limit: at least one byte more.
        Err(DecompressError::TooLarge { limit }) => Err(DecodeError::TooLarge {
            size: limit + 1,
            limit,
        }),
        Err(DecompressError::Broken(e)) => Err(DecodeError::Decompress {
            compression: c.as_str(),
            reason: e.to_string(),
        }),
    }
}

/// Encodes the ack a server sends for a frame with a `chunk` option.
pub fn encode_ack(chunk: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + chunk.len());
    msgpack::write_map_len(&mut out, 1);
    msgpack::write_str(&mut out, "ack");
    msgpack::write_str(&mut out, chunk);
    out
}

/// Decodes an ack at the start of `buf`: `Ok(Some((chunk, len)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn decode_ack(buf: &[u8]) -> Result<Option<(String, usize)>, DecodeError> {
    let mut r = Reader::new(buf);
    let n = match r.read_map_len() {
        Ok(n) => n,
        Err(ReadError::Incomplete) => return Ok(None),
        Err(e) => return Err(from_read(e, 0, "an ack must be a map")),
    };
    let mut ack = None;
    for _ in 0..n {
        let step = (|| -> Result<(), ReadError> {
            let key = r.read_str_or_bin()?;
            if key == b"ack" {
                ack = Some(String::from_utf8_lossy(r.read_str_or_bin()?).into_owned());
            } else {
                r.skip_value()?;
            }
            Ok(())
        })();
        match step {
            Ok(()) => {}
            Err(ReadError::Incomplete) => return Ok(None),
            Err(e) => return Err(from_read(e, 0, "ack")),
        }
    }
    match ack {
        Some(a) => Ok(Some((a, r.position()))),
        None => Err(invalid("a response without an `ack` key", 0)),
    }
}

fn write_options(out: &mut Vec<u8>, count: u32, chunk: Option<&str>, compressed: Compression) {
    let compressed = (compressed != Compression::None).then_some(compressed);
    let n = 1 + u32::from(chunk.is_some()) + u32::from(compressed.is_some());
    msgpack::write_map_len(out, n);
    msgpack::write_str(out, "size");
    msgpack::write_uint(out, u64::from(count));
    if let Some(c) = chunk {
        msgpack::write_str(out, "chunk");
        msgpack::write_str(out, c);
    }
    if let Some(c) = compressed {
        msgpack::write_str(out, "compressed");
        msgpack::write_str(out, c.as_str());
    }
}

/// Encodes a PackedForward frame (or CompressedPackedForward when `payload` is
/// already compressed and `compressed` says how): `[tag, bin, {size, chunk?,
/// compressed?}]`. Returned as the bytes before the payload and the bytes after it, so
/// a caller can write header, payload and trailer without copying the payload.
pub fn encode_packed_forward(
    tag: &str,
    payload_len: usize,
    count: u32,
    chunk: Option<&str>,
    compressed: Compression,
) -> (Vec<u8>, Vec<u8>) {
    let mut head = Vec::with_capacity(16 + tag.len());
    msgpack::write_array_len(&mut head, 3);
    msgpack::write_str(&mut head, tag);
    msgpack::write_bin_len(&mut head, payload_len as u32);
    let mut tail = Vec::with_capacity(48);
    write_options(&mut tail, count, chunk, compressed);
    (head, tail)
}

/// Encodes a Message frame: `[tag, time, record]`, with an option map when `chunk`
/// is given.
pub fn encode_message(tag: &str, time: EventTime, record: &Map, chunk: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    msgpack::write_array_len(&mut out, if chunk.is_some() { 4 } else { 3 });
    msgpack::write_str(&mut out, tag);
    msgpack::write_time(&mut out, time);
    msgpack::write_map(&mut out, record);
    if chunk.is_some() {
        write_options(&mut out, 1, chunk, Compression::None);
    }
    out
}

/// Encodes a Forward frame: `[tag, [[time, record], ...], {size, chunk?}]`.
pub fn encode_forward(tag: &str, events: &[(EventTime, Map)], chunk: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 * events.len());
    msgpack::write_array_len(&mut out, 3);
    msgpack::write_str(&mut out, tag);
    msgpack::write_array_len(&mut out, events.len() as u32);
    for (t, rec) in events {
        out.push(0x92);
        msgpack::write_time(&mut out, *t);
        msgpack::write_map(&mut out, rec);
    }
    write_options(&mut out, events.len() as u32, chunk, Compression::None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Entries;
    use crate::value::Value;
    use std::io::Write;

    fn limits() -> DecodeLimits {
        DecodeLimits::default()
    }

    fn decode(bytes: &[u8]) -> Result<Frame, DecodeError> {
        assert_eq!(frame_len(bytes, &limits()).unwrap(), Some(bytes.len()));
        decode_frame(Bytes::copy_from_slice(bytes), &limits())
    }

    fn events(frame: &Frame) -> (&EventsMessage, Vec<(EventTime, Map)>) {
        let Frame::Events(m) = frame else {
            panic!("not events: {frame:?}")
        };
        (m, Entries::new(&m.entries).map(Result::unwrap).collect())
    }

    fn rec(k: &str, v: &str) -> Map {
        [(k, v)].into_iter().collect()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// The spec's Message mode example, byte for byte:
    /// `["tag.name", 1441588984, {"message": "bar"}, {"option": "optional"}]`.
    #[test]
    fn spec_message_mode_example() {
        let mut bytes = vec![0x94, 0xa8];
        bytes.extend_from_slice(b"tag.name");
        bytes.extend_from_slice(&[0xce, 0x55, 0xec, 0xe6, 0xf8]);
        bytes.extend_from_slice(&[0x81, 0xa7]);
        bytes.extend_from_slice(b"message");
        bytes.push(0xa3);
        bytes.extend_from_slice(b"bar");
        bytes.extend_from_slice(&[0x81, 0xa6]);
        bytes.extend_from_slice(b"option");
        bytes.push(0xa8);
        bytes.extend_from_slice(b"optional");
        let frame = decode(&bytes).unwrap();
        let (m, evs) = events(&frame);
        assert_eq!(
            (m.tag.as_str(), m.mode, m.count),
            ("tag.name", Mode::Message, 1)
        );
        assert_eq!(
            evs,
            vec![(EventTime::new(1_441_588_984, 0), rec("message", "bar"))]
        );
        assert_eq!(m.options, Options::default(), "unknown options are ignored");
    }

    /// The spec's Forward mode example with three entries.
    #[test]
    fn spec_forward_mode_example() {
        let events_in = vec![
            (EventTime::new(1_441_588_984, 0), rec("message", "foo")),
            (EventTime::new(1_441_588_985, 0), rec("message", "bar")),
            (EventTime::new(1_441_588_986, 0), rec("message", "baz")),
        ];
        let bytes = encode_forward("tag.name", &events_in, Some("p8n9gmxTQVC8/nh2wlKKeQ=="));
        // Head: fixarray(3), fixstr "tag.name", fixarray(3), first entry [fixext8 time...
        assert_eq!(
            &bytes[..12],
            &[
                0x93, 0xa8, b't', b'a', b'g', b'.', b'n', b'a', b'm', b'e', 0x93, 0x92
            ]
        );
        let frame = decode(&bytes).unwrap();
        let (m, evs) = events(&frame);
        assert_eq!(m.mode, Mode::Forward);
        assert_eq!(m.count, 3);
        assert_eq!(evs, events_in);
        assert_eq!(m.options.chunk.as_deref(), Some("p8n9gmxTQVC8/nh2wlKKeQ=="));
        assert_eq!(m.options.size, Some(3));
    }

    fn packed(
        tag: &str,
        entries: &[u8],
        chunk: Option<&str>,
        c: Compression,
        as_str: bool,
    ) -> Vec<u8> {
        let (head, tail) = encode_packed_forward(tag, entries.len(), 2, chunk, c);
        let mut out = if as_str {
            // out_forward sends the stream as str for backward compatibility.
            let mut h = Vec::new();
            msgpack::write_array_len(&mut h, 3);
            msgpack::write_str(&mut h, tag);
            let _ = rmp::encode::write_str_len(&mut h, entries.len() as u32);
            h
        } else {
            head
        };
        out.extend_from_slice(entries);
        out.extend_from_slice(&tail);
        out
    }

    fn two_entries() -> Vec<u8> {
        let mut b = crate::chunk::ChunkBuilder::new("x".into());
        b.push(EventTime::new(1_441_588_984, 1), &rec("message", "foo"));
        b.push(EventTime::new(1_441_588_985, 2), &rec("message", "bar"));
        b.finish().unwrap().entries().to_vec()
    }

    #[test]
    fn packed_forward_bin_and_str() {
        let entries = two_entries();
        for as_str in [false, true] {
            let bytes = packed("tag.name", &entries, Some("abc"), Compression::None, as_str);
            let frame = decode(&bytes).unwrap();
            let (m, evs) = events(&frame);
            assert_eq!(m.mode, Mode::PackedForward);
            assert_eq!(
                m.entries.as_ref(),
                entries.as_slice(),
                "entries are passed through untouched"
            );
            assert_eq!(evs.len(), 2);
            assert_eq!(evs[1].0, EventTime::new(1_441_588_985, 2));
        }
        // The exact PackedForward bytes the forwarder puts on the wire.
        let (head, tail) = encode_packed_forward("a", 3, 7, Some("Q0g="), Compression::None);
        assert_eq!(head, [0x93, 0xa1, b'a', 0xc4, 0x03]);
        let mut want_tail = vec![0x82, 0xa4];
        want_tail.extend_from_slice(b"size");
        want_tail.push(0x07);
        want_tail.push(0xa5);
        want_tail.extend_from_slice(b"chunk");
        want_tail.push(0xa4);
        want_tail.extend_from_slice(b"Q0g=");
        assert_eq!(tail, want_tail);
    }

    #[test]
    fn compressed_packed_forward_gzip_multi_member_and_zstd() {
        let entries = two_entries();
        let (a, b) = entries.split_at(entries.len() / 2);
        let mut two_members = gzip(a);
        two_members.extend_from_slice(&gzip(b));
        let bytes = packed("t", &two_members, Some("c1"), Compression::Gzip, false);
        let frame = decode(&bytes).unwrap();
        let (m, evs) = events(&frame);
        assert_eq!(m.mode, Mode::CompressedPackedForward);
        assert_eq!(m.entries.as_ref(), entries.as_slice());
        assert_eq!(evs.len(), 2);

        let z = zstd::encode_all(entries.as_slice(), 1).unwrap();
        let bytes = packed("t", &z, None, Compression::Zstd, false);
        let frame = decode(&bytes).unwrap();
        assert_eq!(events(&frame).1.len(), 2);
    }

    #[test]
    fn node_client_quirks() {
        // compressed: "text" means plain PackedForward; size is a byte count.
        let entries = two_entries();
        let mut bytes = vec![0x93, 0xa1, b't'];
        msgpack::write_bin(&mut bytes, &entries);
        msgpack::write_map_len(&mut bytes, 2);
        msgpack::write_str(&mut bytes, "size");
        msgpack::write_uint(&mut bytes, entries.len() as u64);
        msgpack::write_str(&mut bytes, "compressed");
        msgpack::write_str(&mut bytes, "text");
        let frame = decode(&bytes).unwrap();
        let (m, _) = events(&frame);
        assert_eq!(m.mode, Mode::PackedForward);
        assert_eq!(m.count, 2, "count is counted, not trusted from size");
    }

    #[test]
    fn heartbeat_and_acks() {
        assert_eq!(decode(&[0xc0]).unwrap(), Frame::Heartbeat);
        let ack = encode_ack("p8n9gmxTQVC8/nh2wlKKeQ==");
        let mut want = vec![0x81, 0xa3, b'a', b'c', b'k', 0xb8];
        want.extend_from_slice(b"p8n9gmxTQVC8/nh2wlKKeQ==");
        assert_eq!(ack, want);
        assert_eq!(
            decode_ack(&ack).unwrap(),
            Some(("p8n9gmxTQVC8/nh2wlKKeQ==".to_string(), ack.len()))
        );
        for cut in 0..ack.len() {
            assert_eq!(decode_ack(&ack[..cut]).unwrap(), None);
        }
    }

    #[test]
    fn truncated_frames_need_more_bytes() {
        let entries = two_entries();
        let gz = gzip(&entries);
        let frames = [
            encode_message("t", EventTime::new(1, 2), &rec("a", "b"), Some("x")),
            encode_forward("t", &[(EventTime::new(1, 0), rec("a", "b"))], None),
            packed("t", &entries, Some("c"), Compression::None, false),
            packed("t", &gz, Some("c"), Compression::Gzip, false),
        ];
        for f in &frames {
            for cut in 0..f.len() {
                assert_eq!(
                    frame_len(&f[..cut], &limits()),
                    Ok(None),
                    "cut at {cut} of {}",
                    f.len()
                );
            }
            assert!(decode(f).is_ok());
        }
    }

    #[test]
    fn oversized_frames_are_refused_from_their_header() {
        let l = DecodeLimits {
            max_frame_bytes: 1024,
            max_decompressed_bytes: 4096,
        };
        // [tag, bin32 announcing 4 GiB ...
        let mut claim = vec![0x93, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff];
        claim.extend_from_slice(&[0u8; 16]);
        assert!(matches!(
            frame_len(&claim, &l),
            Err(DecodeError::TooLarge { .. })
        ));
        // An array announcing four billion elements.
        assert!(matches!(
            frame_len(&[0xdd, 0xff, 0xff, 0xff, 0xff], &l),
            Err(DecodeError::TooLarge { .. })
        ));
        // A compression bomb: small on the wire, huge inflated.
        let bomb = gzip(&vec![0u8; 1 << 20]);
        let bytes = packed("t", &bomb, None, Compression::Gzip, false);
        let err = decode_frame(
            Bytes::from(bytes),
            &DecodeLimits {
                max_frame_bytes: 1 << 20,
                max_decompressed_bytes: 4096,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { limit: 4096, .. }),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_invalid_with_a_reason() {
        let cases: [(&[u8], &str); 6] = [
            (&[0xc1], "reserved byte"),
            (&[0x92, 0x01, 0x02], "the first element must be the tag"),
            (&[0x91, 0xa1, b't'], "array of 2 to 4 elements"),
            (&[0x93, 0xa1, b't', 0x01, 0x02], "record must be a map"),
            (&[0x93, 0xa1, b't', 0xc4, 0x02, 0x01, 0x02, 0x80], "entries"),
            (&[0x92, 0xa1, b't', 0x91, 0x01], "entries"),
        ];
        for (bytes, want) in cases {
            let err = match frame_len(bytes, &limits()) {
                Err(e) => e,
                Ok(Some(n)) => {
                    decode_frame(Bytes::copy_from_slice(&bytes[..n]), &limits()).unwrap_err()
                }
                Ok(None) => panic!("{bytes:?} reported incomplete"),
            };
            assert!(err.to_string().contains(want), "{bytes:?}: {err}");
        }
        let text = b"GET / HTTP/1.1\r\n\r\n";
        let err = match frame_len(text, &limits()) {
            Err(e) => e,
            Ok(Some(n)) => decode_frame(Bytes::copy_from_slice(&text[..n]), &limits()).unwrap_err(),
            Ok(None) => panic!("incomplete"),
        };
        assert!(err.to_string().contains("must be an array"), "{err}");
    }

    #[test]
    fn message_mode_keeps_nanoseconds_and_values() {
        let mut record = rec("log", "x");
        record.insert("n", Value::Int(-3));
        let bytes = encode_message(
            "a.b",
            EventTime::new(1_700_000_000, 123_456_789),
            &record,
            None,
        );
        let frame = decode(&bytes).unwrap();
        let (_, evs) = events(&frame);
        assert_eq!(
            evs,
            vec![(EventTime::new(1_700_000_000, 123_456_789), record)]
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let l = DecodeLimits { max_frame_bytes: 4096, max_decompressed_bytes: 1 << 16 };
                if let Ok(Some(n)) = frame_len(&bytes, &l) {
                    let _ = decode_frame(Bytes::copy_from_slice(&bytes[..n]), &l);
                }
                let _ = decode_ack(&bytes);
                let _ = count_entries(&bytes);
            }

            #[test]
            fn mutated_frames_never_panic(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..8)) {
                let mut bytes = packed("tag.name", &two_entries(), Some("c"), Compression::None, false);
                for (i, b) in flips {
                    let n = bytes.len();
                    bytes[i % n] = b;
                }
                let l = DecodeLimits::default();
                if let Ok(Some(n)) = frame_len(&bytes, &l) {
                    let _ = decode_frame(Bytes::copy_from_slice(&bytes[..n]), &l);
                }
            }
        }
    }
}
