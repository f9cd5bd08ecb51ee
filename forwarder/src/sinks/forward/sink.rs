//! The sink's loop: take chunks from the buffer, send them, confirm them on ack.
//!
//! A chunk stays leased from the buffer until the server acknowledged it. Up to
//! `max_in_flight` chunks are on the wire at once; when the connection breaks (error,
//! server close, an ack that does not come), the sink reconnects with backoff and
//! sends every unacknowledged chunk again, oldest first. The server may therefore see
//! a chunk twice; it carries the same id both times, so destinations that key on the
//! id do not duplicate it.

use std::collections::VecDeque;
use std::future;

use nagare_core::buffer::{Buffer, Lease};
use nagare_core::component::{Invalid, SinkContext};
use nagare_core::retry::Backoff;
use nagare_core::shutdown::Shutdown;
use thiserror::Error;
use tokio::time::Instant;

use super::config::{Compress, ForwardSinkConfig};
use super::connection::{Connection, ConnectionError};
use super::encoder::{self, EncodedChunk};

/// Chunks below this size are compressed on the async thread; larger ones on the
/// blocking pool, so a big chunk does not stall other tasks.
const INLINE_COMPRESS_BYTES: usize = 64 * 1024;

/// Why the forward sink could not run.
#[derive(Debug, Error)]
pub enum ForwardSinkError {
    /// The config has a value that cannot work.
    #[error("invalid forward sink config at `{}`: {}", .0.key, .0.message)]
    Invalid(#[from] Invalid),
}

/// Runs the sink until its buffer is closed and drained (every chunk acknowledged),
/// or until `ctx.abort`, when chunks not yet acknowledged go back to the buffer.
pub async fn run(config: ForwardSinkConfig, ctx: SinkContext) -> Result<(), ForwardSinkError> {
    config.validate()?;
    let mut sink = ForwardSink {
        name: ctx.name,
        backoff: config.backoff(),
        config,
        buffer: ctx.buffer,
        abort: ctx.abort,
        unacked: VecDeque::new(),
        conn: None,
        failures: 0,
        outage_logged: false,
    };
    sink.run().await;
    Ok(())
}

/// A chunk taken from the buffer and not yet confirmed by the server.
struct InFlight {
    lease: Lease,
    frame: EncodedChunk,
    /// When it was last written; `None` until it is.
    sent_at: Option<Instant>,
}

/// What woke the loop up.
enum Step {
    Abort,
    Ack(Result<String, ConnectionError>),
    AckTimeout,
    Lease(Option<Lease>),
}

/// The loop was aborted.
struct Aborted;

struct ForwardSink {
    name: String,
    config: ForwardSinkConfig,
    backoff: Backoff,
    buffer: Buffer,
    abort: Shutdown,
    /// Leased chunks not yet confirmed, oldest first.
    unacked: VecDeque<InFlight>,
    conn: Option<Connection>,
    /// Consecutive connections or attempts that delivered nothing; drives the backoff.
    failures: u32,
    /// Whether the current outage was already reported.
    outage_logged: bool,
}

impl ForwardSink {
    async fn run(&mut self) {
        let mut input_open = true;
        loop {
            if !input_open && self.unacked.is_empty() {
                return;
            }
            if self.conn.is_none() {
                if self.unacked.is_empty() {
                    // Connect only once there is something to send, so a closed and
                    // empty buffer ends the sink even when no server is reachable.
                    let lease = tokio::select! {
                        biased;
                        _ = self.abort.cancelled() => return,
                        lease = self.buffer.pop() => lease,
                    };
                    let Some(lease) = lease else { return };
                    let taken = self.prepare(lease).await;
                    self.unacked.push_back(taken);
                }
                if self.connect().await.is_err() {
                    return;
                }
                match self.send_unsent(true).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => self.lost(e),
                    Err(Aborted) => return,
                }
                continue;
            }

            let require_ack = self.config.require_ack_response;
            let ack_timeout = self.config.ack_response_timeout();
            let deadline = self
                .unacked
                .front()
                .and_then(|f| f.sent_at)
                .map(|sent| sent + ack_timeout);
            let room = input_open && self.unacked.len() < self.config.max_in_flight;
            let conn = self.conn.as_mut().expect("connected above");
            let step = tokio::select! {
                biased;
                _ = self.abort.cancelled() => Step::Abort,
                ack = conn.next_ack() => Step::Ack(ack),
                _ = sleep_until(deadline), if require_ack => Step::AckTimeout,
                lease = self.buffer.pop(), if room => Step::Lease(lease),
            };
            match step {
                Step::Abort => return,
                Step::Ack(Ok(id)) => self.acked(&id),
                Step::Ack(Err(e)) => self.lost(e),
                Step::AckTimeout => self.lost(ConnectionError::AckTimeout(ack_timeout)),
                Step::Lease(None) => input_open = false,
                Step::Lease(Some(lease)) => {
                    let taken = self.prepare(lease).await;
                    self.unacked.push_back(taken);
                    match self.send_unsent(false).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => self.lost(e),
                        Err(Aborted) => return,
                    }
                }
            }
        }
    }

    /// Encodes a leased chunk for the wire.
    async fn prepare(&self, lease: Lease) -> InFlight {
        let compress = self.config.compress;
        let request_ack = self.config.require_ack_response;
        let chunk = lease.chunk();
        let encoded = if compress == Compress::None || chunk.byte_size() < INLINE_COMPRESS_BYTES {
            encoder::encode(chunk, compress, request_ack)
        } else {
            let owned = chunk.clone();
            tokio::task::spawn_blocking(move || encoder::encode(&owned, compress, request_ack))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        };
        let frame = encoded.unwrap_or_else(|e| {
            // In-memory compression does not fail in practice; if it ever does, the
            // chunk still goes out, uncompressed, which every server accepts.
            tracing::error!(sink = %self.name, chunk = %chunk.id(), error = %e, "cannot compress a chunk; sending it uncompressed");
            encoder::encode(chunk, Compress::None, request_ack)
                .expect("encoding without compression does not fail")
        });
        InFlight {
            lease,
            frame,
            sent_at: None,
        }
    }

    /// Writes the chunks not written on this connection, oldest first: all of them
    /// after a reconnect (`all`), otherwise the one just taken.
    async fn send_unsent(&mut self, all: bool) -> Result<Result<(), ConnectionError>, Aborted> {
        let send_timeout = self.config.send_timeout();
        let require_ack = self.config.require_ack_response;
        let first = if all {
            0
        } else {
            self.unacked.len().saturating_sub(1)
        };
        let mut i = first;
        while i < self.unacked.len() {
            let conn = self.conn.as_mut().expect("send_unsent needs a connection");
            let frame = &self.unacked[i].frame;
            let sent = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return Err(Aborted),
                sent = conn.send(frame, send_timeout) => sent,
            };
            if let Err(e) = sent {
                return Ok(Err(e));
            }
            if require_ack {
                self.unacked[i].sent_at = Some(Instant::now());
                i += 1;
            } else {
                // Without acks, written and flushed is as confirmed as it gets.
                if let Some(done) = self.unacked.remove(i) {
                    done.lease.ack();
                }
                self.progress();
            }
        }
        Ok(Ok(()))
    }

    fn acked(&mut self, id: &str) {
        match self
            .unacked
            .iter()
            .position(|f| f.frame.ack_id() == Some(id))
        {
            Some(i) => {
                if let Some(done) = self.unacked.remove(i) {
                    done.lease.ack();
                }
                self.progress();
            }
            None => {
                tracing::debug!(sink = %self.name, chunk = id, "ack for a chunk not in flight (already acknowledged); ignored");
            }
        }
    }

    /// The connection delivered something: the next failure retries at once.
    fn progress(&mut self) {
        self.failures = 0;
    }

    /// Drops the connection after `error`; the loop reconnects and resends.
    fn lost(&mut self, error: ConnectionError) {
        let Some(conn) = self.conn.take() else { return };
        let server = conn.peer();
        if self.unacked.is_empty() && matches!(error, ConnectionError::Closed) {
            // A server closing a connection with nothing in flight (its idle
            // timeout, a rolling restart) is routine: reconnect when there is data.
            tracing::debug!(sink = %self.name, server = %server, "the forward server closed the idle connection");
            return;
        }
        tracing::warn!(
            sink = %self.name,
            server = %server,
            error = %error,
            unacknowledged_chunks = self.unacked.len(),
            "lost the connection to the forward server; reconnecting to send every unacknowledged chunk again"
        );
        for f in &mut self.unacked {
            f.sent_at = None;
        }
        self.failures = self.failures.saturating_add(1);
    }

    /// Connects to the first server that accepts, trying them in order, with backoff
    /// between rounds. Only an abort stops it.
    async fn connect(&mut self) -> Result<(), Aborted> {
        loop {
            // No wait before the first attempt; after failures, waits that grow
            // from retry_wait to retry_max_interval.
            if self.failures > 0 {
                let wait = self.backoff.delay(self.failures - 1);
                tokio::select! {
                    biased;
                    _ = self.abort.cancelled() => return Err(Aborted),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let mut refused = Vec::new();
            for server in &self.config.servers {
                let attempt = tokio::select! {
                    biased;
                    _ = self.abort.cancelled() => return Err(Aborted),
                    attempt = Connection::open(server, self.config.connect_timeout()) => attempt,
                };
                match attempt {
                    Ok(conn) => {
                        let skipped = refused.join("; ");
                        if refused.is_empty() {
                            tracing::info!(sink = %self.name, server = %server, addr = %conn.peer(), pending_chunks = self.unacked.len(), "connected to the forward server");
                        } else {
                            tracing::warn!(sink = %self.name, server = %server, addr = %conn.peer(), unreachable = %skipped, pending_chunks = self.unacked.len(), "connected to a fallback forward server");
                        }
                        self.outage_logged = false;
                        self.conn = Some(conn);
                        return Ok(());
                    }
                    Err(e) => refused.push(format!("{server}: {e}")),
                }
            }
            self.failures = self.failures.saturating_add(1);
            let errors = refused.join("; ");
            if self.outage_logged {
                tracing::debug!(sink = %self.name, errors = %errors, attempt = self.failures, "still cannot connect to any forward server");
            } else {
                tracing::warn!(
                    sink = %self.name,
                    errors = %errors,
                    waiting_chunks = self.unacked.len(),
                    "cannot connect to any forward server; retrying with backoff (up to retry_max_interval) until one accepts"
                );
                self.outage_logged = true;
            }
        }
    }
}

impl Drop for ForwardSink {
    fn drop(&mut self) {
        // A lease dropped unconfirmed goes back to the *front* of the buffer, so
        // release the newest first: the oldest ends up first again.
        while let Some(newest) = self.unacked.pop_back() {
            drop(newest);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => future::pending().await,
    }
}
