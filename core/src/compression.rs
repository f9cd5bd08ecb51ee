//! Compression: one type for every place nagare packs bytes. The forward protocol's
//! CompressedPackedForward payloads (gzip, or zstd between nagare peers), the file
//! buffer's stored chunks (zstd), Elasticsearch request bodies (gzip) and the gzip
//! bodies the http source receives all go through [`compress`] and [`decompress`].
//!
//! Unpacking bytes from a peer is bounded ([`decompress`]'s `limit`), so that a small
//! compressed payload cannot inflate into more memory than the caller allows.
//! Packing and unpacking zstd keep one context per thread: making one per call costs
//! more than compressing a small chunk.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};

use serde::Deserialize;
use thiserror::Error;

/// How bytes are packed. Config spells it `none`, `gzip` or `zstd`, as the forward
/// protocol's `compressed` option does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// As they are.
    #[default]
    None,
    /// gzip; unpacking reads every concatenated member, as the forward protocol and
    /// HTTP require.
    Gzip,
    /// zstd; unpacking reads every concatenated frame.
    Zstd,
}

impl Compression {
    /// Its name: the config value, and the forward protocol's `compressed` option.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why packed bytes could not be unpacked.
#[derive(Debug, Error)]
pub enum DecompressError {
    /// They unpack to more than the caller allows (a compression bomb, or a limit set
    /// too low).
    #[error("the unpacked bytes exceed the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// They are not valid in their compression.
    #[error("{0}")]
    Broken(io::Error),
}

/// `data` packed with `compression` at `level`: gzip levels go from 0 (stored) to 9
/// (smallest; a higher level counts as 9, a lower one as 0), zstd levels from -7
/// (fastest) to 22 (smallest). With [`Compression::None`], `data` itself.
pub fn compress(compression: Compression, level: i32, data: &[u8]) -> io::Result<Cow<'_, [u8]>> {
    match compression {
        Compression::None => Ok(Cow::Borrowed(data)),
        Compression::Gzip => {
            let level = flate2::Compression::new(level.clamp(0, 9) as u32);
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), level);
            e.write_all(data)?;
            Ok(Cow::Owned(e.finish()?))
        }
        Compression::Zstd => ZSTD_COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().is_none_or(|(l, _)| *l != level) {
                *slot = Some((level, zstd::bulk::Compressor::new(level)?));
            }
            let Some((_, c)) = slot.as_mut() else {
                return Err(io::Error::other("zstd compressor missing"));
            };
            c.compress(data).map(Cow::Owned)
        }),
    }
}

/// How many bytes of parts a [`GzipStream`] gathers before each write to the
/// compressor: small enough to stay in the CPU's cache, large enough that the
/// compressor's cost per call (its state checks, the CRC's setup, and bringing its
/// state back into the cache when several batches are gzipped in turn) is spread
/// thin. In the request bench (three indices filling at once), 256 KiB was faster
/// than 64 KiB in 6 rounds of 7 of 40 pairs, by about 3 % (128 KiB in between,
/// 32 KiB slower).
const GZIP_BLOCK: usize = 256 * 1024;

/// The pieces `parts` (`size` bytes in all) gzipped at `level` as one stream, as
/// if concatenated first: for a request body made of many items.
pub fn gzip_parts<'a>(
    level: u32,
    size: usize,
    parts: impl IntoIterator<Item = &'a [u8]>,
) -> Vec<u8> {
    let mut stream = GzipStream::new(level, size);
    for part in parts {
        stream.add(part);
    }
    stream.finish()
}

/// One gzip stream written part by part, as if the parts were concatenated first:
/// a request body compressed as its items come, while their bytes are still in the
/// CPU's cache, rather than all at once when it is complete.
///
/// The parts are gathered into blocks of [`GZIP_BLOCK`] bytes and each block is
/// compressed in one call: feeding a few hundred bytes at a time cost about twice
/// as much in the compressor as one call over the same bytes, while gathering them
/// costs one copy through the cache (Elasticsearch bodies of 2 MiB of 430-byte
/// items, zlib-rs level 1: 31-37 ms part by part vs 16-22 ms gathered, for 50,000
/// items).
///
/// The gzip frame (RFC 1952: the 10-byte header, then the raw deflate stream, then
/// the CRC-32 and length of the input) is written here, with the CRC from
/// `crc32fast`: about four times as fast as the CRC zlib-rs computes for a
/// `GzEncoder` (52-57 vs 10-14 GB/s over the same 2 MiB of NDJSON).
pub struct GzipStream {
    encoder: flate2::write::DeflateEncoder<Vec<u8>>,
    crc: crc32fast::Hasher,
    block: Vec<u8>,
    /// Bytes added, before compression.
    len: usize,
}

impl fmt::Debug for GzipStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GzipStream")
            .field("len", &self.len)
            .field("packed", &self.encoder.get_ref().len())
            .finish_non_exhaustive()
    }
}

/// The gzip member header (RFC 1952 2.3): magic, deflate, no flags, no time; the
/// extra flags say "fastest" for level 1 and below and "best" for 9, as zlib
/// writes them; operating system unknown.
fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = match level {
        0..=1 => 4,
        9.. => 2,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

impl GzipStream {
    /// An empty stream at `level` (0 to 9, a higher one counts as 9), with room
    /// for about `size` bytes of log text once compressed.
    pub fn new(level: u32, size: usize) -> Self {
        let level = level.min(9);
        let mut packed = Vec::with_capacity(size / 16);
        packed.extend_from_slice(&gzip_header(level));
        Self {
            encoder: flate2::write::DeflateEncoder::new(packed, flate2::Compression::new(level)),
            crc: crc32fast::Hasher::new(),
            block: Vec::with_capacity(GZIP_BLOCK.min(size.max(1))),
            len: 0,
        }
    }

    /// Adds `part` to the stream.
    pub fn add(&mut self, part: &[u8]) {
        self.len += part.len();
        if self.block.len() + part.len() > GZIP_BLOCK && !self.block.is_empty() {
            self.compress_block();
        }
        if part.len() >= GZIP_BLOCK {
            self.crc.update(part);
            write_in_memory(&mut self.encoder, part);
        } else {
            self.block.extend_from_slice(part);
        }
    }

    fn compress_block(&mut self) {
        self.crc.update(&self.block);
        write_in_memory(&mut self.encoder, &self.block);
        self.block.clear();
    }

    /// Bytes added so far, before compression.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The whole stream, gzipped.
    pub fn finish(mut self) -> Vec<u8> {
        self.compress_block();
        let mut packed = self
            .encoder
            .finish()
            .expect("deflate into memory cannot fail: a Vec takes every write");
        // The trailer (RFC 1952 2.3.1): the CRC-32 and the input's length modulo
        // 2^32, little-endian.
        packed.extend_from_slice(&self.crc.finalize().to_le_bytes());
        packed.extend_from_slice(&(self.len as u32).to_le_bytes());
        packed
    }
}

/// Compresses `bytes` into an encoder whose output is memory: only the writer under
/// it could fail, and a `Vec` takes every write.
fn write_in_memory(encoder: &mut flate2::write::DeflateEncoder<Vec<u8>>, bytes: &[u8]) {
    encoder
        .write_all(bytes)
        .expect("deflate into memory cannot fail: a Vec takes every write");
}

/// `data` unpacked from `compression`, refused once it unpacks to more than `limit`
/// bytes: for bytes from a peer, whose size is not known until they are unpacked.
pub fn decompress(
    compression: Compression,
    data: &[u8],
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    // Packed log records usually unpack to a few times their size.
    let out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    match compression {
        Compression::None => read_at_most(data, limit, out),
        Compression::Gzip => read_at_most(flate2::read::MultiGzDecoder::new(data), limit, out),
        Compression::Zstd => {
            let decoder =
                zstd::stream::read::Decoder::new(data).map_err(DecompressError::Broken)?;
            read_at_most(decoder, limit, out)
        }
    }
}

/// Everything `reader` gives, refused once it is more than `limit` bytes: for a
/// decoder of a format [`Compression`] does not name (HTTP's `deflate`).
pub fn read_limited(reader: impl Read, limit: usize) -> Result<Vec<u8>, DecompressError> {
    read_at_most(reader, limit, Vec::new())
}

fn read_at_most(
    reader: impl Read,
    limit: usize,
    mut out: Vec<u8>,
) -> Result<Vec<u8>, DecompressError> {
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(DecompressError::Broken)?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { limit });
    }
    Ok(out)
}

/// Unpacks `stored` onto the end of `out`, whose spare capacity must hold what it
/// unpacks to: for bytes whose unpacked size was recorded beside them (the file
/// buffer's parts). A zstd frame is unpacked in one go into that room, which also
/// refuses a frame that unpacks to more. Returns the bytes added.
pub fn decompress_into(
    compression: Compression,
    stored: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    let before = out.len();
    match compression {
        Compression::None => out.extend_from_slice(stored),
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(stored).read_to_end(out)?;
        }
        Compression::Zstd => {
            let mut into = io::Cursor::new(&mut *out);
            into.set_position(before as u64);
            ZSTD_DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(zstd::bulk::Decompressor::new()?);
                }
                let Some(d) = slot.as_mut() else {
                    return Err(io::Error::other("zstd decompressor missing"));
                };
                d.decompress_to_buffer(stored, &mut into)
            })?;
        }
    }
    Ok(out.len() - before)
}

thread_local! {
    /// One zstd context per thread and level.
    static ZSTD_COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// One zstd decompression context per thread.
    static ZSTD_DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn each_compression_round_trips() {
        let data = sample();
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let packed = compress(c, 3, &data).unwrap();
            assert_eq!(decompress(c, &packed, data.len()).unwrap(), data, "{c}");
            let mut out = b"kept".to_vec();
            out.reserve(data.len());
            let added = decompress_into(c, &packed, &mut out).unwrap();
            assert_eq!(
                (added, &out[..4], &out[4..]),
                (data.len(), &b"kept"[..], &data[..])
            );
        }
    }

    #[test]
    fn concatenated_members_and_frames_are_all_read() {
        let (a, b) = (b"first ".as_slice(), b"second".as_slice());
        for c in [Compression::Gzip, Compression::Zstd] {
            let mut packed = compress(c, 1, a).unwrap().into_owned();
            packed.extend_from_slice(&compress(c, 1, b).unwrap());
            assert_eq!(decompress(c, &packed, 100).unwrap(), b"first second", "{c}");
        }
    }

    #[test]
    fn more_than_the_limit_is_refused() {
        let data = vec![0u8; 1 << 16];
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let packed = compress(c, 1, &data).unwrap();
            let err = decompress(c, &packed, 4096).unwrap_err();
            assert!(
                matches!(err, DecompressError::TooLarge { limit: 4096 }),
                "{c}: {err}"
            );
        }
    }

    #[test]
    fn parts_gzip_to_their_concatenation() {
        // Small parts filling several blocks, a part larger than a block between
        // them, and an empty one: one gzip stream of all the bytes in order.
        let data = sample();
        let mut parts: Vec<&[u8]> = data.chunks(333).collect();
        let big = vec![b'x'; GZIP_BLOCK + 7];
        parts.insert(200, &big);
        parts.insert(7, b"");
        let all: Vec<u8> = parts.concat();
        let packed = gzip_parts(1, all.len(), parts.iter().copied());
        assert_eq!(
            decompress(Compression::Gzip, &packed, all.len()).unwrap(),
            all
        );
        let empty = gzip_parts(1, 0, []);
        assert_eq!(decompress(Compression::Gzip, &empty, 10).unwrap(), b"");
    }

    #[test]
    fn broken_bytes_are_an_error() {
        for c in [Compression::Gzip, Compression::Zstd] {
            let err = decompress(c, b"not packed at all", 100).unwrap_err();
            assert!(matches!(err, DecompressError::Broken(_)), "{c}: {err}");
        }
    }

    #[test]
    fn config_spells_each_by_its_name() {
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let parsed: Compression = serde_json::from_str(&format!("\"{c}\"")).unwrap();
            assert_eq!(parsed, c);
        }
    }
}
