//! The running components: each source and sink a task with a token of its own,
//! so that a reload can stop one without the others, and the whole set stopped in
//! order at the end.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use indexmap::IndexMap;
use nagare_core::buffer::Buffer;
use nagare_core::component::{SinkContext, SourceContext};
use nagare_core::metrics::Metrics;
use nagare_core::router::Router;
use nagare_core::shutdown::Shutdown;
use tokio::task::JoinSet;

use crate::api::{AdminServer, ComponentEntry, Health};
use crate::components::Source;
use crate::config::{Config, SinkEntry, SourceConfig};

/// A component's task ends with its name and how it ended.
pub(super) type Task = (String, anyhow::Result<()>);

/// A running sink: the buffer in front of it and the token that aborts it.
#[derive(Debug)]
pub(super) struct RunningSink {
    pub(super) buffer: Buffer,
    pub(super) abort: Shutdown,
}

/// The tasks of the running sources and sinks.
pub(super) struct Running {
    pub(super) router: Arc<Router>,
    pub(super) metrics: Metrics,
    pub(super) admin: Option<AdminServer>,
    pub(super) health: Health,
    pub(super) data_dir: PathBuf,
    pub(super) shutdown_timeout: Duration,
    pub(super) sources: JoinSet<Task>,
    pub(super) sinks: JoinSet<Task>,
    /// The parent of every source's token: the stop at the end.
    pub(super) sources_stop: Shutdown,
    /// The parent of every sink's token: aborts them all.
    pub(super) sinks_abort: Shutdown,
    /// The parent of the tokens of sinks whose file buffer keeps its chunks over a
    /// stop: let go sooner, what they have not delivered is sent after the start.
    pub(super) keeps_abort: Shutdown,
    pub(super) source_stops: HashMap<String, Shutdown>,
    pub(super) sink_states: IndexMap<String, RunningSink>,
    /// A component that ended while a reload waited for others.
    pub(super) failed: Option<anyhow::Error>,
}

impl Running {
    pub(super) fn new(
        router: Arc<Router>,
        metrics: Metrics,
        admin: Option<AdminServer>,
        health: Health,
        config: &Config,
    ) -> Self {
        let sinks_abort = Shutdown::new();
        let keeps_abort = sinks_abort.child_token();
        Self {
            router,
            metrics,
            admin,
            health,
            data_dir: config.data_dir.clone(),
            shutdown_timeout: config.shutdown_timeout.into(),
            sources: JoinSet::new(),
            sinks: JoinSet::new(),
            sources_stop: Shutdown::new(),
            sinks_abort,
            keeps_abort,
            source_stops: HashMap::new(),
            sink_states: IndexMap::new(),
            failed: None,
        }
    }

    /// Starts sink `name` on `buffer`.
    pub(super) fn start_sink(&mut self, name: &str, entry: &SinkEntry, buffer: Buffer) {
        let metrics = self.metrics.component(name, "sink", entry.kind.kind());
        self.metrics
            .add_buffer(name, entry.kind.kind(), buffer.clone());
        self.health.watch_buffer(name, buffer.clone());
        if let Some(admin) = &self.admin {
            admin.add_component(ComponentEntry {
                metrics: metrics.clone(),
                pattern: Some(entry.pattern.as_str().to_string()),
                buffer: Some(buffer.clone()),
            });
        }
        let abort = if buffer.is_durable() && !buffer.config().flushes_at_shutdown() {
            self.keeps_abort.child_token()
        } else {
            self.sinks_abort.child_token()
        };
        let ctx = SinkContext {
            name: name.to_string(),
            buffer: buffer.clone(),
            abort: abort.clone(),
            data_dir: self.data_dir.clone(),
            metrics,
        };
        self.sink_states
            .insert(name.to_string(), RunningSink { buffer, abort });
        let (name, kind) = (name.to_string(), entry.kind.clone());
        self.sinks.spawn(async move { (name, kind.run(ctx).await) });
    }

    /// Starts source `name`, built from `config`.
    pub(super) fn start_source(&mut self, name: &str, config: &SourceConfig, source: Source) {
        let metrics = self.metrics.component(name, "source", config.kind());
        if let Some(admin) = &self.admin {
            admin.add_component(ComponentEntry {
                metrics: metrics.clone(),
                pattern: None,
                buffer: None,
            });
        }
        let stop = self.sources_stop.child_token();
        self.source_stops.insert(name.to_string(), stop.clone());
        let ctx = SourceContext {
            name: name.to_string(),
            router: Arc::new(self.router.for_source(metrics.clone())),
            shutdown: stop,
            data_dir: self.data_dir.clone(),
            metrics,
        };
        let name = name.to_string();
        self.sources
            .spawn(async move { (name.clone(), source.run(ctx).await) });
    }

    /// Stops sources `names` and waits until they have handed over what they
    /// hold.
    pub(super) async fn stop_sources(&mut self, names: &[String]) {
        for name in names {
            if let Some(stop) = self.source_stops.remove(name) {
                stop.cancel();
            }
            self.forget("source", name);
        }
        let what = format!("sources {} to stop", names.join(", "));
        let mut waiting: HashSet<&str> = names.iter().map(String::as_str).collect();
        logged_wait(&what, async {
            while !waiting.is_empty() {
                let Some(done) = self.sources.join_next().await else {
                    break;
                };
                let (name, result) = flatten(done);
                if !waiting.remove(name.as_str()) {
                    self.failed
                        .get_or_insert(unexpected("source", &name, result));
                } else if let Err(e) = result {
                    tracing::warn!(source = %name, error = %format!("{e:#}"), "a source stopped by the reload ended with an error");
                }
            }
        })
        .await;
    }

    /// Waits for sinks `names`, whose buffers were closed or whose tokens were
    /// cancelled, to end: at most `shutdown_timeout`, then they are aborted.
    pub(super) async fn join_sinks(&mut self, names: &[String]) {
        let mut waiting: HashSet<String> = names.iter().cloned().collect();
        let timeout = self.shutdown_timeout;
        let what = format!(
            "sinks {} to deliver what their buffers hold",
            names.join(", ")
        );
        let mut aborted = false;
        loop {
            if waiting.is_empty() {
                return;
            }
            let next = if aborted {
                self.sinks.join_next().await
            } else {
                match tokio::time::timeout(timeout, logged_wait(&what, self.sinks.join_next()))
                    .await
                {
                    Ok(next) => next,
                    Err(_) => {
                        tracing::warn!(sinks = %names.join(", "), ?timeout, "shutdown_timeout reached: the sinks are aborted; a file buffer keeps what they had not delivered, a memory buffer loses it");
                        for name in &waiting {
                            if let Some(state) = self.sink_states.get(name) {
                                state.abort.cancel();
                            }
                        }
                        aborted = true;
                        continue;
                    }
                }
            };
            let Some(done) = next else { return };
            let (name, result) = flatten(done);
            if !waiting.remove(&name) {
                self.failed.get_or_insert(unexpected("sink", &name, result));
            } else if let Err(e) = result {
                tracing::warn!(sink = %name, error = %format!("{e:#}"), "a sink stopped by the reload ended with an error");
            }
        }
    }

    /// Shows the filters of `config` in `/api/v1/components`, in place of those
    /// shown before.
    pub(super) fn show_filters(&self, config: &Config) {
        let Some(admin) = &self.admin else { return };
        admin.remove_kind("filter");
        for (name, entry) in &config.filters {
            admin.add_component(ComponentEntry {
                metrics: self.metrics.component(name, "filter", entry.kind.kind()),
                pattern: Some(entry.pattern.as_str().to_string()),
                buffer: None,
            });
        }
    }

    /// Takes component `name` off `/api/v1/components`.
    pub(super) fn forget(&self, kind: &str, name: &str) {
        if let Some(admin) = &self.admin {
            admin.remove_component(kind, name);
        }
    }
}

/// Awaits `f`, saying every 5 s what it waits for.
pub(super) async fn logged_wait<F: Future>(what: &str, f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut waited = 0u64;
    loop {
        tokio::select! {
            out = &mut f => return out,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {
                waited += 5;
                tracing::info!(waited_s = waited, "waiting for {what}");
            }
        }
    }
}

pub(super) fn flatten(done: Result<Task, tokio::task::JoinError>) -> (String, anyhow::Result<()>) {
    match done {
        Ok(t) => t,
        Err(e) => ("<task>".to_string(), Err(anyhow!("task panicked: {e}"))),
    }
}

/// A component that ended before it was told to: an error, even if it returned Ok.
pub(super) fn unexpected(kind: &str, name: &str, result: anyhow::Result<()>) -> anyhow::Error {
    match result {
        Ok(()) => anyhow!("{kind} `{name}` stopped unexpectedly"),
        Err(e) => e.context(format!("{kind} `{name}` failed")),
    }
}
