//! The shapes every component fits: what a source and a sink are given to run.
//!
//! A source reads from somewhere and emits events through the [`Router`] (a
//! [`Lane`](crate::router::Lane) per tag, or [`Router::emit`] for whole chunks); a sink
//! takes leases from its [`Buffer`] and confirms (acks) each chunk once its
//! destination did. Filters are the [`Filter`](crate::router::Filter) trait. The
//! binary turns config into these contexts and runs each component as a task.

use std::path::PathBuf;
use std::sync::Arc;

use crate::buffer::Buffer;
use crate::dead_letter::{self, DeadLetter};
use crate::retry::Retrier;
use crate::router::Router;
use crate::shutdown::Shutdown;

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
}

impl SinkContext {
    /// Where the sink puts what it gives up on: records its destination refused for
    /// good, and chunks that exhausted their retries. The buffer's secondary output if
    /// the binary set one, else `<data_dir>/dead-letter/<sink name>.ndjson`.
    pub fn secondary(&self) -> DeadLetter {
        self.buffer.secondary().cloned().unwrap_or_else(|| {
            DeadLetter::new(dead_letter::default_path(&self.data_dir, &self.name))
        })
    }

    /// The sink's retry policy (its buffer's `retry_*` settings), with a clock shared
    /// by every clone.
    pub fn retrier(&self) -> Retrier {
        Retrier::new(self.buffer.retry_policy())
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
