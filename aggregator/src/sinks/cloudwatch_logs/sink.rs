//! The sink: the kit's driver ([`nagare_core::sink`]) with this sink's encoder
//! (`request_builder.rs`), service (`service.rs`, answers read by `retry.rs`) and
//! words.
//!
//! Events are batched per log group and stream, at most 10,000 events, 1,048,576
//! bytes (messages + 26 per event) and 24 hours per call, by the kit's batcher; a
//! chunk whose events go to several streams is split among them. Each lease is acked
//! once every one of its events is stored, or marked as dead-lettered once they are
//! all resolved and some went to the dead-letter output. `flush_thread_count`
//! workers send side by side (CloudWatch Logs takes concurrent calls per stream).

use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use nagare_core::sink::{self, Words};

use super::config::CloudWatchLogsConfig;
use super::request_builder::RequestBuilder;
use super::retry::auth_hint;
use super::service::LogsService;
use crate::aws::AwsError;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum CloudWatchLogsSinkError {
    /// A setting is not usable.
    #[error("cloudwatch_logs sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
    /// No region or credentials setup.
    #[error("cloudwatch_logs sink `{sink}`: {source}")]
    Aws {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: AwsError,
    },
}

/// The `cloudwatch_logs` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct CloudWatchLogsSink;

impl SinkComponent for CloudWatchLogsSink {
    const TYPE: &'static str = "cloudwatch_logs";
    type Config = CloudWatchLogsConfig;
    type Error = CloudWatchLogsSinkError;

    fn validate(config: &CloudWatchLogsConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(
        config: CloudWatchLogsConfig,
        ctx: SinkContext,
    ) -> Result<(), CloudWatchLogsSinkError> {
        run(config, ctx).await
    }
}

/// What the driver logs for this sink.
const WORDS: Words = Words {
    kind: "cloudwatch_logs",
    rejected: "CloudWatch Logs refused events for good; wrote them to the dead-letter output",
    retry_some: "CloudWatch Logs refused some events for now; sending them again",
    retry_all: "PutLogEvents failed; sending it again",
    split: "PutLogEvents refused as a whole; splitting it to find the event that causes it",
};

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled.
pub async fn run(
    config: CloudWatchLogsConfig,
    ctx: SinkContext,
) -> Result<(), CloudWatchLogsSinkError> {
    let invalid = |invalid| CloudWatchLogsSinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    };
    config.validate().map_err(invalid)?;
    let sdk = config
        .aws
        .sdk_config()
        .await
        .map_err(|source| CloudWatchLogsSinkError::Aws {
            sink: ctx.name.clone(),
            source,
        })?;
    run_with(config, ctx, sdk).await
}

/// [`run`] with the AWS SDK's configuration (region, credentials) given rather than
/// loaded from the `aws:` block: for callers that build their own.
pub async fn run_with(
    config: CloudWatchLogsConfig,
    ctx: SinkContext,
    sdk: aws_config::SdkConfig,
) -> Result<(), CloudWatchLogsSinkError> {
    let invalid = |invalid| CloudWatchLogsSinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    };
    config.validate().map_err(invalid)?;
    let region = sdk.region().map(|r| r.to_string()).unwrap_or_default();
    let hint = auth_hint(
        config.aws.role_arn.as_deref(),
        config.aws.profile.as_deref(),
        &region,
    );
    let service = LogsService::new(&config, &sdk, hint);
    let workers = ctx.flush_thread_count();
    let mut pairs = Vec::with_capacity(workers);
    for _ in 0..workers {
        let builder = RequestBuilder::new(&config, &ctx.name).map_err(invalid)?;
        pairs.push((builder, service.clone()));
    }
    let stream = config.log_stream_name.clone().or_else(|| {
        config
            .log_stream_prefix
            .as_ref()
            .map(|p| format!("{p}{{tag}}"))
    });
    tracing::info!(
        sink = %ctx.name,
        log_group_name = %config.log_group_name,
        log_group_name_fallback = config.log_group_name_fallback.as_deref(),
        log_stream_name = stream.as_deref(),
        log_stream_name_fallback = config.log_stream_name_fallback.as_deref(),
        region = %region,
        endpoint = config.endpoint.as_deref().unwrap_or("the region's"),
        role_arn = config.aws.role_arn.as_deref(),
        dead_letter = %ctx.dead_letter().path().display(),
        workers,
        "cloudwatch_logs sink started"
    );
    sink::run(&ctx, config.batch.limits(), WORDS, pairs).await;
    Ok(())
}
