//! One record value as the JSON `tabledata.insertAll` takes for a column of a given
//! type, coerced only where nothing is lost: `"42"` is an INTEGER, `"4.2"` is not;
//! `"0.1"` is a FLOAT (it reads back as the same text), a 20-digit string is not.
//! What cannot be converted is refused with the reason, and the row goes to the
//! dead-letter output instead of a request BigQuery would refuse.

use base64::Engine as _;
use nagare_core::json::{write_str, write_value};
use nagare_core::time::{EventTime, civil_from_days};
use nagare_core::value::Value;

use super::schema::FieldType;

/// The largest integer a FLOAT holds exactly (2^53).
const FLOAT_EXACT: i64 = 1 << 53;
/// Significant decimal digits that always read back from a FLOAT unchanged.
const FLOAT_DIGITS: usize = 15;

/// Appends `value` as the JSON of a `ty` column (not RECORD, not null); the reason
/// when it cannot be one without loss.
pub fn write_scalar(out: &mut Vec<u8>, ty: FieldType, value: &Value) -> Result<(), &'static str> {
    match ty {
        FieldType::String => string(out, value),
        FieldType::Bytes => match value {
            Value::Bytes(b) => base64(out, b),
            Value::Str(s) => base64(out, s.as_bytes()),
            _ => Err("BYTES takes bytes or a string"),
        },
        FieldType::Integer => integer(out, value),
        FieldType::Float => float(out, value),
        FieldType::Numeric => numeric(out, value, 29, 9),
        FieldType::BigNumeric => numeric(out, value, 38, 38),
        FieldType::Boolean => boolean(out, value),
        FieldType::Timestamp => write_timestamp(out, timestamp(value)?),
        FieldType::Date | FieldType::Time | FieldType::Datetime => match value {
            Value::Str(s) => text(out, s),
            Value::Time(t) => civil(out, ty, *t),
            _ => Err("a date or time is a string or a time"),
        },
        FieldType::Geography => match value {
            Value::Str(s) => text(out, s),
            _ => Err("a GEOGRAPHY is WKT or GeoJSON text"),
        },
        FieldType::Json => {
            write_json_text(out, value);
            Ok(())
        }
        FieldType::Record => Err("a RECORD is a map"),
    }
}

/// Appends the JSON text of `value` as a JSON string, with no buffer of its own: the
/// text is written in place, then its `"` and `\\` are escaped from the end backwards.
/// (The JSON writer already escaped control characters inside strings, so those two
/// are all a JSON text holds that a string must escape.)
fn write_json_text(out: &mut Vec<u8>, value: &Value) {
    out.push(b'"');
    let start = out.len();
    write_value(out, value);
    let end = out.len();
    let extra = out[start..]
        .iter()
        .filter(|&&b| b == b'"' || b == b'\\')
        .count();
    if extra > 0 {
        out.resize(end + extra, 0);
        let mut to = end + extra;
        for from in (start..end).rev() {
            let b = out[from];
            to -= 1;
            out[to] = b;
            if b == b'"' || b == b'\\' {
                to -= 1;
                out[to] = b'\\';
            }
        }
    }
    out.push(b'"');
}

fn text(out: &mut Vec<u8>, s: &str) -> Result<(), &'static str> {
    write_str(out, s);
    Ok(())
}

fn boolean(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    let b = match value {
        Value::Bool(b) => *b,
        Value::Str(s) if s.eq_ignore_ascii_case("true") => true,
        Value::Str(s) if s.eq_ignore_ascii_case("false") => false,
        _ => return Err("a BOOLEAN is true or false"),
    };
    out.extend_from_slice(if b { b"true" } else { b"false" });
    Ok(())
}

fn string(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    match value {
        Value::Str(s) => write_str(out, s),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => write_str(out, s),
            Err(_) => return Err("bytes that are not UTF-8 text"),
        },
        Value::Time(t) => write_timestamp(out, *t)?,
        Value::Ext(..) => return Err("a MessagePack extension has no text"),
        // Numbers and booleans as their text, maps and lists as their JSON text.
        other => write_str(out, &other.to_text()),
    }
    Ok(())
}

fn base64(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), &'static str> {
    out.push(b'"');
    let mut text = String::with_capacity(bytes.len() * 4 / 3 + 4);
    base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut text);
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
    Ok(())
}

fn integer(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    let i = match value {
        Value::Int(i) => *i,
        Value::UInt(_) => return Err("above INTEGER's range"),
        Value::Float(f) => {
            // i64::MIN is -2^63 exactly; 2^63 is one past i64::MAX.
            if f.fract() != 0.0
                || !(-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(f)
            {
                return Err("not a whole number within INTEGER's range");
            }
            *f as i64
        }
        Value::Str(s) => parse_integer(s).ok_or("not an integer within INTEGER's range")?,
        _ => return Err("an INTEGER is a number or its digits"),
    };
    write_value(out, &Value::Int(i));
    Ok(())
}

/// An optionally signed run of ASCII digits that fits an i64; nothing else.
fn parse_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn float(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    let f = match value {
        Value::Float(f) => *f,
        Value::Int(i) if (-FLOAT_EXACT..=FLOAT_EXACT).contains(i) => *i as f64,
        Value::Int(_) | Value::UInt(_) => return Err("an integer beyond 2^53 is not exact as a FLOAT"),
        Value::Str(s) => match s.as_str() {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            text => parse_float(text).ok_or(
                "not a decimal number with at most 15 significant digits (more would change when read back)",
            )?,
        },
        _ => return Err("a FLOAT is a number or its text"),
    };
    // BigQuery takes these three as strings; JSON has no words for them.
    if f.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        write_value(out, &Value::Float(f));
    }
    Ok(())
}

/// A decimal number (`-1.5`, `2e10`) with at most [`FLOAT_DIGITS`] significant
/// digits, which a FLOAT holds so that it reads back as the same decimal.
fn parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let is_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !is_digits(int) || !is_digits(frac) {
        return None;
    }
    if let Some(e) = exponent {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if e.is_empty() || !is_digits(e) {
            return None;
        }
    }
    let significant = format!("{int}{frac}");
    let significant = significant.trim_start_matches('0').trim_end_matches('0');
    if significant.len() > FLOAT_DIGITS {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

/// NUMERIC (29 digits before the point, 9 after) and BIGNUMERIC (38 and 38) as
/// strings, which BigQuery reads exactly; more digits after the point would be
/// rounded, so they are refused.
fn numeric(
    out: &mut Vec<u8>,
    value: &Value,
    int_max: usize,
    frac_max: usize,
) -> Result<(), &'static str> {
    let text = match value {
        Value::Str(s) => s.to_string(),
        Value::Int(_) | Value::UInt(_) => value.to_text(),
        // Display is the shortest text that reads back as the same float, never
        // with an exponent.
        Value::Float(f) if f.is_finite() => f.to_string(),
        _ => return Err("a NUMERIC is a number or its decimal text"),
    };
    let body = text.strip_prefix(['+', '-']).unwrap_or(&text);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let is_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !is_digits(int) || !is_digits(frac) {
        return Err("not a decimal number");
    }
    if int.trim_start_matches('0').len() > int_max || frac.trim_end_matches('0').len() > frac_max {
        return Err("more digits than the type holds");
    }
    write_str(out, &text);
    Ok(())
}

/// The time a TIMESTAMP column gets from `value`: a time, epoch seconds, or RFC 3339
/// text (a zone-less one read as UTC, as BigQuery does).
fn timestamp(value: &Value) -> Result<EventTime, &'static str> {
    match value {
        Value::Time(t) => Ok(*t),
        Value::Int(i) => Ok(EventTime::new(*i, 0)),
        Value::Float(f) if f.is_finite() => Ok(EventTime::from_secs_f64(*f)),
        Value::Str(s) => EventTime::parse_rfc3339(s.as_bytes())
            .or_else(|| EventTime::parse_rfc3339(format!("{s}Z").as_bytes()))
            .ok_or("not an RFC 3339 time"),
        _ => Err("a TIMESTAMP is a time, epoch seconds or RFC 3339 text"),
    }
}

/// Appends `t` as a TIMESTAMP: RFC 3339 in UTC with microseconds
/// (`2024-01-15T10:30:00.123456Z`), the form BigQuery reads without loss.
pub fn write_timestamp(out: &mut Vec<u8>, t: EventTime) -> Result<(), &'static str> {
    out.push(b'"');
    date(out, t)?;
    out.push(b'T');
    clock(out, t);
    out.extend_from_slice(b"Z\"");
    Ok(())
}

fn civil(out: &mut Vec<u8>, ty: FieldType, t: EventTime) -> Result<(), &'static str> {
    out.push(b'"');
    match ty {
        FieldType::Date => date(out, t)?,
        FieldType::Time => clock(out, t),
        _ => {
            date(out, t)?;
            out.push(b'T');
            clock(out, t);
        }
    }
    out.push(b'"');
    Ok(())
}

fn date(out: &mut Vec<u8>, t: EventTime) -> Result<(), &'static str> {
    let (y, m, d) = civil_from_days(t.secs().div_euclid(86_400));
    if !(1..=9999).contains(&y) {
        return Err("outside the years 0001 to 9999 that BigQuery holds");
    }
    digits(out, y as u32, 4);
    out.push(b'-');
    digits(out, m, 2);
    out.push(b'-');
    digits(out, d, 2);
    Ok(())
}

fn clock(out: &mut Vec<u8>, t: EventTime) {
    let sod = t.secs().rem_euclid(86_400) as u32;
    digits(out, sod / 3600, 2);
    out.push(b':');
    digits(out, (sod / 60) % 60, 2);
    out.push(b':');
    digits(out, sod % 60, 2);
    out.push(b'.');
    digits(out, t.subsec_nanos() / 1000, 6);
}

fn digits(out: &mut Vec<u8>, mut v: u32, width: usize) {
    let at = out.len();
    out.resize(at + width, b'0');
    for slot in out[at..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}
