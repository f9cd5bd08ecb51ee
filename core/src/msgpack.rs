//! MessagePack: a writer for records and a zero-copy reader for frames.
//!
//! Writing goes through `rmp`'s low-level encoders. Reading is our own small cursor
//! because the forward server needs two things `rmp` does not give: "is a whole value
//! here yet?" answered as a value (`Incomplete`) rather than an I/O error, and bytes
//! borrowed from the receive buffer instead of copied out of it. Skipping is iterative,
//! so a hostile frame of nested arrays cannot overflow the stack.

use rmp::Marker;
use thiserror::Error;

use crate::time::EventTime;
use crate::value::{Map, Str, Value};

/// Why a MessagePack value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    /// The buffer ends before the value does; read more bytes and try again.
    #[error("need more bytes")]
    Incomplete,
    /// The bytes are not the expected MessagePack.
    #[error("{what} at byte {offset}")]
    Invalid {
        /// What was wrong.
        what: String,
        /// Byte offset in the buffer where it was found.
        offset: usize,
    },
}

/// Deepest nesting accepted when decoding a value into a tree: above serde_json's
/// own limit (128), so a record built from any JSON nagare parses also decodes.
pub const MAX_DEPTH: usize = 130;

/// A cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// After an `Incomplete` from `skip_value`: a lower bound of the bytes the value
    /// needs, so a frame that announces gigabytes is refused before they arrive.
    need: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            need: 0,
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// After `skip_value` returned `Incomplete`: at least how many bytes, from the
    /// start of the buffer, the value needs.
    pub fn needed(&self) -> usize {
        self.need
    }

    /// Whether every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos.min(self.buf.len())..]
    }

    fn invalid<T>(&self, what: impl Into<String>) -> Result<T, ReadError> {
        Err(ReadError::Invalid {
            what: what.into(),
            offset: self.pos,
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ReadError> {
        let end = self.pos.checked_add(n).ok_or(ReadError::Incomplete)?;
        if end > self.buf.len() {
            return Err(ReadError::Incomplete);
        }
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.take(1)?[0])
    }

    fn be_u16(&mut self) -> Result<u16, ReadError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn be_u32(&mut self) -> Result<u32, ReadError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn be_u64(&mut self) -> Result<u64, ReadError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// The next marker, without consuming it.
    pub fn peek_marker(&self) -> Result<Marker, ReadError> {
        self.buf
            .get(self.pos)
            .map(|b| Marker::from_u8(*b))
            .ok_or(ReadError::Incomplete)
    }

    /// Whether the next value is `nil`.
    pub fn peek_is_nil(&self) -> bool {
        matches!(self.peek_marker(), Ok(Marker::Null))
    }

    /// Reads an array header and returns its length.
    pub fn read_array_len(&mut self) -> Result<usize, ReadError> {
        let start = self.pos;
        match Marker::from_u8(self.u8()?) {
            Marker::FixArray(n) => Ok(usize::from(n)),
            Marker::Array16 => Ok(usize::from(self.be_u16()?)),
            Marker::Array32 => Ok(self.be_u32()? as usize),
            m => {
                self.pos = start;
                self.invalid(format!("expected an array, found {}", marker_name(m)))
            }
        }
    }

    /// Reads a map header and returns its number of pairs.
    pub fn read_map_len(&mut self) -> Result<usize, ReadError> {
        let start = self.pos;
        match Marker::from_u8(self.u8()?) {
            Marker::FixMap(n) => Ok(usize::from(n)),
            Marker::Map16 => Ok(usize::from(self.be_u16()?)),
            Marker::Map32 => Ok(self.be_u32()? as usize),
            m => {
                self.pos = start;
                self.invalid(format!("expected a map, found {}", marker_name(m)))
            }
        }
    }

    /// Reads a `str` or `bin` and returns its bytes, borrowed.
    pub fn read_str_or_bin(&mut self) -> Result<&'a [u8], ReadError> {
        let start = self.pos;
        let len = match Marker::from_u8(self.u8()?) {
            Marker::FixStr(n) => usize::from(n),
            Marker::Str8 | Marker::Bin8 => usize::from(self.u8()?),
            Marker::Str16 | Marker::Bin16 => usize::from(self.be_u16()?),
            Marker::Str32 | Marker::Bin32 => self.be_u32()? as usize,
            m => {
                self.pos = start;
                return self.invalid(format!("expected a string, found {}", marker_name(m)));
            }
        };
        self.take(len)
    }

    /// Reads a `str` (or `bin`) as UTF-8 text, borrowed.
    pub fn read_str(&mut self) -> Result<&'a str, ReadError> {
        let start = self.pos;
        let bytes = self.read_str_or_bin()?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(_) => {
                self.pos = start;
                self.invalid("string is not valid UTF-8")
            }
        }
    }

    /// Reads an integer of any width as `i128` (covers every MessagePack integer).
    pub fn read_int(&mut self) -> Result<i128, ReadError> {
        let start = self.pos;
        let v = match Marker::from_u8(self.u8()?) {
            Marker::FixPos(n) => i128::from(n),
            Marker::FixNeg(n) => i128::from(n),
            Marker::U8 => i128::from(self.u8()?),
            Marker::U16 => i128::from(self.be_u16()?),
            Marker::U32 => i128::from(self.be_u32()?),
            Marker::U64 => i128::from(self.be_u64()?),
            Marker::I8 => i128::from(self.u8()? as i8),
            Marker::I16 => i128::from(self.be_u16()? as i16),
            Marker::I32 => i128::from(self.be_u32()? as i32),
            Marker::I64 => i128::from(self.be_u64()? as i64),
            m => {
                self.pos = start;
                return self.invalid(format!("expected an integer, found {}", marker_name(m)));
            }
        };
        Ok(v)
    }

    /// Reads an event time: EventTime ext (`fixext8` or `ext8` with length 8, type 0),
    /// integer seconds, or float seconds.
    pub fn read_time(&mut self) -> Result<EventTime, ReadError> {
        let start = self.pos;
        match self.peek_marker()? {
            Marker::FixExt8 => {
                self.pos += 1;
                let ty = self.u8()? as i8;
                if ty != 0 {
                    self.pos = start;
                    return self.invalid(format!(
                        "expected EventTime (ext type 0), found ext type {ty}"
                    ));
                }
                let secs = self.be_u32()?;
                let nanos = self.be_u32()?;
                Ok(EventTime::new(i64::from(secs), nanos))
            }
            Marker::Ext8 => {
                self.pos += 1;
                let len = self.u8()?;
                let ty = self.u8()? as i8;
                if len != 8 || ty != 0 {
                    self.pos = start;
                    return self.invalid(format!(
                        "expected EventTime (ext type 0, length 8), found ext type {ty} length {len}"
                    ));
                }
                let secs = self.be_u32()?;
                let nanos = self.be_u32()?;
                Ok(EventTime::new(i64::from(secs), nanos))
            }
            Marker::F32 => {
                self.pos += 1;
                Ok(EventTime::from_secs_f64(f64::from(f32::from_bits(
                    self.be_u32()?,
                ))))
            }
            Marker::F64 => {
                self.pos += 1;
                Ok(EventTime::from_secs_f64(f64::from_bits(self.be_u64()?)))
            }
            _ => {
                let v = self.read_int().map_err(|e| match e {
                    ReadError::Invalid { offset, .. } => ReadError::Invalid {
                        what: "expected an event time (EventTime ext or integer seconds)".into(),
                        offset,
                    },
                    e => e,
                })?;
                match i64::try_from(v) {
                    Ok(secs) => Ok(EventTime::new(secs, 0)),
                    Err(_) => {
                        self.pos = start;
                        self.invalid("event time out of range")
                    }
                }
            }
        }
    }

    /// Skips one complete value, however deeply nested, and returns the bytes it
    /// spanned.
    pub fn skip_value(&mut self) -> Result<&'a [u8], ReadError> {
        self.skip_counting().map(|(bytes, _)| bytes)
    }

    /// [`skip_value`](Self::skip_value), also counting the non-empty containers in
    /// the value (a bound of its depth).
    fn skip_counting(&mut self) -> Result<(&'a [u8], u64), ReadError> {
        let start = self.pos;
        // Values still to skip; containers add their children to it.
        let mut pending: u64 = 1;
        let mut containers: u64 = 0;
        while pending > 0 {
            pending -= 1;
            let children = self.skip_head().map_err(|e| self.needs_more(e, pending))?;
            if children > 0 {
                containers += 1;
                pending += children;
                self.check_room(pending)?;
            }
        }
        Ok((&self.buf[start..self.pos], containers))
    }

    /// Skips one complete value like [`skip_value`](Self::skip_value), and refuses
    /// one that [`read_value`](Self::read_value) would refuse for its nesting (values
    /// [`MAX_DEPTH`] or more levels down), so that what passes can be decoded later.
    /// `open` is scratch space (values left in each open container), kept by the
    /// caller to reuse its allocation.
    pub fn skip_value_nested(&mut self, open: &mut Vec<u64>) -> Result<&'a [u8], ReadError> {
        // A value is only as deep as its non-empty containers are many: most values
        // have a handful, and need no closer look.
        let saved = self.clone();
        let (bytes, containers) = self.skip_counting()?;
        if containers < MAX_DEPTH as u64 {
            return Ok(bytes);
        }
        *self = saved;
        let start = self.pos;
        open.clear();
        open.push(1);
        // The sum of `open`: values still to skip.
        let mut pending: u64 = 1;
        while pending > 0 {
            while open.last() == Some(&0) {
                open.pop();
            }
            if let Some(left) = open.last_mut() {
                *left -= 1;
            }
            pending -= 1;
            if open.len() > MAX_DEPTH {
                return self.invalid(format!("value nested deeper than {MAX_DEPTH} levels"));
            }
            let children = self.skip_head().map_err(|e| self.needs_more(e, pending))?;
            if children > 0 {
                pending += children;
                self.check_room(pending)?;
                open.push(children);
            }
        }
        Ok(&self.buf[start..self.pos])
    }

    /// After an `Incomplete` from [`skip_head`](Self::skip_head): `pending` more
    /// values (a byte each at least) are needed past what it asked for.
    fn needs_more(&mut self, e: ReadError, pending: u64) -> ReadError {
        if e == ReadError::Incomplete {
            self.need = self
                .need
                .saturating_add(usize::try_from(pending).unwrap_or(usize::MAX));
        }
        e
    }

    /// Skips one value's marker, lengths and payload; returns how many values it
    /// contains (a container's elements, a map's keys and values).
    fn skip_head(&mut self) -> Result<u64, ReadError> {
        let marker = Marker::from_u8(self.u8()?);
        let (skip, children): (usize, u64) = match marker {
            Marker::FixPos(_) | Marker::FixNeg(_) | Marker::Null | Marker::True | Marker::False => {
                (0, 0)
            }
            Marker::U8 | Marker::I8 => (1, 0),
            Marker::U16 | Marker::I16 => (2, 0),
            Marker::U32 | Marker::I32 | Marker::F32 => (4, 0),
            Marker::U64 | Marker::I64 | Marker::F64 => (8, 0),
            Marker::FixStr(n) => (usize::from(n), 0),
            Marker::Str8 | Marker::Bin8 => (usize::from(self.u8()?), 0),
            Marker::Str16 | Marker::Bin16 => (usize::from(self.be_u16()?), 0),
            Marker::Str32 | Marker::Bin32 => (self.be_u32()? as usize, 0),
            Marker::FixArray(n) => (0, u64::from(n)),
            Marker::Array16 => (0, u64::from(self.be_u16()?)),
            Marker::Array32 => (0, u64::from(self.be_u32()?)),
            Marker::FixMap(n) => (0, 2 * u64::from(n)),
            Marker::Map16 => (0, 2 * u64::from(self.be_u16()?)),
            Marker::Map32 => (0, 2 * u64::from(self.be_u32()?)),
            Marker::FixExt1 => (2, 0),
            Marker::FixExt2 => (3, 0),
            Marker::FixExt4 => (5, 0),
            Marker::FixExt8 => (9, 0),
            Marker::FixExt16 => (17, 0),
            Marker::Ext8 => (usize::from(self.u8()?) + 1, 0),
            Marker::Ext16 => (usize::from(self.be_u16()?) + 1, 0),
            Marker::Ext32 => (self.be_u32()? as usize + 1, 0),
            Marker::Reserved => {
                self.pos -= 1;
                return self.invalid("reserved byte 0xc1 is not MessagePack");
            }
        };
        if self.take(skip).is_err() {
            self.need = self.pos.saturating_add(skip);
            return Err(ReadError::Incomplete);
        }
        Ok(children)
    }

    /// A container cannot hold more values than there are bytes left to hold them;
    /// catching that here keeps a lying header from spinning a skip loop.
    fn check_room(&mut self, pending: u64) -> Result<(), ReadError> {
        if pending > (self.buf.len() - self.pos) as u64 {
            self.need = self
                .pos
                .saturating_add(usize::try_from(pending).unwrap_or(usize::MAX));
            return Err(ReadError::Incomplete);
        }
        Ok(())
    }

    /// Decodes one value into a tree.
    pub fn read_value(&mut self) -> Result<Value, ReadError> {
        self.read_value_at(0)
    }

    /// Decodes one map into a `Map`.
    pub fn read_map(&mut self) -> Result<Map, ReadError> {
        self.read_map_at(0)
    }

    fn read_map_at(&mut self, depth: usize) -> Result<Map, ReadError> {
        let n = self.read_map_len()?;
        if n > self.buf.len() - self.pos {
            return Err(ReadError::Incomplete);
        }
        let mut map = Map::with_capacity(n);
        for _ in 0..n {
            let key = self.read_key()?;
            let value = self.read_value_at(depth + 1)?;
            if n <= 32 {
                map.insert(key, value);
            } else {
                map.push_unchecked(key, value);
            }
        }
        Ok(map)
    }

    fn read_key(&mut self) -> Result<Str, ReadError> {
        match self.peek_marker()? {
            Marker::FixStr(_)
            | Marker::Str8
            | Marker::Str16
            | Marker::Str32
            | Marker::Bin8
            | Marker::Bin16
            | Marker::Bin32 => {
                let b = self.read_str_or_bin()?;
                Ok(match std::str::from_utf8(b) {
                    Ok(s) => Str::from(s),
                    Err(_) => Str::from(String::from_utf8_lossy(b)),
                })
            }
            _ => {
                // Fluentd records have string keys; other keys are kept as their text.
                let v = self.read_value_at(MAX_DEPTH - 1)?;
                Ok(Str::from(v.to_text()))
            }
        }
    }

    fn read_value_at(&mut self, depth: usize) -> Result<Value, ReadError> {
        if depth >= MAX_DEPTH {
            return self.invalid(format!("value nested deeper than {MAX_DEPTH} levels"));
        }
        let start = self.pos;
        let marker = self.peek_marker()?;
        Ok(match marker {
            Marker::Null => {
                self.pos += 1;
                Value::Null
            }
            Marker::True => {
                self.pos += 1;
                Value::Bool(true)
            }
            Marker::False => {
                self.pos += 1;
                Value::Bool(false)
            }
            Marker::FixPos(_)
            | Marker::FixNeg(_)
            | Marker::U8
            | Marker::U16
            | Marker::U32
            | Marker::U64
            | Marker::I8
            | Marker::I16
            | Marker::I32
            | Marker::I64 => {
                let v = self.read_int()?;
                match i64::try_from(v) {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::UInt(v as u64),
                }
            }
            Marker::F32 => {
                self.pos += 1;
                Value::Float(f64::from(f32::from_bits(self.be_u32()?)))
            }
            Marker::F64 => {
                self.pos += 1;
                Value::Float(f64::from_bits(self.be_u64()?))
            }
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                let b = self.read_str_or_bin()?;
                match std::str::from_utf8(b) {
                    Ok(s) => Value::Str(Str::from(s)),
                    Err(_) => Value::Bytes(b.to_vec()),
                }
            }
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                Value::Bytes(self.read_str_or_bin()?.to_vec())
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = self.read_array_len()?;
                if n > self.buf.len() - self.pos {
                    return Err(ReadError::Incomplete);
                }
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    out.push(self.read_value_at(depth + 1)?);
                }
                Value::Array(out)
            }
            Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
                Value::Map(self.read_map_at(depth)?)
            }
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => {
                self.pos += 1;
                let len = match marker {
                    Marker::FixExt1 => 1,
                    Marker::FixExt2 => 2,
                    Marker::FixExt4 => 4,
                    Marker::FixExt8 => 8,
                    Marker::FixExt16 => 16,
                    Marker::Ext8 => usize::from(self.u8()?),
                    Marker::Ext16 => usize::from(self.be_u16()?),
                    _ => self.be_u32()? as usize,
                };
                let ty = self.u8()? as i8;
                let data = self.take(len)?;
                if ty == 0 && len == 8 {
                    let secs = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                    let nanos = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
                    Value::Time(EventTime::new(i64::from(secs), nanos))
                } else {
                    Value::Ext(ty, data.to_vec())
                }
            }
            Marker::Reserved => {
                self.pos = start;
                return self.invalid("reserved byte 0xc1 is not MessagePack");
            }
        })
    }
}

fn marker_name(m: Marker) -> &'static str {
    match m {
        Marker::FixPos(_) | Marker::FixNeg(_) => "an integer",
        Marker::U8 | Marker::U16 | Marker::U32 | Marker::U64 => "an integer",
        Marker::I8 | Marker::I16 | Marker::I32 | Marker::I64 => "an integer",
        Marker::Null => "nil",
        Marker::True | Marker::False => "a boolean",
        Marker::F32 | Marker::F64 => "a float",
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => "a string",
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => "binary",
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => "an array",
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => "a map",
        Marker::Reserved => "the reserved byte 0xc1",
        _ => "an extension",
    }
}

// ---------------------------------------------------------------------------
// Writing

/// Appends an EventTime as `fixext8`, type 0.
pub fn write_time(out: &mut Vec<u8>, t: EventTime) {
    let secs = t.secs().clamp(0, i64::from(u32::MAX)) as u32;
    out.reserve(10);
    out.push(0xd7);
    out.push(0x00);
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&t.subsec_nanos().to_be_bytes());
}

/// Appends a string.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = rmp::encode::write_str(out, s);
}

/// Appends a `str` of bytes that are not checked to be UTF-8: an opaque value that a
/// peer insists on reading as `str`.
pub fn write_str_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("a str is at most 4 GiB");
    let _ = rmp::encode::write_str_len(out, len);
    out.extend_from_slice(b);
}

/// Appends a `bin`.
pub fn write_bin(out: &mut Vec<u8>, b: &[u8]) {
    let _ = rmp::encode::write_bin(out, b);
}

/// Appends a `bin` header for `len` bytes.
pub fn write_bin_len(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_bin_len(out, len);
}

/// Appends an array header.
pub fn write_array_len(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_array_len(out, len);
}

/// Appends a map header.
pub fn write_map_len(out: &mut Vec<u8>, len: u32) {
    let _ = rmp::encode::write_map_len(out, len);
}

/// Appends an integer in its smallest form.
pub fn write_int(out: &mut Vec<u8>, v: i64) {
    let _ = rmp::encode::write_sint(out, v);
}

/// Appends an unsigned integer in its smallest form.
pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    let _ = rmp::encode::write_uint(out, v);
}

/// Appends a value.
pub fn write_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => write_int(out, *i),
        Value::UInt(u) => write_uint(out, *u),
        Value::Float(f) => {
            let _ = rmp::encode::write_f64(out, *f);
        }
        Value::Str(s) => write_str(out, s),
        Value::Bytes(b) => write_bin(out, b),
        Value::Array(a) => {
            write_array_len(out, a.len() as u32);
            for v in a {
                write_value(out, v);
            }
        }
        Value::Map(m) => write_map(out, m),
        Value::Time(t) => write_time(out, *t),
        Value::Ext(ty, data) => {
            let _ = rmp::encode::write_ext_meta(out, data.len() as u32, *ty);
            out.extend_from_slice(data);
        }
    }
}

/// Appends a map.
pub fn write_map(out: &mut Vec<u8>, m: &Map) {
    write_map_len(out, m.len() as u32);
    for (k, v) in m.iter() {
        write_str(out, k);
        write_value(out, v);
    }
}

/// Encodes a map into a new buffer.
pub fn encode_map(m: &Map) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    write_map(&mut out, m);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Map {
        let mut inner = Map::new();
        inner.insert("pod_name", "web-1");
        let mut m = Map::new();
        m.insert("log", "hello");
        m.insert("n", -5);
        m.insert("big", Value::UInt(u64::MAX));
        m.insert("f", 1.5);
        m.insert("ok", true);
        m.insert("nothing", Value::Null);
        m.insert(
            "list",
            Value::Array(vec![Value::Int(1), Value::from("two")]),
        );
        m.insert("raw", Value::Bytes(vec![0xff, 0x00]));
        m.insert("when", Value::Time(EventTime::new(1_700_000_000, 5)));
        m.insert("kubernetes", inner);
        m
    }

    #[test]
    fn values_round_trip() {
        let m = sample();
        let bytes = encode_map(&m);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.read_map().unwrap(), m);
        assert!(r.is_empty());
        let mut r = Reader::new(&bytes);
        assert_eq!(r.skip_value().unwrap().len(), bytes.len());
    }

    #[test]
    fn every_truncation_is_incomplete() {
        let bytes = encode_map(&sample());
        for cut in 0..bytes.len() {
            assert_eq!(
                Reader::new(&bytes[..cut]).skip_value(),
                Err(ReadError::Incomplete),
                "cut {cut}"
            );
            assert_eq!(
                Reader::new(&bytes[..cut]).read_map(),
                Err(ReadError::Incomplete),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn event_time_in_both_ext_forms() {
        // fixext8 and ext8 forms, straight from the Forward Protocol v1 spec's diagram.
        let fixext = [0xd7, 0x00, 0x5b, 0x0b, 0x5e, 0x80, 0x00, 0x00, 0x00, 0x2a];
        let ext8 = [
            0xc7, 0x08, 0x00, 0x5b, 0x0b, 0x5e, 0x80, 0x00, 0x00, 0x00, 0x2a,
        ];
        let want = EventTime::new(0x5b0b_5e80, 42);
        assert_eq!(Reader::new(&fixext).read_time().unwrap(), want);
        assert_eq!(Reader::new(&ext8).read_time().unwrap(), want);
        assert_eq!(
            Reader::new(&[0xce, 0x5b, 0x0b, 0x5e, 0x80])
                .read_time()
                .unwrap(),
            EventTime::new(0x5b0b_5e80, 0)
        );
        let mut out = Vec::new();
        write_time(&mut out, want);
        assert_eq!(out, fixext);
        let err = Reader::new(&[0xd7, 0x05, 0, 0, 0, 0, 0, 0, 0, 0])
            .read_time()
            .unwrap_err();
        assert!(err.to_string().contains("ext type 5"), "{err}");
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let bytes = vec![0x91u8; 100_000];
        assert_eq!(Reader::new(&bytes).skip_value(), Err(ReadError::Incomplete));
        let mut nested = vec![0x91u8; 1000];
        nested.push(0xc0);
        assert!(Reader::new(&nested).skip_value().is_ok());
        let err = Reader::new(&nested).read_value().unwrap_err();
        assert!(matches!(err, ReadError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn lying_lengths_do_not_allocate() {
        // An array32 header claiming four billion elements, with nothing behind it.
        let bytes = [0xdd, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(Reader::new(&bytes).read_value(), Err(ReadError::Incomplete));
        assert_eq!(Reader::new(&bytes).skip_value(), Err(ReadError::Incomplete));
        assert!(matches!(
            Reader::new(&[0xc1]).skip_value(),
            Err(ReadError::Invalid { .. })
        ));
    }
}
