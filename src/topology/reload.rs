//! A reload: what changed between the running config and the new one ([`Plan`],
//! from their YAML trees, component by component) and how it is applied
//! ([`Running::apply`]).
//!
//! Unchanged components keep running untouched: their tasks, sockets, open files,
//! checkpoints and buffers. A sink whose only change is its `match` is re-routed
//! without a restart. A changed sink with the same `buffer` and `dead_letter`
//! sections is restarted on the same buffer (what it had taken and not delivered
//! goes back into the buffer for the new one). A sink removed, or whose buffer
//! changed, has its buffer closed and drains it as at a stop (a file buffer that
//! keeps its chunks keeps them, and the new buffer in the same folder recovers
//! them). Changed and removed sources stop and hand over what they hold first;
//! changed and new ones are built once those have stopped (so a new source can take
//! a port a removed one held) and start last; if one cannot be built, the stopped
//! sources start again as they were and the reload fails with nothing changed.
//! Filters are built again every time.

use std::collections::HashMap;

use anyhow::Context;
use nagare_core::buffer::Buffer;
use nagare_core::router::RouterBuilder;
use serde::Serialize;
use serde_json::Value;

use super::running::{Running, logged_wait};
use crate::config::Config;

/// The top-level keys a reload does not apply: they need a restart.
const RESTART_KEYS: &[&str] = &["data_dir", "log", "api"];

/// Names added, removed and changed in one section.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// In the new config only.
    pub added: Vec<String>,
    /// In the running config only.
    pub removed: Vec<String>,
    /// In both, written differently.
    pub changed: Vec<String>,
}

impl Diff {
    fn of(old: Option<&Value>, new: Option<&Value>) -> Diff {
        let empty = serde_json::Map::new();
        let old = old.and_then(Value::as_object).unwrap_or(&empty);
        let new = new.and_then(Value::as_object).unwrap_or(&empty);
        let mut diff = Diff::default();
        for (name, v) in new {
            match old.get(name) {
                None => diff.added.push(name.clone()),
                Some(o) if o != v => diff.changed.push(name.clone()),
                Some(_) => {}
            }
        }
        for name in old.keys() {
            if !new.contains_key(name) {
                diff.removed.push(name.clone());
            }
        }
        diff
    }

    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// Changed and removed: what must stop.
    fn going(&self) -> Vec<String> {
        self.changed.iter().chain(&self.removed).cloned().collect()
    }
}

/// What a reload changes.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Sources.
    pub sources: Diff,
    /// Filters (all are built again; this says which differ).
    pub filters: Diff,
    /// Sinks, `changed` without those only re-routed.
    pub sinks: Diff,
    /// Sinks whose only change is `match`: re-routed, not restarted.
    pub rerouted: Vec<String>,
    /// Changed sinks restarted on the buffer they had (same `buffer` and
    /// `dead_letter`).
    pub keep_buffer: Vec<String>,
    /// Whether `shutdown_timeout` changed.
    pub shutdown_timeout: bool,
}

impl Plan {
    /// The plan from the running config's tree to the new one's, or why the new
    /// one cannot be applied without a restart.
    pub fn new(old: &Value, new: &Value) -> Result<Plan, String> {
        for key in RESTART_KEYS {
            if old.get(key) != new.get(key) {
                return Err(format!(
                    "`{key}` changed: a reload applies sources, filters, sinks and shutdown_timeout; restart nagare to change `{key}` (nothing was changed)"
                ));
            }
        }
        let mut sinks = Diff::of(old.get("sinks"), new.get("sinks"));
        let (mut rerouted, mut keep_buffer) = (Vec::new(), Vec::new());
        sinks.changed.retain(|name| {
            let (Some(o), Some(n)) = (sink(old, name), sink(new, name)) else {
                return true;
            };
            if without(o, &["match"]) == without(n, &["match"]) {
                rerouted.push(name.clone());
                return false;
            }
            let held = ["buffer", "dead_letter", "secondary"];
            if held.iter().all(|k| o.get(k) == n.get(k)) {
                keep_buffer.push(name.clone());
            }
            true
        });
        Ok(Plan {
            sources: Diff::of(old.get("sources"), new.get("sources")),
            filters: Diff::of(old.get("filters"), new.get("filters")),
            sinks,
            rerouted,
            keep_buffer,
            shutdown_timeout: old.get("shutdown_timeout") != new.get("shutdown_timeout"),
        })
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
            && self.filters.is_empty()
            && self.sinks.is_empty()
            && self.rerouted.is_empty()
            && !self.shutdown_timeout
    }
}

fn sink<'a>(tree: &'a Value, name: &str) -> Option<&'a Value> {
    tree.get("sinks")?.get(name)
}

/// `value` (a mapping) without `keys`.
fn without(value: &Value, keys: &[&str]) -> Value {
    let mut value = value.clone();
    if let Some(map) = value.as_object_mut() {
        for key in keys {
            map.remove(*key);
        }
    }
    value
}

impl Running {
    /// Applies `plan`, taking the running topology from `old` to `config`. What
    /// can fail is done before anything else changes: filters built and new sinks'
    /// buffers opened first, then new and changed sources built once the sources
    /// they replace have stopped. An error leaves the topology running `old` (the
    /// stopped sources started again).
    pub(super) async fn apply(
        &mut self,
        plan: &Plan,
        old: &Config,
        config: &Config,
    ) -> anyhow::Result<()> {
        // 1. What can fail, before anything changes.
        let mut filters = Vec::new();
        for (name, entry) in &config.filters {
            let filter = entry
                .kind
                .build()
                .map_err(|e| anyhow::anyhow!("filter `{name}`: `{}`: {e}", e.key))?;
            let counted = self.metrics.component(name, "filter", entry.kind.kind());
            filters.push((name.clone(), entry.pattern.clone(), filter, counted));
        }
        let mut buffers: HashMap<String, Buffer> = HashMap::new();
        for name in &plan.sinks.added {
            buffers.insert(name.clone(), open_buffer(config, name)?);
        }

        // 2. Changed and removed sources stop and hand over what they hold; then
        // the new and changed ones are built (their sockets bound: a port a
        // removed source held is free now). If one cannot be, the stopped ones
        // start again as they were, and nothing else has changed.
        let going = plan.sources.going();
        if !going.is_empty() {
            self.stop_sources(&going).await;
        }
        let mut starting = Vec::new();
        for name in plan.sources.added.iter().chain(&plan.sources.changed) {
            match config.sources[name.as_str()].clone().build(name).await {
                Ok(built) => starting.push((name.clone(), built)),
                Err(e) => {
                    let error = format!("source `{name}`: {e:#}");
                    drop(starting);
                    self.restart_sources(&going, old).await;
                    return Err(anyhow::anyhow!(
                        "{error}; the sources it would have replaced run again as before"
                    ));
                }
            }
        }

        // 3. Deliveries held back while sinks and their buffers change.
        let router = self.router.clone();
        let paused = logged_wait("deliveries under way to finish", router.pause()).await;
        let mut stopping = Vec::new();
        for name in plan.sinks.going() {
            let Some(state) = self.sink_states.get(&name) else {
                continue;
            };
            if plan.keep_buffer.contains(&name) {
                // Its leases go back into the buffer for the new sink.
                state.abort.cancel();
            } else {
                state.buffer.close();
                let config = state.buffer.config();
                if state.buffer.is_durable() && !config.flushes_at_shutdown() {
                    // The chunks stay on disk; the new buffer recovers them.
                    state.abort.cancel();
                }
            }
            stopping.push(name);
        }
        self.join_sinks(&stopping).await;
        for name in &stopping {
            let state = self
                .sink_states
                .shift_remove(name)
                .expect("a stopping sink was running");
            self.forget("sink", name);
            if plan.keep_buffer.contains(name) {
                buffers.insert(name.clone(), state.buffer);
            } else if plan.sinks.removed.contains(name) {
                self.metrics.remove_buffer(name);
                self.health.unwatch_buffer(name);
            }
        }
        for name in &plan.sinks.changed {
            if !buffers.contains_key(name) {
                // The old buffer is closed, its folder free.
                match open_buffer(config, name) {
                    Ok(buffer) => {
                        buffers.insert(name.clone(), buffer);
                    }
                    Err(e) => {
                        tracing::error!(sink = %name, error = %format!("{e:#}"), "cannot open the new buffer of a changed sink; its events are discarded until a reload or restart opens it");
                    }
                }
            }
        }
        let mut builder = RouterBuilder::new();
        for (name, pattern, filter, counted) in filters {
            builder.counted_filter(&name, pattern, filter, counted);
        }
        for (name, entry) in &config.sinks {
            let buffer = match self.sink_states.get(name) {
                Some(state) => Some(state.buffer.clone()),
                None => buffers.get(name).cloned(),
            };
            if let Some(buffer) = buffer {
                builder.sink(name, entry.pattern.clone(), buffer);
            }
        }
        router.replace(builder);
        drop(paused);
        self.show_filters(config);
        self.shutdown_timeout = config.shutdown_timeout.into();
        for name in &plan.rerouted {
            // Same sink, new `match`: shown with it.
            if let (Some(admin), Some(entry)) = (&self.admin, config.sinks.get(name)) {
                admin.set_pattern("sink", name, entry.pattern.as_str());
            }
        }

        // 4. Sinks start before the sources that feed them.
        for name in plan.sinks.added.iter().chain(&plan.sinks.changed) {
            if let Some(buffer) = buffers.remove(name) {
                self.start_sink(name, &config.sinks[name.as_str()], buffer);
            }
        }
        for (name, built) in starting {
            self.start_source(&name, &config.sources[name.as_str()], built);
        }
        Ok(())
    }

    /// Starts sources `names` again as `old` has them, after a reload stopped them
    /// and could not start what was to replace them.
    async fn restart_sources(&mut self, names: &[String], old: &Config) {
        for name in names {
            let Some(source) = old.sources.get(name.as_str()) else {
                continue;
            };
            match source.clone().build(name).await {
                Ok(built) => self.start_source(name, source, built),
                Err(e) => {
                    tracing::error!(source = %name, error = %format!("{e:#}"), "a source stopped by a failed reload cannot start again; it stays stopped until a reload or restart starts it");
                }
            }
        }
    }
}

/// Opens sink `name`'s buffer as `config` says (a file buffer recovers its
/// chunks), with its dead-letter output.
fn open_buffer(config: &Config, name: &str) -> anyhow::Result<Buffer> {
    let entry = &config.sinks[name];
    Ok(Buffer::open(name, &entry.buffer, &config.data_dir)
        .with_context(|| format!("sink `{name}`: opening its buffer"))?
        .with_dead_letter(entry.dead_letter.open(&config.data_dir, name)))
}
