//! The BigQuery sink's foundations: the table schema and the conversion of records
//! into rows for it. The sink itself (its config, request builder, service and retry
//! classification) is built on these.
//!
//! - [`schema`]: a table schema from the config, a `bq` schema file or the REST API,
//!   validated, and back to the REST API's form.
//! - [`coerce`]: one value as a column type's JSON, where nothing is lost.
//! - [`rows`]: a record and its event time as one `tabledata.insertAll` row, converted
//!   to the schema (types coerced where lossless, unknown fields dropped, kept in a
//!   JSON column or passed on), with its `insertId`.

pub mod coerce;
pub mod rows;
pub mod schema;
pub mod storage_write;
