//! Rows written for an out-of-date schema, written again for the table's current
//! one (`fetch_schema`): when BigQuery refuses rows of a request for a field its
//! table lacks ("no such field"), the service reads the schema again and sends those
//! rows once more, each rebuilt from the row it sent with its `insertId` kept.
//!
//! The kit's items hold rows, not records, so a row is read back into a record: its
//! `json` object, with the text of each JSON column parsed back into its value (else
//! it would be written as a string of a string), and the event time from the time
//! column. Rare, so plain `serde_json` is fine here.

use nagare_core::chunk::ChunkId;
use nagare_core::compression::{self, Compression};
use nagare_core::time::EventTime;
use nagare_core::value::parse_json_object;
use serde_json::Value as Json;

use super::request_builder::InsertRequest;
use super::rows::RowBuilder;
use super::schema::{Field, FieldType, Mode};

/// Most bytes a gzipped body unpacks to (the request limit, with room).
const UNPACKED_LIMIT: usize = 16 << 20;

/// The rows of a request, as sent.
pub fn rows_of(request: &InsertRequest) -> Result<Vec<Json>, String> {
    let json = if request.gzip {
        compression::decompress(Compression::Gzip, &request.body, UNPACKED_LIMIT)
            .map_err(|e| format!("cannot unpack the request sent: {e}"))?
    } else {
        request.body.clone()
    };
    let body: Json =
        serde_json::from_slice(&json).map_err(|e| format!("the request sent is not JSON: {e}"))?;
    match body.get("rows") {
        Some(Json::Array(rows)) => Ok(rows.clone()),
        _ => Err("the request sent has no rows".into()),
    }
}

/// `row`, written by `old`, written again by `new`; `time_field` names the column
/// that holds the event time.
pub fn rewrite(
    row: &Json,
    old: &RowBuilder,
    new: &RowBuilder,
    time_field: Option<&str>,
) -> Result<Vec<u8>, String> {
    let insert_id = row
        .get("insertId")
        .cloned()
        .ok_or("the row sent has no insertId")?;
    let mut json = row
        .get("json")
        .cloned()
        .ok_or("the row sent has no json object")?;
    unpack_json_columns(&old.schema().fields, &mut json);
    let time = time_field
        .and_then(|f| json.get(f))
        .and_then(Json::as_str)
        .and_then(|s| EventTime::parse_rfc3339(s.as_bytes()))
        .unwrap_or_else(EventTime::now);
    let bytes = serde_json::to_vec(&json).map_err(|e| e.to_string())?;
    let record = parse_json_object(&bytes).ok_or("the row sent is not an object")?;
    let mut written = Vec::with_capacity(bytes.len() + 64);
    new.write_row(&mut written, &record, time, (ChunkId([0; 16]), 0))
        .map_err(|e| e.to_string())?;
    // Keep the insertId the row was sent with: everything from the first `,"json":`
    // (a string cannot hold an unescaped `"`) is the row itself.
    let at = written
        .windows(8)
        .position(|w| w == b",\"json\":")
        .ok_or("a written row has no json object")?;
    let mut out = b"{\"insertId\":".to_vec();
    out.extend_from_slice(&serde_json::to_vec(&insert_id).map_err(|e| e.to_string())?);
    out.extend_from_slice(&written[at..]);
    Ok(out)
}

/// Parses back the text the row builder wrote into each JSON column of `fields`.
fn unpack_json_columns(fields: &[Field], object: &mut Json) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    for field in fields {
        let Some((_, value)) = map
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(&field.name))
        else {
            continue;
        };
        let values: Vec<&mut Json> = match (field.mode, value) {
            (Mode::Repeated, Json::Array(items)) => items.iter_mut().collect(),
            (_, v) => vec![v],
        };
        for v in values {
            match field.field_type {
                FieldType::Json => {
                    if let Some(parsed) = v.as_str().and_then(|s| serde_json::from_str(s).ok()) {
                        *v = parsed;
                    }
                }
                FieldType::Record => unpack_json_columns(&field.fields, v),
                _ => {}
            }
        }
    }
}
