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

#[test]
fn detail_series_exist_at_zero_and_count_with_their_extra_label() {
    let metrics = Metrics::new("0");
    let fwd = metrics.component("out", "sink", "forward");
    let acks = fwd.counter(&catalog::forward_sink::ACKS, Some("10.0.0.1:24224"));
    let _other = fwd.counter(&catalog::forward_sink::ACKS, Some("10.0.0.2:24224"));
    let tail = metrics.component("files", "source", "tail");
    let open = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(7));
    let read = open.clone();
    tail.read(&catalog::tail::FILES_OPEN, move || {
        read.load(std::sync::atomic::Ordering::Relaxed) as f64
    });
    tail.show("files_open", || 7.0);
    let text = metrics.render();
    let labels = r#"component_id="out",component_kind="sink",component_type="forward""#;
    assert!(
        text.contains(&format!(
            "nagare_forward_sink_acks_received_total{{{labels},server=\"10.0.0.2:24224\"}} 0\n"
        )),
        "{text}"
    );
    acks.inc_by(3);
    let text = metrics.render();
    assert!(text.contains(&format!(
        "nagare_forward_sink_acks_received_total{{{labels},server=\"10.0.0.1:24224\"}} 3\n"
    )));
    assert!(
        text.contains("# TYPE nagare_tail_files_open gauge\n"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"nagare_tail_files_open{component_id="files",component_kind="source",component_type="tail"} 7"#
        ),
        "{text}"
    );
    assert_eq!(tail.details().get("files_open"), Some(&7.0));
    assert_eq!(fwd.errors_total(), 0);
    fwd.error(ErrorType::rejected);
    assert_eq!(fwd.errors_total(), 1);
}

/// Renders `/metrics` for 50 components of every kind (their detail series, 5
/// buffers) and prints how long it takes: the figure in README.md.
#[test]
fn rendering_fifty_components_is_timed() {
    let metrics = Metrics::new("0");
    let mut keep = Vec::new();
    for i in 0..50 {
        let c = match i % 5 {
            0 => metrics.component(&format!("tail{i}"), "source", "tail"),
            1 => metrics.component(&format!("in{i}"), "source", "forward"),
            2 => metrics.component(&format!("f{i}"), "filter", "grep"),
            3 => metrics.component(&format!("es{i}"), "sink", "elasticsearch"),
            _ => metrics.component(&format!("fwd{i}"), "sink", "forward"),
        };
        c.received(i, i * 100);
        match i % 5 {
            0 => {
                for def in [
                    &catalog::tail::FILES_OPEN,
                    &catalog::tail::READ_LINES,
                    &catalog::tail::READ_BYTES,
                ] {
                    c.read(def, move || i as f64);
                }
            }
            3 => {
                for class in ["2xx", "409", "429", "4xx", "5xx"] {
                    keep.push(c.counter(&catalog::elasticsearch::BULK_ITEMS, Some(class)));
                }
                metrics.add_buffer(&format!("es{i}"), "elasticsearch", {
                    Buffer::new("es", &BufferConfig::default())
                });
            }
            4 => {
                for server in ["a:24224", "b:24224"] {
                    keep.push(c.counter(&catalog::forward_sink::ACKS, Some(server)));
                }
            }
            _ => {}
        }
    }
    let _ = metrics.render();
    let rounds = 20;
    let started = std::time::Instant::now();
    let mut len = 0;
    for _ in 0..rounds {
        len = metrics.render().len();
    }
    let each = started.elapsed() / rounds;
    println!("rendering /metrics for 50 components ({len} bytes): {each:?} per scrape");
    assert!(len > 10_000, "{len}");
}

#[tokio::test]
async fn buffer_stats_count_queued_events_retries_and_the_oldest_chunk_age() {
    use crate::buffer::FlushMode;
    use crate::testing::chunk_of;
    use crate::time::EventTime;
    use crate::value::Map;
    use std::time::{Duration, SystemTime};

    let dir = tempfile::tempdir().unwrap();
    let config = BufferConfig {
        kind: crate::buffer::BufferKind::File,
        flush_mode: FlushMode::Immediate,
        ..BufferConfig::default()
    };
    let events = |n: i64| (0..n).map(|i| (EventTime::new(i, 0), Map::new()));
    {
        let buffer = Buffer::open("aged", &config, dir.path()).unwrap();
        buffer.push(chunk_of("t", events(3))).await.unwrap();
        buffer.push(chunk_of("t", events(2))).await.unwrap();
        let stats = buffer.stats();
        assert_eq!(stats.queued_events, 5);
        assert!(stats.oldest_chunk_age.unwrap() < Duration::from_secs(5));
        // A lease given back is a retry; the chunk is queued again.
        let lease = buffer.pop().await.unwrap();
        assert_eq!(buffer.stats().queued_events, 2);
        assert_eq!(buffer.stats().in_flight_chunks, 1);
        lease.put_back();
        let stats = buffer.stats();
        assert_eq!((stats.retried_chunks, stats.queued_events), (1, 5));
        buffer.close();
    }
    // Recovered chunks count their age from their files' time.
    let hour_ago = SystemTime::now() - Duration::from_secs(3600);
    for entry in std::fs::read_dir(dir.path().join("buffer").join("aged"))
        .into_iter()
        .flatten()
        .chain(
            std::fs::read_dir(dir.path().join("aged"))
                .into_iter()
                .flatten(),
        )
    {
        let path = entry.unwrap().path();
        if path.is_file() {
            let f = std::fs::File::options().append(true).open(&path).unwrap();
            f.set_modified(hour_ago).unwrap();
        }
    }
    let buffer = Buffer::open("aged", &config, dir.path()).unwrap();
    let stats = buffer.stats();
    assert_eq!(stats.recovered_chunks, 2, "{stats:?}");
    assert_eq!(stats.queued_events, 5);
    let age = stats.oldest_chunk_age.unwrap();
    assert!(age >= Duration::from_secs(3599), "{age:?}");
    let metrics = Metrics::new("0");
    metrics.add_buffer("aged", "file", buffer);
    let text = metrics.render();
    assert!(
        text.contains("nagare_buffer_oldest_chunk_age_seconds{component_id=\"aged\",component_kind=\"sink\",component_type=\"file\"} 36"),
        "{text}"
    );
}
