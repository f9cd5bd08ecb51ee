//! The `forward` sink's config.
//!
//! ```yaml
//! sinks:
//!   to_aggregator:
//!     type: forward
//!     match: "kube.**"
//!     servers:
//!       - host: nagare-aggregator.logging.svc.cluster.local
//!         port: 24224
//!         weight: 60
//!       - host: fallback-aggregator.logging.svc.cluster.local
//!         standby: true
//!     require_ack_response: true
//!     ack_response_timeout: 60s
//!     connect_timeout: 5s
//!     send_timeout: 60s
//!     compress: gzip
//!     max_in_flight: 4
//!     retry_wait: 1s
//!     retry_max_interval: 30s
//!     keepalive: true
//!     keepalive_timeout: 0s
//!     heartbeat_type: transport
//!     heartbeat_interval: 1s
//!     phi_failure_detector: true
//!     phi_threshold: 16
//!     hard_timeout: 60s
//!     recover_wait: 10s
//!     expire_dns_cache: 30s
//!     security:
//!       self_hostname: ${NODE_NAME}
//!       shared_key: ${FORWARD_SHARED_KEY}
//!     tls:
//!       ca_path: /etc/nagare/tls/ca.crt
//! ```

use std::fmt;
use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::compression::Compression;
use nagare_core::config::{HumanDuration, Secret};
use nagare_core::retry::Backoff;
pub use nagare_core::tls::ClientTlsConfig;
use serde::Deserialize;

/// Config of the Forward Protocol client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSinkConfig {
    /// The aggregators. Chunks are spread over the available primary servers by
    /// weight; `standby` servers receive chunks only while no primary is available.
    /// A host name that resolves to several addresses (a Kubernetes headless Service)
    /// gives one server per address.
    pub servers: Vec<ServerConfig>,
    /// Wait for the server's `{"ack": chunk}` before a chunk leaves the buffer
    /// (at-least-once). Without it a chunk is done once written to the socket, and a
    /// server that dies loses what it had not yet taken in.
    #[serde(default = "default_require_ack_response")]
    pub require_ack_response: bool,
    /// How long to wait for a chunk's ack before the connection is deemed broken:
    /// it is closed, and every unacknowledged chunk goes out again (to another server
    /// if this one is marked down).
    #[serde(default = "default_ack_response_timeout")]
    pub ack_response_timeout: HumanDuration,
    /// How long to wait for a server to accept a connection (TLS and the handshake
    /// included).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// How long writing one chunk may take before the connection is deemed broken.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: HumanDuration,
    /// Compression of the chunks on the wire: `none`, `gzip` (understood by every
    /// Fluentd and Fluent Bit) or `zstd` (nagare aggregators only).
    #[serde(default)]
    pub compress: Compression,
    /// Most chunks sent and awaiting their ack on one server's connection at once.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// First wait before trying a failed server again when heartbeats are off, and
    /// before resolving names again after a failure; doubles per failure.
    #[serde(default = "default_retry_wait")]
    pub retry_wait: HumanDuration,
    /// Longest of those waits.
    #[serde(default = "default_retry_max_interval")]
    pub retry_max_interval: HumanDuration,
    /// Keep each server's connection open between chunks (`false`: close it once
    /// every chunk sent on it is acknowledged, as Fluentd does by default).
    #[serde(default = "default_keepalive")]
    pub keepalive: bool,
    /// Close a kept-alive connection that carried nothing for this long; `0` never.
    #[serde(default)]
    pub keepalive_timeout: HumanDuration,
    /// How each server's health is checked: `transport` (open a connection as data
    /// would, TLS and handshake included), `tcp` (open a TCP connection), `udp` (a
    /// one-byte datagram to the server's port, answered by Fluentd and nagare), or
    /// `none` (only failed sends mark a server down).
    #[serde(default)]
    pub heartbeat_type: HeartbeatType,
    /// Time between heartbeats to each server.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: HumanDuration,
    /// Use the phi accrual failure detector on heartbeat arrivals (otherwise only
    /// `hard_timeout` and failed sends mark a server down).
    #[serde(default = "default_phi_failure_detector")]
    pub phi_failure_detector: bool,
    /// Suspicion level above which a server is marked down: phi = -log10 of the
    /// probability that a heartbeat still arrives this late.
    #[serde(default = "default_phi_threshold")]
    pub phi_threshold: f64,
    /// A server with no heartbeat for this long is marked down whatever phi says.
    #[serde(default = "default_hard_timeout")]
    pub hard_timeout: HumanDuration,
    /// A server marked down is used again once its heartbeats have arrived steadily
    /// for this long.
    #[serde(default = "default_recover_wait")]
    pub recover_wait: HumanDuration,
    /// How often host names are resolved again, so that servers added to or removed
    /// from a DNS name (pods of a headless Service) are followed. `0` resolves only at
    /// start and when every server is down.
    #[serde(default = "default_expire_dns_cache")]
    pub expire_dns_cache: HumanDuration,
    /// The shared-key handshake, for servers that require it.
    #[serde(default)]
    pub security: Option<ClientSecurityConfig>,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: Option<ClientTlsConfig>,
}

/// One aggregator (or one DNS name standing for several).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (and UDP port for heartbeats).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Share of the chunks relative to the other servers' weights; `0` sends
    /// nothing to it.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Send to this server only while no primary server is available.
    #[serde(default)]
    pub standby: bool,
    /// This server's shared key, instead of `security.shared_key`.
    #[serde(default)]
    pub shared_key: Option<Secret>,
    /// This server's user name, instead of `security.username`.
    #[serde(default)]
    pub username: Option<String>,
    /// This server's password, instead of `security.password`.
    #[serde(default)]
    pub password: Option<Secret>,
}

impl ServerConfig {
    /// A primary server with the default weight and no secrets of its own.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            weight: default_weight(),
            standby: false,
            shared_key: None,
            username: None,
            password: None,
        }
    }
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

/// The client's side of the handshake.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSecurityConfig {
    /// The name sent in PING (it must differ from the server's). Defaults to the
    /// machine's host name.
    #[serde(default)]
    pub self_hostname: Option<String>,
    /// The key shared with the servers.
    pub shared_key: Secret,
    /// User name, for servers with user authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, for servers with user authentication.
    #[serde(default)]
    pub password: Option<Secret>,
}

/// How the health of each server is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatType {
    /// Open a connection as data would (TLS and the handshake included) and close
    /// it; skipped while the data connection itself is getting acks.
    #[default]
    Transport,
    /// Open a TCP connection and close it.
    Tcp,
    /// Send `0x00` to the server's UDP port and wait for the answer.
    Udp,
    /// No heartbeats: a server is marked down when sending fails, and tried again
    /// after `retry_wait` (doubling to `retry_max_interval`).
    None,
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

fn default_keepalive() -> bool {
    true
}

fn default_heartbeat_interval() -> HumanDuration {
    HumanDuration::secs(1)
}

fn default_phi_failure_detector() -> bool {
    true
}

fn default_phi_threshold() -> f64 {
    16.0
}

fn default_hard_timeout() -> HumanDuration {
    HumanDuration::secs(60)
}

fn default_recover_wait() -> HumanDuration {
    HumanDuration::secs(10)
}

fn default_expire_dns_cache() -> HumanDuration {
    HumanDuration::secs(30)
}

fn default_port() -> u16 {
    24224
}

fn default_weight() -> u32 {
    60
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
            compress: Compression::default(),
            max_in_flight: default_max_in_flight(),
            retry_wait: default_retry_wait(),
            retry_max_interval: default_retry_max_interval(),
            keepalive: default_keepalive(),
            keepalive_timeout: HumanDuration::default(),
            heartbeat_type: HeartbeatType::default(),
            heartbeat_interval: default_heartbeat_interval(),
            phi_failure_detector: default_phi_failure_detector(),
            phi_threshold: default_phi_threshold(),
            hard_timeout: default_hard_timeout(),
            recover_wait: default_recover_wait(),
            expire_dns_cache: default_expire_dns_cache(),
            security: None,
            tls: None,
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
            if (server.shared_key.is_some() || server.username.is_some()) && self.security.is_none()
            {
                return Err(Invalid::new(
                    format!("servers.{i}"),
                    "a server with its own shared_key or username needs the sink's `security` section (for self_hostname and the defaults)",
                ));
            }
        }
        if !self.servers.iter().any(|s| !s.standby && s.weight > 0) {
            return Err(Invalid::new(
                "servers",
                "every server is a standby or has weight 0, so no chunk would ever be sent while they are all up; make at least one a primary with a weight above 0",
            ));
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
            ("heartbeat_interval", self.heartbeat_interval),
            ("hard_timeout", self.hard_timeout),
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
        if !(self.phi_threshold.is_finite() && self.phi_threshold > 0.0) {
            return Err(Invalid::new(
                "phi_threshold",
                "must be a number above 0 (default 16; lower detects failures sooner and raises false alarms more often)",
            ));
        }
        if let Some(sec) = &self.security {
            if sec.shared_key.expose().is_empty() {
                return Err(Invalid::new(
                    "security.shared_key",
                    "the shared key is empty; give the key the servers expect",
                ));
            }
            if sec.username.is_some() != sec.password.is_some() {
                return Err(Invalid::new(
                    "security",
                    "give both username and password, or neither",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            tls.validate(true)?;
        }
        Ok(())
    }

    /// The backoff between attempts at a failed server (without heartbeats) and at
    /// name resolution.
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

    pub(super) fn keepalive_timeout(&self) -> Option<Duration> {
        let d = Duration::from(self.keepalive_timeout);
        (!d.is_zero()).then_some(d)
    }

    pub(super) fn expire_dns_cache(&self) -> Option<Duration> {
        let d = Duration::from(self.expire_dns_cache);
        (!d.is_zero()).then_some(d)
    }
}
