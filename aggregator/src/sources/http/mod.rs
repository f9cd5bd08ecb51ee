//! The `http` source: records over HTTP, for apps and sidecars that cannot speak the
//! Forward Protocol, compatible with Fluentd's `in_http`.
//!
//! `POST /<tag>` with a JSON body (an object or an array of objects), NDJSON, a
//! MessagePack body (a map or an array of maps), or a form with a `json=` or
//! `msgpack=` field; `time` as a query parameter or a record field; gzip or deflate
//! bodies. The answer (200, or 204) comes only once the records are in every matching
//! sink's buffer, so a client that got it may forget them. Optional bearer-token
//! authentication; a body size limit.
//!
//! - `config`: [`HttpSourceConfig`].
//! - `decode`: a request to events, without I/O (content types, forms, times, tags).
//! - `source`: the listener and the request handler ([`HttpServer`]).

mod config;
mod decode;
mod source;

#[cfg(test)]
mod tests;

pub use config::HttpSourceConfig;
pub use source::{HttpServer, HttpSourceError, run};
