//! Config plumbing: one YAML file, `${ENV}` interpolation, typed decoding, and
//! errors that name the file, the line and the key.
//!
//! The component configs themselves live with their components; the binary composes
//! them into one closed enum per kind. This module gives them the shared pieces: the
//! loader, [`Tagged`] for configs chosen by a `type` key, [`ByteSize`],
//! [`Duration`](HumanDuration) and [`Secret`].
//!
//! Loading goes in two steps. The file is parsed into a tree of values that remember
//! their line, with `${ENV}` references resolved inside scalars; then the tree is
//! decoded into the typed config. An error found while decoding takes its line and
//! key path from the tree, never from the wording of an error message.
//!
//! - `yaml`: the tree, and the file's own problems (YAML syntax, duplicate keys).
//! - `interpolate`: `${NAME}`, `${NAME:-default}` and `$${` in one scalar.
//! - `de`: the serde deserializer over the tree; `located`: its error, and where
//!   that is; `resolve`: what type a plain scalar is.
//! - [`tagged`]: configs chosen by a key, decoded without losing lines.

mod de;
mod interpolate;
mod located;
mod resolve;
pub mod tagged;
mod yaml;

#[cfg(test)]
mod decode_tests;

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::de::{DeserializeOwned, Expected, Unexpected};
use serde::{Deserialize, Deserializer};
use thiserror::Error;

pub use tagged::{Kind, Tagged};

use located::{DecodeError, Problem};
use yaml::Node;

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

/// A parsed config file, kept so that errors found after decoding (an unknown sink
/// name, a bad combination of options) can still point at a line.
#[derive(Debug, Clone)]
pub struct ConfigDocument {
    origin: String,
    root: Node,
}

impl ConfigDocument {
    /// Reads and parses `path`, resolving `${NAME}` from the environment.
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

    /// Parses a document from text; `env` resolves `${NAME}` references.
    pub fn from_text(
        origin: &str,
        raw: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let root = yaml::parse(raw, Some(&env)).map_err(|e| ConfigError {
            file: origin.to_string(),
            line: Some(e.line),
            key: if e.syntax {
                None
            } else {
                key_on_line(raw, e.line)
            },
            message: e.message,
        })?;
        Ok(Self {
            origin: origin.to_string(),
            root,
        })
    }

    /// Where the document came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Decodes the document into `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        de::decode(&self.root).map_err(|e| self.decode_error(e))
    }

    /// An error about the value at `path` (dotted), pointing at its line, or at the
    /// line of the closest enclosing key that is written when it is not (a default).
    pub fn error(&self, path: &str, message: impl Into<String>) -> ConfigError {
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        let line = match self.root.lookup(&segments) {
            (line, true) => Some(line),
            (line, false) if self.root.lookup(&segments[..1]).1 => Some(line),
            _ => None,
        };
        ConfigError {
            file: self.origin.clone(),
            line,
            key: Some(path.to_string()),
            message: message.into(),
        }
    }

    fn decode_error(&self, e: DecodeError) -> ConfigError {
        let (line, path) = match e.at {
            Some((line, path)) => (Some(line), path),
            None => (None, Vec::new()),
        };
        // The hints for the mistakes users make most.
        let message = match e.problem {
            Problem::UnknownField(_) => format!(
                "{}; check the spelling, or see docs/configuration.md for the options of this component",
                e.message
            ),
            Problem::UnknownVariant(_) => format!("{}; check the spelling of the value", e.message),
            _ => e.message,
        };
        ConfigError {
            file: self.origin.clone(),
            line,
            key: (!path.is_empty()).then(|| path.join(".")),
            message,
        }
    }
}

/// The key a line of the file starts with (`path` for `    path: ${DATA_DIR}/out`),
/// for problems found before there is a tree to ask.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let t = l.trim_start().trim_start_matches("- ");
    let (k, _) = t.split_once(':')?;
    let k = k.trim().trim_matches('"').trim_matches('\'');
    (!k.is_empty() && !k.contains(' ')).then(|| k.to_string())
}

/// 1-based line of a key path (map keys and sequence indices) in a YAML text, block
/// or flow style; `None` when the path is not in it.
pub fn locate(text: &str, path: &[String]) -> Option<usize> {
    match yaml::parse(text, None).ok()?.lookup(path) {
        (line, true) => Some(line),
        _ => None,
    }
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

    /// Parses the text form; an error says what a size looks like.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| "a size like `512`, `8k`, `64MiB` or `1GB`".to_string())?;
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
                    "a size (`{other}` is not a size unit; use b, k, m, g, KiB, MiB, GiB, KB, MB or GB)"
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
            Raw::S(s) => ByteSize::parse(&s).map_err(|expected| {
                serde::de::Error::invalid_value(Unexpected::Str(&s), &Reason(expected))
            }),
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
            Raw::N(n) => Err(serde::de::Error::invalid_value(
                Unexpected::Float(n),
                &"a duration of zero or more seconds",
            )),
            Raw::S(s) => humantime::parse_duration(s.trim())
                .map(HumanDuration)
                .map_err(|e| {
                    let expected = format!("a duration like `500ms`, `5s` or `1m 30s` ({e})");
                    serde::de::Error::invalid_value(Unexpected::Str(&s), &Reason(expected))
                }),
        }
    }
}

/// What a value should have been, for serde's "invalid value" errors, which keep the
/// value itself so that the decoder can point at its line.
struct Reason(String);

impl Expected for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret (password, API key, shared key): never printed, not even in debug logs.
#[derive(Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// What an empty secret usually is, for the error that refuses it.
    pub const EMPTY_HINT: &'static str =
        " (written with nothing, or `${VAR}` of a variable set to nothing)";

    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Reads an optional secret that is there whenever its key is, even written
    /// with nothing, for `#[serde(default, deserialize_with = "Secret::written")]`:
    /// YAML reads `key:` (and `key: ${VAR}` of a variable set to nothing) as null,
    /// which would otherwise count as no key at all, and a missing credential go
    /// unnoticed until a peer refuses the request. It is then empty, for `validate`
    /// to refuse (with [`Secret::EMPTY_HINT`]).
    pub fn written<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        Ok(Some(Option::<Secret>::deserialize(d)?.unwrap_or_default()))
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
