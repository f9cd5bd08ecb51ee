//! The shapes every component fits: one trait per kind, and what a source and a sink
//! are given to run.
//!
//! A source reads from somewhere and emits chunks through the [`Router`] (a
//! [`Lane`](crate::router::Lane) per tag, or [`Router::emit`] for whole chunks); a
//! filter is a [`Filter`]; a sink takes leases from its [`Buffer`] and confirms (acks)
//! each chunk once its destination did.
//!
//! Each component implements its kind's trait: [`SourceComponent`],
//! [`FilterComponent`] or [`SinkComponent`]. The trait names the component's `type`
//! in the config, its typed config, the checks serde cannot make, and how it is built
//! and run. The binary lists every component once (`src/components.rs`) and derives
//! from the list the config enums, their decoding and validation, and the start of
//! each component, so a component needs no other line outside its folder.

use std::error::Error;
use std::fmt::Debug;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::buffer::Buffer;
use crate::config::ByteSize;
use crate::dead_letter::{self, DeadLetter};
use crate::metrics::ComponentMetrics;
use crate::retry::Retrier;
use crate::router::{Filter, Router};
use crate::shutdown::Shutdown;

/// A source: where events come from.
///
/// Started in two steps so that what can fail does so before anything runs:
/// [`build`](SourceComponent::build) for every source first (a listening socket is
/// bound there, so a taken port fails the start), then [`run`](SourceComponent::run)
/// for each.
pub trait SourceComponent: Debug + Sized + Send + 'static {
    /// The `type` that chooses this source in the config.
    const TYPE: &'static str;

    /// The source's own keys: serde, `deny_unknown_fields`, a doc comment per field.
    type Config: DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// Why the source could not start or stopped; named after the source
    /// (`TailSourceError`).
    type Error: Error + Send + Sync + 'static;

    /// Checks what serde cannot (values that parse but cannot work); the binary
    /// places the error at its key in the file.
    fn validate(config: &Self::Config) -> Result<(), Invalid>;

    /// What `nagare validate` says about the tags the source emits.
    fn describe(config: &Self::Config) -> SourceTags;

    /// Prepares what must fail the start rather than a running pipeline: listening
    /// sockets, compiled patterns. `name` is the source's name in the config.
    fn build(
        config: Self::Config,
        name: &str,
    ) -> impl Future<Output = Result<Self, Self::Error>> + Send;

    /// Runs until `ctx.shutdown` is cancelled, then emits what it holds and returns.
    fn run(self, ctx: SourceContext) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// What `nagare validate` prints about a source's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceTags {
    /// Said after the source's name: `tail: /var/log/containers/*.log`,
    /// `forward on 0.0.0.0:24224`.
    pub summary: String,
    /// Where the tags are known in shape, one example tag per input (a tail
    /// source's path globs), each followed through the router; `None` where the
    /// source's clients choose them.
    pub examples: Option<Vec<String>>,
}

/// A filter: changes, drops or rejects events of the tags its `match` selects.
pub trait FilterComponent: Filter + Sized + 'static {
    /// The `type` that chooses this filter in the config.
    const TYPE: &'static str;

    /// The filter's own keys (besides `type` and `match`).
    type Config: DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// Checks what serde cannot.
    fn validate(config: &Self::Config) -> Result<(), Invalid>;

    /// The running filter, from a config that passed `validate`.
    fn build(config: &Self::Config) -> Result<Self, Invalid>;
}

/// A sink: where events go. It drains its buffer ([`SinkContext::buffer`]) into its
/// destination until the buffer is closed and empty.
pub trait SinkComponent: Sized + 'static {
    /// The `type` that chooses this sink in the config.
    const TYPE: &'static str;

    /// The sink's own keys (besides `type`, `match`, `buffer` and `dead_letter`).
    type Config: DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// Why the sink stopped.
    type Error: Error + Send + Sync + 'static;

    /// The buffer's `chunk_limit_size` when the config sets none, for a sink whose
    /// requests are much smaller than the buffer's default chunk (as a Fluentd
    /// plugin's `config_set_default` in its `<buffer>` section). `None`: the buffer's
    /// default.
    const CHUNK_LIMIT_SIZE: Option<ByteSize> = None;

    /// Checks what serde cannot.
    fn validate(config: &Self::Config) -> Result<(), Invalid>;

    /// Delivers until the buffer is closed and drained, or `ctx.abort`.
    fn run(
        config: Self::Config,
        ctx: SinkContext,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Everything a running source needs.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The source's name in the config (for logs).
    pub name: String,
    /// Where to emit events: a [`Lane`](crate::router::Lane) per tag
    /// ([`Router::lane`]), or whole chunks ([`Router::emit`]).
    pub router: Arc<Router>,
    /// Cancelled when the source must stop: stop reading, emit what is held, return.
    pub shutdown: Shutdown,
    /// The process's state directory (checkpoints live under it).
    pub data_dir: PathBuf,
    /// The source's counters. What it emits through `router` (its own handle,
    /// [`Router::for_source`]) is counted as received already.
    pub metrics: ComponentMetrics,
}

/// Everything a running sink needs.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The sink's name in the config (for logs).
    pub name: String,
    /// The sink's input. The sink returns once `pop` yields `None` (the buffer was
    /// closed at shutdown and is drained).
    pub buffer: Buffer,
    /// Cancelled when the drain at shutdown took too long: return at once; chunks
    /// still leased go back to the buffer.
    pub abort: Shutdown,
    /// The process's state directory (dead-letter files default under it).
    pub data_dir: PathBuf,
    /// The sink's counters (the sink kit counts what it delivers, retries and
    /// dead-letters).
    pub metrics: ComponentMetrics,
}

impl SinkContext {
    /// Where the sink puts what it gives up on: records its destination refused for
    /// good, and chunks that exhausted their retries. The buffer's dead-letter output if
    /// the binary set one, else `<data_dir>/dead-letter/<sink name>.ndjson`.
    pub fn dead_letter(&self) -> DeadLetter {
        self.buffer.dead_letter().cloned().unwrap_or_else(|| {
            DeadLetter::new(dead_letter::default_path(&self.data_dir, &self.name))
        })
    }

    /// The sink's retry policy (its buffer's `retry_*` settings), with a clock shared
    /// by every clone.
    pub fn retrier(&self) -> Retrier {
        Retrier::new(self.buffer.retry_policy())
    }

    /// Resolves when a sink that has not started delivering has nothing left to
    /// do: it is aborted, or its buffer is closed with nothing it would still hand
    /// out. A sink's start-up retries (a destination that does not answer yet) end
    /// on it, so that a stop with nothing to deliver does not wait for
    /// `shutdown_timeout`.
    pub async fn stopped_before_start(&self) {
        tokio::select! {
            () = self.abort.cancelled() => {}
            () = self.buffer.finished() => {}
        }
    }

    /// How many deliveries the sink may run at once (`flush_thread_count`).
    pub fn flush_thread_count(&self) -> usize {
        self.buffer.config().flush_thread_count.max(1)
    }
}

/// A config value that is well-formed YAML but not usable, found by a component's
/// `validate`; the binary turns it into a located config error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    /// Dotted path of the key, relative to the component (`batch.max_bytes`).
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl Invalid {
    /// An issue with `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}
