//! The set of followed files: which files the globs find, which file a
//! checkpoint belongs to, and what happens when a file is rotated, deleted or
//! truncated (copytruncate), or was rotated while the source was stopped.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use nagare_core::Tag;
use nagare_parsers::container::{ContainerFormat, ContainerParser};

use super::checkpoint::{Loaded, SlotId, Stored};
use super::config::TailFormat;
use super::discover::tag_for;
use super::file::{FileId, Fingerprint, FollowedFile, MultilineState, Start};
use super::record::FileFields;
use super::source::{TailSourceError, Tailer};
use super::watch::glob_dir;

impl Tailer {
    /// Expands the globs: follows new files and marks those no longer found.
    pub(super) fn refresh(&mut self, at_start: bool) {
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
        tracing::info!(source = %self.ctx.name, path = %path.display(), offset = file.read_offset(), resumed = resumed.is_some(), tag = %file.lane.tag(), "following file");
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
        let lane = self.ctx.router.lane(&tag);
        let mut fields = FileFields::new(path, self.config.kubernetes_metadata);
        if let Some(k) = &self.kubernetes {
            fields.refresh(k);
        }
        let max = self.config.max_line_bytes.as_usize();
        let mut file = FollowedFile::open(path, handle, start, slot, lane, fields, max)?;
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
    pub(super) async fn recover_rotated(&mut self) -> Result<(), TailSourceError> {
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
                Ok(file) => {
                    tracing::info!(source = %self.ctx.name, path = %path.display(), was = %entry.path.display(), offset = entry.offset, "found a rotated file with undelivered lines; reading it to its end");
                    // The entry keeps the path it had, beside which this file is
                    // found again if it is renamed once more before it is finished
                    // (logrotate's `app.log.1` becoming `app.log.2`), and its origin:
                    // a copy's lines keep the ids they had in the original.
                    self.follow_to_end(file, slot, entry.origin, entry.path.clone());
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

    /// Follows `file`, a rotated file or a copy found beside the path it had, to
    /// its end: its checkpoint entry `slot` takes its identity and keeps the path
    /// the file had (`real_path`, beside which it is looked for again) and the
    /// identity its lines' ids are made from (`origin`).
    fn follow_to_end(
        &mut self,
        mut file: FollowedFile,
        slot: SlotId,
        origin: FileId,
        real_path: PathBuf,
    ) {
        self.checkpoints
            .update_identity(slot, file.id, file.fingerprint, None);
        file.origin = origin;
        file.real_path = real_path;
        file.gone = Some(Instant::now());
        self.metrics
            .copies_recovered
            .fetch_add(1, Ordering::Relaxed);
        self.files.insert(file.id, file);
    }

    /// The file `id` no longer holds what was read (copytruncate): what was read is
    /// delivered, the copy (if one is beside it) is read from where delivery stood,
    /// and the file is read again from its start.
    pub(super) async fn on_truncated(&mut self, id: FileId) -> Result<(), TailSourceError> {
        let (turn, files) = self.turn();
        let Some(file) = files.get_mut(&id) else {
            return Ok(());
        };
        turn.metrics.truncations.fetch_add(1, Ordering::Relaxed);
        file.truncations += 1;
        turn.emit(file).await?;
        let Some(file) = self.files.get_mut(&id) else {
            return Ok(());
        };
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
        let (tag, real_path) = (file.lane.tag().clone(), file.real_path.clone());
        // A copy the globs matched is followed already, from no later than what the
        // original delivered when it was found: it is read to its end as it is.
        let copy = copy.filter(|(_, h)| {
            h.metadata()
                .is_ok_and(|m| !self.files.contains_key(&FileId::of(&m)))
        });
        if let Some((path, handle)) = copy {
            match self.open_followed(&path, handle, Start::At(safe), old_slot, tag) {
                Ok(copy) => {
                    // The entry keeps the original's path (the copy is looked for
                    // beside it after a restart) and origin (the copy's lines keep
                    // their ids). It takes the copy's fingerprint, which covers the
                    // original's and may be longer: a short one (the original held
                    // a few bytes when last fingerprinted) would let any new file
                    // starting with those bytes pass for the copy after a restart.
                    self.follow_to_end(copy, old_slot, origin, real_path);
                }
                Err(e) => {
                    tracing::warn!(source = %self.ctx.name, path = %path.display(), error = %e, "cannot open the copy of a truncated file; lines written just before the truncation may be missing");
                }
            }
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
