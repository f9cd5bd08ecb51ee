//! Turns a [`Config`] into running tasks, and stops them in order.
//!
//! Start: one buffer per sink, the router over filters and sinks, then the sinks,
//! then the sources (listening sockets are bound before anything runs, so a taken
//! port fails the start instead of a running pipeline).
//!
//! Stop (SIGTERM/SIGINT, or a component failing): sources stop and emit what they
//! hold; every buffer is closed; sinks drain their buffers to their destinations,
//! for at most `shutdown_timeout`; then the process exits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use nagare_core::buffer::Buffer;
use nagare_core::component::{SinkContext, SourceContext};
use nagare_core::filters::grep::Grep;
use nagare_core::filters::record_modifier::RecordModifier;
use nagare_core::router::{Filter, Router, RouterBuilder};
use nagare_core::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::config::{Config, FilterConfig, SinkConfig, SourceConfig};

/// Each sink's name and the buffer in front of it, in config order.
pub type SinkBuffers = Vec<(String, Buffer)>;

/// Builds the router and the sinks' buffers from the config.
pub fn build_router(config: &Config) -> anyhow::Result<(Arc<Router>, SinkBuffers)> {
    let mut builder = RouterBuilder::new();
    for (name, entry) in &config.filters {
        let filter: Arc<dyn Filter> = match &entry.kind {
            FilterConfig::RecordModifier(c) => Arc::new(RecordModifier::new(c)),
            FilterConfig::Grep(c) => {
                Arc::new(Grep::new(c).map_err(|e| anyhow!("filter `{name}`: {e}"))?)
            }
        };
        builder.filter(name, entry.pattern.clone(), filter);
    }
    let mut buffers = Vec::new();
    for (name, entry) in &config.sinks {
        let buffer = Buffer::new(name, &entry.buffer);
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
    let (router, buffers) = build_router(&config)?;
    let sources_stop = Shutdown::new();
    let sinks_abort = Shutdown::new();

    // Bind listeners first: a port in use must fail the start.
    #[cfg(feature = "aggregator")]
    let mut servers = std::collections::HashMap::new();
    for (name, source) in &config.sources {
        #[allow(irrefutable_let_patterns)]
        #[cfg(feature = "aggregator")]
        if let SourceConfig::Forward(c) = source {
            let server = nagare_aggregator::sources::forward::ForwardServer::bind(c)
                .await
                .with_context(|| format!("source `{name}`"))?;
            tracing::info!(source = %name, addr = %server.local_addr(), "forward source listening");
            servers.insert(name.clone(), server);
        }
        let _ = source;
    }

    let mut sinks: JoinSet<Task> = JoinSet::new();
    for ((name, entry), (_, buffer)) in config.sinks.iter().zip(&buffers) {
        let ctx = SinkContext {
            name: name.clone(),
            buffer: buffer.clone(),
            abort: sinks_abort.clone(),
            data_dir: config.data_dir.clone(),
        };
        let name = name.clone();
        let kind = entry.kind.clone();
        sinks.spawn(async move {
            let r = run_sink(kind, ctx).await;
            (name, r)
        });
    }

    let mut sources: JoinSet<Task> = JoinSet::new();
    for (name, source) in &config.sources {
        let ctx = SourceContext {
            name: name.clone(),
            router: router.clone(),
            shutdown: sources_stop.clone(),
            data_dir: config.data_dir.clone(),
        };
        let name = name.clone();
        let source = source.clone();
        #[cfg(feature = "aggregator")]
        let server = servers.remove(&name);
        sources.spawn(async move {
            let r = match source {
                #[cfg(feature = "forwarder")]
                SourceConfig::Tail(c) => nagare_forwarder::sources::tail::run(c, ctx)
                    .await
                    .map_err(anyhow::Error::from),
                #[cfg(feature = "aggregator")]
                SourceConfig::Forward(_) => match server {
                    Some(server) => server.run(ctx).await.map_err(anyhow::Error::from),
                    None => Err(anyhow!("forward source was not bound")),
                },
            };
            (name, r)
        });
    }
    tracing::info!(
        sources = config.sources.len(),
        filters = config.filters.len(),
        sinks = config.sinks.len(),
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

    // 1. Sources stop and hand over what they hold.
    sources_stop.cancel();
    while let Some(done) = sources.join_next().await {
        if let (name, Err(e)) = flatten(done) {
            tracing::error!(source = %name, error = %format!("{e:#}"), "source failed");
        }
    }
    // 2. No more input: close the buffers; sinks drain them and return.
    for (_, b) in &buffers {
        b.close();
    }
    let started = Instant::now();
    let timeout: Duration = config.shutdown_timeout.into();
    let drained = tokio::time::timeout(timeout, async {
        while let Some(done) = sinks.join_next().await {
            if let (name, Err(e)) = flatten(done) {
                tracing::error!(sink = %name, error = %format!("{e:#}"), "sink failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        for (name, b) in &buffers {
            let st = b.stats();
            if st.queued_chunks + st.in_flight_chunks > 0 {
                tracing::warn!(
                    sink = %name,
                    chunks = st.queued_chunks + st.in_flight_chunks,
                    bytes = st.queued_bytes + st.in_flight_bytes,
                    "shutdown_timeout reached with undelivered chunks in a memory buffer; they are lost"
                );
            }
        }
        sinks_abort.cancel();
        while sinks.join_next().await.is_some() {}
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

async fn run_sink(kind: SinkConfig, ctx: SinkContext) -> anyhow::Result<()> {
    match kind {
        #[cfg(feature = "forwarder")]
        SinkConfig::Forward(c) => nagare_forwarder::sinks::forward::run(c, ctx).await?,
        #[cfg(feature = "aggregator")]
        SinkConfig::Elasticsearch(c) => {
            nagare_aggregator::sinks::elasticsearch::run(c, ctx).await?
        }
        #[cfg(feature = "aggregator")]
        SinkConfig::File(c) => nagare_aggregator::sinks::file::run(c, ctx).await?,
        #[cfg(feature = "aggregator")]
        SinkConfig::Stdout(c) => nagare_aggregator::sinks::stdout::run(c, ctx).await?,
    }
    Ok(())
}
