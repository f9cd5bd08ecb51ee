//! strftime-style time patterns, compiled once and matched against each line's time
//! field without allocating.
//!
//! The directives are those of C's `strptime` plus the ones Fluentd, Fluent Bit and
//! Vector users bring: `%N` / `%3N` / `%L` (Ruby and Fluent Bit fractions), `%f` and
//! `%.f` (fractions as Vector writes them), `%s` and `%Q` (epoch seconds and
//! milliseconds), `%z` and `%:z` (offsets with or without a colon, or `Z`). A space in
//! the pattern matches any run of spaces, as in C. The whole field must match.

use super::{Civil, RawTime, fraction, month_from_name, parse_offset, weekday_from_name};
use nagare_core::EventTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    Literal(u8),
    Space,
    Year,
    Year2,
    Month,
    MonthName,
    Day,
    DayOfYear,
    Hour,
    Hour12,
    AmPm,
    Minute,
    Second,
    /// Fraction digits.
    Fraction,
    /// An optional `.` followed by fraction digits.
    DotFraction,
    Offset,
    ZoneName,
    Weekday,
    EpochSeconds,
    EpochMillis,
}

/// A compiled strftime pattern.
#[derive(Debug, Clone)]
pub struct Strptime {
    pattern: String,
    items: Vec<Item>,
}

impl Strptime {
    /// Compiles `pattern`; an unknown directive is an error that names it.
    pub fn new(pattern: &str) -> Result<Self, String> {
        let mut items = Vec::new();
        let b = pattern.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            i += 1;
            if c.is_ascii_whitespace() {
                if items.last() != Some(&Item::Space) {
                    items.push(Item::Space);
                }
                continue;
            }
            if c != b'%' {
                items.push(Item::Literal(c));
                continue;
            }
            // Optional width (`%3N`), `:` (`%:z`) and `.` (`%.f`, `%.3f`) modifiers.
            let start = i - 1;
            let dot = b.get(i) == Some(&b'.');
            if dot {
                i += 1;
            }
            let colon = b.get(i) == Some(&b':');
            if colon {
                i += 1;
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let Some(&d) = b.get(i) else {
                return Err(format!("time_format `{pattern}` ends with a lone `%`"));
            };
            i += 1;
            let directive = match (dot, d) {
                (true, b'f') => vec![Item::DotFraction],
                (true, _) => return Err(unknown(pattern, &b[start..i])),
                (false, b'Y') => vec![Item::Year],
                (false, b'y') => vec![Item::Year2],
                (false, b'm') => vec![Item::Month],
                (false, b'b' | b'B' | b'h') => vec![Item::MonthName],
                (false, b'd' | b'e') => vec![Item::Day],
                (false, b'j') => vec![Item::DayOfYear],
                (false, b'H' | b'k') => vec![Item::Hour],
                (false, b'I' | b'l') => vec![Item::Hour12],
                (false, b'p' | b'P') => vec![Item::AmPm],
                (false, b'M') => vec![Item::Minute],
                (false, b'S') => vec![Item::Second],
                (false, b'N' | b'L' | b'f') => vec![Item::Fraction],
                (false, b'z') => vec![Item::Offset],
                (false, b'Z') => vec![Item::ZoneName],
                (false, b'a' | b'A') => vec![Item::Weekday],
                (false, b's') => vec![Item::EpochSeconds],
                (false, b'Q') => vec![Item::EpochMillis],
                (false, b'T') => vec![
                    Item::Hour,
                    Item::Literal(b':'),
                    Item::Minute,
                    Item::Literal(b':'),
                    Item::Second,
                ],
                (false, b'R') => vec![Item::Hour, Item::Literal(b':'), Item::Minute],
                (false, b'D') => vec![
                    Item::Month,
                    Item::Literal(b'/'),
                    Item::Day,
                    Item::Literal(b'/'),
                    Item::Year2,
                ],
                (false, b'F') => vec![
                    Item::Year,
                    Item::Literal(b'-'),
                    Item::Month,
                    Item::Literal(b'-'),
                    Item::Day,
                ],
                (false, b'n' | b't') => vec![Item::Space],
                (false, b'%') => vec![Item::Literal(b'%')],
                _ => return Err(unknown(pattern, &b[start..i])),
            };
            items.extend(directive);
        }
        Ok(Self {
            pattern: pattern.to_string(),
            items,
        })
    }

    /// The pattern as configured.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Matches the whole of `s` (surrounding spaces aside).
    pub fn parse(&self, s: &[u8]) -> Option<RawTime> {
        let s = s.trim_ascii();
        let mut c = Civil {
            month: 1,
            day: 1,
            ..Civil::default()
        };
        let mut pm: Option<bool> = None;
        let mut hour12: Option<u32> = None;
        let mut day_of_year: Option<u32> = None;
        let mut epoch: Option<EventTime> = None;
        let mut i = 0;
        for item in &self.items {
            match *item {
                Item::Literal(l) => {
                    if s.get(i) != Some(&l) {
                        return None;
                    }
                    i += 1;
                }
                Item::Space => {
                    while s.get(i).is_some_and(u8::is_ascii_whitespace) {
                        i += 1;
                    }
                }
                Item::Year => {
                    let (neg, at) = match s.get(i) {
                        Some(b'-') => (true, i + 1),
                        _ => (false, i),
                    };
                    let (v, n) = number(s, at, 4)?;
                    c.year = Some(if neg { -(v as i32) } else { v as i32 });
                    i = at + n;
                }
                Item::Year2 => {
                    let (v, n) = number(s, i, 2)?;
                    c.year = Some(if v < 69 {
                        2000 + v as i32
                    } else {
                        1900 + v as i32
                    });
                    i += n;
                }
                Item::Month => (c.month, i) = field(s, i, 2)?,
                Item::MonthName => {
                    let (m, n) = month_from_name(&s[i..])?;
                    c.month = m;
                    i += n;
                }
                Item::Day => {
                    // `%e` pads with a space; `%d` is often matched against it too.
                    if s.get(i) == Some(&b' ') {
                        i += 1;
                    }
                    (c.day, i) = field(s, i, 2)?;
                }
                Item::DayOfYear => {
                    let (v, n) = number(s, i, 3)?;
                    day_of_year = Some(v);
                    i += n;
                }
                Item::Hour => (c.hour, i) = field(s, i, 2)?,
                Item::Hour12 => {
                    let (h, next) = field(s, i, 2)?;
                    hour12 = Some(h);
                    i = next;
                }
                Item::AmPm => {
                    let word = s.get(i..i + 2)?;
                    pm = Some(if word.eq_ignore_ascii_case(b"pm") {
                        true
                    } else if word.eq_ignore_ascii_case(b"am") {
                        false
                    } else {
                        return None;
                    });
                    i += 2;
                }
                Item::Minute => (c.minute, i) = field(s, i, 2)?,
                Item::Second => (c.second, i) = field(s, i, 2)?,
                Item::Fraction => {
                    let (nanos, n) = fraction(&s[i..]);
                    if n == 0 {
                        return None;
                    }
                    c.nanos = nanos;
                    i += n;
                }
                Item::DotFraction => {
                    if s.get(i) == Some(&b'.') {
                        let (nanos, n) = fraction(&s[i + 1..]);
                        if n == 0 {
                            return None;
                        }
                        c.nanos = nanos;
                        i += 1 + n;
                    }
                }
                Item::Offset => {
                    let (off, n) = parse_offset(&s[i..])?;
                    c.offset = Some(off);
                    i += n;
                }
                Item::ZoneName => {
                    let rest = &s[i..];
                    let n = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
                    match &rest[..n] {
                        b"UTC" | b"GMT" | b"UT" | b"Z" => c.offset = Some(0),
                        _ => return None,
                    }
                    i += n;
                }
                Item::Weekday => {
                    let (_, n) = weekday_from_name(&s[i..])?;
                    i += n;
                }
                Item::EpochSeconds | Item::EpochMillis => {
                    let neg = s.get(i) == Some(&b'-');
                    let at = i + usize::from(neg);
                    let n = s[at..].iter().take_while(|b| b.is_ascii_digit()).count();
                    if n == 0 || n > 19 {
                        return None;
                    }
                    let unit = if *item == Item::EpochSeconds {
                        super::EpochUnit::Seconds
                    } else {
                        super::EpochUnit::Millis
                    };
                    epoch = Some(unit.parse(&s[i..at + n])?);
                    i = at + n;
                }
            }
        }
        if i != s.len() {
            return None;
        }
        if let Some(t) = epoch {
            let nanos = t.as_unix_nanos() + i128::from(c.nanos);
            return Some(RawTime::Instant(EventTime::from_unix_nanos(nanos)));
        }
        if let Some(h) = hour12 {
            if !(1..=12).contains(&h) {
                return None;
            }
            c.hour = match pm {
                Some(true) => h % 12 + 12,
                _ => h % 12,
            };
        }
        if let Some(doy) = day_of_year {
            let year = c.year?;
            let mut left = doy;
            let mut month = 1;
            while month <= 12 && left > super::days_in_month(year, month) {
                left -= super::days_in_month(year, month);
                month += 1;
            }
            if doy == 0 || month > 12 {
                return None;
            }
            c.month = month;
            c.day = left;
        }
        Some(RawTime::Civil(c))
    }
}

fn unknown(pattern: &str, directive: &[u8]) -> String {
    format!(
        "time_format `{pattern}` has the unknown directive `{}`",
        String::from_utf8_lossy(directive)
    )
}

/// Up to `max` digits at `s[i..]`: (value, digits read); at least one.
#[inline]
fn number(s: &[u8], i: usize, max: usize) -> Option<(u32, usize)> {
    let mut v = 0u32;
    let mut n = 0;
    while n < max {
        match s.get(i + n) {
            Some(&b) if b.is_ascii_digit() => v = v * 10 + u32::from(b - b'0'),
            _ => break,
        }
        n += 1;
    }
    (n > 0).then_some((v, n))
}

/// A numeric field: (value, index after it).
#[inline]
fn field(s: &[u8], i: usize, max: usize) -> Option<(u32, usize)> {
    number(s, i, max).map(|(v, n)| (v, i + n))
}
