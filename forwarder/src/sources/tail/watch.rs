//! Wake-ups from the kernel (inotify, through `notify`): a file created, renamed or
//! removed in a watched directory triggers a glob scan at once, and a write to a
//! followed file wakes the reader, instead of both waiting for their intervals.
//! Polling stays underneath: if the watcher cannot start (no inotify, out of
//! watches) the source only polls, and says so once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;

/// What the kernel told since the last look.
#[derive(Debug, Default)]
pub struct Signals {
    /// Something happened: the source should look now.
    pub wake: Notify,
    /// A file appeared, moved or disappeared: scan the globs.
    pub rescan: AtomicBool,
}

/// The directories being watched.
pub struct DirWatcher {
    watcher: Option<RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    signals: Arc<Signals>,
    source: String,
}

impl std::fmt::Debug for DirWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirWatcher")
            .field("active", &self.watcher.is_some())
            .field("watched", &self.watched.len())
            .finish()
    }
}

impl DirWatcher {
    /// A watcher; with `enabled` false (or when the kernel refuses) it does nothing and
    /// the source polls.
    pub fn new(enabled: bool, source: &str) -> Self {
        let signals = Arc::new(Signals::default());
        let watcher = if enabled {
            let s = signals.clone();
            match notify::recommended_watcher(move |event: notify::Result<Event>| {
                if let Ok(event) = event {
                    if !matches!(
                        event.kind,
                        EventKind::Modify(notify::event::ModifyKind::Data(_))
                            | EventKind::Access(_)
                    ) {
                        s.rescan.store(true, Ordering::Relaxed);
                    }
                    if !matches!(event.kind, EventKind::Access(_)) {
                        s.wake.notify_one();
                    }
                }
            }) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(source = %source, error = %e, "cannot watch directories for changes; new files and data are found by polling only");
                    None
                }
            }
        } else {
            None
        };
        Self {
            watcher,
            watched: BTreeSet::new(),
            signals,
            source: source.to_string(),
        }
    }

    /// The signals the watcher raises.
    pub fn signals(&self) -> Arc<Signals> {
        self.signals.clone()
    }

    /// Watches exactly `dirs` (adding new ones, dropping those no longer needed).
    pub fn set(&mut self, dirs: BTreeSet<PathBuf>) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        for old in self.watched.difference(&dirs) {
            let _ = watcher.unwatch(old);
        }
        let mut failed = false;
        let mut now = BTreeSet::new();
        for dir in dirs {
            if self.watched.contains(&dir) {
                now.insert(dir);
                continue;
            }
            match watcher.watch(Path::new(&dir), RecursiveMode::NonRecursive) {
                Ok(()) => {
                    now.insert(dir);
                }
                Err(e) => {
                    if !failed {
                        tracing::debug!(source = %self.source, dir = %dir.display(), error = %e, "cannot watch a directory; it is polled");
                    }
                    failed = true;
                }
            }
        }
        self.watched = now;
    }
}

/// The directory a glob's matches live in, as far as it has no wildcard: the
/// watcher learns of new files there.
pub fn glob_dir(pattern: &str) -> Option<PathBuf> {
    let cut = pattern.find(['*', '?', '[', '{']).unwrap_or(pattern.len());
    let fixed = &pattern[..cut];
    let dir = if cut == pattern.len() {
        Path::new(fixed).parent()?
    } else {
        match fixed.rfind('/') {
            Some(i) => Path::new(&fixed[..i.max(1)]),
            None => Path::new("."),
        }
    };
    Some(dir.to_path_buf())
}
