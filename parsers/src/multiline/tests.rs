use std::time::{Duration, Instant};

use nagare_core::EventTime;
use nagare_testkit::docs::documented_example;

use super::*;
use crate::container::Stream;

fn detector(yaml: &str) -> MultilineRules {
    let config: MultilineConfig = serde_norway::from_str(yaml).unwrap();
    MultilineRules::new(&config).unwrap()
}

/// Feeds lines one per millisecond; returns the events as (text, lines, cut).
fn run(d: &MultilineRules, lines: &[&str]) -> Vec<(String, usize, bool)> {
    let mut m = Multiline::new(d);
    let t0 = Instant::now();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let line = Line {
            bytes: l.as_bytes(),
            stream: Some(Stream::Stderr),
            time: EventTime::new(i as i64, 0),
            offset: i as u64,
        };
        m.push(line, t0 + Duration::from_millis(i as u64), |msg| {
            out.push((
                String::from_utf8_lossy(msg.bytes).into_owned(),
                msg.lines,
                msg.cut,
            ));
        });
    }
    m.flush(|msg| {
        out.push((
            String::from_utf8_lossy(msg.bytes).into_owned(),
            msg.lines,
            msg.cut,
        ))
    });
    out
}

#[test]
fn plain_lines_pass_at_once_and_traces_are_joined() {
    let d = detector("languages: [java]\n");
    let out = run(
        &d,
        &[
            "starting",
            "java.lang.IllegalStateException: boom",
            "\tat com.example.App.run(App.java:10)",
            "\tat com.example.App.main(App.java:5)",
            "done",
        ],
    );
    assert_eq!(
        out,
        vec![
            ("starting".into(), 1, false),
            (
                "java.lang.IllegalStateException: boom\n\tat com.example.App.run(App.java:10)\n\tat com.example.App.main(App.java:5)"
                    .into(),
                3,
                false
            ),
            ("done".into(), 1, false),
        ]
    );
}

/// An event carries the offset of its first line, whether it ends on the next line,
/// or is flushed.
#[test]
fn events_carry_the_offset_of_their_first_line() {
    let d = detector("languages: [java]\n");
    let mut m = Multiline::new(&d);
    let t0 = Instant::now();
    let mut out = Vec::new();
    let lines = [
        (0, "starting"),
        (9, "java.lang.IllegalStateException: boom"),
        (47, "\tat com.example.App.run(App.java:10)"),
        (85, "done"),
        (90, "java.lang.Error: again"),
        (113, "\tat com.example.App.main(App.java:5)"),
    ];
    for (offset, text) in lines {
        let line = Line {
            bytes: text.as_bytes(),
            stream: None,
            time: EventTime::new(1, 0),
            offset,
        };
        m.push(line, t0, |msg| out.push((msg.offset, msg.lines)));
    }
    m.flush(|msg| out.push((msg.offset, msg.lines)));
    assert_eq!(out, [(0, 1), (9, 2), (85, 1), (90, 2)]);
}

#[test]
fn a_held_event_waits_for_its_deadline() {
    let d = detector("languages: [python]\nflush_timeout: 2s\n");
    let mut m = Multiline::new(&d);
    let t0 = Instant::now();
    let mut out = Vec::new();
    let line = |s: &'static str| Line {
        bytes: s.as_bytes(),
        stream: None,
        time: EventTime::new(7, 0),
        offset: 0,
    };
    m.push(line("Traceback (most recent call last):"), t0, |_| {
        panic!("held")
    });
    m.push(
        line("  File \"app.py\", line 1, in <module>"),
        t0 + Duration::from_secs(1),
        |_| panic!("held"),
    );
    assert!(m.is_holding());
    assert_eq!(m.deadline(), Some(t0 + Duration::from_secs(3)));
    m.poll(t0 + Duration::from_millis(2999), |_| panic!("not yet"));
    m.poll(t0 + Duration::from_secs(3), |msg| {
        out.push((
            msg.lines,
            msg.time,
            String::from_utf8_lossy(msg.bytes).into_owned(),
        ))
    });
    assert_eq!(
        out,
        vec![(
            2,
            EventTime::new(7, 0),
            "Traceback (most recent call last):\n  File \"app.py\", line 1, in <module>"
                .to_string()
        )]
    );
    assert!(!m.is_holding());
    assert_eq!(m.deadline(), None);
}

#[test]
fn caps_cut_long_traces() {
    let d = detector("languages: [java]\nmax_lines: 3\n");
    let out = run(
        &d,
        &[
            "Exception: x",
            "\tat a(A.java:1)",
            "\tat b(A.java:2)",
            "\tat c(A.java:3)",
            "end",
        ],
    );
    assert_eq!(
        out,
        vec![
            (
                "Exception: x\n\tat a(A.java:1)\n\tat b(A.java:2)".into(),
                3,
                true
            ),
            ("\tat c(A.java:3)".into(), 1, false),
            ("end".into(), 1, false),
        ]
    );
    let d = detector("languages: [java]\nmax_bytes: 30\n");
    let out = run(
        &d,
        &["Exception: x", "\tat a(A.java:1)", "\tat b(A.java:2)"],
    );
    assert_eq!(
        out,
        vec![
            ("Exception: x\n\tat a(A.java:1)".into(), 2, true),
            ("\tat b(A.java:2)".into(), 1, false),
        ]
    );
}

#[test]
fn custom_rule_starts_and_continues() {
    let d = detector("custom:\n  start: '^\\d{4}-\\d{2}-\\d{2} '\n  continuation: '^\\s'\n");
    let out = run(
        &d,
        &[
            "2024-01-15 10:00:00 first",
            "  detail 1",
            "2024-01-15 10:00:01 second",
            "2024-01-15 10:00:02 third",
            "  detail 2",
            "orphan",
        ],
    );
    let texts: Vec<&str> = out.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        [
            "2024-01-15 10:00:00 first\n  detail 1",
            "2024-01-15 10:00:01 second",
            "2024-01-15 10:00:02 third\n  detail 2",
            "orphan"
        ]
    );
}

#[test]
fn config_errors_name_the_key() {
    for (yaml, key) in [
        ("max_lines: 10\n", "languages"),
        ("languages: [go]\nmax_lines: 0\n", "max_lines"),
        ("languages: [go]\nmax_bytes: 0\n", "max_bytes"),
        ("custom: {start: '(', continuation: x}\n", "custom.start"),
        (
            "custom: {start: x, continuation: '['}\n",
            "custom.continuation",
        ),
    ] {
        let c: MultilineConfig = serde_norway::from_str(yaml).unwrap();
        assert_eq!(c.validate().unwrap_err().key, key, "{yaml}");
    }
    assert!(serde_norway::from_str::<MultilineConfig>("languages: [cobol]\n").is_err());
    let c = MultilineConfig::new(vec![Language::All, Language::Java]);
    c.validate().unwrap();
}

#[test]
fn the_documented_example_parses() {
    // The example in the module docs, as written there.
    let d = detector(&documented_example(include_str!("mod.rs")));
    let out = run(
        &d,
        &[
            "panic: boom",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            "\t/m.go:3 +0x1d",
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, 5);
}
