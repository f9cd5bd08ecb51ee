//! The bodies of the fuzz targets in `fuzz/` (one per parser), kept here so that
//! the test suite runs exactly the same checks over its seed corpus and random
//! input without a fuzzing toolchain (`tests/fuzz_smoke.rs`).
//!
//! Each body parses arbitrary bytes and asserts what must hold for any input: no
//! panic, error offsets inside the line, records that render and parse back to
//! themselves where the format allows it, multiline joining that loses no byte.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nagare_core::EventTime;

use crate::formats::{csv, logfmt, ltsv};
use crate::multiline::{Line, Multiline, MultilineConfig, MultilineRules};
use crate::time::{Strptime, TimeFormat, Zone, resolve};
use crate::{Parser, ParserConfig};

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `format: json`.
    Json,
    /// `format: regex` with a typed expression.
    Regex,
    /// `format: logfmt`, with the render round trip.
    Logfmt,
    /// `format: apache2`.
    Apache2,
    /// `format: apache_error`.
    ApacheError,
    /// `format: nginx`.
    Nginx,
    /// `format: nginx_error`.
    NginxError,
    /// `format: syslog` (auto).
    Syslog,
    /// `format: ltsv`, with the render round trip.
    Ltsv,
    /// `format: csv`, with the render round trip.
    Csv,
    /// `format: tsv`.
    Tsv,
    /// `format: multi_format` over every format.
    MultiFormat,
    /// Time formats: strftime patterns, ISO 8601, epoch numbers.
    Time,
    /// Multiline joining with every language and a custom rule.
    Multiline,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 14] = [
        Target::Json,
        Target::Regex,
        Target::Logfmt,
        Target::Apache2,
        Target::ApacheError,
        Target::Nginx,
        Target::NginxError,
        Target::Syslog,
        Target::Ltsv,
        Target::Csv,
        Target::Tsv,
        Target::MultiFormat,
        Target::Time,
        Target::Multiline,
    ];

    /// The target's name (its file in `fuzz/fuzz_targets/`, and the fixture folder
    /// its seeds come from).
    pub fn name(self) -> &'static str {
        match self {
            Target::Json => "json",
            Target::Regex => "regex",
            Target::Logfmt => "logfmt",
            Target::Apache2 => "apache2",
            Target::ApacheError => "apache_error",
            Target::Nginx => "nginx",
            Target::NginxError => "nginx_error",
            Target::Syslog => "syslog",
            Target::Ltsv => "ltsv",
            Target::Csv => "csv",
            Target::Tsv => "tsv",
            Target::MultiFormat => "multi_format",
            Target::Time => "time",
            Target::Multiline => "multiline",
        }
    }

    /// Runs the target's checks over `data`; panics when one fails.
    pub fn check(self, data: &[u8]) {
        match self {
            Target::Time => check_time(data),
            Target::Multiline => check_multiline(data),
            _ => check_format(self, data),
        }
    }

    fn config(self) -> &'static str {
        match self {
            Target::Json => "format: json\n",
            Target::Regex => {
                "format: regex\nexpression: '^(?<host>\\S*) (?<code>\\d+) (?<took>\\S+) (?<time>\\S+)(?: (?<rest>.*))?$'\ntypes: {code: integer, took: float}\ntime_format: ['%d/%b/%Y:%H:%M:%S%z', epoch_ms]\n"
            }
            Target::Logfmt => "format: logfmt\n",
            Target::Apache2 => "format: apache2\n",
            Target::ApacheError => "format: apache_error\ntimezone: Europe/Paris\n",
            Target::Nginx => "format: nginx\n",
            Target::NginxError => "format: nginx_error\n",
            Target::Syslog => "format: syslog\nparse_extradata: true\n",
            Target::Ltsv => "format: ltsv\n",
            Target::Csv => "format: csv\nkeys: [a, b, c, d]\n",
            Target::Tsv => "format: tsv\nkeys: [a, b, c]\n",
            _ => {
                "format: multi_format\npatterns:\n  - {format: json}\n  - {format: apache2}\n  - {format: nginx}\n  - {format: syslog}\n  - {format: logfmt}\n  - {format: none}\n"
            }
        }
    }
}

/// The event time lines are parsed at (2024-03-01T00:00:00Z).
fn reference() -> EventTime {
    EventTime::new(1_709_251_200, 0)
}

fn parser(target: Target) -> &'static Parser {
    static PARSERS: OnceLock<Vec<Parser>> = OnceLock::new();
    let all = PARSERS.get_or_init(|| {
        Target::ALL
            .iter()
            .map(|t| {
                let config: ParserConfig =
                    serde_norway::from_str(t.config()).expect("fuzz configs parse");
                Parser::new(&config).expect("fuzz configs are valid")
            })
            .collect()
    });
    let i = Target::ALL.iter().position(|t| *t == target).unwrap_or(0);
    &all[i]
}

fn check_format(target: Target, data: &[u8]) {
    let parsed = parser(target).parse(data, reference());
    let record = match parsed {
        Ok(p) => p.record,
        Err(e) => {
            if let Some(offset) = e.offset() {
                assert!(offset <= data.len(), "{e}: offset past the line");
            }
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // Every record is JSON-serializable.
    let json = serde_json::to_vec(&record).expect("records serialize");
    match target {
        Target::Json => {
            let again = parser(target)
                .parse(&json, reference())
                .expect("a rendered record parses");
            assert_eq!(again.record, record, "json round trip");
        }
        Target::Logfmt => {
            let line = logfmt::render(&record);
            let again = parser(target)
                .parse(line.as_bytes(), reference())
                .unwrap_or_else(|e| panic!("rendered {line:?} does not parse: {e}"));
            assert_eq!(again.record, record, "logfmt round trip via {line:?}");
        }
        Target::Ltsv => {
            let line = ltsv::render(&record);
            let again = parser(target)
                .parse(line.as_bytes(), reference())
                .unwrap_or_else(|e| panic!("rendered {line:?} does not parse: {e}"));
            assert_eq!(again.record, record, "ltsv round trip via {line:?}");
        }
        Target::Csv => {
            let values: Vec<String> = record.iter().map(|(_, v)| v.to_text()).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let line = csv::render(&refs, b',');
            let again = parser(target)
                .parse(line.as_bytes(), reference())
                .unwrap_or_else(|e| panic!("rendered {line:?} does not parse: {e}"));
            assert_eq!(again.record, record, "csv round trip via {line:?}");
        }
        _ => {}
    }
}

fn check_time(data: &[u8]) {
    static PATTERNS: OnceLock<Vec<TimeFormat>> = OnceLock::new();
    let formats = PATTERNS.get_or_init(|| {
        [
            "%d/%b/%Y:%H:%M:%S %z",
            "%Y-%m-%dT%H:%M:%S%.f%:z",
            "%a %b %e %H:%M:%S.%N %Y %Z",
            "%s.%3N",
            "%Q",
            "%m/%d/%y %I:%M:%S %p",
            "%Y %j",
            "iso8601",
            "epoch",
            "epoch_ns",
            "auto",
        ]
        .iter()
        .map(|s| TimeFormat::parse_spec(s).expect("patterns compile"))
        .collect()
    });
    let zones = [Zone::Utc, Zone::Fixed(-9 * 3600 - 1800)];
    for f in formats {
        if let Some(raw) = f.parse_text(data) {
            for z in &zones {
                let _ = resolve(raw, z, reference());
            }
        }
    }
    // The input as a pattern: compiling and using any text must not panic either.
    if let Ok(pattern) = std::str::from_utf8(data)
        && let Ok(p) = Strptime::new(pattern)
    {
        let _ = p.parse(data);
    }
}

fn check_multiline(data: &[u8]) {
    static DETECTOR: OnceLock<MultilineRules> = OnceLock::new();
    let detector = DETECTOR.get_or_init(|| {
        let mut config = MultilineConfig::new(vec![crate::multiline::Language::All]);
        config.custom = Some(crate::multiline::CustomRule {
            start: "^\\[\\d".into(),
            continuation: "^\\s".into(),
        });
        config.max_lines = 7;
        config.max_bytes = nagare_core::config::ByteSize(300);
        MultilineRules::new(&config).expect("valid")
    });
    let mut m = Multiline::new(detector);
    let t0 = Instant::now();
    let mut out: Vec<u8> = Vec::new();
    let mut first = true;
    let mut emitted_lines = 0;
    let mut take = |bytes: &[u8], lines: usize| {
        if !first {
            out.push(b'\n');
        }
        first = false;
        out.extend_from_slice(bytes);
        emitted_lines += lines;
    };
    let input: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for (i, l) in input.iter().enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 300);
        m.poll(now, |msg| take(msg.bytes, msg.lines));
        let line = Line {
            bytes: l,
            stream: None,
            time: reference(),
            offset: 0,
        };
        m.push(line, now, |msg| take(msg.bytes, msg.lines));
    }
    m.flush(|msg| take(msg.bytes, msg.lines));
    assert_eq!(emitted_lines, input.len(), "every line comes out once");
    assert_eq!(out, data, "joining loses or invents no byte");
}
