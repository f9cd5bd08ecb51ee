//! nagare-core: the nouns every nagare component shares.
//!
//! - [`time`]: `EventTime`, RFC 3339 in and out.
//! - [`value`]: the record type (`Value`, an ordered `Map`), JSON in and out.
//! - [`event`]: `Event` (tag, time, record) and `Tag`.
//! - [`json`]: records as compact JSON, written directly (the text serde_json
//!   writes, faster).
//! - [`msgpack`]: MessagePack writer and zero-copy reader.
//! - [`chunk`]: `Chunk` (events of one tag encoded once), `ChunkBuilder`, `ChunkId`,
//!   and `Walk`, the entry-by-entry decoding every sink delivers from.
//! - [`receipt`]: how a source learns its chunk was delivered (checkpoints hang on it).
//! - [`compression`]: `Compression` (none, gzip, zstd), packing and bounded unpacking.
//! - [`buffer`]: the bounded queue of chunks in front of each sink (in memory or in
//!   files), with leases.
//! - [`dead_letter`]: the dead-letter output, where a sink puts what it gives up on.
//! - [`pattern`]: Fluentd tag patterns.
//! - [`template`]: `Template`, names rendered per event from the tag and record
//!   fields (`/eks/{kubernetes.namespace_name}`, `{tag_parts[-1]}`).
//! - [`router`]: filters and sinks by tag; the `Filter` shape.
//! - [`component`]: what sources and sinks are given to run (`SourceContext`, `SinkContext`).
//! - [`forward`]: the Fluentd Forward Protocol v1 codec.
//! - [`host`]: the machine's host name.
//! - [`filters`]: filters either tier can run (`record_modifier`, `grep`).
//! - [`config`]: YAML loading, `${ENV}` interpolation, located errors, `Tagged`
//!   component configs, sizes, durations.
//! - [`metrics`]: nagare's own metrics (per-component counters, buffers, the
//!   process) in the Prometheus text format.
//! - [`retry`]: exponential backoff with jitter; the retry policy every sink applies.
//! - [`shutdown`]: the shutdown token and signals.
//! - [`tls`]: PEM certificates, keys and CA bundles for TLS, with errors that help.
//! - `testing` (tests only, and the `test-support` feature): builders the tests of
//!   every crate share.

pub mod buffer;
pub mod chunk;
pub mod component;
pub mod compression;
pub mod config;
pub mod dead_letter;
pub mod event;
pub mod filters;
pub mod forward;
pub mod host;
pub mod json;
pub mod metrics;
pub mod msgpack;
pub mod pattern;
pub mod receipt;
pub mod retry;
pub mod router;
pub mod shutdown;
pub mod sink;
pub mod template;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod time;
pub mod tls;
pub mod value;

pub use chunk::{Chunk, ChunkBuilder, ChunkId};
pub use event::{Event, Tag};
pub use time::EventTime;
pub use value::{Map, Value};
