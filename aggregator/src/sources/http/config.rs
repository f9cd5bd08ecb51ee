//! The `http` source's config.
//!
//! ```yaml
//! sources:
//!   from_apps:
//!     type: http
//!     bind: 0.0.0.0:9880
//!     body_size_limit: 32MiB
//!     bearer_token: ${HTTP_INPUT_TOKEN}
//!     time_key: time
//!     add_remote_addr: false
//!     add_http_headers: false
//!     use_204_response: false
//!     keepalive_timeout: 10s
//!     max_connections: 1024
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration, Secret};
use serde::Deserialize;

/// Config of the HTTP input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceConfig {
    /// Address and port to listen on (Fluentd's `in_http` default port is 9880).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Largest request body accepted, after gzip decompression; larger ones get 413.
    #[serde(default = "default_body_size_limit")]
    pub body_size_limit: ByteSize,
    /// When set, every request must carry `Authorization: Bearer <token>`; others get
    /// 401.
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Record field holding the event time (seconds since the epoch, integer, float or
    /// numeric string); it is removed from the record. Records without it take the
    /// `time` query parameter, or the time of arrival. Empty: never read from records.
    #[serde(default = "default_time_key")]
    pub time_key: String,
    /// Add the client's address to each record as `REMOTE_ADDR`.
    #[serde(default)]
    pub add_remote_addr: bool,
    /// Add each request header to each record as `HTTP_<NAME>` (upper case, `-` as
    /// `_`), except `Authorization`.
    #[serde(default)]
    pub add_http_headers: bool,
    /// Answer accepted requests with 204 No Content instead of 200 OK.
    #[serde(default)]
    pub use_204_response: bool,
    /// How long a kept-alive connection may wait for its next request.
    #[serde(default = "default_keepalive_timeout")]
    pub keepalive_timeout: HumanDuration,
    /// Most connections served at once; more wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9880))
}

fn default_body_size_limit() -> ByteSize {
    ByteSize(32 << 20)
}

fn default_time_key() -> String {
    "time".to_string()
}

fn default_keepalive_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

fn default_max_connections() -> usize {
    1024
}

impl Default for HttpSourceConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            body_size_limit: default_body_size_limit(),
            bearer_token: None,
            time_key: default_time_key(),
            add_remote_addr: false,
            add_http_headers: false,
            use_204_response: false,
            keepalive_timeout: default_keepalive_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

impl HttpSourceConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.body_size_limit.0 == 0 {
            return Err(Invalid::new(
                "body_size_limit",
                "0 would refuse every request; give a size like `32MiB` (the default)",
            ));
        }
        if self.max_connections == 0 {
            return Err(Invalid::new(
                "max_connections",
                "0 would refuse every client; give at least 1 (default 1024)",
            ));
        }
        if let Some(t) = &self.bearer_token
            && t.expose().trim().is_empty()
        {
            return Err(Invalid::new(
                "bearer_token",
                "the token is empty; give one, or leave the key out to accept every request",
            ));
        }
        if Duration::from(self.keepalive_timeout).is_zero() {
            return Err(Invalid::new(
                "keepalive_timeout",
                "must be longer than 0, like `10s`",
            ));
        }
        Ok(())
    }
}
