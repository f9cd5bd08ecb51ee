//! The `bigquery` sink: events as rows of BigQuery tables, with `method: insert_all`
//! (`tabledata.insertAll`, each row with an `insertId` so that a resend is dropped
//! by BigQuery), table names from templates over the tag, record fields and the
//! event time, datasets and partitioned, clustered tables created when missing, and
//! per-row outcomes: rows BigQuery refuses for good go to the sink's dead-letter
//! output with its message, rate limits and outages are retried, refused credentials
//! are retried without end.
//!
//! ```yaml
//! sinks:
//!   bigquery:
//!     type: bigquery
//!     match: "kube.**"
//!     project: my-project
//!     dataset: logs
//!     table: "{kubernetes.namespace_name}"
//!     template_suffix: "_%Y%m%d"
//!     auto_create_table: true
//!     schema:
//!       - { name: time, type: TIMESTAMP }
//!       - { name: log, type: STRING }
//!     time_field: time
//! ```
//!
//! Built on the sink kit ([`nagare_core::sink`]), which batches, retries, splits,
//! dead-letters and acks:
//!
//! - `config.rs`: [`BigQueryConfig`], its sections and the API's limits.
//! - `table.rs`: which table each event goes to, names checked.
//! - [`schema`]: a table schema from the config, a `bq` schema file or the REST API.
//! - [`coerce`]: one value as a column type's JSON, where nothing is lost.
//! - [`rows`]: a record and its event time as one insertAll row, with its `insertId`.
//! - `request_builder.rs`: events to rows keyed by table (the kit's encoder), batches
//!   to insertAll bodies; pure.
//! - `service.rs`: the REST calls, dataset and table creation (the kit's service).
//! - `retry.rs`: what an answer means for each row.
//! - `reencode.rs`: rows refused for a field the table lacks, written again for the
//!   schema read again (`fetch_schema`).
//! - `sink.rs`: the component, and the method's driver started with the pieces above.
//! - [`storage_write`]: `method: storage_write`, the Storage Write API over gRPC.

pub mod coerce;
mod config;
mod reencode;
mod request_builder;
mod retry;
pub mod rows;
pub mod schema;
mod service;
mod sink;
pub mod storage_write;
mod table;
#[cfg(test)]
mod tests;

pub use config::{
    BatchConfig, BigQueryConfig, DEFAULT_ENDPOINT, DEFAULT_GRPC_ENDPOINT, Method, PartitionType,
    UnknownFields, WriteStream, limits,
};
pub use request_builder::{
    BodyOptions, InsertRequest, RequestBuilder, SharedRows, build, build_items,
};
pub use retry::{Failure, auth_hint, classify, outcomes};
pub use service::{BigQueryService, Rest};
pub use sink::{BigQuerySink, BigQuerySinkError, credentials, run};
pub use table::{
    Key, TableKey, TableTemplates, TimedTemplate, dataset_problem, project_problem, table_problem,
};
