//! The `forward` sink: a Fluentd Forward Protocol v1 client that ships chunks to
//! aggregators (nagare's `forward` source, Fluentd's `in_forward`, Fluent Bit's
//! `forward` input).
//!
//! Each chunk goes out as one PackedForward frame (CompressedPackedForward with
//! `compress: gzip` or `zstd`) carrying the chunk's id as its `chunk` option; the chunk
//! leaves the buffer once the server's `{"ack": id}` comes back. Chunks are spread over
//! several servers by weight, with `standby` servers for when every primary is down; a
//! phi accrual failure detector fed by heartbeats (UDP, TCP or the transport itself)
//! marks servers down within seconds and up again once they recover; host names are
//! re-resolved, each address a server of its own. TLS (rustls, the `tls:` block of
//! [`nagare_core::tls::ClientTlsConfig`]) and the shared-key handshake are optional.
//!
//! - `config`: [`ForwardSinkConfig`], [`ServerConfig`], the `security`
//!   and `tls` sections, [`HeartbeatType`].
//! - `encoder`: a chunk to frame bytes, pure ([`encode`], [`EncodedChunk`]).
//! - `connection`: one connection: TCP, TLS, handshake; frames out, acks in.
//! - `detector`: the phi accrual failure detector ([`FailureDetector`]).
//! - `balancer`: smooth weighted round robin with standbys ([`Balancer`]).
//! - `node`: one server address: its health and the worker owning its connection.
//! - `heartbeat`: the probes that feed each node's detector.
//! - `stats`: what is counted per configured server (acks, up, phi).
//! - `resolve`: host names to addresses (one node each) and node-list changes.
//! - `sink`: the dispatcher: lease, assign by weight, confirm on ack, fail over,
//!   re-resolve ([`run`]).

mod balancer;
mod config;
mod connection;
mod detector;
mod encoder;
mod heartbeat;
mod node;
mod resolve;
mod sink;
mod stats;

#[cfg(test)]
mod tests;

pub use balancer::{Balancer, Candidate};
pub use config::{
    ClientSecurityConfig, ClientTlsConfig, ForwardSinkConfig, HeartbeatType, ServerConfig,
};
pub use detector::{DetectorConfig, FailureDetector, Transition};
pub use encoder::{EncodedChunk, encode};
pub use nagare_core::tls::ClientTlsError;
pub use sink::{ForwardSink, ForwardSinkError, run};
