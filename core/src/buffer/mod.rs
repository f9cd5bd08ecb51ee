//! `Buffer`: an ordered, bounded queue of chunks between the router and one sink.
//!
//! A chunk leaves the buffer only when its sink confirmed it: the sink takes a
//! [`Lease`], and the chunk is gone only after `lease.ack()`. A lease dropped without
//! an ack (a failed send, a sink that stopped) puts the chunk back at the front, so
//! order and data survive retries. The buffer is bounded by bytes, counting chunks
//! in flight as well as queued ones; what happens when it is full is the configured
//! [`OverflowAction`].

mod config;
mod memory;

pub use config::{BufferConfig, BufferKind, OverflowAction};
pub use memory::{Buffer, BufferClosed, BufferStats, Lease};
