//! The journal of committed streams as a sink's workers share it, and the recovery
//! it makes possible: the streams a run left open are finalized before the next run
//! appends anything, and their lengths say which recorded appends landed. Every
//! finalize of a stream the journal knows goes through [`Committed::finalize`], one
//! at a time, so a stream is asked once and its length recorded before any worker
//! acts on it.

use std::sync::Arc;

use tonic::Status;

use super::client::WriteClient;
use super::journal::{Journal, StreamState};
use super::retry::stream_gone;

/// The journal of committed streams, shared by a sink's workers.
#[derive(Debug)]
pub struct Committed {
    journal: std::sync::Mutex<Journal>,
    /// Whether the streams left open by the last run were finalized.
    recovered: tokio::sync::Mutex<bool>,
    /// Held while a stream is finalized and its length recorded.
    finalizing: tokio::sync::Mutex<()>,
}

impl Committed {
    /// Committed streams recorded in `journal`.
    pub fn new(journal: Journal) -> Arc<Committed> {
        Arc::new(Committed {
            journal: std::sync::Mutex::new(journal),
            recovered: tokio::sync::Mutex::new(false),
            finalizing: tokio::sync::Mutex::new(()),
        })
    }

    pub(super) fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Finalizes stream `sid` of the journal and records its length, which it
    /// returns (none: the stream is gone, and its appends count as not landed). A
    /// stream the journal knows finalized is not asked again: its recorded length is
    /// the answer (none once forgotten, when its rows are known written or not by
    /// then). BigQuery does not document what a second finalize answers; the
    /// journal's first record is what counts.
    pub async fn finalize(&self, client: &WriteClient, sid: u32) -> Result<Option<i64>, Status> {
        let _one = self.finalizing.lock().await;
        let name = match self.journal().stream_state(sid) {
            StreamState::Open(name) => name,
            StreamState::Finalized(length) => return Ok(length),
            StreamState::Unknown => return Ok(None),
        };
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
        Ok(length)
    }

    /// Finalizes every stream the journal has open, learning which of their appends
    /// landed. At startup (once, before any append) and at shutdown.
    pub async fn finalize_open(&self, client: &WriteClient) -> Result<(), Status> {
        let open = self.journal().open_streams();
        for (sid, _) in open {
            self.finalize(client, sid).await?;
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
