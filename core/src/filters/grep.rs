//! `grep`: keep events whose fields match, drop events whose fields match.
//!
//! ```yaml
//! filters:
//!   errors_only:
//!     type: grep
//!     match: "kube.**"
//!     regexp:                      # all must match (and)
//!       - { key: level, pattern: "^(error|fatal)$" }
//!     exclude:                     # any match drops (or)
//!       - { key: kubernetes.namespace_name, pattern: "^kube-system$" }
//! ```
//!
//! As in Fluentd's grep: an event is kept when every `regexp` rule matches and no
//! `exclude` rule matches. A missing key never matches. Non-string values are matched
//! against their JSON text.

use regex::Regex;
use serde::Deserialize;

use crate::component::{FilterComponent, Invalid};
use crate::event::Event;
use crate::router::{Filter, Verdict};
use crate::value::Value;

/// One rule: a (dotted) key and a regular expression.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepRule {
    /// The field to test, dotted for nested maps (`kubernetes.namespace_name`).
    pub key: String,
    /// A regular expression (Rust `regex` syntax), searched anywhere in the value.
    pub pattern: String,
}

/// Config of a `grep` filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrepConfig {
    /// Rules that must all match for an event to be kept.
    #[serde(default)]
    pub regexp: Vec<GrepRule>,
    /// Rules of which any match drops the event.
    #[serde(default)]
    pub exclude: Vec<GrepRule>,
}

impl GrepConfig {
    /// Checks the rules compile.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.regexp.is_empty() && self.exclude.is_empty() {
            return Err(Invalid::new(
                "regexp",
                "a grep filter needs `regexp` or `exclude` rules",
            ));
        }
        for (list, rules) in [("regexp", &self.regexp), ("exclude", &self.exclude)] {
            for (i, r) in rules.iter().enumerate() {
                Regex::new(&r.pattern).map_err(|e| {
                    Invalid::new(
                        format!("{list}.{i}.pattern"),
                        format!("`{}` is not a valid regular expression: {e}", r.pattern),
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// The running filter.
#[derive(Debug, Clone)]
pub struct Grep {
    keep: Vec<(String, Regex)>,
    drop: Vec<(String, Regex)>,
}

impl Grep {
    /// Builds the filter; the config must have passed `validate`.
    pub fn new(config: &GrepConfig) -> Result<Self, Invalid> {
        config.validate()?;
        let compile = |rules: &[GrepRule]| {
            rules
                .iter()
                .map(|r| (r.key.clone(), Regex::new(&r.pattern).expect("validated")))
                .collect()
        };
        Ok(Self {
            keep: compile(&config.regexp),
            drop: compile(&config.exclude),
        })
    }
}

fn matches(event: &Event, key: &str, re: &Regex) -> bool {
    match event.record.get_path(key) {
        Some(Value::Str(s)) => re.is_match(s),
        Some(v) => re.is_match(&v.to_text()),
        None => false,
    }
}

impl FilterComponent for Grep {
    const TYPE: &'static str = "grep";
    type Config = GrepConfig;

    fn validate(config: &GrepConfig) -> Result<(), Invalid> {
        config.validate()
    }

    fn build(config: &GrepConfig) -> Result<Self, Invalid> {
        Self::new(config)
    }
}

impl Filter for Grep {
    fn filter(&self, event: &mut Event) -> Verdict {
        let keep = self.keep.iter().all(|(k, re)| matches(event, k, re))
            && !self.drop.iter().any(|(k, re)| matches(event, k, re));
        if keep { Verdict::Keep } else { Verdict::Drop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::EventTime;
    use crate::value::Map;

    fn event(level: &str, ns: &str) -> Event {
        let mut m = Map::new();
        m.insert("level", level);
        m.map_mut("kubernetes").insert("namespace_name", ns);
        Event::new("t".into(), EventTime::new(0, 0), m)
    }

    #[test]
    fn keeps_and_excludes_like_fluentd() {
        let c: GrepConfig = serde_norway::from_str(
            "regexp:\n  - {key: level, pattern: '^(error|fatal)$'}\nexclude:\n  - {key: kubernetes.namespace_name, pattern: '^kube-system$'}\n",
        )
        .unwrap();
        let g = Grep::new(&c).unwrap();
        assert_eq!(g.filter(&mut event("error", "default")), Verdict::Keep);
        assert_eq!(g.filter(&mut event("info", "default")), Verdict::Drop);
        assert_eq!(g.filter(&mut event("fatal", "kube-system")), Verdict::Drop);
        let mut no_level = event("x", "default");
        no_level.record.remove("level");
        assert_eq!(
            g.filter(&mut no_level),
            Verdict::Drop,
            "a missing key never matches"
        );
    }

    #[test]
    fn bad_regex_names_the_rule() {
        let c: GrepConfig =
            serde_norway::from_str("exclude:\n  - {key: a, pattern: '('}\n").unwrap();
        let err = c.validate().unwrap_err();
        assert_eq!(err.key, "exclude.0.pattern");
    }
}
