//! A record and its event time as one Storage Write API row: a protobuf message of
//! the writer schema ([`descriptor`](super::descriptor)), written straight into bytes
//! from the table's schema, with no message object in between.
//!
//! The values are those of `insertAll`'s rows ([`rows`](super::super::rows)): the same
//! coercions ([`coerce`](super::super::coerce)), the event time in `time_field`, the
//! same REQUIRED checks and the same errors naming the field; only their encoding
//! differs (TIMESTAMP as microseconds, DATE as days, BYTES raw). Fields the schema
//! lacks are dropped or kept in `unknown_fields_column`; `unknown_fields: ignore`
//! drops them too, as a protobuf row has no place for a field its descriptor lacks.

use nagare_core::chunk::ChunkId;
use nagare_core::json::write_value;
use nagare_core::sink::{Event, Items};
use nagare_core::time::{EventTime, days_from_civil};
use nagare_core::value::{Map, Value};

use super::super::coerce::{
    boolean_of, civil_text, float_of, integer_of, numeric_text, string_of, timestamp_of,
};
use super::super::rows::{Path, RowBuilder, RowError, Unknown, convert, find, unknowns_json};
use super::super::schema::{Field, FieldType, Mode, Schema};
use super::super::table::Key;

/// The first and last second BigQuery holds (0001-01-01, 9999-12-31T23:59:59).
const SECS_RANGE: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;
const OUT_OF_YEARS: &str = "outside the years 0001 to 9999 that BigQuery holds";

/// The bytes of an item before its row: the event's origin chunk (16 bytes) and its
/// position there (4 bytes, little-endian), which the offsets journal knows rows by.
pub const ITEM_HEADER: usize = 20;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const DELIMITED: u32 = 2;

/// Writes protobuf rows for one table's schema, with the options of a
/// [`RowBuilder`] (which checked them against the schema).
#[derive(Debug, Clone)]
pub struct RowEncoder {
    rows: RowBuilder,
}

type Unknowns<'a> = Vec<(Vec<String>, &'a Value)>;

impl RowEncoder {
    /// An encoder with `rows`' schema and options.
    pub fn new(rows: RowBuilder) -> RowEncoder {
        RowEncoder { rows }
    }

    /// The schema rows are written for.
    pub fn schema(&self) -> &Schema {
        self.rows.schema()
    }

    /// Appends the serialized row of `record` at `time`. On error `out` is left as it
    /// was.
    pub fn write_row(
        &self,
        out: &mut Vec<u8>,
        record: &Map,
        time: EventTime,
    ) -> Result<(), RowError> {
        let start = out.len();
        let mut unknowns = Vec::new();
        let fields = &self.rows.schema().fields;
        let written =
            self.write_message(out, fields, record, &Path::Root, Some(time), &mut unknowns);
        if let Err(e) = written {
            out.truncate(start);
            return Err(e);
        }
        Ok(())
    }

    /// Writes the fields of `map` as the message of `fields`; `top` is the event
    /// time, set for the row itself (where the time and unknown-fields columns are).
    fn write_message<'a>(
        &self,
        out: &mut Vec<u8>,
        fields: &[Field],
        map: &'a Map,
        path: &Path<'_>,
        top: Option<EventTime>,
        unknowns: &mut Unknowns<'a>,
    ) -> Result<(), RowError> {
        let time_field = top.and(self.rows.time_field());
        let unknown = self.rows.unknown();
        for (key, value) in map.iter() {
            let field = find(fields, key);
            if let (Some(_), Some(i)) = (top, field) {
                // As in insertAll rows: the event time wins over a record field of
                // the time column's name, and a record field of the unknown column's
                // name is one of the unknowns.
                if Some(i) == time_field {
                    continue;
                }
                if Unknown::Column(i) == unknown {
                    unknowns.push((path.child_key(key).segments(), value));
                    continue;
                }
            }
            match field {
                Some(i) => {
                    if matches!(value, Value::Null) {
                        continue;
                    }
                    let at = path.child_key(key);
                    self.write_field(out, i as u32 + 1, &fields[i], value, &at, unknowns)?;
                }
                None => {
                    if let Unknown::Column(_) = unknown {
                        unknowns.push((path.child_key(key).segments(), value));
                    }
                }
            }
        }
        if let Some(time) = top {
            if let Some(i) = time_field {
                let f = &fields[i];
                let number = i as u32 + 1;
                let written = match f.field_type {
                    FieldType::Timestamp => {
                        micros(time).map(|m| write_varint_field(out, number, m as u64))
                    }
                    _ => string_of(&Value::Time(time))
                        .map(|t| write_bytes_field(out, number, t.as_bytes())),
                };
                written.map_err(|reason| RowError::Convert {
                    path: f.name.clone(),
                    field_type: f.field_type,
                    value: time.to_rfc3339(),
                    reason,
                })?;
            }
            if let (Unknown::Column(i), false) = (unknown, unknowns.is_empty()) {
                write_bytes_field(out, i as u32 + 1, unknowns_json(unknowns).as_bytes());
            }
        }
        for (i, f) in fields.iter().enumerate() {
            if f.mode != Mode::Required || time_field == Some(i) {
                continue;
            }
            let present = map
                .iter()
                .any(|(k, v)| !matches!(v, Value::Null) && find(fields, k) == Some(i));
            if !present {
                return Err(RowError::Missing {
                    path: path.child_key(&f.name).to_string(),
                });
            }
        }
        Ok(())
    }

    fn write_field<'a>(
        &self,
        out: &mut Vec<u8>,
        number: u32,
        f: &Field,
        value: &'a Value,
        path: &Path<'_>,
        unknowns: &mut Unknowns<'a>,
    ) -> Result<(), RowError> {
        match (f.mode, value) {
            (Mode::Repeated, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let at = path.child_index(i);
                    if matches!(item, Value::Null) {
                        return Err(convert(f, item, &at, "a REPEATED column cannot hold null"));
                    }
                    self.write_one(out, number, f, item, &at, unknowns)?;
                }
                Ok(())
            }
            // A single value is a list of one.
            _ => self.write_one(out, number, f, value, path, unknowns),
        }
    }

    fn write_one<'a>(
        &self,
        out: &mut Vec<u8>,
        number: u32,
        f: &Field,
        value: &'a Value,
        path: &Path<'_>,
        unknowns: &mut Unknowns<'a>,
    ) -> Result<(), RowError> {
        if f.field_type == FieldType::Record {
            let Value::Map(m) = value else {
                return Err(convert(f, value, path, "a RECORD is a map"));
            };
            let mut nested = Ok(());
            write_delimited(out, number, |out| {
                nested = self.write_message(out, &f.fields, m, path, None, unknowns);
            });
            return nested;
        }
        write_scalar(out, number, f.field_type, value)
            .map_err(|reason| convert(f, value, path, reason))
    }
}

/// Writes `value` as field `number` of a `ty` column (not RECORD, not null); the
/// reason when it cannot be one without loss.
fn write_scalar(
    out: &mut Vec<u8>,
    number: u32,
    ty: FieldType,
    value: &Value,
) -> Result<(), &'static str> {
    match ty {
        FieldType::String => write_bytes_field(out, number, string_of(value)?.as_bytes()),
        FieldType::Bytes => match value {
            Value::Bytes(b) => write_bytes_field(out, number, b),
            Value::Str(s) => write_bytes_field(out, number, s.as_bytes()),
            _ => return Err("BYTES takes bytes or a string"),
        },
        FieldType::Integer => write_varint_field(out, number, integer_of(value)? as u64),
        FieldType::Float => {
            write_tag(out, number, FIXED64);
            out.extend_from_slice(&float_of(value)?.to_le_bytes());
        }
        FieldType::Numeric => {
            write_bytes_field(out, number, numeric_text(value, 29, 9)?.as_bytes())
        }
        FieldType::BigNumeric => {
            write_bytes_field(out, number, numeric_text(value, 38, 38)?.as_bytes())
        }
        FieldType::Boolean => write_varint_field(out, number, u64::from(boolean_of(value)?)),
        FieldType::Timestamp => {
            write_varint_field(out, number, micros(timestamp_of(value)?)? as u64)
        }
        FieldType::Date => write_varint_field(out, number, i64::from(days(value)?) as u64),
        FieldType::Time | FieldType::Datetime => match value {
            Value::Str(s) => write_bytes_field(out, number, s.as_bytes()),
            Value::Time(t) => write_bytes_field(out, number, civil_text(ty, *t)?.as_bytes()),
            _ => return Err("a date or time is a string or a time"),
        },
        FieldType::Geography => match value {
            Value::Str(s) => write_bytes_field(out, number, s.as_bytes()),
            _ => return Err("a GEOGRAPHY is WKT or GeoJSON text"),
        },
        FieldType::Json => write_delimited(out, number, |out| write_value(out, value)),
        FieldType::Record => return Err("a RECORD is a map"),
    }
    Ok(())
}

/// Microseconds since the epoch of `t`, within the years BigQuery holds.
fn micros(t: EventTime) -> Result<i64, &'static str> {
    if !SECS_RANGE.contains(&t.secs()) {
        return Err(OUT_OF_YEARS);
    }
    Ok(t.secs() * 1_000_000 + i64::from(t.subsec_nanos() / 1000))
}

/// Days since the epoch of a DATE: `YYYY-MM-DD` text or a time.
fn days(value: &Value) -> Result<i32, &'static str> {
    let days = match value {
        Value::Time(t) => {
            if !SECS_RANGE.contains(&t.secs()) {
                return Err(OUT_OF_YEARS);
            }
            t.secs().div_euclid(86_400)
        }
        Value::Str(s) => parse_date(s).ok_or("not a date (YYYY-MM-DD)")?,
        _ => return Err("a date or time is a string or a time"),
    };
    Ok(days as i32)
}

/// `YYYY-MM-DD` (one or two digit month and day, as BigQuery reads them) as days
/// since the epoch.
fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |t: &str, max: usize| {
        !t.is_empty() && t.len() <= max && t.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(y, 4) || !digits(m, 2) || !digits(d, 2) {
        return None;
    }
    let (y, m, d): (i32, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y < 1 || !(1..=12).contains(&m) || d < 1 || d > month_days[m as usize - 1] {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn write_tag(out: &mut Vec<u8>, number: u32, wire: u32) {
    write_varint(out, u64::from((number << 3) | wire));
}

fn write_varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    write_tag(out, number, VARINT);
    write_varint(out, v);
}

fn write_bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    write_tag(out, number, DELIMITED);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Writes a length-delimited field whose body `write` appends in place: one byte is
/// kept for the length, and the body moved along only when its length needs more.
fn write_delimited(out: &mut Vec<u8>, number: u32, write: impl FnOnce(&mut Vec<u8>)) {
    write_tag(out, number, DELIMITED);
    let at = out.len();
    out.push(0);
    write(out);
    let len = out.len() - at - 1;
    if len < 0x80 {
        out[at] = len as u8;
        return;
    }
    let mut prefix = Vec::with_capacity(5);
    write_varint(&mut prefix, len as u64);
    out.splice(at..at + 1, prefix);
}

/// Pushes the row of `event` for `table` as an item of its own, or refuses the event
/// with the reason its record cannot be a row.
pub fn push_row(encoder: &RowEncoder, table: Key, event: Event<'_>, out: &mut Items<'_, Key>) {
    match item_bytes(encoder, event.origin, event.record, event.time) {
        Ok(bytes) => {
            let size = bytes.len() - ITEM_HEADER + 3;
            out.push(table, bytes, size);
        }
        Err(e) => out.refuse(&e.to_string()),
    }
}

/// An item's bytes: the row of `record` at `time`, after its `origin`.
pub fn item_bytes(
    encoder: &RowEncoder,
    origin: (ChunkId, u32),
    record: &Map,
    time: EventTime,
) -> Result<Vec<u8>, RowError> {
    let mut bytes = Vec::with_capacity(ITEM_HEADER + record.len() * 48);
    bytes.extend_from_slice(origin.0.as_bytes());
    bytes.extend_from_slice(&origin.1.to_le_bytes());
    encoder.write_row(&mut bytes, record, time)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests;
