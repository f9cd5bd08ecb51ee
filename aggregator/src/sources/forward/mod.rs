//! The `forward` source: a Fluentd Forward Protocol v1 server.
//!
//! It accepts what Fluentd's `out_forward`, Fluent Bit's `forward` output, the
//! fluent-logger libraries and nagare's forwarder send: Message, Forward,
//! PackedForward and CompressedPackedForward frames (gzip, and zstd between nagare
//! peers) and heartbeats. Each events frame becomes one chunk, routed by its tag. A
//! frame with a `chunk` option is acknowledged with `{"ack": chunk}` once the router
//! took it into the matching sinks' buffers, so the client keeps it until then
//! (at-least-once).
//!
//! - `config`: [`ForwardSourceConfig`].
//! - `source`: the listener and accept loop ([`ForwardServer`]).
//! - `connection`: one client: frames in, chunks out, acks back.

mod config;
mod connection;
mod source;

#[cfg(test)]
mod tests;

pub use config::ForwardSourceConfig;
pub use source::{ForwardError, ForwardServer, run};
