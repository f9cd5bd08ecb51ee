//! The sink's loop: take leases, batch their events, send, resolve each event.
//!
//! Events of several chunks share a request, and a chunk larger than a batch is
//! spread over several; each lease is acked once every one of its events is resolved
//! (stored, or written to the secondary output, in which case the lease is failed so
//! its source learns not everything arrived). Events refused for good (a mapping
//! conflict) go to the secondary at once; events refused for now (429, 5xx) and
//! requests that fail are sent again, alone, under the buffer's retry policy, until
//! they are stored or their retries run out (`retry_timeout`, `retry_max_times`),
//! when they too go to the secondary with the last reason.
//!
//! `flush_thread_count` workers run this loop side by side, each with its own batch
//! and one request in flight; while they retry, new chunks wait in the buffer, which
//! pushes back on the sources. Each event's `_id` derives from the chunk it arrived
//! in and its position there ([`Chunk::event_ids`](nagare_core::Chunk::event_ids)),
//! so a chunk sent again, even merged into another by a buffer, overwrites itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use nagare_core::buffer::{Buffer, Lease};
use nagare_core::component::{Invalid, SinkContext};
use nagare_core::dead_letter::{self, DeadLetter, DeadLetterEntry};
use nagare_core::retry::{Attempts, Next, Retrier};
use nagare_core::shutdown::Shutdown;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::{BatchConfig, ElasticsearchConfig, OpType};
use super::request_builder::{BulkRequest, RequestBuilder};
use super::retry::{BatchOutcome, ItemOutcome, classify};
use super::service::BulkService;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum ElasticsearchError {
    /// A setting is not usable.
    #[error("elasticsearch sink `{sink}`: `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The sink's name.
        sink: String,
        /// The setting and the problem.
        invalid: Invalid,
    },
    /// The HTTP client could not be set up (TLS roots, resolver).
    #[error("elasticsearch sink `{sink}`: cannot set up the HTTP client: {source}")]
    Client {
        /// The sink's name.
        sink: String,
        /// The cause.
        source: reqwest::Error,
    },
}

/// Runs the sink until its buffer is closed and drained, or `ctx.abort` is cancelled.
pub async fn run(config: ElasticsearchConfig, ctx: SinkContext) -> Result<(), ElasticsearchError> {
    let invalid = |invalid| ElasticsearchError::Config {
        sink: ctx.name.clone(),
        invalid,
    };
    config.validate().map_err(invalid)?;
    let secondary = ctx.secondary();
    let retrier = ctx.retrier();
    let workers = ctx.flush_thread_count();
    tracing::info!(
        sink = %ctx.name,
        endpoints = ?config.endpoints,
        secondary = %secondary.path().display(),
        workers,
        "elasticsearch sink started"
    );
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let sink = Sink {
            name: ctx.name.clone(),
            buffer: ctx.buffer.clone(),
            abort: ctx.abort.clone(),
            builder: RequestBuilder::new(&config).map_err(invalid)?,
            service: BulkService::new(&config).map_err(|source| ElasticsearchError::Client {
                sink: ctx.name.clone(),
                source,
            })?,
            dead_letter: secondary.clone(),
            batch: config.batch.clone(),
            retrier: retrier.clone(),
            op_type: config.op_type,
            chunks: HashMap::new(),
            next_slot: 0,
            ready: VecDeque::new(),
            ready_bytes: 0,
            ready_since: None,
        };
        tasks.spawn(sink.run());
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// A leased chunk whose events are being delivered.
struct Pending {
    lease: Lease,
    /// Events not yet stored or refused.
    unresolved: u32,
    /// Events refused for good (or unreadable).
    rejected: u32,
}

/// One event, encoded, waiting for or in a request.
struct Item {
    /// The chunk it came from (a key of `Sink::chunks`).
    slot: u64,
    /// Its position in that chunk.
    position: u32,
    index: Arc<str>,
    bytes: Vec<u8>,
}

/// An item that goes to the secondary output, and why.
struct Refused {
    item: Item,
    status: Option<u16>,
    reason: String,
    error: Option<serde_json::Value>,
}

/// A group of items to send, with its request once built (a retry of the same group
/// sends the same bytes), and its failures so far.
struct Group {
    items: Vec<Item>,
    request: Option<BulkRequest>,
    attempts: Attempts,
}

/// Why items go to the secondary output: refused by Elasticsearch, or out of
/// retries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Refused,
    GaveUp,
}

struct Sink {
    name: String,
    buffer: Buffer,
    abort: Shutdown,
    builder: RequestBuilder,
    service: BulkService,
    dead_letter: DeadLetter,
    batch: BatchConfig,
    retrier: Retrier,
    op_type: OpType,
    chunks: HashMap<u64, Pending>,
    next_slot: u64,
    /// Encoded items not yet in a request, oldest first.
    ready: VecDeque<Item>,
    ready_bytes: usize,
    /// When the oldest item in `ready` arrived.
    ready_since: Option<Instant>,
}

impl Sink {
    async fn run(mut self) {
        let mut closed = false;
        loop {
            while !closed && !self.batch_full() {
                let deadline = self.ready_since.map(|t| t + self.batch.timeout.0);
                let flush_timer = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now));
                tokio::select! {
                    biased;
                    _ = self.abort.cancelled() => return,
                    lease = self.buffer.pop() => match lease {
                        Some(lease) => if !self.accept(lease).await {
                            return;
                        },
                        None => closed = true,
                    },
                    _ = flush_timer, if deadline.is_some() => break,
                }
            }
            if self.ready.is_empty() {
                if closed {
                    tracing::info!(sink = %self.name, "elasticsearch sink drained its buffer; stopping");
                    return;
                }
                continue;
            }
            let batch = self.take_batch();
            if !self.deliver(batch).await {
                tracing::info!(
                    sink = %self.name,
                    chunks = self.chunks.len(),
                    "elasticsearch sink aborted; undelivered chunks stay in the buffer"
                );
                return;
            }
        }
    }

    fn batch_full(&self) -> bool {
        self.ready.len() >= self.batch.max_events
            || self.ready_bytes >= self.batch.max_bytes.as_usize()
    }

    /// Encodes a leased chunk's events into `ready`. An entry that cannot be decoded
    /// goes to the secondary output alone (its place, its bytes and why), and the
    /// rest of its chunk is sent. Returns false when aborted.
    async fn accept(&mut self, lease: Lease) -> bool {
        let slot = self.next_slot;
        self.next_slot += 1;
        let chunk = lease.chunk();
        let tag = chunk.tag().clone();
        let mut encoded = 0u32;
        let mut undecodable = 0u32;
        let mut dead = Vec::new();
        for ((position, step), (origin, at)) in chunk.walk().enumerate().zip(chunk.event_ids()) {
            match step {
                Ok((time, record)) => {
                    let position = position as u32;
                    let item = self.builder.encode(origin, at, &tag, time, &record);
                    self.ready_bytes += item.bytes.len();
                    self.ready.push_back(Item {
                        slot,
                        position,
                        index: item.index,
                        bytes: item.bytes,
                    });
                    encoded += 1;
                }
                Err(bad) => {
                    dead_letter::encode_undecodable(chunk, &bad, None, &mut dead);
                    undecodable += 1;
                }
            }
        }
        if undecodable > 0 {
            let backoff = &self.retrier.policy().backoff;
            if !self
                .dead_letter
                .write_until_done(dead, backoff, &self.abort, &self.name)
                .await
            {
                return false;
            }
            tracing::error!(
                sink = %self.name,
                tag = %tag,
                chunk = %chunk.id(),
                entries = undecodable,
                secondary = %self.dead_letter.path().display(),
                "a chunk held entries that cannot be decoded; wrote those to the secondary output with the reason and sent the rest"
            );
        }
        if encoded == 0 {
            if undecodable > 0 {
                lease.fail();
            } else {
                lease.ack();
            }
            return true;
        }
        if self.ready_since.is_none() {
            self.ready_since = Some(Instant::now());
        }
        self.chunks.insert(
            slot,
            Pending {
                lease,
                unresolved: encoded,
                rejected: undecodable,
            },
        );
        true
    }

    /// Takes the next batch from `ready`: up to `max_events` items and `max_bytes`
    /// bytes, and at least one item.
    fn take_batch(&mut self) -> Vec<Item> {
        let max_bytes = self.batch.max_bytes.as_usize();
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(next) = self.ready.front() {
            let fits = batch.is_empty()
                || (batch.len() < self.batch.max_events && bytes + next.bytes.len() <= max_bytes);
            if !fits {
                break;
            }
            bytes += next.bytes.len();
            if let Some(item) = self.ready.pop_front() {
                batch.push(item);
            }
        }
        self.ready_bytes -= bytes;
        if self.ready.is_empty() {
            self.ready_since = None;
        }
        batch
    }

    /// Sends `items` until each is stored or refused for good. Returns false when
    /// aborted.
    async fn deliver(&mut self, items: Vec<Item>) -> bool {
        let mut groups = vec![Group {
            items,
            request: None,
            attempts: Attempts::new(),
        }];
        while let Some(mut group) = groups.pop() {
            let request = match group.request.take() {
                Some(r) => r,
                None => self
                    .builder
                    .build(group.items.iter().map(|i| i.bytes.as_slice())),
            };
            let sent = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return false,
                sent = self.service.send(&request) => sent,
            };
            let (endpoint, outcome) = match sent {
                Ok(response) => {
                    let outcome = classify(
                        response.status,
                        &response.body,
                        group.items.len(),
                        self.op_type,
                    );
                    (response.endpoint, outcome)
                }
                Err(e) => (
                    e.endpoint.clone(),
                    BatchOutcome::RetryAll {
                        status: None,
                        reason: e.to_string(),
                    },
                ),
            };
            match outcome {
                BatchOutcome::Items(outcomes) => {
                    let mut retry = Vec::new();
                    let mut refused = Vec::new();
                    let mut retry_reason = None;
                    let mut stored = false;
                    for (item, outcome) in group.items.into_iter().zip(outcomes) {
                        match outcome {
                            ItemOutcome::Done => {
                                stored = true;
                                self.resolve(item.slot, false);
                            }
                            ItemOutcome::Retry { status, reason } => {
                                retry_reason.get_or_insert((status, reason));
                                retry.push(item);
                            }
                            ItemOutcome::Rejected {
                                status,
                                reason,
                                error,
                            } => refused.push(Refused {
                                item,
                                status: Some(status),
                                reason,
                                error,
                            }),
                        }
                    }
                    if stored {
                        self.retrier.succeeded();
                    }
                    tracing::debug!(
                        sink = %self.name,
                        endpoint = %endpoint,
                        events = request.items,
                        bytes = request.ndjson_bytes,
                        retry = retry.len(),
                        refused = refused.len(),
                        "bulk request answered"
                    );
                    if !refused.is_empty() && !self.refuse(refused, Why::Refused).await {
                        return false;
                    }
                    if let Some((status, reason)) = retry_reason {
                        let mut attempts = group.attempts;
                        match self.retrier.failed(&mut attempts) {
                            Next::RetryIn(delay) => {
                                tracing::warn!(
                                    sink = %self.name,
                                    endpoint = %endpoint,
                                    status,
                                    reason = %reason,
                                    events = retry.len(),
                                    attempt = attempts.failures(),
                                    retry_in = ?delay,
                                    "Elasticsearch refused some events for now; sending them again"
                                );
                                if !self.pause(delay).await {
                                    return false;
                                }
                                groups.push(Group {
                                    items: retry,
                                    request: None,
                                    attempts,
                                });
                            }
                            Next::GiveUp {
                                failures,
                                failing_for,
                            } => {
                                let reason = gave_up(
                                    failures,
                                    failing_for,
                                    &format!("status {status}: {reason}"),
                                );
                                let refused = retry
                                    .into_iter()
                                    .map(|item| Refused {
                                        item,
                                        status: Some(status),
                                        reason: reason.clone(),
                                        error: None,
                                    })
                                    .collect();
                                if !self.refuse(refused, Why::GaveUp).await {
                                    return false;
                                }
                            }
                        }
                    }
                }
                BatchOutcome::RetryAll { status, reason } => {
                    match self.retrier.failed(&mut group.attempts) {
                        Next::RetryIn(delay) => {
                            tracing::warn!(
                                sink = %self.name,
                                endpoint = %endpoint,
                                status = status.map(i64::from).unwrap_or(-1),
                                reason = %reason,
                                events = group.items.len(),
                                attempt = group.attempts.failures(),
                                retry_in = ?delay,
                                "bulk request failed; sending it again"
                            );
                            if !self.pause(delay).await {
                                return false;
                            }
                            group.request = Some(request);
                            groups.push(group);
                        }
                        Next::GiveUp {
                            failures,
                            failing_for,
                        } => {
                            let last = match status {
                                Some(status) => format!("status {status}: {reason}"),
                                None => reason,
                            };
                            let reason = gave_up(failures, failing_for, &last);
                            let refused = group
                                .items
                                .into_iter()
                                .map(|item| Refused {
                                    item,
                                    status,
                                    reason: reason.clone(),
                                    error: None,
                                })
                                .collect();
                            if !self.refuse(refused, Why::GaveUp).await {
                                return false;
                            }
                        }
                    }
                }
                BatchOutcome::Split { status, reason } => {
                    if group.items.len() == 1 {
                        let refused = group
                            .items
                            .into_iter()
                            .map(|item| Refused {
                                item,
                                status: Some(status),
                                reason: reason.clone(),
                                error: None,
                            })
                            .collect();
                        if !self.refuse(refused, Why::Refused).await {
                            return false;
                        }
                    } else {
                        tracing::warn!(
                            sink = %self.name,
                            endpoint = %endpoint,
                            status,
                            reason = %reason,
                            events = group.items.len(),
                            "bulk request refused as a whole; splitting it to find the event that causes it"
                        );
                        let second = group.items.split_off(group.items.len() / 2);
                        groups.push(Group {
                            items: second,
                            request: None,
                            attempts: group.attempts,
                        });
                        groups.push(Group {
                            items: group.items,
                            request: None,
                            attempts: group.attempts,
                        });
                    }
                }
            }
        }
        true
    }

    /// Waits `delay` unless aborted first; returns false when aborted.
    async fn pause(&self, delay: std::time::Duration) -> bool {
        tokio::select! {
            biased;
            _ = self.abort.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// An event of a pending chunk is stored (or refused); acks or fails the chunk's
    /// lease once all its events are.
    fn resolve(&mut self, slot: u64, rejected: bool) {
        let Some(pending) = self.chunks.get_mut(&slot) else {
            return;
        };
        pending.unresolved = pending.unresolved.saturating_sub(1);
        if rejected {
            pending.rejected += 1;
        }
        if pending.unresolved == 0
            && let Some(done) = self.chunks.remove(&slot)
        {
            if done.rejected > 0 {
                done.lease.fail();
            } else {
                done.lease.ack();
            }
        }
    }

    /// Writes events to the secondary output (retrying the write until it succeeds),
    /// then resolves them. Returns false when aborted.
    async fn refuse(&mut self, mut refused: Vec<Refused>, why: Why) -> bool {
        refused.sort_by_key(|r| (r.item.slot, r.item.position));
        let mut lines = Vec::new();
        let mut at = 0;
        while at < refused.len() {
            let slot = refused[at].item.slot;
            let end = at
                + refused[at..]
                    .iter()
                    .take_while(|r| r.item.slot == slot)
                    .count();
            let Some(pending) = self.chunks.get(&slot) else {
                at = end;
                continue;
            };
            let chunk = pending.lease.chunk();
            let mut wanted = refused[at..end].iter().peekable();
            for (position, entry) in chunk.walk().enumerate() {
                if wanted.peek().is_none() {
                    break;
                }
                let Some(r) = wanted.next_if(|r| r.item.position as usize == position) else {
                    continue;
                };
                if let Ok((time, record)) = entry {
                    dead_letter::encode_entry(
                        &DeadLetterEntry {
                            tag: chunk.tag(),
                            time,
                            record: &record,
                            reason: &r.reason,
                            status: r.status,
                            destination: Some(("index", &r.item.index)),
                            error: r.error.as_ref(),
                        },
                        &mut lines,
                    );
                }
            }
            at = end;
        }
        let mut failures = 0;
        loop {
            let written = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return false,
                written = self.dead_letter.write(lines.clone()) => written,
            };
            match written {
                Ok(()) => break,
                Err(e) => {
                    let delay = self.retrier.policy().backoff.delay(failures);
                    tracing::error!(
                        sink = %self.name,
                        path = %self.dead_letter.path().display(),
                        error = %e,
                        events = refused.len(),
                        retry_in = ?delay,
                        "cannot write to the secondary output; fix the path or free space"
                    );
                    if !self.pause(delay).await {
                        return false;
                    }
                    failures += 1;
                }
            }
        }
        let first = &refused[0];
        let status = first.status.map(i64::from).unwrap_or(-1);
        let path = self.dead_letter.path().display();
        match why {
            Why::Refused => tracing::warn!(
                sink = %self.name,
                events = refused.len(),
                status,
                reason = %first.reason,
                index = %first.item.index,
                path = %path,
                "Elasticsearch refused events for good; wrote them to the secondary output"
            ),
            Why::GaveUp => tracing::error!(
                sink = %self.name,
                events = refused.len(),
                status,
                reason = %first.reason,
                index = %first.item.index,
                path = %path,
                "retries ran out (retry_timeout / retry_max_times); wrote the events to the secondary output"
            ),
        }
        for r in refused {
            self.resolve(r.item.slot, true);
        }
        true
    }
}

/// The reason written for events whose retries ran out.
fn gave_up(failures: u32, failing_for: std::time::Duration, last: &str) -> String {
    format!(
        "gave up after {failures} failed attempts over {}s; last error: {last}",
        failing_for.as_secs()
    )
}
