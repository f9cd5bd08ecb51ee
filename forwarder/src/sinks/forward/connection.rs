//! One TCP connection to an aggregator: frames out, acks in.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use nagare_core::forward::{self, DecodeError};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::ServerConfig;
use super::encoder::EncodedChunk;

/// More response bytes than this without a whole ack is not a forward server.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// Why a connection could not be opened or stopped working.
#[derive(Debug, Error)]
pub(super) enum ConnectionError {
    #[error("cannot resolve the host name: {0}")]
    Resolve(io::Error),
    #[error("the host name resolves to no address")]
    NoAddress,
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    #[error("no connection within connect_timeout ({0:?})")]
    ConnectTimeout(Duration),
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
    #[error(
        "the server answered something that is not an ack ({0}); does it require the shared-key handshake or TLS, which this sink does not speak?"
    )]
    Protocol(DecodeError),
}

/// An open connection.
#[derive(Debug)]
pub(super) struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    responses: BytesMut,
}

impl Connection {
    /// Resolves `server` and connects to the first of its addresses that accepts,
    /// all within `timeout`.
    pub(super) async fn open(
        server: &ServerConfig,
        timeout: Duration,
    ) -> Result<Connection, ConnectionError> {
        let connect = async {
            let addrs = tokio::net::lookup_host((server.host.as_str(), server.port))
                .await
                .map_err(ConnectionError::Resolve)?;
            let mut last = ConnectionError::NoAddress;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok((stream, addr)),
                    Err(e) => last = ConnectionError::Connect(e),
                }
            }
            Err(last)
        };
        let (stream, peer) = tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| ConnectionError::ConnectTimeout(timeout))??;
        // Frames are written whole; do not let Nagle delay the last segment of one.
        stream.set_nodelay(true).map_err(ConnectionError::Io)?;
        Ok(Connection {
            stream,
            peer,
            responses: BytesMut::new(),
        })
    }

    /// The address connected to.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
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
            if let Some((chunk, len)) =
                forward::decode_ack(&self.responses).map_err(ConnectionError::Protocol)?
            {
                self.responses.advance(len);
                return Ok(chunk);
            }
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
        }
    }
}
