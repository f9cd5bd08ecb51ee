//! `json`: one JSON value per line. An object becomes the record, nested values kept
//! as they are; any other value (an array, a string, a number) is kept whole under
//! `message_key`, so nothing a program wrote is lost.
//!
//! ```yaml
//! format: json
//! time_key: ts
//! time_format: epoch
//! ```

use nagare_core::component::Invalid;
use nagare_core::value::{Map, Str, Value};
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::{BuiltinTime, default_message_key, message_key};
use crate::error::ParseError;

/// Config of the `json` format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    /// Where a JSON value that is not an object is put.
    #[serde(default = "default_message_key")]
    pub message_key: String,
}

impl Default for JsonConfig {
    fn default() -> Self {
        Self {
            message_key: default_message_key(),
        }
    }
}

/// The `json` parser.
#[derive(Debug, Clone)]
pub struct JsonParser {
    message_key: Str,
}

impl JsonParser {
    /// Builds the parser.
    pub fn new(config: &JsonConfig) -> Result<Self, Invalid> {
        Ok(Self {
            message_key: message_key(&config.message_key)?,
        })
    }

    /// Parses one line into `record`.
    pub fn parse(&self, line: &[u8], record: &mut Map) -> Result<Option<BuiltinTime>, ParseError> {
        // One UTF-8 check of the whole line is cheaper than serde_json's check of
        // every string in it.
        let text = std::str::from_utf8(line).map_err(|e| ParseError::Json {
            offset: e.valid_up_to(),
            message: "invalid UTF-8".to_string(),
        })?;
        let mut de = serde_json::Deserializer::from_str(text);
        let value = ValueSeed
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| json_error(line, &e))?;
        match value {
            Value::Map(map) => *record = map,
            other => record.push_unchecked(self.message_key.clone(), other),
        }
        Ok(None)
    }
}

/// serde_json reports a line and column; turn them into a byte offset into the input.
fn json_error(input: &[u8], e: &serde_json::Error) -> ParseError {
    let line_start = if e.line() <= 1 {
        0
    } else {
        memchr::memchr_iter(b'\n', input)
            .nth(e.line() - 2)
            .map_or(input.len(), |i| i + 1)
    };
    let offset = (line_start + e.column().saturating_sub(1)).min(input.len());
    // serde_json appends " at line L column C"; the offset replaces it.
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    ParseError::Json { offset, message }
}

/// Builds a [`Value`] straight from serde_json's events. Unlike the generic
/// `Deserialize` of `Value`, a map is built by appending (keys are checked for
/// repeats once, cheaply, at the end), which is what makes this parser faster
/// than serde_json's own `Value`.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::UInt(v), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(Str::from(v)))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::with_capacity(12);
        while let Some(key) = access.next_key_seed(KeySeed)? {
            let value = access.next_value_seed(ValueSeed)?;
            map.push_unchecked(key, value);
        }
        Ok(Value::Map(dedup(map)))
    }
}

/// The map with repeated keys merged: a repeated key keeps its first place and
/// its last value, as JSON parsers (and Fluentd) do.
fn dedup(map: Map) -> Map {
    // Keys rarely repeat: a sorted list of 64-bit key hashes proves it for the
    // usual small object, and only a hash collision takes the checked path.
    let mut hashes = [0u64; 32];
    let n = map.len();
    if n < 2 {
        return map;
    }
    let unique = n <= hashes.len() && {
        for (h, (k, _)) in hashes.iter_mut().zip(map.iter()) {
            *h = hash(k.as_bytes());
        }
        let hashes = &mut hashes[..n];
        hashes.sort_unstable();
        hashes.windows(2).all(|w| w[0] != w[1])
    };
    if unique {
        return map;
    }
    let mut out = Map::with_capacity(n);
    for (k, v) in map {
        out.insert(k, v);
    }
    out
}

/// FNV-1a: short keys, no need for more.
fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Str;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Str, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Str;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E>(self, v: &str) -> Result<Str, E> {
        Ok(Str::from(v))
    }
}
