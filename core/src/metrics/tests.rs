use super::*;
use crate::buffer::BufferConfig;

#[test]
fn component_counters_are_served_with_their_labels() {
    let metrics = Metrics::new("1.2.3");
    let tail = metrics.component("containers", "source", "tail");
    tail.received(3, 300);
    let es = metrics.component("search", "sink", "elasticsearch");
    es.sent(2, 250);
    es.error(ErrorType::request_failed);
    es.discarded(Discard::dead_letter, 1);
    let text = metrics.render();
    let labels = r#"component_id="containers",component_kind="source",component_type="tail""#;
    assert!(
        text.contains(&format!(
            "nagare_component_received_events_total{{{labels}}} 3\n"
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        "nagare_component_received_bytes_total{{{labels}}} 300\n"
    )));
    let es_labels = r#"component_id="search",component_kind="sink",component_type="elasticsearch""#;
    assert!(text.contains(&format!(
        "nagare_component_sent_events_total{{{es_labels}}} 2\n"
    )));
    assert!(text.contains(&format!(
        "nagare_component_errors_total{{{es_labels},error_type=\"request_failed\"}} 1\n"
    )));
    assert!(text.contains(&format!(
        "nagare_component_discarded_events_total{{{es_labels},reason=\"dead_letter\"}} 1\n"
    )));
    assert!(
        text.contains("nagare_build_info{version=\"1.2.3\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"));
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter\n"),
        "{text}"
    );
    assert_eq!(tail.totals().received_events, 3);
}

#[test]
fn buffers_are_read_at_each_scrape() {
    let metrics = Metrics::new("0");
    let buffer = Buffer::new("out", &BufferConfig::default());
    metrics.add_buffer("out", "file", buffer);
    let text = metrics.render();
    let labels = r#"component_id="out",component_kind="sink",component_type="file""#;
    assert!(
        text.contains(&format!("nagare_buffer_chunks{{{labels}}} 0\n")),
        "{text}"
    );
    assert!(text.contains("# TYPE nagare_buffer_overflow_dropped_chunks_total counter\n"));
    assert!(text.contains(&format!("nagare_buffer_limit_bytes{{{labels}}} ")));
}
