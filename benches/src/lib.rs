//! nagare's benchmarks: shared pieces.
//!
//! - [`corpus`]: realistic log lines per format, generated deterministically.
//! - [`baseline`]: what nagare's parsers are measured against in the same run:
//!   serde_json into `serde_json::Value` for JSON, and the `regex` crate with the
//!   expression Fluentd uses (apache2, nginx, syslog) or a straightforward one
//!   (logfmt, LTSV, CSV), each building the same record nagare does.
//! - [`cri_workload`]: the realistic container log the tail benchmarks read.
//! - [`rss`]: the steady forward feed and RSS sampling of the `*_rss` benches.
//! - [`Case`]: one format's corpus, nagare's parser and its baseline, as the
//!   criterion benches (`benches/parsers.rs`) and the summary table
//!   (`benches/parsers_table.rs`) run them.
//! - [`ticket`]: the ticket the request benches' items carry.

pub mod baseline;
pub mod corpus;
pub mod cri_workload;
pub mod rss;

use nagare_core::EventTime;
use nagare_core::sink::Ticket;
use nagare_parsers::{Parser, ParserConfig};

/// The ticket of the event at `position` of a chunk, alone, in lease slot 0: what
/// the request benches' items carry into the sink kit's batcher.
#[inline]
pub fn ticket(position: usize) -> Ticket {
    Ticket {
        slot: 0,
        position: position as u32,
        events: 1,
    }
}

/// A format's name, parser config, corpus maker and baseline.
type Spec = (
    &'static str,
    &'static str,
    fn(usize) -> Vec<Vec<u8>>,
    baseline::Baseline,
);

/// One format to measure.
#[derive(Debug)]
pub struct Case {
    /// The format's name.
    pub name: &'static str,
    /// What the baseline is.
    pub baseline_name: &'static str,
    /// The lines, without newlines.
    pub lines: Vec<Vec<u8>>,
    parser: Parser,
    baseline: baseline::Baseline,
}

impl Case {
    /// Every format, with `n` lines each.
    pub fn all(n: usize) -> Vec<Case> {
        let spec: [Spec; 7] = [
            (
                "json",
                "format: json\n",
                corpus::json,
                baseline::Baseline::json(),
            ),
            (
                "apache2",
                "format: apache2\n",
                corpus::apache2,
                baseline::Baseline::apache2(),
            ),
            (
                "nginx",
                "format: nginx\n",
                corpus::nginx,
                baseline::Baseline::nginx(),
            ),
            (
                "syslog",
                "format: syslog\nmessage_format: rfc3164\n",
                corpus::syslog,
                baseline::Baseline::syslog(),
            ),
            (
                "logfmt",
                "format: logfmt\n",
                corpus::logfmt,
                baseline::Baseline::logfmt(),
            ),
            (
                "ltsv",
                "format: ltsv\n",
                corpus::ltsv,
                baseline::Baseline::ltsv(),
            ),
            (
                "csv",
                "format: csv\nkeys: [time, user, action, status, detail]\n",
                corpus::csv,
                baseline::Baseline::csv(),
            ),
        ];
        spec.into_iter()
            .map(|(name, yaml, make, baseline)| {
                let config: ParserConfig =
                    serde_norway::from_str(yaml).expect("bench config parses");
                Case {
                    name,
                    baseline_name: baseline.describe(),
                    lines: make(n),
                    parser: Parser::new(&config).expect("bench config is valid"),
                    baseline,
                }
            })
            .collect()
    }

    /// Bytes in the corpus (newlines counted, as in a file).
    pub fn bytes(&self) -> usize {
        self.lines.iter().map(|l| l.len() + 1).sum()
    }

    /// Parses every line with nagare; returns the number of fields made (so the
    /// work cannot be optimized away). Panics if a line does not parse.
    pub fn run_nagare(&self) -> usize {
        let at = EventTime::new(1_709_251_200, 0);
        self.lines
            .iter()
            .map(|l| match self.parser.parse(l, at) {
                Ok(p) => p.record.len(),
                Err(e) => panic!("{}: {e}: {}", self.name, String::from_utf8_lossy(l)),
            })
            .sum()
    }

    /// Parses every line with the baseline; returns the number of fields made.
    pub fn run_baseline(&self) -> usize {
        self.lines.iter().map(|l| self.baseline.parse(l)).sum()
    }

    /// Parses one line with the baseline; the number of fields (0: no match).
    pub fn run_baseline_line(&self, line: &[u8]) -> usize {
        self.baseline.parse(line)
    }
}
