//! `method: storage_write` as the sink runs it: the kit's driver with an encoder of
//! protobuf rows keyed by table (the tables of the same templates as `insert_all`)
//! and the write service; the offsets journal of committed streams at
//! `<data_dir>/bigquery-storage-write/<sink name>.journal`; the streams finalized at
//! shutdown.

use std::sync::Arc;
use std::time::Duration;

use nagare_core::component::{Invalid, SinkContext};
use nagare_core::sink::{self, Encoder, Event, Items, Words};

use super::super::config::{BigQueryConfig, WriteStream};
use super::super::request_builder::SharedRows;
use super::super::service::{BigQueryService, Rest};
use super::super::sink::{BigQuerySinkError, credentials, schema_rows};
use super::super::table::{Key, TableTemplates};
use super::client::{DEFAULT_GRPC_ENDPOINT, WriteClient};
use super::descriptor::descriptor;
use super::encode::{RowEncoder, push_row};
use super::journal::Journal;
use super::recovery::Committed;
use super::service::{Streams, WriteService};
use crate::gcp::{BIGQUERY_SCOPE, CredentialsSource, GoogleAuth};
use crate::sinks::bigquery::retry::auth_hint;

/// What the driver logs for this method.
const WORDS: Words = Words {
    kind: "bigquery",
    rejected: "BigQuery refused rows for good; wrote them to the dead-letter output",
    retry_some: "BigQuery did not take some rows; appending them again",
    retry_all: "the append failed; sending it again",
    split: "the append was refused as a whole; splitting it to find the row that causes it",
};

/// How long finalizing the streams may take at shutdown.
const FINALIZE_TIMEOUT: Duration = Duration::from_secs(10);

/// Events as protobuf rows keyed by table.
#[derive(Debug)]
pub struct WriteEncoder {
    tables: TableTemplates,
    rows: Arc<RowEncoder>,
}

impl Encoder for WriteEncoder {
    type Key = Key;

    fn encode(&mut self, event: Event<'_>, out: &mut Items<'_, Key>) {
        match self
            .tables
            .key_for(event.chunk.tag(), event.record, event.time)
        {
            Ok(key) => push_row(&self.rows, key, event, out),
            Err(reason) => out.refuse(&format!("no BigQuery table for the event: {reason}")),
        }
    }

    fn destination(&self, key: &Key) -> Option<(&'static str, String)> {
        Some(("table", key.to_string()))
    }
}

/// The journal file of the sink called `name`.
pub fn journal_path(data_dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    data_dir
        .join("bigquery-storage-write")
        .join(format!("{name}.journal"))
}

/// Runs `method: storage_write` until the buffer is closed and drained, or
/// `ctx.abort` is cancelled.
pub async fn run(config: BigQueryConfig, ctx: SinkContext) -> Result<(), BigQuerySinkError> {
    let invalid = |invalid| BigQuerySinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    };
    let source = credentials(&config);
    let grpc = config
        .grpc_endpoint
        .as_deref()
        .unwrap_or(DEFAULT_GRPC_ENDPOINT)
        .trim_end_matches('/')
        .to_string();
    // An emulator's plain endpoint takes no credentials, as the REST one.
    let source = match (&source, grpc.starts_with("http://")) {
        (CredentialsSource::None, _) => CredentialsSource::None,
        (_, true) if config.credentials_file.is_none() => CredentialsSource::None,
        _ => source,
    };
    let hint = auth_hint(&source.to_string(), &config.project);
    let auth = GoogleAuth::new(source, &[BIGQUERY_SCOPE])
        .await
        .map_err(|source| BigQuerySinkError::Auth {
            sink: ctx.name.clone(),
            source,
        })?;
    let auth = Arc::new(auth);
    let rest_client =
        Rest::new(&config, auth.clone()).map_err(|source| BigQuerySinkError::Client {
            sink: ctx.name.clone(),
            source,
        })?;
    let Some(rows) = schema_rows(&config, &rest_client, &ctx)
        .await
        .map_err(invalid)?
    else {
        return Ok(());
    };
    let rest = BigQueryService::new(&config, rest_client, rows.clone(), hint);
    let encoder = Arc::new(RowEncoder::new(current(&rows).as_ref().clone()));
    let schema =
        descriptor(encoder.schema()).map_err(|e| invalid(Invalid::new("schema", e.to_string())))?;
    let schema = Arc::new(schema);
    let client = WriteClient::new(&grpc, Some(auth.clone()), config.request_timeout.0)
        .map_err(|e| invalid(Invalid::new("grpc_endpoint", e.to_string())))?;
    let streams = match config.write_stream.unwrap_or(WriteStream::Committed) {
        WriteStream::Default => Streams::Default,
        WriteStream::Committed => {
            let path = journal_path(&ctx.data_dir, &ctx.name);
            let journal = Journal::open(&path)
                .map_err(|e| invalid(Invalid::new("write_stream", e.to_string())))?;
            Streams::Committed(Committed::new(journal))
        }
    };
    let workers = ctx.flush_thread_count();
    let mut pairs = Vec::with_capacity(workers);
    for _ in 0..workers {
        let encoder = WriteEncoder {
            tables: TableTemplates::new(&config).map_err(invalid)?,
            rows: encoder.clone(),
        };
        let service = WriteService::new(client.clone(), schema.clone(), streams.clone())
            .with_creator(rest.clone());
        pairs.push((encoder, service));
    }
    tracing::info!(
        sink = %ctx.name,
        method = "storage_write",
        write_stream = match streams { Streams::Committed(_) => "committed", Streams::Default => "default" },
        project = %config.project,
        dataset = %config.dataset,
        table = %config.table,
        grpc_endpoint = %grpc,
        credentials = %auth.source(),
        dead_letter = %ctx.dead_letter().path().display(),
        workers,
        "bigquery sink started"
    );
    sink::run(&ctx, config.batch.limits(), WORDS, pairs).await;
    if let Streams::Committed(c) = &streams {
        // Finalized now, the streams need no recovery at the next start.
        match tokio::time::timeout(FINALIZE_TIMEOUT, c.finalize_open(&client)).await {
            Ok(Ok(())) => {}
            Ok(Err(status)) => {
                tracing::warn!(sink = %ctx.name, reason = %status.message(), "could not finalize the write streams at shutdown; they are at the next start")
            }
            Err(_) => {
                tracing::warn!(sink = %ctx.name, "finalizing the write streams at shutdown took too long; they are at the next start")
            }
        }
    }
    Ok(())
}

fn current(rows: &SharedRows) -> Arc<super::super::rows::RowBuilder> {
    rows.read().unwrap_or_else(|p| p.into_inner()).clone()
}
