//! `EventTime`: seconds and nanoseconds since the Unix epoch, as Fluentd carries it.
//!
//! On the wire it is MessagePack ext type 0 (8 bytes: seconds and nanoseconds, both
//! 32-bit big endian). RFC 3339 parsing and formatting are hand-written because they
//! run once per log line on the hot path; the calendar arithmetic is the classic
//! days-from-civil algorithm.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A point in time with nanosecond precision, as Fluentd's `EventTime`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventTime {
    secs: i64,
    nanos: u32,
}

impl EventTime {
    /// Builds a time from seconds and nanoseconds since the epoch. Nanoseconds past one
    /// second are carried into the seconds.
    pub fn new(secs: i64, nanos: u32) -> Self {
        Self {
            secs: secs + i64::from(nanos / 1_000_000_000),
            nanos: nanos % 1_000_000_000,
        }
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::new(d.as_secs() as i64, d.subsec_nanos())
    }

    /// Builds a time from nanoseconds since the epoch.
    pub fn from_unix_nanos(nanos: i128) -> Self {
        let secs = nanos.div_euclid(1_000_000_000) as i64;
        let sub = nanos.rem_euclid(1_000_000_000) as u32;
        Self { secs, nanos: sub }
    }

    /// Builds a time from (possibly fractional) seconds since the epoch.
    pub fn from_secs_f64(secs: f64) -> Self {
        if !secs.is_finite() {
            return Self::default();
        }
        let whole = secs.floor();
        let nanos = ((secs - whole) * 1e9).round() as u32;
        Self::new(whole as i64, nanos.min(999_999_999))
    }

    /// Seconds since the epoch.
    pub fn secs(&self) -> i64 {
        self.secs
    }

    /// Nanoseconds within the second.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Nanoseconds since the epoch.
    pub fn as_unix_nanos(&self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// Milliseconds since the epoch (CloudWatch Logs' unit).
    pub fn as_unix_millis(&self) -> i64 {
        self.secs * 1000 + i64::from(self.nanos / 1_000_000)
    }

    /// The civil date (year, month 1-12, day 1-31) in UTC.
    pub fn date(&self) -> (i32, u32, u32) {
        civil_from_days(self.secs.div_euclid(86_400))
    }

    /// Appends the RFC 3339 form with nine fractional digits and `Z`, as
    /// Elasticsearch's `@timestamp` and CRI logs carry it:
    /// `2024-01-15T10:30:00.123456789Z`.
    pub fn write_rfc3339(&self, out: &mut String) {
        let days = self.secs.div_euclid(86_400);
        let sod = self.secs.rem_euclid(86_400) as u32;
        let (y, m, d) = civil_from_days(days);
        let mut buf = [0u8; 30];
        let year = y.clamp(0, 9999) as u32;
        put_digits(&mut buf[0..4], year);
        buf[4] = b'-';
        put_digits(&mut buf[5..7], m);
        buf[7] = b'-';
        put_digits(&mut buf[8..10], d);
        buf[10] = b'T';
        put_digits(&mut buf[11..13], sod / 3600);
        buf[13] = b':';
        put_digits(&mut buf[14..16], (sod / 60) % 60);
        buf[16] = b':';
        put_digits(&mut buf[17..19], sod % 60);
        buf[19] = b'.';
        put_digits(&mut buf[20..29], self.nanos);
        buf[29] = b'Z';
        // Every byte written above is ASCII.
        out.push_str(std::str::from_utf8(&buf).unwrap_or_default());
    }

    /// The RFC 3339 form as a new string.
    pub fn to_rfc3339(&self) -> String {
        let mut s = String::with_capacity(30);
        self.write_rfc3339(&mut s);
        s
    }

    /// Parses an RFC 3339 timestamp: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`.
    /// A space is accepted in place of `T`, and up to nine fractional digits are kept
    /// (more are truncated). Returns `None` for anything else.
    pub fn parse_rfc3339(s: &[u8]) -> Option<Self> {
        if s.len() < 20 {
            return None;
        }
        let year = digits(&s[0..4])? as i32;
        if s[4] != b'-' || s[7] != b'-' || (s[10] != b'T' && s[10] != b't' && s[10] != b' ') {
            return None;
        }
        let month = digits(&s[5..7])?;
        let day = digits(&s[8..10])?;
        if s[13] != b':' || s[16] != b':' {
            return None;
        }
        let hour = digits(&s[11..13])?;
        let min = digits(&s[14..16])?;
        let sec = digits(&s[17..19])?;
        if !(1..=12).contains(&month) || day == 0 || day > 31 || hour > 23 || min > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if s[i] == b'.' || s[i] == b',' {
            i += 1;
            let start = i;
            while i < s.len() && s[i].is_ascii_digit() {
                if i - start < 9 {
                    nanos = nanos * 10 + u32::from(s[i] - b'0');
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return None;
            }
            for _ in n..9 {
                nanos *= 10;
            }
        }
        let offset_secs: i64 = match s.get(i)? {
            b'Z' | b'z' if i + 1 == s.len() => 0,
            sign @ (b'+' | b'-') if i + 6 == s.len() && s[i + 3] == b':' => {
                let oh = i64::from(digits(&s[i + 1..i + 3])?);
                let om = i64::from(digits(&s[i + 4..i + 6])?);
                let off = oh * 3600 + om * 60;
                if *sign == b'+' { off } else { -off }
            }
            _ => return None,
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec)
            - offset_secs;
        Some(Self { secs, nanos })
    }
}

impl fmt::Display for EventTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some(v)
}

fn put_digits(out: &mut [u8], mut v: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cri_timestamps() {
        let t = EventTime::parse_rfc3339(b"2024-01-15T10:30:00.123456789Z").unwrap();
        assert_eq!(t.secs(), 1_705_314_600);
        assert_eq!(t.subsec_nanos(), 123_456_789);
        let t = EventTime::parse_rfc3339(b"2024-01-15T10:30:00.5+01:00").unwrap();
        assert_eq!(t.secs(), 1_705_314_600 - 3600);
        assert_eq!(t.subsec_nanos(), 500_000_000);
        let t = EventTime::parse_rfc3339(b"2024-01-15T10:30:00Z").unwrap();
        assert_eq!((t.secs(), t.subsec_nanos()), (1_705_314_600, 0));
        // Docker's json-file writes nine digits; some runtimes write more.
        let t = EventTime::parse_rfc3339(b"2024-01-15T10:30:00.1234567891234Z").unwrap();
        assert_eq!(t.subsec_nanos(), 123_456_789);
    }

    #[test]
    fn rejects_malformed_timestamps() {
        for bad in [
            &b"2024-01-15 10:30:00"[..],
            b"2024-13-15T10:30:00Z",
            b"2024-01-15T10:30:00.Z",
            b"2024-01-15T10:30:00+0100",
            b"hello world, not a time",
            b"2024-01-15T10:30:00Zjunk",
        ] {
            assert_eq!(
                EventTime::parse_rfc3339(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn formats_and_round_trips() {
        let t = EventTime::new(1_705_314_600, 7);
        assert_eq!(t.to_rfc3339(), "2024-01-15T10:30:00.000000007Z");
        assert_eq!(EventTime::parse_rfc3339(t.to_rfc3339().as_bytes()), Some(t));
        assert_eq!(
            EventTime::new(0, 0).to_rfc3339(),
            "1970-01-01T00:00:00.000000000Z"
        );
        for days in [-1000i64, 0, 59, 60, 365, 11_016, 19_737, 50_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn carries_nanos_and_converts() {
        assert_eq!(
            EventTime::new(1, 1_500_000_000),
            EventTime::new(2, 500_000_000)
        );
        let t = EventTime::from_unix_nanos(1_705_314_600_123_456_789);
        assert_eq!(t.as_unix_nanos(), 1_705_314_600_123_456_789);
        assert_eq!(t.as_unix_millis(), 1_705_314_600_123);
        assert_eq!(
            EventTime::from_secs_f64(1.25),
            EventTime::new(1, 250_000_000)
        );
        assert_eq!(t.date(), (2024, 1, 15));
    }
}
