//! The multiline configuration.

use nagare_core::component::Invalid;
use nagare_core::config::{ByteSize, HumanDuration};
use serde::Deserialize;

/// A language whose stack traces are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// Java and other JVM languages (and C# traces, which look alike).
    Java,
    /// Python tracebacks.
    Python,
    /// Go panics with their goroutine dumps.
    Go,
    /// Ruby and Rails backtraces.
    Ruby,
    /// Node.js (V8) error stacks.
    #[serde(alias = "node", alias = "js")]
    Nodejs,
    /// All of the above.
    All,
}

/// A custom rule: a line matching `start` begins an event; the lines after it that
/// match `continuation` are joined to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// The regular expression of a first line (e.g. `^\d{4}-\d{2}-\d{2} `).
    pub start: String,
    /// The regular expression of a following line (e.g. `^\s`).
    pub continuation: String,
}

/// Config of multiline joining.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Built-in stack-trace rules: `java`, `python`, `go`, `ruby`, `nodejs`, `all`.
    #[serde(default)]
    pub languages: Vec<Language>,
    /// A custom start / continuation rule, tried after the languages' rules.
    #[serde(default)]
    pub custom: Option<CustomRule>,
    /// Most lines in one event; a longer trace is cut and the rest comes out line
    /// by line.
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// Most bytes in one event (joined lines, newlines included).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// How long a held event waits for its next line before it is emitted.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout: HumanDuration,
}

fn default_max_lines() -> usize {
    1000
}

fn default_max_bytes() -> ByteSize {
    ByteSize(1024 * 1024)
}

fn default_flush_timeout() -> HumanDuration {
    HumanDuration::secs(1)
}

impl MultilineConfig {
    /// A config joining the traces of `languages`, every other key at its default.
    pub fn new(languages: Vec<Language>) -> Self {
        Self {
            languages,
            custom: None,
            max_lines: default_max_lines(),
            max_bytes: default_max_bytes(),
            flush_timeout: default_flush_timeout(),
        }
    }

    /// Checks what serde cannot: some rule is given, the regexes compile, the
    /// limits are not zero.
    pub fn validate(&self) -> Result<(), Invalid> {
        super::MultilineRules::new(self).map(|_| ())
    }
}
