//! Sends PutLogEvents calls with the AWS SDK, and, as the kit's [`Service`], builds a
//! batch's call and says what its answer means (`retry.rs`).
//!
//! A group or stream found missing is created when allowed (a group with its
//! retention, class, tags and KMS key; one that exists already is fine) and the call
//! sent again. Streams known to exist are remembered, shared by the workers, so a
//! stream is created before its first call rather than after a refused one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::config::retry::RetryConfig;
use aws_sdk_cloudwatchlogs::config::timeout::TimeoutConfig;
use aws_sdk_cloudwatchlogs::types::LogGroupClass as SdkClass;
use nagare_core::sink::{BatchOutcome, Item, Sent, Service};

use super::config::{CloudWatchLogsConfig, LogGroupClass};
use super::request_builder::{self, Key, PutRequest};
use super::retry::{self, Failure};

/// Most streams remembered as existing. Pods come and go, so the set would grow
/// without end on a long-running aggregator; past this many it starts again empty,
/// which costs each stream one CreateLogStream call answered "already exists".
const KNOWN_STREAMS: usize = 65_536;

/// What the sink may create, and how.
#[derive(Debug, Clone)]
struct Creation {
    groups: bool,
    streams: bool,
    retention_days: Option<u32>,
    class: Option<LogGroupClass>,
    tags: Vec<(String, String)>,
    kms_key_id: Option<String>,
}

/// Sends calls to CloudWatch Logs; one per worker, sharing the client and the
/// streams known to exist.
#[derive(Debug, Clone)]
pub struct LogsService {
    client: Client,
    creation: Arc<Creation>,
    known: Arc<Mutex<HashSet<Key>>>,
    hint: Arc<str>,
}

impl LogsService {
    /// A service for a validated config, with the SDK configuration of its `aws:`
    /// block; `hint` is what to check when credentials are refused.
    pub fn new(config: &CloudWatchLogsConfig, sdk: &aws_config::SdkConfig, hint: String) -> Self {
        let mut builder = aws_sdk_cloudwatchlogs::config::Builder::from(sdk)
            // The kit retries, with the buffer's policy and per-event outcomes.
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(config.request_timeout.0)
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        LogsService {
            client: Client::from_conf(builder.build()),
            creation: Arc::new(Creation {
                groups: config.auto_create_group,
                streams: config.auto_create_stream,
                retention_days: config.log_retention_days,
                class: config.log_group_class,
                tags: config
                    .log_group_tags
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                kms_key_id: config.kms_key_id.clone(),
            }),
            known: Arc::default(),
            hint: hint.into(),
        }
    }

    fn known(&self, key: &Key) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    fn remember(&self, key: &Key, exists: bool) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if exists {
            if known.len() >= KNOWN_STREAMS && !known.contains(key) {
                known.clear();
            }
            known.insert(key.clone());
        } else {
            known.remove(key);
        }
    }

    /// One PutLogEvents call.
    async fn put(&self, request: &PutRequest) -> Result<BatchOutcome, Failure> {
        let out = self
            .client
            .put_log_events()
            .log_group_name(&request.key.group)
            .log_stream_name(&request.key.stream)
            .set_log_events(Some(request.events.clone()))
            .send()
            .await
            .map_err(|e| Failure::from_sdk(&e))?;
        Ok(retry::outcomes(
            out.rejected_log_events_info(),
            &request.order,
        ))
    }

    /// Creates the stream of `key`, and its group first if that is missing too.
    async fn create_stream(&self, key: &Key) -> Result<(), BatchOutcome> {
        match self.try_create_stream(key).await {
            Ok(()) => return Ok(()),
            Err(f) if f.is_not_found() => {}
            Err(f) => return Err(retry::classify(&f, &self.hint)),
        }
        if !self.creation.groups {
            return Err(retry::missing("group", &key.group));
        }
        self.create_group(&key.group).await?;
        self.try_create_stream(key)
            .await
            .map_err(|f| retry::classify(&f, &self.hint))
    }

    async fn try_create_stream(&self, key: &Key) -> Result<(), Failure> {
        let created = self
            .client
            .create_log_stream()
            .log_group_name(&key.group)
            .log_stream_name(&key.stream)
            .send()
            .await;
        match created.map_err(|e| Failure::from_sdk(&e)) {
            Ok(_) => {
                tracing::info!(log_group = %key.group, log_stream = %key.stream, "created the log stream");
            }
            Err(f) if f.is_already_there() => {}
            Err(f) => return Err(f),
        }
        self.remember(key, true);
        Ok(())
    }

    /// Creates `group` with the configured retention, class, tags and KMS key; a
    /// group that exists already is left as it is.
    async fn create_group(&self, group: &str) -> Result<(), BatchOutcome> {
        let c = &self.creation;
        let mut call = self
            .client
            .create_log_group()
            .log_group_name(group)
            .set_kms_key_id(c.kms_key_id.clone());
        for (k, v) in &c.tags {
            call = call.tags(k, v);
        }
        if let Some(class) = c.class {
            call = call.log_group_class(SdkClass::from(class.as_str()));
        }
        match call.send().await.map_err(|e| Failure::from_sdk(&e)) {
            Ok(_) => {}
            Err(f) if f.is_already_there() => return Ok(()),
            Err(f) => return Err(retry::classify(&f, &self.hint)),
        }
        tracing::info!(log_group = %group, retention_days = c.retention_days, class = c.class.map(LogGroupClass::as_str), "created the log group");
        if let Some(days) = c.retention_days {
            self.client
                .put_retention_policy()
                .log_group_name(group)
                .retention_in_days(days as i32)
                .send()
                .await
                .map_err(|e| retry::classify(&Failure::from_sdk(&e), &self.hint))?;
        }
        Ok(())
    }
}

impl Service<Key> for LogsService {
    type Request = PutRequest;

    fn build(&mut self, key: &Key, items: &mut [Item<Key>]) -> PutRequest {
        request_builder::build(key, items)
    }

    fn restore(&mut self, request: PutRequest, items: &mut [Item<Key>]) {
        request_builder::restore(request, items);
    }

    async fn send(&mut self, request: &mut PutRequest) -> Sent {
        let key = request.key.clone();
        let destination = format!("{}:{}", key.group, key.stream);
        let sent = |outcome| Sent {
            destination: destination.clone(),
            outcome,
        };
        if self.creation.streams
            && !self.known(&key)
            && let Err(outcome) = self.create_stream(&key).await
        {
            return sent(outcome);
        }
        match self.put(request).await {
            Ok(outcome) => {
                self.remember(&key, true);
                return sent(outcome);
            }
            Err(f) if f.is_not_found() => self.remember(&key, false),
            Err(f) => return sent(retry::classify(&f, &self.hint)),
        }
        // Deleted since it was known, or never created here.
        if !self.creation.streams {
            return sent(retry::missing("stream", &destination));
        }
        if let Err(outcome) = self.create_stream(&key).await {
            return sent(outcome);
        }
        match self.put(request).await {
            Ok(outcome) => sent(outcome),
            Err(f) => sent(retry::classify(&f, &self.hint)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::cloudwatch_logs::request_builder::StreamKey;

    #[test]
    fn the_streams_remembered_are_bounded() {
        let config: CloudWatchLogsConfig = serde_json::from_value(
            serde_json::json!({ "log_group_name": "g", "log_stream_name": "s" }),
        )
        .unwrap();
        let sdk = aws_config::SdkConfig::builder().build();
        let service = LogsService::new(&config, &sdk, String::new());
        let key = |n: usize| Key::new(StreamKey::new("g", &format!("pod-{n}")));
        for n in 0..KNOWN_STREAMS + 10 {
            service.remember(&key(n), true);
        }
        let held = service.known.lock().unwrap().len();
        assert!((1..=KNOWN_STREAMS).contains(&held), "{held} streams held");
        assert!(service.known(&key(KNOWN_STREAMS + 9)));
        service.remember(&key(KNOWN_STREAMS + 9), false);
        assert!(!service.known(&key(KNOWN_STREAMS + 9)));
    }
}
