//! One client: TLS and the handshake if configured, then bytes in, frames out,
//! chunks to the router, acks back.
//!
//! Frames of a connection are handled strictly in order, one at a time: the next one
//! is not looked at until the router accepted the previous one. A full buffer
//! downstream therefore stops this connection's reads, and TCP pushes back on the
//! client, which is the backpressure the `block` overflow policy promises.
//!
//! Memory: a connection reads into a 64 KiB buffer. A frame that needs more draws
//! on the server-wide budget (`max_buffered_bytes`, a semaphore counted in KiB)
//! before each further read, and gives it back once the frame is handed on; so the
//! partial frames of all connections together stay under the budget, whatever the
//! clients announce.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use nagare_core::forward::handshake::{self, Helo};
use nagare_core::forward::{self, DecodeError, DecodeLimits, EventsMessage, Frame, JsonScanner};
use nagare_core::router::Router;
use nagare_core::shutdown::Shutdown;
use nagare_core::{Chunk, ChunkId, Tag};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::handshake::{Auth, RefusalKind};
use nagare_core::metrics::{ComponentMetrics, Counter, Gauge};

/// Bytes asked of the socket per read while the buffer is small; frames larger than
/// this grow the buffer.
const READ_SIZE: usize = 64 * 1024;

/// Most bytes asked of the socket per read. A large frame is read in reads that grow
/// with what is buffered of it, up to this: fewer, larger reads cost both ends of the
/// connection less (fewer wake-ups, window updates and socket lock handovers).
const MAX_READ_SIZE: usize = 1024 * 1024;

/// Bytes a connection may hold without drawing on the shared budget: its read buffer
/// and one read beyond it.
const FREE_BYTES: usize = 2 * READ_SIZE;

/// How long a TLS handshake may take when no idle timeout is set.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// What every connection of one server shares.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) source: String,
    pub(super) router: Arc<Router>,
    pub(super) shutdown: Shutdown,
    pub(super) limits: DecodeLimits,
    pub(super) idle_timeout: Option<Duration>,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) auth: Option<Auth>,
    pub(super) deny_keepalive: bool,
    /// The partial-frame budget, one permit per KiB.
    pub(super) budget: Arc<Semaphore>,
    /// The server's counters.
    pub(super) counters: Counters,
}

/// What the server counts beside events: its connections, handshakes and acks.
#[derive(Debug, Clone)]
pub(super) struct Counters {
    connections: Gauge,
    accepted: Counter,
    handshake_failures: Counter,
    acks: Counter,
    refused_frames: Counter,
}

impl Counters {
    pub(super) fn new(metrics: &ComponentMetrics) -> Self {
        use nagare_core::metrics::catalog::forward_source as m;
        let connections = metrics.gauge(&m::CONNECTIONS, None);
        let open = connections.clone();
        metrics.show("connections", move || open.get() as f64);
        Self {
            connections,
            accepted: metrics.counter(&m::ACCEPTED, None),
            handshake_failures: metrics.counter(&m::HANDSHAKE_FAILURES, None),
            acks: metrics.counter(&m::ACKS, None),
            refused_frames: metrics.counter(&m::REFUSED_FRAMES, None),
        }
    }

    /// A client connected; the connection is counted open until the guard goes.
    fn connected(&self) -> OpenConnection {
        self.accepted.inc();
        self.connections.inc();
        OpenConnection(self.connections.clone())
    }

    /// Counts why a connection ended, when it is a refusal.
    fn closed(&self, close: &Close) {
        match close {
            Close::Invalid(_) => {
                self.refused_frames.inc();
            }
            Close::BadHandshake(_) | Close::AuthFailed { .. } | Close::Tls(_) => {
                self.handshake_failures.inc();
            }
            _ => {}
        }
    }
}

/// An open connection, counted until dropped.
struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Who a connection's client is: for log lines, and for `security.clients`, which
/// match addresses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Peer {
    /// A TCP client's address.
    Tcp(SocketAddr),
    /// A client of the Unix socket: it has no address, but the kernel tells which
    /// process connected.
    Unix { pid: Option<i32>, uid: Option<u32> },
}

impl Peer {
    fn of_unix(stream: &UnixStream) -> Peer {
        let cred = stream.peer_cred().ok();
        Peer::Unix {
            pid: cred.and_then(|c| c.pid()),
            uid: cred.map(|c| c.uid()),
        }
    }

    /// The client's IP address; none on a Unix socket.
    pub(super) fn ip(&self) -> Option<IpAddr> {
        match self {
            Peer::Tcp(addr) => Some(addr.ip()),
            Peer::Unix { .. } => None,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix { pid, uid } => {
                f.write_str("unix socket client")?;
                match (pid, uid) {
                    (Some(pid), Some(uid)) => write!(f, " (pid {pid}, uid {uid})"),
                    (None, Some(uid)) => write!(f, " (uid {uid})"),
                    _ => Ok(()),
                }
            }
        }
    }
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
    /// The client did not answer HELO with a valid PING.
    BadHandshake(DecodeError),
    /// The client's PING was refused.
    AuthFailed {
        hostname: String,
        username: String,
        kind: RefusalKind,
        /// The `security.clients` entry its address matched.
        client: Option<String>,
    },
    /// The TLS handshake failed.
    Tls(io::Error),
    /// The client closed before the TLS handshake (a TCP heartbeat or port probe).
    TlsProbe,
    /// Nothing arrived for the idle timeout.
    Idle(Duration),
    /// No buffer budget could be had for the idle timeout.
    NoBudget(Duration),
    /// The socket failed (reset by the peer, usually).
    Io(io::Error),
    /// The server closes after one frame (`deny_keepalive`).
    KeepaliveDenied,
    /// The server is shutting down.
    Shutdown,
    /// The pipeline no longer accepts chunks (shutdown reached the buffers).
    BufferClosed,
}

/// Serves one TCP client until it leaves, misbehaves, idles out or the server stops.
pub(super) async fn serve(
    stream: TcpStream,
    addr: SocketAddr,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    let peer = Peer::Tcp(addr);
    // Acks are tiny writes a client waits for: do not let Nagle hold them back.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(source = %shared.source, peer = %peer, error = %e, "cannot set TCP_NODELAY");
    }
    tracing::debug!(source = %shared.source, peer = %peer, "forward client connected");
    let _open = shared.counters.connected();
    let close = match &shared.tls {
        Some(tls) => match accept_tls(TlsAcceptor::from(tls.clone()), stream, &shared).await {
            Ok(tls) => Connection::new(tls, peer, &shared).run().await,
            Err(close) => close,
        },
        None => Connection::new(stream, peer, &shared).run().await,
    };
    shared.counters.closed(&close);
    report(&shared.source, peer, close);
}

/// Serves one client of the Unix socket (never TLS: the config refuses it there).
pub(super) async fn serve_unix(
    stream: UnixStream,
    shared: Arc<Shared>,
    _permit: OwnedSemaphorePermit,
) {
    let peer = Peer::of_unix(&stream);
    tracing::debug!(source = %shared.source, peer = %peer, "forward client connected");
    let _open = shared.counters.connected();
    let close = Connection::new(stream, peer, &shared).run().await;
    shared.counters.closed(&close);
    report(&shared.source, peer, close);
}

async fn accept_tls(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    shared: &Shared,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, Close> {
    // A client that connects and closes without a byte (a TCP heartbeat, a port
    // check) is not a TLS failure worth a warning.
    let mut first = [0u8; 1];
    let limit = shared.idle_timeout.unwrap_or(TLS_HANDSHAKE_TIMEOUT);
    let peeked = tokio::select! {
        _ = shared.shutdown.cancelled() => return Err(Close::Shutdown),
        peeked = tokio::time::timeout(limit, stream.peek(&mut first)) => peeked,
    };
    match peeked {
        Err(_) => return Err(Close::Idle(limit)),
        Ok(Ok(0)) => return Err(Close::TlsProbe),
        Ok(Err(e)) => return Err(Close::Io(e)),
        Ok(Ok(_)) => {}
    }
    let accepted = tokio::select! {
        _ = shared.shutdown.cancelled() => return Err(Close::Shutdown),
        accepted = tokio::time::timeout(limit, acceptor.accept(stream)) => accepted,
    };
    match accepted {
        Err(_) => Err(Close::Idle(limit)),
        Ok(Err(e)) => Err(Close::Tls(e)),
        Ok(Ok(tls)) => Ok(tls),
    }
}

fn report(source: &str, peer: Peer, close: Close) {
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
        Close::BadHandshake(e) => {
            tracing::warn!(
                source = %source,
                peer = %peer,
                error = %e,
                "refused forward client: it did not answer HELO with a PING; configure the client's shared key (Fluentd <security>, fluent-logger `security`)"
            );
        }
        Close::AuthFailed {
            hostname,
            username,
            kind: RefusalKind::Anonymous,
            ..
        } => {
            tracing::warn!(
                source = %source,
                peer = %peer,
                hostname = %hostname,
                username = %username,
                reason = RefusalKind::Anonymous.reason(),
                "refused forward client: its address {} matches no security.clients entry and allow_anonymous_source is false; add an entry (host or network) for it",
                peer.ip().map_or_else(|| peer.to_string(), |ip| ip.to_string())
            );
        }
        Close::AuthFailed {
            hostname,
            username,
            kind,
            client,
        } => {
            let client = client.as_deref().unwrap_or("none (anonymous)");
            tracing::warn!(
                source = %source,
                peer = %peer,
                hostname = %hostname,
                username = %username,
                client = %client,
                reason = kind.reason(),
                "refused forward client: authentication failed; check that its shared_key (and username/password) match this server's security section (the client entry's own, if it has one)"
            );
        }
        Close::Tls(e) => {
            tracing::warn!(
                source = %source,
                peer = %peer,
                error = %e,
                "refused forward client: TLS handshake failed; check the client's certificate and that it trusts this server's CA"
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
        Close::NoBudget(after) => {
            tracing::warn!(
                source = %source,
                peer = %peer,
                waited = ?after,
                "closing forward connection: no room in max_buffered_bytes for its frame (too many large frames arriving at once); the client sends it again"
            );
        }
        Close::Io(e) => {
            tracing::info!(source = %source, peer = %peer, error = %e, "forward connection failed");
        }
        Close::Idle(after) => {
            tracing::debug!(source = %source, peer = %peer, idle = ?after, "closing idle forward connection");
        }
        Close::TlsProbe | Close::PeerClosed => {
            tracing::debug!(source = %source, peer = %peer, "forward client disconnected");
        }
        Close::KeepaliveDenied => {
            tracing::debug!(source = %source, peer = %peer, "closing forward connection after its frame (deny_keepalive)");
        }
        Close::Shutdown | Close::BufferClosed => {
            tracing::debug!(source = %source, peer = %peer, "closing forward connection for shutdown");
        }
    }
}

/// How the client encodes its frames, known from its first byte.
enum Wire {
    Unknown,
    MessagePack,
    Json(JsonScanner),
}

struct Connection<'a, S> {
    stream: S,
    peer: Peer,
    buf: BytesMut,
    shared: &'a Shared,
    wire: Wire,
    /// Budget drawn for a frame larger than the free allowance.
    budget: Option<OwnedSemaphorePermit>,
    budget_kib: usize,
}

impl<'a, S: AsyncRead + AsyncWrite + Unpin> Connection<'a, S> {
    fn new(stream: S, peer: Peer, shared: &'a Shared) -> Self {
        Self {
            stream,
            peer,
            buf: BytesMut::with_capacity(READ_SIZE),
            shared,
            wire: Wire::Unknown,
            budget: None,
            budget_kib: 0,
        }
    }

    async fn run(&mut self) -> Close {
        if let Some(auth) = &self.shared.auth {
            if let Err(close) = self.handshake(auth).await {
                return close;
            }
            // The handshake is MessagePack; so is everything after it.
            self.wire = Wire::MessagePack;
        }
        loop {
            if let Err(close) = self.handle_buffered_frames().await {
                return close;
            }
            match self.read_more().await {
                Ok(0) if self.only_whitespace_left() => return Close::PeerClosed,
                Ok(0) => {
                    return Close::Truncated {
                        buffered: self.buf.len(),
                    };
                }
                Ok(_) => {}
                Err(close) => return close,
            }
        }
    }

    fn only_whitespace_left(&self) -> bool {
        match self.wire {
            Wire::Json(_) => self.buf.iter().all(u8::is_ascii_whitespace),
            _ => self.buf.is_empty(),
        }
    }

    /// HELO, then the client's PING, then PONG.
    async fn handshake(&mut self, auth: &Auth) -> Result<(), Close> {
        let helo = auth.helo();
        self.write(&handshake::encode_helo(&helo)).await?;
        let ping = loop {
            match handshake::decode_ping(&self.buf) {
                Ok(Some((ping, len))) => {
                    self.buf.advance(len);
                    break ping;
                }
                Ok(None) => {}
                Err(e) => return Err(Close::BadHandshake(e)),
            }
            match self.read_more().await? {
                0 if self.buf.is_empty() => return Err(Close::PeerClosed),
                0 => {
                    return Err(Close::Truncated {
                        buffered: self.buf.len(),
                    });
                }
                _ => {}
            }
        };
        self.answer_ping(auth, &helo, ping).await
    }

    async fn answer_ping(
        &mut self,
        auth: &Auth,
        helo: &Helo,
        ping: handshake::Ping,
    ) -> Result<(), Close> {
        match auth.check(helo, &ping, self.peer.ip()) {
            Ok(accepted) => {
                self.write(&handshake::encode_pong(&accepted.pong)).await?;
                let client = accepted.client.as_deref().unwrap_or("none (anonymous)");
                tracing::debug!(source = %self.shared.source, peer = %self.peer, hostname = %ping.hostname, client = %client, "forward client authenticated");
                Ok(())
            }
            Err(refusal) => {
                // Tell the client why before closing, as Fluentd does; it may already
                // be gone, which changes nothing.
                let _ = self.write(&handshake::encode_pong(&refusal.pong)).await;
                Err(Close::AuthFailed {
                    hostname: ping.hostname,
                    username: ping.username,
                    kind: refusal.kind,
                    client: refusal.client,
                })
            }
        }
    }

    /// Reads more bytes into the buffer, after securing budget for them. `Ok(0)`
    /// is the client's end of stream.
    async fn read_more(&mut self) -> Result<usize, Close> {
        // A larger read only while the budget has room for it at once: waiting for
        // room for a large read could wait forever for budget that a small read
        // (the frame's last bytes) would not need.
        let mut want = self.read_size();
        if want > READ_SIZE && !self.try_reserve_budget(want) {
            want = READ_SIZE;
        }
        self.reserve_budget(want).await?;
        let shared = self.shared;
        self.buf.reserve(want);
        let read = self.stream.read_buf(&mut self.buf);
        let read = async {
            match shared.idle_timeout {
                Some(limit) => match tokio::time::timeout(limit, read).await {
                    Ok(r) => r.map_err(Close::Io),
                    Err(_) => Err(Close::Idle(limit)),
                },
                None => read.await.map_err(Close::Io),
            }
        };
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => Err(Close::Shutdown),
            read = read => read,
        }
    }

    /// Bytes to ask of the next read: as many as are buffered (a frame being read
    /// grows geometrically), between [`READ_SIZE`] and [`MAX_READ_SIZE`].
    fn read_size(&self) -> usize {
        self.buf.len().clamp(READ_SIZE, MAX_READ_SIZE)
    }

    /// KiB of budget that everything buffered beyond the free allowance, plus one
    /// read of `read` bytes, needs.
    fn budget_needed(&self, read: usize) -> usize {
        (self.buf.len() + read)
            .saturating_sub(FREE_BYTES)
            .div_ceil(1024)
    }

    /// Like [`reserve_budget`](Self::reserve_budget) without waiting: whether the
    /// budget for a read of `read` bytes is held now.
    fn try_reserve_budget(&mut self, read: usize) -> bool {
        let kib = self.budget_needed(read);
        if kib <= self.budget_kib {
            return true;
        }
        let more = u32::try_from(kib - self.budget_kib).unwrap_or(u32::MAX);
        let Ok(permit) = self.shared.budget.clone().try_acquire_many_owned(more) else {
            return false;
        };
        self.hold(permit, kib);
        true
    }

    /// Adds `permit` to the budget held, which then amounts to `kib`.
    fn hold(&mut self, permit: OwnedSemaphorePermit, kib: usize) {
        match &mut self.budget {
            Some(held) => held.merge(permit),
            None => self.budget = Some(permit),
        }
        self.budget_kib = kib;
    }

    /// Holds budget for everything buffered beyond the free allowance, plus one read
    /// of `read` bytes.
    async fn reserve_budget(&mut self, read: usize) -> Result<(), Close> {
        let kib = self.budget_needed(read);
        if kib <= self.budget_kib {
            return Ok(());
        }
        let more = u32::try_from(kib - self.budget_kib).unwrap_or(u32::MAX);
        let shared = self.shared;
        let acquire = shared.budget.clone().acquire_many_owned(more);
        let acquired = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => return Err(Close::Shutdown),
            acquired = async {
                match shared.idle_timeout {
                    Some(limit) => tokio::time::timeout(limit, acquire)
                        .await
                        .map_err(|_| Close::NoBudget(limit)),
                    None => Ok(acquire.await),
                }
            } => acquired?,
        };
        let permit = acquired.expect("the budget semaphore is never closed");
        self.hold(permit, kib);
        Ok(())
    }

    /// Gives the budget back once the buffer is small again, and lets go of a grown
    /// allocation.
    fn release_budget(&mut self) {
        if self.budget_kib > 0 && self.buf.len() + READ_SIZE <= FREE_BYTES {
            self.budget = None;
            self.budget_kib = 0;
        }
        if self.buf.capacity() > 4 * READ_SIZE && self.buf.len() <= READ_SIZE {
            let mut fresh = BytesMut::with_capacity(READ_SIZE);
            fresh.extend_from_slice(&self.buf);
            self.buf = fresh;
        }
    }

    /// Handles every whole frame in the buffer, in order.
    async fn handle_buffered_frames(&mut self) -> Result<(), Close> {
        loop {
            // Between frames is where shutdown takes effect: the frame being handled
            // is finished (emitted and acked), the rest is left to the client's resend.
            if self.shared.shutdown.is_cancelled() {
                return Err(Close::Shutdown);
            }
            let Some(first) = self.buf.first().copied() else {
                self.release_budget();
                return Ok(());
            };
            if matches!(self.wire, Wire::Unknown) {
                // Fluentd's rule: a connection that opens with `[` or `{` speaks JSON.
                self.wire = if forward::is_json_start(first) {
                    Wire::Json(JsonScanner::new())
                } else {
                    Wire::MessagePack
                };
            }
            let limits = &self.shared.limits;
            let (frame, json) = match &mut self.wire {
                Wire::Json(scanner) => {
                    let Some(len) = scanner
                        .frame_len(&self.buf, limits)
                        .map_err(Close::Invalid)?
                    else {
                        return Ok(());
                    };
                    scanner.reset();
                    let text = self.buf.split_to(len);
                    (
                        forward::decode_json_frame(&text).map_err(Close::Invalid)?,
                        true,
                    )
                }
                _ => {
                    let Some(len) =
                        forward::frame_len(&self.buf, limits).map_err(Close::Invalid)?
                    else {
                        return Ok(());
                    };
                    // The frame's bytes become the chunk's entries without a copy
                    // (unless they were compressed or in Message mode).
                    let frame = self.buf.split_to(len).freeze();
                    (
                        forward::decode_frame(frame, limits).map_err(Close::Invalid)?,
                        false,
                    )
                }
            };
            self.release_budget();
            match frame {
                Frame::Heartbeat => {}
                Frame::Events(message) => {
                    self.handle_events(message, json).await?;
                    if self.shared.deny_keepalive {
                        return Err(Close::KeepaliveDenied);
                    }
                }
            }
        }
    }

    async fn handle_events(&mut self, message: EventsMessage, json: bool) -> Result<(), Close> {
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
            let ack = if json {
                forward::encode_json_ack(&chunk)
            } else {
                forward::encode_ack(&chunk)
            };
            self.write(&ack).await?;
            self.shared.counters.acks.inc();
            tracing::trace!(source = %self.shared.source, peer = %self.peer, chunk, "acked");
        }
        Ok(())
    }

    /// Writes and flushes `bytes`, within the idle timeout.
    async fn write(&mut self, bytes: &[u8]) -> Result<(), Close> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        let written = match self.shared.idle_timeout {
            Some(limit) => tokio::time::timeout(limit, write)
                .await
                .map_err(|_| Close::Idle(limit))?,
            None => write.await,
        };
        written.map_err(Close::Io)
    }
}
