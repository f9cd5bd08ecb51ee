//! Quarantine: a damaged chunk file is moved to `quarantine/` in the buffer's
//! folder, a damaged stretch of a segment copied there, with a log line saying which
//! and why, so that the other chunks load and nothing is deleted unseen.

use std::fs;
use std::path::Path;

use super::{FileChunk, FileStore, Place, QUARANTINE, QUEUED, now_ms};
use crate::buffer::segment::{self, Spot};

impl FileStore {
    /// of its bytes in a segment (then acked there).
    pub fn quarantine_queued(&self, meta: &FileChunk, reason: &str) {
        match meta.place {
            Place::File => self.quarantine(&self.path(meta.seq, QUEUED), reason),
            Place::Segment(spot) => {
                let bytes = self.ledger.read(spot, meta.len).unwrap_or_default();
                self.quarantine_bytes(spot, &bytes, reason);
                if let Err(e) = self.ledger.release(spot) {
                    tracing::warn!(segment = %self.ledger.path(spot.segment).display(), error = %e, "cannot ack a damaged chunk in its segment; it is reported again after a restart");
                }
            }
        }
    }

    /// Writes `bytes`, found at `spot`, to quarantine, saying why.
    pub(super) fn quarantine_bytes(&self, spot: Spot, bytes: &[u8], reason: &str) {
        let folder = self.dir.join(QUARANTINE);
        let segment = self.ledger.path(spot.segment);
        let to = folder.join(format!(
            "{:020}.{}.at-{}.{}",
            spot.segment,
            segment::SEGMENT,
            spot.at,
            now_ms()
        ));
        match fs::create_dir_all(&folder).and_then(|()| fs::write(&to, bytes)) {
            Ok(()) => tracing::warn!(
                segment = %segment.display(),
                at_byte = spot.at,
                bytes = bytes.len(),
                copied_to = %to.display(),
                %reason,
                "a stretch of a buffer segment is damaged; copied it to quarantine, the other chunks load"
            ),
            Err(e) => tracing::error!(
                segment = %segment.display(),
                at_byte = spot.at,
                bytes = bytes.len(),
                %reason,
                error = %e,
                "a stretch of a buffer segment is damaged and cannot be copied to quarantine; it is skipped"
            ),
        }
    }

    pub(super) fn quarantine(&self, path: &Path, reason: &str) {
        let folder = self.dir.join(QUARANTINE);
        // The time in the name keeps an older quarantined file of the same number.
        let name = path
            .file_name()
            .map(|n| format!("{}.{}", n.to_string_lossy(), now_ms()))
            .unwrap_or_default();
        let to = folder.join(name);
        match fs::create_dir_all(&folder).and_then(|()| fs::rename(path, &to)) {
            Ok(()) => tracing::warn!(
                file = %path.display(),
                moved_to = %to.display(),
                %reason,
                "buffer chunk file is damaged; moved it to quarantine, the other chunks load"
            ),
            Err(e) => tracing::error!(
                file = %path.display(),
                %reason,
                error = %e,
                "buffer chunk file is damaged and cannot be moved to quarantine; it is skipped (move or delete it by hand)"
            ),
        }
    }
}
