//! The sink: the kit's driver ([`nagare_core::sink`]) with this sink's encoder
//! (`request_builder.rs`), service (`service.rs`, answers read by `retry.rs`) and
//! words; [`run`] picks the method.
//!
//! With `insert_all`, rows are batched per table, at most `batch.max_events` rows
//! and `batch.max_bytes` per request, by the kit's batcher; a chunk whose events go
//! to several tables is split among them. Each lease is acked once every one of its
//! rows is in, or marked as dead-lettered once they are all resolved and some went
//! to the dead-letter output. `flush_thread_count` workers send side by side.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use nagare_core::config::ByteSize;
use nagare_core::sink::{self, Words};

use super::config::{BigQueryConfig, Method};
use super::request_builder::{RequestBuilder, SharedRows};
use super::retry::auth_hint;
use super::service::{BigQueryService, Rest};
use super::table::TableTemplates;
use crate::gcp::{BIGQUERY_SCOPE, CredentialsSource, GcpAuthError, GoogleAuth};

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum BigQuerySinkError {
    /// A setting is not usable.
    #[error("bigquery sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
    /// The credentials cannot be used.
    #[error("bigquery sink `{sink}`: {source}")]
    Auth {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: GcpAuthError,
    },
    /// The HTTP client could not be built (no TLS roots).
    #[error("bigquery sink `{sink}`: cannot build the HTTP client: {source}")]
    Client {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: reqwest::Error,
    },
}

/// The `bigquery` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct BigQuerySink;

impl SinkComponent for BigQuerySink {
    const TYPE: &'static str = "bigquery";
    type Config = BigQueryConfig;
    type Error = BigQuerySinkError;

    /// 1 MiB chunks, as Fluentd's BigQuery insert output has them: a request holds
    /// 500 rows (about 170 KB), so a larger chunk does not make requests larger, it
    /// only makes each worker hold more. With 8 MiB chunks an aggregator whose
    /// destination is slower than its input swung between 52 and 77 MiB of RSS as
    /// its 4 workers held one or two chunks each; with 1 MiB, 33 to 38 MiB
    /// (`bigquery_rss` bench, file buffer, 20,000 rows/s).
    const CHUNK_LIMIT_SIZE: Option<ByteSize> = Some(ByteSize(1024 * 1024));

    fn validate(config: &BigQueryConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(config: BigQueryConfig, ctx: SinkContext) -> Result<(), BigQuerySinkError> {
        run(config, ctx).await
    }
}

/// What the driver logs for this sink.
const WORDS: Words = Words {
    kind: "bigquery",
    rejected: "BigQuery refused rows for good; wrote them to the dead-letter output",
    retry_some: "BigQuery did not insert some rows; sending them again",
    retry_all: "insertAll failed; sending it again",
    split: "insertAll refused as a whole; splitting it to find the row that causes it",
};

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is
/// cancelled: the one place each method is started from.
pub async fn run(config: BigQueryConfig, ctx: SinkContext) -> Result<(), BigQuerySinkError> {
    config
        .validate()
        .map_err(|invalid| BigQuerySinkError::Config {
            sink: ctx.name.clone(),
            invalid,
        })?;
    match config.method {
        Method::InsertAll => run_insert_all(config, ctx).await,
        Method::StorageWrite => super::storage_write::sink::run(config, ctx).await,
    }
}

/// The credentials of a config: `credentials_file`, else none for an `http://`
/// endpoint (an emulator), else Application Default Credentials.
pub fn credentials(config: &BigQueryConfig) -> CredentialsSource {
    if config.credentials_file.is_none() && config.endpoint().starts_with("http://") {
        return CredentialsSource::None;
    }
    CredentialsSource::application_default(config.credentials_file.as_deref())
}

/// The rows of a config's schema, or of the table's when `fetch_schema` (read again
/// and again until it can be, or the sink stops with nothing to deliver or is
/// aborted).
pub(super) async fn schema_rows(
    config: &BigQueryConfig,
    rest: &Rest,
    ctx: &SinkContext,
) -> Result<Option<SharedRows>, Invalid> {
    let schema = match config.configured_schema()? {
        Some(schema) => schema,
        None => {
            let base = TableTemplates::new(config)?
                .base()
                .ok_or_else(|| Invalid::new("table", "fetch_schema needs a fixed table name"))?;
            let mut wait = Duration::from_millis(500);
            loop {
                match rest.fetch_schema(&base).await {
                    Ok(schema) => break schema,
                    Err(e) => tracing::warn!(
                        sink = %ctx.name, table = %base, error = %e,
                        "cannot read the table's schema (fetch_schema); trying again"
                    ),
                }
                tokio::select! {
                    () = ctx.stopped_before_start() => return Ok(None),
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    };
    // The options were checked against a configured schema already; against a
    // fetched one, here.
    let rows = config.row_builder(schema)?;
    Ok(Some(Arc::new(RwLock::new(Arc::new(rows)))))
}

/// The `insert_all` method.
async fn run_insert_all(config: BigQueryConfig, ctx: SinkContext) -> Result<(), BigQuerySinkError> {
    let invalid = |invalid| BigQuerySinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    };
    let source = credentials(&config);
    let hint = auth_hint(&source.to_string(), &config.project);
    let auth = GoogleAuth::new(source, &[BIGQUERY_SCOPE])
        .await
        .map_err(|source| BigQuerySinkError::Auth {
            sink: ctx.name.clone(),
            source,
        })?;
    let rest = Rest::new(&config, Arc::new(auth)).map_err(|source| BigQuerySinkError::Client {
        sink: ctx.name.clone(),
        source,
    })?;
    let Some(rows) = schema_rows(&config, &rest, &ctx).await.map_err(invalid)? else {
        return Ok(());
    };
    let credentials = rest.credentials().to_string();
    let service = BigQueryService::new(&config, rest, rows.clone(), hint);
    let workers = ctx.flush_thread_count();
    let mut pairs = Vec::with_capacity(workers);
    for _ in 0..workers {
        let builder = RequestBuilder::new(&config, rows.clone()).map_err(invalid)?;
        pairs.push((builder, service.clone()));
    }
    tracing::info!(
        sink = %ctx.name,
        method = "insert_all",
        project = %config.project,
        dataset = %config.dataset,
        table = %config.table,
        template_suffix = config.template_suffix.as_deref(),
        endpoint = %config.endpoint(),
        credentials = %credentials,
        dead_letter = %ctx.dead_letter().path().display(),
        workers,
        "bigquery sink started"
    );
    sink::run(&ctx, config.batch.limits(), WORDS, pairs).await;
    Ok(())
}
