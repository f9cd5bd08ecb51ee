use nagare_testkit::docs::documented_example;

use super::*;

fn config(yaml: &str) -> ParserConfig {
    serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

fn parse(yaml: &str, line: &str) -> Result<Parsed, ParseError> {
    Parser::new(&config(yaml))
        .unwrap()
        .parse(line.as_bytes(), EventTime::new(1_705_314_600, 0))
}

fn json(p: &Parsed) -> String {
    serde_json::to_string(&p.record).unwrap()
}

#[test]
fn the_documented_example_parses() {
    // The example in the module docs, as written there.
    let p = parse(
        &documented_example(include_str!("mod.rs")),
        "2024-01-15T10:30:00.25+0900 INFO 12.5ms served /",
    )
    .unwrap();
    assert_eq!(
        json(&p),
        r#"{"level":"INFO","took":12.5,"message":"served /"}"#
    );
    assert_eq!(
        p.time.unwrap().to_rfc3339(),
        "2024-01-15T01:30:00.250000000Z"
    );
}

#[test]
fn unknown_keys_are_refused_with_their_name() {
    let err = serde_norway::from_str::<ParserConfig>("format: json\nexpresion: x\n").unwrap_err();
    assert!(
        err.to_string().contains("unknown field `expresion`"),
        "{err}"
    );
    let err = serde_norway::from_str::<ParserConfig>("format: yaml\n").unwrap_err();
    assert!(err.to_string().contains("unknown variant `yaml`"), "{err}");
    let err = serde_norway::from_str::<ParserConfig>("format: regex\n").unwrap_err();
    assert!(
        err.to_string().contains("missing field `expression`"),
        "{err}"
    );
}

#[test]
fn validate_names_the_bad_key() {
    for (yaml, key) in [
        ("format: regex\nexpression: '('\n", "expression"),
        ("format: regex\nexpression: 'no names'\n", "expression"),
        ("format: json\ntime_format: '%Q%q'\n", "time_format"),
        (
            "format: json\ntime_format: [iso8601, bogus]\n",
            "time_format.1",
        ),
        ("format: json\ntimezone: Nowhere/Else\n", "timezone"),
        ("format: json\ntypes: {a: number}\n", "types.a"),
        ("format: apache2\ntime_format: '%s'\n", "time_format"),
        ("format: csv\nkeys: []\n", "keys"),
        ("format: csv\nkeys: [a]\ndelimiter: '::'\n", "delimiter"),
        ("format: multi_format\npatterns: []\n", "patterns"),
        (
            "format: multi_format\npatterns:\n  - format: regex\n    expression: '('\n",
            "patterns.0.expression",
        ),
        (
            "format: json\nnull_value_pattern: '['\n",
            "null_value_pattern",
        ),
    ] {
        let err = config(yaml).validate().unwrap_err();
        assert_eq!(err.key, key, "{yaml}: {err}");
    }
}

#[test]
fn time_field_is_read_removed_or_kept() {
    let p = parse(
        "format: json\n",
        r#"{"time":"2024-01-15T10:30:00Z","msg":"hi"}"#,
    )
    .unwrap();
    assert_eq!(json(&p), r#"{"msg":"hi"}"#);
    assert_eq!(p.time, Some(EventTime::new(1_705_314_600, 0)));
    let p = parse(
        "format: json\nkeep_time_key: true\n",
        r#"{"time":1705314600.5,"msg":"hi"}"#,
    )
    .unwrap();
    assert_eq!(json(&p), r#"{"time":1705314600.5,"msg":"hi"}"#);
    assert_eq!(p.time, Some(EventTime::new(1_705_314_600, 500_000_000)));
    let p = parse(
        "format: json\ntime_key: ts\ntime_format: epoch_ms\n",
        r#"{"ts":1705314600123}"#,
    )
    .unwrap();
    assert_eq!(p.time, Some(EventTime::new(1_705_314_600, 123_000_000)));
    // Several formats, tried in order.
    let yaml = "format: logfmt\ntime_format: ['%d/%b/%Y:%H:%M:%S %z', epoch]\n";
    assert!(parse(yaml, "time=1705314600 a=b").unwrap().time.is_some());
    assert!(
        parse(yaml, "time=15/Jan/2024:10:30:00_+0000")
            .unwrap()
            .time
            .is_none()
    );
}

#[test]
fn time_fallback_flags_or_fails() {
    // Missing, with an explicit time_key: flagged.
    let p = parse("format: json\ntime_key: ts\n", r#"{"msg":"hi"}"#).unwrap();
    assert_eq!(p.time, None);
    assert_eq!(
        json(&p),
        r#"{"msg":"hi","_time_fallback":"the time field `ts` is missing"}"#
    );
    // Missing with the default key: nothing to say.
    let p = parse("format: json\n", r#"{"msg":"hi"}"#).unwrap();
    assert_eq!(json(&p), r#"{"msg":"hi"}"#);
    // Bad: the field stays, the record says why.
    let p = parse(
        "format: json\ntime_format: iso8601\n",
        r#"{"time":"yesterday"}"#,
    )
    .unwrap();
    assert_eq!(
        json(&p),
        r#"{"time":"yesterday","_time_fallback":"the time field `time`: `yesterday` does not match ISO 8601"}"#
    );
    let err = parse(
        "format: json\ntime_fallback: false\ntime_format: '%s'\n",
        r#"{"time":"yesterday"}"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "time: the time field `time`: `yesterday` does not match %s"
    );
    let p = parse(
        "format: apache2\ntime_fallback_key: bad_time\n",
        r#"1.2.3.4 - - [15/Foo/2024:10:30:00 +0000] "GET / HTTP/1.1" 200 1"#,
    )
    .unwrap();
    assert_eq!(
        p.record.get("bad_time").and_then(Value::as_str),
        Some("`15/Foo/2024:10:30:00 +0000` is not a valid apache2 time")
    );
}

#[test]
fn types_and_nulls() {
    let yaml = "format: ltsv\ntypes: {status: integer, ok: bool, tags: 'array:|'}\nnull_value_pattern: '^-$'\nnull_empty_string: true\n";
    let p = parse(yaml, "status:200\tok:yes\ttags:a|b\tuser:-\tref:").unwrap();
    assert_eq!(
        json(&p),
        r#"{"status":200,"ok":true,"tags":["a","b"],"user":null,"ref":null}"#
    );
    let err = parse(yaml, "status:OK").unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `status`: `OK` is not an integer (see `types`)"
    );
}

#[test]
fn multi_format_tries_in_order_and_reports_each() {
    let yaml = "format: multi_format\npatterns:\n  - format: json\n  - format: apache2\n  - format: regex\n    expression: '^(?<level>[A-Z]+): (?<message>.*)$'\n";
    let p = parse(yaml, r#"{"a":1}"#).unwrap();
    assert_eq!(json(&p), r#"{"a":1}"#);
    let p = parse(yaml, "WARN: disk almost full").unwrap();
    assert_eq!(json(&p), r#"{"level":"WARN","message":"disk almost full"}"#);
    let err = parse(yaml, "plain words").unwrap_err();
    assert_eq!(
        err.to_string(),
        "no format matched: json: expected value at byte 0; apache2: expected a space after the identity at byte 11; regex: the line does not match the expression `^(?<level>[A-Z]+): (?<message>.*)$`"
    );
    let err = config("format: multi_format\ntime_key: t\npatterns: [{format: json}]\n")
        .validate()
        .unwrap_err();
    assert!(err.message.contains("inside each pattern"), "{err}");
}

#[test]
fn json_keeps_non_objects_and_points_at_errors() {
    let p = parse("format: json\n", "[1,2]").unwrap();
    assert_eq!(json(&p), r#"{"message":[1,2]}"#);
    let p = parse("format: json\nmessage_key: log\n", "\"text\"").unwrap();
    assert_eq!(json(&p), r#"{"log":"text"}"#);
    let err = parse("format: json\n", r#"{"a":1,}"#).unwrap_err();
    assert_eq!(err.offset(), Some(7), "{err}");
}
