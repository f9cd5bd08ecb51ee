//! A serde deserializer over the config tree. Every error leaves it with the line and
//! key path of the value it is about, taken from the tree: the node being decoded
//! when the error arose, or, for an error that serde raised inside a map it had
//! buffered (`#[serde(tag)]`, `untagged`, `flatten`), the node inside that map which
//! the error names in its structured form (the unknown key, the unexpected value; see
//! [`located`](super::located)).

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Expected, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};

use super::located::{DecodeError, Path};
use super::resolve;
use super::tagged::SPLIT;
use super::yaml::{Body, Entry, Node};

/// Decodes the document.
pub(crate) fn decode<T: DeserializeOwned>(root: &Node) -> Result<T, DecodeError> {
    decode_at(root, &Path::Root, root.line)
}

/// Decodes one value of the document, at `path`, reported on `line`.
pub(crate) fn decode_at<T: DeserializeOwned>(
    node: &Node,
    path: &Path<'_>,
    line: usize,
) -> Result<T, DecodeError> {
    T::deserialize(NodeDe { node, path, line }).map_err(|e| e.at(node, line, path))
}

/// A node to decode.
#[derive(Clone, Copy)]
pub(crate) struct NodeDe<'a> {
    node: &'a Node,
    path: &'a Path<'a>,
    /// Where errors about the node as a whole are reported: a map value's key line.
    line: usize,
}

impl NodeDe<'_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match &self.node.body {
            Body::Scalar(s) if s.plain => resolve::unexpected(&s.text),
            Body::Scalar(s) => Unexpected::Str(&s.text),
            Body::Seq(_) => Unexpected::Seq,
            Body::Map(_) => Unexpected::Map,
        }
    }

    fn invalid<T>(&self, exp: &dyn Expected) -> Result<T, DecodeError> {
        Err(de::Error::invalid_type(self.unexpected(), exp))
    }

    /// The text of a plain scalar, whose type comes from it.
    fn plain(&self) -> Option<&str> {
        match &self.node.body {
            Body::Scalar(s) if s.plain => Some(&s.text),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        self.plain().is_some_and(resolve::null)
    }

    fn entries(&self) -> Option<&[Entry]> {
        match &self.node.body {
            Body::Map(e) => Some(e),
            // `key:` with nothing after it is an empty map, as in serde_yaml.
            _ if self.plain() == Some("") => Some(&[]),
            _ => None,
        }
    }

    fn items(&self) -> Option<&[Node]> {
        match &self.node.body {
            Body::Seq(items) => Some(items),
            _ if self.plain() == Some("") => Some(&[]),
            _ => None,
        }
    }
}

macro_rules! number {
    ($method:ident, $visit:ident, $parse:expr) => {
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
            match self.plain().and_then($parse) {
                Some(n) => v.$visit(n),
                None => self.invalid(&v),
            }
        }
    };
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        match &self.node.body {
            Body::Scalar(s) if s.plain => resolve::visit(&s.text, v),
            Body::Scalar(s) => v.visit_str(&s.text),
            Body::Seq(items) => v.visit_seq(SeqDe::new(items, self.path)),
            Body::Map(entries) => v.visit_map(MapDe::new(entries, self.path)),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        match self.plain().and_then(resolve::bool) {
            Some(b) => v.visit_bool(b),
            None => self.invalid(&v),
        }
    }

    number!(deserialize_i64, visit_i64, resolve::signed::<i64>);
    number!(deserialize_i128, visit_i128, resolve::signed::<i128>);
    number!(deserialize_u64, visit_u64, resolve::unsigned::<u64>);
    number!(deserialize_u128, visit_u128, resolve::unsigned::<u128>);
    number!(deserialize_f64, visit_f64, resolve::float);

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_i64(v)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_u64(v)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_u64(v)
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        // Any scalar is text as written, whatever its type would be: a password of
        // `0123` stays `0123`.
        match &self.node.body {
            Body::Scalar(s) => v.visit_str(&s.text),
            _ => self.invalid(&v),
        }
    }
    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(v)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(v)
    }
    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.invalid(&v)
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        self.invalid(&v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        if self.is_null() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        if self.is_null() {
            v.visit_unit()
        } else {
            self.invalid(&v)
        }
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DecodeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        match self.items() {
            Some(items) => v.visit_seq(SeqDe::new(items, self.path)),
            None => self.invalid(&v),
        }
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DecodeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        match self.entries() {
            Some(entries) => v.visit_map(MapDe::new(entries, self.path)),
            None => self.invalid(&v),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DecodeError> {
        if name != SPLIT {
            return self.deserialize_map(v);
        }
        let Some(entries) = self.entries() else {
            return self.invalid(&v);
        };
        // The keys `fields` names, then the others, each as a map of its own that
        // keeps every entry's line.
        let (head, rest): (Vec<Entry>, Vec<Entry>) = entries
            .iter()
            .cloned()
            .partition(|e| e.key.text().is_some_and(|k| fields.contains(&k)));
        let part = |entries| Node {
            line: self.node.line,
            body: Body::Map(entries),
        };
        v.visit_seq(SplitDe {
            parts: [part(head), part(rest)],
            next: 0,
            path: self.path,
            line: self.line,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DecodeError> {
        match &self.node.body {
            Body::Scalar(_) => v.visit_enum(self),
            _ => self.invalid(&v),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DecodeError> {
        v.visit_unit()
    }
}

/// A unit variant, written as its name.
impl<'de> EnumAccess<'de> for NodeDe<'_> {
    type Error = DecodeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), DecodeError> {
        let variant = seed.deserialize(self)?;
        Ok((variant, self))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = DecodeError;

    fn unit_variant(self) -> Result<(), DecodeError> {
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, _: S) -> Result<S::Value, DecodeError> {
        Err(de::Error::invalid_type(
            Unexpected::UnitVariant,
            &"a variant with a value",
        ))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DecodeError> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &v))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DecodeError> {
        Err(de::Error::invalid_type(Unexpected::UnitVariant, &v))
    }
}

struct SeqDe<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Node>>,
    len: usize,
    path: &'a Path<'a>,
}

impl<'a> SeqDe<'a> {
    fn new(items: &'a [Node], path: &'a Path<'a>) -> Self {
        SeqDe {
            len: items.len(),
            items: items.iter().enumerate(),
            path,
        }
    }
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DecodeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DecodeError> {
        let Some((i, node)) = self.items.next() else {
            return Ok(None);
        };
        self.len -= 1;
        let path = Path::Index(self.path, i);
        let de = NodeDe {
            node,
            path: &path,
            line: node.line,
        };
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.at(node, node.line, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

struct MapDe<'a> {
    entries: std::slice::Iter<'a, Entry>,
    current: Option<&'a Entry>,
    len: usize,
    path: &'a Path<'a>,
}

impl<'a> MapDe<'a> {
    fn new(entries: &'a [Entry], path: &'a Path<'a>) -> Self {
        MapDe {
            len: entries.len(),
            entries: entries.iter(),
            current: None,
            path,
        }
    }
}

/// A key's text for key paths; a key that is not a scalar (YAML allows it, nagare
/// never uses it) shows as `?`.
fn key_name(entry: &Entry) -> &str {
    entry.key.text().unwrap_or("?")
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DecodeError;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DecodeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        self.len -= 1;
        let path = Path::Key(self.path, key_name(entry));
        let key = &entry.key;
        let de = NodeDe {
            node: key,
            path: &path,
            line: key.line,
        };
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.at(key, key.line, &path))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, DecodeError> {
        let entry = self
            .current
            .take()
            .ok_or_else(|| de::Error::custom("a map value was asked for before its key"))?;
        let path = Path::Key(self.path, key_name(entry));
        let (node, line) = (&entry.value, entry.key.line);
        seed.deserialize(NodeDe {
            node,
            path: &path,
            line,
        })
        .map_err(|e| e.at(node, line, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

/// A map split in two for [`Tagged`](super::tagged::Tagged): the keys of its head,
/// then the rest.
struct SplitDe<'a> {
    parts: [Node; 2],
    next: usize,
    path: &'a Path<'a>,
    line: usize,
}

impl<'de> SeqAccess<'de> for SplitDe<'_> {
    type Error = DecodeError;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, DecodeError> {
        let Some(node) = self.parts.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let de = NodeDe {
            node,
            path: self.path,
            line: self.line,
        };
        seed.deserialize(de)
            .map(Some)
            .map_err(|e| e.at(node, self.line, self.path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.parts.len() - self.next)
    }
}
