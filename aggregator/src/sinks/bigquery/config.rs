//! The `bigquery` sink's config.
//!
//! ```yaml
//! sinks:
//!   bigquery:
//!     type: bigquery
//!     match: "kube.**"
//!     method: insert_all
//!     project: my-project
//!     dataset: logs
//!     table: "{kubernetes.namespace_name}_%Y%m%d"
//!     auto_create_dataset: true
//!     auto_create_table: true
//!     schema:
//!       - { name: time, type: TIMESTAMP, mode: REQUIRED }
//!       - { name: log, type: STRING }
//!       - { name: extra, type: JSON }
//!     time_field: time
//!     unknown_fields: column
//!     unknown_fields_column: extra
//!     partition_field: time
//!     partition_type: DAY
//!     partition_expiration: 90d
//!     clustering_fields: [log]
//!     compression: gzip
//!     batch: { max_events: 500, max_bytes: 9MiB, timeout: 1s }
//! ```
//!
//! Retries and the number of requests in flight (`flush_thread_count`) are the
//! sink's `buffer:` settings; where refused rows go is its `dead_letter:`.

use std::path::PathBuf;

use nagare_core::compression::Compression;
use nagare_core::config::{ByteSize, HumanDuration};
use nagare_core::sink::BatchLimits;
use serde::Deserialize;

use super::rows::{RowBuilder, RowOptions, UnknownFields as RowUnknown};
use super::schema::{FieldConfig, FieldType, Mode, Schema};
use super::table::TableTemplates;
use nagare_core::component::Invalid;

/// BigQuery's limits that the sink enforces itself.
pub mod limits {
    /// The largest `tabledata.insertAll` request BigQuery takes (10 MB).
    pub const MAX_REQUEST_BYTES: usize = 10_000_000;
    /// Room kept for the body around the rows (`{"kind":..,"rows":[` ... `]}`).
    pub const ENVELOPE_BYTES: usize = 200;
    /// Most rows BigQuery takes in one insertAll request.
    pub const MAX_ROWS: usize = 50_000;
    /// Most clustering columns of a table.
    pub const MAX_CLUSTERING_FIELDS: usize = 4;
    /// The default request bound: under the 10 MB limit with room to spare.
    pub const DEFAULT_MAX_BYTES: u64 = 9 * 1024 * 1024;
    /// Rows per request BigQuery recommends, the default.
    pub const DEFAULT_MAX_ROWS: usize = 500;
}

/// The public REST endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://bigquery.googleapis.com";
/// The public Storage Write API endpoint.
pub const DEFAULT_GRPC_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";

/// Ships events as rows to BigQuery tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigQueryConfig {
    /// How rows are sent: `insert_all` (`tabledata.insertAll`, at-least-once with
    /// `insertId` dedupe) or `storage_write` (the Storage Write API).
    #[serde(default)]
    pub method: Method,
    /// The project of the tables, a template over the tag, record fields and the
    /// event time (strftime, UTC).
    pub project: String,
    /// The dataset, a template like `project`.
    pub dataset: String,
    /// The table, a template over the tag, record fields (`logs_{kubernetes.namespace_name}`)
    /// and the event time (`events_%Y%m%d`).
    pub table: String,
    /// Appended to the table name, a template like `table` (`_%Y%m%d`): rows go to
    /// `<table><suffix>`, created when missing from the base table's schema (or the
    /// configured one), as insertAll's `templateSuffix` does.
    #[serde(default)]
    pub template_suffix: Option<String>,
    /// Create a missing table with the schema, partitioning and clustering below.
    #[serde(default)]
    pub auto_create_table: bool,
    /// Create a missing dataset (before its table).
    #[serde(default)]
    pub auto_create_dataset: bool,
    /// The table schema: columns with `name`, `type`, `mode`, nested `fields`. One of
    /// `schema`, `schema_file` or `fetch_schema`.
    #[serde(default)]
    pub schema: Option<Vec<FieldConfig>>,
    /// A JSON schema file as `bq show --schema` writes it.
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Read the schema from the table itself (`tables.get`) at start, again when
    /// BigQuery says a row does not fit it. The table must then be a fixed name (per
    /// day or per namespace tables come from `template_suffix`).
    #[serde(default)]
    pub fetch_schema: bool,
    /// The TIMESTAMP, DATE or DATETIME column that partitions tables this sink
    /// creates. Unset with `partition_type`: partitioned by ingestion time.
    #[serde(default)]
    pub partition_field: Option<String>,
    /// `DAY` or `HOUR`: time partitioning of tables this sink creates.
    #[serde(default)]
    pub partition_type: Option<PartitionType>,
    /// How long partitions of tables this sink creates are kept (`90d`).
    #[serde(default)]
    pub partition_expiration: Option<HumanDuration>,
    /// Up to four top-level columns that cluster tables this sink creates.
    #[serde(default)]
    pub clustering_fields: Vec<String>,
    /// The top-level TIMESTAMP (or STRING) column that gets the event time.
    #[serde(default)]
    pub time_field: Option<String>,
    /// Record fields the schema lacks: `drop` them, keep them in
    /// `unknown_fields_column` as one JSON object (`column`), or send them for
    /// BigQuery to ignore (`ignore`, which sets `ignoreUnknownValues`).
    #[serde(default)]
    pub unknown_fields: UnknownFields,
    /// The top-level JSON (or STRING) column of `unknown_fields: column`.
    #[serde(default)]
    pub unknown_fields_column: Option<String>,
    /// Set `ignoreUnknownValues` on insertAll requests: BigQuery drops values that
    /// match no column instead of refusing the row.
    #[serde(default)]
    pub ignore_unknown_values: bool,
    /// Set `skipInvalidRows`: BigQuery inserts the valid rows of a request that has
    /// invalid ones (which go to the dead-letter output either way).
    #[serde(default)]
    pub skip_invalid_rows: bool,
    /// The record field (dotted path) whose value is the row's `insertId` (the tail
    /// source's `event_id_key`). Unset, or absent in a record: the chunk id and
    /// position the event first arrived at.
    #[serde(default)]
    pub insert_id_key: Option<String>,
    /// A service-account key file. Unset: `GOOGLE_APPLICATION_CREDENTIALS`, else the
    /// metadata server (GKE Workload Identity). With an `http://` `endpoint` (an
    /// emulator) and no `credentials_file`, requests carry no credentials.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// The REST endpoint (an emulator, a private endpoint). Unset:
    /// `https://bigquery.googleapis.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The Storage Write API's gRPC endpoint (`method: storage_write`). Unset:
    /// `https://bigquerystorage.googleapis.com`.
    #[serde(default)]
    pub grpc_endpoint: Option<String>,
    /// The Storage Write stream (`method: storage_write`): `committed` (exactly
    /// once, by offsets) or `default` (the `_default` stream, at-least-once).
    #[serde(default)]
    pub write_stream: Option<WriteStream>,
    /// How long one request may take before it is abandoned and retried.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: HumanDuration,
    /// `gzip` request bodies (`Content-Encoding: gzip`), or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// How rows are grouped into requests.
    #[serde(default)]
    pub batch: BatchConfig,
}

/// How rows are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// `tabledata.insertAll` over REST.
    #[default]
    InsertAll,
    /// The Storage Write API over gRPC.
    StorageWrite,
}

/// Time partitioning of created tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum PartitionType {
    /// One partition per day.
    #[serde(rename = "DAY")]
    Day,
    /// One partition per hour.
    #[serde(rename = "HOUR")]
    Hour,
}

impl PartitionType {
    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionType::Day => "DAY",
            PartitionType::Hour => "HOUR",
        }
    }
}

/// Record fields the schema lacks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// Left out.
    #[default]
    Drop,
    /// Kept in `unknown_fields_column`.
    Column,
    /// Sent, with `ignoreUnknownValues`.
    Ignore,
}

/// The Storage Write API's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteStream {
    /// A committed stream written at known offsets: exactly once.
    Committed,
    /// The table's `_default` stream: at-least-once.
    Default,
}

/// The `batch:` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most rows in one request (BigQuery recommends 500; at most 50,000).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Most bytes of rows in one request, before compression (under BigQuery's 10 MB
    /// request limit).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How long a partial batch waits for more rows before it is sent.
    #[serde(default = "default_batch_timeout")]
    pub timeout: HumanDuration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout: default_batch_timeout(),
        }
    }
}

impl BatchConfig {
    /// The sink kit's limits.
    pub fn limits(&self) -> BatchLimits {
        BatchLimits {
            max_events: self.max_events,
            max_bytes: self.max_bytes.as_usize(),
            max_span: None,
            timeout: self.timeout.0,
            chunk_at_a_time: false,
        }
    }
}

fn default_request_timeout() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_max_events() -> usize {
    limits::DEFAULT_MAX_ROWS
}

fn default_max_bytes() -> ByteSize {
    ByteSize(limits::DEFAULT_MAX_BYTES)
}

fn default_batch_timeout() -> HumanDuration {
    HumanDuration::secs(1)
}

fn url_problem(url: &str) -> Option<String> {
    (!(url.starts_with("http://") || url.starts_with("https://")))
        .then(|| format!("`{url}` is not an http:// or https:// URL"))
}

impl BigQueryConfig {
    /// Checks what serde cannot. Reads `schema_file`.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.validate_method()?;
        let schema = self.configured_schema()?;
        let templates = TableTemplates::new(self)?;
        if self.fetch_schema && !templates.fixed_table() {
            return Err(Invalid::new(
                "table",
                format!(
                    "fetch_schema reads the schema of one table, so `table` must be a fixed name, not `{}`; name the base table and put the varying part in `template_suffix`",
                    self.table
                ),
            ));
        }
        self.check_creation()?;
        if let Some(schema) = &schema {
            self.row_builder(schema.clone())?;
            self.check_table_columns(schema)?;
        } else {
            self.row_options()?;
        }
        let rows = self.batch.max_events;
        if rows == 0 || rows > limits::MAX_ROWS {
            return Err(Invalid::new(
                "batch.max_events",
                format!(
                    "{rows} is outside 1..={}, BigQuery's limit of rows per insertAll request",
                    limits::MAX_ROWS
                ),
            ));
        }
        let bytes = self.batch.max_bytes.as_usize();
        let most = limits::MAX_REQUEST_BYTES - limits::ENVELOPE_BYTES;
        if bytes == 0 || bytes > most {
            return Err(Invalid::new(
                "batch.max_bytes",
                format!("{bytes} is outside 1..={most}, under BigQuery's 10 MB request limit"),
            ));
        }
        if self.request_timeout.0.is_zero() {
            return Err(Invalid::new("request_timeout", "must be more than 0"));
        }
        if self.compression == Compression::Zstd {
            return Err(Invalid::new(
                "compression",
                "BigQuery takes gzip bodies only; use `gzip` or `none`",
            ));
        }
        for (key, url) in [
            ("endpoint", &self.endpoint),
            ("grpc_endpoint", &self.grpc_endpoint),
        ] {
            if let Some(problem) = url.as_deref().and_then(url_problem) {
                return Err(Invalid::new(key, problem));
            }
        }
        if self.insert_id_key.as_deref() == Some("") {
            return Err(Invalid::new(
                "insert_id_key",
                "must not be empty; remove it for ids from the chunk id and position",
            ));
        }
        Ok(())
    }

    /// The method's own keys.
    fn validate_method(&self) -> Result<(), Invalid> {
        match self.method {
            Method::InsertAll => {
                for (key, set) in [
                    ("write_stream", self.write_stream.is_some()),
                    ("grpc_endpoint", self.grpc_endpoint.is_some()),
                ] {
                    if set {
                        return Err(Invalid::new(
                            key,
                            "only used with `method: storage_write`; remove it, or set the method",
                        ));
                    }
                }
                Ok(())
            }
            Method::StorageWrite => {
                if self.unknown_fields == UnknownFields::Ignore {
                    return Err(Invalid::new(
                        "unknown_fields",
                        "`ignore` sends fields the schema lacks for BigQuery to drop, which a protobuf row of the Storage Write API has no place for; use `drop` or `column`",
                    ));
                }
                if self.insert_id_key.is_some() {
                    return Err(Invalid::new(
                        "insert_id_key",
                        "only used with `method: insert_all` (the Storage Write API deduplicates by stream offsets); remove it",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The schema given by `schema` or `schema_file`, or `None` with `fetch_schema`.
    pub fn configured_schema(&self) -> Result<Option<Schema>, Invalid> {
        match (&self.schema, &self.schema_file, self.fetch_schema) {
            (Some(_), Some(_), _) => Err(Invalid::new(
                "schema_file",
                "set either `schema` (in the config) or `schema_file`, not both",
            )),
            (Some(_), None, true) | (None, Some(_), true) => Err(Invalid::new(
                "fetch_schema",
                "the schema is given already (`schema` or `schema_file`); remove `fetch_schema`, or the schema",
            )),
            (None, None, false) => Err(Invalid::new(
                "schema",
                "rows are converted to the table's schema: give `schema`, `schema_file`, or `fetch_schema: true`",
            )),
            (Some(fields), None, false) => Schema::from_config(fields)
                .map(Some)
                .map_err(|e| Invalid::new("schema", e.to_string())),
            (None, Some(path), false) => Schema::from_file(path)
                .map(Some)
                .map_err(|e| Invalid::new("schema_file", e.to_string())),
            (None, None, true) => Ok(None),
        }
    }

    /// What rows are made with, besides the schema.
    pub fn row_options(&self) -> Result<RowOptions, Invalid> {
        let unknown_fields = match (self.unknown_fields, &self.unknown_fields_column) {
            (UnknownFields::Column, Some(column)) => RowUnknown::Column(column.clone()),
            (UnknownFields::Column, None) => {
                return Err(Invalid::new(
                    "unknown_fields_column",
                    "`unknown_fields: column` needs the column: name a top-level JSON column",
                ));
            }
            (_, Some(_)) => {
                return Err(Invalid::new(
                    "unknown_fields_column",
                    "only used with `unknown_fields: column`",
                ));
            }
            (UnknownFields::Drop, None) => RowUnknown::Drop,
            (UnknownFields::Ignore, None) => RowUnknown::Ignore,
        };
        Ok(RowOptions {
            time_field: self.time_field.clone(),
            unknown_fields,
            insert_id_key: self.insert_id_key.clone(),
        })
    }

    /// The row builder for `schema`; errors name the key.
    pub fn row_builder(&self, schema: Schema) -> Result<RowBuilder, Invalid> {
        let options = self.row_options()?;
        RowBuilder::new(schema, options).map_err(|e| {
            let key = match e {
                super::rows::RowSetupError::NoTimeColumn(_)
                | super::rows::RowSetupError::TimeColumnType { .. } => "time_field",
                _ => "unknown_fields_column",
            };
            Invalid::new(key, e.to_string())
        })
    }

    /// Whether requests set `ignoreUnknownValues`.
    pub fn sends_ignore_unknown_values(&self) -> bool {
        self.ignore_unknown_values || self.unknown_fields == UnknownFields::Ignore
    }

    /// The partition and clustering columns exist in `schema`, of fitting types.
    fn check_table_columns(&self, schema: &Schema) -> Result<(), Invalid> {
        if let Some(name) = &self.partition_field {
            let f = schema.field(name).ok_or_else(|| {
                Invalid::new(
                    "partition_field",
                    format!("`{name}` is not a top-level column of the schema"),
                )
            })?;
            let fits = matches!(
                f.field_type,
                FieldType::Timestamp | FieldType::Date | FieldType::Datetime
            );
            if !fits || f.mode == Mode::Repeated {
                return Err(Invalid::new(
                    "partition_field",
                    format!(
                        "`{name}` is a {} {} column; time partitioning needs a TIMESTAMP, DATE or DATETIME one that is not REPEATED",
                        f.mode.as_str(),
                        f.field_type.as_str()
                    ),
                ));
            }
        }
        for (i, name) in self.clustering_fields.iter().enumerate() {
            let f = schema.field(name).ok_or_else(|| {
                Invalid::new(
                    format!("clustering_fields.{i}"),
                    format!("`{name}` is not a top-level column of the schema"),
                )
            })?;
            if f.mode == Mode::Repeated
                || matches!(
                    f.field_type,
                    FieldType::Record | FieldType::Json | FieldType::Float
                )
            {
                return Err(Invalid::new(
                    format!("clustering_fields.{i}"),
                    format!(
                        "`{name}` is a {} {} column; BigQuery clusters on non-REPEATED scalar columns other than FLOAT and JSON",
                        f.mode.as_str(),
                        f.field_type.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The table settings only apply to tables the sink creates.
    fn check_creation(&self) -> Result<(), Invalid> {
        if self.clustering_fields.len() > limits::MAX_CLUSTERING_FIELDS {
            return Err(Invalid::new(
                "clustering_fields",
                format!(
                    "{} columns; BigQuery clusters on at most {}",
                    self.clustering_fields.len(),
                    limits::MAX_CLUSTERING_FIELDS
                ),
            ));
        }
        if self.partition_field.is_some() && self.partition_type.is_none() {
            return Err(Invalid::new(
                "partition_type",
                "`partition_field` needs `partition_type: DAY` or `HOUR`",
            ));
        }
        if self.partition_expiration.is_some() && self.partition_type.is_none() {
            return Err(Invalid::new(
                "partition_type",
                "`partition_expiration` needs `partition_type: DAY` or `HOUR`",
            ));
        }
        if self.partition_expiration.is_some_and(|d| d.0.is_zero()) {
            return Err(Invalid::new("partition_expiration", "must be more than 0"));
        }
        if !self.auto_create_table {
            for (key, set) in [
                ("partition_type", self.partition_type.is_some()),
                ("clustering_fields", !self.clustering_fields.is_empty()),
            ] {
                if set {
                    return Err(Invalid::new(
                        key,
                        "only applies to tables the sink creates; set `auto_create_table: true`, or remove it",
                    ));
                }
            }
        }
        if self.auto_create_table && self.fetch_schema && self.template_suffix.is_none() {
            return Err(Invalid::new(
                "auto_create_table",
                "with `fetch_schema` the table must exist to be read; tables are created only from it with `template_suffix`, or from `schema` / `schema_file`",
            ));
        }
        Ok(())
    }

    /// The REST endpoint, without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
    }
}
