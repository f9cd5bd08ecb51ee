//! The listener and its accept loop, and the UDP heartbeat responder on the same
//! port; or, with `unix_path`, a Unix socket listener (see `unix`).
//!
//! A semaphore caps the clients served at once: a permit is taken *before* `accept`,
//! so when every permit is in use further clients wait in the kernel's listen backlog
//! instead of being accepted and starved. Each client runs as a task of a `JoinSet`
//! owned by the server, so dropping the server's future (an aborted task) closes
//! every connection with it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nagare_core::component::{Invalid, SourceComponent, SourceContext, SourceTags};
use nagare_core::forward::UDP_HEARTBEAT;
use nagare_core::shutdown::Shutdown;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UdpSocket, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};

use super::config::ForwardSourceConfig;
use super::connection::{self, Shared};
use super::handshake::Auth;
use super::tls::{self, TlsSetupError};
use super::unix::{UnixSocket, UnixSocketError};

/// Why the forward server could not start.
#[derive(Debug, Error)]
pub enum ForwardSourceError {
    /// The config has a value that cannot work.
    #[error("invalid forward source config at `{}`: {}", .0.key, .0.message)]
    Invalid(#[from] Invalid),
    /// The listening socket could not be opened.
    #[error(
        "cannot listen for forward clients on {addr}: {source}; {}",
        bind_hint(source)
    )]
    Bind {
        /// The configured `bind` address.
        addr: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
    /// The `unix_path` socket could not be opened.
    #[error(transparent)]
    Unix(#[from] UnixSocketError),
    /// The TLS certificate, key or CA cannot be used.
    #[error("cannot set up TLS for the forward source: {0}")]
    Tls(#[from] TlsSetupError),
}

fn bind_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::AddrInUse => {
            "another process (a Fluentd, another nagare) already listens on this port; stop it or change `bind`"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need privileges; use a higher port (the Fluentd default is 24224)"
        }
        io::ErrorKind::AddrNotAvailable => {
            "the address is not one of this host's; use 0.0.0.0 to listen on every interface"
        }
        _ => "check `bind`",
    }
}

/// A bound Forward Protocol server, ready to [`run`](ForwardServer::run).
#[derive(Debug)]
pub struct ForwardServer {
    listener: Listener,
    config: ForwardSourceConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Where clients connect.
#[derive(Debug)]
enum Listener {
    /// TCP, with UDP heartbeats answered on the same port.
    Tcp {
        listener: TcpListener,
        heartbeats: UdpSocket,
        addr: SocketAddr,
    },
    /// A Unix socket (`unix_path`).
    Unix(UnixSocket),
}

/// Where a forward server listens, as its log lines and `nagare validate` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket's path.
    Unix(PathBuf),
}

impl Endpoint {
    fn of(config: &ForwardSourceConfig) -> Endpoint {
        match &config.unix_path {
            Some(path) => Endpoint::Unix(path.clone()),
            None => Endpoint::Tcp(config.bind),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "{addr}"),
            // The form fluent-logger and Docker's fluentd driver take as an address.
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
        }
    }
}

/// A client just accepted.
enum Accepted {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl ForwardServer {
    /// Validates the config, reads the TLS files and opens the listening sockets (TCP,
    /// and UDP on the same port for heartbeats), so that a mistake or a taken port
    /// fails at startup rather than once the pipeline runs.
    pub async fn bind(config: &ForwardSourceConfig) -> Result<ForwardServer, ForwardSourceError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let listener = match &config.unix_path {
            Some(path) => Listener::Unix(UnixSocket::bind(path, config.unix_perm).await?),
            None => bind_tcp(config.bind).await?,
        };
        Ok(ForwardServer {
            listener,
            config: config.clone(),
            tls,
        })
    }

    /// The TCP address actually listened on (the port the system chose for port 0).
    ///
    /// # Panics
    ///
    /// On a server listening on a Unix socket (`unix_path`), which has no address;
    /// [`endpoint`](Self::endpoint) serves both.
    pub fn local_addr(&self) -> SocketAddr {
        match &self.listener {
            Listener::Tcp { addr, .. } => *addr,
            Listener::Unix(socket) => panic!(
                "the forward server listens on the Unix socket {}, not on a TCP address",
                socket.path().display()
            ),
        }
    }

    /// Where the server listens.
    pub fn endpoint(&self) -> Endpoint {
        match &self.listener {
            Listener::Tcp { addr, .. } => Endpoint::Tcp(*addr),
            Listener::Unix(socket) => Endpoint::Unix(socket.path().to_path_buf()),
        }
    }

    /// Serves clients until `ctx.shutdown` is cancelled; then stops accepting, lets
    /// each connection finish the frame it is processing, and returns once all are
    /// closed.
    pub async fn run(self, ctx: SourceContext) -> Result<(), ForwardSourceError> {
        let endpoint = self.endpoint();
        let ForwardServer {
            listener,
            config,
            tls,
        } = self;
        let auth = config
            .security
            .as_ref()
            .map(|s| Auth::new(s, !config.deny_keepalive));
        // Client host names are resolved before the first client is served.
        if let Some(auth) = &auth {
            auth.clients.resolve(&ctx.name).await;
        }
        let shared = Arc::new(Shared {
            source: ctx.name.clone(),
            router: ctx.router.clone(),
            shutdown: ctx.shutdown.clone(),
            limits: config.limits(),
            idle_timeout: config.idle_timeout(),
            tls,
            auth,
            deny_keepalive: config.deny_keepalive,
            budget: Arc::new(Semaphore::new(
                config.max_buffered_bytes.as_usize().div_ceil(1024),
            )),
            counters: connection::Counters::new(&ctx.metrics),
        });
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let mut connections = JoinSet::new();
        let mut accept_failures = 0u32;
        // In a JoinSet owned by this future, so that dropping the server (an aborted
        // task) releases the UDP port with the TCP one.
        let mut responder = JoinSet::new();
        let listener = match listener {
            Listener::Tcp {
                listener,
                heartbeats,
                ..
            } => {
                responder.spawn(answer_heartbeats(
                    heartbeats,
                    ctx.name.clone(),
                    ctx.shutdown.clone(),
                ));
                Listening::Tcp(listener)
            }
            Listener::Unix(socket) => Listening::Unix(socket),
        };
        if shared.auth.is_some() {
            let shared = shared.clone();
            let (source, shutdown) = (ctx.name.clone(), ctx.shutdown.clone());
            responder.spawn(async move {
                if let Some(auth) = &shared.auth {
                    auth.clients.keep_resolved(source, shutdown).await;
                }
            });
        }
        tracing::info!(
            source = %ctx.name,
            addr = %endpoint,
            max_connections = config.max_connections,
            tls = shared.tls.is_some(),
            shared_key = shared.auth.is_some(),
            "forward server listening"
        );

        loop {
            let accepted = tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break,
                Some(done) = connections.join_next() => {
                    report_panic(&ctx.name, done);
                    continue;
                }
                accepted = accept(&listener, &permits) => accepted,
            };
            match accepted {
                Ok((Accepted::Tcp(stream, peer), permit)) => {
                    accept_failures = 0;
                    connections.spawn(connection::serve(stream, peer, shared.clone(), permit));
                }
                Ok((Accepted::Unix(stream), permit)) => {
                    accept_failures = 0;
                    connections.spawn(connection::serve_unix(stream, shared.clone(), permit));
                }
                Err(e) => {
                    // Usually out of file descriptors: wait for some to be released
                    // instead of spinning on the same error.
                    let wait = Duration::from_millis(10 << accept_failures.min(7));
                    accept_failures += 1;
                    tracing::warn!(
                        source = %ctx.name,
                        addr = %endpoint,
                        error = %e,
                        retry_in = ?wait,
                        "cannot accept a forward client; if this is \"too many open files\", raise the process's file limit or lower max_connections"
                    );
                    tokio::select! {
                        _ = ctx.shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }

        // For a Unix socket, this also removes its file: no client can connect
        // any more, and the next start finds the path free.
        drop(listener);
        // Waited for, not only aborted: the heartbeat responder holds the UDP port
        // until it is dropped, and a source started in this one's place on the same
        // port (a reload that renames it) binds as soon as this returns.
        responder.shutdown().await;
        let open = connections.len();
        if open > 0 {
            tracing::info!(
                source = %ctx.name,
                connections = open,
                "forward server stopped accepting; closing connections after their current frame"
            );
        }
        while let Some(done) = connections.join_next().await {
            report_panic(&ctx.name, done);
        }
        tracing::info!(source = %ctx.name, addr = %endpoint, "forward server stopped");
        Ok(())
    }
}

/// The `forward` source: built by binding its sockets.
impl SourceComponent for ForwardServer {
    const TYPE: &'static str = "forward";
    type Config = ForwardSourceConfig;
    type Error = ForwardSourceError;

    fn validate(config: &ForwardSourceConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn describe(config: &ForwardSourceConfig) -> SourceTags {
        SourceTags {
            summary: format!("forward on {}", Endpoint::of(config)),
            examples: None,
        }
    }

    async fn build(config: ForwardSourceConfig, name: &str) -> Result<Self, ForwardSourceError> {
        let server = Self::bind(&config).await?;
        tracing::info!(source = %name, addr = %server.endpoint(), "forward source listening");
        Ok(server)
    }

    async fn run(self, ctx: SourceContext) -> Result<(), ForwardSourceError> {
        ForwardServer::run(self, ctx).await
    }
}

/// Binds the server described by `config` and runs it until `ctx.shutdown`.
pub async fn run(
    config: ForwardSourceConfig,
    ctx: SourceContext,
) -> Result<(), ForwardSourceError> {
    ForwardServer::bind(&config).await?.run(ctx).await
}

/// Answers every UDP heartbeat (one byte, `0x00`) with the same byte, as Fluentd's
/// `in_forward` does, so that clients with `heartbeat_type: udp` see this server up.
async fn answer_heartbeats(socket: UdpSocket, source: String, shutdown: Shutdown) {
    let mut buf = [0u8; 128];
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        match received {
            Ok((_, peer)) => {
                if let Err(e) = socket.send_to(UDP_HEARTBEAT, peer).await {
                    tracing::debug!(source = %source, peer = %peer, error = %e, "cannot answer a UDP heartbeat");
                }
            }
            // An ICMP error for an earlier answer surfaces here on some systems;
            // it concerns that peer only.
            Err(e) => tracing::debug!(source = %source, error = %e, "UDP heartbeat receive failed"),
        }
    }
}

/// Opens the TCP listener, and the UDP socket for heartbeats on the same port.
async fn bind_tcp(bind: SocketAddr) -> Result<Listener, ForwardSourceError> {
    let bind_error = |addr, source| ForwardSourceError::Bind { addr, source };
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|e| bind_error(bind, e))?;
    let addr = listener.local_addr().map_err(|e| bind_error(bind, e))?;
    // Port 0 picked a TCP port; heartbeats go to that same port.
    let heartbeats = UdpSocket::bind(addr)
        .await
        .map_err(|e| bind_error(addr, e))?;
    Ok(Listener::Tcp {
        listener,
        heartbeats,
        addr,
    })
}

/// The listener while the server runs (the heartbeat socket has gone to its task).
enum Listening {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

async fn accept(
    listener: &Listening,
    permits: &Arc<Semaphore>,
) -> io::Result<(Accepted, OwnedSemaphorePermit)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    let accepted = match listener {
        Listening::Tcp(listener) => {
            let (stream, peer) = listener.accept().await?;
            Accepted::Tcp(stream, peer)
        }
        Listening::Unix(socket) => Accepted::Unix(socket.listener.accept().await?.0),
    };
    Ok((accepted, permit))
}

fn report_panic(source: &str, done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(source, error = %e, "a forward connection handler panicked; the connection was closed");
    }
}
