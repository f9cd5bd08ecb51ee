//! Events as NDJSON lines, for the `file` and `stdout` sinks.
//!
//! - `envelope`: `{"tag":"app.web","time":"2024-01-15T10:30:00.123456789Z","record":{"msg":"hi"}}`
//! - `record`: `{"msg":"hi"}`
//!
//! Time is RFC 3339 in UTC with nine fractional digits; the record's keys keep their
//! order.

use nagare_core::chunk::Chunk;
use nagare_core::{EventTime, Map};

use super::config::Format;
use nagare_core::dead_letter::{self, write_json};

/// Appends one event as a line.
pub fn encode_event(format: Format, tag: &str, time: EventTime, record: &Map, out: &mut Vec<u8>) {
    match format {
        Format::Envelope => {
            out.extend_from_slice(b"{\"tag\":");
            write_json(out, tag);
            out.extend_from_slice(b",\"time\":\"");
            let mut t = String::with_capacity(30);
            time.write_rfc3339(&mut t);
            out.extend_from_slice(t.as_bytes());
            out.extend_from_slice(b"\",\"record\":");
            write_json(out, record);
            out.push(b'}');
        }
        Format::Record => write_json(out, record),
    }
    out.push(b'\n');
}

/// What [`encode_chunk`] did with a chunk's entries.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Events appended as lines.
    pub lines: u32,
    /// Entries that cannot be decoded, appended as secondary-output lines instead.
    pub undecodable: u32,
}

/// Appends every event of `chunk` as a line to `out`, going on past an entry that
/// cannot be decoded: that entry alone goes to `dead` as a secondary-output line (its
/// place, its bytes and why).
pub fn encode_chunk(
    format: Format,
    chunk: &Chunk,
    out: &mut Vec<u8>,
    dead: &mut Vec<u8>,
) -> Encoded {
    let mut done = Encoded::default();
    for step in chunk.walk() {
        match step {
            Ok((time, record)) => {
                encode_event(format, chunk.tag(), time, &record, out);
                done.lines += 1;
            }
            Err(bad) => {
                dead_letter::encode_undecodable(chunk, &bad, None, dead);
                done.undecodable += 1;
            }
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_core::{ChunkBuilder, Tag, Value};

    fn record() -> Map {
        let mut m = Map::new();
        m.insert("msg", "say \"hi\"\n");
        m.insert("n", Value::Int(-3));
        m.insert("ok", Value::Bool(true));
        let mut inner = Map::new();
        inner.insert("pod", "web-1");
        m.insert("kubernetes", inner);
        m
    }

    #[test]
    fn envelope_and_record_lines() {
        let t = EventTime::new(1_705_314_600, 123_456_789);
        let mut out = Vec::new();
        encode_event(Format::Envelope, "app.web", t, &record(), &mut out);
        encode_event(Format::Record, "app.web", t, &record(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"tag":"app.web","time":"2024-01-15T10:30:00.123456789Z","record":{"msg":"say \"hi\"\n","n":-3,"ok":true,"kubernetes":{"pod":"web-1"}}}"#,
                "\n",
                r#"{"msg":"say \"hi\"\n","n":-3,"ok":true,"kubernetes":{"pod":"web-1"}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn a_chunk_is_one_line_per_event() {
        let mut b = ChunkBuilder::new(Tag::new("t"));
        for i in 0..3 {
            let mut m = Map::new();
            m.insert("i", Value::Int(i));
            b.push(EventTime::new(i, 0), &m);
        }
        let chunk = b.finish().unwrap();
        let (mut out, mut dead) = (Vec::new(), Vec::new());
        let done = encode_chunk(Format::Record, &chunk, &mut out, &mut dead);
        assert_eq!(
            done,
            Encoded {
                lines: 3,
                undecodable: 0
            }
        );
        assert_eq!(out, b"{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n");
        assert!(dead.is_empty());
    }
}
