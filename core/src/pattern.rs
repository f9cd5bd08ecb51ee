//! Fluentd tag patterns: `a.*` (one part), `a.**` (zero or more parts), `{a,b}`
//! (alternatives, which may hold patterns), `/regex/`, `\` escapes, and several
//! patterns separated by spaces (any may match).
//!
//! A pattern compiles to one anchored regular expression with the same meaning as
//! Fluentd's `GlobMatchPattern`. Fluentd's translation uses a look-ahead, which the
//! `regex` crate does not have; the three places it matters (`x.**` at the end,
//! `**.x` at the start, `x.**.y` in the middle) are written out instead.

use std::fmt;

use regex::Regex;
use thiserror::Error;

/// A pattern that could not be compiled.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("invalid tag pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A compiled tag pattern (possibly several, separated by spaces).
#[derive(Clone)]
pub struct TagPattern {
    source: String,
    regex: Regex,
}

impl TagPattern {
    /// Compiles `pattern`.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        let err = |reason: &str| PatternError {
            pattern: pattern.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = pattern.split_whitespace().collect();
        if parts.is_empty() {
            return Err(err("the pattern is empty; use `**` to match every tag"));
        }
        let mut alternatives = Vec::with_capacity(parts.len());
        for part in parts {
            alternatives.push(glob_to_regex(part).map_err(|r| err(&r))?);
        }
        let joined = format!("^(?:{})$", alternatives.join("|"));
        let regex = Regex::new(&joined).map_err(|e| err(&e.to_string()))?;
        Ok(Self {
            source: pattern.to_string(),
            regex,
        })
    }

    /// Whether `tag` matches.
    pub fn matches(&self, tag: &str) -> bool {
        self.regex.is_match(tag)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagPattern({:?})", self.source)
    }
}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PartialEq for TagPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl<'de> serde::Deserialize<'de> for TagPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TagPattern::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Translates one glob (no spaces) into a regex body.
fn glob_to_regex(pat: &str) -> Result<String, String> {
    if let Some(body) = pat.strip_prefix('/') {
        let Some(inner) = body.strip_suffix('/') else {
            return Err("a regular expression pattern must end with `/`".into());
        };
        Regex::new(inner).map_err(|e| format!("bad regular expression: {e}"))?;
        return Ok(format!("(?:{inner})"));
    }
    let chars: Vec<char> = pat.chars().collect();
    // One regex body per open `{`; alternatives collected per level.
    let mut bodies: Vec<String> = vec![String::new()];
    let mut alts: Vec<Vec<String>> = Vec::new();
    let mut dot = false;
    let mut escape = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let top = bodies.last_mut().expect("at least one body");
        if escape {
            top.push_str(&regex::escape(&c.to_string()));
            escape = false;
            i += 1;
            continue;
        }
        if c == '*' && chars.get(i + 1) == Some(&'*') {
            let dot_follows = chars.get(i + 2) == Some(&'.');
            match (dot, dot_follows) {
                // `x.**.y`: one dot, then any parts each followed by a dot.
                (true, true) => top.push_str(r"\.(?:.*\.)?"),
                // `x.**`: nothing, or a dot and anything.
                (true, false) => top.push_str(r"(?:\..*)?"),
                // `**.x`: any parts each followed by a dot, or nothing.
                (false, true) => top.push_str(r"(?:.*\.)?"),
                (false, false) => top.push_str(".*"),
            }
            dot = false;
            i += if dot_follows { 3 } else { 2 };
            continue;
        }
        if dot {
            top.push_str(r"\.");
            dot = false;
        }
        match c {
            '\\' => escape = true,
            '.' => dot = true,
            '*' => top.push_str(r"[^.]*"),
            '{' => {
                alts.push(Vec::new());
                bodies.push(String::new());
            }
            '}' if !alts.is_empty() => {
                let last = bodies.pop().expect("pushed at `{`");
                let mut set = alts.pop().expect("pushed at `{`");
                set.push(last);
                let group = format!("(?:{})", set.join("|"));
                bodies.last_mut().expect("outer body").push_str(&group);
            }
            ',' if !alts.is_empty() => {
                let last = bodies.pop().expect("pushed at `{`");
                alts.last_mut().expect("open group").push(last);
                bodies.push(String::new());
            }
            c if c.is_ascii_alphanumeric() || c == '_' => top.push(c),
            c => top.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    if escape {
        return Err("the pattern ends with a lone `\\`".into());
    }
    if dot {
        bodies.last_mut().expect("body").push_str(r"\.");
    }
    if !alts.is_empty() {
        return Err("a `{` is not closed by `}`".into());
    }
    Ok(bodies.pop().expect("one body left"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fluentd's own match table (test/test_match.rb), row for row.
    #[test]
    fn fluentd_match_table() {
        let yes = [
            ("a", "a"),
            ("a.b", "a.b"),
            ("a*", "a"),
            ("a*", "ab"),
            ("a*", "abc"),
            ("*a", "a"),
            ("*a", "ba"),
            ("*a", "cba"),
            ("*a*", "a"),
            ("*a*", "ba"),
            ("*a*", "ac"),
            ("*a*", "bac"),
            ("a.*", "a.b"),
            ("a.*", "a.c"),
            ("a.*.c", "a.b.c"),
            ("a.*.c", "a.c.c"),
            ("a.**", "a"),
            ("a.**", "a.b"),
            ("a**", "a"),
            ("a**", "ab"),
            ("a**", "abc"),
            ("a**", "a.b"),
            ("a**", "ab.c"),
            ("a**", "ab.d.e"),
            ("**.a", "a"),
            ("**.a", "b.a"),
            ("**.a", "cb.a"),
            ("**.a", "d.e.a"),
            ("**a", "a"),
            ("**a", "ba"),
            ("**a", "c.ba"),
            ("**a", "b.a"),
            ("**a", "cb.a"),
            ("**a", "d.e.a"),
            ("a.{b,c}", "a.b"),
            ("a.{b,c}", "a.c"),
            ("a.{b,c}.**", "a.b"),
            ("a.{b,c}.**", "a.c"),
            ("a.{b.**,c}", "a.b"),
            ("a.{b.**,c}", "a.b.c"),
            ("a.{b.**,c}", "a.c"),
            ("a.b a.c", "a.b"),
            ("a.b a.c", "a.c"),
            ("a.b.** a.c.**", "a.b"),
            ("a.b.** a.c.**", "a.c"),
            ("a.b.** a.c", "a.b"),
            ("a.b.** a.c", "a.b.c"),
            ("a.b.** a.c", "a.c"),
            // Beyond Fluentd's table: the middle `**`, escapes and regexes.
            ("a.**.z", "a.z"),
            ("a.**.z", "a.b.z"),
            ("a.**.z", "a.b.c.z"),
            (
                "kube.**",
                "kube.var.log.containers.web-1_default_nginx-0123abcd.log",
            ),
            ("a\\*", "a*"),
            ("/app\\.(web|api)/", "app.web"),
            ("**", ""),
            ("**", "anything.at.all"),
        ];
        let no = [
            ("a", "b"),
            ("a.b", "aab"),
            ("a*", "a.b"),
            ("a*", "ab.c"),
            ("a*", "ba"),
            ("*a", "ab"),
            ("a.*", "ab"),
            ("a.*.c", "a.c"),
            ("a.**", "ab"),
            ("a.**", "abc"),
            ("a.**", "ab.c"),
            ("a.**", "ab.d.e"),
            ("**.a", "ba"),
            ("**.a", "c.ba"),
            ("a.{b,c}", "a.d"),
            ("a.{b,c}.**", "a.d"),
            ("a.{b,c}.**", "a.cd"),
            ("a.{b.**,c}", "a.c.d"),
            ("a.b a.c", "a.d"),
            ("a.b.** a.c.**", "a.d"),
            ("a.b.** a.c.**", "a.cd"),
            ("a.b.** a.c", "a.c.d"),
            ("a.**.z", "a.bz"),
            ("a.**.z", "az"),
            ("a\\*", "ab"),
            ("/app\\.(web|api)/", "app.db"),
        ];
        for (pat, tag) in yes {
            assert!(
                TagPattern::new(pat).unwrap().matches(tag),
                "`{pat}` should match `{tag}`"
            );
        }
        for (pat, tag) in no {
            assert!(
                !TagPattern::new(pat).unwrap().matches(tag),
                "`{pat}` should not match `{tag}`"
            );
        }
    }

    #[test]
    fn bad_patterns_say_why() {
        let cases = [
            ("", "the pattern is empty"),
            ("a.{b,c", "not closed"),
            ("/abc", "must end with `/`"),
            ("/a(/", "bad regular expression"),
            ("a\\", "lone `\\`"),
        ];
        for (pat, want) in cases {
            let err = TagPattern::new(pat).unwrap_err().to_string();
            assert!(err.contains(want), "`{pat}`: {err}");
            assert!(
                err.contains(&format!("`{pat}`")),
                "names the pattern: {err}"
            );
        }
    }
}
