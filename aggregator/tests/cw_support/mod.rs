//! What the cloudwatch_logs sink's tests share: the sink run in-process against
//! moto's server (signature checking on), with credentials a test can swap.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use nagare_aggregator::sinks::cloudwatch_logs::{self, CloudWatchLogsConfig};
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::{ConfigDocument, HumanDuration};
use nagare_core::receipt::Delivery;
use nagare_core::shutdown::Shutdown;
use nagare_core::testing::{chunk_of, close_and_drain, sink_context, with_receipt};
use nagare_core::{EventTime, Map};
use nagare_testkit::moto::{AccessKey, Moto};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("nagare_aggregator=debug,nagare_core=info")
        .with_test_writer()
        .try_init();
}

/// Credentials a test can change while the sink runs. Each is handed out with an
/// expiry a second away, so the SDK's identity cache asks again at every call, as it
/// does for short-lived credentials (an assumed role's) near their expiry.
#[derive(Debug, Clone)]
pub struct Swappable(pub Arc<Mutex<AccessKey>>);

impl Swappable {
    pub fn new(key: AccessKey) -> Self {
        Swappable(Arc::new(Mutex::new(key)))
    }

    pub fn set(&self, key: AccessKey) {
        *self.0.lock().unwrap() = key;
    }
}

impl ProvideCredentials for Swappable {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let key = self.0.lock().unwrap().clone();
        future::ProvideCredentials::ready(Ok(Credentials::new(
            key.id,
            key.secret,
            None,
            Some(SystemTime::now() + Duration::from_secs(1)),
            "nagare-tests",
        )))
    }
}

/// The SDK configuration the sink gets: region us-east-1, `credentials`.
pub fn sdk(credentials: &Swappable) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
        .build()
}

/// The sink's config: `endpoint`, quick batches, then `extra`.
pub fn config(endpoint: &str, extra: &str) -> CloudWatchLogsConfig {
    let yaml = format!(
        "endpoint: '{endpoint}'\nrequest_timeout: 10s\nbatch: {{ timeout: 100ms }}\n{extra}"
    );
    ConfigDocument::from_text("test.yaml", &yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A memory buffer's settings with short waits between retries.
pub fn fast_retries() -> BufferConfig {
    BufferConfig {
        retry_wait: HumanDuration::millis(50),
        retry_max_interval: HumanDuration::millis(300),
        ..BufferConfig::default()
    }
}

pub struct Running {
    pub buffer: Buffer,
    pub abort: Shutdown,
    pub task: JoinHandle<Result<(), cloudwatch_logs::CloudWatchLogsSinkError>>,
    pub dead_letter: PathBuf,
    _data: tempfile::TempDir,
}

/// Starts the sink with `credentials` (the moto user's unless given).
pub fn start(config: CloudWatchLogsConfig, credentials: Option<&Swappable>) -> Running {
    start_with(config, credentials, fast_retries())
}

/// [`start`] on a memory buffer with `settings`.
pub fn start_with(
    config: CloudWatchLogsConfig,
    credentials: Option<&Swappable>,
    settings: BufferConfig,
) -> Running {
    init_logs();
    let moto = Moto::shared();
    let own = Swappable::new(moto.credentials().clone());
    let credentials = credentials.unwrap_or(&own);
    let buffer = Buffer::new("cw", &settings);
    let data = tempfile::tempdir().unwrap();
    let (ctx, abort) = sink_context("cw", &buffer, data.path());
    let dead_letter = ctx.dead_letter().path().to_path_buf();
    let task = tokio::spawn(cloudwatch_logs::run_with(config, ctx, sdk(credentials)));
    Running {
        buffer,
        abort,
        task,
        dead_letter,
        _data: data,
    }
}

impl Running {
    /// Pushes a chunk of `events` under `tag`; its delivery comes on the receiver.
    pub async fn push(
        &self,
        tag: &str,
        events: Vec<(EventTime, Map)>,
    ) -> oneshot::Receiver<Delivery> {
        let (chunk, rx) = with_receipt(chunk_of(tag, events));
        self.buffer.push(chunk).await.unwrap();
        rx
    }

    /// The dead-letter lines so far.
    pub fn dead(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.dead_letter)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Closes the buffer and waits for the sink to drain it and return.
    pub async fn finish(self) {
        close_and_drain(&self.buffer, self.task, Duration::from_secs(30)).await;
    }
}

pub async fn outcome(rx: oneshot::Receiver<Delivery>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .expect("the chunk is resolved in time")
        .expect("the receipt fires")
}

/// `secs` seconds from now (negative: ago), as an event time.
pub fn from_now(secs: i64) -> EventTime {
    let now = EventTime::now();
    EventTime::new(now.secs() + secs, now.subsec_nanos())
}

/// The record `{"n": n, "msg": msg}`.
pub fn numbered(n: usize, msg: &str) -> Map {
    let mut m = Map::new();
    m.insert("n", n as i64);
    m.insert("msg", msg);
    m
}

/// The `n` field of each stored JSON message of `group`/`stream`.
pub fn stored_numbers(moto: &Moto, group: &str, stream: &str) -> Vec<i64> {
    moto.events(group, stream)
        .iter()
        .map(|e| {
            let v: serde_json::Value = serde_json::from_str(&e.message)
                .unwrap_or_else(|err| panic!("not JSON ({err}): {}", e.message));
            v["n"].as_i64().expect("an `n` field")
        })
        .collect()
}
