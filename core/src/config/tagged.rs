//! Component configs chosen by a key: `type: file` beside the file sink's own keys.
//!
//! serde's `#[serde(tag = "type")]` and `#[serde(flatten)]` read such a map into a
//! buffer of plain values first, and the lines and key paths of everything in it are
//! lost before the chosen kind sees its keys. A [`Tagged`] type instead has the
//! document's decoder split the map in two, the keys every kind shares (the kind's
//! name among them) and the kind's own keys, and hands the second part straight to
//! the chosen kind's config, each key and value still where it was written.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::value::MapAccessDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor,
};

use super::de::decode_at;
use super::located::Path;
use super::yaml::{Body, Entry, Node, Scalar};

/// The struct name by which a [`Tagged`] type asks the config decoder for the split:
/// the decoder answers with two maps in a sequence instead of one map. (Other
/// deserializers answer with the whole map, which is then split here.)
pub(crate) const SPLIT: &str = "$nagare::config::Split";

/// A closed set of kinds chosen by one key of a map, each kind with its own config
/// in the other keys.
///
/// ```ignore
/// #[derive(Deserialize)]
/// struct SinkHead {
///     #[serde(rename = "type")]
///     kind: Kind<SinkEntry>,
///     #[serde(rename = "match")]
///     pattern: TagPattern,
/// }
///
/// impl Tagged for SinkEntry {
///     type Head = SinkHead;
///     const KINDS: &'static [&'static str] = &["file", "stdout"];
///     fn decode<'de, D: Deserializer<'de>>(head: SinkHead, rest: D) -> Result<Self, D::Error> {
///         let kind = match head.kind.as_str() {
///             "file" => SinkConfig::File(Deserialize::deserialize(rest)?),
///             ...
///         };
///         ...
///     }
/// }
/// ```
pub trait Tagged: Sized {
    /// The keys every kind has: the one naming the kind (a [`Kind`]) and any others
    /// (`match`). A struct; its field names say which keys are its.
    type Head: DeserializeOwned;

    /// The kinds, as written in the config.
    const KINDS: &'static [&'static str];

    /// Builds the value from the head and the other keys, which belong to the kind
    /// the head names.
    fn decode<'de, D: Deserializer<'de>>(head: Self::Head, rest: D) -> Result<Self, D::Error>;
}

/// `Deserialize::deserialize` for a [`Tagged`] type.
pub fn deserialize<'de, T: Tagged, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    d.deserialize_struct(SPLIT, field_names::<T::Head>(), SplitVisitor(PhantomData))
}

/// The name of a kind (`type: file`), one of `T::KINDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kind<T> {
    name: String,
    of: PhantomData<fn() -> T>,
}

impl<T> Kind<T> {
    /// The kind as written.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl<'de, T: Tagged> Deserialize<'de> for Kind<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if T::KINDS.contains(&name.as_str()) {
            Ok(Kind {
                name,
                of: PhantomData,
            })
        } else {
            Err(de::Error::unknown_variant(&name, T::KINDS))
        }
    }
}

struct SplitVisitor<T>(PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for SplitVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a map naming one of the kinds {}", T::KINDS.join(", "))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut parts: A) -> Result<T, A::Error> {
        let head: T::Head = parts
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        parts
            .next_element_seed(Rest::<T>(head))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        // Not the config decoder: take the map whole and split it the same way.
        let Buffered(node) = Buffered::deserialize(MapAccessDeserializer::new(map))?;
        decode_at::<Wrapped<T>>(&node, &Path::Root, 0)
            .map(|w| w.0)
            .map_err(de::Error::custom)
    }
}

/// The second part of the split: the chosen kind's own keys.
struct Rest<T: Tagged>(T::Head);

impl<'de, T: Tagged> DeserializeSeed<'de> for Rest<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        T::decode(self.0, d)
    }
}

/// `T` decoded through [`deserialize`], for the fallback above.
struct Wrapped<T>(T);

impl<'de, T: Tagged> Deserialize<'de> for Wrapped<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize(d).map(Wrapped)
    }
}

/// The field names of a struct that derives `Deserialize`: serde hands them to
/// `deserialize_struct`, where this deserializer catches them.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Probe;

    #[derive(Debug)]
    struct Fields(&'static [&'static str]);

    impl fmt::Display for Fields {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "fields {:?}", self.0)
        }
    }
    impl std::error::Error for Fields {}
    impl de::Error for Fields {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Fields(&[])
        }
    }

    impl<'de> Deserializer<'de> for Probe {
        type Error = Fields;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Fields> {
            Err(Fields(&[]))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Fields> {
            Err(Fields(fields))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
            enum identifier ignored_any
        }
    }

    match T::deserialize(Probe) {
        Err(Fields(fields)) => fields,
        Ok(_) => &[],
    }
}

/// A value from any deserializer, as a tree (without lines).
struct Buffered(Node);

impl<'de> Deserialize<'de> for Buffered {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BufferVisitor).map(Buffered)
    }
}

struct BufferVisitor;

fn scalar(text: String, plain: bool) -> Node {
    Node {
        line: 0,
        body: Body::Scalar(Scalar { text, plain }),
    }
}

impl<'de> Visitor<'de> for BufferVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(scalar(v.to_string(), true))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(scalar(v.to_string(), true))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(scalar(v.to_string(), true))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(scalar(format!("{v:?}"), true))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(scalar(v.to_string(), false))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::null(0))
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::null(0))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(Buffered(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node {
            line: 0,
            body: Body::Seq(items),
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((Buffered(key), Buffered(value))) = map.next_entry()? {
            entries.push(Entry { key, value });
        }
        Ok(Node {
            line: 0,
            body: Body::Map(entries),
        })
    }
}
