//! Writes to a failing disk (a full one, a failed fdatasync) are tried again with a
//! backoff until they work, or the buffer closes; meanwhile their pushes wait, so
//! nothing of them is acknowledged. The log says so at most every 10 s, and once when
//! writes work again.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::BufferClosed;
use super::state::Shared;
use super::turn::Turn;
use crate::buffer::file::FileStore;
use crate::retry::Backoff;

impl Shared {
    /// Logs a failed write at most every 10 s.
    fn log_io(&self, what: &str, error: &io::Error, retry_in: Duration, attempts: u32) {
        let mut st = self.lock();
        if st
            .last_io_log
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            st.last_io_log = Some(Instant::now());
            st.io_failing = true;
            drop(st);
            tracing::error!(
                buffer = self.name,
                dir = %self.dir_name(),
                %error,
                ?retry_in,
                attempts,
                "cannot {what} in the file buffer: it is not committed, so it is not acknowledged to its source; trying again, and its producers wait meanwhile (check the disk: free space, errors in the kernel log, permissions)"
            );
        }
    }

    /// Logs, once after a logged failure, that a write worked again.
    fn log_io_recovered(&self, what: &str, failures: u32) {
        let mut st = self.lock();
        if std::mem::take(&mut st.io_failing) {
            drop(st);
            tracing::warn!(
                buffer = self.name,
                dir = %self.dir_name(),
                failures,
                "the file buffer writes again: could {what} after {failures} failed attempts"
            );
        }
    }

    fn dir_name(&self) -> String {
        self.store
            .as_ref()
            .map(|s| s.dir().display().to_string())
            .unwrap_or_default()
    }

    /// Runs `op` on the file store on the blocking pool until it succeeds, waiting
    /// between attempts (out of the queue's order meanwhile: `turn`, the place of
    /// what it writes, goes to the back); gives up only once the buffer is closed.
    pub(super) async fn io<T, F>(
        &self,
        what: &'static str,
        turn: &mut Turn,
        op: F,
    ) -> Result<T, BufferClosed>
    where
        T: Send + 'static,
        F: Fn(&FileStore) -> io::Result<T> + Send + Sync + 'static,
    {
        let Some(store) = self.store.clone() else {
            return Err(BufferClosed(self.name));
        };
        let op = Arc::new(op);
        let backoff = Backoff::default();
        let mut failures = 0;
        loop {
            let (store, run) = (store.clone(), op.clone());
            let result = tokio::task::spawn_blocking(move || run(&store))
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            match result {
                Ok(v) => {
                    if failures > 0 {
                        self.log_io_recovered(what, failures);
                    }
                    return Ok(v);
                }
                Err(e) => {
                    if self.lock().closed {
                        tracing::error!(buffer = self.name, error = %e, "cannot {what} in the file buffer, and it is closing; giving up: it was not committed, so its source sends it again after the restart");
                        return Err(BufferClosed(self.name));
                    }
                    let delay = backoff.delay(failures);
                    failures += 1;
                    self.log_io(what, &e, delay, failures);
                    turn.leave();
                    tokio::time::sleep(delay).await;
                    turn.rejoin();
                }
            }
        }
    }
}
