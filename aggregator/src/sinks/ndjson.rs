//! Events as NDJSON lines, the format of the `file` and `stdout` sinks.
//!
//! - `envelope`: `{"tag":"app.web","time":"2024-01-15T10:30:00.123456789Z","record":{"msg":"hi"}}`
//! - `record`: `{"msg":"hi"}`
//!
//! Time is RFC 3339 in UTC with nine fractional digits; the record's keys keep their
//! order.

use nagare_core::dead_letter::write_json;
use nagare_core::{EventTime, Map};
use serde::Deserialize;

/// How an event is written as a line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"tag":"app","time":"2024-01-15T10:30:00.000000000Z","record":{...}}`.
    #[default]
    Envelope,
    /// The record alone: `{...}`.
    Record,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use nagare_core::Value;

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
}
