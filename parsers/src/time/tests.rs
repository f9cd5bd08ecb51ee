use super::*;

fn at(raw: RawTime) -> String {
    resolve(raw, &Zone::Utc, EventTime::new(1_705_314_600, 0))
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| "none".into())
}

fn strf(pattern: &str, text: &str) -> String {
    match Strptime::new(pattern).unwrap().parse(text.as_bytes()) {
        Some(raw) => at(raw),
        None => "none".into(),
    }
}

#[test]
fn strftime_patterns_users_bring() {
    assert_eq!(
        strf("%d/%b/%Y:%H:%M:%S %z", "15/Jan/2024:10:30:00 +0900"),
        "2024-01-15T01:30:00.000000000Z"
    );
    assert_eq!(
        strf(
            "%Y-%m-%dT%H:%M:%S.%N%:z",
            "2024-01-15T10:30:00.123456-01:00"
        ),
        "2024-01-15T11:30:00.123456000Z"
    );
    assert_eq!(
        strf("%Y-%m-%d %H:%M:%S,%3N", "2024-01-15 10:30:00,042"),
        "2024-01-15T10:30:00.042000000Z"
    );
    assert_eq!(
        strf("%a %b %e %H:%M:%S%.f %Y", "Mon Jan  5 10:30:00.5 2024"),
        "2024-01-05T10:30:00.500000000Z"
    );
    assert_eq!(strf("%s", "1705314600"), "2024-01-15T10:30:00.000000000Z");
    assert_eq!(
        strf("%s.%N", "1705314600.25"),
        "2024-01-15T10:30:00.250000000Z"
    );
    assert_eq!(
        strf("%Q", "1705314600123"),
        "2024-01-15T10:30:00.123000000Z"
    );
    assert_eq!(
        strf("%m/%d/%y %I:%M %p", "01/15/24 12:05 AM"),
        "2024-01-15T00:05:00.000000000Z"
    );
    assert_eq!(strf("%Y %j", "2024 60"), "2024-02-29T00:00:00.000000000Z");
    assert_eq!(
        strf("%F %T %Z", "2024-01-15 10:30:00 UTC"),
        "2024-01-15T10:30:00.000000000Z"
    );
}

#[test]
fn strftime_refuses_what_does_not_match() {
    assert_eq!(strf("%Y-%m-%d", "2024-01-15 junk"), "none");
    assert_eq!(strf("%Y-%m-%d", "2024-02-30"), "none");
    assert_eq!(strf("%H:%M", "25:00"), "none");
    assert_eq!(strf("%b", "Foo"), "none");
    assert!(Strptime::new("%Y-%q").unwrap_err().contains("`%q`"));
    assert!(Strptime::new("%").unwrap_err().contains("lone `%`"));
}

#[test]
fn year_less_times_take_the_nearest_year() {
    let reference = EventTime::parse_rfc3339(b"2024-01-02T00:00:00Z").unwrap();
    let dec = Civil {
        year: None,
        month: 12,
        day: 31,
        hour: 23,
        minute: 59,
        second: 58,
        ..Civil::default()
    };
    let t = resolve(RawTime::Civil(dec), &Zone::Utc, reference).unwrap();
    assert_eq!(t.to_rfc3339(), "2023-12-31T23:59:58.000000000Z");
    let jan = Civil {
        month: 1,
        day: 3,
        ..dec
    };
    let t = resolve(RawTime::Civil(jan), &Zone::Utc, reference).unwrap();
    assert_eq!(t.to_rfc3339(), "2024-01-03T23:59:58.000000000Z");
    // 29 February exists only in leap years: the nearest one that has it.
    let leap = Civil {
        month: 2,
        day: 29,
        ..dec
    };
    let reference = EventTime::parse_rfc3339(b"2025-03-01T00:00:00Z").unwrap();
    let t = resolve(RawTime::Civil(leap), &Zone::Utc, reference).unwrap();
    assert_eq!(t.date(), (2024, 2, 29));
}

#[test]
fn zones_and_offsets() {
    let civil = parse_iso8601(b"2024-07-01 12:00:00").unwrap();
    let tokyo = Zone::parse("Asia/Tokyo").unwrap();
    let t = resolve(RawTime::Civil(civil), &tokyo, EventTime::default()).unwrap();
    assert_eq!(t.to_rfc3339(), "2024-07-01T03:00:00.000000000Z");
    // Daylight saving time in New York in July: UTC-4.
    let ny = Zone::parse("America/New_York").unwrap();
    let t = resolve(RawTime::Civil(civil), &ny, EventTime::default()).unwrap();
    assert_eq!(t.to_rfc3339(), "2024-07-01T16:00:00.000000000Z");
    let fixed = Zone::parse("-08:00").unwrap();
    let t = resolve(RawTime::Civil(civil), &fixed, EventTime::default()).unwrap();
    assert_eq!(t.to_rfc3339(), "2024-07-01T20:00:00.000000000Z");
    // An offset in the text wins over the zone.
    let civil = parse_iso8601(b"2024-07-01T12:00:00+0100").unwrap();
    let t = resolve(RawTime::Civil(civil), &tokyo, EventTime::default()).unwrap();
    assert_eq!(t.to_rfc3339(), "2024-07-01T11:00:00.000000000Z");
    assert!(
        Zone::parse("Mars/Olympus")
            .unwrap_err()
            .contains("not a known time zone")
    );
    assert!(Zone::parse("+25:00").is_err());
}

#[test]
fn epoch_numbers_are_exact() {
    let t = EpochUnit::Seconds.parse(b"1705314600.123456789").unwrap();
    assert_eq!((t.secs(), t.subsec_nanos()), (1_705_314_600, 123_456_789));
    let t = EpochUnit::Millis.parse(b"1705314600123.5").unwrap();
    assert_eq!((t.secs(), t.subsec_nanos()), (1_705_314_600, 123_500_000));
    let t = EpochUnit::Micros.parse(b"1705314600123456").unwrap();
    assert_eq!(t.subsec_nanos(), 123_456_000);
    let t = EpochUnit::Nanos.parse(b"1705314600123456789").unwrap();
    assert_eq!(t.subsec_nanos(), 123_456_789);
    assert_eq!(EpochUnit::Seconds.parse(b"-1").unwrap().secs(), -1);
    assert!(EpochUnit::Seconds.parse(b"12a").is_none());
    assert!(EpochUnit::Seconds.parse(b"").is_none());
    assert!(
        EpochUnit::Seconds
            .parse(b"99999999999999999999999999999")
            .is_none()
    );
    let f = TimeFormat::Epoch(EpochUnit::Millis);
    let raw = f.parse_value(&Value::Float(1_705_314_600_123.0)).unwrap();
    assert_eq!(at(raw), "2024-01-15T10:30:00.123000000Z");
}

#[test]
fn iso8601_variants() {
    for (text, want) in [
        ("2024-01-15T10:30:00Z", "2024-01-15T10:30:00.000000000Z"),
        (
            "2024-01-15 10:30:00.5+01:00",
            "2024-01-15T09:30:00.500000000Z",
        ),
        ("2024-01-15T10:30+0100", "2024-01-15T09:30:00.000000000Z"),
        (
            "2024-01-15T10:30:00,25-02",
            "2024-01-15T12:30:00.250000000Z",
        ),
        ("2024-01-15T10:30:00", "2024-01-15T10:30:00.000000000Z"),
    ] {
        let raw = TimeFormat::Iso8601.parse_text(text.as_bytes()).unwrap();
        assert_eq!(at(raw), want, "{text}");
    }
    for bad in [
        "2024-01-15",
        "2024-01-15T10:30:00Zx",
        "2024-01-15T10:30:00.",
        "x",
    ] {
        assert!(
            TimeFormat::Iso8601.parse_text(bad.as_bytes()).is_none(),
            "{bad}"
        );
    }
    assert!(matches!(
        TimeFormat::Auto.parse_text(b"1705314600"),
        Some(RawTime::Instant(_))
    ));
    assert!(
        TimeFormat::parse_spec("yesterday")
            .unwrap_err()
            .contains("not a time format")
    );
}
