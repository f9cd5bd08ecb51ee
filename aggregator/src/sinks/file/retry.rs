//! What a failed append means: every error is worth trying again (a full disk gets
//! space, a folder gets its permissions fixed, a handle that broke is reopened), so
//! the batch goes again under the buffer's retry policy and, once the retries run
//! out, to the dead-letter output with the last error.

use std::io;
use std::path::Path;

use nagare_core::sink::{BatchOutcome, Outcome};

/// The outcome of appending a batch to `path`.
pub fn classify(path: &Path, result: io::Result<()>) -> BatchOutcome {
    match result {
        Ok(()) => BatchOutcome::All(Outcome::Delivered),
        Err(e) => BatchOutcome::All(Outcome::Retry {
            status: None,
            reason: format!("cannot append to {}: {e}", path.display()),
        }),
    }
}
