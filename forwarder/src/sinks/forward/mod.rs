//! The `forward` sink: a Fluentd Forward Protocol v1 client that ships chunks to
//! aggregators (nagare's `forward` source, Fluentd's `in_forward`, Fluent Bit's
//! `forward` input).
//!
//! Each chunk goes out as one PackedForward frame (CompressedPackedForward with
//! `compress: gzip` or `zstd`) carrying the chunk's id as its `chunk` option; the chunk
//! leaves the buffer once the server's `{"ack": id}` comes back. Servers are tried in
//! the order listed, with failover to the next when one is down.
//!
//! - `config`: [`ForwardSinkConfig`], [`ServerConfig`], [`Compress`].
//! - `encoder`: a chunk to frame bytes, pure ([`encode`], [`EncodedChunk`]).
//! - `connection`: one TCP connection: frames out, acks in.
//! - `sink`: the loop: lease, send, match acks, reconnect and resend ([`run`]).

mod config;
mod connection;
mod encoder;
mod sink;

#[cfg(test)]
mod tests;

pub use config::{Compress, ForwardSinkConfig, ServerConfig};
pub use encoder::{EncodedChunk, encode};
pub use sink::{ForwardSinkError, run};
