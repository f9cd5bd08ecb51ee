//! Rows as the journal knows them: runs of consecutive positions of one origin
//! chunk, and their text in the journal's lines (`<origin hex>:<start>:<len>`,
//! comma-separated).

use nagare_core::chunk::ChunkId;

/// A run of rows: consecutive positions of one origin chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// The chunk the rows first arrived in.
    pub origin: ChunkId,
    /// The position of the first.
    pub start: u32,
    /// How many.
    pub len: u32,
}

/// The runs of a list of rows, in order.
pub fn runs(rows: impl IntoIterator<Item = (ChunkId, u32)>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (origin, pos) in rows {
        match out.last_mut() {
            Some(r) if r.origin == origin && r.start + r.len == pos => r.len += 1,
            _ => out.push(Run {
                origin,
                start: pos,
                len: 1,
            }),
        }
    }
    out
}

pub(super) fn write_runs(out: &mut String, runs: &[Run]) {
    for (i, r) in runs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("{}:{}:{}", r.origin.to_hex(), r.start, r.len));
    }
}

pub(super) fn parse_runs(text: &str) -> Option<Vec<Run>> {
    text.split(',')
        .map(|r| {
            let mut p = r.split(':');
            let hex = p.next()?;
            let mut id = [0u8; 16];
            if hex.len() != 32 {
                return None;
            }
            for (i, byte) in id.iter_mut().enumerate() {
                *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
            }
            Some(Run {
                origin: ChunkId(id),
                start: p.next()?.parse().ok()?,
                len: p.next()?.parse().ok()?,
            })
        })
        .collect()
}
