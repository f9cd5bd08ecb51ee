//! The `forward` sink's config.
//!
//! ```yaml
//! sinks:
//!   to_aggregator:
//!     type: forward
//!     match: "kube.**"
//!     servers:
//!       - host: nagare-aggregator-0.nagare-aggregator
//!       - host: nagare-aggregator-1.nagare-aggregator
//!         port: 24224
//!     require_ack_response: true
//!     ack_response_timeout: 60s
//!     connect_timeout: 5s
//!     send_timeout: 60s
//!     compress: gzip
//!     max_in_flight: 4
//!     retry_wait: 1s
//!     retry_max_interval: 30s
//! ```

use std::fmt;
use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::config::HumanDuration;
use nagare_core::forward::Compression;
use nagare_core::retry::Backoff;
use serde::Deserialize;

/// Config of the Forward Protocol client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSinkConfig {
    /// The aggregators, in order of preference: each (re)connection tries them from
    /// the first, and the first that accepts is used until it fails.
    pub servers: Vec<ServerConfig>,
    /// Wait for the server's `{"ack": chunk}` before a chunk leaves the buffer
    /// (at-least-once). Without it a chunk is done once written to the socket, and a
    /// server that dies loses what it had not yet taken in.
    #[serde(default = "default_require_ack_response")]
    pub require_ack_response: bool,
    /// How long to wait for a chunk's ack before the connection is deemed broken:
    /// it is closed, reopened, and every unacknowledged chunk is sent again.
    #[serde(default = "default_ack_response_timeout")]
    pub ack_response_timeout: HumanDuration,
    /// How long to wait for a server to accept a connection (name resolution
    /// included) before trying the next one.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// How long writing one chunk may take before the connection is deemed broken.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: HumanDuration,
    /// Compression of the chunks on the wire: `none`, `gzip` (understood by every
    /// Fluentd and Fluent Bit) or `zstd` (nagare aggregators only).
    #[serde(default)]
    pub compress: Compress,
    /// Most chunks sent and awaiting their ack on a connection at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// First wait before reconnecting after a failure; doubles per failure.
    #[serde(default = "default_retry_wait")]
    pub retry_wait: HumanDuration,
    /// Longest wait between reconnection attempts.
    #[serde(default = "default_retry_max_interval")]
    pub retry_max_interval: HumanDuration,
}

/// One aggregator.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    #[serde(default = "default_port")]
    pub port: u16,
}

impl fmt::Display for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Compression of the chunks on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compress {
    /// PackedForward: the chunk's entries as they are.
    #[default]
    None,
    /// CompressedPackedForward with gzip.
    Gzip,
    /// CompressedPackedForward with zstd (a nagare extension).
    Zstd,
}

impl Compress {
    /// The protocol's compression, `None` for plain PackedForward.
    pub fn compression(self) -> Option<Compression> {
        match self {
            Compress::None => None,
            Compress::Gzip => Some(Compression::Gzip),
            Compress::Zstd => Some(Compression::Zstd),
        }
    }
}

fn default_require_ack_response() -> bool {
    true
}

fn default_ack_response_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::secs(5)
}

fn default_send_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}

fn default_max_in_flight() -> usize {
    4
}

fn default_retry_wait() -> HumanDuration {
    HumanDuration::secs(1)
}

fn default_retry_max_interval() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_port() -> u16 {
    24224
}

impl ForwardSinkConfig {
    /// A config with the defaults and these servers.
    pub fn new(servers: Vec<ServerConfig>) -> Self {
        Self {
            servers,
            require_ack_response: default_require_ack_response(),
            ack_response_timeout: default_ack_response_timeout(),
            connect_timeout: default_connect_timeout(),
            send_timeout: default_send_timeout(),
            compress: Compress::default(),
            max_in_flight: default_max_in_flight(),
            retry_wait: default_retry_wait(),
            retry_max_interval: default_retry_max_interval(),
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.servers.is_empty() {
            return Err(Invalid::new(
                "servers",
                "no server to send to; list at least one `- host: ...` (port defaults to 24224)",
            ));
        }
        for (i, server) in self.servers.iter().enumerate() {
            if server.host.trim().is_empty() {
                return Err(Invalid::new(
                    format!("servers.{i}.host"),
                    "the host is empty; give a host name or an IP address",
                ));
            }
            if server.port == 0 {
                return Err(Invalid::new(
                    format!("servers.{i}.port"),
                    "port 0 cannot be connected to; the Fluentd default is 24224",
                ));
            }
        }
        if self.max_in_flight == 0 {
            return Err(Invalid::new(
                "max_in_flight",
                "0 would never send anything; give at least 1 (default 4)",
            ));
        }
        let positive = [
            ("ack_response_timeout", self.ack_response_timeout),
            ("connect_timeout", self.connect_timeout),
            ("send_timeout", self.send_timeout),
            ("retry_wait", self.retry_wait),
        ];
        for (key, value) in positive {
            if value.0.is_zero() {
                return Err(Invalid::new(
                    key,
                    "must be longer than 0, like `500ms` or `5s`",
                ));
            }
        }
        if self.retry_max_interval < self.retry_wait {
            return Err(Invalid::new(
                "retry_max_interval",
                format!(
                    "`{}` is shorter than retry_wait (`{}`); make it at least as long",
                    self.retry_max_interval, self.retry_wait
                ),
            ));
        }
        Ok(())
    }

    /// The reconnection backoff.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.retry_wait.into(),
            max: self.retry_max_interval.into(),
            ..Backoff::default()
        }
    }

    pub(super) fn ack_response_timeout(&self) -> Duration {
        self.ack_response_timeout.into()
    }

    pub(super) fn connect_timeout(&self) -> Duration {
        self.connect_timeout.into()
    }

    pub(super) fn send_timeout(&self) -> Duration {
        self.send_timeout.into()
    }
}
