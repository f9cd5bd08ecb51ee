//! Config plumbing: one YAML file, `${ENV}` interpolation, typed decoding, and
//! errors that name the file, the line and the key.
//!
//! The component configs themselves live with their components; the binary composes
//! them into one closed enum per kind. This module gives them the shared pieces: the
//! loader, [`ByteSize`], [`Duration`](HumanDuration) and [`Secret`].

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// A config that could not be loaded, with where and why.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or other origin) the config came from.
    pub file: String,
    /// The 1-based line the problem is on, when it could be found.
    pub line: Option<usize>,
    /// The dotted key path of the problem (`sinks.es.batch.max_events`), when known.
    pub key: Option<String>,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": at `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The text of a config file, kept so that errors found after parsing (an unknown
/// sink name, a bad combination of options) can still point at a line.
#[derive(Debug, Clone)]
pub struct ConfigDocument {
    origin: String,
    text: String,
}

impl ConfigDocument {
    /// Reads `path` and interpolates environment variables.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let raw = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: origin.clone(),
            line: None,
            key: None,
            message: format!("cannot read the config file: {e}"),
        })?;
        Self::from_text(&origin, &raw, |name| std::env::var(name).ok())
    }

    /// Builds a document from text; `env` resolves `${NAME}` references.
    pub fn from_text(
        origin: &str,
        raw: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = interpolate(raw, env).map_err(|(line, message)| ConfigError {
            file: origin.to_string(),
            line: Some(line),
            key: key_on_line(raw, line),
            message,
        })?;
        Ok(Self {
            origin: origin.to_string(),
            text,
        })
    }

    /// The interpolated text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Where the document came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Decodes the document into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let de = serde_norway::Deserializer::from_str(&self.text);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(v) => Ok(v),
            Err(e) => {
                let mut path: Vec<String> = e
                    .path()
                    .iter()
                    .filter_map(|seg| match seg {
                        serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                        serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                        serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                        serde_path_to_error::Segment::Unknown => None,
                    })
                    .collect();
                let inner = e.into_inner();
                let message = clean_message(&inner.to_string());
                // Errors raised inside a tagged component are reported by serde
                // without the field they are about; take it from the message.
                if let Some(field) = quoted_after(&message, "unknown field `")
                    && path.last() != Some(&field)
                {
                    path.push(field);
                }
                let mut line = self
                    .locate(&path)
                    .or_else(|| inner.location().map(|l| l.line()));
                // Values inside a tagged component are also reported without their
                // key; find the line in the component's block that holds the value
                // the message names.
                if let (Some(at), Some(value)) = (line, offending_value(&message))
                    && let Some((n, key)) = find_value_in_block(&self.text, at, &value)
                {
                    if path.last() != Some(&key) {
                        path.push(key);
                    }
                    line = Some(n);
                }
                Err(ConfigError {
                    file: self.origin.clone(),
                    line,
                    key: (!path.is_empty()).then(|| path.join(".")),
                    message: explain(message),
                })
            }
        }
    }

    /// An error about the value at `path` (dotted), pointing at its line.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        ConfigError {
            file: self.origin.clone(),
            line: self.locate(&segments),
            key: Some(path.to_string()),
            message: message.into(),
        }
    }

    /// Finds the line of a key path in block-style YAML by following indentation.
    fn locate(&self, path: &[String]) -> Option<usize> {
        locate(&self.text, path)
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` with environment values; `$${` stands for
/// a literal `${`. A reference to an unset variable without a default is an error,
/// returned with its 1-based line.
pub fn interpolate(
    raw: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(raw.len());
    for (i, line) in raw.split_inclusive('\n').enumerate() {
        let mut rest = line;
        // YAML comments are not interpolated, so a commented-out reference to an
        // unset variable is harmless.
        while let Some(pos) = rest.find('$') {
            let before = &rest[..pos];
            if is_comment_start(&out, before) {
                break;
            }
            out.push_str(before);
            let after = &rest[pos..];
            if let Some(tail) = after.strip_prefix("$${") {
                out.push_str("${");
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("${") {
                let Some(end) = tail.find('}') else {
                    return Err((i + 1, "`${` is not closed by `}`".into()));
                };
                let expr = &tail[..end];
                let (name, default) = match expr.split_once(":-") {
                    Some((n, d)) => (n, Some(d)),
                    None => (expr, None),
                };
                let valid = !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                if !valid {
                    return Err((
                        i + 1,
                        format!("`${{{expr}}}` is not a valid environment variable reference"),
                    ));
                }
                match env(name).or_else(|| default.map(str::to_string)) {
                    Some(v) => out.push_str(&v),
                    None => {
                        return Err((
                            i + 1,
                            format!(
                                "environment variable `{name}` is not set (referenced as `${{{expr}}}`); set it, or give a default with `${{{name}:-value}}`"
                            ),
                        ));
                    }
                }
                rest = &tail[end + 1..];
            } else {
                out.push('$');
                rest = &after[1..];
            }
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Whether the text of the current line so far starts a YAML comment before the `$`.
fn is_comment_start(out: &str, before: &str) -> bool {
    let line_start = out.rfind('\n').map(|p| p + 1).unwrap_or(0);
    let so_far = format!("{}{}", &out[line_start..], before);
    let mut in_single = false;
    let mut in_double = false;
    let mut prev_space = true;
    for c in so_far.chars() {
        match c {
            '\'' if !in_double => in_single = !in_single,
            '"' if !in_single => in_double = !in_double,
            '#' if !in_single && !in_double && prev_space => return true,
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    false
}

fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let t = l.trim_start().trim_start_matches("- ");
    let (k, _) = t.split_once(':')?;
    let k = k.trim().trim_matches('"').trim_matches('\'');
    (!k.is_empty() && !k.contains(' ')).then(|| k.to_string())
}

fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let start = message.find(prefix)? + prefix.len();
    let end = message[start..].find('`')?;
    Some(message[start..start + end].to_string())
}

/// The value a serde message complains about: ``unknown variant `x` `` or
/// `invalid type: string "x"` / ``invalid type: integer `3` ``.
fn offending_value(message: &str) -> Option<String> {
    if let Some(v) = quoted_after(message, "unknown variant `") {
        return Some(v);
    }
    // nagare's own value errors start with the value: "`8 parsecs` is not a size".
    if message.starts_with('`') {
        return quoted_after(message, "`");
    }
    for prefix in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(start) = message.find(prefix).map(|i| i + prefix.len())
            && let Some(end) = message[start..].find('"')
        {
            return Some(message[start..start + end].to_string());
        }
    }
    for prefix in [
        "invalid type: integer `",
        "invalid type: floating point `",
        "invalid type: boolean `",
    ] {
        if let Some(v) = quoted_after(message, prefix) {
            return Some(v);
        }
    }
    None
}

/// Finds, in the block that starts at 1-based `line`, the first `key: value` line
/// whose value is `value`; returns its line and key.
fn find_value_in_block(text: &str, line: usize, value: &str) -> Option<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let start = line.checked_sub(1)?;
    let head = lines.get(start)?;
    let block_indent = head.len() - head.trim_start().len();
    for (n, l) in lines.iter().enumerate().skip(start) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if n > start && l.len() - t.len() <= block_indent {
            break;
        }
        let body = t.strip_prefix("- ").unwrap_or(t);
        if let Some((k, v)) = body.split_once(':') {
            let v = v.split(" #").next().unwrap_or("").trim();
            let v = v.trim_matches('"').trim_matches('\'');
            if v == value {
                return Some((
                    n + 1,
                    k.trim().trim_matches('"').trim_matches('\'').to_string(),
                ));
            }
        }
    }
    None
}

/// serde_norway appends " at line L column C" to some messages; the location is
/// reported separately, so drop it from the text.
fn clean_message(m: &str) -> String {
    let m = match m.rfind(" at line ") {
        Some(i) if m[i..].contains(" column ") => &m[..i],
        _ => m,
    };
    // It also prefixes the path ("sinks.out: ..."), which is reported separately.
    match m.split_once(": ") {
        Some((head, rest))
            if !head.is_empty()
                && head
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-[]".contains(c)) =>
        {
            rest.to_string()
        }
        _ => m.to_string(),
    }
}

/// Adds a hint to the serde messages users meet most.
fn explain(message: String) -> String {
    if message.starts_with("unknown field") {
        format!(
            "{message}; check the spelling, or see docs/configuration.md for the options of this component"
        )
    } else if message.starts_with("unknown variant") {
        format!("{message}; check the spelling of the value")
    } else {
        message
    }
}

/// 1-based line of a key path in block-style YAML (flow style is not followed).
pub fn locate(text: &str, path: &[String]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    // (first line to search, indent the current block's parent sits at)
    let mut from = 0usize;
    let mut parent_indent: isize = -1;
    let mut found = None;
    // The line of the sequence item just entered: it carries the item's first key.
    let mut item_line: Option<usize> = None;
    for seg in path {
        let index: Option<usize> = seg.parse().ok();
        let mut hit = None;
        let mut seq_count = 0usize;
        let mut seq_indent: Option<usize> = None;
        for (n, line) in lines.iter().enumerate().skip(from) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if found.is_some() && item_line != Some(n) && (indent as isize) <= parent_indent {
                break;
            }
            if let Some(i) = index {
                if let Some(rest) = trimmed.strip_prefix('-') {
                    let si = *seq_indent.get_or_insert(indent);
                    if indent == si {
                        if seq_count == i {
                            // Keys of a mapping item sit two columns past the dash.
                            let key_indent = indent + 1 + (rest.len() - rest.trim_start().len());
                            hit = Some((n, key_indent as isize - 1));
                            break;
                        }
                        seq_count += 1;
                    }
                }
                continue;
            }
            let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            let key_indent = indent + (trimmed.len() - body.len());
            let key = body
                .split_once(':')
                .map(|(k, _)| k.trim().trim_matches('"').trim_matches('\''));
            if key == Some(seg.as_str()) && (key_indent as isize) > parent_indent {
                hit = Some((n, key_indent as isize));
                break;
            }
        }
        let (n, ind) = hit?;
        found = Some(n + 1);
        from = n + 1;
        parent_indent = ind;
        item_line = None;
        if index.is_some() {
            from = n;
            item_line = Some(n);
        }
    }
    found
}

/// A size in bytes, written as a number or with a unit: `512`, `8k`, `64MiB`, `1GB`.
/// `k`, `m`, `g`, `t` and the `KiB` family are powers of 1024 (as in Fluentd); `KB`,
/// `MB`, `GB`, `TB` are powers of 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as `usize`.
    pub fn as_usize(&self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// Parses the text form.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num.parse().map_err(|_| {
            format!("`{s}` is not a size; write it like `512`, `8k`, `64MiB` or `1GB`")
        })?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "`{other}` is not a size unit; use b, k, m, g, KiB, MiB, GiB, KB, MB or GB"
                ));
            }
        };
        Ok(ByteSize((num * mult as f64) as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            write!(f, "{}GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{}MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{}KiB", b >> 10)
        } else {
            write!(f, "{b}B")
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => ByteSize::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration, written as seconds (`5`, `0.5`) or with units (`500ms`, `5s`, `1m 30s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Seconds.
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    /// Milliseconds.
    pub const fn millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(f64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if n >= 0.0 && n.is_finite() => Ok(HumanDuration(Duration::from_secs_f64(n))),
            Raw::N(n) => Err(serde::de::Error::custom(format!("`{n}` is not a duration"))),
            Raw::S(s) => humantime::parse_duration(s.trim())
                .map(HumanDuration)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "`{s}` is not a duration ({e}); write it like `500ms`, `5s` or `1m 30s`"
                    ))
                }),
        }
    }
}

/// A secret (password, API key, shared key): never printed, not even in debug logs.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::TagPattern;
    use indexmap::IndexMap;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[serde(default)]
        sinks: IndexMap<String, Sink>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum Sink {
        File(FileSink),
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileSink {
        #[serde(rename = "match")]
        pattern: TagPattern,
        path: String,
        #[serde(default)]
        limit: Option<ByteSize>,
        #[serde(default)]
        every: Option<HumanDuration>,
    }

    fn doc(text: &str) -> Result<Doc, ConfigError> {
        let env = |name: &str| (name == "HOME_DIR").then(|| "/home/n".to_string());
        ConfigDocument::from_text("nagare.yaml", text, env)?.parse()
    }

    #[test]
    fn parses_and_interpolates() {
        let d = doc("sinks:\n  out:\n    type: file\n    match: 'app.**'\n    path: ${HOME_DIR}/out # ${NOT_SET}\n    limit: 8MiB\n    every: 1m 30s\n").unwrap();
        let Sink::File(f) = &d.sinks["out"];
        assert_eq!(f.path, "/home/n/out");
        assert!(f.pattern.matches("app.web"));
        assert_eq!(f.limit, Some(ByteSize(8 << 20)));
        assert_eq!(f.every, Some(HumanDuration::secs(90)));
        let d = doc(
            "sinks:\n  out:\n    type: file\n    match: a\n    path: ${UNSET:-/tmp/x}$${LITERAL}\n",
        )
        .unwrap();
        let Sink::File(f) = &d.sinks["out"];
        assert_eq!(f.path, "/tmp/x${LITERAL}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err =
            doc("sinks:\n  out:\n    type: file\n    match: a\n    path: /x\n    pathz: /y\n")
                .unwrap_err();
        assert_eq!(err.file, "nagare.yaml");
        assert_eq!(err.line, Some(6), "{err}");
        assert_eq!(err.key.as_deref(), Some("sinks.out.pathz"), "{err}");
        assert!(err.message.starts_with("unknown field `pathz`"), "{err}");
        let shown = err.to_string();
        assert!(
            shown.starts_with("nagare.yaml:6: at `sinks.out.pathz`: unknown field `pathz`"),
            "{shown}"
        );
    }

    #[test]
    fn unknown_top_level_key() {
        let err = doc("sinks: {}\nsorces:\n  a: 1\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert_eq!(err.key.as_deref(), Some("sorces"), "{err}");
    }

    #[test]
    fn bad_pattern_and_bad_values() {
        let err =
            doc("sinks:\n  out:\n    type: file\n    match: 'a.{b'\n    path: /x\n").unwrap_err();
        assert!(err.message.contains("invalid tag pattern `a.{b`"), "{err}");
        assert_eq!(err.line, Some(2), "{err}");
        let err = doc(
            "sinks:\n  out:\n    type: file\n    match: a\n    path: /x\n    limit: 8 parsecs\n",
        )
        .unwrap_err();
        assert!(
            err.message.contains("`parsecs` is not a size unit"),
            "{err}"
        );
        let err = doc("sinks:\n  out:\n    type: fiel\n").unwrap_err();
        assert!(err.message.starts_with("unknown variant `fiel`"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
    }

    #[test]
    fn wrong_value_type_inside_a_component_names_the_key() {
        let text = "sinks:\n  out:\n    type: file\n    match: a\n    path: /x\n    every: [1]\n    limit: true\n";
        let err = doc(text).unwrap_err();
        assert!(err.line.is_some(), "{err}");
        let text =
            "sinks:\n  out:\n    type: file\n    match: a\n    path: /x\n    limit: nonsense\n";
        let err = doc(text).unwrap_err();
        assert_eq!(err.line, Some(6), "{err}");
        assert_eq!(err.key.as_deref(), Some("sinks.out.limit"), "{err}");
    }

    #[test]
    fn missing_env_var_names_line_and_key() {
        let err = doc("sinks:\n  out:\n    type: file\n    match: a\n    path: ${DATA_DIR}/out\n")
            .unwrap_err();
        assert_eq!(err.line, Some(5));
        assert_eq!(err.key.as_deref(), Some("path"));
        assert!(
            err.message
                .contains("environment variable `DATA_DIR` is not set"),
            "{err}"
        );
        let err = doc("a: ${BAD-NAME}\n").unwrap_err();
        assert!(
            err.message
                .contains("not a valid environment variable reference"),
            "{err}"
        );
    }

    #[test]
    fn locate_follows_blocks_and_sequences() {
        let text =
            "sources:\n  a:\n    paths:\n      - /x\n      - /y\nsinks:\n  a:\n    paths: 1\n";
        let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(locate(text, &p("sources.a.paths.1")), Some(5));
        assert_eq!(locate(text, &p("sinks.a.paths")), Some(8));
        assert_eq!(locate(text, &p("sinks.b")), None);
    }

    #[test]
    fn sizes_and_secrets() {
        assert_eq!(ByteSize::parse("512").unwrap(), ByteSize(512));
        assert_eq!(ByteSize::parse("8k").unwrap(), ByteSize(8192));
        assert_eq!(ByteSize::parse("1.5MiB").unwrap(), ByteSize(1_572_864));
        assert_eq!(ByteSize::parse("2MB").unwrap(), ByteSize(2_000_000));
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(****) ****");
        assert_eq!(s.expose(), "hunter2");
    }
}
