//! The `forward` source: a Fluentd Forward Protocol v1 server.
//!
//! It accepts what Fluentd's `out_forward`, Fluent Bit's `forward` output, the
//! fluent-logger libraries, Docker's fluentd log driver and nagare's forwarder send:
//! Message, Forward, PackedForward and CompressedPackedForward frames (gzip, and zstd
//! between nagare peers), the JSON form (when no handshake is required), and `nil`
//! heartbeats; it answers one-byte UDP heartbeats on the same port. Each events frame
//! becomes one chunk, routed by its tag. A frame with a `chunk` option is acknowledged
//! with `{"ack": chunk}` once the router took it into the matching sinks' buffers, so
//! the client keeps it until then (at-least-once). With `security`, every client must
//! first pass the HELO / PING / PONG shared-key handshake (and a user check with
//! `user_auth`), with keys and users per client address (`clients`) if configured;
//! with `tls`, connections are TLS (rustls), optionally with client certificates.
//! With `unix_path` it listens on a Unix socket instead of TCP (as FireLens's log
//! router does), with the handshake but without TLS or address rules.
//!
//! - `config`: [`ForwardSourceConfig`] and its `tls` / `security` sections.
//! - `source`: the listener, the accept loop and the UDP heartbeat responder
//!   ([`ForwardServer`]).
//! - `connection`: one client: TLS, handshake, frames in, chunks out, acks back.
//! - `handshake`: the server's side of HELO / PING / PONG.
//! - `clients`: `security.clients`: which entry a peer's address matches, host names
//!   resolved again on an interval.
//! - `tls`: the rustls acceptor from PEM files.
//! - `unix`: the Unix socket listener (`unix_path`) and its socket file.

mod clients;
mod config;
mod connection;
mod handshake;
mod source;
mod tls;
mod unix;

#[cfg(test)]
mod tests;

pub use config::{
    ClientConfig, FileMode, ForwardSourceConfig, Network, SecurityConfig, ServerTlsConfig,
    UserConfig,
};
pub use source::{Endpoint, ForwardServer, ForwardSourceError, run};
pub use tls::TlsSetupError;
pub use unix::UnixSocketError;
