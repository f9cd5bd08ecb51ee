//! `${NAME}` references, resolved inside scalar values after the YAML is parsed, so
//! that whatever a variable holds (` #`, `: `, a leading `*`, `&`, `!`, `{`, `[` or
//! `'`, several lines) is the value itself and can never change the document around
//! it.
//!
//! Before parsing, each well-formed `${...}` (and each `$${` escape) is swapped for a
//! marker made of private-use characters, which YAML reads as ordinary text in any
//! scalar, quoted or plain, block or flow (`{ cluster: ${CLUSTER} }` stays a flow map
//! whose value is one scalar). After parsing, the markers left in scalars are
//! replaced by the variables' values; markers in comments are gone with the comments.

/// Opens a reference marker: `OPEN <index> CLOSE`.
const OPEN: char = '\u{E000}';
/// Closes a reference marker.
const CLOSE: char = '\u{E001}';
/// Stands for a literal `${` (written `$${`).
const LITERAL: char = '\u{E002}';

/// A `${...}` as written, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference {
    /// What is between the braces: `NAME` or `NAME:-default`.
    expr: String,
    /// 1-based line.
    pub line: usize,
}

/// A reference that cannot be resolved, with its line and what to tell the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unresolved {
    /// 1-based line.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// Swaps every `${...}` and `$${` of `raw` for a marker; returns the text to parse and
/// the references, indexed by their markers. `None` when the text has both a `$` and
/// private-use characters of its own that could be taken for markers.
pub(crate) fn protect(raw: &str) -> Option<(String, Vec<Reference>)> {
    if !raw.contains('$') {
        return Some((raw.to_string(), Vec::new()));
    }
    if raw.contains([OPEN, CLOSE, LITERAL]) {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    let mut refs = Vec::new();
    for (i, line) in raw.split_inclusive('\n').enumerate() {
        let mut rest = line;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push(LITERAL);
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${")
                && let Some(end) = tail.find(['}', '\n'])
                && tail[end..].starts_with('}')
            {
                out.push(OPEN);
                out.push_str(&refs.len().to_string());
                out.push(CLOSE);
                refs.push(Reference {
                    expr: tail[..end].to_string(),
                    line: i + 1,
                });
                rest = &tail[end + 1..];
            } else {
                // A `$` of its own, or a `${` not closed on its line: left as written
                // (an error if it is in a value, see `resolve`).
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    Some((out, refs))
}

/// Replaces the markers in one scalar (which starts on `line`) with environment
/// values; `${NAME:-default}` gives a default. Returns `None` when the scalar has no
/// marker (the common case: nothing is copied).
pub(crate) fn resolve(
    scalar: &str,
    line: usize,
    refs: &[Reference],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, Unresolved> {
    if let Some(pos) = scalar.find("${") {
        return Err(Unresolved {
            line: line + scalar[..pos].matches('\n').count(),
            message: "`${` is not closed by `}` on its line".into(),
        });
    }
    if !scalar.contains([OPEN, LITERAL]) {
        return Ok(None);
    }
    let mut out = String::with_capacity(scalar.len());
    let mut chars = scalar.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            LITERAL => out.push_str("${"),
            OPEN => {
                let digits = &scalar[at + OPEN.len_utf8()..];
                let end = digits.find(CLOSE).unwrap_or(digits.len());
                let reference = digits[..end]
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| refs.get(i));
                let Some(reference) = reference else {
                    // Only `protect` writes markers, so this cannot happen.
                    return Err(Unresolved {
                        line,
                        message: "damaged `${...}` reference".into(),
                    });
                };
                out.push_str(&value(reference, env)?);
                for _ in 0..digits[..end].chars().count() + 1 {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    Ok(Some(out))
}

/// The value of one reference.
fn value(r: &Reference, env: &dyn Fn(&str) -> Option<String>) -> Result<String, Unresolved> {
    let expr = &r.expr;
    let (name, default) = match expr.split_once(":-") {
        Some((n, d)) => (n, Some(d)),
        None => (expr.as_str(), None),
    };
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(Unresolved {
            line: r.line,
            message: format!("`${{{expr}}}` is not a valid environment variable reference"),
        });
    }
    env(name)
        .or_else(|| default.map(str::to_string))
        .ok_or_else(|| Unresolved {
            line: r.line,
            message: format!(
                "environment variable `{name}` is not set (referenced as `${{{expr}}}`); set it, or give a default with `${{{name}:-value}}`"
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("a #b".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    /// Protects `text` and resolves it as one scalar on line 1.
    fn one(text: &str) -> Result<String, Unresolved> {
        let (protected, refs) = protect(text).unwrap();
        Ok(resolve(&protected, 1, &refs, &env)?.unwrap_or(protected))
    }

    #[test]
    fn references_defaults_and_escapes() {
        assert_eq!(one("plain").unwrap(), "plain");
        assert_eq!(one("cost: $5").unwrap(), "cost: $5");
        assert_eq!(one("${PW}").unwrap(), "a #b");
        assert_eq!(one("x${PW}y${PW}").unwrap(), "xa #bya #b");
        assert_eq!(one("${EMPTY:-d}").unwrap(), "");
        assert_eq!(
            one("${UNSET:-/tmp/x}$${LITERAL}").unwrap(),
            "/tmp/x${LITERAL}"
        );
        assert_eq!(one("${UNSET:-a #b: {c}").unwrap(), "a #b: {c");
        let err = one("${UNSET}").unwrap_err();
        assert!(err.message.contains("`UNSET` is not set"), "{err:?}");
        assert!(
            one("${BAD-NAME}")
                .unwrap_err()
                .message
                .contains("not a valid")
        );
        assert!(one("${1X}").unwrap_err().message.contains("not a valid"));
        assert!(one("${PW").unwrap_err().message.contains("not closed"));
    }

    #[test]
    fn markers_keep_lines_and_refuse_look_alikes() {
        let (text, refs) = protect("a: 1\nb: { c: ${X} }\n# ${Y}\n").unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(!text.contains("${"));
        assert_eq!(refs.len(), 2);
        assert_eq!((refs[0].line, refs[1].line), (2, 3));
        assert_eq!(protect("a: \u{E000}0\u{E001} ${X}\n"), None);
        assert!(
            protect("a: \u{E000}\n").is_some(),
            "no reference, nothing to mistake"
        );
    }
}
