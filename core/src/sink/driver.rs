//! The loop every batching sink runs: take leases, encode, batch, build, send,
//! resolve; one worker per pair of encoder and service the sink gives (the
//! Elasticsearch sink: `flush_thread_count`), side by side, each with its own batches,
//! one request in flight, and its own leases.
//!
//! While a worker retries, it takes no new lease, so new chunks wait in the buffer,
//! which pushes back on the sources. On abort a worker returns at once; the leases it
//! holds go back to the buffer as they are dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::batch::{Batch, BatchLimits, Batcher};
use super::component::{Encoder, Service, Words};
use super::item::{Event, Item, Items};
use super::ledger::{DeadItem, Ledger};
use super::log_gate::LogGate;
use super::outcome::{BatchOutcome, Outcome, Sent};
use crate::buffer::{Buffer, Lease};
use crate::component::SinkContext;
use crate::dead_letter::{self, DeadLetter};
use crate::metrics::{ComponentMetrics, Counter, Discard, ErrorType, catalog};
use crate::retry::{Attempts, Next, Retrier};
use crate::shutdown::Shutdown;

/// Runs one worker per `(encoder, service)` pair on `ctx`'s buffer until it is
/// closed and drained, or `ctx.abort` is cancelled.
pub async fn run<E, S>(ctx: &SinkContext, limits: BatchLimits, words: Words, workers: Vec<(E, S)>)
where
    E: Encoder,
    S: Service<E::Key>,
{
    let dead_letter = ctx.dead_letter();
    let retrier = ctx.retrier();
    let blocked_log = Arc::new(LogGate::default());
    let mut tasks = JoinSet::new();
    for (encoder, service) in workers {
        let worker = Worker {
            name: ctx.name.clone(),
            buffer: ctx.buffer.clone(),
            abort: ctx.abort.clone(),
            dead_letter: dead_letter.clone(),
            retrier: retrier.clone(),
            words,
            metrics: ctx.metrics.clone(),
            requests: ctx.metrics.counter(&catalog::sink_kit::REQUESTS, None),
            retries: ctx.metrics.counter(&catalog::sink_kit::RETRIES, None),
            blocked_log: blocked_log.clone(),
            batcher: Batcher::new(limits).gzip(service.gzip_level()),
            encoder,
            service,
            ledger: Ledger::new(),
            scratch: Vec::new(),
        };
        tasks.spawn(worker.run());
    }
    while tasks.join_next().await.is_some() {}
}

struct Worker<E: Encoder, S> {
    name: String,
    buffer: Buffer,
    abort: Shutdown,
    dead_letter: DeadLetter,
    retrier: Retrier,
    words: Words,
    metrics: ComponentMetrics,
    /// Requests sent.
    requests: Counter,
    /// Requests (or parts of them) sent again.
    retries: Counter,
    /// When a `Blocked` answer was last logged, shared by the sink's workers.
    blocked_log: Arc<LogGate>,
    encoder: E,
    service: S,
    batcher: Batcher<E::Key>,
    ledger: Ledger,
    /// The items of the chunk being encoded.
    scratch: Vec<Item<E::Key>>,
}

/// Items sent together, with their request once built, their failures so far, and
/// how many times in a row the destination answered `Blocked`.
struct Group<K, R> {
    items: Vec<Item<K>>,
    request: Option<R>,
    attempts: Attempts,
    blocked: u32,
}

/// Items going to the dead-letter output, and why.
struct Dead<K> {
    item: Item<K>,
    status: Option<u16>,
    reason: String,
    error: Option<serde_json::Value>,
}

/// Why items go to the dead-letter output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    Rejected,
    GaveUp,
}

impl<E, S> Worker<E, S>
where
    E: Encoder,
    S: Service<E::Key>,
{
    async fn run(mut self) {
        let mut closed = false;
        loop {
            while !closed && !self.batcher.has_ready() {
                let deadline = self.batcher.deadline();
                let timer = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now));
                tokio::select! {
                    biased;
                    _ = self.abort.cancelled() => return self.aborted(),
                    lease = self.buffer.pop() => match lease {
                        Some(lease) => if !self.accept(lease).await {
                            return self.aborted();
                        },
                        None => closed = true,
                    },
                    _ = timer, if deadline.is_some() => self.batcher.seal_due(Instant::now()),
                }
            }
            if closed {
                self.batcher.seal_all();
            }
            let Some(batch) = self.batcher.take() else {
                if closed {
                    tracing::info!(sink = %self.name, "{} sink drained its buffer; stopping", self.words.kind);
                    return;
                }
                continue;
            };
            if !self.deliver(batch).await {
                return self.aborted();
            }
        }
    }

    fn aborted(&self) {
        tracing::info!(
            sink = %self.name,
            chunks = self.ledger.len(),
            "{} sink aborted; undelivered chunks stay in the buffer",
            self.words.kind
        );
    }

    /// Encodes a leased chunk's events into the batcher, sending each batch as soon
    /// as it is ready, so that a large chunk is not all encoded before its first
    /// bytes go out (and is not all held encoded). An entry that cannot be decoded,
    /// and an event the encoder refuses, go to the dead-letter output alone, with
    /// their reason; the rest of the chunk is sent. Returns false when aborted.
    async fn accept(&mut self, lease: Lease) -> bool {
        // A copy to walk while the lease waits in the ledger, where deliveries of its
        // first items may resolve them before the walk is over.
        let chunk = lease.chunk().clone();
        let slot = self.ledger.open(lease);
        // When the chunk's items arrived, for batch timeouts.
        let now = Instant::now();
        let every = self.batcher.limits().max_events.min(64);
        let mut dead = Vec::new();
        let mut undecodable = 0u32;
        let mut refused = 0u32;
        self.scratch.clear();
        for ((position, step), origin) in chunk.walk().enumerate().zip(chunk.event_ids()) {
            match step {
                Ok((time, record)) => {
                    let mut out = Items {
                        items: &mut self.scratch,
                        dead: &mut dead,
                        refused: &mut refused,
                        slot,
                        event: Event {
                            chunk: &chunk,
                            position: position as u32,
                            origin,
                            time,
                            record: &record,
                        },
                    };
                    self.encoder.encode(out.event, &mut out);
                }
                Err(bad) => {
                    dead_letter::encode_undecodable(&chunk, &bad, None, &mut dead);
                    undecodable += 1;
                }
            }
            // Every item but the last is complete (the next event may still join
            // the last one); they go to the batcher a few at a time, which is as
            // soon as a batch could need them, but not an item at a time.
            if self.scratch.len() > every {
                self.batch(slot, self.scratch.len() - 1, now);
            }
            while let Some(batch) = self.batcher.take() {
                if !self.deliver(batch).await {
                    return false;
                }
            }
        }
        self.batch(slot, self.scratch.len(), now);
        if self.batcher.limits().chunk_at_a_time {
            self.batcher.seal_all();
            while let Some(batch) = self.batcher.take() {
                if !self.deliver(batch).await {
                    return false;
                }
            }
        }
        if !dead.is_empty() {
            let backoff = &self.retrier.policy().backoff;
            if !self
                .dead_letter
                .write_until_done(dead, backoff, &self.abort, &self.name)
                .await
            {
                return false;
            }
            self.metrics.error(ErrorType::encode_failed);
            self.metrics
                .discarded(Discard::dead_letter, u64::from(undecodable + refused));
            tracing::error!(
                sink = %self.name,
                tag = %chunk.tag(),
                chunk = %chunk.id(),
                undecodable,
                refused,
                dead_letter = %self.dead_letter.path().display(),
                "a chunk held events that cannot be sent (undecodable entries, or events refused as they were encoded); wrote those to the dead-letter output with the reason and sent the rest"
            );
        }
        self.ledger.seal(slot, undecodable + refused > 0);
        true
    }

    /// Moves the first `n` items of the chunk being encoded (of lease `slot`, which
    /// arrived at `now`) into the batcher, counting them toward their lease.
    fn batch(&mut self, slot: u64, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        self.ledger.grow(slot, n as u32);
        for item in self.scratch.drain(..n) {
            self.batcher.push(item, now);
        }
    }

    /// Sends a batch's items until each is delivered or dead-lettered. Returns false when
    /// aborted.
    async fn deliver(&mut self, batch: Batch<E::Key>) -> bool {
        let Batch {
            key,
            mut items,
            gzipped,
        } = batch;
        let request = gzipped.map(|g| self.service.build_gzipped(&key, &mut items, g));
        let mut groups = vec![Group {
            items,
            request,
            attempts: Attempts::new(),
            blocked: 0,
        }];
        while let Some(mut group) = groups.pop() {
            let mut request = match group.request.take() {
                Some(r) => r,
                None => self.service.build(&key, &mut group.items),
            };
            let sent = tokio::select! {
                biased;
                _ = self.abort.cancelled() => return false,
                sent = self.service.send(&mut request) => sent,
            };
            self.requests.inc();
            let Sent {
                destination,
                outcome,
            } = sent;
            let outcomes = match outcome {
                BatchOutcome::Items(outcomes) if outcomes.len() == group.items.len() => {
                    if outcomes
                        .iter()
                        .any(|o| matches!(o, Outcome::Retry { .. } | Outcome::Blocked { .. }))
                    {
                        self.service.restore(request, &mut group.items);
                    }
                    outcomes
                }
                BatchOutcome::Items(outcomes) => {
                    self.service.restore(request, &mut group.items);
                    let reason = format!(
                        "the answer has {} outcomes for {} items sent",
                        outcomes.len(),
                        group.items.len()
                    );
                    vec![
                        Outcome::Retry {
                            status: None,
                            reason
                        };
                        group.items.len()
                    ]
                }
                BatchOutcome::All(Outcome::Retry { status, reason }) => {
                    group.request = Some(request);
                    let words = self.words.retry_all;
                    let failure = (status, reason.as_str(), destination.as_str(), words);
                    if !self.failed(&key, group, failure, &mut groups).await {
                        return false;
                    }
                    continue;
                }
                BatchOutcome::Blocked { status, reason }
                | BatchOutcome::All(Outcome::Blocked { status, reason }) => {
                    group.request = Some(request);
                    if !self
                        .blocked(group, (status, &reason, &destination), &mut groups)
                        .await
                    {
                        return false;
                    }
                    continue;
                }
                // Delivered or rejected alike: nothing is built from these items again.
                BatchOutcome::All(outcome) => vec![outcome; group.items.len()],
                BatchOutcome::Split { status, reason } => {
                    self.service.restore(request, &mut group.items);
                    if group.items.len() == 1 {
                        let dead = dead_all(group.items, status, &reason);
                        if !self.dead_letter(&key, dead, Why::Rejected).await {
                            return false;
                        }
                    } else {
                        let split = self.words.split;
                        self.warn(split, &destination, status, &reason, &group.items, None);
                        let second = group.items.split_off(group.items.len() / 2);
                        for items in [second, group.items] {
                            groups.push(Group {
                                items,
                                request: None,
                                attempts: group.attempts,
                                blocked: 0,
                            });
                        }
                    }
                    continue;
                }
            };
            let mut retry = Vec::new();
            let mut rejected = Vec::new();
            let mut blocked = Vec::new();
            let mut retry_reason = None;
            let mut blocked_reason = None;
            let (mut delivered, mut bytes) = (0u64, 0u64);
            for (item, outcome) in group.items.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Delivered => {
                        delivered += u64::from(item.ticket.events);
                        bytes += item.size as u64;
                        self.ledger.resolve(item.ticket.slot, false);
                    }
                    Outcome::Retry { status, reason } => {
                        retry_reason.get_or_insert((status, reason));
                        retry.push(item);
                    }
                    Outcome::Blocked { status, reason } => {
                        blocked_reason.get_or_insert((status, reason));
                        blocked.push(item);
                    }
                    Outcome::Rejected {
                        status,
                        reason,
                        error,
                    } => rejected.push(Dead {
                        item,
                        status,
                        reason,
                        error,
                    }),
                }
            }
            if delivered > 0 {
                self.metrics.sent(delivered, bytes);
                self.retrier.succeeded();
            }
            tracing::debug!(
                sink = %self.name,
                destination = %destination,
                retry = retry.len(),
                rejected = rejected.len(),
                "request answered"
            );
            if !rejected.is_empty() && !self.dead_letter(&key, rejected, Why::Rejected).await {
                return false;
            }
            if let Some((status, reason)) = blocked_reason {
                let blocked = Group {
                    items: blocked,
                    request: None,
                    attempts: group.attempts,
                    blocked: group.blocked,
                };
                let refused = (status, reason.as_str(), destination.as_str());
                if !self.blocked(blocked, refused, &mut groups).await {
                    return false;
                }
            }
            let Some((status, reason)) = retry_reason else {
                continue;
            };
            let retry = Group {
                items: retry,
                request: None,
                attempts: group.attempts,
                blocked: 0,
            };
            let words = self.words.retry_some;
            let failure = (status, reason.as_str(), destination.as_str(), words);
            if !self.failed(&key, retry, failure, &mut groups).await {
                return false;
            }
        }
        true
    }

    /// Sends `group` again, refused until something is fixed (its status, reason
    /// and destination): after the capped backoff, without end, never to the
    /// dead-letter output, logged once a minute for the whole sink. Returns false
    /// when aborted.
    async fn blocked(
        &mut self,
        mut group: Group<E::Key, S::Request>,
        (status, reason, destination): (Option<u16>, &str, &str),
        groups: &mut Vec<Group<E::Key, S::Request>>,
    ) -> bool {
        // Not counted under the retry policy: giving up would write every event to
        // the dead-letter output for a setting to fix.
        self.metrics.error(ErrorType::request_failed);
        let delay = self.retrier.policy().backoff.delay(group.blocked);
        group.blocked = group.blocked.saturating_add(1);
        self.retries.inc();
        let status = status.map(i64::from).unwrap_or(-1);
        match self.blocked_log.open(BLOCKED_LOG_EVERY) {
            Some(held) => tracing::error!(
                sink = %self.name, destination = %destination, status, reason = %reason,
                events = events(&group.items), attempt = group.blocked, retry_in = ?delay,
                same_since_last = held,
                "the destination refuses these events until this is fixed; sending again without end (nothing goes to the dead-letter output; said once a minute)"
            ),
            None => tracing::debug!(
                sink = %self.name, destination = %destination, status, reason = %reason,
                attempt = group.blocked, retry_in = ?delay,
                "the destination still refuses these events"
            ),
        }
        let resumed = pause(&self.abort, delay).await;
        groups.push(group);
        resumed
    }

    /// Counts a failure of `group` (its status, reason, destination, and the sink's
    /// words for sending it again) under the retry policy: waits, and pushes it back
    /// onto `groups` to be sent again, or, once its retries ran out, writes its items
    /// to the dead-letter output with the last reason. Returns false when aborted.
    async fn failed(
        &mut self,
        key: &E::Key,
        mut group: Group<E::Key, S::Request>,
        (status, reason, destination, retry_in): (Option<u16>, &str, &str, &'static str),
        groups: &mut Vec<Group<E::Key, S::Request>>,
    ) -> bool {
        self.metrics.error(ErrorType::request_failed);
        match self.retrier.failed(&mut group.attempts) {
            Next::RetryIn(delay) => {
                self.retries.inc();
                let attempt = Some((group.attempts.failures(), delay));
                self.warn(retry_in, destination, status, reason, &group.items, attempt);
                let resumed = pause(&self.abort, delay).await;
                groups.push(group);
                resumed
            }
            Next::GiveUp {
                failures,
                failing_for,
            } => {
                let reason = gave_up(failures, failing_for, status, reason);
                let dead = dead_all(group.items, status, &reason);
                self.dead_letter(key, dead, Why::GaveUp).await
            }
        }
    }

    /// Logs, in the sink's `words`, that `items` go again (`attempt`: how many failures
    /// so far, and the wait first) or are split.
    fn warn(
        &self,
        words: &str,
        destination: &str,
        status: Option<u16>,
        reason: &str,
        items: &[Item<E::Key>],
        attempt: Option<(u32, Duration)>,
    ) {
        let (attempt, retry_in) = attempt.unzip();
        tracing::warn!(
            sink = %self.name,
            destination = %destination,
            status = status.map(i64::from).unwrap_or(-1),
            reason = %reason,
            events = events(items),
            attempt,
            retry_in = retry_in.map(tracing::field::debug),
            "{words}"
        );
    }

    /// Writes the events of `dead` to the dead-letter output (trying again until the
    /// write works), then resolves them. Returns false when aborted.
    async fn dead_letter(&mut self, key: &E::Key, dead: Vec<Dead<E::Key>>, why: Why) -> bool {
        let destination = self.encoder.destination(key);
        let destination = destination.as_ref().map(|(k, v)| (*k, v.as_str()));
        let mut items: Vec<DeadItem<'_>> = dead
            .iter()
            .map(|d| DeadItem {
                ticket: d.item.ticket,
                reason: &d.reason,
                status: d.status,
                destination,
                error: d.error.as_ref(),
            })
            .collect();
        let mut lines = Vec::new();
        let events = self.ledger.encode_dead(&mut items, &mut lines);
        let backoff = self.retrier.policy().backoff;
        if !self
            .dead_letter
            .write_until_done(lines, &backoff, &self.abort, &self.name)
            .await
        {
            return false;
        }
        self.metrics
            .discarded(Discard::dead_letter, u64::from(events));
        if why == Why::Rejected {
            self.metrics.error(ErrorType::rejected);
        }
        let first = &dead[0];
        let status = first.status.map(i64::from).unwrap_or(-1);
        let path = self.dead_letter.path().display();
        let to = destination.map(|(_, v)| v).unwrap_or_default();
        match why {
            Why::Rejected => tracing::warn!(
                sink = %self.name, events, status, reason = %first.reason, destination = %to, dead_letter = %path,
                "{}", self.words.rejected
            ),
            Why::GaveUp => tracing::error!(
                sink = %self.name, events, status, reason = %first.reason, destination = %to, dead_letter = %path,
                "retries ran out (retry_timeout / retry_max_times); wrote the events to the dead-letter output"
            ),
        }
        for d in dead {
            self.ledger.resolve(d.item.ticket.slot, true);
        }
        true
    }
}

/// Waits `delay` unless `abort` comes first; returns false when aborted.
async fn pause(abort: &Shutdown, delay: Duration) -> bool {
    tokio::select! {
        biased;
        _ = abort.cancelled() => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

/// Events the items stand for.
fn events<K>(items: &[Item<K>]) -> u64 {
    items.iter().map(|i| u64::from(i.ticket.events)).sum()
}

fn dead_all<K>(items: Vec<Item<K>>, status: Option<u16>, reason: &str) -> Vec<Dead<K>> {
    items
        .into_iter()
        .map(|item| Dead {
            item,
            status,
            reason: reason.to_string(),
            error: None,
        })
        .collect()
}

/// The reason written for events whose retries ran out.
fn gave_up(failures: u32, failing_for: Duration, status: Option<u16>, last: &str) -> String {
    let last = match status {
        Some(status) => format!("status {status}: {last}"),
        None => last.to_string(),
    };
    format!(
        "gave up after {failures} failed attempts over {}s; last error: {last}",
        failing_for.as_secs()
    )
}

/// How often a destination that refuses every request (`Blocked`) is logged.
const BLOCKED_LOG_EVERY: Duration = Duration::from_secs(60);
