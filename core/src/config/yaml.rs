//! The config file as a tree of YAML values that remember their line, built from the
//! parser's events. Errors found while decoding take their line and key path from
//! this tree, never from an error message's text.
//!
//! `${ENV}` references are resolved here, in each scalar after parsing (see
//! [`interpolate`](super::interpolate)): a plain scalar keeps YAML's type resolution
//! on its new text (`port: ${PORT}` is a number when `PORT=24224`), and nothing a
//! variable holds can add structure to the document.

use std::collections::HashMap;

use granit_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::interpolate::{Reference, protect, resolve};

/// Deeper nesting than any config needs; bounds the decoder's recursion.
const MAX_DEPTH: usize = 128;
/// More values than any config holds; bounds what aliases can expand to.
const MAX_NODES: usize = 1_000_000;

/// One YAML value and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// 1-based line of the value's first character.
    pub line: usize,
    /// The value.
    pub body: Body,
}

/// What a [`Node`] holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Body {
    /// A scalar.
    Scalar(Scalar),
    /// A sequence, in order.
    Seq(Vec<Node>),
    /// A mapping, in the order written; keys are unique.
    Map(Vec<Entry>),
}

/// A mapping entry.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key (a scalar in every nagare config).
    pub key: Node,
    /// The value.
    pub value: Node,
}

/// A scalar's text after escapes and `${ENV}` references are resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scalar {
    /// The text.
    pub text: String,
    /// Written plain (or tagged `!!int`, `!!float`, `!!bool`, `!!null`): its type
    /// comes from its text as YAML resolves it (`24224` is a number, `true` a boolean,
    /// `~` null). Quoted and block scalars, and `!!str`, are always text.
    pub plain: bool,
}

impl Node {
    /// An empty plain scalar: YAML's null, as an empty document or `key:` holds.
    pub fn null(line: usize) -> Node {
        Node {
            line,
            body: Body::Scalar(Scalar {
                text: String::new(),
                plain: true,
            }),
        }
    }

    /// The text of a scalar.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Scalar(s) => Some(&s.text),
            _ => None,
        }
    }

    /// The node at a key path (`sinks.es.endpoints.0`): map keys by text, sequence
    /// items by index. Returns the line of the last step found (a key's own line for a
    /// map entry) and whether the whole path was found.
    pub fn lookup(&self, path: &[String]) -> (usize, bool) {
        let mut node = self;
        let mut line = self.line;
        for seg in path {
            let next = match &node.body {
                Body::Map(entries) => entries
                    .iter()
                    .find(|e| e.key.text() == Some(seg.as_str()))
                    .map(|e| (e.key.line, &e.value)),
                Body::Seq(items) => seg
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| items.get(i))
                    .map(|n| (n.line, n)),
                Body::Scalar(_) => None,
            };
            let Some((l, n)) = next else {
                return (line, false);
            };
            line = l;
            node = n;
        }
        (line, true)
    }

    fn count(&self) -> usize {
        1 + match &self.body {
            Body::Scalar(_) => 0,
            Body::Seq(items) => items.iter().map(Node::count).sum(),
            Body::Map(entries) => entries
                .iter()
                .map(|e| e.key.count() + e.value.count())
                .sum(),
        }
    }
}

/// A problem with the file as YAML, or with a `${ENV}` reference in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// The text is not YAML: the key the line starts with (if any) is not what is
    /// wrong.
    pub syntax: bool,
}

fn error(line: usize, message: impl Into<String>) -> YamlError {
    YamlError {
        line,
        message: message.into(),
        syntax: false,
    }
}

/// A collection being built.
enum Open {
    Seq {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<Node>,
    },
}

/// Looks up an environment variable.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses `text` (one YAML document) into a tree. With `env`, `${NAME}` references in
/// scalars are resolved through it.
pub(crate) fn parse(text: &str, env: Option<Env<'_>>) -> Result<Node, YamlError> {
    let protected: String;
    let mut refs: Vec<Reference> = Vec::new();
    let text = match env {
        None => text,
        Some(_) => {
            (protected, refs) = protect(text).ok_or_else(|| {
                error(
                    1,
                    "the file holds characters U+E000 to U+E002, which nagare reserves for `${...}` references; remove them",
                )
            })?;
            protected.as_str()
        }
    };
    let mut stack: Vec<Open> = Vec::new();
    // Anchored values and their sizes in values, for aliases.
    let mut anchors: HashMap<usize, (Node, usize)> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut nodes = 0usize;
    for next in Parser::new_from_str(text) {
        let (event, span) = next.map_err(|e| YamlError {
            line: e.marker().line().max(1),
            message: format!("this is not valid YAML: {}", e.info()),
            syntax: true,
        })?;
        let line = span.start.line().max(1);
        let done = match event {
            Event::DocumentStart(_) if root.is_some() => {
                return Err(error(
                    line,
                    "a config file holds one YAML document; remove the second `---` and what follows, or merge the two",
                ));
            }
            Event::Scalar(value, style, anchor, tag) => {
                let plain = resolves_by_text(style, tag.as_deref(), line)?;
                let mut text_value = if style == ScalarStyle::Plain && is_empty(&span) {
                    // The parser stands `~` in for a missing value; it is empty.
                    String::new()
                } else {
                    value.into_owned()
                };
                if let Some(env) = env
                    && let Some(resolved) = resolve(&text_value, line, &refs, env)
                        .map_err(|u| error(u.line, u.message))?
                {
                    text_value = resolved;
                }
                (
                    Node {
                        line,
                        body: Body::Scalar(Scalar {
                            text: text_value,
                            plain,
                        }),
                    },
                    anchor,
                )
            }
            Event::SequenceStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), line)?;
                stack.push(Open::Seq {
                    line,
                    anchor,
                    items: Vec::new(),
                });
                if stack.len() > MAX_DEPTH {
                    return Err(error(line, "values are nested too deep"));
                }
                continue;
            }
            Event::MappingStart(_, anchor, tag) => {
                check_collection_tag(tag.as_deref(), line)?;
                stack.push(Open::Map {
                    line,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                });
                if stack.len() > MAX_DEPTH {
                    return Err(error(line, "values are nested too deep"));
                }
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Seq {
                    line,
                    anchor,
                    items,
                }) => (
                    Node {
                        line,
                        body: Body::Seq(items),
                    },
                    anchor,
                ),
                Some(Open::Map {
                    line,
                    anchor,
                    entries,
                    ..
                }) => (
                    Node {
                        line,
                        body: Body::Map(entries),
                    },
                    anchor,
                ),
                None => return Err(error(line, "this is not valid YAML: unbalanced collection")),
            },
            Event::Alias(id) => {
                let Some((node, size)) = anchors.get(&id) else {
                    return Err(error(line, "this is not valid YAML: unknown anchor"));
                };
                // Counted before the copy is made: aliases of aliases grow
                // exponentially.
                nodes += size;
                if nodes > MAX_NODES {
                    return Err(error(
                        line,
                        "the document expands to too many values (aliases of aliases?)",
                    ));
                }
                let mut node = node.clone();
                node.line = line;
                (node, 0)
            }
            _ => continue,
        };
        let (node, anchor) = done;
        nodes += 1;
        if anchor != 0 {
            let size = node.count();
            anchors.insert(anchor, (node.clone(), size));
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                None => {
                    if let Some(text) = node.text()
                        && let Some(first) = entries.iter().find(|e| e.key.text() == Some(text))
                    {
                        return Err(error(
                            node.line,
                            format!(
                                "duplicate key `{text}` (also on line {}); each key may appear once",
                                first.key.line
                            ),
                        ));
                    }
                    *key = Some(node);
                }
                Some(k) => entries.push(Entry {
                    key: k,
                    value: node,
                }),
            },
        }
    }
    Ok(root.unwrap_or_else(|| Node::null(1)))
}

fn is_empty(span: &Span) -> bool {
    span.start.index() == span.end.index()
}

/// Whether a scalar's type comes from its text (plain, or a core-schema type tag).
fn resolves_by_text(style: ScalarStyle, tag: Option<&Tag>, line: usize) -> Result<bool, YamlError> {
    match tag {
        None => Ok(style == ScalarStyle::Plain),
        Some(t) if t.is_yaml_core_schema() => Ok(match t.suffix.as_str() {
            "str" => false,
            "int" | "float" | "bool" | "null" => true,
            _ => style == ScalarStyle::Plain,
        }),
        Some(t) => Err(unsupported_tag(t, line)),
    }
}

fn check_collection_tag(tag: Option<&Tag>, line: usize) -> Result<(), YamlError> {
    match tag {
        Some(t) if !t.is_yaml_core_schema() => Err(unsupported_tag(t, line)),
        _ => Ok(()),
    }
}

fn unsupported_tag(tag: &Tag, line: usize) -> YamlError {
    error(
        line,
        format!(
            "YAML tag `{}{}` is not used by nagare; if this is a value that starts with `!`, quote it",
            if tag.handle == "!" { "!" } else { &tag.handle },
            tag.suffix
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(text: &str, plain: bool, line: usize) -> Node {
        Node {
            line,
            body: Body::Scalar(Scalar {
                text: text.into(),
                plain,
            }),
        }
    }

    fn entries(node: &Node) -> &[Entry] {
        match &node.body {
            Body::Map(e) => e,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nodes_keep_their_lines_styles_and_order() {
        let text = "# c\na: 1\nb:\n  c: \"x\"\n  d: [1, {e: f}]\nlit: |\n  l1\n  l2\nempty:\n&k k: &v val\nm: *v\nt: !!str 12\n";
        let root = parse(text, None).unwrap();
        let e = entries(&root);
        assert_eq!(e[0].key, scalar("a", true, 2));
        assert_eq!(e[0].value, scalar("1", true, 2));
        let b = entries(&e[1].value);
        assert_eq!(e[1].value.line, 4);
        assert_eq!(b[0].value, scalar("x", false, 4));
        assert_eq!(b[1].value.line, 5);
        assert_eq!(e[2].value, scalar("l1\nl2\n", false, 7));
        assert_eq!(e[3].value, scalar("", true, 9));
        assert_eq!(e[5].value, scalar("val", true, 11));
        assert_eq!(e[6].value, scalar("12", false, 12));
        let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(root.lookup(&p("b.d.1.e")), (5, true));
        assert_eq!(root.lookup(&p("b.c")), (4, true));
        assert_eq!(root.lookup(&p("b.nope.x")), (3, false));
    }

    #[test]
    fn file_problems_name_their_line() {
        let err = |t: &str| parse(t, None).unwrap_err();
        assert_eq!(err("a: 1\nb: [1\n").line, 2);
        assert!(
            err("a: 1\nb: [1\n")
                .message
                .starts_with("this is not valid YAML")
        );
        let dup = err("sinks:\n  a: 1\n  b: 2\n  a: 3\n");
        assert_eq!(dup.line, 4);
        assert!(
            dup.message.contains("duplicate key `a` (also on line 2)"),
            "{dup:?}"
        );
        assert_eq!(err("a: 1\n---\nb: 2\n").line, 2);
        assert!(err("a: !secret x\n").message.contains("quote it"));
        let deep = format!("a: {}{}\n", "[".repeat(200), "]".repeat(200));
        assert!(err(&deep).message.contains("nested too deep"));
        assert_eq!(parse("", None).unwrap(), Node::null(1));
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        assert!(err(&bomb).message.contains("too many values"));
        let aliases = parse("a: &x {b: 1}\nc: *x\n", None).unwrap();
        // What an alias holds is written where its anchor is.
        assert_eq!(aliases.lookup(&["c".into()]), (2, true));
        assert_eq!(aliases.lookup(&["c".into(), "b".into()]), (1, true));
    }

    #[test]
    fn references_resolve_in_scalars_and_errors_name_their_line() {
        let env = |n: &str| (n == "PW").then(|| "*x: {a: 1} #c".to_string());
        let root = parse("a: ${PW}\nb: \"q${PW}\"\n", Some(&env)).unwrap();
        let e = entries(&root);
        assert_eq!(e[0].value, scalar("*x: {a: 1} #c", true, 1));
        assert_eq!(e[1].value, scalar("q*x: {a: 1} #c", false, 2));
        let err = parse("a: 1\nb: |\n  $${X}\n  ${X}\n", Some(&env)).unwrap_err();
        assert_eq!(err.line, 4, "{err:?}");
        assert!(err.message.contains("`X` is not set"), "{err:?}");
        // A reference in a comment is no reference.
        parse("a: 1 # ${X}\n", Some(&env)).unwrap();
    }
}
