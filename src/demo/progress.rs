//! The demo's progress while it runs: records generated and delivered so far and the
//! delivery rate, on standard error every interval. On a terminal it is one line
//! rewritten in place; otherwise (a pipe, a CI log) a line per report.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Reports progress at most once per interval.
#[derive(Debug)]
pub(super) struct Progress {
    every: Duration,
    began: Instant,
    last: Instant,
    last_delivered: usize,
    terminal: bool,
    /// Whether a line on the terminal waits for its end.
    open_line: bool,
}

impl Progress {
    /// Reports every `every` (none when zero), starting now.
    pub(super) fn new(every: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            every,
            began: now,
            last: now,
            last_delivered: 0,
            terminal: std::io::stderr().is_terminal(),
            open_line: false,
        }
    }

    /// Reports `generated` and `delivered` if an interval has passed since the last
    /// report.
    pub(super) fn tick(&mut self, generated: usize, delivered: usize) {
        let now = Instant::now();
        let since = now.duration_since(self.last);
        if self.every.is_zero() || since < self.every {
            return;
        }
        let rate = delivered.saturating_sub(self.last_delivered) as f64 / since.as_secs_f64();
        let text = line(generated, delivered, rate, now.duration_since(self.began));
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // Back to the start of the line, the report, then clear what is left of a
            // longer earlier one.
            let _ = write!(err, "\r{text}\x1b[K");
            self.open_line = true;
        } else {
            let _ = writeln!(err, "nagare demo: {text}");
        }
        let _ = err.flush();
        self.last = now;
        self.last_delivered = delivered;
    }

    /// Ends the line on a terminal, so that what is printed next starts on its own.
    pub(super) fn finish(&mut self) {
        if self.open_line {
            let _ = writeln!(std::io::stderr());
            self.open_line = false;
        }
    }
}

/// One report: `generated 1000, delivered 640 (64%), 1250 records/s, 1.5 s`.
pub(super) fn line(generated: usize, delivered: usize, rate: f64, elapsed: Duration) -> String {
    let percent = if generated == 0 {
        0.0
    } else {
        delivered as f64 * 100.0 / generated as f64
    };
    format!(
        "generated {generated}, delivered {delivered} ({percent:.0}%), {rate:.0} records/s, {:.1} s",
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_says_how_far_and_how_fast() {
        assert_eq!(
            line(1000, 640, 1250.4, Duration::from_millis(1500)),
            "generated 1000, delivered 640 (64%), 1250 records/s, 1.5 s"
        );
        assert_eq!(
            line(0, 0, 0.0, Duration::ZERO),
            "generated 0, delivered 0 (0%), 0 records/s, 0.0 s"
        );
    }

    #[test]
    fn nothing_is_reported_before_an_interval_passed() {
        let mut p = Progress::new(Duration::from_secs(3600));
        p.tick(10, 5);
        assert_eq!(p.last_delivered, 0, "no report within the interval");
        let mut p = Progress::new(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        p.tick(10, 5);
        assert_eq!(p.last_delivered, 5);
    }
}
