//! Turns a [`Config`] into running tasks, and stops them in order.
//!
//! Start: one buffer per sink (a file buffer recovers the chunks it holds on disk),
//! with the sink's dead-letter output; the router over filters and sinks; every
//! source built (listening sockets are bound before anything runs, so a taken port
//! fails the start instead of a running pipeline); then the sinks, then the
//! sources. Each step is the component list's (`components.rs`): nothing here names
//! a component.
//!
//! Stop (SIGTERM/SIGINT, or a component failing): sources stop and emit what they
//! hold (for at most `shutdown_timeout` when a buffer cannot take it: then the
//! buffers close under them, and what was not committed is sent again after the
//! restart); every buffer is closed; sinks drain their buffers to their
//! destinations (memory buffers, and file buffers with `flush_at_shutdown`), for at
//! most `shutdown_timeout`; then the process exits. What a file buffer still holds
//! is sent after the next start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use nagare_core::buffer::Buffer;
use nagare_core::component::{SinkContext, SourceContext};
use nagare_core::router::{Router, RouterBuilder};
use nagare_core::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::api::{AdminServer, ApiConfig, ComponentEntry, Health};
use crate::config::Config;
use nagare_core::metrics::Metrics;

/// At a stop, how long a sink whose file buffer keeps its chunks (no
/// `flush_at_shutdown`) may finish the deliveries it has started.
const KEEPING_SINK_GRACE: Duration = Duration::from_secs(5);

/// Each sink's name and the buffer in front of it, in config order.
pub type SinkBuffers = Vec<(String, Buffer)>;

/// Builds the router and the sinks' buffers from the config. With `open`, each
/// buffer is opened as configured (a file buffer creates its folder and recovers
/// its chunks); without, every buffer is an empty memory buffer, for `nagare
/// validate`, which must not touch the disk.
/// Each filter counts into its component metrics from `metrics`.
pub fn build_router(
    config: &Config,
    open: bool,
    metrics: &Metrics,
) -> anyhow::Result<(Arc<Router>, SinkBuffers)> {
    let mut builder = RouterBuilder::new();
    for (name, entry) in &config.filters {
        let filter = entry
            .kind
            .build()
            .map_err(|e| anyhow!("filter `{name}`: `{}`: {e}", e.key))?;
        let counted = metrics.component(name, "filter", entry.kind.kind());
        builder.counted_filter(name, entry.pattern.clone(), filter, counted);
    }
    let mut buffers = Vec::new();
    for (name, entry) in &config.sinks {
        let buffer = if open {
            Buffer::open(name, &entry.buffer, &config.data_dir)?
                .with_dead_letter(entry.dead_letter.open(&config.data_dir, name))
        } else {
            Buffer::new(name, &entry.buffer)
        };
        builder.sink(name, entry.pattern.clone(), buffer.clone());
        buffers.push((name.clone(), buffer));
    }
    Ok((Arc::new(builder.build()), buffers))
}

type Task = (String, anyhow::Result<()>);

/// Runs the pipeline until `stop` resolves or a component fails, then shuts down in
/// order. Returns an error if a component failed.
pub async fn run(config: Config, stop: impl Future<Output = &'static str>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create data_dir {}; create it or point `data_dir` somewhere writable",
            config.data_dir.display()
        )
    })?;
    // The admin server first, so that probes see the start: not ready while file
    // buffers recover and sources bind.
    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let health = Health::default();
    health.waiting_for("the buffers to open (file buffers recover their chunks)");
    health.waiting_for("the sources to start (listening sockets bound)");
    let api_stop = Shutdown::new();
    let _api_stop = api_stop.clone().drop_guard();
    let admin = start_api(&config.api, &metrics, &health, &api_stop).await?;

    let (router, buffers) = build_router(&config, true, &metrics)?;
    if let Some(admin) = &admin {
        for (name, entry) in &config.filters {
            admin.add_component(ComponentEntry {
                metrics: metrics.component(name, "filter", entry.kind.kind()),
                pattern: Some(entry.pattern.as_str().to_string()),
                buffer: None,
            });
        }
    }
    for ((name, entry), (_, buffer)) in config.sinks.iter().zip(&buffers) {
        metrics.add_buffer(name, entry.kind.kind(), buffer.clone());
        health.watch_buffer(name, buffer.clone());
    }
    let sources_stop = Shutdown::new();
    let sinks_abort = Shutdown::new();
    // Sinks whose file buffer keeps its chunks over a stop are let go sooner: what
    // they have not delivered is sent after the next start.
    let keeps_abort = sinks_abort.child_token();

    // Build the sources first (listening sockets are bound then): a port in use
    // must fail the start.
    let mut built = Vec::with_capacity(config.sources.len());
    for (name, source) in &config.sources {
        let source = source
            .clone()
            .build(name)
            .await
            .with_context(|| format!("source `{name}`"))?;
        built.push((name.clone(), source));
    }

    let mut sinks: JoinSet<Task> = JoinSet::new();
    for ((name, entry), (_, buffer)) in config.sinks.iter().zip(&buffers) {
        let sink_metrics = metrics.component(name, "sink", entry.kind.kind());
        if let Some(admin) = &admin {
            admin.add_component(ComponentEntry {
                metrics: sink_metrics.clone(),
                pattern: Some(entry.pattern.as_str().to_string()),
                buffer: Some(buffer.clone()),
            });
        }
        let ctx = SinkContext {
            name: name.clone(),
            buffer: buffer.clone(),
            abort: if buffer.is_durable() && !buffer.config().flushes_at_shutdown() {
                keeps_abort.clone()
            } else {
                sinks_abort.clone()
            },
            data_dir: config.data_dir.clone(),
            metrics: sink_metrics,
        };
        let name = name.clone();
        let kind = entry.kind.clone();
        sinks.spawn(async move { (name, kind.run(ctx).await) });
    }

    let mut sources: JoinSet<Task> = JoinSet::new();
    for ((name, source), kind) in built.into_iter().zip(config.sources.values()) {
        let source_metrics = metrics.component(&name, "source", kind.kind());
        if let Some(admin) = &admin {
            admin.add_component(ComponentEntry {
                metrics: source_metrics.clone(),
                pattern: None,
                buffer: None,
            });
        }
        let ctx = SourceContext {
            name: name.clone(),
            router: Arc::new(router.for_source(source_metrics.clone())),
            shutdown: sources_stop.clone(),
            data_dir: config.data_dir.clone(),
            metrics: source_metrics,
        };
        sources.spawn(async move { (name, source.run(ctx).await) });
    }
    health.ready();
    tracing::info!(
        sources = config.sources.len(),
        filters = config.filters.len(),
        sinks = config.sinks.len(),
        api = admin.as_ref().map(|a| tracing::field::display(a.address())),
        "nagare started"
    );

    // Run until told to stop or until a component ends on its own (which, for
    // sources and sinks, only happens on error).
    let mut failed = None;
    tokio::select! {
        sig = stop => tracing::info!(signal = sig, "shutting down: stopping sources"),
        Some(done) = sources.join_next() => {
            failed = Some(ended("source", done));
        }
        Some(done) = sinks.join_next() => {
            failed = Some(ended("sink", done));
        }
    }

    // 1. Sources stop and hand over what they hold. A buffer that cannot take it (a
    //    disk that fails or is full, a full buffer with `block`) gets until
    //    `shutdown_timeout`; then the buffers close under the sources, and what they
    //    could not hand over is not committed, so they send it again after the
    //    restart (a tailer's checkpoint stays before it).
    health.waiting_for("shutting down");
    sources_stop.cancel();
    let timeout: Duration = config.shutdown_timeout.into();
    if tokio::time::timeout(timeout, join_sources(&mut sources))
        .await
        .is_err()
    {
        tracing::warn!(
            sources = sources.len(),
            ?timeout,
            "shutdown_timeout reached with sources still waiting for their buffers; closing the buffers: what the sources could not hand over is sent again after the restart"
        );
        for (_, b) in &buffers {
            b.close();
        }
        join_sources(&mut sources).await;
    }
    // 2. No more input: close the buffers; sinks drain them and return.
    for (_, b) in &buffers {
        b.close();
    }
    let started = Instant::now();
    let grace = timeout.min(KEEPING_SINK_GRACE);
    let keeps = keeps_abort.clone();
    let keepers = tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        keeps.cancel();
    });
    let drained = tokio::time::timeout(timeout, async {
        while let Some(done) = sinks.join_next().await {
            if let (name, Err(e)) = flatten(done) {
                tracing::error!(sink = %name, error = %format!("{e:#}"), "sink failed");
            }
        }
    })
    .await;
    keepers.abort();
    if drained.is_err() {
        sinks_abort.cancel();
        while sinks.join_next().await.is_some() {}
    }
    for (name, b) in &buffers {
        let st = b.stats();
        let chunks = st.staged_chunks + st.queued_chunks + st.in_flight_chunks;
        let bytes = st.staged_bytes + st.queued_bytes + st.in_flight_bytes;
        if chunks == 0 {
            continue;
        }
        if b.is_durable() {
            tracing::info!(sink = %name, chunks, bytes, "undelivered chunks stay in the file buffer; they are sent after the next start");
        } else {
            tracing::warn!(
                sink = %name,
                chunks,
                bytes,
                "shutdown_timeout reached with undelivered chunks in a memory buffer; they are lost"
            );
        }
    }
    tracing::info!(
        took_ms = started.elapsed().as_millis() as u64,
        "nagare stopped"
    );
    match failed {
        Some(Err(e)) => Err(e),
        _ => Ok(()),
    }
}

/// Starts the admin server as `api` says, or not at all: `None` when it is off, or
/// when the default port is taken (a `bind` that is set must work).
async fn start_api(
    api: &ApiConfig,
    metrics: &Metrics,
    health: &Health,
    stop: &Shutdown,
) -> anyhow::Result<Option<AdminServer>> {
    if !api.enabled {
        return Ok(None);
    }
    let address = api.address();
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(l) => l,
        Err(e) if api.bind.is_none() => {
            tracing::warn!(%address, error = %e, "the admin API is not served: its default address cannot be bound (another nagare on this host?); set `api.bind` to another port, or `api.enabled: false`");
            return Ok(None);
        }
        Err(e) => {
            return Err(anyhow!(
                "api.bind: cannot listen on {address}: {e}; choose a free port, or set `api.enabled: false`"
            ));
        }
    };
    let version = env!("CARGO_PKG_VERSION");
    let server = AdminServer::start(
        listener,
        metrics.clone(),
        health.clone(),
        version,
        stop.clone(),
    )
    .context("api: starting the admin server")?;
    Ok(Some(server))
}

/// Waits for every source to end, logging those that failed.
async fn join_sources(sources: &mut JoinSet<Task>) {
    while let Some(done) = sources.join_next().await {
        if let (name, Err(e)) = flatten(done) {
            tracing::error!(source = %name, error = %format!("{e:#}"), "source failed");
        }
    }
}

fn flatten(done: Result<Task, tokio::task::JoinError>) -> (String, anyhow::Result<()>) {
    match done {
        Ok(t) => t,
        Err(e) => ("<task>".to_string(), Err(anyhow!("task panicked: {e}"))),
    }
}

/// A component that ended before shutdown: an error, even if it returned Ok.
fn ended(kind: &str, done: Result<Task, tokio::task::JoinError>) -> anyhow::Result<()> {
    let (name, r) = flatten(done);
    let e = match r {
        Ok(()) => anyhow!("{kind} `{name}` stopped unexpectedly"),
        Err(e) => e.context(format!("{kind} `{name}` failed")),
    };
    tracing::error!(error = %format!("{e:#}"), "shutting down");
    Err(e)
}
