//! The folder's fsync for the file buffer's writers: a new file's name is durable
//! only once its folder is fsynced, and one fsync covers every name made before it
//! started, so it runs on a thread of its own, overlapping the files' own fsyncs, and
//! writers asking at once share one.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Group commit of the folder's fsync, run by a thread of its own. A file's new name
/// is durable once the folder is fsynced after the name was made; one fsync covers
/// every name made before it started. A writer asks for one right after it creates
/// its file, writes and fsyncs the file meanwhile, then waits for it: the two fsyncs
/// overlap, and writers asking at the same time share one.
#[derive(Debug)]
pub(super) struct DirSync {
    runs: Arc<DirSyncRuns>,
}

#[derive(Debug, Default)]
struct DirSyncRuns {
    state: Mutex<RunState>,
    /// Wakes the idle thread: a run is wanted, or the store is gone.
    wanted: Condvar,
    /// Wakes the writers waiting for a run: one ended.
    ended: Condvar,
}

#[derive(Debug, Default)]
struct RunState {
    /// Runs started so far; the running one, if any, is number `started`.
    started: u64,
    /// The last run that succeeded (runs end in the order they start: one at a time).
    succeeded: u64,
    /// The last run that failed, and why.
    failed: u64,
    failure: Option<(io::ErrorKind, String)>,
    /// A writer waits for a run that has not started yet.
    wanted: bool,
    /// The thread waits for `wanted`.
    idle: bool,
    /// The store is gone: the thread ends.
    closing: bool,
}

impl DirSyncRuns {
    fn lock(&self) -> MutexGuard<'_, RunState> {
        // The counters are updated whole under the lock; a panic elsewhere cannot
        // leave them half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, on: &Condvar, state: MutexGuard<'a, RunState>) -> MutexGuard<'a, RunState> {
        on.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    /// The thread: fsyncs `dir` whenever a writer wants it, until the store is gone.
    fn run(&self, dir: &Path) {
        let mut state = self.lock();
        loop {
            if state.wanted {
                state.wanted = false;
                state.started += 1;
                let run = state.started;
                drop(state);
                let result = File::open(dir).and_then(|d| d.sync_all());
                state = self.lock();
                match result {
                    Ok(()) => state.succeeded = run,
                    Err(e) => {
                        state.failed = run;
                        state.failure = Some((
                            e.kind(),
                            format!("cannot fsync the folder {}: {e}", dir.display()),
                        ));
                    }
                }
                self.ended.notify_all();
            } else if state.closing {
                return;
            } else {
                state.idle = true;
                state = self.wait(&self.wanted, state);
                state.idle = false;
            }
        }
    }
}

impl DirSync {
    pub(super) fn start(dir: &Path) -> io::Result<Self> {
        let runs = Arc::new(DirSyncRuns::default());
        let (thread_runs, dir) = (runs.clone(), dir.to_path_buf());
        std::thread::Builder::new()
            .name("buffer-dir-sync".into())
            .spawn(move || thread_runs.run(&dir))?;
        Ok(Self { runs })
    }

    /// Asks for an fsync of the folder that covers every name made so far; returns
    /// the run to wait for.
    pub(super) fn request(&self) -> u64 {
        let mut state = self.runs.lock();
        // A running fsync may have started before the caller's name was made: only
        // one that starts from now on counts.
        state.wanted = true;
        if state.idle {
            self.runs.wanted.notify_one();
        }
        state.started + 1
    }

    /// Waits for run `run` (or a later one) to end.
    pub(super) fn wait(&self, run: u64) -> io::Result<()> {
        let mut state = self.runs.lock();
        loop {
            if state.succeeded >= run {
                return Ok(());
            }
            if state.failed >= run {
                let (kind, why) = state.failure.clone().unwrap_or((
                    io::ErrorKind::Other,
                    "cannot fsync the buffer folder".to_string(),
                ));
                return Err(io::Error::new(kind, why));
            }
            state = self.runs.wait(&self.runs.ended, state);
        }
    }
}

impl Drop for DirSync {
    fn drop(&mut self) {
        self.runs.lock().closing = true;
        self.runs.wanted.notify_one();
    }
}
