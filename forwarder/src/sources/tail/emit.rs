//! Emitting: messages become records in the file's lane into the router (through
//! the multiline joiner of their stream when configured), and the lane's chunk is
//! sent with a receipt that moves the file's checkpoint once it is delivered.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Instant;

use nagare_core::EventTime;
use nagare_core::buffer::BufferClosed;
use nagare_core::router::Lane;
use nagare_parsers::container::{LogLine, Stream};
use nagare_parsers::multiline;

use super::file::{FollowedFile, MultilineState};
use super::metrics::TailMetrics;
use super::read::Turn;
use super::record::{FileFields, RecordBuilder};
use super::source::TailSourceError;

/// Counters of one read block, added to the shared metrics at once.
#[derive(Debug, Default)]
pub(super) struct BlockCounts {
    records: u64,
    truncated: u64,
    malformed: u64,
    invalid_utf8: u64,
    excluded: u64,
}

impl BlockCounts {
    /// Adds the counts to the source's metrics.
    pub(super) fn add_to(&self, m: &TailMetrics) {
        for (n, counter) in [
            (self.records, &m.records_emitted),
            (self.truncated, &m.lines_truncated),
            (self.malformed, &m.lines_malformed),
            (self.invalid_utf8, &m.lines_invalid_utf8),
            (self.excluded, &m.lines_dropped_excluded),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

/// Turns messages into records in the file's lane.
pub(super) struct RecordWriter<'a> {
    pub(super) records: &'a RecordBuilder,
    pub(super) scratch: &'a mut Vec<u8>,
    pub(super) fields: &'a FileFields,
    pub(super) lane: &'a mut Lane,
    pub(super) lines_in_chunk: &'a mut u64,
    pub(super) read_time: EventTime,
    pub(super) counts: &'a mut BlockCounts,
}

impl RecordWriter<'_> {
    /// Writes one message as a record.
    pub(super) fn write(&mut self, msg: &LogLine<'_>) {
        if msg.truncated {
            self.counts.truncated += 1;
        }
        if msg.malformed {
            self.counts.malformed += 1;
        }
        if self.fields.excluded {
            self.counts.excluded += 1;
            return;
        }
        let message = self.records.message(msg);
        if message.is_invalid_utf8() {
            self.counts.invalid_utf8 += 1;
        }
        let time = message.time_or(self.read_time);
        if self.lane.has_filters() {
            // The filters need the record as a map.
            self.lane
                .push(time, self.records.to_map(&message, self.fields));
        } else {
            self.scratch.clear();
            self.records
                .write_entry(time, &message, self.fields, self.scratch);
            self.lane.push_encoded(self.scratch);
        }
        *self.lines_in_chunk += 1;
        self.counts.records += 1;
    }

    /// Writes a joined multiline event: the framing's fields from its first line.
    pub(super) fn write_joined(
        &mut self,
        joined: &multiline::Message<'_>,
        logtag: Option<&'static str>,
    ) {
        let msg = LogLine {
            time: Some(joined.time),
            stream: joined.stream,
            logtag: logtag.map(|_| "F"),
            message: joined.bytes,
            truncated: joined.cut,
            malformed: false,
            offset: joined.offset,
        };
        self.write(&msg);
    }
}

/// Feeds one message to the multiline machine of its stream, or writes it.
pub(super) fn route_message(
    msg: LogLine<'_>,
    ml: Option<&mut MultilineState>,
    writer: &mut RecordWriter<'_>,
    now: Instant,
) {
    let Some(ml) = ml else {
        writer.write(&msg);
        return;
    };
    let machine = match msg.stream {
        Some(Stream::Stderr) => &mut ml.stderr,
        _ => &mut ml.stdout,
    };
    let logtag = msg.logtag;
    if msg.malformed || msg.truncated {
        // Not a line of the program's output as it wrote it: written on its own,
        // after what the stream held, so that order is kept.
        machine.flush(|joined| writer.write_joined(&joined, logtag));
        writer.write(&msg);
        return;
    }
    let line = multiline::Line {
        bytes: msg.message,
        stream: msg.stream,
        time: msg.time.unwrap_or(writer.read_time),
        offset: msg.offset,
    };
    machine.push(line, now, |joined| writer.write_joined(&joined, logtag));
}

impl Turn<'_> {
    /// Sends the file's lane: its chunk with a receipt that moves the checkpoint to
    /// the file's safe offset once delivered; with no chunk, the checkpoint moves
    /// over what was read and skipped at once. Events a filter rejected go with it
    /// either way.
    pub(super) async fn emit(&self, file: &mut FollowedFile) -> Result<(), TailSourceError> {
        let safe = file.safe_offset();
        let sent = if file.lane.is_empty() {
            file.lines_in_chunk = 0;
            if safe != file.tracked {
                self.checkpoints.commit(file.slot, safe);
                file.tracked = safe;
            }
            file.lane.send().await
        } else {
            self.publish(file);
            let receipt = self.checkpoints.track(file.slot, safe, file.lines_in_chunk);
            file.lane.add_receipt(receipt);
            file.lines_in_chunk = 0;
            file.tracked = safe;
            send(&mut file.lane, self.metrics).await
        };
        sent.map_err(|error| TailSourceError::BufferClosed {
            name: self.ctx.name.clone(),
            path: file.path.display().to_string(),
            error,
        })
    }
}

/// Sends a lane's chunk to its sinks, waiting for room in their buffers: while it
/// waits nothing is read (backpressure), and the metrics say so.
async fn send(lane: &mut Lane, metrics: &TailMetrics) -> Result<(), BufferClosed> {
    let mut fut = pin!(lane.send());
    let first = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
    if let Poll::Ready(r) = first {
        // Let the sinks (on the same runtime, maybe the same thread) take the chunk
        // before more is read: chunks then leave about as fast as they are made, and
        // memory stays near one chunk per file being read rather than a full buffer.
        tokio::task::yield_now().await;
        return r;
    }
    metrics.backpressure_waits.fetch_add(1, Ordering::Relaxed);
    metrics.paused.store(true, Ordering::Relaxed);
    let since = std::time::Instant::now();
    let r = fut.await;
    metrics.paused.store(false, Ordering::Relaxed);
    metrics
        .paused_nanos
        .fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}
