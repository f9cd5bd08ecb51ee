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
//!
//! Reload (SIGHUP, `POST /api/v1/reload`, or a changed file with `--watch-config`):
//! the file is read again; a config that does not load, or that changes what only
//! a restart can (`data_dir`, `log`, `api`), is refused with the error in the log
//! (and the response), and the running topology keeps running. A valid one is
//! applied by difference (`reload.rs`).
//!
//! - `running.rs`: the tasks of the sources and sinks, each stoppable alone.
//! - `reload.rs`: what a reload changes and how it is applied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use nagare_core::buffer::Buffer;
use nagare_core::metrics::Metrics;
use nagare_core::router::{Router, RouterBuilder};
use nagare_core::shutdown::Shutdown;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

mod reload;
mod running;
#[cfg(test)]
mod tests;

pub use reload::{Diff, Plan};

use crate::api::{AdminServer, ApiConfig, Health, ReloadRequest};
use crate::config::{Config, ConfigOrigin, Loaded};
use running::{Running, Task, flatten, logged_wait, unexpected};

/// At a stop, how long a sink whose file buffer keeps its chunks (no
/// `flush_at_shutdown`) may finish the deliveries it has started.
const KEEPING_SINK_GRACE: Duration = Duration::from_secs(5);

/// How often `--watch-config` reads the file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Each sink's name and the buffer in front of it, in config order.
pub type SinkBuffers = Vec<(String, Buffer)>;

/// How `run` runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Reload when the config file changes.
    pub watch_config: bool,
}

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

/// Runs the pipeline `loaded` (read from `origin`) describes until `stop` resolves
/// or a component fails, reloading it when asked; then shuts down in order.
/// Returns an error if a component failed.
pub async fn run(
    origin: ConfigOrigin,
    loaded: Loaded,
    options: RunOptions,
    stop: impl Future<Output = &'static str>,
) -> anyhow::Result<()> {
    let config = &loaded.config;
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
    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let admin = start_api(&config.api, &metrics, &health, &api_stop, reload_tx).await?;

    let (router, buffers) = build_router(config, true, &metrics)?;
    metrics.set_taps(router.taps().clone());
    if let Some(admin) = &admin {
        admin.set_taps(router.taps().clone());
    }
    let mut running = Running::new(
        router,
        metrics.clone(),
        admin.clone(),
        health.clone(),
        config,
    );
    running.show_filters(config);

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
    for ((name, entry), (_, buffer)) in config.sinks.iter().zip(buffers) {
        running.start_sink(name, entry, buffer);
    }
    for ((name, source), kind) in built.into_iter().zip(config.sources.values()) {
        running.start_source(&name, kind, source);
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
    // sources and sinks, only happens on error); reload when asked.
    let mut current = loaded;
    let mut hangup = hangups();
    let mut watched = options
        .watch_config
        .then(|| {
            origin
                .path()
                .map(|p| (p.to_path_buf(), std::fs::read(p).ok()))
        })
        .flatten();
    if options.watch_config && watched.is_none() {
        tracing::warn!(
            "--watch-config watches a config file; this config is not one, so it is not watched"
        );
    }
    let mut watch_tick = tokio::time::interval(WATCH_EVERY);
    let mut stop = std::pin::pin!(stop);
    let failed = loop {
        tokio::select! {
            sig = &mut stop => {
                tracing::info!(signal = sig, "shutting down: stopping sources");
                break None;
            }
            Some(done) = running.sources.join_next() => break Some(ended("source", done)),
            Some(done) = running.sinks.join_next() => break Some(ended("sink", done)),
            Some(()) = hangup.recv() => {
                let _ = reload(&origin, &mut current, &mut running, "SIGHUP").await;
            }
            Some(request) = reload_rx.recv() => {
                let outcome = reload(&origin, &mut current, &mut running, "POST /api/v1/reload").await;
                let _ = request
                    .reply
                    .send(outcome.map(|plan| serde_json::to_value(plan).unwrap_or_default()));
            }
            _ = watch_tick.tick(), if watched.is_some() => {
                let (path, last) = watched.as_mut().expect("watched");
                let now = std::fs::read(&*path).ok();
                if now.is_some() && now != *last {
                    *last = now;
                    let _ = reload(&origin, &mut current, &mut running, "the config file changed").await;
                }
            }
        }
        if let Some(e) = running.failed.take() {
            tracing::error!(error = %format!("{e:#}"), "shutting down");
            break Some(Err(e));
        }
    };
    let stopped = stop_all(running, &health).await;
    match failed {
        Some(Err(e)) => Err(e),
        _ => stopped,
    }
}

/// What a reload did, for the log and `POST /api/v1/reload`.
pub type ReloadOutcome = Result<Plan, String>;

/// Reads the config again and applies it, or keeps the running one.
async fn reload(
    origin: &ConfigOrigin,
    current: &mut Loaded,
    running: &mut Running,
    trigger: &str,
) -> ReloadOutcome {
    let started = Instant::now();
    tracing::info!(trigger, config = %origin.name(), "reloading the config");
    let refused = |running: &Running, error: String| {
        running.metrics.reloaded(false);
        tracing::error!(trigger, %error, "the config was not reloaded; the running pipeline keeps running as it was");
        Err(error)
    };
    let new = match origin.load() {
        Ok(new) => new,
        Err(e) => return refused(running, e.to_string()),
    };
    let plan = match Plan::new(&current.tree, &new.tree) {
        Ok(plan) => plan,
        Err(e) => return refused(running, e),
    };
    if plan.is_empty() {
        running.metrics.reloaded(true);
        tracing::info!(trigger, "the config is unchanged; nothing to do");
        *current = new;
        return Ok(plan);
    }
    match running.apply(&plan, &current.config, &new.config).await {
        Ok(()) => {
            running.metrics.reloaded(true);
            tracing::info!(
                trigger,
                took_ms = started.elapsed().as_millis() as u64,
                sources = ?plan.sources,
                filters = ?plan.filters,
                sinks = ?plan.sinks,
                rerouted = ?plan.rerouted,
                "config reloaded"
            );
            *current = new;
            Ok(plan)
        }
        // Rolled back: the running config is still `current`.
        Err(e) => refused(running, format!("{e:#}")),
    }
}

/// SIGHUP, as a stream of `()` (none where there are no Unix signals).
fn hangups() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        if tx.send(()).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /api/v1/reload")
            }
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

/// Stops everything in order: sources, then buffers closed and sinks drained.
async fn stop_all(mut running: Running, health: &Health) -> anyhow::Result<()> {
    // 1. Sources stop and hand over what they hold. A buffer that cannot take it (a
    //    disk that fails or is full, a full buffer with `block`) gets until
    //    `shutdown_timeout`; then the buffers close under the sources, and what they
    //    could not hand over is not committed, so they send it again after the
    //    restart (a tailer's checkpoint stays before it).
    health.waiting_for("shutting down");
    running.sources_stop.cancel();
    let timeout = running.shutdown_timeout;
    let buffers: Vec<(String, Buffer)> = running
        .sink_states
        .iter()
        .map(|(name, s)| (name.clone(), s.buffer.clone()))
        .collect();
    let sources = logged_wait(
        "the sources to stop and hand over what they hold",
        join_sources(&mut running.sources),
    );
    if tokio::time::timeout(timeout, sources).await.is_err() {
        tracing::warn!(
            sources = running.sources.len(),
            ?timeout,
            "shutdown_timeout reached with sources still waiting for their buffers; closing the buffers: what the sources could not hand over is sent again after the restart"
        );
        for (_, b) in &buffers {
            b.close();
        }
        join_sources(&mut running.sources).await;
    }
    // 2. No more input: close the buffers; sinks drain them and return.
    for (_, b) in &buffers {
        b.close();
    }
    let started = Instant::now();
    let grace = timeout.min(KEEPING_SINK_GRACE);
    let keeps = running.keeps_abort.clone();
    let keepers = tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        keeps.cancel();
    });
    let sinks = &mut running.sinks;
    let what = format!(
        "the sinks to deliver what their buffers hold ({} chunks)",
        held_chunks(&buffers)
    );
    let drained = tokio::time::timeout(
        timeout,
        logged_wait(&what, async {
            while let Some(done) = sinks.join_next().await {
                if let (name, Err(e)) = flatten(done) {
                    tracing::error!(sink = %name, error = %format!("{e:#}"), "sink failed");
                }
            }
        }),
    )
    .await;
    keepers.abort();
    if drained.is_err() {
        running.sinks_abort.cancel();
        while running.sinks.join_next().await.is_some() {}
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
    Ok(())
}

/// Chunks the buffers hold, delivered or not yet.
fn held_chunks(buffers: &[(String, Buffer)]) -> usize {
    buffers
        .iter()
        .map(|(_, b)| {
            let st = b.stats();
            st.staged_chunks + st.queued_chunks + st.in_flight_chunks
        })
        .sum()
}

/// Starts the admin server as `api` says, or not at all: `None` when it is off, or
/// when the default port is taken (a `bind` that is set must work).
async fn start_api(
    api: &ApiConfig,
    metrics: &Metrics,
    health: &Health,
    stop: &Shutdown,
    reload: mpsc::Sender<ReloadRequest>,
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
    .map(|server| server.with_reload(reload, api.token.clone()))
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

/// A component that ended before shutdown: an error, even if it returned Ok.
fn ended(kind: &str, done: Result<Task, tokio::task::JoinError>) -> anyhow::Result<()> {
    let (name, r) = flatten(done);
    let e = unexpected(kind, &name, r);
    tracing::error!(error = %format!("{e:#}"), "shutting down");
    Err(e)
}
