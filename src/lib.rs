//! nagare: the binary's library. `main.rs` only parses the command line.
//!
//! - [`api`]: the admin HTTP server: health, readiness, metrics, components.
//! - [`components`]: every component the binary can run, listed once; `registry`
//!   holds the macros that turn the list into config enums and start-up steps.
//! - [`config`]: the config file: sources, filters and sinks composed from the
//!   components' typed configs; loading and validation with located errors.
//! - [`topology`]: builds the router, buffers and tasks from a config, runs them, and
//!   shuts them down in order.
//! - [`graph`]: the route graph that `nagare validate` prints.
//! - [`logging`]: nagare's own logs (text or JSON).
//! - [`top`]: `nagare top`, a live terminal view of a running process, read from its
//!   admin API.
//! - [`tap`]: `nagare tap`, the events at a point of a running process's pipeline,
//!   as NDJSON.
//! - [`health`]: `nagare health`, the exit status of a process's `/healthz` or
//!   `/readyz`, for container health checks.
//! - [`demo`]: `nagare demo`, the whole pipeline on realistic container logs, in two
//!   processes, into a local file sink.

pub mod api;
pub mod components;
pub mod config;
pub mod demo;
pub mod graph;
pub mod health;
pub mod logging;
mod registry;
pub mod tap;
pub mod top;
pub mod topology;
