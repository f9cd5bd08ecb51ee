//! Templates over an event's tag and record, for names a sink derives per event (a
//! CloudWatch Logs group or stream, an Elasticsearch index).
//!
//! ```text
//! /eks/{kubernetes.namespace_name}     a dotted path into the record
//! {tag} {tag_parts[0]} {tag_parts[-1]} the tag, or one of its dot-separated parts
//!                                      (negative: from the end, as in Fluentd)
//! {{ }}                                literal braces
//! ```
//!
//! A field's text is the string itself, or the JSON text of a number or boolean. A
//! field that is absent, null, a map or an array has no text: rendering fails with
//! [`Missing`], naming it, so that the caller can take a fallback instead of writing
//! a name nobody asked for.
//!
//! Templates are parsed once (at config validation, with errors naming the position)
//! and rendered per event without allocating beyond the output. A template keeps,
//! per field, where it found that field in the last record (records of one source
//! keep one key order), so it is `Send` but not `Sync`: give each worker its own.

use std::cell::Cell;
use std::fmt::{self, Write as _};

use crate::value::{Map, Value};

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Tag,
    TagIndex(i64),
    /// A dotted path, split, each part with where it was in the last record (see
    /// [`Map::get_hinted`]).
    Field(Vec<(String, Cell<u32>)>),
}

/// A template that cannot be parsed: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template `{template}`, at character {position}: {problem}")]
pub struct TemplateError {
    /// The template as written.
    pub template: String,
    /// The character position (0-based) of the problem.
    pub position: usize,
    /// What is wrong and what to write instead.
    pub problem: String,
}

/// Why a template has no text for an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Missing {
    /// The record has no such field, or it is null.
    #[error("the record has no field `{0}`")]
    Field(String),
    /// The field holds a map or an array, which has no single text.
    #[error("field `{field}` is {kind}, not a string, number or boolean")]
    NotText {
        /// The dotted path.
        field: String,
        /// The value's kind.
        kind: &'static str,
    },
    /// The tag has no part at that index.
    #[error("tag `{tag}` has no part [{index}]")]
    TagPart {
        /// The event's tag.
        tag: String,
        /// The index asked for.
        index: i64,
    },
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Template {
    /// Parses `source`.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let err = |position: usize, problem: String| TemplateError {
            template: source.to_string(),
            position,
            problem,
        };
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().enumerate().peekable();
        while let Some((pos, (_, c))) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|(_, (_, n))| *n == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|(_, (_, n))| *n == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(err(
                        pos,
                        "a `}` closes nothing; write `}}` for a literal brace".into(),
                    ));
                }
                '{' => {
                    let mut inner = String::new();
                    let closed = loop {
                        match chars.next() {
                            Some((_, (_, '}'))) => break true,
                            Some((_, (_, c))) => inner.push(c),
                            None => break false,
                        }
                    };
                    if !closed {
                        return Err(err(
                            pos,
                            "a `{` is never closed; close it with `}`, or write `{{` for a literal brace".into(),
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(placeholder(&inner).map_err(|p| err(pos + 1, p))?);
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Piece::Literal(literal));
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether it has no placeholder (the same text for every event).
    pub fn is_constant(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// The text for an event of `tag` with `record`.
    pub fn render(&self, tag: &str, record: &Map) -> Result<String, Missing> {
        let mut out = String::new();
        self.render_into(tag, record, &mut out)?;
        Ok(out)
    }

    /// Appends the text for an event of `tag` with `record` to `out`; on `Missing`,
    /// `out` holds part of it.
    pub fn render_into(&self, tag: &str, record: &Map, out: &mut String) -> Result<(), Missing> {
        self.render_into_with(tag, record, out, |_, text, out| out.push_str(text))
    }

    /// The literal pieces (the text between placeholders, `{{` and `}}` as single
    /// braces), in order.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Piece::Literal(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Like [`render_into`](Template::render_into), but each literal piece is written
    /// by `literal(i, text, out)`, `i` its position among [`literals`](Template::literals):
    /// for a sink that reads conversions in the literal text (strftime of the event
    /// time in an Elasticsearch index), never in the values of fields.
    pub fn render_into_with(
        &self,
        tag: &str,
        record: &Map,
        out: &mut String,
        mut literal: impl FnMut(usize, &str, &mut String),
    ) -> Result<(), Missing> {
        let mut i = 0;
        for part in &self.parts {
            match part {
                Piece::Literal(s) => {
                    literal(i, s, out);
                    i += 1;
                }
                Piece::Tag => out.push_str(tag),
                Piece::TagIndex(index) => out.push_str(tag_part(tag, *index)?),
                Piece::Field(path) => field_text(record, path, out)?,
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

/// The part between braces.
fn placeholder(inner: &str) -> Result<Piece, String> {
    let inner = inner.trim();
    if inner == "tag" {
        return Ok(Piece::Tag);
    }
    if let Some(rest) = inner.strip_prefix("tag_parts") {
        let index = rest
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                format!("`{{{inner}}}`: write `{{tag_parts[N]}}` with an integer N (negative counts from the end)")
            })?;
        return Ok(Piece::TagIndex(index));
    }
    if inner.is_empty() {
        return Err("`{}` names nothing; write `{tag}`, `{tag_parts[N]}` or a field like `{kubernetes.pod_name}`".into());
    }
    let path: Vec<(String, Cell<u32>)> = inner
        .split('.')
        .map(|p| (p.to_string(), Cell::new(0)))
        .collect();
    if path.iter().any(|(p, _)| p.is_empty()) {
        return Err(format!(
            "`{{{inner}}}` has an empty part; a field path is names joined by single dots"
        ));
    }
    if let Some(c) = inner.chars().find(|c| matches!(c, '{' | '[' | ']' | ' ')) {
        return Err(format!(
            "`{{{inner}}}` holds `{c}`, which no field path has"
        ));
    }
    Ok(Piece::Field(path))
}

fn tag_part(tag: &str, index: i64) -> Result<&str, Missing> {
    let missing = || Missing::TagPart {
        tag: tag.to_string(),
        index,
    };
    let n = tag.split('.').count() as i64;
    let at = if index < 0 { n + index } else { index };
    if at < 0 || at >= n {
        return Err(missing());
    }
    tag.split('.').nth(at as usize).ok_or_else(missing)
}

fn field_text(record: &Map, path: &[(String, Cell<u32>)], out: &mut String) -> Result<(), Missing> {
    let name = || {
        path.iter()
            .map(|(p, _)| p.as_str())
            .collect::<Vec<_>>()
            .join(".")
    };
    let (first, hint) = &path[0];
    let mut cur = record.get_hinted(first, hint);
    for (part, hint) in &path[1..] {
        cur = cur
            .and_then(Value::as_map)
            .and_then(|m| m.get_hinted(part, hint));
    }
    match cur {
        None | Some(Value::Null) => Err(Missing::Field(name())),
        Some(Value::Str(s)) => {
            out.push_str(s);
            Ok(())
        }
        Some(Value::Bytes(b)) => {
            out.push_str(&String::from_utf8_lossy(b));
            Ok(())
        }
        Some(Value::Int(i)) => {
            let _ = write!(out, "{i}");
            Ok(())
        }
        Some(Value::UInt(u)) => {
            let _ = write!(out, "{u}");
            Ok(())
        }
        Some(Value::Bool(b)) => {
            let _ = write!(out, "{b}");
            Ok(())
        }
        Some(v @ Value::Float(_)) => {
            out.push_str(&v.to_text());
            Ok(())
        }
        Some(v) => Err(Missing::NotText {
            field: name(),
            kind: v.kind(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> Map {
        let mut k = Map::new();
        k.insert("namespace_name", "prod");
        k.insert("pod_name", "web-1");
        k.insert("labels", Map::new());
        let mut m = Map::new();
        m.insert("kubernetes", k);
        m.insert("n", 42i64);
        m.insert("ok", true);
        m.insert("f", 1.5f64);
        m.insert("nothing", Value::Null);
        m
    }

    fn render(t: &str, tag: &str) -> Result<String, Missing> {
        Template::parse(t).expect("parses").render(tag, &record())
    }

    #[test]
    fn renders_fields_tags_and_literals() {
        assert_eq!(
            render("/eks/{kubernetes.namespace_name}", "kube.a").unwrap(),
            "/eks/prod"
        );
        assert_eq!(
            render("{kubernetes.pod_name}/{tag}", "kube.a").unwrap(),
            "web-1/kube.a"
        );
        assert_eq!(
            render("{tag_parts[0]}-{tag_parts[-1]}", "a.b.c").unwrap(),
            "a-c"
        );
        assert_eq!(render("{tag_parts[ 1 ]}", "a.b.c").unwrap(), "b");
        assert_eq!(render("{n}:{ok}:{f}", "t").unwrap(), "42:true:1.5");
        assert_eq!(render("{{x}}{{", "t").unwrap(), "{x}{");
        assert_eq!(render("plain", "t").unwrap(), "plain");
        assert!(Template::parse("plain {{}}").unwrap().is_constant());
        assert!(!Template::parse("{tag}").unwrap().is_constant());
    }

    #[test]
    fn literals_can_be_written_by_the_caller() {
        let t = Template::parse("logs-{kubernetes.namespace_name}-%Y{{x}}").unwrap();
        assert_eq!(t.literals().collect::<Vec<_>>(), ["logs-", "-%Y{x}"]);
        let mut out = String::new();
        t.render_into_with("t", &record(), &mut out, |i, text, out| {
            out.push_str(&format!("<{i}:{}>", text.replace("%Y", "2024")));
        })
        .unwrap();
        // A field's value is never given to the caller: only literals are.
        assert_eq!(out, "<0:logs->prod<1:-2024{x}>");
        let mut m = Map::new();
        m.insert("v", "%Y");
        let mut out = String::new();
        Template::parse("a{v}")
            .unwrap()
            .render_into_with("t", &m, &mut out, |_, text, out| {
                out.push_str(&text.to_uppercase())
            })
            .unwrap();
        assert_eq!(out, "A%Y");
    }

    #[test]
    fn names_what_is_missing() {
        assert_eq!(
            render("{kubernetes.container_name}", "t"),
            Err(Missing::Field("kubernetes.container_name".into()))
        );
        assert_eq!(
            render("{nothing}", "t"),
            Err(Missing::Field("nothing".into()))
        );
        assert_eq!(
            render("{kubernetes.labels}", "t"),
            Err(Missing::NotText {
                field: "kubernetes.labels".into(),
                kind: "map"
            })
        );
        assert_eq!(
            render("{n.deeper}", "t"),
            Err(Missing::Field("n.deeper".into()))
        );
        assert_eq!(
            render("{tag_parts[3]}", "a.b.c"),
            Err(Missing::TagPart {
                tag: "a.b.c".into(),
                index: 3
            })
        );
        assert!(render("{tag_parts[-4]}", "a.b.c").is_err());
        assert_eq!(
            Missing::Field("a.b".into()).to_string(),
            "the record has no field `a.b`"
        );
    }

    #[test]
    fn parse_errors_name_the_position() {
        let cases = [
            ("/eks/{kubernetes", 5, "never closed"),
            ("a}b", 1, "closes nothing"),
            ("x{}", 2, "names nothing"),
            ("{a..b}", 1, "empty part"),
            ("{tag_parts[x]}", 1, "integer N"),
            ("{tag_parts}", 1, "integer N"),
            ("é{a b}", 2, "holds ` `"),
        ];
        for (source, position, words) in cases {
            let e = Template::parse(source).expect_err(source);
            assert_eq!(e.position, position, "{source}: {e}");
            assert!(e.to_string().contains(words), "{source}: {e}");
            assert!(e.to_string().contains(source), "{source}: {e}");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_round_trips_literals(s in "\\PC{0,40}") {
            let _ = Template::parse(&s);
            let escaped = s.replace('{', "{{").replace('}', "}}");
            let t = Template::parse(&escaped).unwrap();
            prop_assert!(t.is_constant());
            prop_assert_eq!(t.render("t", &Map::new()).unwrap(), s);
            prop_assert_eq!(t.as_str(), escaped.as_str());
        }

        #[test]
        fn a_field_renders_its_text(name in "[a-z_]{1,8}", value in "\\PC{0,20}") {
            let mut m = Map::new();
            m.insert(name.as_str(), value.as_str());
            let t = Template::parse(&format!("<{{{name}}}>")).unwrap();
            prop_assert_eq!(t.render("t", &m).unwrap(), format!("<{value}>"));
        }
    }
}
