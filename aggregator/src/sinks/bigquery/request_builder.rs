//! Events to `tabledata.insertAll` bodies: no I/O, so every byte is testable.
//!
//! Each event becomes one item keyed by its table (`table.rs`), whose bytes are its
//! row (`rows.rs`: `{"insertId":..,"json":{..}}`); its size is the row's bytes plus
//! the comma between rows. An event without a table, or whose record does not fit
//! the schema, goes to the dead-letter output with the reason. A batch (one table,
//! at most `batch.max_events` rows and `batch.max_bytes`, enforced by the kit's
//! batcher) becomes one body:
//!
//! ```json
//! {"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":false,
//!  "ignoreUnknownValues":false,"rows":[{"insertId":"..","json":{..}},..]}
//! ```
//!
//! gzipped (level 1) with `compression: gzip`.

use std::sync::{Arc, RwLock};

use nagare_core::component::Invalid;
use nagare_core::compression::{self, Compression};
use nagare_core::sink::{Encoder, Event, Item, Items};

use super::config::{BigQueryConfig, limits};
use super::rows::RowBuilder;
use super::table::{Key, TableTemplates};

/// The row builder of the table schema, shared by the workers and replaced when the
/// schema is read again (`fetch_schema`).
pub type SharedRows = Arc<RwLock<Arc<RowBuilder>>>;

/// The flags every body of a sink carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BodyOptions {
    /// `skipInvalidRows`.
    pub skip_invalid_rows: bool,
    /// `ignoreUnknownValues`.
    pub ignore_unknown_values: bool,
    /// gzip the body.
    pub gzip: bool,
}

impl BodyOptions {
    /// The options of a validated config.
    pub fn of(config: &BigQueryConfig) -> BodyOptions {
        BodyOptions {
            skip_invalid_rows: config.skip_invalid_rows,
            ignore_unknown_values: config.sends_ignore_unknown_values(),
            gzip: config.compression == Compression::Gzip,
        }
    }
}

/// One insertAll request, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsertRequest {
    /// Its table.
    pub key: Key,
    /// The body (gzipped when `gzip`).
    pub body: Vec<u8>,
    /// Whether the body is gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// How many rows it holds, in the order of the items it was built from.
    pub rows: usize,
    /// The body's bytes before compression.
    pub json_bytes: usize,
}

/// Turns events into rows keyed by table.
#[derive(Debug)]
pub struct RequestBuilder {
    tables: TableTemplates,
    rows: SharedRows,
    /// The largest row that fits a request.
    max_row: usize,
    /// The last row's length: room for the next.
    hint: usize,
}

impl RequestBuilder {
    /// A builder for a validated config, writing rows with `rows`.
    pub fn new(config: &BigQueryConfig, rows: SharedRows) -> Result<Self, Invalid> {
        Ok(RequestBuilder {
            tables: TableTemplates::new(config)?,
            rows,
            max_row: limits::MAX_REQUEST_BYTES - limits::ENVELOPE_BYTES,
            hint: 256,
        })
    }
}

impl Encoder for RequestBuilder {
    type Key = Key;

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, Key>) {
        let key = match self
            .tables
            .key_for(event.chunk.tag(), event.record, event.time)
        {
            Ok(key) => key,
            Err(reason) => {
                return out.refuse(&format!("no BigQuery table for the event: {reason}"));
            }
        };
        let rows = self.rows.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut row = Vec::with_capacity(self.hint + 64);
        if let Err(e) = rows.write_row(&mut row, event.record, event.time, event.origin) {
            return out.refuse(&format!("the record does not fit the schema of {key}: {e}"));
        }
        self.hint = row.len();
        if row.len() > self.max_row {
            return out.refuse(&format!(
                "the row is {} bytes, over BigQuery's 10 MB insertAll request limit",
                row.len()
            ));
        }
        let size = row.len() + 1;
        out.push(key, row, size);
    }

    fn destination(&self, key: &Key) -> Option<(&'static str, String)> {
        Some(("table", key.to_string()))
    }
}

/// The insertAll body of `rows` (each `{"insertId":..,"json":..}`), gzipped when
/// `options.gzip`.
pub fn build<'a>(
    key: &Key,
    rows: impl ExactSizeIterator<Item = &'a [u8]>,
    options: BodyOptions,
) -> InsertRequest {
    let count = rows.len();
    let mut json = Vec::with_capacity(128);
    json.extend_from_slice(
        b"{\"kind\":\"bigquery#tableDataInsertAllRequest\",\"skipInvalidRows\":",
    );
    json.extend_from_slice(if options.skip_invalid_rows {
        b"true"
    } else {
        b"false"
    });
    json.extend_from_slice(b",\"ignoreUnknownValues\":");
    json.extend_from_slice(if options.ignore_unknown_values {
        b"true"
    } else {
        b"false"
    });
    json.extend_from_slice(b",\"rows\":[");
    for (i, row) in rows.enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(row);
    }
    json.extend_from_slice(b"]}");
    let json_bytes = json.len();
    let body = if options.gzip {
        // Level 1: rows compress well already at the fastest level, and the
        // aggregator's CPU is better spent on throughput. Into memory: cannot fail.
        compression::compress(Compression::Gzip, 1, &json)
            .map(|packed| packed.into_owned())
            .unwrap_or(json)
    } else {
        json
    };
    InsertRequest {
        key: key.clone(),
        body,
        gzip: options.gzip,
        rows: count,
        json_bytes,
    }
}

/// [`build`] for the kit's items.
pub fn build_items(key: &Key, items: &[Item<Key>], options: BodyOptions) -> InsertRequest {
    build(key, items.iter().map(|i| i.bytes.as_slice()), options)
}
