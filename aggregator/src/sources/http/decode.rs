//! A request to events, without I/O, as Fluentd's `in_http` reads them:
//!
//! | request | records |
//! |---|---|
//! | `Content-Type: application/json` | the body: an object, or an array of objects |
//! | `application/x-ndjson` | one object per line |
//! | `application/msgpack`, `application/x-msgpack` | the body: a map, or an array of maps |
//! | a form (`application/x-www-form-urlencoded`) or the query string | the `json=` or `msgpack=` field, as above |
//!
//! The event time is the record's `time_key` field (removed from it), else the
//! `time` parameter, else now. The tag is the path with `/` turned into `.`.

use nagare_core::msgpack::Reader;
use nagare_core::{EventTime, Map, Value};

/// Why a request is refused with 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

fn bad(what: impl Into<String>) -> BadRequest {
    BadRequest(what.into())
}

/// The tag for a request path: `/app/web` gives `app.web`.
pub fn tag_from_path(path: &str) -> Result<String, BadRequest> {
    // A path keeps `+` as it is: only a form's `+` means a space.
    let decoded = percent_encoding::percent_decode_str(path.trim_start_matches('/'));
    let tag = decoded
        .decode_utf8()
        .map_err(|_| bad("the tag in the path is not UTF-8"))?;
    let tag = tag.trim_end_matches('/').replace('/', ".");
    if tag.is_empty() {
        return Err(bad(
            "no tag: POST to /<tag>, for example /app.access (Fluentd in_http style)",
        ));
    }
    if tag.split('.').any(str::is_empty) || tag.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad(format!(
            "`{tag}` is not a tag: use dot-separated parts without spaces"
        )));
    }
    Ok(tag)
}

/// What the events of a request are read from.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The body (already decompressed).
    pub body: &'a [u8],
}

/// The request's events, in order.
pub fn events(
    request: &Request<'_>,
    time_key: &str,
    now: EventTime,
) -> Result<Vec<(EventTime, Map)>, BadRequest> {
    let mut params = request.query.map(parse_form).unwrap_or_default();
    let media = request
        .content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let records = match media.as_str() {
        "application/json" | "text/json" => json_records(request.body)?,
        "application/x-ndjson" | "application/jsonlines" | "application/jsonl" => {
            ndjson_records(request.body)?
        }
        "application/msgpack" | "application/x-msgpack" => msgpack_records(request.body)?,
        "" | "application/x-www-form-urlencoded" => {
            let body =
                std::str::from_utf8(request.body).map_err(|_| bad("the form body is not UTF-8"))?;
            params.extend(parse_form(body));
            form_records(&params)?
        }
        other => {
            return Err(bad(format!(
                "unsupported Content-Type `{other}`: send application/json, application/x-ndjson, application/msgpack, or a form with a json= or msgpack= field"
            )));
        }
    };
    let default_time = match params.iter().find(|(k, _)| k == "time") {
        Some((_, t)) => parse_time_text(t).ok_or_else(|| {
            bad(format!(
                "the time parameter `{t}` is not a number of seconds"
            ))
        })?,
        None => now,
    };
    let mut out = Vec::with_capacity(records.len());
    for mut record in records {
        let time = match (!time_key.is_empty())
            .then(|| record.remove(time_key))
            .flatten()
        {
            Some(v) => value_time(&v).ok_or_else(|| {
                bad(format!(
                    "the `{time_key}` field must be seconds since the epoch, found {}",
                    v.kind()
                ))
            })?,
            None => default_time,
        };
        out.push((time, record));
    }
    Ok(out)
}

fn form_records(params: &[(String, String)]) -> Result<Vec<Map>, BadRequest> {
    if let Some((_, json)) = params.iter().find(|(k, _)| k == "json") {
        return json_records(json.as_bytes());
    }
    if let Some((_, mp)) = params.iter().find(|(k, _)| k == "msgpack") {
        return msgpack_records(mp.as_bytes());
    }
    Err(bad(
        "no records: send a json= or msgpack= form field, or a body with Content-Type application/json, application/x-ndjson or application/msgpack",
    ))
}

fn json_records(text: &[u8]) -> Result<Vec<Map>, BadRequest> {
    let value: Value =
        serde_json::from_slice(text).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    records_of(value)
}

fn records_of(value: Value) -> Result<Vec<Map>, BadRequest> {
    match value {
        Value::Map(m) => Ok(vec![m]),
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Map(m) => Ok(m),
                other => Err(bad(format!(
                    "record {i} of the array is {}, not an object",
                    other.kind()
                ))),
            })
            .collect(),
        other => Err(bad(format!(
            "a record must be an object (or an array of objects), found {}",
            other.kind()
        ))),
    }
}

fn ndjson_records(text: &[u8]) -> Result<Vec<Map>, BadRequest> {
    text.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.trim_ascii().is_empty())
        .map(|(i, line)| {
            serde_json::from_slice::<Map>(line)
                .map_err(|e| bad(format!("line {} is not a JSON object: {e}", i + 1)))
        })
        .collect()
}

fn msgpack_records(bytes: &[u8]) -> Result<Vec<Map>, BadRequest> {
    let mut r = Reader::new(bytes);
    let value = r
        .read_value()
        .map_err(|e| bad(format!("the body is not MessagePack: {e}")))?;
    if !r.is_empty() {
        return Err(bad(
            "bytes after the MessagePack value; send one map or one array of maps",
        ));
    }
    records_of(value)
}

fn value_time(v: &Value) -> Option<EventTime> {
    match v {
        Value::Int(s) => Some(EventTime::new(*s, 0)),
        Value::UInt(s) => Some(EventTime::new(i64::try_from(*s).ok()?, 0)),
        Value::Float(f) if f.is_finite() => Some(EventTime::from_secs_f64(*f)),
        Value::Time(t) => Some(*t),
        Value::Str(s) => parse_time_text(s),
        _ => None,
    }
}

fn parse_time_text(s: &str) -> Option<EventTime> {
    let s = s.trim();
    if let Ok(i) = s.parse::<i64>() {
        return Some(EventTime::new(i, 0));
    }
    s.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(EventTime::from_secs_f64)
}

/// Parses `a=1&b=x+y` into pairs, percent-decoded, `+` as space, as a browser
/// encodes a form (WHATWG `application/x-www-form-urlencoded`); a `%` not followed by
/// two hex digits stays as it is, and bytes that are not UTF-8 become U+FFFD.
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> EventTime {
        EventTime::new(1_000, 0)
    }

    fn req<'a>(ct: Option<&'a str>, query: Option<&'a str>, body: &'a [u8]) -> Request<'a> {
        Request {
            content_type: ct,
            query,
            body,
        }
    }

    fn n(record: &Map) -> i64 {
        record.get("n").and_then(Value::as_i64).unwrap()
    }

    #[test]
    fn tags_from_paths() {
        assert_eq!(tag_from_path("/app.access").unwrap(), "app.access");
        assert_eq!(tag_from_path("/app/web/").unwrap(), "app.web");
        assert_eq!(tag_from_path("/a%2Eb").unwrap(), "a.b");
        assert!(tag_from_path("/").unwrap_err().0.contains("no tag"));
        assert!(tag_from_path("/a..b").is_err());
        assert!(tag_from_path("/a%20b").is_err());
    }

    #[test]
    fn json_body_object_or_array_with_times() {
        let body = br#"[{"n":1,"time":1700000000.5},{"n":2},{"n":3,"time":"1700000002"}]"#;
        let evs = events(
            &req(Some("application/json; charset=utf-8"), None, body),
            "time",
            now(),
        )
        .unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[0].0, EventTime::new(1_700_000_000, 500_000_000));
        assert_eq!(evs[0].1.get("time"), None, "time_key is removed");
        assert_eq!(evs[1].0, now());
        assert_eq!(evs[2].0, EventTime::new(1_700_000_002, 0));
        let evs = events(
            &req(Some("application/json"), Some("time=42"), br#"{"n":7}"#),
            "time",
            now(),
        )
        .unwrap();
        assert_eq!((evs[0].0, n(&evs[0].1)), (EventTime::new(42, 0), 7));
        // time_key "" keeps the field and ignores it.
        let evs = events(
            &req(Some("application/json"), None, br#"{"time":5}"#),
            "",
            now(),
        )
        .unwrap();
        assert_eq!(
            (evs[0].0, evs[0].1.get("time")),
            (now(), Some(&Value::Int(5)))
        );
    }

    #[test]
    fn ndjson_and_msgpack_bodies() {
        let body = b"{\"n\":1}\n\n{\"n\":2}\r\n";
        let evs = events(
            &req(Some("application/x-ndjson"), None, body),
            "time",
            now(),
        )
        .unwrap();
        assert_eq!(evs.iter().map(|e| n(&e.1)).collect::<Vec<_>>(), [1, 2]);

        let mut mp = Vec::new();
        nagare_core::msgpack::write_array_len(&mut mp, 2);
        for i in 0..2 {
            let mut m = Map::new();
            m.insert("n", i);
            nagare_core::msgpack::write_map(&mut mp, &m);
        }
        let evs = events(&req(Some("application/msgpack"), None, &mp), "time", now()).unwrap();
        assert_eq!(evs.len(), 2);
        let err = events(
            &req(Some("application/x-msgpack"), None, b"\x01"),
            "time",
            now(),
        )
        .unwrap_err();
        assert!(err.0.contains("must be an object"), "{err:?}");
    }

    #[test]
    fn form_fields_as_fluentd_in_http() {
        let body = b"json=%7B%22n%22%3A+5%2C%22s%22%3A%22a+b%22%7D";
        let evs = events(
            &req(
                Some("application/x-www-form-urlencoded"),
                Some("time=1.25"),
                body,
            ),
            "time",
            now(),
        )
        .unwrap();
        assert_eq!(n(&evs[0].1), 5);
        assert_eq!(evs[0].1.get("s").and_then(Value::as_str), Some("a b"));
        assert_eq!(evs[0].0, EventTime::new(1, 250_000_000));
        // The query string alone (curl -X POST 'host/tag?json=...').
        let evs = events(
            &req(None, Some("json=%7B%22n%22%3A1%7D"), b""),
            "time",
            now(),
        )
        .unwrap();
        assert_eq!(n(&evs[0].1), 1);
    }

    #[test]
    fn mistakes_say_what_to_send() {
        // (content type, query, body, what the refusal says)
        type Case<'a> = (Option<&'a str>, Option<&'a str>, &'a [u8], &'a str);
        let cases: [Case; 6] = [
            (
                Some("text/plain"),
                None,
                b"hi",
                "unsupported Content-Type `text/plain`",
            ),
            (Some("application/json"), None, b"{", "not JSON"),
            (
                Some("application/json"),
                None,
                b"[1]",
                "record 0 of the array is",
            ),
            (Some("application/x-ndjson"), None, b"{}\nnope", "line 2"),
            (None, None, b"x=1", "no records"),
            (
                Some("application/json"),
                Some("time=soon"),
                b"{}",
                "time parameter",
            ),
        ];
        for (ct, q, body, want) in cases {
            let err = events(&req(ct, q, body), "time", now()).unwrap_err();
            assert!(err.0.contains(want), "{want}: {}", err.0);
        }
        let err = events(
            &req(Some("application/json"), None, br#"{"time":[1]}"#),
            "time",
            now(),
        )
        .unwrap_err();
        assert!(err.0.contains("`time` field"), "{}", err.0);
    }

    #[test]
    fn percent_decoding_edges() {
        let value = |form: &str| parse_form(form).remove(0).1;
        assert_eq!(value("v=%41%4"), "A%4");
        assert_eq!(value("v=%zz+"), "%zz ");
        assert_eq!(tag_from_path("/a+b").unwrap(), "a+b");
        assert_eq!(
            parse_form("a=1&&b&c=%2B"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), String::new()),
                ("c".into(), "+".into())
            ]
        );
    }
}
