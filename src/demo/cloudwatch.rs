//! `nagare demo --cloudwatch <endpoint>`: the aggregator also delivers to CloudWatch
//! Logs (or an emulator of it) at that endpoint, and the demo reads back what arrived,
//! per group and stream.
//!
//! The groups of one run are named `/nagare-demo/<run>/<namespace>`, `<run>` new each
//! time, so that what an earlier run left behind is not counted.

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_cloudwatchlogs::Client;
use nagare_aggregator::aws::AwsConfig;

/// The CloudWatch Logs endpoint the demo delivers to, and a client to read it back.
pub(super) struct CloudWatch {
    endpoint: String,
    region: String,
    /// `/nagare-demo/<run>`: every group of this run starts with it.
    prefix: String,
    client: Client,
    runtime: tokio::runtime::Runtime,
}

/// What arrived: events per group and stream, and one message.
pub(super) struct Arrived {
    pub(super) total: usize,
    pub(super) by_stream: BTreeMap<(String, String), usize>,
    pub(super) sample: Option<String>,
}

impl CloudWatch {
    /// A client for `endpoint`, with the credentials the aggregator will use too (the
    /// SDK's default chain: environment, profile, ...), in `region`.
    pub(super) fn new(endpoint: &str, region: &str) -> anyhow::Result<CloudWatch> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let aws = AwsConfig {
            region: Some(region.to_string()),
            ..AwsConfig::default()
        };
        let sdk = runtime.block_on(aws.sdk_config())?;
        let config = aws_sdk_cloudwatchlogs::config::Builder::from(&sdk)
            .endpoint_url(endpoint)
            .build();
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        Ok(CloudWatch {
            endpoint: endpoint.to_string(),
            region: region.to_string(),
            prefix: format!("/nagare-demo/{run}-{:04x}", rand::random::<u16>()),
            client: Client::from_conf(config),
            runtime,
        })
    }

    /// Where the demo delivers, for its summary.
    pub(super) fn describe(&self) -> String {
        format!(
            "cloudwatch_logs {} (groups {}/<namespace>, streams <pod>/<container>)",
            self.endpoint, self.prefix
        )
    }

    /// The aggregator's sink, as config text (indented as an entry of `sinks:`).
    pub(super) fn sink(&self) -> String {
        format!(
            "  cloudwatch:\n    type: cloudwatch_logs\n    match: \"kube.**\"\n    log_group_name: \"{prefix}/{{kubernetes.namespace_name}}\"\n    log_stream_name: \"{{kubernetes.pod_name}}/{{kubernetes.container_name}}\"\n    endpoint: \"{endpoint}\"\n    aws:\n      region: {region}\n",
            prefix = self.prefix,
            endpoint = self.endpoint,
            region = self.region,
        )
    }

    /// Reads every event of this run's groups.
    pub(super) fn arrived(&self) -> anyhow::Result<Arrived> {
        self.runtime.block_on(self.read())
    }

    async fn read(&self) -> anyhow::Result<Arrived> {
        let mut arrived = Arrived {
            total: 0,
            by_stream: BTreeMap::new(),
            sample: None,
        };
        let context = || format!("cannot read back from CloudWatch Logs at {}", self.endpoint);
        let groups = self
            .client
            .describe_log_groups()
            .log_group_name_prefix(&self.prefix)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .with_context(context)?;
        for group in groups.iter().filter_map(|g| g.log_group_name()) {
            let streams = self
                .client
                .describe_log_streams()
                .log_group_name(group)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .with_context(context)?;
            for stream in streams.iter().filter_map(|s| s.log_stream_name()) {
                let mut token: Option<String> = None;
                let mut count = 0;
                loop {
                    let page = self
                        .client
                        .get_log_events()
                        .log_group_name(group)
                        .log_stream_name(stream)
                        .start_from_head(true)
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .with_context(context)?;
                    let events = page.events();
                    count += events.len();
                    if arrived.sample.is_none()
                        && let Some(message) = events.first().and_then(|e| e.message())
                    {
                        arrived.sample = Some(message.to_string());
                    }
                    // The last page repeats the token it was asked with.
                    let next = page.next_forward_token().map(str::to_string);
                    if events.is_empty() || next == token {
                        break;
                    }
                    token = next;
                }
                arrived.total += count;
                arrived
                    .by_stream
                    .insert((group.to_string(), stream.to_string()), count);
            }
        }
        Ok(arrived)
    }
}
