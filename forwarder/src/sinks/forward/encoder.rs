//! A chunk to a PackedForward (or CompressedPackedForward) frame, without I/O.
//!
//! The frame is kept as three pieces, header, payload and trailer, written with one
//! vectored write: an uncompressed chunk's entries go to the socket straight from the
//! buffer's memory, never copied into a frame buffer. Compression happens once per
//! chunk, so a resend after a reconnect costs no CPU.

use std::borrow::Cow;
use std::io;

use bytes::{Buf, Bytes};
use nagare_core::Chunk;
use nagare_core::compression::{self, Compression};
use nagare_core::forward;

/// zstd's default level: fast, and about gzip's ratio on log lines.
const ZSTD_LEVEL: i32 = 3;
/// gzip's default level.
const GZIP_LEVEL: i32 = 6;

/// A chunk encoded for the wire.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    head: Bytes,
    payload: Bytes,
    tail: Bytes,
    ack_id: Option<String>,
}

impl EncodedChunk {
    /// The `chunk` option sent, which the server's ack echoes; `None` when no ack is
    /// requested.
    pub fn ack_id(&self) -> Option<&str> {
        self.ack_id.as_deref()
    }

    /// Bytes on the wire.
    pub fn len(&self) -> usize {
        self.head.len() + self.payload.len() + self.tail.len()
    }

    /// Whether the frame has no bytes (never the case for an encoded chunk).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The frame as one buffer over the three pieces, for a vectored write.
    pub fn as_buf(&self) -> impl Buf + use<> {
        self.head
            .clone()
            .chain(self.payload.clone())
            .chain(self.tail.clone())
    }

    /// The frame's bytes in one piece (tests and diagnostics only: this copies).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut buf = self.as_buf();
        buf.copy_to_bytes(buf.remaining()).to_vec()
    }
}

/// Encodes `chunk`. With `request_ack`, the chunk's id (Base64, as Fluentd sends it)
/// goes in the `chunk` option, so the server acks it and derives the same chunk id.
/// Compression is CPU work proportional to the chunk: call it off the async threads
/// for large chunks.
pub fn encode(
    chunk: &Chunk,
    compression: Compression,
    request_ack: bool,
) -> io::Result<EncodedChunk> {
    let level = match compression {
        Compression::Gzip => GZIP_LEVEL,
        Compression::Zstd | Compression::None => ZSTD_LEVEL,
    };
    let payload = match compression::compress(compression, level, chunk.entries())? {
        // Not compressed: the chunk's own bytes, not a copy.
        Cow::Borrowed(_) => chunk.entries().clone(),
        Cow::Owned(packed) => Bytes::from(packed),
    };
    let ack_id = request_ack.then(|| chunk.id().to_base64());
    let (head, tail) = forward::encode_packed_forward(
        chunk.tag(),
        payload.len(),
        chunk.count(),
        ack_id.as_deref(),
        compression,
    );
    Ok(EncodedChunk {
        head: Bytes::from(head),
        payload,
        tail: Bytes::from(tail),
        ack_id,
    })
}
