//! One record value as the JSON `tabledata.insertAll` takes for a column of a given
//! type, coerced only where nothing is lost: `"42"` is an INTEGER, `"4.2"` is not;
//! `"0.1"` is a FLOAT (it reads back as the same text), a 20-digit string is not.
//! What cannot be converted is refused with the reason, and the row goes to the
//! dead-letter output instead of a request BigQuery would refuse.
//!
//! The conversions themselves ([`integer_of`], [`float_of`], [`boolean_of`],
//! [`numeric_text`], [`timestamp_of`], [`string_of`], [`civil_text`]) give typed
//! values, so the Storage Write API's protobuf rows take exactly the same values as
//! `insertAll`'s JSON rows.

use std::borrow::Cow;

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
        FieldType::Timestamp => write_timestamp(out, timestamp_of(value)?),
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

/// The BOOLEAN `value` is: a boolean, or `true` / `false` in any case.
pub fn boolean_of(value: &Value) -> Result<bool, &'static str> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Str(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::Str(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err("a BOOLEAN is true or false"),
    }
}

fn boolean(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    let b = boolean_of(value)?;
    out.extend_from_slice(if b { b"true" } else { b"false" });
    Ok(())
}

fn string(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    match value {
        Value::Time(t) => write_timestamp(out, *t),
        other => {
            write_str(out, &string_of(other)?);
            Ok(())
        }
    }
}

/// The STRING `value` is: text, UTF-8 bytes, a time in RFC 3339 with microseconds,
/// a number or boolean as its text, a map or list as its JSON text.
pub fn string_of(value: &Value) -> Result<Cow<'_, str>, &'static str> {
    match value {
        Value::Str(s) => Ok(Cow::Borrowed(s.as_str())),
        Value::Bytes(b) => std::str::from_utf8(b)
            .map(Cow::Borrowed)
            .map_err(|_| "bytes that are not UTF-8 text"),
        Value::Time(t) => {
            let mut out = Vec::with_capacity(30);
            write_timestamp(&mut out, *t)?;
            Ok(Cow::Owned(unquoted(out)))
        }
        Value::Ext(..) => Err("a MessagePack extension has no text"),
        // Numbers and booleans as their text, maps and lists as their JSON text.
        other => Ok(Cow::Owned(other.to_text())),
    }
}

/// The text of a JSON string this module wrote (no escapes inside).
fn unquoted(mut quoted: Vec<u8>) -> String {
    quoted.pop();
    quoted.remove(0);
    String::from_utf8(quoted).unwrap_or_default()
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
    write_value(out, &Value::Int(integer_of(value)?));
    Ok(())
}

/// The INTEGER `value` is: an integer, a whole float within range, or its digits.
pub fn integer_of(value: &Value) -> Result<i64, &'static str> {
    Ok(match value {
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
    })
}

/// An optionally signed run of ASCII digits that fits an i64; nothing else.
fn parse_integer(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The FLOAT `value` is: a float, an integer it holds exactly, or decimal text
/// that reads back unchanged (`NaN`, `Infinity`, `-Infinity` included).
pub fn float_of(value: &Value) -> Result<f64, &'static str> {
    Ok(match value {
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
    })
}

fn float(out: &mut Vec<u8>, value: &Value) -> Result<(), &'static str> {
    let f = float_of(value)?;
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
    write_str(out, &numeric_text(value, int_max, frac_max)?);
    Ok(())
}

/// The decimal text of a NUMERIC (`int_max` 29, `frac_max` 9) or BIGNUMERIC (38, 38)
/// `value`: a number, or decimal text with no more digits than the type holds.
pub fn numeric_text(
    value: &Value,
    int_max: usize,
    frac_max: usize,
) -> Result<String, &'static str> {
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
    Ok(text)
}

/// The time a TIMESTAMP column gets from `value`: a time, epoch seconds, or RFC 3339
/// text (a zone-less one read as UTC, as BigQuery does).
pub fn timestamp_of(value: &Value) -> Result<EventTime, &'static str> {
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

/// The text of `t` as a DATE (`2024-01-15`), TIME (`10:30:00.123456`) or DATETIME
/// (`2024-01-15T10:30:00.123456`) column holds it.
pub fn civil_text(ty: FieldType, t: EventTime) -> Result<String, &'static str> {
    let mut out = Vec::with_capacity(30);
    civil(&mut out, ty, t)?;
    Ok(unquoted(out))
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
