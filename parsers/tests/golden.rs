//! Golden files: `tests/fixtures/<dir>/<case>.log` parsed line by line must give
//! `<case>.json`.
//!
//! Each directory has a `config.yaml`: a parser config (`format: ...`), or for
//! directories named `multiline*` a multiline config. A `<case>.yaml` beside a case
//! replaces it for that case. Every line of a `.log` file is one input (its final
//! newline aside); year-less times resolve against the reference time
//! 2024-03-01T00:00:00Z, and multiline input lines are 1 ms apart.
//!
//! Regenerate the expected files after a deliberate change with
//! `NAGARE_BLESS=1 cargo test -p nagare-parsers --test golden`, then review the diff.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nagare_core::EventTime;
use nagare_core::value::Map;
use nagare_parsers::container::Stream;
use nagare_parsers::multiline::{Line, Multiline, MultilineConfig, MultilineRules};
use nagare_parsers::{Parser, ParserConfig};
use serde::Serialize;

const REFERENCE: &[u8] = b"2024-03-01T00:00:00Z";

#[derive(Serialize)]
struct Parsed<'a> {
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'a Map>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize)]
struct Joined {
    lines: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cut: bool,
    time: String,
    message: String,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn lines(text: &[u8]) -> Vec<&[u8]> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|&b| b == b'\n').collect()
}

fn config_text(dir: &Path, case: &str) -> String {
    let own = dir.join(format!("{case}.yaml"));
    let path = if own.exists() {
        own
    } else {
        dir.join("config.yaml")
    };
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_format(config: &str, input: &[u8]) -> String {
    let config: ParserConfig = serde_norway::from_str(config).expect("config parses");
    let parser = Parser::new(&config).expect("config is valid");
    let reference = EventTime::parse_rfc3339(REFERENCE).unwrap();
    let results: Vec<_> = lines(input)
        .into_iter()
        .map(|l| parser.parse(l, reference))
        .collect();
    let entries: Vec<Parsed<'_>> = results
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(p) => Parsed {
                line: i + 1,
                time: p.time.map(|t| t.to_rfc3339()),
                record: Some(&p.record),
                error: None,
            },
            Err(e) => Parsed {
                line: i + 1,
                time: None,
                record: None,
                error: Some(e.to_string()),
            },
        })
        .collect();
    serde_json::to_string_pretty(&entries).unwrap() + "\n"
}

fn run_multiline(config: &str, input: &[u8]) -> String {
    let config: MultilineConfig = serde_norway::from_str(config).expect("config parses");
    let detector = MultilineRules::new(&config).expect("config is valid");
    let mut m = Multiline::new(&detector);
    let reference = EventTime::parse_rfc3339(REFERENCE).unwrap();
    let t0 = Instant::now();
    let mut out = Vec::new();
    let mut take = |msg: nagare_parsers::multiline::Message<'_>| {
        out.push(Joined {
            lines: msg.lines,
            cut: msg.cut,
            time: msg.time.to_rfc3339(),
            message: String::from_utf8_lossy(msg.bytes).into_owned(),
        })
    };
    for (i, l) in lines(input).into_iter().enumerate() {
        let line = Line {
            bytes: l,
            stream: Some(Stream::Stdout),
            time: EventTime::from_unix_nanos(reference.as_unix_nanos() + i as i128 * 1_000_000),
            offset: i as u64,
        };
        m.push(line, t0 + Duration::from_millis(i as u64), &mut take);
    }
    m.flush(&mut take);
    serde_json::to_string_pretty(&out).unwrap() + "\n"
}

/// Side by side, the first lines that differ.
fn diff(expected: &str, actual: &str) -> String {
    let mut out = String::new();
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            out.push_str(&format!(
                "  line {}:\n    expected: {e}\n    actual:   {a}\n",
                i + 1
            ));
            if out.len() > 2000 {
                break;
            }
        }
    }
    let (el, al) = (expected.lines().count(), actual.lines().count());
    if el != al {
        out.push_str(&format!("  expected {el} lines, got {al}\n"));
    }
    out
}

#[test]
fn golden_files() {
    let bless = std::env::var_os("NAGARE_BLESS").is_some_and(|v| v == "1");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut failures = Vec::new();
    let mut cases = 0;
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        logs.sort();
        assert!(!logs.is_empty(), "{name} has no .log case");
        for log in logs {
            let case = log.file_stem().unwrap().to_string_lossy().into_owned();
            let config = config_text(dir, &case);
            let input = std::fs::read(&log).unwrap();
            let actual = if name.starts_with("multiline") {
                run_multiline(&config, &input)
            } else {
                run_format(&config, &input)
            };
            let expected_path = log.with_extension("json");
            cases += 1;
            if bless {
                std::fs::write(&expected_path, &actual).unwrap();
                continue;
            }
            match std::fs::read_to_string(&expected_path) {
                Ok(expected) if expected == actual => {}
                Ok(expected) => failures.push(format!(
                    "{name}/{case}: output differs from {}:\n{}",
                    expected_path.display(),
                    diff(&expected, &actual)
                )),
                Err(_) => failures.push(format!(
                    "{name}/{case}: no {} (run with NAGARE_BLESS=1 to write it)",
                    expected_path.display()
                )),
            }
        }
    }
    assert!(cases >= 20, "only {cases} golden cases found");
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
