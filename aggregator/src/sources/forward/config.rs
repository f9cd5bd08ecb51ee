//! The `forward` source's config.
//!
//! ```yaml
//! sources:
//!   from_nodes:
//!     type: forward
//!     bind: 0.0.0.0:24224
//!     # unix_path: /var/run/fluent.sock   # instead of bind: a Unix socket
//!     # unix_perm: "0644"
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
//!         - username: legacy
//!           password: ${LEGACY_PASSWORD}
//!       allow_anonymous_source: false
//!       clients:
//!         - network: 10.0.0.0/8
//!           users: [node]
//!         - host: legacy-fluentd.example.com
//!           shared_key: ${LEGACY_SHARED_KEY}
//!           users: [legacy]
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration, Secret};
use nagare_core::forward::DecodeLimits;
use serde::Deserialize;

pub use super::clients::Network;

/// Longest Unix socket path Linux takes: `sun_path` holds 108 bytes with the
/// terminating NUL.
const MAX_UNIX_PATH: usize = 107;

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
    /// Listen on this Unix socket instead of TCP (Fluent Bit's `unix_path`): for
    /// clients on the same host or sharing a volume, such as the ECS agent's FireLens
    /// log router (`/var/run/fluent.sock`). `bind` is then not used and there are no
    /// UDP heartbeats. A socket file left by an earlier run is replaced; any other
    /// kind of file at the path is an error. The file is removed at stop.
    #[serde(default)]
    pub unix_path: Option<PathBuf>,
    /// Permissions of the `unix_path` socket file, octal like `chmod` (Fluent Bit's
    /// `unix_perm`). Connecting needs write permission: the default `0644` lets only
    /// the owner (and root) connect; `0660` the group too, `0666` everyone.
    #[serde(default = "default_unix_perm")]
    pub unix_perm: FileMode,
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

/// File permission bits, written in octal (`"0644"`, `660`, `0o600`).
///
/// The text is read as written, so `unix_perm: 0644` means what `chmod 0644` means,
/// although YAML alone would read `0644` as the decimal number 644.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(pub u32);

impl FileMode {
    /// Parses octal digits, with an optional `0` or `0o` prefix.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let digits = t.strip_prefix("0o").unwrap_or(t);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if !digits.is_empty() && !digits.starts_with('+') && mode <= 0o7777 => {
                Ok(FileMode(mode))
            }
            _ => Err(format!(
                "`{text}` is not a file mode; give octal permission bits like chmod's, e.g. \"0644\" or \"0660\""
            )),
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // As text, whatever YAML would make of it: `0644` keeps its leading zero.
        let text = String::deserialize(d)?;
        FileMode::parse(&text).map_err(serde::de::Error::custom)
    }
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
    /// Accept clients that match no entry of `clients` (with `shared_key`). When
    /// false, such a client is refused, and `clients` must not be empty.
    #[serde(default = "default_allow_anonymous_source")]
    pub allow_anonymous_source: bool,
    /// Clients known by address, each with its own key and users (Fluentd's
    /// `<client>`). A connection is matched to the first entry its address belongs
    /// to.
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// How often the `host` names of `clients` are resolved again; `0` resolves them
    /// only at start.
    #[serde(default = "default_resolve_interval")]
    pub resolve_interval: HumanDuration,
}

/// Clients known by their address (Fluentd's `<client>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// A host name (or address): connections from any address it resolves to.
    /// Give `host` or `network`, not both.
    #[serde(default)]
    pub host: Option<String>,
    /// Connections from this network (`10.0.0.0/8`, `fd00::/8`, or one address).
    #[serde(default)]
    pub network: Option<Network>,
    /// The key these clients must prove they know, instead of `security.shared_key`.
    #[serde(default)]
    pub shared_key: Option<Secret>,
    /// With `user_auth`: the only `security.users` these clients may authenticate
    /// as. Empty: any of them.
    #[serde(default)]
    pub users: Vec<String>,
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

fn default_allow_anonymous_source() -> bool {
    true
}

fn default_resolve_interval() -> HumanDuration {
    HumanDuration::secs(60)
}

fn default_bind() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 24224))
}

fn default_unix_perm() -> FileMode {
    FileMode(0o644)
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
            unix_path: None,
            unix_perm: default_unix_perm(),
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
        self.validate_unix()?;
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
            sec.validate_clients()?;
        }
        Ok(())
    }

    /// A Unix socket's path must fit the system's limit, and what only works over
    /// TCP is refused rather than silently not applied.
    fn validate_unix(&self) -> Result<(), Invalid> {
        let Some(path) = &self.unix_path else {
            return Ok(());
        };
        let len = path.as_os_str().len();
        if len == 0 {
            return Err(Invalid::new(
                "unix_path",
                "the path is empty; give the socket file's path, like /var/run/fluent.sock, or leave unix_path out to listen on TCP",
            ));
        }
        if len > MAX_UNIX_PATH {
            return Err(Invalid::new(
                "unix_path",
                format!(
                    "`{}` is {len} bytes long; a Unix socket path may have at most {MAX_UNIX_PATH}, so choose a shorter one",
                    path.display()
                ),
            ));
        }
        if self.tls.is_some() {
            return Err(Invalid::new(
                "tls",
                "TLS is not served on a Unix socket (its clients are on this host, and the socket file's permissions, unix_perm, decide who may connect); remove tls, or listen on TCP with bind instead of unix_path",
            ));
        }
        if let Some(sec) = &self.security {
            if !sec.clients.is_empty() {
                return Err(Invalid::new(
                    "security.clients",
                    "entries match clients by network address, and a Unix socket's clients have none; remove them (security.shared_key and users still apply), or listen on TCP with bind",
                ));
            }
            if !sec.allow_anonymous_source {
                return Err(Invalid::new(
                    "security.allow_anonymous_source",
                    "false would refuse every client: on a Unix socket no client has an address to match a security.clients entry; leave it out (security.shared_key and users still apply)",
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

impl SecurityConfig {
    fn validate_clients(&self) -> Result<(), Invalid> {
        if !self.allow_anonymous_source && self.clients.is_empty() {
            return Err(Invalid::new(
                "security.allow_anonymous_source",
                "false would refuse every client, since no security.clients entry says who may connect; list them under `clients` (host or network), or leave allow_anonymous_source out",
            ));
        }
        for (i, client) in self.clients.iter().enumerate() {
            let at = |key: &str| format!("security.clients.{i}{key}");
            match (&client.host, &client.network) {
                (Some(_), Some(_)) => {
                    return Err(Invalid::new(
                        at(""),
                        "give host or network, not both; make two entries for both",
                    ));
                }
                (None, None) => {
                    return Err(Invalid::new(
                        at(""),
                        "say which clients this is: give host (a name or address) or network (like 10.0.0.0/8)",
                    ));
                }
                (Some(h), None) if h.trim().is_empty() => {
                    return Err(Invalid::new(
                        at(".host"),
                        "the host is empty; give a name or an address",
                    ));
                }
                _ => {}
            }
            if let Some(key) = &client.shared_key
                && key.expose().is_empty()
            {
                return Err(Invalid::new(
                    at(".shared_key"),
                    "the shared key is empty; give this client's key, or leave it out to use security.shared_key",
                ));
            }
            if !client.users.is_empty() && !self.user_auth {
                return Err(Invalid::new(
                    at(".users"),
                    "users only restrict who may log in with user_auth: true; turn user_auth on or remove the list",
                ));
            }
            if let Some(unknown) = client
                .users
                .iter()
                .find(|name| !self.users.iter().any(|u| &u.username == *name))
            {
                return Err(Invalid::new(
                    at(".users"),
                    format!(
                        "`{unknown}` is not one of security.users; add it there (with its password) or correct the name"
                    ),
                ));
            }
        }
        Ok(())
    }
}
