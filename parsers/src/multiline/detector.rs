//! The multiline state machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nagare_core::EventTime;
use nagare_core::component::Invalid;
use regex::bytes::Regex;

use super::config::MultilineConfig;
use super::rules::{START, rules};
use crate::container::Stream;

/// State index of [`START`].
const START_ID: usize = 0;

#[derive(Debug)]
struct Compiled {
    /// Per state, its rules in order: (expression, next state).
    states: Vec<Vec<(Regex, usize)>>,
    max_lines: usize,
    max_bytes: usize,
    flush_timeout: Duration,
}

/// The compiled rules of a [`MultilineConfig`]; cheap to clone, shared by the
/// [`Multiline`] of every stream.
#[derive(Debug, Clone)]
pub struct MultilineRules {
    compiled: Arc<Compiled>,
}

impl MultilineRules {
    /// Compiles the rules; an unusable config is an [`Invalid`] naming its key.
    pub fn new(config: &MultilineConfig) -> Result<Self, Invalid> {
        if config.languages.is_empty() && config.custom.is_none() {
            return Err(Invalid::new(
                "languages",
                "multiline needs `languages` (java, python, go, ruby, nodejs, all) or a `custom` rule",
            ));
        }
        if config.max_lines == 0 {
            return Err(Invalid::new("max_lines", "must be at least 1"));
        }
        if config.max_bytes.0 == 0 {
            return Err(Invalid::new("max_bytes", "must be more than 0 bytes"));
        }
        let mut names: Vec<String> = vec![START.to_string()];
        let mut id = |name: &str| -> usize {
            match names.iter().position(|n| n == name) {
                Some(i) => i,
                None => {
                    names.push(name.to_string());
                    names.len() - 1
                }
            }
        };
        let mut table: Vec<(usize, Regex, usize)> = Vec::new();
        let mut seen = Vec::new();
        for lang in &config.languages {
            for (from, expr, to) in rules(*lang) {
                // `all` beside a language would add its rules twice.
                if seen.contains(&(from, expr)) {
                    continue;
                }
                seen.push((from, expr));
                let re = Regex::new(expr).expect("built-in multiline rules compile");
                let to = id(to);
                for f in from {
                    table.push((id(f), re.clone(), to));
                }
            }
        }
        if let Some(custom) = &config.custom {
            let compile = |key: &str, expr: &str| {
                Regex::new(expr).map_err(|e| {
                    Invalid::new(
                        format!("custom.{key}"),
                        format!("`{expr}` is not a valid regular expression: {e}"),
                    )
                })
            };
            let start = compile("start", &custom.start)?;
            let cont = compile("continuation", &custom.continuation)?;
            let state = id("custom");
            // A first line while in an event continues nothing: it ends the event
            // and, through the start rules, begins the next.
            table.push((START_ID, start, state));
            table.push((state, cont, state));
        }
        let mut states: Vec<Vec<(Regex, usize)>> = vec![Vec::new(); names.len()];
        for (from, re, to) in table {
            states[from].push((re, to));
        }
        Ok(Self {
            compiled: Arc::new(Compiled {
                states,
                max_lines: config.max_lines,
                max_bytes: config.max_bytes.as_usize(),
                flush_timeout: config.flush_timeout.0,
            }),
        })
    }
}

/// One line going in: a whole line of a container's output (partial lines already
/// merged), without its newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line's text.
    pub bytes: &'a [u8],
    /// The stream it came from, when known.
    pub stream: Option<Stream>,
    /// When it was written.
    pub time: EventTime,
    /// Where it starts in its file (see [`LogLine::offset`](crate::container::LogLine::offset)).
    pub offset: u64,
}

/// One event coming out: a line on its own, or the lines of a trace joined by `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The text.
    pub bytes: &'a [u8],
    /// The stream of its first line.
    pub stream: Option<Stream>,
    /// The time of its first line.
    pub time: EventTime,
    /// The offset of its first line.
    pub offset: u64,
    /// How many lines it joins.
    pub lines: usize,
    /// It was cut at `max_lines` or `max_bytes`: the lines after it belong to it.
    pub cut: bool,
}

/// The joining state of one stream.
#[derive(Debug, Clone)]
pub struct Multiline {
    detector: MultilineRules,
    state: usize,
    held: Vec<u8>,
    lines: usize,
    stream: Option<Stream>,
    time: EventTime,
    /// The offset of the held event's first line.
    offset: u64,
    /// When the last line was added to the held event.
    last: Option<Instant>,
}

impl Multiline {
    /// A stream's state, between events.
    pub fn new(detector: &MultilineRules) -> Self {
        Self {
            detector: detector.clone(),
            state: START_ID,
            held: Vec::new(),
            lines: 0,
            stream: None,
            time: EventTime::default(),
            offset: 0,
            last: None,
        }
    }

    /// Whether an event is held, waiting for its next line.
    pub fn is_holding(&self) -> bool {
        self.lines > 0
    }

    /// When the held event is due to be emitted by [`poll`](Self::poll) if no line
    /// comes; `None` when nothing is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.last.map(|t| t + self.detector.compiled.flush_timeout)
    }

    /// Takes one line at `now`; calls `emit` for each event it completes (at most
    /// two: the held event it ends, and the line itself if it stands alone).
    pub fn push(&mut self, line: Line<'_>, now: Instant, mut emit: impl FnMut(Message<'_>)) {
        let c = Arc::clone(&self.detector.compiled);
        if self.is_holding() {
            let fits =
                self.lines < c.max_lines && self.held.len() + 1 + line.bytes.len() <= c.max_bytes;
            let next = c.states[self.state]
                .iter()
                .find(|(re, _)| re.is_match(line.bytes))
                .map(|(_, to)| *to);
            match next {
                Some(to) if fits => {
                    self.held.push(b'\n');
                    self.held.extend_from_slice(line.bytes);
                    self.lines += 1;
                    self.last = Some(now);
                    self.state = to;
                    // A rule back to `start` ends the event with this line.
                    if to == START_ID || self.lines >= c.max_lines {
                        self.emit_held(self.lines >= c.max_lines && to != START_ID, &mut emit);
                    }
                    return;
                }
                Some(_) => self.emit_held(true, &mut emit),
                None => self.emit_held(false, &mut emit),
            }
        }
        let start = c.states[START_ID]
            .iter()
            .find(|(re, _)| re.is_match(line.bytes))
            .map(|(_, to)| *to);
        match start {
            Some(to) if to != START_ID && c.max_lines > 1 && line.bytes.len() < c.max_bytes => {
                self.held.clear();
                self.held.extend_from_slice(line.bytes);
                self.lines = 1;
                self.stream = line.stream;
                self.time = line.time;
                self.offset = line.offset;
                self.last = Some(now);
                self.state = to;
            }
            _ => emit(Message {
                bytes: line.bytes,
                stream: line.stream,
                time: line.time,
                offset: line.offset,
                lines: 1,
                cut: false,
            }),
        }
    }

    /// Emits the held event if it waited `flush_timeout` for a line that did not
    /// come.
    pub fn poll(&mut self, now: Instant, mut emit: impl FnMut(Message<'_>)) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.emit_held(false, &mut emit);
        }
    }

    /// Emits the held event now (the file ended, or the source is stopping).
    pub fn flush(&mut self, mut emit: impl FnMut(Message<'_>)) {
        self.emit_held(false, &mut emit);
    }

    fn emit_held(&mut self, cut: bool, emit: &mut impl FnMut(Message<'_>)) {
        if self.lines > 0 {
            emit(Message {
                bytes: &self.held,
                stream: self.stream,
                time: self.time,
                offset: self.offset,
                lines: self.lines,
                cut,
            });
        }
        self.held.clear();
        self.lines = 0;
        self.last = None;
        self.state = START_ID;
        // A trace can be large; do not keep its buffer for the stream's lifetime.
        if self.held.capacity() > 64 * 1024 {
            self.held = Vec::new();
        }
    }
}
