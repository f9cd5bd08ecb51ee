//! Names each event's index (or data stream) from the [`IndexTarget`], fast: a fixed
//! index costs a pointer copy, dates are formatted once per period (a day for
//! `%Y.%m.%d`), and a templated name is rendered into a reused buffer and found among
//! the names seen recently, which were checked against Elasticsearch's rules when
//! first seen; only a new name is checked, and only a new period formats a date.
//!
//! Rendered names are lower-cased (Elasticsearch takes only lowercase names, and
//! `{kubernetes.namespace_name}` values are lowercase anyway); a name that is still
//! illegal, or a template whose field is missing, takes `index_fallback`, or, without
//! it, sends the event to the dead-letter output with the reason.

use std::sync::Arc;

use nagare_core::template::Template;
use nagare_core::{EventTime, Map};

use super::index::{
    DATA_STREAM_PARTS, IndexTarget, data_stream_name_problem, data_stream_part_problem,
    index_name_problem,
};

/// How many recent names a namer keeps.
const RECENT: usize = 16;

/// An event's index, and whether it is `index_fallback`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The index or data stream.
    pub index: Arc<str>,
    /// Whether the template could not name one and `index_fallback` did.
    pub fallback: bool,
}

/// Names indices; one per worker (templates are not `Sync`).
#[derive(Debug)]
pub struct IndexNamer {
    kind: Kind,
    /// Names known legal, newest last.
    recent: Vec<Arc<str>>,
    name: String,
    part: String,
}

#[derive(Debug)]
enum Kind {
    Fixed(Arc<str>),
    /// The daily index of the current period, cached.
    Daily {
        prefix: String,
        format: String,
        period: i64,
        cached: Option<(i64, Arc<str>)>,
    },
    Templated {
        index: Dated,
        fallback: Option<Dated>,
    },
    DataStream {
        parts: [Template; 3],
        fallback: Option<Dated>,
    },
}

/// A template whose literal text may hold strftime conversions of the event time,
/// with that text formatted for the current period.
#[derive(Debug)]
struct Dated {
    template: Template,
    period: i64,
    /// The period `formatted` is for.
    key: Option<i64>,
    formatted: Vec<String>,
}

impl Dated {
    fn new(template: Template) -> Self {
        let period = template
            .literals()
            .filter(|l| l.contains('%'))
            .map(format_period)
            .min()
            .unwrap_or(i64::MAX);
        Self {
            template,
            period,
            key: None,
            formatted: Vec::new(),
        }
    }

    /// Appends the text for the event; on an error `out` holds part of it.
    fn render(
        &mut self,
        tag: &str,
        time: EventTime,
        record: &Map,
        out: &mut String,
    ) -> Result<(), String> {
        let key = time.secs().div_euclid(self.period);
        if self.key != Some(key) {
            let ts =
                jiff::Timestamp::new(time.secs(), time.subsec_nanos() as i32).unwrap_or_default();
            self.formatted = self
                .template
                .literals()
                .map(|l| {
                    if l.contains('%') {
                        // The format was checked by `validate`.
                        jiff::fmt::strtime::format(l, ts).unwrap_or_default()
                    } else {
                        l.to_string()
                    }
                })
                .collect();
            self.key = Some(key);
        }
        let formatted = &self.formatted;
        self.template
            .render_into_with(tag, record, out, |i, _, out| out.push_str(&formatted[i]))
            .map_err(|m| m.to_string())
    }
}

impl IndexNamer {
    /// A namer for a checked target.
    pub fn new(target: IndexTarget) -> Self {
        let kind = match target {
            IndexTarget::Fixed(index) => Kind::Fixed(Arc::from(index)),
            IndexTarget::Daily { prefix, format } => Kind::Daily {
                period: format_period(&format),
                prefix,
                format,
                cached: None,
            },
            IndexTarget::Templated { index, fallback } => Kind::Templated {
                index: Dated::new(index),
                fallback: fallback.map(Dated::new),
            },
            IndexTarget::DataStream { parts, fallback } => Kind::DataStream {
                parts,
                fallback: fallback.map(Dated::new),
            },
        };
        Self {
            kind,
            recent: Vec::with_capacity(RECENT),
            name: String::with_capacity(64),
            part: String::with_capacity(32),
        }
    }

    /// The index of an event, or why it has none.
    pub fn name(&mut self, tag: &str, time: EventTime, record: &Map) -> Result<Named, String> {
        // What a fallback name is checked against: a data stream's takes the place
        // of a data stream name.
        let problem = match self.kind {
            Kind::DataStream { .. } => data_stream_name_problem,
            _ => index_name_problem,
        };
        let (primary, fallback) = match &mut self.kind {
            Kind::Fixed(index) => {
                return Ok(Named {
                    index: index.clone(),
                    fallback: false,
                });
            }
            Kind::Daily {
                prefix,
                format,
                period,
                cached,
            } => {
                return Ok(Named {
                    index: daily(prefix, format, *period, cached, time),
                    fallback: false,
                });
            }
            Kind::Templated { index, fallback } => {
                self.name.clear();
                let first = index
                    .render(tag, time, record, &mut self.name)
                    .and_then(|()| legal(&mut self.recent, &mut self.name, index_name_problem));
                (
                    first.map_err(|e| format!("index `{}`: {e}", index.template)),
                    fallback,
                )
            }
            Kind::DataStream { parts, fallback } => {
                let first = data_stream(parts, tag, record, &mut self.name, &mut self.part)
                    .and_then(|()| legal(&mut self.recent, &mut self.name, index_name_problem));
                (first, fallback)
            }
        };
        let first = match primary {
            Ok(index) => {
                return Ok(Named {
                    index,
                    fallback: false,
                });
            }
            Err(first) => first,
        };
        let Some(fallback) = fallback else {
            return Err(format!("{first}, and index_fallback is not set"));
        };
        self.name.clear();
        fallback
            .render(tag, time, record, &mut self.name)
            .and_then(|()| legal(&mut self.recent, &mut self.name, problem))
            .map(|index| Named {
                index,
                fallback: true,
            })
            .map_err(|second| format!("{first}; index_fallback `{}`: {second}", fallback.template))
    }
}

/// `name`, lower-cased, as a shared name: one of the recent ones, or a new one once
/// `problem` finds nothing wrong with it.
fn legal(
    recent: &mut Vec<Arc<str>>,
    name: &mut String,
    problem: fn(&str) -> Option<String>,
) -> Result<Arc<str>, String> {
    // Recent names are lower-case: one that matches needs no lower-casing.
    let known =
        |recent: &[Arc<str>], name: &str| recent.iter().rev().find(|k| ***k == *name).cloned();
    if let Some(known) = known(recent, name) {
        return Ok(known);
    }
    lowercase(name);
    if let Some(known) = known(recent, name) {
        return Ok(known);
    }
    if let Some(problem) = problem(name) {
        return Err(problem);
    }
    let shared: Arc<str> = Arc::from(name.as_str());
    if recent.len() == RECENT {
        recent.remove(0);
    }
    recent.push(shared.clone());
    Ok(shared)
}

fn lowercase(s: &mut String) {
    if s.is_ascii() {
        s.make_ascii_lowercase();
    } else if s.chars().any(char::is_uppercase) {
        *s = s.to_lowercase();
    }
}

/// Renders `<type>-<dataset>-<namespace>` into `name`, each part lower-cased and
/// checked against the data stream naming scheme.
fn data_stream(
    parts: &[Template; 3],
    tag: &str,
    record: &Map,
    name: &mut String,
    part: &mut String,
) -> Result<(), String> {
    name.clear();
    for (i, (t, which)) in parts.iter().zip(DATA_STREAM_PARTS).enumerate() {
        part.clear();
        let problem = match t.render_into(tag, record, part) {
            Err(missing) => Some(missing.to_string()),
            Ok(()) => {
                lowercase(part);
                data_stream_part_problem(which, part)
            }
        };
        if let Some(problem) = problem {
            return Err(format!("data_stream.{which} `{t}`: {problem}"));
        }
        if i > 0 {
            name.push('-');
        }
        name.push_str(part);
    }
    Ok(())
}

/// The daily index of `time`, from the cache when it is in the cached period.
fn daily(
    prefix: &str,
    format: &str,
    period: i64,
    cached: &mut Option<(i64, Arc<str>)>,
    time: EventTime,
) -> Arc<str> {
    let key = time.secs().div_euclid(period);
    if let Some((k, name)) = cached
        && *k == key
    {
        return name.clone();
    }
    let ts = jiff::Timestamp::new(time.secs(), time.subsec_nanos() as i32).unwrap_or_default();
    // The format was checked by `validate`.
    let date = jiff::fmt::strtime::format(format, ts).unwrap_or_default();
    let name: Arc<str> = Arc::from(format!("{prefix}-{date}"));
    *cached = Some((key, name.clone()));
    name
}

/// The longest period (in seconds, aligned on UTC) over which `format` prints the same
/// text: a day when it has only date conversions, an hour or a minute when it has
/// those, a second otherwise.
pub fn format_period(format: &str) -> i64 {
    let mut period = 86_400;
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        // Skip flags, width and modifiers up to the conversion letter.
        let conv = chars
            .by_ref()
            .find(|c| !matches!(c, '-' | '_' | '0'..='9' | '^' | '#' | ':' | 'E' | 'O'));
        let p = match conv {
            Some('%' | 'n' | 't') => 86_400,
            Some(
                'Y' | 'y' | 'C' | 'm' | 'd' | 'e' | 'j' | 'b' | 'B' | 'h' | 'a' | 'A' | 'u' | 'w'
                | 'U' | 'W' | 'V' | 'G' | 'g' | 'D' | 'F' | 'x',
            ) => 86_400,
            Some('H' | 'k' | 'I' | 'l' | 'p' | 'P') => 3_600,
            Some('M' | 'R') => 60,
            _ => 1,
        };
        period = period.min(p);
    }
    period
}
