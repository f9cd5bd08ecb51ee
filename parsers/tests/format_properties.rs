//! Property tests of the log formats: arbitrary bytes never panic any parser (nor
//! the parser filter, nor multiline joining), and records render and parse back to
//! themselves where the format allows it (logfmt, LTSV, CSV, JSON).

use nagare_core::router::Filter;
use nagare_core::value::{Map, Value};
use nagare_core::{Event, EventTime, Tag};
use nagare_parsers::formats::{csv, logfmt, ltsv};
use nagare_parsers::fuzzing::Target;
use nagare_parsers::{Parser, ParserConfig, ParserFilter, ParserFilterConfig};
use proptest::prelude::*;

mod support;

fn parser(yaml: &str) -> Parser {
    let config: ParserConfig = serde_norway::from_str(yaml).unwrap();
    Parser::new(&config).unwrap()
}

fn at() -> EventTime {
    EventTime::new(1_709_251_200, 0)
}

/// The record `line` parses into with the parser of `yaml`, or a test failure
/// naming the line and the error.
fn parse_back(yaml: &str, line: &str) -> Result<Map, TestCaseError> {
    parser(yaml)
        .parse(line.as_bytes(), at())
        .map(|parsed| parsed.record)
        .map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))
}

/// Bytes that look like log lines often enough to reach past the first check.
fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
    support::bytes_with(
        &[
            b"192.168.1.20 - - [15/Jan/2024:10:30:00 +0000] ",
            b"\"GET / HTTP/1.1\" 200 12",
            b" \"-\" \"curl\"",
            b"<165>1 2003-10-11T22:14:15.003Z host app - ID47 ",
            b"[id a=\"b\\\"\"]",
            b"Jan 15 10:30:00 web-1 sshd[1]: ",
            b"key=\"v\\u00e9\" ",
            b"label:value\t",
            b"\"a,\"\"b\"\",",
            b"{\"time\":\"2024-01-15T10:30:00Z\",\"a\":[1,{}]}",
            b"2024/01/15 10:30:00 [error] 1#1: *2 x, client: 1, host: \"h\"",
            b"[Mon Jan 15 10:30:00.1 2024] [core:error] [pid 1:tid 2] ",
        ],
        6,
    )
}

/// Keys and values a logfmt writer can produce.
fn logfmt_record() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec(
        (
            "[a-zA-Z_][a-zA-Z0-9_.\\-/]{0,12}",
            prop::option::of(any::<String>()),
        ),
        0..8,
    )
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (i64::MAX as u64 + 1..=u64::MAX).prop_map(Value::UInt),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::Float),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Map(kv.into_iter().collect::<Map>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn no_parser_panics_on_any_bytes(line in line_bytes()) {
        for target in Target::ALL {
            target.check(&line);
        }
        let filter = ParserFilter::new(&serde_norway::from_str::<ParserFilterConfig>(
            "reserve_data: true\ninject_key_prefix: p_\nhash_value_field: h\nparse:\n  format: multi_format\n  patterns: [{format: apache2}, {format: syslog}, {format: logfmt}]\n",
        ).unwrap()).unwrap();
        let mut record = Map::new();
        record.insert("log", String::from_utf8_lossy(&line).into_owned());
        let mut event = Event::new(Tag::new("t"), at(), record);
        let _ = filter.filter(&mut event);
    }

    #[test]
    fn logfmt_round_trips(pairs in logfmt_record()) {
        let mut record = Map::new();
        for (k, v) in pairs {
            match v {
                Some(v) => record.insert(k, v),
                None => record.insert(k, true),
            };
        }
        // `time` is the default time key: a value that parses as a time would move
        // out of the record, so it is not part of this property.
        record.remove("time");
        let line = logfmt::render(&record);
        let parsed = parse_back("format: logfmt\n", &line)?;
        prop_assert_eq!(parsed, record, "via {:?}", line);
    }

    #[test]
    fn ltsv_round_trips(pairs in prop::collection::vec(("[a-zA-Z0-9_.\\-]{1,10}", "[^\t]{0,20}"), 0..8)) {
        let mut record: Map = pairs.into_iter().collect();
        record.remove("time");
        let line = ltsv::render(&record);
        let parsed = parse_back("format: ltsv\n", &line)?;
        prop_assert_eq!(parsed, record, "via {:?}", line);
    }

    #[test]
    fn csv_round_trips(values in prop::collection::vec(any::<String>(), 1..5)) {
        let keys = ["a", "b", "c", "d", "e"];
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let line = csv::render(&refs, b',');
        let parsed = parse_back("format: csv\nkeys: [a, b, c, d, e]\n", &line)?;
        let expected: Map = keys.iter().zip(&values).map(|(k, v)| (*k, v.as_str())).collect();
        prop_assert_eq!(parsed, expected, "via {:?}", line);
    }

    #[test]
    fn json_round_trips(pairs in prop::collection::vec(("[a-z]{1,8}", json_value()), 0..8)) {
        let mut record: Map = pairs.into_iter().collect();
        record.remove("time");
        let line = serde_json::to_string(&record).unwrap();
        let parsed = parse_back("format: json\n", &line)?;
        prop_assert_eq!(parsed, record, "via {:?}", line);
    }
}
