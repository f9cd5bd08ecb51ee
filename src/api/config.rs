//! The `api:` section.

use std::net::SocketAddr;

use nagare_core::config::Secret;
use serde::Deserialize;

/// Where the admin server listens unless `bind` says otherwise: loopback, on the
/// port Fluentd's monitor agent uses.
pub const DEFAULT_BIND: &str = "127.0.0.1:24220";

/// The admin HTTP server (`/healthz`, `/readyz`, `/metrics`,
/// `/api/v1/components`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Whether to serve it at all.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Address and port to listen on. Loopback by default: set `0.0.0.0:24220` for
    /// Kubernetes probes and Prometheus scrapes from outside the pod. When it is
    /// not set and the default port is taken (two nagare processes on one host),
    /// nagare runs without the server and says so; a `bind` that is set and cannot
    /// be bound fails the start.
    #[serde(default)]
    pub bind: Option<SocketAddr>,
    /// A bearer token the mutating endpoints (`POST /api/v1/reload`) require in an
    /// `Authorization: Bearer <token>` header. Unset: they are open to whoever
    /// reaches `bind`. Use `${NAME}` to take it from the environment (a Secret).
    #[serde(default)]
    pub token: Option<Secret>,
}

fn default_enabled() -> bool {
    true
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: None,
            token: None,
        }
    }
}

impl ApiConfig {
    /// The address to listen on.
    pub fn address(&self) -> SocketAddr {
        self.bind.unwrap_or_else(|| {
            DEFAULT_BIND
                .parse()
                .expect("the default bind address parses")
        })
    }
}
