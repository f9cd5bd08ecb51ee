//! Records as compact JSON, written directly: the same text as `serde_json` for
//! every value, faster for the shapes logs are made of (maps of short strings and
//! integers), because it skips serde's generic machinery and writes a string that
//! needs no escape (most do not) in one piece after scanning it eight bytes at a
//! time; one of up to 64 bytes with fixed-size copies. Sinks whose cost per event is
//! mostly this encoding use it (CloudWatch Logs messages, Elasticsearch documents).

use crate::dead_letter::write_json;
use crate::value::{Map, Value};

/// Appends `map` as compact JSON, leaving out the top-level keys `skip` names.
///
/// Not [`write_map_keyed`] with [`write_str`]: written out, so that the writer on
/// every sink's path is compiled as it was measured (through the generic one, the
/// Elasticsearch request bench ran 0.98-1.03 M events/s median, against 1.14-1.19 M
/// written out, builds timed one after the other).
pub fn write_map(out: &mut Vec<u8>, map: &Map, skip: &[String]) {
    out.push(b'{');
    let mut first = true;
    for (key, value) in map.iter() {
        if skip.iter().any(|k| k == key.as_str()) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// Appends `value` as compact JSON.
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(out, *i),
        Value::Str(s) => write_str(out, s),
        Value::Map(m) => write_map(out, m, &[]),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        // Floats, big integers, bytes, times and extensions are rare in records:
        // serde's own text for them.
        other => write_json(out, other),
    }
}

/// [`write_map`], each key (at any depth) written by `key` rather than as it is:
/// for a sink that rewrites field names (Elasticsearch's dots as `_`). `key`
/// writes one JSON string.
pub fn write_map_keyed<K>(out: &mut Vec<u8>, map: &Map, skip: &[String], key: K)
where
    K: Fn(&mut Vec<u8>, &str) + Copy,
{
    out.push(b'{');
    let mut first = true;
    for (name, value) in map.iter() {
        if skip.iter().any(|k| k == name.as_str()) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        key(out, name);
        out.push(b':');
        write_value_keyed(out, value, key);
    }
    out.push(b'}');
}

/// [`write_value`], each key of its maps (at any depth) written by `key`.
pub fn write_value_keyed<K>(out: &mut Vec<u8>, value: &Value, key: K)
where
    K: Fn(&mut Vec<u8>, &str) + Copy,
{
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => write_i64(out, *i),
        Value::Str(s) => write_str(out, s),
        Value::Map(m) => write_map_keyed(out, m, &[], key),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value_keyed(out, item, key);
            }
            out.push(b']');
        }
        // Floats, big integers, bytes, times and extensions are rare in records:
        // serde's own text for them.
        other => write_json(out, other),
    }
}

fn write_i64(out: &mut Vec<u8>, i: i64) {
    if i < 0 {
        out.push(b'-');
    }
    write_u64(out, i.unsigned_abs());
}

/// Appends `n` in decimal. The digits go into a fixed-size array, copied whole and
/// then cut to their number: a copy of a fixed size is a few moves, where one of a
/// few digits' slice was a call to `memmove`.
pub fn write_u64(out: &mut Vec<u8>, n: u64) {
    let count = n.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut digits = [b'0'; 20];
    let mut rest = n;
    for digit in digits[..count].iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let len = out.len();
    out.extend_from_slice(&digits);
    out.truncate(len + count);
}

/// Whether any byte of `word` is `"`, `\` or below 0x20 (the bytes JSON escapes).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    below_space
        | zero_in(word ^ (ONES * u64::from(b'"')))
        | zero_in(word ^ (ONES * u64::from(b'\\')))
        != 0
}

/// Whether `bytes` has any byte JSON escapes, looked at in 8-byte words: the words
/// at every multiple of 8 and the last 8 bytes (overlapping); shorter strings in
/// two overlapping 4-byte halves, or three single bytes.
#[inline]
fn is_clean(bytes: &[u8]) -> bool {
    let len = bytes.len();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    if len >= 8 {
        let mut at = 0;
        while at + 8 <= len {
            if needs_escape(word(at)) {
                return false;
            }
            at += 8;
        }
        return at == len || !needs_escape(word(len - 8));
    }
    let half = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    let w = if len >= 4 {
        half(0) | half(len - 4) << 32
    } else if len > 0 {
        // One, two or three bytes: each of them, and `A`s (clean) in the rest.
        const FILL: u64 = 0x4141_4141_4100_0000;
        FILL | u64::from(bytes[0])
            | u64::from(bytes[len / 2]) << 8
            | u64::from(bytes[len - 1]) << 16
    } else {
        return true;
    };
    !needs_escape(w)
}

/// Appends `s` as a JSON string, escaped as `serde_json` escapes. Most strings in
/// logs are short and need no escape: one of up to 64 bytes is read as two pieces
/// of fixed size that overlap (its first and last 32, 16, 8 or 4 bytes), checked in
/// words and written with fixed-size copies, each a few moves, where a slice of
/// varying length is a loop and a call to `memmove`. Longer strings are checked in
/// words and copied in one piece; a string with a byte to escape takes the cold
/// path.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let written = match bytes.len() {
        0..4 => write_tiny(out, bytes),
        4..8 => write_halves::<4>(out, bytes),
        8..16 => write_halves::<8>(out, bytes),
        16..32 => write_halves::<16>(out, bytes),
        32..=64 => write_halves::<32>(out, bytes),
        _ => {
            is_clean(bytes) && {
                out.reserve(bytes.len() + 2);
                out.push(b'"');
                out.extend_from_slice(bytes);
                out.push(b'"');
                true
            }
        }
    };
    if !written {
        write_escaped(out, bytes);
    }
}

/// `"bytes"` for `N` to `2N` clean bytes, from their first and last `N` (which
/// overlap): whether they were clean, and so written.
#[inline(always)]
fn write_halves<const N: usize>(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    let len = bytes.len();
    let first: &[u8; N] = bytes[..N].try_into().expect("N bytes");
    let last: &[u8; N] = bytes[len - N..].try_into().expect("N bytes");
    if !clean_words(first) || !clean_words(last) {
        return false;
    }
    let start = out.len();
    out.resize(start + 2 * N + 2, b'"');
    let text = &mut out[start + 1..];
    text[..N].copy_from_slice(first);
    text[len - N..len].copy_from_slice(last);
    text[len] = b'"';
    out.truncate(start + len + 2);
    true
}

/// `"bytes"` for at most 3 bytes, if clean.
#[inline(always)]
fn write_tiny(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    if !is_clean(bytes) {
        return false;
    }
    out.push(b'"');
    for &b in bytes {
        out.push(b);
    }
    out.push(b'"');
    true
}

/// Whether `N` bytes (4 or a multiple of 8) have none to escape.
#[inline(always)]
fn clean_words<const N: usize>(bytes: &[u8; N]) -> bool {
    if N < 8 {
        return is_clean(bytes);
    }
    let mut dirty = 0;
    for word in bytes.chunks_exact(8) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        dirty |= u64::from(needs_escape(word));
    }
    dirty == 0
}

/// [`write_str`] for a string with a byte to escape.
#[cold]
#[inline(never)]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_of(map: &Map) -> String {
        let mut out = Vec::new();
        write_map(&mut out, map, &[]);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_what_serde_json_writes() {
        let mut inner = Map::new();
        inner.insert("pod", "web-1");
        inner.insert(
            "list",
            Value::Array(vec![Value::Int(1), Value::Null, Value::Bool(false)]),
        );
        let mut m = Map::new();
        m.insert("msg", "say \"hi\"\n\t\u{1}\u{7f}é \\ /");
        m.insert("n", i64::MIN);
        m.insert("z", 0i64);
        m.insert("f", 1.5f64);
        m.insert("u", Value::UInt(u64::MAX));
        m.insert("k", inner);
        assert_eq!(json_of(&m), serde_json::to_string(&m).unwrap());
        let mut out = Vec::new();
        write_map(&mut out, &m, &["msg".to_string(), "k".to_string()]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"n":-9223372036854775808,"z":0,"f":1.5,"u":18446744073709551615}"#
        );
    }

    #[test]
    fn a_byte_to_escape_is_found_at_any_place_in_a_short_or_long_string() {
        const CLEAN: &str =
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghi";
        for len in 0..=CLEAN.len() {
            let clean = &CLEAN[..len];
            let mut out = Vec::new();
            write_str(&mut out, clean);
            assert_eq!(out, format!("\"{clean}\"").into_bytes());
            for at in 0..len {
                for escaped in ['"', '\\', '\n', '\u{1f}'] {
                    let mut s: String = clean.into();
                    s.replace_range(at..=at, &escaped.to_string());
                    let mut out = Vec::new();
                    write_str(&mut out, &s);
                    assert_eq!(out, serde_json::to_vec(&s).unwrap(), "{s:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn any_string_and_integer_as_serde_json(s in "\\PC*|[\\x00-\\x7f]{0,80}", n: i64) {
            let mut m = Map::new();
            m.insert(s.as_str(), s.as_str());
            m.insert("n", n);
            prop_assert_eq!(json_of(&m), serde_json::to_string(&m).unwrap());
        }
    }
}
