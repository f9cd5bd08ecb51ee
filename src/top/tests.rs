use std::time::{Duration, Instant, SystemTime};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::client::{self, rate, start_time};
use super::ui::{count, details, duration, per_second};
use super::*;

/// What a process that reports everything answers.
const FULL: &str = r#"{"version": "0.1.0", "components": [
  {"id": "files", "kind": "source", "type": "tail", "received_events": 1000,
   "received_bytes": 50000, "sent_events": 1000, "sent_bytes": 50000,
   "errors": 0, "discarded": 0, "details": {"files_open": 3, "files_paused": 1}},
  {"id": "to_aggregator", "kind": "sink", "type": "forward", "match": "**",
   "received_events": 900, "received_bytes": 45000, "sent_events": 800, "sent_bytes": 40000,
   "errors": 2, "discarded": 5,
   "buffer": {"chunks": 4, "bytes": 256, "in_flight_chunks": 1, "limit_bytes": 1024,
              "oldest_chunk_age_seconds": 75.5},
   "details": {"servers_up": 2, "servers_down": 1}}
]}"#;

/// What a process that reports only the counters answers.
const BARE: &str = r#"{"version": "0.1.0", "components": [
  {"id": "nodes", "kind": "source", "type": "forward", "received_events": 10,
   "received_bytes": 100, "sent_events": 10, "sent_bytes": 100}
]}"#;

fn sample(json: &str, at: Instant) -> Sample {
    Sample {
        at,
        snapshot: serde_json::from_str(json).unwrap(),
        started: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)),
    }
}

/// `json` with every counter of every component raised by `by`.
fn raised(json: &str, by: u64) -> String {
    let mut value: serde_json::Value = serde_json::from_str(json).unwrap();
    for c in value["components"].as_array_mut().unwrap() {
        for k in [
            "received_events",
            "received_bytes",
            "sent_events",
            "sent_bytes",
        ] {
            c[k] = (c[k].as_u64().unwrap() + by).into();
        }
    }
    value.to_string()
}

fn ok(sample: Sample, wall_secs: u64) -> Poll {
    Poll {
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(wall_secs),
        result: Ok(sample),
    }
}

fn text(buffer: &ratatui::buffer::Buffer) -> String {
    let width = buffer.area.width as usize;
    buffer
        .content
        .chunks(width)
        .map(|line| line.iter().map(|c| c.symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn rates_are_the_difference_over_the_time_between_polls() {
    let d = Duration::from_millis(500);
    assert_eq!(rate(Some(100), 150, d), Some(100.0));
    assert_eq!(rate(None, 150, d), None, "no earlier poll");
    assert_eq!(rate(Some(200), 150, d), None, "a counter that went down");
    assert_eq!(rate(Some(100), 150, Duration::ZERO), None);
    assert_eq!(rate(Some(7), 7, d), Some(0.0));
}

#[test]
fn rows_match_components_by_kind_and_id_across_polls() {
    let t0 = Instant::now();
    let first = sample(FULL, t0);
    let second = sample(&raised(FULL, 200), t0 + Duration::from_secs(2));
    let rows = client::rows(None, &first);
    assert!(rows.iter().all(|r| r.events_in.is_none()));
    let rows = client::rows(Some(&first), &second);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].stats.id, "files");
    assert_eq!(rows[0].events_in, Some(100.0));
    assert_eq!(rows[1].events_out, Some(100.0));
    assert_eq!(rows[1].bytes_out, Some(100.0));
    // A component the earlier poll did not have starts without a rate.
    let other = sample(BARE, t0 + Duration::from_secs(3));
    let rows = client::rows(Some(&second), &other);
    assert_eq!(rows[0].events_in, None);
}

#[test]
fn optional_fields_are_read_when_present_and_absent_otherwise() {
    let full: Snapshot = serde_json::from_str(FULL).unwrap();
    let sink = &full.components[1];
    assert_eq!(sink.pattern.as_deref(), Some("**"));
    assert_eq!(sink.errors, Some(2));
    assert_eq!(sink.discarded, Some(5));
    let buffer = sink.buffer.unwrap();
    assert_eq!(buffer.fill(), Some(0.25));
    assert_eq!(buffer.in_flight_chunks, Some(1));
    assert_eq!(sink.details["servers_up"], 2.0);
    let bare: Snapshot = serde_json::from_str(BARE).unwrap();
    let source = &bare.components[0];
    assert_eq!((source.errors, source.buffer), (None, None));
    assert!(source.details.is_empty());
    assert_eq!(BufferStats::default().fill(), None);
}

#[test]
fn the_model_keeps_the_last_rows_through_a_failed_poll_and_counts_failures() {
    let t0 = Instant::now();
    let mut model = Model::new("http://127.0.0.1:1", Duration::from_secs(1));
    model.update(ok(sample(FULL, t0), 2_000));
    model.update(ok(
        sample(&raised(FULL, 10), t0 + Duration::from_secs(1)),
        2_001,
    ));
    assert_eq!(model.rows[0].events_in, Some(10.0));
    for n in 1..=2 {
        model.update(Poll {
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(2_001 + n),
            result: Err("cannot reach http://127.0.0.1:1: connection refused".into()),
        });
    }
    assert_eq!(model.failures, 2);
    assert_eq!(model.rows.len(), 2, "the rows stay");
    model.update(ok(
        sample(&raised(FULL, 40), t0 + Duration::from_secs(4)),
        2_004,
    ));
    assert_eq!((model.failures, model.error.as_deref()), (0, None));
    assert_eq!(model.rows[0].events_in, Some(10.0), "over the 3 s since");
}

#[test]
fn sort_keys_cycle_both_ways_and_reverse() {
    let mut model = Model::new("http://x:1", Duration::from_secs(1));
    let t0 = Instant::now();
    model.update(ok(sample(FULL, t0), 1));
    let ids =
        |m: &Model| -> Vec<String> { m.sorted_rows().iter().map(|r| r.stats.id.clone()).collect() };
    assert_eq!(model.sort, SortKey::Kind);
    assert_eq!(ids(&model), ["files", "to_aggregator"]);
    let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
    // Errors: the sink has 2, the source 0.
    while model.sort != SortKey::Errors {
        assert_eq!(
            handle_key(&mut model, key(KeyCode::Char('s'))),
            Action::Continue
        );
    }
    assert_eq!(ids(&model), ["to_aggregator", "files"]);
    handle_key(&mut model, key(KeyCode::Char('r')));
    assert_eq!(ids(&model), ["files", "to_aggregator"]);
    handle_key(&mut model, key(KeyCode::Left));
    assert_eq!(model.sort, SortKey::BytesOut);
    let mut k = SortKey::Kind;
    for _ in 0..9 {
        k = k.cycle(true);
    }
    assert_eq!(k, SortKey::Kind, "nine columns, back to the start");
    assert_eq!(SortKey::Kind.cycle(false), SortKey::Buffer);
    assert_eq!(
        handle_key(&mut model, key(KeyCode::Char('q'))),
        Action::Quit
    );
    assert_eq!(handle_key(&mut model, key(KeyCode::Esc)), Action::Quit);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(handle_key(&mut model, ctrl_c), Action::Quit);
    assert_eq!(
        handle_key(&mut model, key(KeyCode::Char('c'))),
        Action::Continue
    );
}

#[test]
fn urls_are_checked_before_the_screen_starts() {
    assert!(Client::new("http://127.0.0.1:24220").is_ok());
    assert!(Client::new("http://localhost/nagare/").is_ok());
    let https = Client::new("https://127.0.0.1:24220").unwrap_err();
    assert!(https.contains("plain http"), "{https}");
    let bare = Client::new("127.0.0.1:24220").unwrap_err();
    assert!(bare.contains("http://127.0.0.1:24220"), "{bare}");
}

#[test]
fn the_start_time_comes_from_the_exposition() {
    let exposition =
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1700000000.5\n";
    assert_eq!(
        start_time(exposition),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_700_000_000.5))
    );
    assert_eq!(start_time("nagare_build_info 1\n"), None);
}

#[test]
fn numbers_are_short_and_readable() {
    assert_eq!(count(99_999), "99999");
    assert_eq!(count(123_456), "123.5k");
    assert_eq!(count(12_300_000), "12.3M");
    assert_eq!(per_second(None, false), "-");
    assert_eq!(per_second(Some(2.5), false), "2.5");
    assert_eq!(per_second(Some(1500.0), false), "1500");
    assert_eq!(per_second(Some(512.0), true), "512B");
    assert_eq!(per_second(Some(3.0 * 1024.0 * 1024.0), true), "3.0MiB");
    assert_eq!(duration(Duration::from_secs(75)), "1m15s");
    assert_eq!(duration(Duration::from_secs(7_500)), "2h05m");
    assert_eq!(duration(Duration::from_millis(500)), "500ms");
    let mut d = std::collections::BTreeMap::new();
    d.insert("servers_down".to_string(), 1.0);
    d.insert("servers_up".to_string(), 2.0);
    d.insert("zzz".to_string(), 0.5);
    assert_eq!(details(&d), "up 2 down 1 zzz 0.50");
}

#[test]
fn the_screen_shows_every_component_with_rates_buffer_and_details() {
    let t0 = Instant::now();
    let mut model = Model::new("http://127.0.0.1:24220", Duration::from_secs(1));
    model.update(ok(sample(FULL, t0), 2_000));
    model.update(ok(
        sample(&raised(FULL, 50), t0 + Duration::from_secs(1)),
        2_001,
    ));
    let mut terminal = Terminal::new(TestBackend::new(160, 12)).unwrap();
    terminal
        .draw(|f| {
            let area = f.area();
            render(&model, area, f.buffer_mut())
        })
        .unwrap();
    let screen = text(terminal.backend().buffer());
    for expected in [
        "http://127.0.0.1:24220",
        "version 0.1.0",
        "up 16m41s",
        "refreshed 1970-01-01T00:33:21Z every 1s",
        "KIND▼",
        "files",
        "to_aggregator",
        "open 3 paused 1",
        "up 2 down 1",
        "25.0% 4ch",
        "1m15s",
        "q/Esc quit",
    ] {
        assert!(screen.contains(expected), "{expected:?} not on\n{screen}");
    }
    let files = screen.lines().find(|l| l.contains("│files")).unwrap();
    assert!(files.contains(" 50 "), "50 events/s in: {files}");
    // The same model drawn without a terminal gives the same cells.
    assert_eq!(&to_buffer(&model, 160, 12), terminal.backend().buffer());
}

#[test]
fn an_unreachable_process_is_a_message_not_an_empty_screen() {
    let mut model = Model::new("http://127.0.0.1:1", Duration::from_secs(2));
    model.update(Poll {
        wall: SystemTime::UNIX_EPOCH,
        result: Err("cannot reach http://127.0.0.1:1: Connection refused".into()),
    });
    let screen = text(&to_buffer(&model, 120, 10));
    assert!(
        screen.contains("cannot reach http://127.0.0.1:1: Connection refused"),
        "{screen}"
    );
    assert!(
        screen.contains("failed 1 time in a row; retrying every 2s"),
        "{screen}"
    );
    assert!(screen.contains("nothing read yet"), "{screen}");
    // Before any poll.
    let fresh = Model::new("http://127.0.0.1:1", Duration::from_secs(1));
    assert!(text(&to_buffer(&fresh, 120, 10)).contains("connecting to http://127.0.0.1:1"));
}

#[test]
fn a_component_without_the_optional_fields_shows_dashes() {
    let mut model = Model::new("http://x:1", Duration::from_secs(1));
    model.update(ok(sample(BARE, Instant::now()), 1));
    let screen = text(&to_buffer(&model, 160, 8));
    let row = screen.lines().find(|l| l.contains("│nodes")).unwrap();
    assert!(row.contains("forward"), "{row}");
    assert!(
        row.matches(" - ").count() >= 4,
        "rates, errors, buffer: {row}"
    );
}

#[test]
fn intervals_are_durations_of_at_least_100ms() {
    assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_interval("2s"), Ok(Duration::from_secs(2)));
    assert!(
        parse_interval("10ms")
            .unwrap_err()
            .contains("at least 100ms")
    );
    assert!(parse_interval("soon").is_err());
}

#[test]
fn small_terminals_are_drawn_without_a_panic() {
    let mut model = Model::new("http://127.0.0.1:24220", Duration::from_secs(1));
    model.update(ok(sample(FULL, Instant::now()), 1));
    for (w, h) in [(80, 24), (40, 10), (10, 3), (1, 1), (0, 0)] {
        let buffer = to_buffer(&model, w, h);
        assert_eq!(buffer.area.width, w);
    }
    let narrow = text(&to_buffer(&model, 80, 24));
    assert!(narrow.contains("files"), "{narrow}");
}
