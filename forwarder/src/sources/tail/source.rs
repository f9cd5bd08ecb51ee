//! The `tail` source's runtime: re-scan the globs, read new data from every
//! followed file, frame it into messages, encode records into chunks, deliver them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nagare_core::buffer::BufferClosed;
use nagare_core::component::{Invalid, SourceContext};
use nagare_core::receipt::Receipt;
use nagare_core::{Event, EventTime, Tag};
use nagare_parsers::container::{ContainerFormat, ContainerParser, LogLine, detect};
use thiserror::Error;
use tokio::time::Instant;

use super::config::{TailConfig, TailFormat};
use super::discover::{Discovery, tag_for};
use super::file::{FileId, FollowedFile};
use super::record::{FileFields, RecordBuilder};

/// Bytes read from a file at once.
const READ_BLOCK: usize = 256 * 1024;

/// Blocks read from one file before the others get their turn; the file is read
/// further right after, without waiting for the poll interval.
const BLOCKS_PER_TURN: usize = 16;

/// Why the tail source stopped.
#[derive(Debug, Error)]
pub enum TailError {
    /// The config is not usable (the binary validates it first; this is the same
    /// check).
    #[error("the tail source `{name}` has an invalid `{}`: {}", .invalid.key, .invalid.message)]
    Config {
        /// The source's name.
        name: String,
        /// What is wrong.
        invalid: Invalid,
    },
    /// A sink's buffer was closed while the source still had chunks to deliver.
    #[error(
        "the tail source `{name}` could not deliver a chunk from {path}: {error}; the pipeline is shutting down, and the lines read since the last delivered chunk will be read again on restart once checkpoints are kept"
    )]
    BufferClosed {
        /// The source's name.
        name: String,
        /// The file the chunk came from.
        path: String,
        /// Which buffer was closed.
        error: BufferClosed,
    },
}

/// Follows the files matching `config.paths` until `ctx.shutdown` is cancelled, then
/// emits what it holds and returns.
pub async fn run(config: TailConfig, ctx: SourceContext) -> Result<(), TailError> {
    let invalid = |invalid| TailError::Config {
        name: ctx.name.clone(),
        invalid,
    };
    config.validate().map_err(invalid)?;
    let discovery = Discovery::new(&config.paths, &config.exclude_paths)
        .map_err(|e| invalid(Invalid::new("exclude_paths", e.to_string())))?;
    let mut tailer = Tailer {
        records: RecordBuilder {
            log_key: config.log_key.clone(),
            merge_json: config.merge_json,
            merge_json_key: config.merge_json_key.clone(),
            keep_log: config.keep_log,
        },
        discovery,
        files: BTreeMap::new(),
        block: vec![0; READ_BLOCK],
        scratch: Vec::new(),
        config,
        ctx,
    };
    tailer.refresh(true);
    let refresh_every: Duration = tailer.config.refresh_interval.into();
    let poll_every: Duration = tailer.config.poll_interval.into();
    let mut next_refresh = Instant::now() + refresh_every;
    loop {
        let more = tailer.poll().await?;
        if tailer.ctx.shutdown.is_cancelled() {
            break;
        }
        if !more {
            let wake = (Instant::now() + poll_every).min(next_refresh);
            tokio::select! {
                _ = tailer.ctx.shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        if Instant::now() >= next_refresh {
            tailer.refresh(false);
            next_refresh = Instant::now() + refresh_every;
        }
    }
    tailer.flush_all().await?;
    tracing::debug!(source = %tailer.ctx.name, "tail source stopped");
    Ok(())
}

/// The source's state.
struct Tailer {
    config: TailConfig,
    ctx: SourceContext,
    discovery: Discovery,
    records: RecordBuilder,
    files: BTreeMap<FileId, FollowedFile>,
    /// The read buffer, shared by every file.
    block: Vec<u8>,
    /// Where one record is encoded before it is appended to a chunk.
    scratch: Vec<u8>,
}

impl Tailer {
    /// Expands the globs: follows new files and marks those no longer found.
    fn refresh(&mut self, at_start: bool) {
        let found = self.discovery.scan();
        let mut seen = std::collections::HashSet::with_capacity(found.len());
        for path in found {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = FileId::of(&meta);
            if !seen.insert(id) || self.files.contains_key(&id) {
                continue;
            }
            // Files present at start are read from their end unless `read_from_head`;
            // a file that appears later was written after start, so all of it is new.
            let start_at_end = at_start && !self.config.read_from_head;
            let tag = Tag::from(tag_for(&self.config.tag, &path));
            let route = self.ctx.router.route(&tag);
            let fields = FileFields::new(&path, self.config.kubernetes_metadata);
            match FollowedFile::open(
                &path,
                start_at_end,
                tag,
                route,
                fields,
                self.config.max_line_bytes.as_usize(),
            ) {
                Ok(mut file) => {
                    tracing::info!(source = %self.ctx.name, path = %path.display(), offset = file.read_offset(), tag = %file.tag, "following file");
                    file.parser = match self.config.format {
                        TailFormat::Auto => None,
                        TailFormat::Cri => Some(ContainerParser::new(
                            ContainerFormat::Cri,
                            self.config.max_line_bytes.as_usize(),
                        )),
                        TailFormat::Docker => Some(ContainerParser::new(
                            ContainerFormat::Docker,
                            self.config.max_line_bytes.as_usize(),
                        )),
                        TailFormat::Raw => Some(ContainerParser::Raw),
                    };
                    // The identity of the opened handle, which may differ from the
                    // stat above if the file was replaced in between.
                    seen.insert(file.id);
                    self.files.insert(file.id, file);
                }
                Err(e) => {
                    tracing::warn!(source = %self.ctx.name, path = %path.display(), error = %e, "cannot open a file to follow; trying again at the next scan");
                }
            }
        }
        for file in self.files.values_mut() {
            let gone = !seen.contains(&file.id);
            if gone && !file.gone {
                tracing::info!(source = %self.ctx.name, path = %file.path.display(), "file is gone (rotated or deleted); reading what is left of it");
            }
            // A file missing from one scan (a directory briefly unreadable) and found
            // again is followed as before.
            file.gone = gone;
        }
    }

    /// Reads every file once (up to its turn's budget). Returns whether some file
    /// has more to read right away.
    async fn poll(&mut self) -> Result<bool, TailError> {
        let mut more = false;
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
            let Some(file) = self.files.get_mut(&id) else {
                continue;
            };
            let at_end = read_file(
                file,
                &self.config,
                &self.records,
                &mut self.block,
                &mut self.scratch,
                &self.ctx,
            )
            .await?;
            more |= !at_end;
            if at_end && file.gone {
                tracing::info!(source = %self.ctx.name, path = %file.path.display(), "stopped following file");
                self.files.remove(&id);
            }
        }
        Ok(more)
    }

    /// Emits the chunks still being filled.
    async fn flush_all(&mut self) -> Result<(), TailError> {
        for file in self.files.values_mut() {
            let offset = file.record_end_offset;
            emit(file, offset, &self.ctx.name).await?;
        }
        Ok(())
    }
}

/// Reads one file for one turn. Returns whether it reached its current end (and
/// so emitted what it read).
async fn read_file(
    file: &mut FollowedFile,
    config: &TailConfig,
    records: &RecordBuilder,
    block: &mut [u8],
    scratch: &mut Vec<u8>,
    ctx: &SourceContext,
) -> Result<bool, TailError> {
    match file.restart_if_truncated() {
        Ok(true) => {
            tracing::info!(source = %ctx.name, path = %file.path.display(), "file was truncated; reading it again from the start");
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(source = %ctx.name, path = %file.path.display(), error = %e, "cannot check the size of a followed file");
        }
    }
    let chunk_limit = config.chunk_limit_size.as_usize();
    let max_line_bytes = config.max_line_bytes.as_usize();
    for _ in 0..BLOCKS_PER_TURN {
        if ctx.shutdown.is_cancelled() {
            break;
        }
        let n = match file.read(block) {
            Ok(0) => {
                let offset = file.record_end_offset;
                emit(file, offset, &ctx.name).await?;
                return Ok(true);
            }
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(source = %ctx.name, path = %file.path.display(), error = %e, "cannot read a followed file; trying again at the next poll");
                let offset = file.record_end_offset;
                emit(file, offset, &ctx.name).await?;
                return Ok(true);
            }
        };
        let read_time = EventTime::now();
        let end_offset = file.read_offset();
        let FollowedFile {
            splitter,
            parser,
            fields,
            tag,
            route,
            builder,
            record_end_offset,
            path,
            id,
            ..
        } = &mut *file;
        let filtered = route.has_filters();
        let mut lines = splitter.feed(&block[..n]);
        while let Some(line) = lines.next() {
            let parser = parser
                .get_or_insert_with(|| choose_parser(line.bytes, path, max_line_bytes, &ctx.name));
            let mut emitted = false;
            parser.push(line, |msg: LogLine<'_>| {
                emitted = true;
                let message = records.message(&msg);
                let time = message.time_or(read_time);
                if filtered {
                    let record = records.to_map(&message, fields);
                    let mut event = Event::new(tag.clone(), time, record);
                    if route.apply(&mut event) {
                        builder.push(event.time, &event.record);
                    }
                } else {
                    scratch.clear();
                    records.write_entry(time, &message, fields, scratch);
                    builder.push_encoded(scratch);
                }
            });
            if emitted {
                *record_end_offset = end_offset - lines.remaining() as u64;
            }
            if builder.byte_size() >= chunk_limit {
                deliver(builder, route, *id, path, *record_end_offset, &ctx.name).await?;
            }
        }
    }
    Ok(false)
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

/// Emits the file's chunk being filled, if any.
async fn emit(file: &mut FollowedFile, offset: u64, source: &str) -> Result<(), TailError> {
    let FollowedFile {
        builder,
        route,
        path,
        id,
        ..
    } = file;
    deliver(builder, route, *id, path, offset, source).await
}

/// Finishes the chunk in `builder` and hands it to the route's sinks, waiting for
/// room in their buffers (backpressure: no more is read meanwhile).
async fn deliver(
    builder: &mut nagare_core::ChunkBuilder,
    route: &nagare_core::router::Route,
    id: FileId,
    path: &Path,
    offset: u64,
    source: &str,
) -> Result<(), TailError> {
    let closed = |error| TailError::BufferClosed {
        name: source.to_string(),
        path: path.display().to_string(),
        error,
    };
    let Some(mut chunk) = builder.finish() else {
        // Events a filter rejected wait on the route for the next delivery; when
        // every event of the file was rejected, send them now.
        return route.flush().await.map_err(closed);
    };
    if let Some(receipt) = receipt_for(id, path, offset) {
        chunk = chunk.with_receipt(receipt);
    }
    route.deliver(chunk).await.map_err(closed)
}

/// The receipt that reports when a chunk was delivered whose last line ends at
/// `offset` in the file `id` (found at `path`): the one place where checkpointing
/// will advance the file's saved position. `offset` is past the last line that
/// produced a record; a CRI or docker piece still held for its message's end may lie
/// before it, which the checkpoint must allow for (`ContainerParser::has_pending`).
/// There are no checkpoints yet, so there is no receipt.
fn receipt_for(id: FileId, path: &Path, offset: u64) -> Option<Receipt> {
    let _ = (id, path, offset);
    None
}
