//! Reading one file's turn: blocks from the file, lines from the splitter, messages
//! from the framing (CRI / docker pieces merged) and the multiline joiner, into the
//! file's lane; the chunk goes out when it is full and when the file is read to its
//! current end.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nagare_core::EventTime;
use nagare_core::component::SourceContext;
use nagare_core::router::Lane;
use nagare_parsers::container::{ContainerParser, detect};

use super::checkpoint::Checkpoints;
use super::config::TailConfig;
use super::emit::{BlockCounts, RecordWriter, route_message};
use super::file::{FollowedFile, MultilineState};
use super::metrics::{FileMetrics, TailMetrics};
use super::record::{FileFields, RecordBuilder};
use super::source::TailSourceError;
use crate::filters::kubernetes::KubernetesMetadata;

/// Blocks read from one file before the others get their turn; the file is read
/// further right after, without waiting for the poll interval.
const BLOCKS_PER_TURN: usize = 16;

/// What reading one file's turn needs from the source.
pub(super) struct Turn<'a> {
    pub(super) config: &'a TailConfig,
    pub(super) records: &'a RecordBuilder,
    /// The read buffer, shared by every file.
    pub(super) block: &'a mut Vec<u8>,
    /// Where one record is encoded before it is appended to a chunk.
    pub(super) scratch: &'a mut Vec<u8>,
    pub(super) ctx: &'a SourceContext,
    pub(super) checkpoints: &'a Checkpoints,
    pub(super) metrics: &'a TailMetrics,
    pub(super) kubernetes: Option<&'a KubernetesMetadata>,
}

/// What the splitter's lines came from.
enum Fed {
    /// A block just read, of this many bytes.
    Block(usize),
    /// What the splitter still holds after a chunk filled up mid-block.
    Rest,
}

impl Turn<'_> {
    /// Reads one file for one turn. Returns whether it reached its current end (and
    /// so emitted what it read).
    pub(super) async fn read_file(
        &mut self,
        file: &mut FollowedFile,
    ) -> Result<bool, TailSourceError> {
        if let Some(k) = self.kubernetes {
            file.fields.refresh(k);
        }
        self.flush_due_multiline(file, Instant::now());
        let mut bytes = 0u64;
        let mut lines_read = 0u64;
        let mut at_end = false;
        for _ in 0..BLOCKS_PER_TURN {
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
            let fingerprint = file.fingerprint;
            let n = match file.read(self.block) {
                Ok(0) => {
                    at_end = true;
                    break;
                }
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(source = %self.ctx.name, path = %file.path.display(), error = %e, "cannot read a followed file; trying again at the next poll");
                    at_end = true;
                    break;
                }
            };
            // Before the lines go into a chunk: a checkpoint that passes them has a
            // fingerprint that covers them.
            if file.fingerprint != fingerprint {
                self.checkpoints
                    .update_identity(file.slot, file.id, file.fingerprint, None);
            }
            bytes += n as u64;
            file.bytes_read += n as u64;
            if let Some(node) = self.records.event_id_node()
                && let Err(e) = file.identify(node)
            {
                tracing::warn!(source = %self.ctx.name, path = %file.path.display(), error = %e, "cannot read a file's first line for its event ids; its records go without `event_id_key` until it can be read");
            }
            self.metrics
                .bytes_read
                .fetch_add(n as u64, Ordering::Relaxed);
            let read_time = EventTime::now();
            let (mut full, lines) = self.take_lines(file, Fed::Block(n), read_time);
            lines_read += lines;
            // A chunk that filled up mid-block leaves the rest of the block in the
            // splitter: emit, then go on with it.
            while full {
                self.emit(file).await?;
                let (more, lines) = self.take_lines(file, Fed::Rest, read_time);
                full = more;
                lines_read += lines;
            }
        }
        self.metrics
            .lines_read
            .fetch_add(lines_read, Ordering::Relaxed);
        file.lines_read += lines_read;
        if at_end {
            self.emit(file).await?;
            if let Err(e) = file.shrink() {
                tracing::debug!(source = %self.ctx.name, path = %file.path.display(), error = %e, "cannot step back over a partial line");
            }
        }
        if bytes > 0 || at_end {
            self.publish(file);
        }
        Ok(at_end)
    }

    /// Hands the splitter's lines, one at a time, to the framing and the multiline
    /// joiner, whose messages go into the file's lane, until the lane reaches
    /// `chunk_limit_size`. Returns whether it did (lines may be left in the splitter)
    /// and how many lines were taken.
    fn take_lines(
        &mut self,
        file: &mut FollowedFile,
        fed: Fed,
        read_time: EventTime,
    ) -> (bool, u64) {
        let chunk_limit = self.config.chunk_limit_size.as_usize();
        let max_line_bytes = self.config.max_line_bytes.as_usize();
        let now = Instant::now();
        let end_offset = file.read_offset();
        let mut counts = BlockCounts::default();
        let FollowedFile {
            splitter,
            parser,
            multiline,
            fields,
            lane,
            lines_in_chunk,
            consumed,
            held_from,
            in_long_line,
            path,
            ..
        } = file;
        let line_cap = splitter.max_line_bytes();
        let mut lines = match fed {
            Fed::Block(n) => splitter.feed(&self.block[..n]),
            Fed::Rest => splitter.lines(),
        };
        let (mut full, mut taken) = (false, 0u64);
        loop {
            let start = end_offset - lines.remaining() as u64;
            let Some(line) = lines.next() else {
                break;
            };
            let end = end_offset - lines.remaining() as u64;
            debug_assert_eq!(line.offset, start, "the splitter counts file offsets");
            taken += 1;
            *in_long_line = line.truncated && line.bytes.len() == line_cap;
            let parser = parser.get_or_insert_with(|| {
                choose_parser(line.bytes, path, max_line_bytes, &self.ctx.name)
            });
            let mut writer = self.writer(fields, lane, lines_in_chunk, read_time, &mut counts);
            match multiline.as_mut() {
                Some(ml) => parser.push(line, |msg| {
                    route_message(msg, Some(&mut *ml), &mut writer, now)
                }),
                None => parser.push(line, |msg| writer.write(&msg)),
            }
            *consumed = end;
            let held =
                parser.has_pending() || multiline.as_ref().is_some_and(MultilineState::is_holding);
            if !held {
                *held_from = None;
            } else if held_from.is_none() {
                *held_from = Some(start);
            }
            if lane.byte_size() >= chunk_limit {
                full = true;
                break;
            }
        }
        counts.add_to(self.metrics);
        (full, taken)
    }

    /// A writer of records into a file's lane (its `fields`, `lane` and
    /// `lines_in_chunk`), counting into `counts`.
    fn writer<'b>(
        &'b mut self,
        fields: &'b FileFields,
        lane: &'b mut Lane,
        lines_in_chunk: &'b mut u64,
        read_time: EventTime,
        counts: &'b mut BlockCounts,
    ) -> RecordWriter<'b> {
        RecordWriter {
            records: self.records,
            scratch: self.scratch,
            fields,
            lane,
            lines_in_chunk,
            read_time,
            counts,
        }
    }

    /// Updates the file's row in the metrics.
    pub(super) fn publish(&self, file: &FollowedFile) {
        self.metrics.set_file(FileMetrics {
            path: file.path.clone(),
            inode: file.id.ino,
            read_offset: file.read_offset(),
            bytes_read: file.bytes_read,
            lines_read: file.lines_read,
            truncations: file.truncations,
            gone: file.gone.is_some(),
        });
    }

    /// Emits multiline events that waited `flush_timeout` for a line that did not
    /// come.
    fn flush_due_multiline(&mut self, file: &mut FollowedFile, now: Instant) {
        let due = file
            .multiline
            .as_ref()
            .and_then(MultilineState::deadline)
            .is_some_and(|d| now >= d);
        if !due {
            return;
        }
        let mut counts = BlockCounts::default();
        let cri = matches!(file.parser, Some(ContainerParser::Cri(_)));
        let FollowedFile {
            multiline,
            fields,
            lane,
            lines_in_chunk,
            held_from,
            parser,
            ..
        } = file;
        let Some(ml) = multiline.as_mut() else {
            return;
        };
        let mut writer = self.writer(fields, lane, lines_in_chunk, EventTime::now(), &mut counts);
        let logtag = cri.then_some("F");
        ml.stdout.poll(now, |j| writer.write_joined(&j, logtag));
        ml.stderr.poll(now, |j| writer.write_joined(&j, logtag));
        let held = parser.as_ref().is_some_and(ContainerParser::has_pending) || ml.is_holding();
        if !held {
            *held_from = None;
        }
        counts.add_to(self.metrics);
    }

    /// The file is let go: multiline events it holds are emitted (no line will
    /// follow them), then its chunk.
    pub(super) async fn finish(&mut self, file: &mut FollowedFile) -> Result<(), TailSourceError> {
        if let Some(ml) = &mut file.multiline {
            let mut counts = BlockCounts::default();
            let cri = matches!(file.parser, Some(ContainerParser::Cri(_)));
            let logtag = cri.then_some("F");
            let mut writer = self.writer(
                &file.fields,
                &mut file.lane,
                &mut file.lines_in_chunk,
                EventTime::now(),
                &mut counts,
            );
            ml.stdout.flush(|j| writer.write_joined(&j, logtag));
            ml.stderr.flush(|j| writer.write_joined(&j, logtag));
            counts.add_to(self.metrics);
            if !file
                .parser
                .as_ref()
                .is_some_and(ContainerParser::has_pending)
            {
                file.held_from = None;
            }
        }
        self.emit(file).await
    }
}

/// The framing of a file read with `format: auto`, from its first line.
fn choose_parser(
    first_line: &[u8],
    path: &Path,
    max_line_bytes: usize,
    source: &str,
) -> ContainerParser {
    match detect(first_line) {
        Some(format) => ContainerParser::new(format, max_line_bytes),
        None => {
            tracing::warn!(source = %source, path = %path.display(), "the first line of the file is neither CRI nor docker json-file; reading it as raw lines");
            ContainerParser::Raw
        }
    }
}
