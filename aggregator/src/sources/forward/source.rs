//! The listener and its accept loop, and the UDP heartbeat responder on the same
//! port.
//!
//! A semaphore caps the clients served at once: a permit is taken *before* `accept`,
//! so when every permit is in use further clients wait in the kernel's listen backlog
//! instead of being accepted and starved. Each client runs as a task of a `JoinSet`
//! owned by the server, so dropping the server's future (an aborted task) closes
//! every connection with it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nagare_core::component::{Invalid, SourceContext};
use nagare_core::forward::UDP_HEARTBEAT;
use nagare_core::shutdown::Shutdown;
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinError, JoinSet};

use super::config::ForwardSourceConfig;
use super::connection::{self, Shared};
use super::handshake::Auth;
use super::tls::{self, TlsSetupError};

/// Why the forward server could not start.
#[derive(Debug, Error)]
pub enum ForwardError {
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
    listener: TcpListener,
    heartbeats: UdpSocket,
    local_addr: SocketAddr,
    config: ForwardSourceConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl ForwardServer {
    /// Validates the config, reads the TLS files and opens the listening sockets (TCP,
    /// and UDP on the same port for heartbeats), so that a mistake or a taken port
    /// fails at startup rather than once the pipeline runs.
    pub async fn bind(config: &ForwardSourceConfig) -> Result<ForwardServer, ForwardError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(tls::server_config).transpose()?;
        let bind_error = |addr, source| ForwardError::Bind { addr, source };
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|e| bind_error(config.bind, e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| bind_error(config.bind, e))?;
        // Port 0 picked a TCP port; heartbeats go to that same port.
        let heartbeats = UdpSocket::bind(local_addr)
            .await
            .map_err(|e| bind_error(local_addr, e))?;
        Ok(ForwardServer {
            listener,
            heartbeats,
            local_addr,
            config: config.clone(),
            tls,
        })
    }

    /// The address actually listened on (the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves clients until `ctx.shutdown` is cancelled; then stops accepting, lets
    /// each connection finish the frame it is processing, and returns once all are
    /// closed.
    pub async fn run(self, ctx: SourceContext) -> Result<(), ForwardError> {
        let ForwardServer {
            listener,
            heartbeats,
            local_addr,
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
        });
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let mut connections = JoinSet::new();
        let mut accept_failures = 0u32;
        // In a JoinSet owned by this future, so that dropping the server (an aborted
        // task) releases the UDP port with the TCP one.
        let mut responder = JoinSet::new();
        responder.spawn(answer_heartbeats(
            heartbeats,
            ctx.name.clone(),
            ctx.shutdown.clone(),
        ));
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
            addr = %local_addr,
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
                Ok((stream, peer, permit)) => {
                    accept_failures = 0;
                    connections.spawn(connection::serve(stream, peer, shared.clone(), permit));
                }
                Err(e) => {
                    // Usually out of file descriptors: wait for some to be released
                    // instead of spinning on the same error.
                    let wait = Duration::from_millis(10 << accept_failures.min(7));
                    accept_failures += 1;
                    tracing::warn!(
                        source = %ctx.name,
                        addr = %local_addr,
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

        drop(listener);
        responder.abort_all();
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
        tracing::info!(source = %ctx.name, addr = %local_addr, "forward server stopped");
        Ok(())
    }
}

/// Binds the server described by `config` and runs it until `ctx.shutdown`.
pub async fn run(config: ForwardSourceConfig, ctx: SourceContext) -> Result<(), ForwardError> {
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

async fn accept(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
) -> io::Result<(TcpStream, SocketAddr, OwnedSemaphorePermit)> {
    let permit = permits
        .clone()
        .acquire_owned()
        .await
        .expect("the connection semaphore is never closed");
    let (stream, peer) = listener.accept().await?;
    Ok((stream, peer, permit))
}

fn report_panic(source: &str, done: Result<(), JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!(source, error = %e, "a forward connection handler panicked; the connection was closed");
    }
}
