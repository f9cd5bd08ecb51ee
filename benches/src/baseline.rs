//! The baselines nagare's parsers are measured against. Each builds the record a
//! regex-based parser builds: one string field per capture, with `-` as null and
//! `code`/`size` as integers for the access logs (what Fluentd's apache2 does), but
//! without reading the time (which only makes the baseline faster).

use nagare_core::value::{Map, Value};
use regex::Regex;

/// Fluentd's `apache2` expression.
pub const APACHE2: &str = r#"^(?<host>[^ ]*) [^ ]* (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>(?:[^\"]|\\.)*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>(?:[^\"]|\\.)*)" "(?<agent>(?:[^\"]|\\.)*)")?$"#;
/// Fluentd's `nginx` expression.
pub const NGINX: &str = r#"^(?<remote>[^ ]*) (?<host>[^ ]*) (?<user>[^ ]*) \[(?<time>[^\]]*)\] "(?<method>\S+)(?: +(?<path>[^\"]*?)(?: +\S*)?)?" (?<code>[^ ]*) (?<size>[^ ]*)(?: "(?<referer>[^\"]*)" "(?<agent>[^\"]*)")?$"#;
/// Fluentd's `syslog` expression (RFC 3164, no priority).
pub const SYSLOG: &str = r"^(?<time>[^ ]*\s*[^ ]* [^ ]*) (?<host>[^ ]*) (?<ident>[^ :\[]*)(?:\[(?<pid>[0-9]+)\])?(?:[^\:]*\:)? *(?<message>.*)$";
/// A logfmt pair: a key, `=`, a quoted (with escapes) or bare value.
pub const LOGFMT: &str = r#"([^\s="]+)(?:=(?:"((?:[^"\\]|\\.)*)"|(\S*)))?"#;
/// An LTSV field.
pub const LTSV: &str = r"(?:^|\t)([^\t:]+):([^\t]*)";
/// A CSV field: quoted (with `""`) or bare.
pub const CSV: &str = r#"(?:^|,)(?:"((?:[^"]|"")*)"|([^,]*))"#;

/// One baseline parser.
#[derive(Debug)]
pub enum Baseline {
    /// serde_json into `serde_json::Value`.
    Json,
    /// A regex with named captures; `typed` fields become integers, `-` null.
    Named {
        re: Regex,
        typed: &'static [&'static str],
        what: &'static str,
    },
    /// Key/value pairs found by a regex, one match per pair.
    Pairs { re: Regex, what: &'static str },
    /// CSV fields found by a regex, named by position.
    Csv { re: Regex, keys: [&'static str; 5] },
}

impl Baseline {
    /// serde_json into `serde_json::Value`.
    pub fn json() -> Self {
        Baseline::Json
    }

    /// The regex crate with Fluentd's apache2 expression.
    pub fn apache2() -> Self {
        Baseline::Named {
            re: Regex::new(APACHE2).expect("compiles"),
            typed: &["code", "size"],
            what: "regex crate, Fluentd's apache2 expression",
        }
    }

    /// The regex crate with Fluentd's nginx expression.
    pub fn nginx() -> Self {
        Baseline::Named {
            re: Regex::new(NGINX).expect("compiles"),
            typed: &["code", "size"],
            what: "regex crate, Fluentd's nginx expression",
        }
    }

    /// The regex crate with Fluentd's syslog expression.
    pub fn syslog() -> Self {
        Baseline::Named {
            re: Regex::new(SYSLOG).expect("compiles"),
            typed: &[],
            what: "regex crate, Fluentd's syslog (RFC 3164) expression",
        }
    }

    /// The regex crate, one match per logfmt pair.
    pub fn logfmt() -> Self {
        Baseline::Pairs {
            re: Regex::new(LOGFMT).expect("compiles"),
            what: "regex crate, one match per key=value pair",
        }
    }

    /// The regex crate, one match per LTSV field.
    pub fn ltsv() -> Self {
        Baseline::Pairs {
            re: Regex::new(LTSV).expect("compiles"),
            what: "regex crate, one match per label:value field",
        }
    }

    /// The regex crate, one match per CSV field.
    pub fn csv() -> Self {
        Baseline::Csv {
            re: Regex::new(CSV).expect("compiles"),
            keys: ["time", "user", "action", "status", "detail"],
        }
    }

    /// What the baseline is, for the table.
    pub fn describe(&self) -> &'static str {
        match self {
            Baseline::Json => "serde_json::from_slice::<serde_json::Value>",
            Baseline::Named { what, .. } | Baseline::Pairs { what, .. } => what,
            Baseline::Csv { .. } => "regex crate, one match per field (quoted or bare)",
        }
    }

    /// Parses one line; returns the number of fields (0 when it does not match).
    pub fn parse(&self, line: &[u8]) -> usize {
        match self {
            Baseline::Json => match serde_json::from_slice::<serde_json::Value>(line) {
                Ok(serde_json::Value::Object(m)) => m.len(),
                Ok(_) => 1,
                Err(_) => 0,
            },
            Baseline::Named { re, typed, .. } => {
                let Ok(text) = std::str::from_utf8(line) else {
                    return 0;
                };
                let Some(caps) = re.captures(text) else {
                    return 0;
                };
                let mut record = Map::with_capacity(10);
                for name in re.capture_names().flatten() {
                    if name == "time" {
                        continue;
                    }
                    let value = match caps.name(name).map(|m| m.as_str()) {
                        None | Some("-") => Value::Null,
                        Some(v) if typed.contains(&name) => {
                            v.parse::<i64>().map(Value::Int).unwrap_or(Value::Null)
                        }
                        Some(v) => Value::from(v),
                    };
                    record.push_unchecked(name, value);
                }
                record.len()
            }
            Baseline::Pairs { re, .. } => {
                let Ok(text) = std::str::from_utf8(line) else {
                    return 0;
                };
                let mut record = Map::with_capacity(12);
                for caps in re.captures_iter(text) {
                    let key = caps.get(1).map_or("", |m| m.as_str());
                    let value = caps
                        .get(2)
                        .or_else(|| caps.get(3))
                        .map_or(Value::Bool(true), |m| Value::from(m.as_str()));
                    record.insert(key, value);
                }
                record.len()
            }
            Baseline::Csv { re, keys } => {
                let Ok(text) = std::str::from_utf8(line) else {
                    return 0;
                };
                let mut record = Map::with_capacity(keys.len());
                for (key, caps) in keys.iter().zip(re.captures_iter(text)) {
                    let value = match caps.get(1) {
                        Some(q) => Value::from(q.as_str().replace("\"\"", "\"")),
                        None => Value::from(caps.get(2).map_or("", |m| m.as_str())),
                    };
                    record.insert(*key, value);
                }
                record.len()
            }
        }
    }
}
