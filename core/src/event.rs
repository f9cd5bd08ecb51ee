//! `Event` and `Tag`: the unit a parser produces and a filter sees.

use std::fmt;
use std::sync::Arc;

use crate::time::EventTime;
use crate::value::Map;

/// A Fluentd tag: dot-separated parts that route an event (`kube.var.log.app`).
/// Cheap to clone; every event of a chunk shares one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(Arc<str>);

impl Tag {
    /// A tag from text.
    pub fn new(s: &str) -> Self {
        Tag(Arc::from(s))
    }

    /// The tag's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Tag {
    fn from(s: &str) -> Self {
        Tag::new(s)
    }
}

impl From<String> for Tag {
    fn from(s: String) -> Self {
        Tag(Arc::from(s))
    }
}

impl std::ops::Deref for Tag {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// One log event: a tag, a time and a structured record.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Routes the event to filters and sinks.
    pub tag: Tag,
    /// When the event happened.
    pub time: EventTime,
    /// The structured record.
    pub record: Map,
}

impl Event {
    /// An event.
    pub fn new(tag: Tag, time: EventTime, record: Map) -> Self {
        Self { tag, time, record }
    }
}
