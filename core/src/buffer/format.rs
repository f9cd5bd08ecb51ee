//! The file buffer's chunk file, byte for byte. Pure: bytes in, bytes out.
//!
//! A chunk file is a header, one part per append, and, once the chunk is queued,
//! a trailer. All integers are little-endian; every part carries a CRC-32 so that a
//! torn write or a flipped bit is found before anything is trusted.
//!
//! ```text
//! header   "NGRBUF01" | version u16 = 1 | compression u8 (0 none, 1 zstd) | 0 u8
//!          | tag length u16 | 0 u16 | chunk id [16] | sequence u64
//!          | created (unix ms) u64 | crc32 of all of the above and the tag u32 | tag
//! part  "SEG1" | chunk id [16] | events u32 | encoded bytes u32 | stored bytes u32
//!          | crc32 of the stored bytes u32 | crc32 of the 36 bytes before u32
//!          | stored bytes (one zstd frame, or the encoded entries as they are)
//! trailer  "END1" | parts u32 | events u32 | encoded bytes u64
//!          | crc32 of the 20 bytes before u32
//! ```
//!
//! The part's chunk id is the id of the chunk that was appended (a chunk from a
//! forward client keeps its client's id), so ids derived from it stay the same when
//! that client sends the chunk again. The trailer's totals must match the parts.
//!
//! The compression byte names one of [`Compression`]'s values; nagare writes 0 or 1
//! (`buffer.compress` offers `none` and `zstd`), and reads 2 as gzip.

use crate::chunk::{ChunkId, Origin};
use crate::compression::Compression;

/// The first bytes of every chunk file.
pub const MAGIC: &[u8; 8] = b"NGRBUF01";
/// The format version written.
pub const VERSION: u16 = 1;
const HEADER_FIXED: usize = 8 + 2 + 1 + 1 + 2 + 2 + 16 + 8 + 8 + 4;
const PART_MAGIC: &[u8; 4] = b"SEG1";
/// Bytes of a part before its stored bytes.
pub const PART_HEADER: usize = 4 + 16 + 4 + 4 + 4 + 4 + 4;
const TRAILER_MAGIC: &[u8; 4] = b"END1";
/// Bytes of the trailer.
pub const TRAILER: usize = 4 + 4 + 4 + 8 + 4;

/// What a chunk file's header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHeader {
    /// The chunk's id (the id it is sent with).
    pub id: ChunkId,
    /// Its place in the buffer's order.
    pub seq: u64,
    /// When it was created, in Unix milliseconds.
    pub created_ms: u64,
    /// How its parts are stored.
    pub compression: Compression,
    /// The tag of every event in it.
    pub tag: String,
}

/// One part found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPart {
    /// Where it came from and how many events it holds.
    pub origin: Origin,
    /// Bytes of encoded entries once unpacked.
    pub raw_len: u32,
    /// Offset of its stored bytes in the file.
    pub offset: usize,
    /// Length of its stored bytes.
    pub stored_len: u32,
}

/// What reading a chunk file found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Every part is intact.
    Intact {
        /// The header.
        header: FileHeader,
        /// The parts, in order.
        parts: Vec<StoredPart>,
        /// Whether the trailer is there (the chunk was queued).
        sealed: bool,
    },
    /// The parts up to `valid_len` are intact; what follows is an append that was
    /// cut short (a crash in the middle of a write): a short header, a short payload,
    /// or zeros.
    Torn {
        /// The header.
        header: FileHeader,
        /// The intact parts.
        parts: Vec<StoredPart>,
        /// Bytes of the file that are intact.
        valid_len: usize,
        /// What was found after them.
        reason: String,
    },
    /// Something is wrong that a crash cannot explain: the file cannot be trusted.
    Damaged {
        /// What is wrong, and where.
        reason: String,
    },
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn id_at(b: &[u8], at: usize) -> ChunkId {
    let mut x = [0u8; 16];
    x.copy_from_slice(&b[at..at + 16]);
    ChunkId(x)
}

/// The header of a new chunk file. Tags longer than 65,535 bytes are refused before
/// they reach a buffer (the forward server limits them), so the length fits.
pub fn encode_header(header: &FileHeader) -> Vec<u8> {
    let tag = header.tag.as_bytes();
    let tag = &tag[..tag.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(HEADER_FIXED + tag.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(match header.compression {
        Compression::None => 0,
        Compression::Zstd => 1,
        Compression::Gzip => 2,
    });
    out.push(0);
    out.extend_from_slice(&(tag.len() as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(header.id.as_bytes());
    out.extend_from_slice(&header.seq.to_le_bytes());
    out.extend_from_slice(&header.created_ms.to_le_bytes());
    let sum = crc(&[&out, tag]);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(tag);
    out
}

/// A part holding `count` events whose encoded entries are `raw` and whose stored
/// form is `stored` (`raw` itself, or its zstd frame).
pub fn encode_part(id: ChunkId, count: u32, raw_len: usize, stored: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PART_HEADER + stored.len());
    out.extend_from_slice(PART_MAGIC);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(&[stored]).to_le_bytes());
    let sum = crc(&[&out]);
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend_from_slice(stored);
    out
}

/// The trailer that seals a chunk of `parts` parts, `count` events and `raw`
/// bytes of encoded entries.
pub fn encode_trailer(parts: u32, count: u32, raw: u64) -> [u8; TRAILER] {
    let mut out = [0u8; TRAILER];
    out[..4].copy_from_slice(TRAILER_MAGIC);
    out[4..8].copy_from_slice(&parts.to_le_bytes());
    out[8..12].copy_from_slice(&count.to_le_bytes());
    out[12..20].copy_from_slice(&raw.to_le_bytes());
    let sum = crc(&[&out[..20]]);
    out[20..24].copy_from_slice(&sum.to_le_bytes());
    out
}

fn decode_header(b: &[u8]) -> Result<(FileHeader, usize), String> {
    if b.len() < 8 || &b[..8] != MAGIC {
        return Err(if b.iter().all(|&x| x == 0) {
            format!("the file is {} zero bytes, not a chunk", b.len())
        } else {
            "the file does not start like a nagare buffer chunk".to_string()
        });
    }
    if b.len() < HEADER_FIXED {
        return Err(format!(
            "the file is {} bytes, shorter than a chunk header",
            b.len()
        ));
    }
    let version = u16_at(b, 8);
    if version != VERSION {
        return Err(format!(
            "the chunk was written in format version {version}, which this nagare does not read"
        ));
    }
    let compression = match b[10] {
        0 => Compression::None,
        1 => Compression::Zstd,
        2 => Compression::Gzip,
        other => return Err(format!("unknown compression {other} in the chunk header")),
    };
    let tag_len = usize::from(u16_at(b, 12));
    let end = HEADER_FIXED + tag_len;
    if b.len() < end {
        return Err("the file ends inside its header".to_string());
    }
    let stored = u32_at(b, HEADER_FIXED - 4);
    if crc(&[&b[..HEADER_FIXED - 4], &b[HEADER_FIXED..end]]) != stored {
        return Err("the chunk header's checksum does not match".to_string());
    }
    let tag = std::str::from_utf8(&b[HEADER_FIXED..end])
        .map_err(|_| "the chunk header's tag is not UTF-8".to_string())?
        .to_string();
    Ok((
        FileHeader {
            id: id_at(b, 16),
            seq: u64_at(b, 32),
            created_ms: u64_at(b, 40),
            compression,
            tag,
        },
        end,
    ))
}

/// Reads a whole chunk file and says what is in it.
pub fn parse(b: &[u8]) -> Parsed {
    scan(b, true).0
}

/// The length of the sealed chunk at the start of `b`, which may go on with more
/// chunks (a segment file holds several, one after another); or why there is none.
pub fn sealed_len(b: &[u8]) -> Result<usize, String> {
    match scan(b, false) {
        (Parsed::Intact { sealed: true, .. }, len) => Ok(len),
        (Parsed::Intact { .. } | Parsed::Torn { .. }, _) => {
            Err("the chunk is cut short (it has no trailer)".to_string())
        }
        (Parsed::Damaged { reason }, _) => Err(reason),
    }
}

/// Whether `b` starts with a chunk header whose checksum matches.
pub fn starts_with_header(b: &[u8]) -> bool {
    decode_header(b).is_ok()
}

/// Reads the chunk at the start of `b`: all of `b` when `whole`, else up to its
/// trailer. Returns what it found and, for a sealed chunk, where it ends.
fn scan(b: &[u8], whole: bool) -> (Parsed, usize) {
    let (header, mut at) = match decode_header(b) {
        Ok(h) => h,
        Err(reason) => return (Parsed::Damaged { reason }, 0),
    };
    let mut parts = Vec::new();
    let torn = |header: FileHeader, parts: Vec<StoredPart>, at: usize, reason: String| {
        let torn = Parsed::Torn {
            header,
            parts,
            valid_len: at,
            reason,
        };
        (torn, 0)
    };
    let damaged = |reason: String| (Parsed::Damaged { reason }, 0);
    loop {
        let rest = &b[at..];
        if rest.is_empty() {
            let open = Parsed::Intact {
                header,
                parts,
                sealed: false,
            };
            return (open, 0);
        }
        // A crash while appending leaves a short record or, after a power loss, a
        // run of zeros; anything else that does not check out is damage.
        let zeros = rest.iter().all(|&x| x == 0);
        if rest.len() < 4 {
            return torn(
                header,
                parts,
                at,
                format!("{} bytes after the last append", rest.len()),
            );
        }
        if &rest[..4] == TRAILER_MAGIC {
            if rest.len() < TRAILER {
                return damaged(format!("the trailer at byte {at} is cut short"));
            }
            let t = &rest[..TRAILER];
            if crc(&[&t[..20]]) != u32_at(t, 20) {
                return damaged(format!(
                    "the trailer's checksum at byte {at} does not match"
                ));
            }
            let (n, count, raw) = (u32_at(t, 4), u32_at(t, 8), u64_at(t, 12));
            let found_count: u64 = parts.iter().map(|s| u64::from(s.origin.count)).sum();
            let found_raw: u64 = parts.iter().map(|s| u64::from(s.raw_len)).sum();
            if n as usize != parts.len() || u64::from(count) != found_count || raw != found_raw {
                return damaged(format!(
                    "the trailer says {n} appends, {count} events and {raw} bytes, the file holds {}, {found_count} and {found_raw}",
                    parts.len()
                ));
            }
            if whole && rest.len() > TRAILER {
                return damaged(format!(
                    "{} unexpected bytes after the trailer",
                    rest.len() - TRAILER
                ));
            }
            let sealed = Parsed::Intact {
                header,
                parts,
                sealed: true,
            };
            return (sealed, at + TRAILER);
        }
        if &rest[..4] != PART_MAGIC {
            if zeros {
                return torn(header, parts, at, format!("{} zero bytes", rest.len()));
            }
            return damaged(format!("no append starts at byte {at}"));
        }
        if rest.len() < PART_HEADER {
            return torn(
                header,
                parts,
                at,
                format!("an append header cut short at byte {at}"),
            );
        }
        let h = &rest[..PART_HEADER];
        if crc(&[&h[..PART_HEADER - 4]]) != u32_at(h, PART_HEADER - 4) {
            return damaged(format!(
                "the checksum of the append header at byte {at} does not match"
            ));
        }
        let stored_len = u32_at(h, 28);
        let payload_at = at + PART_HEADER;
        let Some(payload) = b.get(payload_at..payload_at + stored_len as usize) else {
            return torn(
                header,
                parts,
                at,
                format!(
                    "an append of {stored_len} bytes at byte {at} with only {} written",
                    rest.len() - PART_HEADER
                ),
            );
        };
        if crc(&[payload]) != u32_at(h, 32) {
            return damaged(format!(
                "the checksum of the append at byte {at} does not match"
            ));
        }
        parts.push(StoredPart {
            origin: Origin {
                id: id_at(h, 4),
                count: u32_at(h, 20),
            },
            raw_len: u32_at(h, 24),
            offset: payload_at,
            stored_len,
        });
        at = payload_at + stored_len as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> FileHeader {
        FileHeader {
            id: ChunkId([7; 16]),
            seq: 42,
            created_ms: 1_700_000_000_000,
            compression: Compression::None,
            tag: "kube.app".into(),
        }
    }

    fn file(sealed: bool) -> Vec<u8> {
        let mut f = encode_header(&header());
        f.extend(encode_part(ChunkId([1; 16]), 2, 5, b"hello"));
        f.extend(encode_part(ChunkId([2; 16]), 1, 3, b"abc"));
        if sealed {
            f.extend(encode_trailer(2, 3, 8));
        }
        f
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let f = file(true);
        let Parsed::Intact {
            header: h,
            parts,
            sealed,
        } = parse(&f)
        else {
            panic!("{:?}", parse(&f));
        };
        assert_eq!(h, header());
        assert!(sealed);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].origin.id, ChunkId([2; 16]));
        assert_eq!(&f[parts[0].offset..][..5], b"hello");
        assert!(matches!(
            parse(&file(false)),
            Parsed::Intact { sealed: false, .. }
        ));
    }

    #[test]
    fn a_cut_append_is_torn_not_damaged() {
        let f = file(false);
        let first_end = encode_header(&header()).len() + PART_HEADER + 5;
        for cut in first_end + 1..f.len() {
            match parse(&f[..cut]) {
                Parsed::Torn {
                    parts, valid_len, ..
                } => {
                    assert_eq!((parts.len(), valid_len), (1, first_end), "cut at {cut}");
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let mut zeros = f.clone();
        zeros.extend([0u8; 4096]);
        assert!(matches!(parse(&zeros), Parsed::Torn { .. }));
    }

    #[test]
    fn flipped_bits_and_cut_trailers_are_damage() {
        let f = file(true);
        for at in 0..f.len() {
            let mut g = f.clone();
            g[at] ^= 0x10;
            assert!(
                !matches!(parse(&g), Parsed::Intact { .. }),
                "a flip at byte {at} went unnoticed"
            );
        }
        // A sealed file cut inside its trailer.
        assert!(matches!(parse(&f[..f.len() - 3]), Parsed::Damaged { .. }));
        assert!(matches!(parse(&[0u8; 100]), Parsed::Damaged { .. }));
        assert!(matches!(parse(b"NGRBUF"), Parsed::Damaged { .. }));
    }
}
