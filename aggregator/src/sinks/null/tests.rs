//! The `null` sink on a real buffer.

use std::path::Path;
use std::time::Duration;

use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::HumanDuration;
use nagare_core::receipt::Delivery;
use nagare_core::testing::{chunk_of, sink_context, with_receipt};
use nagare_core::{EventTime, Map};
use nagare_testkit::capture_logs;
use tracing::Level;

use super::*;

fn events(n: i64) -> Vec<(EventTime, Map)> {
    (0..n)
        .map(|i| {
            let mut m = Map::new();
            m.insert("n", i);
            (EventTime::new(i, 0), m)
        })
        .collect()
}

#[tokio::test]
async fn drops_and_acks_every_chunk_and_counts_them() {
    let buffer = Buffer::new("discard", &BufferConfig::default());
    let mut receipts = Vec::new();
    let mut bytes = 0;
    for n in [1, 2, 3] {
        let (chunk, rx) = with_receipt(chunk_of("t", events(n)));
        bytes += chunk.byte_size() as u64;
        buffer.push(chunk).await.unwrap();
        receipts.push(rx);
    }
    buffer.close();
    let logs = capture_logs(Level::INFO);
    let (ctx, _abort) = sink_context("discard", &buffer, Path::new("/nonexistent"));
    let totals = run(NullConfig::default(), ctx).await.unwrap();
    assert_eq!(
        totals,
        Totals {
            chunks: 3,
            events: 6,
            bytes
        }
    );
    for rx in receipts {
        assert_eq!(rx.await.unwrap(), Delivery::Delivered);
    }
    let stopped = logs.matching(&["null sink stopped; dropped", "events=6"]);
    assert_eq!(stopped.len(), 1, "{:?}", logs.lines());
}

#[tokio::test]
async fn logs_the_totals_every_print_interval() {
    let buffer = Buffer::new("discard", &BufferConfig::default());
    buffer.push(chunk_of("t", events(4))).await.unwrap();
    let logs = capture_logs(Level::INFO);
    let (ctx, abort) = sink_context("discard", &buffer, Path::new("/nonexistent"));
    let config = NullConfig {
        print_interval: Some(HumanDuration(Duration::from_millis(20))),
    };
    let sink = tokio::spawn(run(config, ctx));
    let line = logs
        .wait_for(
            Duration::from_secs(10),
            &["null sink totals so far", "events=4"],
        )
        .await;
    assert!(line.is_some(), "{:?}", logs.lines());
    abort.cancel();
    assert_eq!(sink.await.unwrap().unwrap().events, 4);
}

#[test]
fn a_print_interval_of_zero_is_refused() {
    let config = NullConfig {
        print_interval: Some(HumanDuration(Duration::ZERO)),
    };
    assert_eq!(config.validate().unwrap_err().key, "print_interval");
}
