//! `Buffer`: an ordered, bounded queue of chunks between the router and one sink, in
//! memory or in files.
//!
//! A chunk leaves the buffer only when its sink confirmed it: the sink takes a
//! [`Lease`], and the chunk is gone only after `lease.delivered()` or
//! `lease.dead_lettered()`. A lease dropped without either (a failed send, a sink
//! that stopped) or put back (`lease.put_back()`) returns the chunk to the front, so
//! order and data survive retries. The buffer is bounded by bytes, counting chunks
//! being filled and in flight as well as queued ones; what happens when it is full is
//! the configured [`OverflowAction`]. Both kinds share all of this; only where the
//! bytes live differs.
//!
//! - `config`: [`BufferConfig`], the `buffer:` section (Fluentd's `<buffer>` names).
//! - `queue`: [`Buffer`] and [`Lease`]: staging, the queue, limits, overflow, leases.
//! - `file`: the file buffer's storage: chunk files, the folder's fsync, recovery
//!   and quarantine.
//! - `segment`: segment files, several chunks queued whole in one, with group
//!   commit and acks.
//! - `format`: the chunk file's layout, byte for byte.

mod config;
mod file;
pub mod format;
mod queue;
mod segment;
#[cfg(test)]
mod tests;

pub use config::{
    BufferConfig, BufferKind, DEFAULT_CHUNK_LIMIT_SIZE, FlushMode, FsyncPolicy, OverflowAction,
    RetryType,
};
pub use file::QUARANTINE;
pub use queue::{Buffer, BufferClosed, BufferError, BufferStats, Lease};
