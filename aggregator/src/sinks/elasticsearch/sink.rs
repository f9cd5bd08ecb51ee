//! The sink: the kit's driver ([`nagare_core::sink`]) with this sink's encoder
//! (`request_builder.rs`), service (`service.rs`, answers read by `retry.rs`) and
//! words.
//!
//! First, once: the `tls:` files are read (a mistake fails the start), and
//! `startup.rs` learns the cluster's API and installs the index template, asking
//! again with backoff while the cluster does not answer; chunks wait in the buffer
//! meanwhile. Elasticsearch 6 turns on `_type: _doc` in the request builder.
//!
//! Events of several chunks share a request, and a chunk larger than a batch is
//! spread over several; each lease is acked once every one of its events is stored,
//! or marked as dead-lettered once they are all resolved and some went to the
//! dead-letter output (its source learns not everything arrived). Events refused for
//! good (a mapping conflict) go to the dead-letter output at once; events refused for
//! now (429, 5xx) and requests that fail are sent again, alone, under the buffer's
//! retry policy, until they are stored or their retries run out (`retry_timeout`,
//! `retry_max_times`), when they too go to the dead-letter output with the last
//! reason. A request refused as a whole (400, 413) is split to find the event that
//! causes it.
//!
//! `flush_thread_count` workers run side by side, each with its own batches and one
//! request in flight; while they retry, new chunks wait in the buffer, which pushes
//! back on the sources. Each event's `_id` derives from the chunk it arrived in and
//! its position there ([`Chunk::event_ids`](nagare_core::Chunk::event_ids)), so a
//! chunk sent again, even merged into another by a buffer, overwrites itself; except
//! on OpenSearch Serverless (`aws.service: aoss`), which makes its own ids.
//!
//! With `aws:`, every request is signed (SigV4, `auth.rs`) with credentials from the
//! `aws:` block's chain; 401 and 403 block the sink (sent again without end, never
//! dead-lettered) with what to check.

use std::sync::Arc;

use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use nagare_core::sink::{self, Words};

use super::auth::{AwsSigner, SignError, auth_hint};
use super::client::{self, Auth, ClientError};
use super::config::ElasticsearchConfig;
use super::index::IndexTarget;
use super::request_builder::RequestBuilder;
use super::service::BulkService;
use super::startup::Startup;
use super::stats::BulkStats;
use crate::aws::AwsError;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchSinkError {
    /// A setting is not usable.
    #[error("elasticsearch sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
    /// The HTTP client could not be set up (the `tls:` files, roots, resolver).
    #[error("elasticsearch sink `{sink}`: cannot set up the HTTP client: {source}")]
    Client {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: ClientError,
    },
    /// No AWS region or credentials set-up for `aws:`.
    #[error("elasticsearch sink `{sink}`: {source}")]
    Aws {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: AwsError,
    },
    /// No credentials provider for `aws:`.
    #[error("elasticsearch sink `{sink}`: {source}")]
    Signer {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: SignError,
    },
}

/// The `elasticsearch` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct ElasticsearchSink;

impl SinkComponent for ElasticsearchSink {
    const TYPE: &'static str = "elasticsearch";
    type Config = ElasticsearchConfig;
    type Error = ElasticsearchSinkError;

    fn validate(config: &ElasticsearchConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(
        config: ElasticsearchConfig,
        ctx: SinkContext,
    ) -> Result<(), ElasticsearchSinkError> {
        run(config, ctx).await
    }
}

/// What the driver logs for this sink.
const WORDS: Words = Words {
    kind: "elasticsearch",
    rejected: "Elasticsearch refused events for good; wrote them to the dead-letter output",
    retry_some: "Elasticsearch refused some events for now; sending them again",
    retry_all: "bulk request failed; sending it again",
    split: "bulk request refused as a whole; splitting it to find the event that causes it",
};

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled.
pub async fn run(
    config: ElasticsearchConfig,
    ctx: SinkContext,
) -> Result<(), ElasticsearchSinkError> {
    let invalid = |invalid| ElasticsearchSinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    };
    config.validate().map_err(invalid)?;
    let signer = match &config.aws {
        Some(aws) => {
            let sdk = aws
                .sdk_config()
                .await
                .map_err(|source| ElasticsearchSinkError::Aws {
                    sink: ctx.name.clone(),
                    source,
                })?;
            let service = config.aws_service().unwrap_or_default();
            let signer =
                AwsSigner::new(&sdk, service).map_err(|source| ElasticsearchSinkError::Signer {
                    sink: ctx.name.clone(),
                    source,
                })?;
            let hint = auth_hint(aws, signer.region(), service);
            tracing::info!(
                sink = %ctx.name,
                region = signer.region(),
                service = service.as_str(),
                credentials = %aws.credentials_source(),
                "elasticsearch sink signs its requests with AWS SigV4"
            );
            Some((Auth::Aws(Arc::new(signer)), hint))
        }
        None => None,
    };
    let client_error = |source| ElasticsearchSinkError::Client {
        sink: ctx.name.clone(),
        source,
    };
    // Every `tls:` file is read here, so that a mistake fails the start.
    let http = client::http_client(&config).map_err(client_error)?;
    let endpoints = client::endpoints(&config).map_err(client_error)?;
    let (auth, hint) = match &signer {
        Some((aws, hint)) => (aws.clone(), hint.clone()),
        None => {
            let auth = Auth::of(&config);
            let hint = auth.hint();
            (auth, hint)
        }
    };
    let startup = Startup {
        sink: &ctx.name,
        config: &config,
        client: &http,
        endpoints: &endpoints,
        auth: &auth,
        hint: &hint,
    };
    let Some(cluster) = startup.run(ctx.stopped_before_start()).await else {
        // Stopped before the cluster answered: every chunk stays in the buffer.
        return Ok(());
    };
    let type_name = cluster.wants_type_name() && !config.suppress_type_name;
    let workers = ctx.flush_thread_count();
    let mut pairs = Vec::with_capacity(workers);
    let stats = BulkStats::new(&ctx.metrics);
    for _ in 0..workers {
        let mut builder = RequestBuilder::new(&config)
            .map_err(invalid)?
            .count_fallbacks(stats.fallbacks())
            .omit_ids(config.serverless());
        builder.set_type_name(type_name);
        let mut service = BulkService::new(&config)
            .map_err(client_error)?
            .with_stats(stats.clone());
        if let Some((auth, hint)) = &signer {
            service = service.with_auth(auth.clone(), hint.clone());
        }
        pairs.push((builder, service));
    }
    tracing::info!(
        sink = %ctx.name,
        endpoints = ?endpoints,
        %cluster,
        type_name,
        index = %describe_target(&config),
        op_type = config.op_type().config_name(),
        dead_letter = %ctx.dead_letter().path().display(),
        workers,
        "elasticsearch sink started"
    );
    sink::run(&ctx, config.batch.limits(), WORDS, pairs).await;
    Ok(())
}

/// Where events go, for the start line.
fn describe_target(config: &ElasticsearchConfig) -> String {
    match config.index_target() {
        Ok(IndexTarget::Fixed(index)) => index,
        Ok(IndexTarget::Daily { prefix, format }) => format!("{prefix}-{format}"),
        Ok(IndexTarget::Templated { index, .. }) => index.to_string(),
        Ok(IndexTarget::DataStream { parts, .. }) => {
            format!("data stream {}-{}-{}", parts[0], parts[1], parts[2])
        }
        Err(e) => e.message,
    }
}
