//! The record type: a `Value` tree whose maps keep insertion order.
//!
//! Records are small (a dozen keys is typical), so a map is a vector of pairs:
//! building one from a JSON object is a push per key, lookups are a short scan, and
//! the order in which a log line carried its fields is the order they are shipped in.
//! Short strings are stored inline (`compact_str`), which removes most allocations
//! for keys and small values.

use std::fmt;

use compact_str::CompactString;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use crate::time::EventTime;

/// A string inside a record.
pub type Str = CompactString;

/// One value inside a record.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// JSON `null`, MessagePack `nil`.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// A UTF-8 string.
    Str(Str),
    /// Raw bytes (MessagePack `bin`); shown as lossy UTF-8 in JSON output.
    Bytes(Vec<u8>),
    /// A list of values.
    Array(Vec<Value>),
    /// A nested map.
    Map(Map),
    /// A timestamp (MessagePack ext type 0 inside a record).
    Time(EventTime),
    /// Any other MessagePack extension, kept as is.
    Ext(i8, Vec<u8>),
}

impl Value {
    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The map inside, if this is a map.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The map inside, mutably, if this is a map.
    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The integer inside, if this is an integer that fits `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// A short name of the value's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::UInt(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Bytes(_) => "bytes",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
            Value::Time(_) => "time",
            Value::Ext(..) => "ext",
        }
    }

    /// Renders the value as text the way a user expects to see it in a log field:
    /// strings as they are, everything else as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Value::Str(s) => s.to_string(),
            Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(Str::from(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Str::from(s))
    }
}

impl From<Str> for Value {
    fn from(s: Str) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Float(f)
    }
}

impl From<Map> for Value {
    fn from(m: Map) -> Self {
        Value::Map(m)
    }
}

/// A map with string keys that keeps insertion order. Inserting an existing key
/// replaces its value in place.
#[derive(Clone, Default, PartialEq)]
pub struct Map {
    entries: Vec<(Str, Value)>,
}

impl Map {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map with room for `n` entries.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// The value under `key`, looking first at position `hint`, where it was in the
    /// last map looked at: records of one source keep their keys in one order, so a
    /// caller that looks up the same key in many of them mostly finds it at once.
    /// `hint` is set to where it was found.
    pub fn get_hinted(&self, key: &str, hint: &std::cell::Cell<u32>) -> Option<&Value> {
        if let Some((k, v)) = self.entries.get(hint.get() as usize)
            && k.as_str() == key
        {
            return Some(v);
        }
        let (at, (_, v)) = self
            .entries
            .iter()
            .enumerate()
            .find(|(_, (k, _))| k.as_str() == key)?;
        hint.set(at as u32);
        Some(v)
    }

    /// The value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the previous value if there was one.
    pub fn insert(&mut self, key: impl Into<Str>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        match self.get_mut(&key) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Appends without checking for an existing key. Callers use it when the key is
    /// known to be new (a freshly parsed object), which keeps building linear.
    pub fn push_unchecked(&mut self, key: impl Into<Str>, value: Value) {
        self.entries.push((key.into(), value));
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.entries.iter().position(|(k, _)| k.as_str() == key)?;
        Some(self.entries.remove(i).1)
    }

    /// The map under `key`, created (or replacing a non-map value) if needed.
    pub fn map_mut(&mut self, key: &str) -> &mut Map {
        let i = match self.entries.iter().position(|(k, _)| k.as_str() == key) {
            Some(i) => {
                if !matches!(self.entries[i].1, Value::Map(_)) {
                    self.entries[i].1 = Value::Map(Map::new());
                }
                i
            }
            None => {
                self.entries.push((Str::from(key), Value::Map(Map::new())));
                self.entries.len() - 1
            }
        };
        match &mut self.entries[i].1 {
            Value::Map(m) => m,
            _ => unreachable!("the entry was just made a map"),
        }
    }

    /// Looks up a dotted path such as `kubernetes.pod_name`.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut cur = self.get(parts.next()?)?;
        for part in parts {
            cur = cur.as_map()?.get(part)?;
        }
        Some(cur)
    }

    /// Iterates over the entries in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Str, &Value)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Moves every entry of `other` into this map, replacing existing keys.
    pub fn merge(&mut self, other: Map) {
        if self.entries.is_empty() {
            self.entries = other.entries;
            return;
        }
        for (k, v) in other.entries {
            self.insert(k, v);
        }
    }
}

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl IntoIterator for Map {
    type Item = (Str, Value);
    type IntoIter = std::vec::IntoIter<(Str, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<K: Into<Str>, V: Into<Value>> FromIterator<(K, V)> for Map {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = Map::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::UInt(u) => s.serialize_u64(*u),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(v) => s.serialize_str(v),
            Value::Bytes(b) => s.serialize_str(&String::from_utf8_lossy(b)),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for v in a {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => m.serialize(s),
            Value::Time(t) => s.serialize_str(&t.to_rfc3339()),
            Value::Ext(_, data) => s.serialize_bytes(data),
        }
    }
}

impl Serialize for Map {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k.as_str(), v)?;
        }
        map.end()
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON or MessagePack value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(match i64::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::UInt(v),
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(Str::from(v)))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(Str::from(v)))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Value, A::Error> {
        MapVisitor.visit_map(access).map(Value::Map)
    }
}

struct MapVisitor;

impl<'de> Visitor<'de> for MapVisitor {
    type Value = Map;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Map, A::Error> {
        let mut map = Map::with_capacity(access.size_hint().unwrap_or(8).min(1024));
        while let Some(key) = access.next_key::<KeyStr>()? {
            let value: Value = access.next_value()?;
            // JSON allows repeated keys; the last one wins, as in Fluentd.
            if map.len() < 32 {
                map.insert(key.0, value);
            } else if let Some(slot) = map.get_mut(&key.0) {
                *slot = value;
            } else {
                map.push_unchecked(key.0, value);
            }
        }
        Ok(map)
    }
}

/// A map key, deserialized without an intermediate `String` where the format
/// lends the bytes.
struct KeyStr(Str);

impl<'de> Deserialize<'de> for KeyStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyStr, E> {
                Ok(KeyStr(Str::from(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<KeyStr, E> {
                Ok(KeyStr(Str::from(String::from_utf8_lossy(v))))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyStr, E> {
                Ok(KeyStr(compact_str::format_compact!("{v}")))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyStr, E> {
                Ok(KeyStr(compact_str::format_compact!("{v}")))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyStr, E> {
                Ok(KeyStr(compact_str::format_compact!("{v}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Map {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(MapVisitor)
    }
}

/// Parses a JSON object into a `Map`; `None` when the text is not a JSON object.
pub fn parse_json_object(text: &[u8]) -> Option<Map> {
    // A cheap first check avoids running the parser over plain text lines.
    let first = text.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice::<Map>(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order_and_replaces_in_place() {
        let mut m = Map::new();
        m.insert("b", 1);
        m.insert("a", 2);
        assert_eq!(m.insert("b", 3), Some(Value::Int(1)));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(m.get("b"), Some(&Value::Int(3)));
        assert_eq!(m.remove("b"), Some(Value::Int(3)));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn nested_paths() {
        let mut m = Map::new();
        m.map_mut("kubernetes").insert("pod_name", "web-1");
        assert_eq!(
            m.get_path("kubernetes.pod_name").and_then(Value::as_str),
            Some("web-1")
        );
        assert_eq!(m.get_path("kubernetes.nope"), None);
    }

    #[test]
    fn json_round_trip_keeps_order_and_types() {
        let text = br#"{"z":1,"a":{"b":[true,null,1.5,"x"]},"big":18446744073709551615,"z":2}"#;
        let m = parse_json_object(text).unwrap();
        assert_eq!(m.get("z"), Some(&Value::Int(2)));
        assert_eq!(m.get("big"), Some(&Value::UInt(u64::MAX)));
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"z":2,"a":{"b":[true,null,1.5,"x"]},"big":18446744073709551615}"#
        );
    }

    #[test]
    fn non_objects_are_not_json_records() {
        assert!(parse_json_object(b"plain text").is_none());
        assert!(parse_json_object(b"[1,2]").is_none());
        assert!(parse_json_object(b"{broken").is_none());
        assert!(parse_json_object(b"  {\"a\":1}").is_some());
    }
}
