//! Times inside log lines: the formats a `time_format` names, time zones, and the
//! step from a wall-clock reading to an [`EventTime`].
//!
//! Parsing and resolving are two steps because many log times carry no offset (an
//! Apache error log, RFC 3164 syslog) and some no year (RFC 3164 again): a parser
//! reads a [`RawTime`], and [`resolve`] places it with the configured [`Zone`] and,
//! for a year-less time, the event's own time as the reference.

pub mod strptime;

use nagare_core::EventTime;
use nagare_core::time::days_from_civil;
use nagare_core::value::Value;

pub use strptime::Strptime;

/// A wall-clock reading as a log line wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Civil {
    /// The year; `None` when the line has none (RFC 3164 syslog).
    pub year: Option<i32>,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    /// 0 to 23.
    pub hour: u32,
    /// 0 to 59.
    pub minute: u32,
    /// 0 to 60 (a leap second).
    pub second: u32,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Seconds east of UTC, when the line says.
    pub offset: Option<i32>,
}

/// A time read from a line, before it is placed in a time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTime {
    /// An instant (epoch numbers, or a time with an offset already applied).
    Instant(EventTime),
    /// A wall-clock reading, perhaps without offset or year.
    Civil(Civil),
}

/// The time zone of times that carry no offset.
#[derive(Debug, Clone)]
pub enum Zone {
    /// UTC (the default: Kubernetes nodes and containers run in UTC).
    Utc,
    /// A fixed offset, in seconds east of UTC.
    Fixed(i32),
    /// A zone of the IANA time zone database, with its daylight-saving rules.
    Named(jiff::tz::TimeZone),
}

impl Zone {
    /// Parses `UTC`, `Z`, `local` (the system's zone), an offset (`+09:00`, `-0800`,
    /// `+09`) or an IANA name (`Asia/Tokyo`).
    pub fn parse(text: &str) -> Result<Zone, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("gmt") || t == "Z" {
            return Ok(Zone::Utc);
        }
        if t.eq_ignore_ascii_case("local") || t.eq_ignore_ascii_case("localtime") {
            return Ok(Zone::Named(jiff::tz::TimeZone::system()));
        }
        if t.starts_with(['+', '-']) {
            return match parse_offset(t.as_bytes()) {
                Some((secs, n)) if n == t.len() => Ok(Zone::Fixed(secs)),
                _ => Err(format!(
                    "`{text}` is not an offset; write it like `+09:00`, `-0800` or `+09`"
                )),
            };
        }
        jiff::tz::TimeZone::get(t).map(Zone::Named).map_err(|e| {
            format!(
                "`{text}` is not a known time zone ({e}); use an IANA name such as \
                 `Asia/Tokyo`, an offset such as `+09:00`, or `UTC`"
            )
        })
    }
}

/// Places a raw time: applies its offset or the zone, and picks the year of a
/// year-less time that brings it closest to `reference` (a December line read in
/// January belongs to the year before). `None` for an impossible date.
pub fn resolve(raw: RawTime, zone: &Zone, reference: EventTime) -> Option<EventTime> {
    let civil = match raw {
        RawTime::Instant(t) => return Some(t),
        RawTime::Civil(c) => c,
    };
    if !(1..=12).contains(&civil.month)
        || civil.day == 0
        || civil.hour > 23
        || civil.minute > 59
        || civil.second > 60
        || civil.nanos > 999_999_999
    {
        return None;
    }
    match civil.year {
        Some(year) => at_year(&civil, year, zone),
        None => {
            let (ref_year, _, _) = reference.date();
            [ref_year, ref_year - 1, ref_year + 1]
                .into_iter()
                .filter_map(|y| at_year(&civil, y, zone))
                .min_by_key(|t| (t.as_unix_nanos() - reference.as_unix_nanos()).abs())
        }
    }
}

fn at_year(c: &Civil, year: i32, zone: &Zone) -> Option<EventTime> {
    if !(0..=9999).contains(&year) || c.day > days_in_month(year, c.month) {
        return None;
    }
    let local = days_from_civil(year, c.month, c.day) * 86_400
        + i64::from(c.hour) * 3600
        + i64::from(c.minute) * 60
        + i64::from(c.second);
    let offset = match (c.offset, zone) {
        (Some(off), _) => i64::from(off),
        (None, Zone::Utc) => 0,
        (None, Zone::Fixed(off)) => i64::from(*off),
        (None, Zone::Named(tz)) => {
            // jiff has no leap seconds: place :59 and add the second back.
            let dt = jiff::civil::DateTime::new(
                i16::try_from(year).ok()?,
                c.month as i8,
                c.day as i8,
                c.hour as i8,
                c.minute.min(59) as i8,
                c.second.min(59) as i8,
                0,
            )
            .ok()?;
            let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            let secs = ts.as_second() + i64::from(c.second == 60);
            return Some(EventTime::new(secs, c.nanos));
        }
    };
    Some(EventTime::new(local - offset, c.nanos))
}

/// Days in `month` of `year` (proleptic Gregorian).
pub fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// The unit of an epoch number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    /// Seconds (`1705314600`, `1705314600.123`).
    Seconds,
    /// Milliseconds.
    Millis,
    /// Microseconds.
    Micros,
    /// Nanoseconds.
    Nanos,
}

impl EpochUnit {
    fn nanos(self) -> i128 {
        match self {
            EpochUnit::Seconds => 1_000_000_000,
            EpochUnit::Millis => 1_000_000,
            EpochUnit::Micros => 1_000,
            EpochUnit::Nanos => 1,
        }
    }

    /// A number of this unit as a time; `None` when out of range.
    pub fn from_f64(self, n: f64) -> Option<EventTime> {
        // Whole units and the fraction apart: a float holds 1705314600123 exactly,
        // but not that number times a million.
        let whole = n.trunc();
        if !whole.is_finite() || whole.abs() > 9.0e18 {
            return None;
        }
        let frac = ((n - whole) * self.nanos() as f64).round() as i128;
        Some(EventTime::from_unix_nanos(
            whole as i128 * self.nanos() + frac,
        ))
    }

    /// A decimal number of this unit, read exactly (no float rounding):
    /// `-?digits(.digits)?`.
    pub fn parse(self, text: &[u8]) -> Option<EventTime> {
        let (neg, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        let (int, frac) = match memchr::memchr(b'.', digits) {
            Some(i) => (&digits[..i], &digits[i + 1..]),
            None => (digits, &digits[digits.len()..]),
        };
        if int.is_empty() || int.len() > 30 || !int.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let unit = self.nanos();
        let mut total: i128 = 0;
        for &b in int {
            total = total.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
        }
        total = total.checked_mul(unit)?;
        // The fraction, in nanoseconds: as many digits as the unit has below it.
        let mut scale = unit / 10;
        for &b in frac {
            if scale == 0 {
                break;
            }
            total += i128::from(b - b'0') * scale;
            scale /= 10;
        }
        if total > i128::from(i64::MAX) * 1_000_000_000 {
            return None;
        }
        Some(EventTime::from_unix_nanos(if neg { -total } else { total }))
    }
}

/// How a time field is written.
#[derive(Debug, Clone)]
pub enum TimeFormat {
    /// ISO 8601 / RFC 3339 text, or an epoch number in seconds.
    Auto,
    /// ISO 8601 / RFC 3339 text: `2024-01-15T10:30:00.123Z`, a space for `T`, an
    /// offset with or without `:`, or none (then the zone applies).
    Iso8601,
    /// An epoch number (a JSON number or its text).
    Epoch(EpochUnit),
    /// A strftime pattern.
    Strftime(Strptime),
}

impl TimeFormat {
    /// Parses a `time_format` value: `iso8601` (or `rfc3339`), `epoch` (or
    /// `unixtime`, `float`), `epoch_ms`, `epoch_us`, `epoch_ns`, `auto`, or a
    /// strftime pattern such as `%d/%b/%Y:%H:%M:%S %z`.
    pub fn parse_spec(spec: &str) -> Result<TimeFormat, String> {
        Ok(match spec {
            "auto" => TimeFormat::Auto,
            "iso8601" | "rfc3339" => TimeFormat::Iso8601,
            "epoch" | "epoch_s" | "unixtime" | "float" => TimeFormat::Epoch(EpochUnit::Seconds),
            "epoch_ms" => TimeFormat::Epoch(EpochUnit::Millis),
            "epoch_us" => TimeFormat::Epoch(EpochUnit::Micros),
            "epoch_ns" => TimeFormat::Epoch(EpochUnit::Nanos),
            s if s.contains('%') => TimeFormat::Strftime(Strptime::new(s)?),
            s => {
                return Err(format!(
                    "`{s}` is not a time format: use a strftime pattern such as \
                     `%d/%b/%Y:%H:%M:%S %z`, or one of iso8601, epoch, epoch_ms, epoch_us, \
                     epoch_ns, auto"
                ));
            }
        })
    }

    /// Reads a time from text.
    pub fn parse_text(&self, text: &[u8]) -> Option<RawTime> {
        let text = text.trim_ascii();
        match self {
            TimeFormat::Auto => parse_iso8601(text)
                .map(RawTime::Civil)
                .or_else(|| EpochUnit::Seconds.parse(text).map(RawTime::Instant)),
            TimeFormat::Iso8601 => parse_iso8601(text).map(RawTime::Civil),
            TimeFormat::Epoch(unit) => unit.parse(text).map(RawTime::Instant),
            TimeFormat::Strftime(p) => p.parse(text),
        }
    }

    /// Reads a time from a record's value: text, a number, or a time.
    pub fn parse_value(&self, value: &Value) -> Option<RawTime> {
        let unit = match self {
            TimeFormat::Epoch(unit) => *unit,
            _ => EpochUnit::Seconds,
        };
        match value {
            Value::Str(s) => self.parse_text(s.as_bytes()),
            Value::Bytes(b) => self.parse_text(b),
            Value::Time(t) => Some(RawTime::Instant(*t)),
            Value::Int(i) if !matches!(self, TimeFormat::Strftime(_) | TimeFormat::Iso8601) => {
                unit.parse(i.to_string().as_bytes()).map(RawTime::Instant)
            }
            Value::UInt(u) if !matches!(self, TimeFormat::Strftime(_) | TimeFormat::Iso8601) => {
                unit.parse(u.to_string().as_bytes()).map(RawTime::Instant)
            }
            Value::Float(f) if !matches!(self, TimeFormat::Strftime(_) | TimeFormat::Iso8601) => {
                unit.from_f64(*f).map(RawTime::Instant)
            }
            Value::Int(_) | Value::UInt(_) | Value::Float(_) => {
                self.parse_text(value.to_text().as_bytes())
            }
            _ => None,
        }
    }
}

/// Parses `YYYY-MM-DD[T ]HH:MM[:SS[.fraction]][Z|±HH[:]MM|±HH]`.
pub fn parse_iso8601(s: &[u8]) -> Option<Civil> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let b = s.get(r)?;
        b.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if s.len() < 16 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    let mut c = Civil {
        year: Some(num(0..4)? as i32),
        month: num(5..7)?,
        day: num(8..10)?,
        hour: num(11..13)?,
        ..Civil::default()
    };
    if s[13] != b':' {
        return None;
    }
    c.minute = num(14..16)?;
    let mut i = 16;
    if s.get(i) == Some(&b':') {
        c.second = num(17..19)?;
        i = 19;
        if matches!(s.get(i), Some(b'.' | b',')) {
            let (nanos, n) = fraction(&s[i + 1..]);
            if n == 0 {
                return None;
            }
            c.nanos = nanos;
            i += 1 + n;
        }
    }
    match s.get(i) {
        None => {}
        Some(b'Z' | b'z') if i + 1 == s.len() => c.offset = Some(0),
        Some(b'+' | b'-') => {
            let (off, n) = parse_offset(&s[i..])?;
            if i + n != s.len() {
                return None;
            }
            c.offset = Some(off);
        }
        _ => return None,
    }
    Some(c)
}

/// Reads fraction digits: (nanoseconds, digits read). Digits past the ninth are read
/// and dropped.
pub(crate) fn fraction(s: &[u8]) -> (u32, usize) {
    let mut nanos = 0u32;
    let mut n = 0;
    while let Some(&b) = s.get(n) {
        if !b.is_ascii_digit() {
            break;
        }
        if n < 9 {
            nanos = nanos * 10 + u32::from(b - b'0');
        }
        n += 1;
    }
    for _ in n..9 {
        nanos *= 10;
    }
    (nanos, n)
}

/// Reads `±HH:MM`, `±HHMM` or `±HH` (or `Z`): (seconds east of UTC, bytes read).
pub(crate) fn parse_offset(s: &[u8]) -> Option<(i32, usize)> {
    let sign = match s.first()? {
        b'Z' | b'z' => return Some((0, 1)),
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let d = |i: usize| -> Option<i32> {
        let b = *s.get(i)?;
        b.is_ascii_digit().then(|| i32::from(b - b'0'))
    };
    let hours = d(1)? * 10 + d(2)?;
    let (minutes, n) = match s.get(3) {
        Some(b':') => (d(4)? * 10 + d(5)?, 6),
        Some(b) if b.is_ascii_digit() => (d(3)? * 10 + d(4)?, 5),
        _ => (0, 3),
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some((sign * (hours * 3600 + minutes * 60), n))
}

/// Month number (1-12) of an English month name, full or abbreviated, any case.
pub(crate) fn month_from_name(s: &[u8]) -> Option<(u32, usize)> {
    const NAMES: [&[u8]; 12] = [
        b"january",
        b"february",
        b"march",
        b"april",
        b"may",
        b"june",
        b"july",
        b"august",
        b"september",
        b"october",
        b"november",
        b"december",
    ];
    name_prefix(s, &NAMES).map(|(i, n)| (i as u32 + 1, n))
}

/// Index of an English weekday name (Sunday = 0), full or abbreviated, any case.
pub(crate) fn weekday_from_name(s: &[u8]) -> Option<(usize, usize)> {
    const NAMES: [&[u8]; 7] = [
        b"sunday",
        b"monday",
        b"tuesday",
        b"wednesday",
        b"thursday",
        b"friday",
        b"saturday",
    ];
    name_prefix(s, &NAMES)
}

/// Matches a full name or its three-letter abbreviation at the start of `s`:
/// (index, bytes read).
fn name_prefix(s: &[u8], names: &[&[u8]]) -> Option<(usize, usize)> {
    let abbr = s.get(..3)?;
    let i = names
        .iter()
        .position(|n| n[..3].eq_ignore_ascii_case(abbr))?;
    let full = names[i];
    let n = if s.len() >= full.len() && s[..full.len()].eq_ignore_ascii_case(full) {
        full.len()
    } else {
        3
    };
    Some((i, n))
}

/// Month of a three-letter English abbreviation exactly as logs write it (`Jan`);
/// the fast path of the Apache, nginx and syslog parsers.
#[inline]
pub(crate) fn month_abbr(s: &[u8]) -> Option<u32> {
    Some(match s {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return month_from_name(s).filter(|&(_, n)| n == 3).map(|(m, _)| m),
    })
}

/// Two ASCII digits at `s[i..i + 2]`.
#[inline]
pub(crate) fn two_digits(s: &[u8], i: usize) -> Option<u32> {
    let a = *s.get(i)?;
    let b = *s.get(i + 1)?;
    (a.is_ascii_digit() && b.is_ascii_digit())
        .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
}

#[cfg(test)]
mod tests;
