//! The JSON form of the Forward Protocol, as Fluentd's `in_forward` accepts it from
//! simple clients: a connection whose first byte is `[` (or `{`) carries JSON arrays
//! instead of MessagePack, back to back:
//!
//! ```text
//! Message:  ["tag", time, {record}, {"chunk": "..."}?]
//! Forward:  ["tag", [[time, {record}], ...], {"chunk": "..."}?]
//! Ack:      {"ack": "..."}            (JSON too, on a JSON connection)
//! ```
//!
//! `time` is integer or fractional seconds; `null` or `0` means "now", as in Fluentd.
//! The events are re-encoded into MessagePack entries, so what leaves the decoder is
//! the same [`EventsMessage`] a MessagePack frame gives. A server offers this form
//! only when it does not require the handshake (which is MessagePack), as Fluentd.

use bytes::Bytes;

use super::codec::{DecodeError, DecodeLimits, EventsMessage, Frame, Mode, Options};
use crate::msgpack;
use crate::time::EventTime;
use crate::value::{Map, Value};

/// Whether a connection that starts with `byte` speaks the JSON form. Neither byte
/// starts a MessagePack frame (they are positive integers there).
pub fn is_json_start(byte: u8) -> bool {
    byte == b'[' || byte == b'{'
}

/// Finds where each JSON value of a stream ends, across reads, without scanning a
/// byte twice: feed it the receive buffer after every read.
#[derive(Debug, Clone, Default)]
pub struct JsonScanner {
    /// Bytes of the buffer already scanned.
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
    started: bool,
}

impl JsonScanner {
    /// A scanner at the start of a value.
    pub fn new() -> Self {
        Self::default()
    }

    /// Scans the new bytes of `buf` (which starts at the current value): the value's
    /// length once it is whole, `Ok(None)` while more bytes are needed. After a value
    /// is found the caller removes it from the buffer and calls [`reset`].
    ///
    /// [`reset`]: JsonScanner::reset
    pub fn frame_len(
        &mut self,
        buf: &[u8],
        limits: &DecodeLimits,
    ) -> Result<Option<usize>, DecodeError> {
        while self.pos < buf.len() {
            let b = buf[self.pos];
            self.pos += 1;
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b' ' | b'\t' | b'\r' | b'\n' if !self.started => {}
                b'[' | b'{' => {
                    self.started = true;
                    self.depth += 1;
                }
                b']' | b'}' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Some(self.pos));
                    }
                }
                b'"' if self.started => self.in_string = true,
                _ if !self.started => {
                    return Err(DecodeError::Invalid {
                        what: format!("a JSON frame must be an array, found {:?}", char::from(b)),
                        offset: self.pos - 1,
                    });
                }
                _ => {}
            }
        }
        if self.pos > limits.max_frame_bytes {
            return Err(DecodeError::TooLarge {
                size: self.pos,
                limit: limits.max_frame_bytes,
            });
        }
        Ok(None)
    }

    /// Starts over for the next value.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

fn invalid(what: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        what: what.into(),
        offset: 0,
    }
}

fn json_time(v: &Value) -> Result<EventTime, DecodeError> {
    match v {
        Value::Null => Ok(EventTime::now()),
        Value::Int(0) => Ok(EventTime::now()),
        Value::Int(s) => Ok(EventTime::new(*s, 0)),
        Value::UInt(s) => Ok(EventTime::new(i64::try_from(*s).unwrap_or(i64::MAX), 0)),
        Value::Float(f) if *f == 0.0 => Ok(EventTime::now()),
        Value::Float(f) => Ok(EventTime::from_secs_f64(*f)),
        other => Err(invalid(format!(
            "a JSON event time must be a number of seconds, found {}",
            other.kind()
        ))),
    }
}

fn push_entry(out: &mut Vec<u8>, time: EventTime, record: &Map) {
    out.push(0x92);
    msgpack::write_time(out, time);
    msgpack::write_map(out, record);
}

fn options(v: Option<&Value>) -> Result<Options, DecodeError> {
    let mut options = Options::default();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Map(m)) => {
            if let Some(chunk) = m.get("chunk") {
                options.chunk = Some(
                    chunk
                        .as_str()
                        .ok_or_else(|| invalid("the chunk option must be a string"))?
                        .to_string(),
                );
            }
            options.size = m.get("size").and_then(Value::as_i64).map(|s| s as u64);
        }
        Some(other) => {
            return Err(invalid(format!(
                "the option must be an object, found {}",
                other.kind()
            )));
        }
    }
    Ok(options)
}

/// Decodes one JSON frame (as delimited by [`JsonScanner`]).
pub fn decode_json_frame(text: &[u8]) -> Result<Frame, DecodeError> {
    let parts: Vec<Value> = match serde_json::from_slice(text) {
        Ok(p) => p,
        Err(e) => {
            return Err(DecodeError::Invalid {
                what: format!("not a JSON forward frame: {e}"),
                offset: e.column().saturating_sub(1),
            });
        }
    };
    if !(2..=4).contains(&parts.len()) {
        return Err(invalid(format!(
            "a JSON frame is an array of 2 to 4 elements, this one has {}",
            parts.len()
        )));
    }
    let tag = parts[0]
        .as_str()
        .ok_or_else(|| invalid("the first element must be the tag"))?
        .to_string();
    let mut entries = Vec::with_capacity(text.len());
    let (mode, count, option) = match &parts[1] {
        Value::Array(events) => {
            for (i, e) in events.iter().enumerate() {
                let (time, record) = match e {
                    Value::Array(pair) if pair.len() == 2 => (&pair[0], &pair[1]),
                    _ => return Err(invalid(format!("entry {i} must be [time, record]"))),
                };
                let record = record
                    .as_map()
                    .ok_or_else(|| invalid(format!("entry {i}'s record must be an object")))?;
                push_entry(&mut entries, json_time(time)?, record);
            }
            (Mode::Forward, events.len(), parts.get(2))
        }
        time => {
            let record = parts
                .get(2)
                .and_then(Value::as_map)
                .ok_or_else(|| invalid("a Message frame needs a record object"))?;
            push_entry(&mut entries, json_time(time)?, record);
            (Mode::Message, 1, parts.get(3))
        }
    };
    Ok(Frame::Events(EventsMessage {
        tag,
        mode,
        entries: Bytes::from(entries),
        count: u32::try_from(count).map_err(|_| invalid("too many entries"))?,
        options: options(option)?,
    }))
}

/// Encodes the ack a server sends on a JSON connection: `{"ack":"<chunk>"}`.
pub fn encode_json_ack(chunk: &str) -> Vec<u8> {
    let mut out = b"{\"ack\":".to_vec();
    out.extend_from_slice(
        serde_json::to_string(chunk)
            .unwrap_or_else(|_| "\"\"".into())
            .as_bytes(),
    );
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Entries;

    fn scan_all(text: &[u8]) -> Result<Option<usize>, DecodeError> {
        JsonScanner::new().frame_len(text, &DecodeLimits::default())
    }

    fn events(frame: &Frame) -> (&EventsMessage, Vec<(EventTime, Map)>) {
        let Frame::Events(m) = frame else {
            panic!("not events")
        };
        (m, Entries::new(&m.entries).map(Result::unwrap).collect())
    }

    #[test]
    fn message_and_forward_forms() {
        let text = br#"["app.web", 1441588984, {"message": "a ] in [ \" quotes", "n": 1}, {"chunk": "abc"}]"#;
        assert_eq!(scan_all(text).unwrap(), Some(text.len()));
        let frame = decode_json_frame(text).unwrap();
        let (m, evs) = events(&frame);
        assert_eq!(
            (m.tag.as_str(), m.mode, m.count),
            ("app.web", Mode::Message, 1)
        );
        assert_eq!(m.options.chunk.as_deref(), Some("abc"));
        assert_eq!(evs[0].0, EventTime::new(1_441_588_984, 0));
        assert_eq!(
            evs[0].1.get("message").and_then(Value::as_str),
            Some("a ] in [ \" quotes")
        );

        let text = br#"["t",[[1.5,{"a":1}],[2,{"b":[1,{"c":2}]}]]]"#;
        let frame = decode_json_frame(text).unwrap();
        let (m, evs) = events(&frame);
        assert_eq!((m.mode, m.count), (Mode::Forward, 2));
        assert_eq!(evs[0].0, EventTime::new(1, 500_000_000));
        assert_eq!(m.options, Options::default());
    }

    #[test]
    fn zero_or_null_time_means_now() {
        let before = EventTime::now();
        for text in [&br#"["t", 0, {"a": 1}]"#[..], br#"["t", null, {"a": 1}]"#] {
            let frame = decode_json_frame(text).unwrap();
            assert!(events(&frame).1[0].0 >= before);
        }
    }

    #[test]
    fn the_scanner_resumes_across_reads_and_splits_a_stream() {
        let stream = b" [\"a\",1,{\"x\":\"}\"}]\n[\"b\",2,{}]";
        let mut s = JsonScanner::new();
        let limits = DecodeLimits::default();
        for cut in 1..18 {
            assert_eq!(
                s.frame_len(&stream[..cut], &limits).unwrap(),
                None,
                "cut {cut}"
            );
        }
        let first = s.frame_len(stream, &limits).unwrap().unwrap();
        assert_eq!(&stream[..first], b" [\"a\",1,{\"x\":\"}\"}]");
        s.reset();
        let rest = &stream[first..];
        let second = s.frame_len(rest, &limits).unwrap().unwrap();
        assert_eq!(&rest[..second], b"\n[\"b\",2,{}]");
        assert!(decode_json_frame(&rest[..second]).is_ok());
    }

    #[test]
    fn bad_json_is_refused_with_a_reason() {
        let limits = DecodeLimits {
            max_frame_bytes: 8,
            max_decompressed_bytes: 8,
        };
        assert!(matches!(
            JsonScanner::new().frame_len(b"[\"aaaaaaaaaaaa", &limits),
            Err(DecodeError::TooLarge { .. })
        ));
        let err = scan_all(b"hello").unwrap_err();
        assert!(err.to_string().contains("must be an array"), "{err}");
        let cases: [(&[u8], &str); 5] = [
            (b"[1, 2, {}]", "tag"),
            (b"[\"t\"]", "2 to 4 elements"),
            (b"[\"t\", \"now\", {}]", "number of seconds"),
            (b"[\"t\", 1, [1]]", "record object"),
            (b"[\"t\", [[1]]]", "entry 0"),
        ];
        for (text, want) in cases {
            let err = decode_json_frame(text).unwrap_err();
            assert!(err.to_string().contains(want), "{text:?}: {err}");
        }
        let err = decode_json_frame(b"[\"t\", 1, {\"a\": }]").unwrap_err();
        assert!(
            err.to_string().contains("not a JSON forward frame"),
            "{err}"
        );
    }

    #[test]
    fn json_ack() {
        assert_eq!(
            encode_json_ack("p8n9gmxTQVC8/nh2wlKKeQ=="),
            br#"{"ack":"p8n9gmxTQVC8/nh2wlKKeQ=="}"#
        );
        assert_eq!(encode_json_ack("a\"b"), br#"{"ack":"a\"b"}"#);
    }
}
