//! Where a decoding error is: the error type of the config decoder, which keeps
//! serde's problem in structured form beside its message, and the search that finds
//! the node an error names inside a map serde had buffered.

use std::fmt;

use serde::de::{self, Expected, Unexpected};

use super::resolve;
use super::yaml::{Body, Entry, Node};

/// Where a value sits: its key path from the root.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    /// The document itself.
    Root,
    /// A map value, under its key.
    Key(&'a Path<'a>, &'a str),
    /// A sequence item, by position.
    Index(&'a Path<'a>, usize),
}

impl Path<'_> {
    /// The segments from the root (`["sinks", "es", "endpoints", "0"]`).
    pub fn segments(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = self;
        loop {
            match at {
                Path::Root => break,
                Path::Key(parent, key) => {
                    out.push((*key).to_string());
                    at = parent;
                }
                Path::Index(parent, i) => {
                    out.push(i.to_string());
                    at = parent;
                }
            }
        }
        out.reverse();
        out
    }
}

/// What went wrong, kept in the form serde reported it, so that the node it is about
/// can be found in the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Problem {
    /// A key the type does not know.
    UnknownField(String),
    /// A value that names no variant.
    UnknownVariant(String),
    /// A scalar of the wrong type or value.
    Unexpected(Found),
    /// Anything else (a missing field, a type's own check).
    Other,
}

/// An unexpected scalar, as serde described it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Found {
    Str(String),
    Bool(bool),
    Unsigned(u64),
    Signed(i64),
    Float(f64),
    /// Not a scalar (a map, a sequence), or nothing to look for.
    Other,
}

impl Found {
    fn of(unexpected: &Unexpected<'_>) -> Found {
        match *unexpected {
            Unexpected::Str(s) => Found::Str(s.to_string()),
            Unexpected::Char(c) => Found::Str(c.to_string()),
            Unexpected::Bool(b) => Found::Bool(b),
            Unexpected::Unsigned(n) => Found::Unsigned(n),
            Unexpected::Signed(n) => Found::Signed(n),
            Unexpected::Float(f) => Found::Float(f),
            _ => Found::Other,
        }
    }
}

/// A decoding error and, once known, where it is.
#[derive(Debug)]
pub(crate) struct DecodeError {
    /// The problem, structured.
    pub problem: Problem,
    /// The message, in serde's words.
    pub message: String,
    /// 1-based line and key path.
    pub at: Option<(usize, Vec<String>)>,
}

impl DecodeError {
    fn new(problem: Problem, message: String) -> Self {
        DecodeError {
            problem,
            message,
            at: None,
        }
    }

    /// Places an error that came out of decoding `node` (at `path`, reported on
    /// `line`) and was not placed deeper down.
    pub(crate) fn at(mut self, node: &Node, line: usize, path: &Path<'_>) -> Self {
        if self.at.is_some() {
            return self;
        }
        let inside = match &node.body {
            Body::Scalar(_) => None,
            _ => find(node, &self.problem),
        };
        self.at = Some(match inside {
            Some((l, rel)) => {
                let mut segments = path.segments();
                segments.extend(rel);
                (l, segments)
            }
            None => (line, path.segments()),
        });
        self
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::new(Problem::Other, msg.to_string())
    }

    // The messages are serde's own (through its plain error type); the problem is
    // kept beside them.
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let message = de::value::Error::invalid_type(unexp, exp).to_string();
        DecodeError::new(Problem::Unexpected(Found::of(&unexp)), message)
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let message = de::value::Error::invalid_value(unexp, exp).to_string();
        DecodeError::new(Problem::Unexpected(Found::of(&unexp)), message)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let message = de::value::Error::unknown_variant(variant, expected).to_string();
        DecodeError::new(Problem::UnknownVariant(variant.to_string()), message)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = de::value::Error::unknown_field(field, expected).to_string();
        DecodeError::new(Problem::UnknownField(field.to_string()), message)
    }
}

/// Finds, in document order, the node inside `node` that `problem` names: the key it
/// calls unknown, or the scalar value it calls unexpected. Returns that node's line
/// (a key's line for a map value) and its path below `node`.
fn find(node: &Node, problem: &Problem) -> Option<(usize, Vec<String>)> {
    if matches!(problem, Problem::Other | Problem::Unexpected(Found::Other)) {
        return None;
    }
    let hit = |value: &Node| match (&value.body, problem) {
        (Body::Scalar(s), Problem::UnknownVariant(v)) => s.text == *v,
        (Body::Scalar(s), Problem::Unexpected(found)) => matches(&s.text, s.plain, found),
        _ => false,
    };
    let within = |value: &Node, seg: String, line: usize| {
        if hit(value) {
            return Some((line, vec![seg]));
        }
        find(value, problem).map(|(l, mut rel)| {
            rel.insert(0, seg);
            (l, rel)
        })
    };
    match &node.body {
        Body::Scalar(_) => None,
        Body::Seq(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| within(item, i.to_string(), item.line)),
        Body::Map(entries) => entries.iter().find_map(|Entry { key, value }| {
            let name = key.text()?;
            if matches!(problem, Problem::UnknownField(f) if f == name) {
                return Some((key.line, vec![name.to_string()]));
            }
            within(value, name.to_string(), key.line)
        }),
    }
}

fn matches(text: &str, plain: bool, found: &Found) -> bool {
    match found {
        Found::Str(s) => text == s,
        Found::Bool(b) => plain && resolve::bool(text) == Some(*b),
        Found::Unsigned(n) => plain && resolve::unsigned::<u64>(text) == Some(*n),
        Found::Signed(n) => plain && resolve::signed::<i64>(text) == Some(*n),
        Found::Float(f) => plain && resolve::float(text) == Some(*f),
        Found::Other => false,
    }
}
