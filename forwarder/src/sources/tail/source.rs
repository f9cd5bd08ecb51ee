//! The `tail` source's runtime: find files, follow them through rotation and
//! truncation, frame their lines into messages (CRI / docker pieces merged, then
//! multiline events joined), encode records into chunks, deliver them, and move each
//! file's checkpoint once the chunk holding its lines was delivered.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime};

use nagare_core::buffer::BufferClosed;
use nagare_core::component::{Invalid, SourceContext};
use nagare_core::router::Route;
use nagare_core::{Chunk, Event, EventTime, Tag};
use nagare_parsers::container::{ContainerFormat, ContainerParser, LogLine, Stream, detect};
use nagare_parsers::multiline::{self, Detector};
use thiserror::Error;

use super::checkpoint::{CheckpointError, Checkpoints, Loaded, SlotId, Stored};
use super::config::{TailConfig, TailFormat};
use super::discover::{Discovery, tag_for};
use super::file::{FileId, Fingerprint, FollowedFile, MultilineState, Start};
use super::metrics::{FileMetrics, TailMetrics};
use super::record::{FileFields, RecordBuilder};
use super::watch::{DirWatcher, Signals, glob_dir};
use crate::filters::kubernetes::{KubernetesError, KubernetesMetadata};

/// Bytes read from a file at once.
const READ_BLOCK: usize = 256 * 1024;

/// Blocks read from one file before the others get their turn; the file is read
/// further right after, without waiting for the poll interval.
const BLOCKS_PER_TURN: usize = 16;

/// Least time between two glob scans triggered by the kernel's events.
const MIN_RESCAN_GAP: Duration = Duration::from_millis(50);

/// How often forgotten checkpoints are looked for.
const FORGET_EVERY: Duration = Duration::from_secs(60);

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
    /// The checkpoint store cannot be opened.
    #[error("the tail source `{name}` cannot keep checkpoints: {error}")]
    Checkpoint {
        /// The source's name.
        name: String,
        /// What failed.
        error: CheckpointError,
    },
    /// The Kubernetes API cannot be used as configured.
    #[error("the tail source `{name}`: {error}")]
    Kubernetes {
        /// The source's name.
        name: String,
        /// What is wrong.
        error: KubernetesError,
    },
    /// A sink's buffer was closed while the source still had chunks to deliver.
    #[error(
        "the tail source `{name}` could not deliver a chunk from {path}: {error}; the pipeline is shutting down, and the lines not delivered will be read again on restart (their checkpoint did not move)"
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
    run_with_metrics(config, ctx, TailMetrics::new()).await
}

/// [`run`], keeping `metrics` up to date.
pub async fn run_with_metrics(
    config: TailConfig,
    ctx: SourceContext,
    metrics: Arc<TailMetrics>,
) -> Result<(), TailError> {
    let invalid = |invalid| TailError::Config {
        name: ctx.name.clone(),
        invalid,
    };
    config.validate().map_err(invalid)?;
    let discovery = Discovery::new(&config.paths, &config.exclude_paths)
        .map_err(|e| invalid(Invalid::new("exclude_paths", e.to_string())))?;
    let detector = config
        .multiline
        .as_ref()
        .map(Detector::new)
        .transpose()
        .map_err(|e| invalid(Invalid::new(format!("multiline.{}", e.key), e.message)))?;
    let (checkpoints, loaded) = Checkpoints::open(&ctx.data_dir, &ctx.name, metrics.clone())
        .map_err(|error| TailError::Checkpoint {
            name: ctx.name.clone(),
            error,
        })?;
    checkpoints.spawn_writer(config.checkpoint_interval.into());
    let kubernetes = if config.kubernetes_metadata {
        KubernetesMetadata::start(&config.kubernetes, &ctx.name, &ctx.shutdown)
            .await
            .map_err(|error| TailError::Kubernetes {
                name: ctx.name.clone(),
                error,
            })?
    } else {
        None
    };
    let watcher = DirWatcher::new(config.watch, &ctx.name);
    let signals = watcher.signals();
    let mut tailer = Tailer {
        records: RecordBuilder {
            log_key: config.log_key.clone(),
            merge_json: config.merge_json,
            merge_json_key: config.merge_json_key.clone(),
            keep_log: config.keep_log,
            path_key: config.path_key.clone(),
            offset_key: config.offset_key.clone(),
            event_id_key: config.event_id_key.clone(),
            node_name: if config.event_id_key.is_some() {
                node_name()
            } else {
                String::new()
            },
        },
        discovery,
        files: BTreeMap::new(),
        block: vec![0; READ_BLOCK],
        scratch: Vec::new(),
        checkpoints,
        loaded,
        kubernetes,
        detector,
        watcher,
        metrics,
        cap_logged: false,
        config,
        ctx,
    };
    tracing::info!(source = %tailer.ctx.name, checkpoints = %tailer.checkpoints.dir().display(), state = ?loaded, "tail source starting");
    tailer.refresh(true);
    tailer.recover_rotated().await?;
    run_loop(&mut tailer, &signals).await?;
    tailer.flush_all().await?;
    tailer.checkpoints.write_now();
    tracing::debug!(source = %tailer.ctx.name, "tail source stopped");
    Ok(())
}

async fn run_loop(tailer: &mut Tailer, signals: &Signals) -> Result<(), TailError> {
    let refresh_every: Duration = tailer.config.refresh_interval.into();
    let poll_every: Duration = tailer.config.poll_interval.into();
    let forget_after: Duration = tailer.config.checkpoint_forget_after.into();
    let mut next_refresh = Instant::now() + refresh_every;
    let mut last_refresh = Instant::now();
    let mut next_forget = Instant::now() + FORGET_EVERY.min(forget_after);
    loop {
        let more = tailer.poll().await?;
        if tailer.ctx.shutdown.is_cancelled() {
            return Ok(());
        }
        if !more {
            let mut wake = (Instant::now() + poll_every).min(next_refresh);
            if let Some(d) = tailer.next_multiline_deadline() {
                wake = wake.min(d);
            }
            // A rescan the kernel asked for too soon after the last one is due
            // once the gap has passed, not at the next refresh.
            if signals.rescan.load(Ordering::Relaxed) {
                wake = wake.min(last_refresh + MIN_RESCAN_GAP);
            }
            tokio::select! {
                _ = tailer.ctx.shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = signals.wake.notified() => {}
            }
        }
        let now = Instant::now();
        let rescan = signals.rescan.load(Ordering::Relaxed)
            && now.duration_since(last_refresh) >= MIN_RESCAN_GAP;
        if now >= next_refresh || rescan {
            signals.rescan.store(false, Ordering::Relaxed);
            tailer.refresh(false);
            last_refresh = now;
            next_refresh = now + refresh_every;
        }
        if now >= next_forget {
            let n = tailer.checkpoints.forget(forget_after);
            if n > 0 {
                tracing::debug!(source = %tailer.ctx.name, forgotten = n, "forgot checkpoints of files gone for longer than checkpoint_forget_after");
            }
            next_forget = now + FORGET_EVERY.min(forget_after);
        }
    }
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
    checkpoints: Checkpoints,
    loaded: Loaded,
    kubernetes: Option<KubernetesMetadata>,
    detector: Option<Detector>,
    watcher: DirWatcher,
    metrics: Arc<TailMetrics>,
    /// `max_open_files` was reached and said so.
    cap_logged: bool,
}

impl Tailer {
    /// Expands the globs: follows new files and marks those no longer found.
    fn refresh(&mut self, at_start: bool) {
        let found = self.discovery.scan();
        let mut seen = HashSet::with_capacity(found.len());
        let mut waiting = 0u64;
        let ignore_older: Option<Duration> = self.config.ignore_older.map(Into::into);
        for path in found {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = FileId::of(&meta);
            if !seen.insert(id) || self.files.contains_key(&id) {
                continue;
            }
            if let Some(age) = ignore_older
                && meta
                    .modified()
                    .ok()
                    .and_then(|m| SystemTime::now().duration_since(m).ok())
                    .is_some_and(|d| d > age)
            {
                continue;
            }
            if self.files.len() >= self.config.max_open_files {
                waiting += 1;
                continue;
            }
            match self.follow(&path, at_start) {
                Ok(file) => {
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
        self.metrics.files_waiting.store(waiting, Ordering::Relaxed);
        if waiting > 0 && !self.cap_logged {
            tracing::warn!(source = %self.ctx.name, max_open_files = self.config.max_open_files, waiting, "max_open_files reached: more files match the globs than may be open; they wait (nothing is lost) until followed files are let go; raise max_open_files to follow them now");
            self.cap_logged = true;
        } else if waiting == 0 {
            self.cap_logged = false;
        }
        for file in self.files.values_mut() {
            let found = seen.contains(&file.id);
            match (found, file.gone) {
                (false, None) => {
                    let rotated = file.path.exists();
                    if rotated {
                        self.metrics.rotations.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.metrics.deletions.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(source = %self.ctx.name, path = %file.path.display(), rotated, "file is gone (rotated or deleted); reading what is left of it");
                    file.gone = Some(Instant::now());
                }
                // A file missing from one scan (a directory briefly unreadable) and
                // found again is followed as before.
                (true, Some(_)) => file.gone = None,
                _ => {}
            }
        }
        self.metrics
            .open_files
            .store(self.files.len() as u64, Ordering::Relaxed);
        self.update_watches();
    }

    /// Watches the globs' directories (new files) and the directories of the
    /// followed files' real paths (writes, rotation).
    fn update_watches(&mut self) {
        let mut dirs: BTreeSet<PathBuf> = self
            .config
            .paths
            .iter()
            .filter_map(|p| glob_dir(p))
            .collect();
        for f in self.files.values() {
            if let Some(parent) = f.real_path.parent() {
                dirs.insert(parent.to_path_buf());
            }
        }
        self.watcher.set(dirs);
    }

    /// Opens a newly found file, resuming from its checkpoint if it has one.
    fn follow(&mut self, path: &Path, at_start: bool) -> std::io::Result<FollowedFile> {
        let handle = File::open(path)?;
        let meta = handle.metadata()?;
        let id = FileId::of(&meta);
        let len = meta.len();
        let fp = Fingerprint::of(&handle)?;
        let fp_matches = |e: &Stored| e.fingerprint.matches(&handle).unwrap_or(false);
        let resumed = self
            .checkpoints
            .claim(|e| e.id == id && fp_matches(e))
            // A file whose content another entry knew: a copy or a move across
            // devices that the globs match. Only if the entry's fingerprint covers
            // what its offset skips: a few bytes many files start with are no proof.
            .or_else(|| {
                self.checkpoints.claim(|e| {
                    e.id != id
                        && e.fingerprint.len > 0
                        && e.fingerprint_covers_offset()
                        && fp_matches(e)
                })
            });
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let (slot, start, origin) = match resumed {
            Some(slot) => {
                let stored = self.checkpoints.stored(slot).expect("claimed slot");
                let start = if stored.offset <= len {
                    Start::At(stored.offset)
                } else {
                    tracing::info!(source = %self.ctx.name, path = %path.display(), checkpoint = stored.offset, size = len, "file is shorter than its checkpoint (truncated while the source was stopped); reading it from its start");
                    Start::Head
                };
                (slot, start, stored.origin)
            }
            None => {
                let (start, origin) = match self.copy_of_followed(&real, id, &handle) {
                    // Its lines before what the original delivered were delivered.
                    Some((origin, delivered)) => (Start::At(delivered.min(len)), origin),
                    // Only on the very first run may files present be skipped to
                    // their end: after that, a file without checkpoint is one that
                    // appeared while the source was not running, and all of it is new.
                    None if at_start
                        && self.loaded == Loaded::Fresh
                        && !self.config.read_from_head =>
                    {
                        (Start::End, id)
                    }
                    None => (Start::Head, id),
                };
                let slot = self.checkpoints.register(Stored {
                    id,
                    origin,
                    fingerprint: fp,
                    offset: match start {
                        Start::End => len,
                        Start::At(offset) => offset,
                        Start::Head => 0,
                    },
                    path: real.clone(),
                    gone_since: None,
                });
                (slot, start, origin)
            }
        };
        let tag = Tag::from(tag_for(&self.config.tag, path));
        let mut file = self.open_followed(path, handle, start, slot, tag)?;
        file.origin = origin;
        self.checkpoints
            .update_identity(slot, file.id, file.fingerprint, Some(&file.real_path));
        if let Start::At(offset) = start {
            self.checkpoints.commit(slot, offset);
        } else if start == Start::End {
            self.checkpoints.commit(slot, file.read_offset());
        }
        file.tracked = file.read_offset();
        tracing::info!(source = %self.ctx.name, path = %path.display(), offset = file.read_offset(), resumed = resumed.is_some(), tag = %file.tag, "following file");
        Ok(file)
    }

    /// If the file at `real` (identity `id`, open as `handle`) is a copy of a file
    /// being followed, the original's origin and delivered offset. A copy is a file
    /// beside the original whose name extends the original's (`app.log.1`, where the
    /// globs match rotated names too) and that starts with the original's
    /// fingerprinted bytes: copytruncate made it, and the original was not
    /// truncated yet, or the source has not seen it yet. Its lines are the original's,
    /// at the same offsets, so they take the original's ids.
    fn copy_of_followed(&self, real: &Path, id: FileId, handle: &File) -> Option<(FileId, u64)> {
        let original = self.files.values().find(|f| {
            f.id != id
                && f.fingerprint.len > 0
                && real != f.real_path
                && is_beside(&f.real_path, real)
                && f.fingerprint.matches(handle).unwrap_or(false)
        })?;
        let delivered = self
            .checkpoints
            .stored(original.slot)
            .map_or(0, |s| s.offset);
        tracing::info!(source = %self.ctx.name, path = %real.display(), original = %original.real_path.display(), delivered, "found a copy of a followed file (copytruncate); its lines keep the original's event ids");
        Some((original.origin, delivered))
    }

    /// A [`FollowedFile`] with this source's framing, multiline and fields.
    fn open_followed(
        &self,
        path: &Path,
        handle: File,
        start: Start,
        slot: SlotId,
        tag: Tag,
    ) -> std::io::Result<FollowedFile> {
        let route = self.ctx.router.route(&tag);
        let mut fields = FileFields::new(path, self.config.kubernetes_metadata);
        if let Some(k) = &self.kubernetes {
            fields.refresh(k);
        }
        let max = self.config.max_line_bytes.as_usize();
        let mut file = FollowedFile::open(path, handle, start, slot, tag, route, fields, max)?;
        file.parser = match self.config.format {
            TailFormat::Auto => None,
            TailFormat::Cri => Some(ContainerParser::new(ContainerFormat::Cri, max)),
            TailFormat::Docker => Some(ContainerParser::new(ContainerFormat::Docker, max)),
            TailFormat::Raw => Some(ContainerParser::Raw),
        };
        file.multiline = self.detector.as_ref().map(MultilineState::new);
        Ok(file)
    }

    /// After a restart: files known from the checkpoints that the globs no longer
    /// find (rotated away while the source was stopped, or the copy made by
    /// copytruncate) are looked for beside their old path, and what was not delivered
    /// of them is read.
    async fn recover_rotated(&mut self) -> Result<(), TailError> {
        for entry in self.checkpoints.unclaimed() {
            let Some((path, handle)) = find_rotated(&entry.path, entry.fingerprint, entry.offset)
            else {
                continue;
            };
            let Ok(meta) = handle.metadata() else {
                continue;
            };
            let id = FileId::of(&meta);
            if self.files.contains_key(&id) {
                continue;
            }
            let Some(slot) = self.checkpoints.claim(|e| *e == entry) else {
                continue;
            };
            let tag = Tag::from(tag_for(&self.config.tag, &entry.path));
            match self.open_followed(&path, handle, Start::At(entry.offset), slot, tag) {
                Ok(mut file) => {
                    tracing::info!(source = %self.ctx.name, path = %path.display(), was = %entry.path.display(), offset = entry.offset, "found a rotated file with undelivered lines; reading it to its end");
                    // The entry keeps the path it had, beside which this file is
                    // found again if it is renamed once more before it is finished
                    // (logrotate's `app.log.1` becoming `app.log.2`), and its origin:
                    // a copy's lines keep the ids they had in the original.
                    self.checkpoints
                        .update_identity(slot, file.id, file.fingerprint, None);
                    file.origin = entry.origin;
                    file.real_path = entry.path.clone();
                    file.gone = Some(Instant::now());
                    self.metrics
                        .copies_recovered
                        .fetch_add(1, Ordering::Relaxed);
                    self.files.insert(file.id, file);
                }
                Err(e) => {
                    self.checkpoints.release(slot);
                    tracing::warn!(source = %self.ctx.name, path = %path.display(), error = %e, "cannot open a rotated file with undelivered lines");
                }
            }
        }
        self.metrics
            .open_files
            .store(self.files.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Reads every file once (up to its turn's budget). Returns whether some file
    /// has more to read right away.
    async fn poll(&mut self) -> Result<bool, TailError> {
        let mut more = false;
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        let rotate_wait: Duration = self.config.rotate_wait.into();
        for id in ids {
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
            let truncated = match self.files.get(&id) {
                Some(file) => file.was_truncated().unwrap_or(false),
                None => continue,
            };
            if truncated {
                self.on_truncated(id).await?;
            }
            let Some(file) = self.files.get_mut(&id) else {
                continue;
            };
            let mut turn = Turn {
                config: &self.config,
                records: &self.records,
                block: &mut self.block,
                scratch: &mut self.scratch,
                ctx: &self.ctx,
                checkpoints: &self.checkpoints,
                metrics: &self.metrics,
                kubernetes: self.kubernetes.as_ref(),
            };
            let at_end = turn.read_file(file).await?;
            more |= !at_end;
            if at_end && file.gone.is_some_and(|t| t.elapsed() >= rotate_wait) {
                turn.finish(file).await?;
                tracing::info!(source = %self.ctx.name, path = %file.path.display(), "stopped following file");
                self.checkpoints.release(file.slot);
                self.metrics.remove_file(&file.path, file.id.ino);
                self.files.remove(&id);
                self.metrics
                    .open_files
                    .store(self.files.len() as u64, Ordering::Relaxed);
            }
        }
        Ok(more)
    }

    /// The file `id` no longer holds what was read (copytruncate): what was read is
    /// delivered, the copy (if one is beside it) is read from where delivery stood,
    /// and the file is read again from its start.
    async fn on_truncated(&mut self, id: FileId) -> Result<(), TailError> {
        let Some(file) = self.files.get_mut(&id) else {
            return Ok(());
        };
        self.metrics.truncations.fetch_add(1, Ordering::Relaxed);
        file.truncations += 1;
        let turn = Turn {
            config: &self.config,
            records: &self.records,
            block: &mut self.block,
            scratch: &mut self.scratch,
            ctx: &self.ctx,
            checkpoints: &self.checkpoints,
            metrics: &self.metrics,
            kubernetes: self.kubernetes.as_ref(),
        };
        turn.emit(file).await?;
        let old_slot = file.slot;
        let old_fingerprint = file.fingerprint;
        let origin = file.origin;
        let safe = file.safe_offset();
        let read = file.read_offset();
        self.checkpoints.release(old_slot);
        let copy = find_rotated(&file.real_path, old_fingerprint, safe)
            .filter(|(_, h)| h.metadata().is_ok_and(|m| FileId::of(&m) != id));
        let new_slot = self.checkpoints.register(Stored {
            id,
            origin: id,
            fingerprint: Fingerprint::default(),
            offset: 0,
            path: file.real_path.clone(),
            gone_since: None,
        });
        if let Err(e) = file.restart(new_slot) {
            tracing::warn!(source = %self.ctx.name, path = %file.path.display(), error = %e, "cannot reread a truncated file");
        }
        self.checkpoints
            .update_identity(new_slot, id, file.fingerprint, None);
        tracing::info!(source = %self.ctx.name, path = %file.path.display(), read_up_to = read, copy = ?copy.as_ref().map(|(p, _)| p), "file was truncated (copytruncate); reading it again from its start");
        let (tag, real_path) = (file.tag.clone(), file.real_path.clone());
        // A copy the globs matched is followed already, from no later than what the
        // original delivered when it was found: it is read to its end as it is.
        let copy = copy.filter(|(_, h)| {
            h.metadata()
                .is_ok_and(|m| !self.files.contains_key(&FileId::of(&m)))
        });
        if let Some((path, handle)) = copy {
            match self.open_followed(&path, handle, Start::At(safe), old_slot, tag) {
                Ok(mut copy) => {
                    // The entry keeps the original's path (the copy is looked for
                    // beside it after a restart) and origin (the copy's lines keep
                    // their ids). It takes the copy's fingerprint, which covers the
                    // original's and may be longer: a short one (the original held
                    // a few bytes when last fingerprinted) would let any new file
                    // starting with those bytes pass for the copy after a restart.
                    self.checkpoints
                        .update_identity(old_slot, copy.id, copy.fingerprint, None);
                    copy.origin = origin;
                    copy.real_path = real_path;
                    copy.gone = Some(Instant::now());
                    self.metrics
                        .copies_recovered
                        .fetch_add(1, Ordering::Relaxed);
                    self.files.insert(copy.id, copy);
                }
                Err(e) => {
                    tracing::warn!(source = %self.ctx.name, path = %path.display(), error = %e, "cannot open the copy of a truncated file; lines written just before the truncation may be missing");
                }
            }
        }
        Ok(())
    }

    /// The earliest time a held multiline event is due.
    fn next_multiline_deadline(&self) -> Option<Instant> {
        self.files
            .values()
            .filter_map(|f| f.multiline.as_ref().and_then(MultilineState::deadline))
            .min()
    }

    /// Emits the chunks still being filled. Messages still held (a CRI piece without
    /// its end, a multiline event) stay unemitted: their checkpoint lies before them,
    /// so a restart reads them again whole.
    async fn flush_all(&mut self) -> Result<(), TailError> {
        for file in self.files.values_mut() {
            let turn = Turn {
                config: &self.config,
                records: &self.records,
                block: &mut self.block,
                scratch: &mut self.scratch,
                ctx: &self.ctx,
                checkpoints: &self.checkpoints,
                metrics: &self.metrics,
                kubernetes: self.kubernetes.as_ref(),
            };
            turn.emit(file).await?;
        }
        Ok(())
    }
}

/// Whether `candidate` lies beside `original` under a rotated name: in the same
/// directory, named the original's name with something after it (`app.log.1`,
/// `0.log.20240115-103000`).
fn is_beside(original: &Path, candidate: &Path) -> bool {
    let (Some(name), Some(other)) = (original.file_name(), candidate.file_name()) else {
        return false;
    };
    original.parent() == candidate.parent()
        && other.len() > name.len()
        && other
            .as_encoded_bytes()
            .starts_with(name.as_encoded_bytes())
}

/// A file at `path` or beside it (same directory, name starting with its name:
/// `app.log.1`, `0.log.20240115-103000`) whose first bytes match `fingerprint` and
/// which holds more than `offset` bytes: where a rotated file went, or the copy
/// copytruncate made.
fn find_rotated(path: &Path, fingerprint: Fingerprint, offset: u64) -> Option<(PathBuf, File)> {
    if fingerprint.len == 0 {
        return None;
    }
    let dir = path.parent()?;
    let name = path.file_name()?.to_str()?;
    let mut best: Option<(PathBuf, File, SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let file_name = entry.file_name();
        let Some(candidate) = file_name.to_str() else {
            continue;
        };
        // The path itself too: a copy being finished when the source stopped is
        // known by its own name.
        if !candidate.starts_with(name) || candidate.ends_with(".gz") || candidate.ends_with(".tmp")
        {
            continue;
        }
        let p = entry.path();
        let Ok(handle) = File::open(&p) else {
            continue;
        };
        let Ok(meta) = handle.metadata() else {
            continue;
        };
        // Nothing left to read in a file no longer than the offset.
        if !meta.is_file() || meta.len() <= offset {
            continue;
        }
        if !fingerprint.matches(&handle).unwrap_or(false) {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        // Several copies with the same start: the newest holds the most.
        if best.as_ref().is_none_or(|(_, _, m)| modified > *m) {
            best = Some((p, handle, modified));
        }
    }
    best.map(|(p, h, _)| (p, h))
}

/// What reading one file's turn needs from the source.
struct Turn<'a> {
    config: &'a TailConfig,
    records: &'a RecordBuilder,
    block: &'a mut Vec<u8>,
    scratch: &'a mut Vec<u8>,
    ctx: &'a SourceContext,
    checkpoints: &'a Checkpoints,
    metrics: &'a TailMetrics,
    kubernetes: Option<&'a KubernetesMetadata>,
}

/// Counters of one read block, added to the shared metrics at once.
#[derive(Debug, Default)]
struct BlockCounts {
    records: u64,
    truncated: u64,
    malformed: u64,
    invalid_utf8: u64,
    excluded: u64,
}

/// Turns messages into records in the file's chunk.
struct Emitter<'a> {
    records: &'a RecordBuilder,
    scratch: &'a mut Vec<u8>,
    fields: &'a FileFields,
    tag: &'a Tag,
    route: &'a Route,
    builder: &'a mut nagare_core::ChunkBuilder,
    builder_lines: &'a mut u64,
    read_time: EventTime,
    counts: &'a mut BlockCounts,
}

impl Emitter<'_> {
    fn emit(&mut self, msg: &LogLine<'_>) {
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
        if self.route.has_filters() {
            let record = self.records.to_map(&message, self.fields);
            let mut event = Event::new(self.tag.clone(), time, record);
            if self.route.apply(&mut event) {
                self.builder.push(event.time, &event.record);
            }
        } else {
            self.scratch.clear();
            self.records
                .write_entry(time, &message, self.fields, self.scratch);
            self.builder.push_encoded(self.scratch);
        }
        *self.builder_lines += 1;
        self.counts.records += 1;
    }

    /// A joined multiline event as a message: the framing's fields from its first
    /// line.
    fn emit_joined(&mut self, joined: &multiline::Message<'_>, logtag: Option<&'static str>) {
        let msg = LogLine {
            time: Some(joined.time),
            stream: joined.stream,
            logtag: logtag.map(|_| "F"),
            message: joined.bytes,
            truncated: joined.cut,
            malformed: false,
            offset: joined.offset,
        };
        self.emit(&msg);
    }
}

/// Feeds one message to the multiline machine of its stream, or emits it.
fn route_message(
    msg: LogLine<'_>,
    ml: Option<&mut MultilineState>,
    em: &mut Emitter<'_>,
    now: Instant,
) {
    let Some(ml) = ml else {
        em.emit(&msg);
        return;
    };
    let machine = match msg.stream {
        Some(Stream::Stderr) => &mut ml.stderr,
        _ => &mut ml.stdout,
    };
    let logtag = msg.logtag;
    if msg.malformed || msg.truncated {
        // Not a line of the program's output as it wrote it: emitted on its own,
        // after what the stream held, so that order is kept.
        machine.flush(|joined| em.emit_joined(&joined, logtag));
        em.emit(&msg);
        return;
    }
    let line = multiline::Line {
        bytes: msg.message,
        stream: msg.stream,
        time: msg.time.unwrap_or(em.read_time),
        offset: msg.offset,
    };
    machine.push(line, now, |joined| em.emit_joined(&joined, logtag));
}

impl Turn<'_> {
    /// Reads one file for one turn. Returns whether it reached its current end (and
    /// so emitted what it read).
    async fn read_file(&mut self, file: &mut FollowedFile) -> Result<bool, TailError> {
        if let Some(k) = self.kubernetes {
            file.fields.refresh(k);
        }
        self.flush_due_multiline(file, Instant::now());
        let chunk_limit = self.config.chunk_limit_size.as_usize();
        let max_line_bytes = self.config.max_line_bytes.as_usize();
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
            let now = Instant::now();
            let end_offset = file.read_offset();
            let mut counts = BlockCounts::default();
            let FollowedFile {
                splitter,
                parser,
                multiline,
                fields,
                tag,
                route,
                builder,
                builder_lines,
                consumed,
                held_from,
                in_long_line,
                path,
                ..
            } = &mut *file;
            let line_cap = splitter.max_line_bytes();
            let mut lines = splitter.feed(&self.block[..n]);
            let mut full = false;
            loop {
                let start = end_offset - lines.remaining() as u64;
                let Some(line) = lines.next() else {
                    break;
                };
                let end = end_offset - lines.remaining() as u64;
                debug_assert_eq!(line.offset, start, "the splitter counts file offsets");
                lines_read += 1;
                *in_long_line = line.truncated && line.bytes.len() == line_cap;
                let parser = parser.get_or_insert_with(|| {
                    choose_parser(line.bytes, path, max_line_bytes, &self.ctx.name)
                });
                let mut em = Emitter {
                    records: self.records,
                    scratch: self.scratch,
                    fields,
                    tag,
                    route,
                    builder,
                    builder_lines,
                    read_time,
                    counts: &mut counts,
                };
                let ml = multiline.as_mut();
                match ml {
                    Some(ml) => {
                        parser.push(line, |msg| route_message(msg, Some(&mut *ml), &mut em, now))
                    }
                    None => parser.push(line, |msg| em.emit(&msg)),
                }
                *consumed = end;
                let held = parser.has_pending()
                    || multiline.as_ref().is_some_and(MultilineState::is_holding);
                if !held {
                    *held_from = None;
                } else if held_from.is_none() {
                    *held_from = Some(start);
                }
                if builder.byte_size() >= chunk_limit {
                    full = true;
                    break;
                }
            }
            self.count(&counts);
            if full {
                // Emit, then go on with the rest of this block: the splitter still
                // holds it.
                self.emit(file).await?;
                self.drain_splitter(file, read_time).await?;
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

    /// Updates the file's row in the metrics.
    fn publish(&self, file: &FollowedFile) {
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

    /// Lines left in the splitter after a chunk filled up mid-block.
    async fn drain_splitter(
        &mut self,
        file: &mut FollowedFile,
        read_time: EventTime,
    ) -> Result<(), TailError> {
        let chunk_limit = self.config.chunk_limit_size.as_usize();
        loop {
            let now = Instant::now();
            let end_offset = file.read_offset();
            let mut counts = BlockCounts::default();
            let FollowedFile {
                splitter,
                parser,
                multiline,
                fields,
                tag,
                route,
                builder,
                builder_lines,
                consumed,
                held_from,
                in_long_line,
                ..
            } = &mut *file;
            let line_cap = splitter.max_line_bytes();
            let mut lines = splitter.lines();
            let mut full = false;
            let mut any = false;
            loop {
                let start = end_offset - lines.remaining() as u64;
                let Some(line) = lines.next() else {
                    break;
                };
                any = true;
                let end = end_offset - lines.remaining() as u64;
                debug_assert_eq!(line.offset, start, "the splitter counts file offsets");
                *in_long_line = line.truncated && line.bytes.len() == line_cap;
                let Some(parser) = parser.as_mut() else {
                    break;
                };
                let mut em = Emitter {
                    records: self.records,
                    scratch: self.scratch,
                    fields,
                    tag,
                    route,
                    builder,
                    builder_lines,
                    read_time,
                    counts: &mut counts,
                };
                match multiline.as_mut() {
                    Some(ml) => {
                        parser.push(line, |msg| route_message(msg, Some(&mut *ml), &mut em, now))
                    }
                    None => parser.push(line, |msg| em.emit(&msg)),
                }
                *consumed = end;
                let held = parser.has_pending()
                    || multiline.as_ref().is_some_and(MultilineState::is_holding);
                if !held {
                    *held_from = None;
                } else if held_from.is_none() {
                    *held_from = Some(start);
                }
                if builder.byte_size() >= chunk_limit {
                    full = true;
                    break;
                }
            }
            self.count(&counts);
            if full {
                self.emit(file).await?;
            }
            if !full || !any {
                return Ok(());
            }
        }
    }

    fn count(&self, c: &BlockCounts) {
        let m = self.metrics;
        if c.records > 0 {
            m.records_emitted.fetch_add(c.records, Ordering::Relaxed);
        }
        if c.truncated > 0 {
            m.lines_truncated.fetch_add(c.truncated, Ordering::Relaxed);
        }
        if c.malformed > 0 {
            m.lines_malformed.fetch_add(c.malformed, Ordering::Relaxed);
        }
        if c.invalid_utf8 > 0 {
            m.lines_invalid_utf8
                .fetch_add(c.invalid_utf8, Ordering::Relaxed);
        }
        if c.excluded > 0 {
            m.lines_dropped_excluded
                .fetch_add(c.excluded, Ordering::Relaxed);
        }
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
        let read_time = EventTime::now();
        let cri = matches!(file.parser, Some(ContainerParser::Cri(_)));
        let FollowedFile {
            multiline,
            fields,
            tag,
            route,
            builder,
            builder_lines,
            held_from,
            consumed,
            parser,
            ..
        } = file;
        let Some(ml) = multiline.as_mut() else {
            return;
        };
        let mut em = Emitter {
            records: self.records,
            scratch: self.scratch,
            fields,
            tag,
            route,
            builder,
            builder_lines,
            read_time,
            counts: &mut counts,
        };
        let logtag = cri.then_some("F");
        ml.stdout.poll(now, |j| em.emit_joined(&j, logtag));
        ml.stderr.poll(now, |j| em.emit_joined(&j, logtag));
        let held = parser.as_ref().is_some_and(ContainerParser::has_pending) || ml.is_holding();
        if !held {
            *held_from = None;
        }
        let _ = consumed;
        self.count(&counts);
    }

    /// The file is let go: multiline events it holds are emitted (no line will
    /// follow them), then its chunk.
    async fn finish(&mut self, file: &mut FollowedFile) -> Result<(), TailError> {
        if let Some(ml) = &mut file.multiline {
            let mut counts = BlockCounts::default();
            let cri = matches!(file.parser, Some(ContainerParser::Cri(_)));
            let logtag = cri.then_some("F");
            let mut em = Emitter {
                records: self.records,
                scratch: self.scratch,
                fields: &file.fields,
                tag: &file.tag,
                route: &file.route,
                builder: &mut file.builder,
                builder_lines: &mut file.builder_lines,
                read_time: EventTime::now(),
                counts: &mut counts,
            };
            ml.stdout.flush(|j| em.emit_joined(&j, logtag));
            ml.stderr.flush(|j| em.emit_joined(&j, logtag));
            self.count(&counts);
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

    /// Emits the file's chunk being filled, with a receipt that moves its checkpoint
    /// to the file's safe offset once delivered; with nothing to emit, the
    /// checkpoint moves over what was read and skipped.
    async fn emit(&self, file: &mut FollowedFile) -> Result<(), TailError> {
        let safe = file.safe_offset();
        let closed = |error| TailError::BufferClosed {
            name: self.ctx.name.clone(),
            path: file.path.display().to_string(),
            error,
        };
        match file.builder.finish() {
            Some(chunk) => {
                self.publish(file);
                let receipt = self.checkpoints.track(file.slot, safe, file.builder_lines);
                file.builder_lines = 0;
                file.tracked = safe;
                deliver(&file.route, chunk.with_receipt(receipt), self.metrics)
                    .await
                    .map_err(closed)
            }
            None => {
                file.builder_lines = 0;
                if safe != file.tracked {
                    self.checkpoints.commit(file.slot, safe);
                    file.tracked = safe;
                }
                // Events a filter rejected wait on the route for the next delivery;
                // when every event of the file was rejected, send them now.
                file.route.flush().await.map_err(closed)
            }
        }
    }
}

/// Hands a chunk to the route's sinks, waiting for room in their buffers: while it
/// waits nothing is read (backpressure), and the metrics say so.
async fn deliver(route: &Route, chunk: Chunk, metrics: &TailMetrics) -> Result<(), BufferClosed> {
    let mut fut = pin!(route.deliver(chunk));
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
    let r = fut.await;
    metrics.paused.store(false, Ordering::Relaxed);
    r
}

/// The node's name for event ids: `NODE_NAME` (set from the downward API's
/// `spec.nodeName` in the DaemonSet: a pod's own host name changes when the pod is
/// replaced, the node's does not), else the machine's host name.
fn node_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(nagare_core::host::machine_hostname)
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
