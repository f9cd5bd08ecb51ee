//! One client: bytes in, frames out, chunks to the router, acks back.
//!
//! Frames of a connection are handled strictly in order, one at a time: the next one
//! is not looked at until the router accepted the previous one. A full buffer
//! downstream therefore stops this connection's reads, and TCP pushes back on the
//! client, which is the backpressure the `block` overflow policy promises.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use nagare_core::forward::{self, DecodeError, DecodeLimits, EventsMessage, Frame};
use nagare_core::router::Router;
use nagare_core::shutdown::Shutdown;
use nagare_core::{Chunk, ChunkId, Tag};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Bytes asked of the socket per read; frames larger than this grow the buffer.
const READ_SIZE: usize = 64 * 1024;

/// What every connection of one server shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) source: String,
    pub(super) router: Arc<Router>,
    pub(super) shutdown: Shutdown,
    pub(super) limits: DecodeLimits,
    pub(super) idle_timeout: Option<Duration>,
}

/// Why a connection ended.
#[derive(Debug)]
enum Close {
    /// The client closed between frames.
    PeerClosed,
    /// The client closed in the middle of a frame.
    Truncated { buffered: usize },
    /// The client sent something that is not a frame, or too large a frame.
    Invalid(DecodeError),
    /// Nothing arrived for the idle timeout.
    Idle(Duration),
    /// The socket failed (reset by the peer, usually).
    Io(io::Error),
    /// The server is shutting down.
    Shutdown,
    /// The pipeline no longer accepts chunks (shutdown reached the buffers).
    BufferClosed,
}

/// Serves one client until it leaves, misbehaves, idles out or the server stops.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    // Acks are tiny writes a client waits for: do not let Nagle hold them back.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(source = %shared.source, peer = %peer, error = %e, "cannot set TCP_NODELAY");
    }
    tracing::debug!(source = %shared.source, peer = %peer, "forward client connected");
    let mut conn = Connection {
        stream,
        peer,
        buf: BytesMut::with_capacity(READ_SIZE),
        shared: &shared,
    };
    let close = conn.run().await;
    let source = &shared.source;
    match close {
        Close::Invalid(e @ DecodeError::TooLarge { .. }) => {
            tracing::warn!(
                source = %source,
                peer = %peer,
                error = %e,
                "closing forward connection: the frame is too large; lower the client's chunk size or raise max_frame_size / max_decompressed_size"
            );
        }
        Close::Invalid(e) => {
            tracing::warn!(
                source = %source,
                peer = %peer,
                error = %e,
                "closing forward connection: the client sent bytes that are not a forward protocol frame (a TLS or HTTP client on this port?)"
            );
        }
        Close::Truncated { buffered } => {
            tracing::warn!(
                source = %source,
                peer = %peer,
                discarded_bytes = buffered,
                "forward client closed the connection in the middle of a frame; the partial frame is discarded (a client waiting for acks sends it again)"
            );
        }
        Close::Io(e) => {
            tracing::info!(source = %source, peer = %peer, error = %e, "forward connection failed");
        }
        Close::Idle(after) => {
            tracing::debug!(source = %source, peer = %peer, idle = ?after, "closing idle forward connection");
        }
        Close::PeerClosed => {
            tracing::debug!(source = %source, peer = %peer, "forward client disconnected");
        }
        Close::Shutdown | Close::BufferClosed => {
            tracing::debug!(source = %source, peer = %peer, "closing forward connection for shutdown");
        }
    }
}

struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    shared: &'a Shared,
}

impl Connection<'_> {
    async fn run(&mut self) -> Close {
        loop {
            if let Err(close) = self.handle_buffered_frames().await {
                return close;
            }
            self.buf.reserve(READ_SIZE);
            let read = tokio::select! {
                biased;
                _ = self.shared.shutdown.cancelled() => return Close::Shutdown,
                read = read_or_idle(&mut self.stream, &mut self.buf, self.shared.idle_timeout) => read,
            };
            match read {
                Ok(0) if self.buf.is_empty() => return Close::PeerClosed,
                Ok(0) => {
                    return Close::Truncated {
                        buffered: self.buf.len(),
                    };
                }
                Ok(_) => {}
                Err(ReadFailure::Idle(d)) => return Close::Idle(d),
                Err(ReadFailure::Io(e)) => return Close::Io(e),
            }
        }
    }

    /// Handles every whole frame in the buffer, in order.
    async fn handle_buffered_frames(&mut self) -> Result<(), Close> {
        let limits = &self.shared.limits;
        loop {
            // Between frames is where shutdown takes effect: the frame being handled
            // is finished (emitted and acked), the rest is left to the client's resend.
            if self.shared.shutdown.is_cancelled() {
                return Err(Close::Shutdown);
            }
            let Some(len) = forward::frame_len(&self.buf, limits).map_err(Close::Invalid)? else {
                return Ok(());
            };
            // The frame's bytes become the chunk's entries without a copy (unless
            // they were compressed or in Message mode).
            let frame = self.buf.split_to(len).freeze();
            match forward::decode_frame(frame, limits).map_err(Close::Invalid)? {
                Frame::Heartbeat => {}
                Frame::Events(message) => self.handle_events(message).await?,
            }
        }
    }

    async fn handle_events(&mut self, message: EventsMessage) -> Result<(), Close> {
        let EventsMessage {
            tag,
            entries,
            count,
            options,
            ..
        } = message;
        if count > 0 {
            let id = options
                .chunk
                .as_deref()
                .map(ChunkId::from_forward_option)
                .unwrap_or_else(ChunkId::random);
            let chunk = Chunk::new(id, Tag::from(tag), entries, count);
            if self.shared.router.emit(chunk).await.is_err() {
                return Err(Close::BufferClosed);
            }
        }
        // The ack says "it is in my buffer": sent only once the router took the chunk.
        if let Some(chunk) = options.chunk {
            let ack = forward::encode_ack(&chunk);
            let write = self.stream.write_all(&ack);
            let written = match self.shared.idle_timeout {
                Some(limit) => tokio::time::timeout(limit, write)
                    .await
                    .map_err(|_| Close::Idle(limit))?,
                None => write.await,
            };
            written.map_err(Close::Io)?;
            tracing::trace!(source = %self.shared.source, peer = %self.peer, chunk, "acked");
        }
        Ok(())
    }
}

enum ReadFailure {
    Idle(Duration),
    Io(io::Error),
}

async fn read_or_idle(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    idle: Option<Duration>,
) -> Result<usize, ReadFailure> {
    let read = stream.read_buf(buf);
    match idle {
        Some(limit) => match tokio::time::timeout(limit, read).await {
            Ok(r) => r.map_err(ReadFailure::Io),
            Err(_) => Err(ReadFailure::Idle(limit)),
        },
        None => read.await.map_err(ReadFailure::Io),
    }
}
