//! One connection to one server address: TCP, TLS if configured, the shared-key
//! handshake if configured; then frames out, acks in.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use nagare_core::config::Secret;
use nagare_core::forward::handshake::{self, Ping};
use nagare_core::forward::{self, DecodeError};
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::encoder::EncodedChunk;

/// More response bytes than this without a whole ack is not a forward server.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// How long an idle connection waits before the kernel starts probing the peer.
const TCP_KEEPALIVE: Duration = Duration::from_secs(30);

/// Why a connection could not be opened or stopped working.
#[derive(Debug, Error)]
pub(super) enum ConnectionError {
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no connection within connect_timeout ({0:?})")]
    ConnectTimeout(Duration),
    #[error(
        "TLS handshake failed: {0}; check that tls.ca_path holds the CA of the server's certificate and that the certificate is for the server's name"
    )]
    Tls(io::Error),
    #[error(
        "the server requires the shared-key handshake (it sent HELO); configure `security.shared_key`"
    )]
    HandshakeRequired,
    #[error("invalid handshake message from the server: {0}")]
    Handshake(DecodeError),
    #[error(
        "the server refused the handshake: {0}; check `security.shared_key` (and username/password)"
    )]
    Refused(String),
    #[error(
        "the server's answer does not prove it knows the shared key (PONG digest mismatch); it is not configured with the same shared_key"
    )]
    ServerKeyMismatch,
    #[error(
        "the server calls itself `{0}`, the same name as this client's self_hostname; give each side its own name"
    )]
    SameHostname(String),
    #[error("the server closed the connection")]
    Closed,
    #[error("the connection failed: {0}")]
    Io(io::Error),
    #[error("writing a chunk took longer than send_timeout ({0:?}); the server is not reading")]
    SendTimeout(Duration),
    #[error(
        "no ack within ack_response_timeout ({0:?}); the server is overloaded or stuck, or its buffer is full"
    )]
    AckTimeout(Duration),
    #[error("the server answered something that is not an ack ({0}); is it a forward server?")]
    Protocol(DecodeError),
}

/// The client's side of the handshake.
#[derive(Debug, Clone)]
pub(super) struct ClientAuth {
    pub(super) self_hostname: String,
    pub(super) shared_key: Secret,
    pub(super) user: Option<(String, Secret)>,
}

/// How to open connections to one server.
#[derive(Debug, Clone)]
pub(super) struct Link {
    pub(super) tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub(super) auth: Option<ClientAuth>,
    pub(super) connect_timeout: Duration,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// An open connection, handshake done.
pub(super) struct Connection {
    stream: Box<dyn Io>,
    peer: SocketAddr,
    responses: BytesMut,
    /// Whether the server keeps the connection open between chunks (its HELO says).
    server_keepalive: bool,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.peer)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr`, then TLS and the handshake as `link` says, all within its
    /// connect timeout.
    pub(super) async fn open(addr: SocketAddr, link: &Link) -> Result<Connection, ConnectionError> {
        let timeout = link.connect_timeout;
        tokio::time::timeout(timeout, Self::open_now(addr, link))
            .await
            .map_err(|_| ConnectionError::ConnectTimeout(timeout))?
    }

    async fn open_now(addr: SocketAddr, link: &Link) -> Result<Connection, ConnectionError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(ConnectionError::Connect)?;
        // Frames are written whole; do not let Nagle delay the last segment of one.
        tcp.set_nodelay(true).map_err(ConnectionError::Io)?;
        // A server that vanishes without a word (a node gone) is noticed on an idle
        // connection too.
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(TCP_KEEPALIVE)
            .with_interval(Duration::from_secs(10));
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        let stream: Box<dyn Io> = match &link.tls {
            Some((config, name)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(
                    connector
                        .connect(name.clone(), tcp)
                        .await
                        .map_err(ConnectionError::Tls)?,
                )
            }
            None => Box::new(tcp),
        };
        let mut conn = Connection {
            stream,
            peer: addr,
            responses: BytesMut::new(),
            server_keepalive: true,
        };
        if let Some(auth) = &link.auth {
            conn.handshake(auth).await?;
        }
        Ok(conn)
    }

    /// HELO in, PING out, PONG in and checked.
    async fn handshake(&mut self, auth: &ClientAuth) -> Result<(), ConnectionError> {
        let helo = loop {
            if let Some((helo, len)) =
                handshake::decode_helo(&self.responses).map_err(ConnectionError::Handshake)?
            {
                self.responses.advance(len);
                break helo;
            }
            self.read_more().await?;
        };
        self.server_keepalive = helo.keepalive;
        // Hex, sent as str: Fluent Bit's in_forward refuses a PING with a bin salt.
        let salt = handshake::new_shared_key_salt();
        let salt = salt.as_bytes();
        let key = auth.shared_key.expose();
        let (username, password_digest) = match &auth.user {
            Some((name, password)) if !helo.auth_salt.is_empty() => (
                name.clone(),
                handshake::password_digest(&helo.auth_salt, name, password.expose()),
            ),
            _ => (String::new(), String::new()),
        };
        let ping = Ping {
            hostname: auth.self_hostname.clone(),
            shared_key_salt: salt.to_vec(),
            shared_key_digest: handshake::shared_key_digest(
                salt,
                &auth.self_hostname,
                &helo.nonce,
                key,
            ),
            username,
            password_digest,
        };
        self.stream
            .write_all(&handshake::encode_ping(&ping))
            .await
            .map_err(ConnectionError::Io)?;
        self.stream.flush().await.map_err(ConnectionError::Io)?;
        let pong = loop {
            if let Some((pong, len)) =
                handshake::decode_pong(&self.responses).map_err(ConnectionError::Handshake)?
            {
                self.responses.advance(len);
                break pong;
            }
            self.read_more().await?;
        };
        if !pong.auth_ok {
            return Err(ConnectionError::Refused(pong.reason));
        }
        if pong.hostname == auth.self_hostname {
            return Err(ConnectionError::SameHostname(pong.hostname));
        }
        let expected = handshake::shared_key_digest(salt, &pong.hostname, &helo.nonce, key);
        if expected != pong.shared_key_digest {
            return Err(ConnectionError::ServerKeyMismatch);
        }
        Ok(())
    }

    async fn read_more(&mut self) -> Result<(), ConnectionError> {
        if self.responses.len() > MAX_RESPONSE_BYTES {
            return Err(ConnectionError::Protocol(DecodeError::TooLarge {
                size: self.responses.len(),
                limit: MAX_RESPONSE_BYTES,
            }));
        }
        self.responses.reserve(1024);
        let n = self
            .stream
            .read_buf(&mut self.responses)
            .await
            .map_err(ConnectionError::Io)?;
        if n == 0 {
            return Err(ConnectionError::Closed);
        }
        Ok(())
    }

    /// Whether the server keeps connections open between chunks.
    pub(super) fn server_keepalive(&self) -> bool {
        self.server_keepalive
    }

    /// Writes one frame (header, payload and trailer in vectored writes) and flushes.
    pub(super) async fn send(
        &mut self,
        frame: &EncodedChunk,
        timeout: Duration,
    ) -> Result<(), ConnectionError> {
        let write = async {
            let mut buf = frame.as_buf();
            self.stream.write_all_buf(&mut buf).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(timeout, write)
            .await
            .map_err(|_| ConnectionError::SendTimeout(timeout))?
            .map_err(ConnectionError::Io)
    }

    /// The next ack's chunk id. Cancel-safe: bytes read are kept for the next call.
    pub(super) async fn next_ack(&mut self) -> Result<String, ConnectionError> {
        loop {
            match forward::decode_ack(&self.responses) {
                Ok(Some((chunk, len))) => {
                    self.responses.advance(len);
                    return Ok(chunk);
                }
                Ok(None) => {}
                // A server that wants the handshake greets with HELO; tell the user
                // that rather than "not an ack".
                Err(e) => match handshake::decode_helo(&self.responses) {
                    Ok(Some(_)) => return Err(ConnectionError::HandshakeRequired),
                    Ok(None) => {}
                    Err(_) => return Err(ConnectionError::Protocol(e)),
                },
            }
            self.read_more().await?;
        }
    }
}
