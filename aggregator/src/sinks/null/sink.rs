//! The `null` sink's loop: every chunk is acked as soon as it is counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nagare_core::component::{Invalid, SinkComponent, SinkContext};
use tokio::time::{Instant, MissedTickBehavior};

use super::config::NullConfig;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum NullSinkError {
    /// A setting is not usable.
    #[error("null sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
}

/// The `null` sink, as the binary's component list names it.
#[derive(Debug)]
pub struct NullSink;

impl SinkComponent for NullSink {
    const TYPE: &'static str = "null";
    type Config = NullConfig;
    type Error = NullSinkError;

    fn validate(config: &NullConfig) -> Result<(), Invalid> {
        config.validate()
    }

    async fn run(config: NullConfig, ctx: SinkContext) -> Result<(), NullSinkError> {
        run(config, ctx).await.map(|_| ())
    }
}

/// What the sink dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Chunks.
    pub chunks: u64,
    /// Events.
    pub events: u64,
    /// Bytes of the chunks' MessagePack entries.
    pub bytes: u64,
}

/// The counts of a running sink, for whoever wants to watch them as they grow (a
/// benchmark waiting for its events).
#[derive(Debug, Default)]
pub struct Counters {
    chunks: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    /// New counters at zero, to share with [`run_counted`].
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// What was dropped so far.
    pub fn totals(&self) -> Totals {
        Totals {
            chunks: self.chunks.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled;
/// returns what it dropped.
pub async fn run(config: NullConfig, ctx: SinkContext) -> Result<Totals, NullSinkError> {
    run_counted(config, ctx, Counters::new()).await
}

/// [`run`], counting into `counters`.
pub async fn run_counted(
    config: NullConfig,
    ctx: SinkContext,
    counters: Arc<Counters>,
) -> Result<Totals, NullSinkError> {
    config.validate().map_err(|invalid| NullSinkError::Config {
        sink: ctx.name.clone(),
        invalid,
    })?;
    let started = Instant::now();
    let mut ticks = config.print_interval.map(|every| {
        let mut ticks = tokio::time::interval_at(started + every.0, every.0);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    });
    loop {
        let tick = async {
            match ticks.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending().await,
            }
        };
        let lease = tokio::select! {
            biased;
            _ = ctx.abort.cancelled() => break,
            lease = ctx.buffer.pop() => lease,
            _ = tick => {
                log(&ctx.name, counters.totals(), started, "null sink totals so far");
                continue;
            }
        };
        let Some(lease) = lease else {
            break;
        };
        let chunk = lease.chunk();
        counters.chunks.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes
            .fetch_add(chunk.byte_size() as u64, Ordering::Relaxed);
        // Counted last: a watcher that sees the events sees the rest too.
        counters
            .events
            .fetch_add(u64::from(chunk.count()), Ordering::Relaxed);
        ctx.metrics
            .sent(u64::from(chunk.count()), chunk.byte_size() as u64);
        lease.delivered();
    }
    let totals = counters.totals();
    log(&ctx.name, totals, started, "null sink stopped; dropped");
    Ok(totals)
}

fn log(sink: &str, totals: Totals, started: Instant, message: &str) {
    tracing::info!(
        sink = %sink,
        chunks = totals.chunks,
        events = totals.events,
        bytes = totals.bytes,
        seconds = started.elapsed().as_secs(),
        "{message}"
    );
}
