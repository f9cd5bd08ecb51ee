//! The admin HTTP server: one per process, on loopback unless told otherwise.
//!
//! - `GET /healthz`: liveness, `200 {"status":"ok"}` while the runtime answers;
//! - `GET /readyz`: readiness, `200` once the config is loaded, the sources are
//!   listening and the file buffers recovered, else `503` with a JSON body saying
//!   what is not ready yet ([`Health`]);
//! - `GET /metrics`: every metric in the Prometheus text format
//!   ([`nagare_core::metrics`]);
//! - `GET /api/v1/components`: the topology and every component's counts, as JSON;
//! - `GET /api/v1/tap`: the events at a point of the pipeline, streamed as NDJSON
//!   (`tap.rs`); behind `api.token` when it is set;
//! - `POST /api/v1/reload`: reads the config file again and applies it (or keeps
//!   the running one and answers why not); behind `api.token` when it is set.
//!
//! `config.rs` is its `api:` section; `server.rs` the server; `tap.rs` the taps.

mod config;
mod server;
mod tap;

pub use config::{ApiConfig, DEFAULT_BIND};
pub use server::{AdminServer, ComponentEntry, Health, ReloadRequest};
