//! The `forward` source's config.
//!
//! ```yaml
//! sources:
//!   from_nodes:
//!     type: forward
//!     bind: 0.0.0.0:24224
//!     max_frame_size: 32MiB
//!     max_decompressed_size: 128MiB
//!     max_connections: 1024
//!     max_buffered_bytes: 256MiB
//!     idle_timeout: 120s
//!     deny_keepalive: false
//!     tls:
//!       cert_path: /etc/nagare/tls/tls.crt
//!       private_key_path: /etc/nagare/tls/tls.key
//!       private_key_passphrase: ${TLS_KEY_PASSPHRASE}
//!       ca_path: /etc/nagare/tls/ca.crt
//!       client_cert_auth: true
//!     security:
//!       self_hostname: aggregator-0
//!       shared_key: ${FORWARD_SHARED_KEY}
//!       user_auth: true
//!       users:
//!         - username: node
//!           password: ${FORWARD_PASSWORD}
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration, Secret};
use nagare_core::forward::DecodeLimits;
use serde::Deserialize;

/// Largest frame the protocol can express: a `bin 32` payload is at most 4 GiB.
const PROTOCOL_MAX_FRAME: u64 = 4 << 30;

/// Config of the Forward Protocol server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSourceConfig {
    /// Address and port to listen on, for TCP and for UDP heartbeats (`0.0.0.0:24224`,
    /// `[::]:24224`, `127.0.0.1:0` for a port chosen by the system).
    #[serde(default = "default_bind")]
    pub bind: SocketAddr,
    /// Largest frame accepted, as received on the wire. A client that sends a larger
    /// one is disconnected (it should split its chunks: Fluentd's `chunk_limit_size`,
    /// Fluent Bit's `Buffer_Chunk_Size`).
    #[serde(default = "default_max_frame_size")]
    pub max_frame_size: ByteSize,
    /// Largest payload a compressed frame may inflate to; guards against
    /// compression bombs.
    #[serde(default = "default_max_decompressed_size")]
    pub max_decompressed_size: ByteSize,
    /// Most clients served at once. Further connections wait in the listen backlog
    /// until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most bytes of partly received frames held across all connections. Each
    /// connection reads into 64 KiB without counting; a frame larger than that draws
    /// on this budget while it arrives. When it is spent, connections wait (their
    /// clients see TCP backpressure), so memory stays bounded however many clients
    /// send large frames at once. At least `max_frame_size`.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: ByteSize,
    /// A connection that sends nothing (not even a heartbeat) for this long is closed;
    /// so is one that cannot get buffer budget for this long. `0` keeps idle
    /// connections open forever.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
    /// Close each connection after its first events frame (and its ack), as Fluentd's
    /// `deny_keepalive`; the HELO of the handshake tells clients so.
    #[serde(default)]
    pub deny_keepalive: bool,
    /// Serve TLS instead of plain TCP.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// Require the shared-key handshake (HELO / PING / PONG), optionally with users.
    #[serde(default)]
    pub security: Option<SecurityConfig>,
}

/// TLS for the forward server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM file with the server's certificate, followed by its intermediates.
    pub cert_path: PathBuf,
    /// PEM file with the certificate's private key: PKCS#8, PKCS#1 or SEC1, or one of
    /// them encrypted with `private_key_passphrase`.
    pub private_key_path: PathBuf,
    /// The passphrase of an encrypted private key (PKCS#8 `BEGIN ENCRYPTED PRIVATE
    /// KEY`, or OpenSSL's older `Proc-Type: 4,ENCRYPTED` PEM); Fluentd's
    /// `private_key_passphrase`.
    #[serde(default)]
    pub private_key_passphrase: Option<Secret>,
    /// PEM file with the CA certificates that client certificates are verified
    /// against. Without it, clients are not asked for a certificate.
    #[serde(default)]
    pub ca_path: Option<PathBuf>,
    /// Refuse clients that present no certificate (needs `ca_path`). Without it, a
    /// certificate is verified when a client offers one.
    #[serde(default)]
    pub client_cert_auth: bool,
}

/// The handshake's secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// The name this server gives in PONG (it must differ from the clients' names).
    /// Defaults to the machine's host name.
    #[serde(default)]
    pub self_hostname: Option<String>,
    /// The key every client must prove it knows.
    pub shared_key: Secret,
    /// Also require a username and password listed in `users`.
    #[serde(default)]
    pub user_auth: bool,
    /// The accepted users, with `user_auth`.
    #[serde(default)]
    pub users: Vec<UserConfig>,
}

/// One user of user authentication.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 24224))
}

fn default_max_frame_size() -> ByteSize {
    ByteSize(32 << 20)
}

fn default_max_decompressed_size() -> ByteSize {
    ByteSize(128 << 20)
}

fn default_max_connections() -> usize {
    1024
}

fn default_max_buffered_bytes() -> ByteSize {
    ByteSize(256 << 20)
}

fn default_idle_timeout() -> HumanDuration {
    HumanDuration::secs(120)
}

impl Default for ForwardSourceConfig {
    fn default() -> Self {
        Self {
            bind: default_bind(),
            max_frame_size: default_max_frame_size(),
            max_decompressed_size: default_max_decompressed_size(),
            max_connections: default_max_connections(),
            max_buffered_bytes: default_max_buffered_bytes(),
            idle_timeout: default_idle_timeout(),
            deny_keepalive: false,
            tls: None,
            security: None,
        }
    }
}

impl ForwardSourceConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_frame_size.0 == 0 || self.max_frame_size.0 > PROTOCOL_MAX_FRAME {
            return Err(Invalid::new(
                "max_frame_size",
                format!(
                    "`{}` is not a usable frame limit; give a size between 1 byte and 4GiB (default 32MiB)",
                    self.max_frame_size
                ),
            ));
        }
        if self.max_decompressed_size < self.max_frame_size {
            return Err(Invalid::new(
                "max_decompressed_size",
                format!(
                    "`{}` is smaller than max_frame_size ({}), so compressed frames that fit on the wire would be refused once inflated; make it at least max_frame_size",
                    self.max_decompressed_size, self.max_frame_size
                ),
            ));
        }
        if self.max_connections == 0 {
            return Err(Invalid::new(
                "max_connections",
                "0 would refuse every client; give at least 1 (default 1024)",
            ));
        }
        if self.max_buffered_bytes < self.max_frame_size {
            return Err(Invalid::new(
                "max_buffered_bytes",
                format!(
                    "`{}` is smaller than max_frame_size ({}), so a frame of the largest allowed size could never be received; make it at least max_frame_size",
                    self.max_buffered_bytes, self.max_frame_size
                ),
            ));
        }
        if let Some(tls) = &self.tls
            && tls.client_cert_auth
            && tls.ca_path.is_none()
        {
            return Err(Invalid::new(
                "tls.client_cert_auth",
                "client certificates can only be verified against a CA: set tls.ca_path too",
            ));
        }
        if let Some(sec) = &self.security {
            if sec.shared_key.expose().is_empty() {
                return Err(Invalid::new(
                    "security.shared_key",
                    "the shared key is empty; give the key the clients share (Fluentd's <security> shared_key)",
                ));
            }
            if sec.user_auth && sec.users.is_empty() {
                return Err(Invalid::new(
                    "security.users",
                    "user_auth is on but no user is listed; add `- username: ... password: ...` or turn user_auth off",
                ));
            }
            if let Some(h) = &sec.self_hostname
                && h.trim().is_empty()
            {
                return Err(Invalid::new(
                    "security.self_hostname",
                    "the host name is empty; leave it out to use the machine's host name",
                ));
            }
        }
        Ok(())
    }

    /// The limits the frame decoder enforces.
    pub fn limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_frame_bytes: self.max_frame_size.as_usize(),
            max_decompressed_bytes: self.max_decompressed_size.as_usize(),
        }
    }

    /// The idle timeout, `None` when disabled.
    pub fn idle_timeout(&self) -> Option<Duration> {
        let d = Duration::from(self.idle_timeout);
        (!d.is_zero()).then_some(d)
    }
}

/// The machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`, else
/// `localhost`).
pub fn machine_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}
