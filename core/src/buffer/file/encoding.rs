//! A chunk's stored form: each part of it (the events that came from one chunk)
//! compressed as configured and framed by [`format`], and the parts unpacked again.

use std::io;

use bytes::Bytes;

use super::FileStore;
use crate::buffer::format::{self, StoredPart};
use crate::chunk::Chunk;
use crate::compression::{self, Compression};

impl FileStore {
    /// The stored form of `chunk` as one segment (compressed as configured): CPU
    /// only, no I/O.
    pub fn encode_segment(&self, chunk: &Chunk) -> io::Result<Vec<u8>> {
        let raw = chunk.entries();
        let mut out = Vec::new();
        for (i, seg) in chunk.origins().iter().enumerate() {
            // A chunk that was merged from others is stored as the same runs, so each
            // keeps its id; the byte boundaries come from walking its entries.
            let part = if chunk.origins().len() == 1 {
                raw.clone()
            } else {
                origin_bytes(chunk, i)
            };
            let stored = compression::compress(self.compression, self.level, &part)?;
            out.extend(format::encode_part(seg.id, seg.count, part.len(), &stored));
        }
        Ok(out)
    }
}

/// The encoded entries of origin `i` of a merged chunk.
fn origin_bytes(chunk: &Chunk, i: usize) -> Bytes {
    let origins = chunk.origins();
    let skip: u32 = origins[..i].iter().map(|s| s.count).sum();
    let take = origins[i].count;
    let bytes = chunk.entries();
    let mut reader = crate::msgpack::Reader::new(bytes);
    let mut start = bytes.len();
    let mut end = bytes.len();
    let mut n = 0u32;
    loop {
        if n == skip {
            start = reader.position();
        }
        if n == skip + take {
            end = reader.position();
            break;
        }
        if reader.is_empty() || reader.skip_value().is_err() {
            break;
        }
        n += 1;
    }
    bytes.slice(start.min(end)..end)
}

/// The encoded entries of all parts, unpacked and checked against their sizes.
pub(super) fn unpack(
    file: &[u8],
    compression: Compression,
    parts: &[StoredPart],
) -> Result<Bytes, String> {
    let total: usize = parts.iter().map(|s| s.raw_len as usize).sum();
    let mut out = Vec::with_capacity(total);
    for s in parts {
        let stored = &file[s.offset..s.offset + s.stored_len as usize];
        let before = out.len();
        // Straight after what is unpacked already: `out` has exactly the room the
        // headers promise, and the check below finds a frame that takes more or less
        // than its own share.
        compression::decompress_into(compression, stored, &mut out)
            .map_err(|e| format!("cannot unpack an append: {e}"))?;
        if out.len() - before != s.raw_len as usize {
            return Err(format!(
                "an append unpacks to {} bytes, its header says {}",
                out.len() - before,
                s.raw_len
            ));
        }
    }
    Ok(Bytes::from(out))
}
