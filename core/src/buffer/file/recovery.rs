//! Recovery at start: every chunk, in its own file or in a segment, read back in
//! sequence order; intact ones queued again, a staged one sealed, an append a crash
//! cut short cut off, an empty file removed, damage quarantined.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{FileChunk, FileStore, Place, QUEUED, STAGED};
use crate::buffer::format::{self, FileHeader, Parsed, StoredPart};
use crate::buffer::segment;
use crate::event::Tag;

/// What opening a buffer folder found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Chunks to queue, in order.
    pub chunks: Vec<FileChunk>,
    /// The next free sequence number.
    pub next_seq: u64,
    /// Files moved to quarantine.
    pub quarantined: u64,
}

/// What became of one file at recovery.
enum Outcome {
    Queued(FileChunk),
    Quarantined,
    Removed,
}

impl FileStore {
    /// ones), cuts appends a crash interrupted, quarantines damaged files.
    pub fn recover(&self) -> io::Result<Recovered> {
        let mut found: Vec<(u64, bool, PathBuf)> = Vec::new();
        let (mut segments, mut acks) = (Vec::new(), Vec::new());
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let parsed = name.split_once('.').and_then(|(seq, state)| {
                let seq: u64 = seq.parse().ok()?;
                match state {
                    STAGED => Some((seq, false)),
                    QUEUED => Some((seq, true)),
                    _ => None,
                }
            });
            match (parsed, segment::parse_name(&name)) {
                (Some((seq, queued)), _) => found.push((seq, queued, path)),
                (None, Some((number, true))) => segments.push(number),
                (None, Some((number, false))) => acks.push(number),
                (None, None) => {
                    tracing::debug!(file = %path.display(), "not a buffer chunk file; left alone")
                }
            }
        }
        found.sort_by_key(|(seq, queued, _)| (*seq, !*queued));
        let mut out = Recovered::default();
        let mut last_seq = None;
        for (seq, queued, path) in found {
            out.next_seq = out.next_seq.max(seq + 1);
            if last_seq == Some(seq) {
                // Both names for one sequence number: the staged one is a leftover
                // of a rename; the queued one wins.
                self.quarantine(&path, "a second file for the same chunk number");
                out.quarantined += 1;
                continue;
            }
            last_seq = Some(seq);
            match self.recover_one(seq, queued, &path)? {
                Outcome::Queued(chunk) => out.chunks.push(chunk),
                Outcome::Quarantined => out.quarantined += 1,
                Outcome::Removed => {}
            }
        }
        segments.sort_unstable();
        for number in segments {
            self.recover_segment(number, &mut out)?;
        }
        for number in acks {
            self.ledger.remove_orphan_acks(number)?;
        }
        out.chunks.sort_by_key(|c| c.seq);
        Ok(out)
    }

    /// Queues the chunks of segment `number` not acked yet and quarantines what is
    /// damaged in it.
    fn recover_segment(&self, number: u64, out: &mut Recovered) -> io::Result<()> {
        let found = self.ledger.recover(number)?;
        let born = file_time(&self.ledger.path(number));
        out.next_seq = out.next_seq.max(found.max_seq.map_or(0, |s| s + 1));
        for damage in &found.damage {
            self.quarantine_bytes(damage.spot, &damage.bytes, &damage.reason);
            out.quarantined += 1;
        }
        for chunk in found.chunks {
            let Parsed::Intact { header, parts, .. } = chunk.parsed else {
                continue;
            };
            out.chunks.push(FileChunk {
                seq: header.seq,
                id: header.id,
                tag: Tag::from(header.tag),
                count: parts.iter().map(|s| s.origin.count).sum(),
                raw_bytes: parts.iter().map(|s| u64::from(s.raw_len)).sum(),
                parts: parts.len() as u32,
                len: chunk.len,
                place: Place::Segment(chunk.spot),
                born,
            });
        }
        Ok(())
    }

    fn recover_one(&self, seq: u64, queued: bool, path: &Path) -> io::Result<Outcome> {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let born = file_time(path);
        let meta = |header: &FileHeader, parts: &[StoredPart], len: usize| FileChunk {
            seq,
            id: header.id,
            tag: Tag::from(header.tag.clone()),
            count: parts.iter().map(|s| s.origin.count).sum(),
            raw_bytes: parts.iter().map(|s| u64::from(s.raw_len)).sum(),
            parts: parts.len() as u32,
            len: len as u64,
            place: Place::File,
            born,
        };
        if bytes.is_empty() {
            // Created, then the process or the machine stopped before a byte of it
            // was on disk: nothing in it was acknowledged.
            tracing::warn!(
                file = %path.display(),
                "an empty buffer chunk file (a crash interrupted its first write; nothing in it was acknowledged); removed it"
            );
            fs::remove_file(path)?;
            return Ok(Outcome::Removed);
        }
        match format::parse(&bytes) {
            Parsed::Damaged { reason } => {
                self.quarantine(path, &reason);
                Ok(Outcome::Quarantined)
            }
            Parsed::Intact { header, .. } | Parsed::Torn { header, .. } if header.seq != seq => {
                self.quarantine(
                    path,
                    &format!(
                        "its header says chunk number {}, its name {seq}",
                        header.seq
                    ),
                );
                Ok(Outcome::Quarantined)
            }
            Parsed::Intact {
                header,
                parts,
                sealed: true,
            } => {
                if !queued {
                    fs::rename(path, self.path(seq, QUEUED))?;
                }
                Ok(Outcome::Queued(meta(&header, &parts, bytes.len())))
            }
            Parsed::Intact { .. } | Parsed::Torn { .. } if queued => {
                self.quarantine(
                    path,
                    "the queued chunk is cut short (it has no trailer): damaged on disk, or its write was cut by a crash before it was acknowledged",
                );
                Ok(Outcome::Quarantined)
            }
            Parsed::Intact {
                header,
                parts,
                sealed: false,
            } => self.seal_recovered(path, meta(&header, &parts, bytes.len())),
            Parsed::Torn {
                header,
                parts,
                valid_len,
                reason,
            } => {
                tracing::warn!(
                    file = %path.display(),
                    cut_bytes = bytes.len() - valid_len,
                    kept_appends = parts.len(),
                    %reason,
                    "a crash interrupted an append to this chunk; that append was never acknowledged, so it is cut off and the rest is kept"
                );
                OpenOptions::new()
                    .write(true)
                    .open(path)?
                    .set_len(valid_len as u64)?;
                self.seal_recovered(path, meta(&header, &parts, valid_len))
            }
        }
    }

    fn seal_recovered(&self, path: &Path, mut chunk: FileChunk) -> io::Result<Outcome> {
        if chunk.parts == 0 {
            // Created, then the process stopped before anything was appended.
            fs::remove_file(path)?;
            return Ok(Outcome::Removed);
        }
        chunk.len = self.seal(&chunk)?;
        Ok(Outcome::Queued(chunk))
    }
}

/// When the file at `path` was last written: the age a recovered chunk counts
/// from (for a chunk in a segment, the segment's last append, so its age may be
/// told short, never long).
fn file_time(path: &Path) -> std::time::SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| std::time::SystemTime::now())
}
