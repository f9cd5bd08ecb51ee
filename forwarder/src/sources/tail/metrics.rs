//! The tail source's counters, kept up to date while it runs, for an HTTP endpoint or a
//! test to read.
//!
//! Totals are atomics bumped once per read block, not per line; the per-file table is
//! updated once per read turn.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nagare_core::metrics::{ComponentMetrics, Def};
use serde::Serialize;

/// One of [`TailMetrics`]' atomics.
type Field = fn(&TailMetrics) -> &AtomicU64;

/// Live counters of one tail source. Share it with `Arc`.
#[derive(Debug, Default)]
pub struct TailMetrics {
    /// Files open now (followed, including rotated ones still being finished).
    pub open_files: AtomicU64,
    /// Files found by the globs that are waiting because `max_open_files` is reached.
    pub files_waiting: AtomicU64,
    /// Bytes read from files.
    pub bytes_read: AtomicU64,
    /// Lines (newline-terminated, or pieces of over-long lines) read.
    pub lines_read: AtomicU64,
    /// Records emitted into chunks.
    pub records_emitted: AtomicU64,
    /// Rename/create rotations seen (the path now leads to another file).
    pub rotations: AtomicU64,
    /// Files whose path disappeared (deleted while followed).
    pub deletions: AtomicU64,
    /// Truncations seen (copytruncate).
    pub truncations: AtomicU64,
    /// Copies of truncated files found and read to their end.
    pub copies_recovered: AtomicU64,
    /// Messages cut at `max_line_bytes` (one per piece emitted).
    pub lines_truncated: AtomicU64,
    /// Lines without the file's framing, kept as raw text.
    pub lines_malformed: AtomicU64,
    /// Messages that were not valid UTF-8 (kept, with replacement characters).
    pub lines_invalid_utf8: AtomicU64,
    /// Lines not shipped because their pod is annotated `nagare.io/exclude: "true"`.
    pub lines_dropped_excluded: AtomicU64,
    /// Lines in chunks a full buffer discarded (`overflow_action: drop_*`).
    pub lines_dropped_buffer_overflow: AtomicU64,
    /// Lines in chunks a sink gave up on.
    pub lines_dropped_sink_failed: AtomicU64,
    /// Times the source had to wait for room in a buffer (backpressure).
    pub backpressure_waits: AtomicU64,
    /// The source is waiting for room in a buffer right now: nothing is read.
    pub paused: AtomicBool,
    /// Nanoseconds spent waiting for room in a buffer, over pauses that ended.
    pub paused_nanos: AtomicU64,
    /// Lines read whose chunks the buffers have not confirmed yet: the checkpoints
    /// cannot pass them.
    pub pending_lines: AtomicU64,
    /// Checkpoint files written.
    pub checkpoints_written: AtomicU64,
    /// Checkpoint writes that failed.
    pub checkpoint_errors: AtomicU64,
    files: Mutex<BTreeMap<PathBuf, FileMetrics>>,
}

/// Counters of one followed file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileMetrics {
    /// The path the file was found under.
    pub path: PathBuf,
    /// Its inode.
    pub inode: u64,
    /// Offset of the next byte to read.
    pub read_offset: u64,
    /// Bytes read since it was opened.
    pub bytes_read: u64,
    /// Lines read since it was opened.
    pub lines_read: u64,
    /// Times it was truncated.
    pub truncations: u64,
    /// It was rotated away or deleted and is being finished.
    pub gone: bool,
}

/// A copy of every counter at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TailMetricsSnapshot {
    /// See [`TailMetrics::open_files`].
    pub open_files: u64,
    /// See [`TailMetrics::files_waiting`].
    pub files_waiting: u64,
    /// See [`TailMetrics::bytes_read`].
    pub bytes_read: u64,
    /// See [`TailMetrics::lines_read`].
    pub lines_read: u64,
    /// See [`TailMetrics::records_emitted`].
    pub records_emitted: u64,
    /// See [`TailMetrics::rotations`].
    pub rotations: u64,
    /// See [`TailMetrics::deletions`].
    pub deletions: u64,
    /// See [`TailMetrics::truncations`].
    pub truncations: u64,
    /// See [`TailMetrics::copies_recovered`].
    pub copies_recovered: u64,
    /// See [`TailMetrics::lines_truncated`].
    pub lines_truncated: u64,
    /// See [`TailMetrics::lines_malformed`].
    pub lines_malformed: u64,
    /// See [`TailMetrics::lines_invalid_utf8`].
    pub lines_invalid_utf8: u64,
    /// Lines not shipped, by reason: `excluded`, `buffer_overflow`, `sink_failed`.
    pub lines_dropped: BTreeMap<&'static str, u64>,
    /// See [`TailMetrics::backpressure_waits`].
    pub backpressure_waits: u64,
    /// See [`TailMetrics::paused`].
    pub paused: bool,
    /// See [`TailMetrics::checkpoints_written`].
    pub checkpoints_written: u64,
    /// See [`TailMetrics::checkpoint_errors`].
    pub checkpoint_errors: u64,
    /// Per followed file, by path.
    pub files: Vec<FileMetrics>,
}

impl TailMetrics {
    /// Fresh counters.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Replaces the row of the file found at `row.path`.
    pub fn set_file(&self, row: FileMetrics) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.insert(row.path.clone(), row);
    }

    /// Removes the row of a file no longer followed.
    pub fn remove_file(&self, path: &std::path::Path, inode: u64) {
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if files.get(path).is_some_and(|r| r.inode == inode) {
            files.remove(path);
        }
    }

    /// Files rotated away or deleted that are still being read to their end.
    pub fn files_draining(&self) -> u64 {
        let files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        files.values().filter(|f| f.gone).count() as u64
    }

    /// Serves these counters as the component's metrics, read at each scrape (they
    /// are counted here already), and shows the figures a person watches in
    /// `/api/v1/components`.
    pub fn serve(self: &Arc<Self>, metrics: &ComponentMetrics) {
        use nagare_core::metrics::catalog::tail as m;
        let atomics: [(&Def, Field); 8] = [
            (&m::FILES_OPEN, |t| &t.open_files),
            (&m::FILES_WAITING, |t| &t.files_waiting),
            (&m::READ_BYTES, |t| &t.bytes_read),
            (&m::READ_LINES, |t| &t.lines_read),
            (&m::ROTATIONS, |t| &t.rotations),
            (&m::TRUNCATIONS, |t| &t.truncations),
            (&m::CHECKPOINT_PENDING_LINES, |t| &t.pending_lines),
            (&m::CHECKPOINT_WRITES, |t| &t.checkpoints_written),
        ];
        for (def, field) in atomics {
            let t = self.clone();
            metrics.read(def, move || field(&t).load(Ordering::Relaxed) as f64);
        }
        let t = self.clone();
        metrics.read(&m::PAUSES, move || {
            t.backpressure_waits.load(Ordering::Relaxed) as f64
        });
        let t = self.clone();
        metrics.read(&m::PAUSED_SECONDS, move || {
            (t.paused_nanos.load(Ordering::Relaxed) / 1_000_000_000) as f64
        });
        let t = self.clone();
        metrics.read(&m::PAUSED, move || {
            u8::from(t.paused.load(Ordering::Relaxed)) as f64
        });
        let t = self.clone();
        metrics.read(&m::FILES_DRAINING, move || t.files_draining() as f64);
        let t = self.clone();
        metrics.show("files_open", move || {
            t.open_files.load(Ordering::Relaxed) as f64
        });
        let t = self.clone();
        metrics.show("files_paused", move || {
            u8::from(t.paused.load(Ordering::Relaxed)) as f64
        });
        let t = self.clone();
        metrics.show("rotations", move || {
            t.rotations.load(Ordering::Relaxed) as f64
        });
    }

    /// Every counter now.
    pub fn snapshot(&self) -> TailMetricsSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let files = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        TailMetricsSnapshot {
            open_files: get(&self.open_files),
            files_waiting: get(&self.files_waiting),
            bytes_read: get(&self.bytes_read),
            lines_read: get(&self.lines_read),
            records_emitted: get(&self.records_emitted),
            rotations: get(&self.rotations),
            deletions: get(&self.deletions),
            truncations: get(&self.truncations),
            copies_recovered: get(&self.copies_recovered),
            lines_truncated: get(&self.lines_truncated),
            lines_malformed: get(&self.lines_malformed),
            lines_invalid_utf8: get(&self.lines_invalid_utf8),
            lines_dropped: [
                ("excluded", get(&self.lines_dropped_excluded)),
                ("buffer_overflow", get(&self.lines_dropped_buffer_overflow)),
                ("sink_failed", get(&self.lines_dropped_sink_failed)),
            ]
            .into_iter()
            .collect(),
            backpressure_waits: get(&self.backpressure_waits),
            paused: self.paused.load(Ordering::Relaxed),
            checkpoints_written: get(&self.checkpoints_written),
            checkpoint_errors: get(&self.checkpoint_errors),
            files,
        }
    }
}
