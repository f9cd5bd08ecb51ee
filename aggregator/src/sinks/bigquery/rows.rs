//! A record and its event time as one `tabledata.insertAll` row,
//! `{"insertId":"...","json":{...}}`, converted to the table's schema.
//!
//! - Each field the schema has is converted to its column's type
//!   ([`coerce`](super::coerce)): TIMESTAMP as RFC 3339 with microseconds, numbers and
//!   booleans from strings only where nothing is lost, RECORD from maps, REPEATED from
//!   lists (a single value is a list of one), JSON columns as the value's JSON text.
//!   A value that cannot be converted fails the row with a [`RowError`] naming the
//!   field and the value, so it goes to the dead-letter output and the rest of the
//!   request is sent.
//! - The event time goes to `time_field` (over any value of that name in the record).
//! - Fields the schema lacks are dropped, kept as a JSON object (nested as they were)
//!   in `unknown_fields_column`, or passed on for a request sent with
//!   `ignoreUnknownValues` ([`UnknownFields`]).
//! - `insertId` is `insert_id_key`'s value, or else the chunk id and position the
//!   event first arrived at, so a chunk sent again carries the same ids and BigQuery
//!   drops the copies.
//!
//! Rows are written straight into the request's bytes with nagare's direct JSON
//! writer: no intermediate document is built.

use std::fmt;

use nagare_core::chunk::ChunkId;
use nagare_core::json::{write_map, write_str, write_value};
use nagare_core::time::EventTime;
use nagare_core::value::{Map, Value};

use super::coerce::{write_scalar, write_timestamp};
use super::schema::{Field, FieldType, Mode, Schema};

/// What becomes of record fields the schema has no column for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UnknownFields {
    /// Left out of the row (`unknown_fields: drop`).
    #[default]
    Drop,
    /// Kept, as one JSON object, in this top-level JSON or STRING column
    /// (`unknown_fields: column` with `unknown_fields_column`).
    Column(String),
    /// Sent as they are, for BigQuery to ignore: the request sets
    /// `ignoreUnknownValues` (`unknown_fields: ignore`).
    Ignore,
}

/// How rows are made, besides the schema.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowOptions {
    /// The top-level column that gets the event time (`time_field`).
    pub time_field: Option<String>,
    /// Fields the schema lacks (`unknown_fields`, `unknown_fields_column`).
    pub unknown_fields: UnknownFields,
    /// The record field whose value is the row's `insertId` (`insert_id_key`;
    /// a dotted path reaches into maps).
    pub insert_id_key: Option<String>,
}

/// Options that do not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowSetupError {
    /// `time_field` names no top-level column.
    #[error(
        "time_field `{0}` is not a top-level column of the schema; add it (type TIMESTAMP) or name another"
    )]
    NoTimeColumn(String),
    /// `time_field` names a column that cannot hold a time.
    #[error(
        "time_field `{name}` is a {mode} {field_type} column; it needs a TIMESTAMP or STRING one that is not REPEATED"
    )]
    TimeColumnType {
        /// The column.
        name: String,
        /// Its type.
        field_type: FieldType,
        /// Its mode.
        mode: &'static str,
    },
    /// `unknown_fields_column` names no top-level column.
    #[error(
        "unknown_fields_column `{0}` is not a top-level column of the schema; add it (type JSON) or name another"
    )]
    NoUnknownColumn(String),
    /// `unknown_fields_column` names a column that cannot hold a JSON object.
    #[error(
        "unknown_fields_column `{name}` is a {mode} {field_type} column; it needs a JSON or STRING one that is not REPEATED"
    )]
    UnknownColumnType {
        /// The column.
        name: String,
        /// Its type.
        field_type: FieldType,
        /// Its mode.
        mode: &'static str,
    },
}

/// Why a record cannot be a row; `path` names the field (`kubernetes.labels`,
/// `tags[2]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    /// A value its column's type cannot hold without loss.
    #[error(
        "field `{path}`: {value} cannot be a {field_type}: {reason}; fix the record (a filter) or the column's type"
    )]
    Convert {
        /// The field.
        path: String,
        /// Its column's type.
        field_type: FieldType,
        /// The value, shortened.
        value: String,
        /// Why not.
        reason: &'static str,
    },
    /// A REQUIRED column the record has no value for.
    #[error("field `{path}` is a REQUIRED column and the record has no value for it")]
    Missing {
        /// The field.
        path: String,
    },
}

/// Writes rows for one table's schema.
#[derive(Debug, Clone)]
pub struct RowBuilder {
    schema: Schema,
    /// The index of `time_field`'s column among the top-level fields.
    time_field: Option<usize>,
    unknown: Unknown,
    insert_id_key: Option<String>,
}

/// What becomes of fields the schema lacks, resolved against the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unknown {
    Drop,
    /// The index of the column among the top-level fields.
    Column(usize),
    Ignore,
}

/// Longest value shown in a [`RowError`], in characters.
const PREVIEW_CHARS: usize = 80;

impl RowBuilder {
    /// A builder for `schema`; refuses options that name columns it lacks or that
    /// cannot hold what they would get.
    pub fn new(schema: Schema, options: RowOptions) -> Result<RowBuilder, RowSetupError> {
        let index = |name: &str| {
            schema
                .fields
                .iter()
                .position(|f| f.name == name)
                .or_else(|| {
                    schema
                        .fields
                        .iter()
                        .position(|f| f.name.eq_ignore_ascii_case(name))
                })
        };
        let time_field = match &options.time_field {
            None => None,
            Some(name) => {
                let i = index(name).ok_or_else(|| RowSetupError::NoTimeColumn(name.clone()))?;
                let f = &schema.fields[i];
                let fits = matches!(f.field_type, FieldType::Timestamp | FieldType::String);
                if !fits || f.mode == Mode::Repeated {
                    return Err(RowSetupError::TimeColumnType {
                        name: name.clone(),
                        field_type: f.field_type,
                        mode: f.mode.as_str(),
                    });
                }
                Some(i)
            }
        };
        let unknown = match &options.unknown_fields {
            UnknownFields::Drop => Unknown::Drop,
            UnknownFields::Ignore => Unknown::Ignore,
            UnknownFields::Column(name) => {
                let i = index(name).ok_or_else(|| RowSetupError::NoUnknownColumn(name.clone()))?;
                let f = &schema.fields[i];
                let fits = matches!(f.field_type, FieldType::Json | FieldType::String);
                if !fits || f.mode == Mode::Repeated {
                    return Err(RowSetupError::UnknownColumnType {
                        name: name.clone(),
                        field_type: f.field_type,
                        mode: f.mode.as_str(),
                    });
                }
                Unknown::Column(i)
            }
        };
        Ok(RowBuilder {
            schema,
            time_field,
            unknown,
            insert_id_key: options.insert_id_key,
        })
    }

    /// The schema rows are written for.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The index of `time_field`'s column among the top-level fields.
    pub(super) fn time_field(&self) -> Option<usize> {
        self.time_field
    }

    /// What becomes of fields the schema lacks.
    pub(super) fn unknown(&self) -> Unknown {
        self.unknown
    }

    /// Whether requests must set `ignoreUnknownValues` (fields the schema lacks are
    /// sent).
    pub fn ignore_unknown_values(&self) -> bool {
        self.unknown == Unknown::Ignore
    }

    /// Appends the row of `record` at `time`, which arrived at position
    /// `origin.1` of chunk `origin.0` ([`Event::origin`](nagare_core::sink::Event)).
    /// On error `out` is left as it was.
    pub fn write_row(
        &self,
        out: &mut Vec<u8>,
        record: &Map,
        time: EventTime,
        origin: (ChunkId, u32),
    ) -> Result<(), RowError> {
        let start = out.len();
        out.extend_from_slice(b"{\"insertId\":");
        self.write_insert_id(out, record, origin);
        out.extend_from_slice(b",\"json\":");
        let mut unknowns = Vec::new();
        let top = Top { time };
        let written = self.write_object(
            out,
            &self.schema.fields,
            record,
            &Path::Root,
            Some(&top),
            &mut unknowns,
        );
        if let Err(e) = written {
            out.truncate(start);
            return Err(e);
        }
        out.push(b'}');
        Ok(())
    }

    fn write_insert_id(&self, out: &mut Vec<u8>, record: &Map, origin: (ChunkId, u32)) {
        let own = self
            .insert_id_key
            .as_deref()
            .and_then(|key| record.get(key).or_else(|| record.get_path(key)));
        match own {
            Some(Value::Str(s)) if !s.is_empty() => write_str(out, s),
            Some(v @ (Value::Int(_) | Value::UInt(_) | Value::Bool(_) | Value::Float(_))) => {
                write_str(out, &v.to_text())
            }
            // No key, or a record without a usable value there.
            _ => {
                out.push(b'"');
                write_hex(out, origin.0.as_bytes());
                out.push(b'-');
                write_value(out, &Value::Int(i64::from(origin.1)));
                out.push(b'"');
            }
        }
    }

    /// Appends `map` as the object of `fields`; `top` is set for the row itself (its
    /// time column and unknown-fields column are written there).
    fn write_object<'a>(
        &self,
        out: &mut Vec<u8>,
        fields: &[Field],
        map: &'a Map,
        path: &Path<'_>,
        top: Option<&Top>,
        unknowns: &mut Vec<(Vec<String>, &'a Value)>,
    ) -> Result<(), RowError> {
        out.push(b'{');
        let mut first = true;
        let mut comma = |out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
        };
        for (key, value) in map.iter() {
            let field = find(fields, key);
            if let (Some(_), Some(i)) = (top, field) {
                // The event time wins over a record field of the time column's name;
                // a record field of the unknown column's name is one of the unknowns.
                if Some(i) == self.time_field {
                    continue;
                }
                if Unknown::Column(i) == self.unknown {
                    unknowns.push((path.child_key(key).segments(), value));
                    continue;
                }
            }
            match field {
                Some(i) => {
                    if matches!(value, Value::Null) {
                        continue;
                    }
                    let f = &fields[i];
                    comma(out);
                    write_str(out, &f.name);
                    out.push(b':');
                    self.write_field(out, f, value, &path.child_key(key), unknowns)?;
                }
                None => match self.unknown {
                    Unknown::Drop => {}
                    Unknown::Ignore => {
                        comma(out);
                        write_str(out, key);
                        out.push(b':');
                        write_value(out, value);
                    }
                    Unknown::Column(_) => unknowns.push((path.child_key(key).segments(), value)),
                },
            }
        }
        if top.is_some() {
            if let Some(i) = self.time_field {
                comma(out);
                write_str(out, &fields[i].name);
                out.push(b':');
                let t = top.map(|t| t.time).unwrap_or_default();
                write_timestamp(out, t).map_err(|reason| RowError::Convert {
                    path: fields[i].name.clone(),
                    field_type: fields[i].field_type,
                    value: t.to_rfc3339(),
                    reason,
                })?;
            }
            if let (Unknown::Column(i), false) = (self.unknown, unknowns.is_empty()) {
                comma(out);
                write_str(out, &fields[i].name);
                out.push(b':');
                write_str(out, &unknowns_json(unknowns));
            }
        }
        // The time column is filled by the event time; the others need a value.
        for (i, f) in fields.iter().enumerate() {
            if f.mode != Mode::Required || (top.is_some() && self.time_field == Some(i)) {
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
        out.push(b'}');
        Ok(())
    }

    fn write_field<'a>(
        &self,
        out: &mut Vec<u8>,
        f: &Field,
        value: &'a Value,
        path: &Path<'_>,
        unknowns: &mut Vec<(Vec<String>, &'a Value)>,
    ) -> Result<(), RowError> {
        if f.mode != Mode::Repeated {
            return self.write_one(out, f, value, path, unknowns);
        }
        out.push(b'[');
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    let at = path.child_index(i);
                    if matches!(item, Value::Null) {
                        return Err(convert(f, item, &at, "a REPEATED column cannot hold null"));
                    }
                    self.write_one(out, f, item, &at, unknowns)?;
                }
            }
            // A single value is a list of one.
            one => self.write_one(out, f, one, path, unknowns)?,
        }
        out.push(b']');
        Ok(())
    }

    fn write_one<'a>(
        &self,
        out: &mut Vec<u8>,
        f: &Field,
        value: &'a Value,
        path: &Path<'_>,
        unknowns: &mut Vec<(Vec<String>, &'a Value)>,
    ) -> Result<(), RowError> {
        if f.field_type == FieldType::Record {
            return match value {
                Value::Map(m) => self.write_object(out, &f.fields, m, path, None, unknowns),
                other => Err(convert(f, other, path, "a RECORD is a map")),
            };
        }
        write_scalar(out, f.field_type, value).map_err(|reason| convert(f, value, path, reason))
    }
}

/// Appends `bytes` in lower-case hex, as [`ChunkId::to_hex`] spells it, without
/// the allocation of a string per row.
fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0xf)]);
    }
}

/// What only the row's top level writes.
struct Top {
    time: EventTime,
}

/// The error for `value` of field `f` at `path`, which cannot be its type for `reason`.
pub(super) fn convert(f: &Field, value: &Value, path: &Path<'_>, reason: &'static str) -> RowError {
    let mut text = value.to_text();
    if let Some((cut, _)) = text.char_indices().nth(PREVIEW_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    RowError::Convert {
        path: path.to_string(),
        field_type: f.field_type,
        value: format!("{text:?}"),
        reason,
    }
}

/// The index of the field called `name`: the exact name first, else one equal but
/// for ASCII case (BigQuery's column names are case-insensitive).
pub(super) fn find(fields: &[Field], name: &str) -> Option<usize> {
    fields.iter().position(|f| f.name == name).or_else(|| {
        fields
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case(name))
    })
}

/// The unknown fields as one JSON object, nested as they were in the record (a list
/// position is a key of its own).
pub(super) fn unknowns_json(unknowns: &[(Vec<String>, &Value)]) -> String {
    let mut root = Map::new();
    for (segments, value) in unknowns {
        let Some((last, parents)) = segments.split_last() else {
            continue;
        };
        let mut at = &mut root;
        for p in parents {
            at = at.map_mut(p);
        }
        at.insert(last.as_str(), (*value).clone());
    }
    let mut out = Vec::new();
    write_map(&mut out, &root, &[]);
    String::from_utf8_lossy(&out).into_owned()
}

/// Where a value is in the record, kept on the stack while writing and spelled out
/// only for an error or an unknown field.
pub(super) enum Path<'p> {
    /// The row itself.
    Root,
    /// A key of the map at the parent path.
    Key(&'p Path<'p>, &'p str),
    /// A position in the list at the parent path.
    Index(&'p Path<'p>, usize),
}

impl<'p> Path<'p> {
    pub(super) fn child_key(&'p self, key: &'p str) -> Path<'p> {
        Path::Key(self, key)
    }

    pub(super) fn child_index(&'p self, i: usize) -> Path<'p> {
        Path::Index(self, i)
    }

    /// The keys from the top, a list position as its digits.
    pub(super) fn segments(&self) -> Vec<String> {
        match self {
            Path::Root => Vec::new(),
            Path::Key(parent, key) => {
                let mut s = parent.segments();
                s.push(key.to_string());
                s
            }
            Path::Index(parent, i) => {
                let mut s = parent.segments();
                s.push(i.to_string());
                s
            }
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, key) => f.write_str(key),
            Path::Key(parent, key) => write!(f, "{parent}.{key}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

#[cfg(test)]
mod tests;
