//! Walking a chunk's entries one by one: each is decoded, or located and explained
//! when it cannot be, so that one bad entry costs that entry alone.
//!
//! Every sink that decodes a chunk goes through [`Walk`]: the file and stdout
//! encoders, the Elasticsearch request builder, the dead-letter output, and the router
//! when a filter applies. An entry that cannot be decoded comes out as a
//! [`BadEntry`] with its position (index and byte offset) and bytes; the sink writes
//! it to its dead-letter output with the reason and delivers the others.
//!
//! An entry is `[time, record]`, so an entry that cannot be decoded but is a whole
//! MessagePack array (a record that is not a map, a time of the wrong type, a third
//! element) is skipped by its length and the walk goes on. When the bytes at an
//! entry's start are not an array, or the array is cut short or malformed, nothing
//! after that point can be told apart from garbage: the rest of the chunk is one
//! [`BadEntry`] (`framed: false`) and the walk ends there.

use rmp::Marker;

use super::read_entry;
use crate::msgpack::{ReadError, Reader};
use crate::time::EventTime;
use crate::value::Map;

/// An entry that could not be decoded, where it is, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEntry<'a> {
    /// Its position among the chunk's entries (0 is the first).
    pub index: u32,
    /// The byte offset in the chunk's entries where it starts.
    pub offset: usize,
    /// Its bytes: the entry alone when it is framed, else everything from its start
    /// to the end of the chunk.
    pub bytes: &'a [u8],
    /// Why it could not be decoded (offsets count from the start of the chunk's
    /// entries).
    pub error: ReadError,
    /// Whether its end was found, so the walk went on after it. When false, `bytes`
    /// runs to the end of the chunk and the walk ends with it.
    pub framed: bool,
}

impl BadEntry<'_> {
    /// How many of a chunk of `count` events these bytes stand for: one when framed,
    /// else every event from this one to the end (at least one).
    pub fn events(&self, count: u32) -> u32 {
        if self.framed {
            1
        } else {
            count.saturating_sub(self.index).max(1)
        }
    }

    /// The reason, in words, as the dead-letter output records it.
    pub fn reason(&self) -> String {
        if self.framed {
            format!(
                "undecodable entry {} at byte {}: {}",
                self.index, self.offset, self.error
            )
        } else {
            format!(
                "undecodable entry {} at byte {}: {}; the {} bytes from there to the end of the chunk cannot be split into entries",
                self.index,
                self.offset,
                self.error,
                self.bytes.len()
            )
        }
    }
}

/// What one step of a [`Walk`] gives.
pub type Step<'a> = Result<(EventTime, Map), BadEntry<'a>>;

/// An iterator over a chunk's entries that goes on past the ones it cannot decode
/// (see the module docs). Each step is one entry, so `enumerate` gives positions.
#[derive(Debug, Clone)]
pub struct Walk<'a> {
    bytes: &'a [u8],
    pos: usize,
    index: u32,
    done: bool,
}

impl<'a> Walk<'a> {
    /// Walks the entries in `bytes` (a chunk's encoded entries).
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            pos: 0,
            index: 0,
            done: false,
        }
    }

    /// The byte offset of the next entry.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = Step<'a>;

    fn next(&mut self) -> Option<Step<'a>> {
        if self.done || self.pos >= self.bytes.len() {
            return None;
        }
        let (start, index) = (self.pos, self.index);
        self.index = self.index.saturating_add(1);
        let rest = &self.bytes[start..];
        let mut reader = Reader::new(rest);
        let error = match read_entry(&mut reader) {
            Ok(entry) => {
                self.pos = start + reader.position();
                return Some(Ok(entry));
            }
            Err(e) => shifted(e, start),
        };
        // Only an array, which every entry is, is trusted to say where the entry
        // ends; its structure is checked without decoding it.
        let mut skip = Reader::new(rest);
        let len = match skip.peek_marker() {
            Ok(Marker::FixArray(_) | Marker::Array16 | Marker::Array32) => {
                skip.skip_value().ok().map(<[u8]>::len)
            }
            _ => None,
        };
        let (bytes, framed) = match len {
            Some(len) => {
                self.pos = start + len;
                (&rest[..len], true)
            }
            None => {
                self.done = true;
                (rest, false)
            }
        };
        Some(Err(BadEntry {
            index,
            offset: start,
            bytes,
            error,
            framed,
        }))
    }
}

/// `e` with its offset counted from the start of the chunk rather than of the entry.
fn shifted(e: ReadError, by: usize) -> ReadError {
    match e {
        ReadError::Invalid { what, offset } => ReadError::Invalid {
            what,
            offset: offset + by,
        },
        ReadError::Incomplete => ReadError::Invalid {
            what: "the entry is cut short (its bytes end before it does)".into(),
            offset: by,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkBuilder;
    use crate::event::Tag;
    use crate::msgpack;
    use crate::value::Value;

    fn good(i: i64) -> Vec<u8> {
        let mut b = ChunkBuilder::new(Tag::new("t"));
        let mut m = Map::new();
        m.insert("i", Value::Int(i));
        b.push(EventTime::new(1_700_000_000 + i, 0), &m);
        b.finish().unwrap().entries().to_vec()
    }

    /// `[1700000000, "not a map"]`.
    fn record_not_a_map() -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::write_array_len(&mut out, 2);
        msgpack::write_int(&mut out, 1_700_000_000);
        msgpack::write_str(&mut out, "not a map");
        out
    }

    /// `["yesterday", {"i": 9}]`.
    fn time_of_the_wrong_type() -> Vec<u8> {
        let mut out = Vec::new();
        msgpack::write_array_len(&mut out, 2);
        msgpack::write_str(&mut out, "yesterday");
        msgpack::write_map_len(&mut out, 1);
        msgpack::write_str(&mut out, "i");
        msgpack::write_int(&mut out, 9);
        out
    }

    fn indices(bytes: &[u8]) -> Vec<Result<i64, (u32, usize, bool, usize)>> {
        Walk::new(bytes)
            .map(|s| match s {
                Ok((_, m)) => match m.get("i") {
                    Some(Value::Int(i)) => Ok(*i),
                    other => panic!("{other:?}"),
                },
                Err(b) => Err((b.index, b.offset, b.framed, b.bytes.len())),
            })
            .collect()
    }

    #[test]
    fn a_whole_bad_entry_is_skipped_alone() {
        for bad in [record_not_a_map(), time_of_the_wrong_type()] {
            let mut bytes = good(0);
            let at = bytes.len();
            bytes.extend(&bad);
            bytes.extend(good(2));
            assert_eq!(
                indices(&bytes),
                vec![Ok(0), Err((1, at, true, bad.len())), Ok(2)]
            );
            let e = Walk::new(&bytes).nth(1).unwrap().unwrap_err();
            assert_eq!(e.events(3), 1);
            assert!(
                e.reason()
                    .starts_with(&format!("undecodable entry 1 at byte {at}: ")),
                "{}",
                e.reason()
            );
        }
    }

    #[test]
    fn garbage_or_a_cut_entry_ends_the_walk_with_the_rest() {
        // Not an array at all: what follows cannot be told from garbage.
        let mut bytes = good(0);
        let at = bytes.len();
        bytes.extend(b"hello, world");
        bytes.extend(good(2));
        let rest = bytes.len() - at;
        assert_eq!(indices(&bytes), vec![Ok(0), Err((1, at, false, rest))]);
        let e = Walk::new(&bytes).nth(1).unwrap().unwrap_err();
        assert_eq!(e.events(3), 2);
        assert!(
            e.reason().contains("cannot be split into entries"),
            "{}",
            e.reason()
        );

        // The last entry cut short.
        let mut bytes = good(0);
        let at = bytes.len();
        let second = good(1);
        bytes.extend(&second[..second.len() - 3]);
        assert_eq!(
            indices(&bytes),
            vec![Ok(0), Err((1, at, false, second.len() - 3))]
        );
        let e = Walk::new(&bytes).nth(1).unwrap().unwrap_err();
        assert_eq!(
            e.error,
            ReadError::Invalid {
                what: "the entry is cut short (its bytes end before it does)".into(),
                offset: at
            }
        );
    }

    #[test]
    fn offsets_in_errors_count_from_the_chunk_start() {
        let mut bytes = good(0);
        let at = bytes.len();
        bytes.extend(record_not_a_map());
        let e = Walk::new(&bytes).nth(1).unwrap().unwrap_err();
        // The record (the string) starts after the array header and the time.
        match e.error {
            ReadError::Invalid { offset, .. } => assert_eq!(offset, at + 1 + 5),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn agrees_with_the_plain_decoder_on_good_chunks() {
        let mut bytes = Vec::new();
        for i in 0..50 {
            bytes.extend(good(i));
        }
        let walked: Vec<_> = Walk::new(&bytes).map(Result::unwrap).collect();
        let plain: Vec<_> = crate::chunk::Entries::new(&bytes)
            .map(Result::unwrap)
            .collect();
        assert_eq!(walked, plain);
        assert_eq!(Walk::new(&[]).count(), 0);
    }
}
