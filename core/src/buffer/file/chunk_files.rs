//! Chunk files: a staged chunk's own file, created, appended to and sealed; a chunk
//! queued whole, appended to a segment; a queued chunk read back and removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::encoding::unpack;
use super::{FileChunk, FileStore, Place, QUEUED, ReadFailure, STAGED, failed, now_ms};
use crate::buffer::format::{self, FileHeader, Parsed};
use crate::chunk::{Chunk, ChunkId};
use crate::event::Tag;

impl FileStore {
    pub(super) fn sync(&self, file: &File, path: &Path) -> io::Result<()> {
        if !self.fsync {
            return Ok(());
        }
        file.sync_data().map_err(|e| failed("fdatasync", path, e))
    }

    /// Creates (or empties) the file at `path` for writing and asks for the fsync of
    /// the folder that makes its name durable; [`FileStore::finish`] waits for it.
    fn create_file(&self, path: &Path) -> io::Result<(File, Option<u64>)> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| failed("create", path, e))?;
        Ok((file, self.dir_sync.as_ref().map(|d| d.request())))
    }

    /// Fsyncs `file` (at `path`), then waits for the fsync of the folder asked for
    /// when it was created (`dir_run`), which ran meanwhile.
    fn finish(&self, file: &File, path: &Path, dir_run: Option<u64>) -> io::Result<()> {
        self.sync(file, path)?;
        match (&self.dir_sync, dir_run) {
            (Some(d), Some(run)) => d.wait(run),
            _ => Ok(()),
        }
    }

    /// Creates the staged file of a new chunk; returns its length.
    pub fn create(&self, seq: u64, id: ChunkId, tag: &Tag) -> io::Result<u64> {
        let header = format::encode_header(&FileHeader {
            id,
            seq,
            created_ms: now_ms(),
            compression: self.compression,
            tag: tag.to_string(),
        });
        // The new name must be durable too, or a power loss could take the file.
        let path = self.path(seq, STAGED);
        let (mut file, dir_run) = self.create_file(&path)?;
        file.write_all(&header)
            .map_err(|e| failed("write", &path, e))?;
        self.finish(&file, &path, dir_run)?;
        Ok(header.len() as u64)
    }

    /// Writes a whole chunk at once, queued: header, its one segment `segment` and
    /// trailer appended in one write to the open segment file, and (with `fsync:
    /// per_chunk`) an fdatasync shared with the writers appending at the same moment.
    /// Returns its length and place.
    ///
    /// A crash before the fdatasync is done can leave it cut short; the push had not
    /// returned, so nothing in it was acknowledged. Recovery quarantines it, as it
    /// does any damaged stretch of a segment (it cannot tell a cut write from later
    /// damage).
    pub fn write_sealed(&self, chunk: &FileChunk, segment: &[u8]) -> io::Result<(u64, Place)> {
        let header = format::encode_header(&FileHeader {
            id: chunk.id,
            seq: chunk.seq,
            created_ms: now_ms(),
            compression: self.compression,
            tag: chunk.tag.to_string(),
        });
        let trailer = format::encode_trailer(chunk.parts, chunk.count, chunk.raw_bytes);
        let mut parts = [
            IoSlice::new(&header),
            IoSlice::new(segment),
            IoSlice::new(&trailer),
        ];
        let spot = self.ledger.append(&mut parts)?;
        let len = (header.len() + segment.len() + trailer.len()) as u64;
        Ok((len, Place::Segment(spot)))
    }

    /// Writes `bytes` at `at` in the staged file of `seq` (cutting anything after
    /// `at` first, so a retry after a failed write starts clean) and fsyncs; returns
    /// the new length.
    pub fn append(&self, seq: u64, at: u64, bytes: &[u8]) -> io::Result<u64> {
        let path = self.path(seq, STAGED);
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| failed("open", &path, e))?;
        if file.metadata().map_err(|e| failed("stat", &path, e))?.len() != at {
            file.set_len(at).map_err(|e| failed("cut back", &path, e))?;
        }
        file.write_all_at(bytes, at)
            .map_err(|e| failed("write", &path, e))?;
        self.sync(&file, &path)?;
        Ok(at + bytes.len() as u64)
    }

    /// Seals the staged chunk `chunk` (whose file is `chunk.len` bytes long): writes
    /// the trailer, fsyncs, renames it queued. Returns the new length.
    /// Sealing again a chunk that is sealed already does nothing, so a failed seal
    /// can simply be tried again.
    pub fn seal(&self, chunk: &FileChunk) -> io::Result<u64> {
        let (staged, queued) = (self.path(chunk.seq, STAGED), self.path(chunk.seq, QUEUED));
        let len = chunk.len + format::TRAILER as u64;
        if !staged.exists() && queued.exists() {
            return Ok(len);
        }
        let trailer = format::encode_trailer(chunk.parts, chunk.count, chunk.raw_bytes);
        self.append(chunk.seq, chunk.len, &trailer)?;
        fs::rename(&staged, &queued).map_err(|e| {
            let to = queued.display();
            failed(&format!("rename to {to}"), &staged, e)
        })?;
        Ok(len)
    }

    /// The bytes of the queued chunk `meta`.
    fn bytes(&self, meta: &FileChunk) -> io::Result<Vec<u8>> {
        match meta.place {
            Place::File => fs::read(self.path(meta.seq, QUEUED)),
            Place::Segment(spot) => self.ledger.read(spot, meta.len),
        }
    }

    /// Reads the queued chunk `meta` back into memory, checking every checksum.
    pub fn read(&self, meta: &FileChunk) -> Result<Chunk, ReadFailure> {
        let bytes = self.bytes(meta).map_err(ReadFailure::Io)?;
        let (header, parts) = match format::parse(&bytes) {
            Parsed::Intact {
                header,
                parts,
                sealed: true,
            } if header.seq == meta.seq => (header, parts),
            Parsed::Intact {
                header,
                sealed: true,
                ..
            } => {
                return Err(ReadFailure::Damaged(format!(
                    "chunk number {} was expected, chunk number {} was found",
                    meta.seq, header.seq
                )));
            }
            Parsed::Intact { sealed: false, .. } => {
                return Err(ReadFailure::Damaged(
                    "the queued chunk has no trailer".to_string(),
                ));
            }
            Parsed::Torn { reason, .. } | Parsed::Damaged { reason } => {
                return Err(ReadFailure::Damaged(reason));
            }
        };
        let entries = unpack(&bytes, header.compression, &parts).map_err(ReadFailure::Damaged)?;
        let count = parts.iter().map(|s| s.origin.count).sum();
        Ok(Chunk::new(header.id, Tag::from(header.tag), entries, count)
            .with_origins(parts.iter().map(|s| s.origin).collect()))
    }

    /// Removes the queued chunk `meta` (its sink confirmed it, or it was dropped):
    /// deletes its file, or acks it in its segment.
    pub fn remove(&self, meta: &FileChunk) -> io::Result<()> {
        match meta.place {
            Place::File => {
                let path = self.path(meta.seq, QUEUED);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        Err(failed("delete", &path, e))
                    }
                    _ => Ok(()),
                }
            }
            Place::Segment(spot) => self.ledger.release(spot),
        }
    }
}
