//! The journal of committed streams as a sink's workers share it, and the recovery
//! it makes possible: the streams a run left open are finalized before the next run
//! appends anything, and their lengths say which recorded appends landed.

use std::sync::Arc;

use tonic::Status;

use super::client::WriteClient;
use super::journal::Journal;
use super::retry::stream_gone;

/// The journal of committed streams, shared by a sink's workers.
#[derive(Debug)]
pub struct Committed {
    journal: std::sync::Mutex<Journal>,
    /// Whether the streams left open by the last run were finalized.
    recovered: tokio::sync::Mutex<bool>,
}

impl Committed {
    /// Committed streams recorded in `journal`.
    pub fn new(journal: Journal) -> Arc<Committed> {
        Arc::new(Committed {
            journal: std::sync::Mutex::new(journal),
            recovered: tokio::sync::Mutex::new(false),
        })
    }

    pub(super) fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finalizes every stream the journal has open, learning which of their appends
    /// landed. At startup (once, before any append) and at shutdown.
    pub async fn finalize_open(&self, client: &WriteClient) -> Result<(), Status> {
        let open = self.journal().open_streams();
        for (sid, name) in open {
            let length = match client.finalize(&name).await {
                Ok(length) => Some(length),
                Err(status) if stream_gone(status.code(), status.message()) => {
                    tracing::warn!(stream = %name, reason = %status.message(), "a write stream recorded in the offsets journal is gone (expired, or the server lost it): which of its last appends landed is unknown, and their rows are sent again");
                    None
                }
                Err(status) => return Err(status),
            };
            self.journal()
                .finalized(sid, length)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        Ok(())
    }

    pub(super) async fn recover(&self, client: &WriteClient) -> Result<(), Status> {
        let mut done = self.recovered.lock().await;
        if !*done {
            self.finalize_open(client).await?;
            *done = true;
        }
        Ok(())
    }
}
