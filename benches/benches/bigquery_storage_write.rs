//! The BigQuery sink's Storage Write rows: each record and its event time as one
//! protobuf row of the writer schema built from the table schema (every field
//! converted to its column's type, the event time in `time_field` as TIMESTAMP
//! microseconds, the pod labels as a JSON column), on Kubernetes records of about 326
//! bytes of JSON. Two ways: as the sink makes them (an item per event, the row after
//! the event's origin), and all rows into one buffer (the encoding alone). Beside
//! them, in the same run: `serde_json::to_vec` of the same records, the baseline.
//!
//!   cargo bench -p nagare-benches --bench bigquery_storage_write
//!
//! Under `cargo test` criterion runs each benchmark once.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nagare_aggregator::sinks::bigquery::rows::{RowBuilder, RowOptions};
use nagare_aggregator::sinks::bigquery::schema::Schema;
use nagare_aggregator::sinks::bigquery::storage_write::encode::RowEncoder;
use nagare_aggregator::sinks::bigquery::storage_write::encode::item_bytes;
use nagare_benches::corpus::kubernetes_record;
use nagare_core::chunk::ChunkId;
use nagare_core::{EventTime, Map};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const EVENTS: usize = 50_000;
const PODS: usize = 8;

const SCHEMA: &str = r#"[
  {"name": "time", "type": "TIMESTAMP", "mode": "REQUIRED"},
  {"name": "stream", "type": "STRING"},
  {"name": "logtag", "type": "STRING"},
  {"name": "level", "type": "STRING"},
  {"name": "msg", "type": "STRING"},
  {"name": "took_ms", "type": "INTEGER"},
  {"name": "kubernetes", "type": "RECORD", "fields": [
    {"name": "namespace_name", "type": "STRING"},
    {"name": "pod_name", "type": "STRING"},
    {"name": "container_name", "type": "STRING"},
    {"name": "host", "type": "STRING"},
    {"name": "labels", "type": "JSON"}
  ]}
]"#;

/// Every row as the sink's item: the total length.
fn items(events: &[(EventTime, Map)], encoder: &RowEncoder, chunk: ChunkId) -> usize {
    let mut total = 0;
    for (i, (time, record)) in events.iter().enumerate() {
        let item = item_bytes(encoder, (chunk, i as u32), record, *time).expect("fits the schema");
        total += black_box(item).len();
    }
    total
}

/// Every row into one buffer: the total length.
fn rows(events: &[(EventTime, Map)], encoder: &RowEncoder, out: &mut Vec<u8>) -> usize {
    out.clear();
    for (time, record) in events {
        encoder
            .write_row(out, record, *time)
            .expect("fits the schema");
    }
    black_box(out).len()
}

fn bigquery_storage_write(c: &mut Criterion) {
    let events: Vec<(EventTime, Map)> = (0..EVENTS)
        .map(|i| {
            let secs = 1_705_314_600 + (i / 100) as i64;
            (
                EventTime::new(secs, (i % 1000) as u32 * 1_000_000),
                kubernetes_record(i, PODS),
            )
        })
        .collect();
    let json: usize = events
        .iter()
        .map(|(_, r)| serde_json::to_vec(r).unwrap().len())
        .sum();
    let schema = Schema::from_bq_json(SCHEMA).unwrap();
    let options = RowOptions {
        time_field: Some("time".into()),
        ..RowOptions::default()
    };
    let encoder = RowEncoder::new(RowBuilder::new(schema, options).unwrap());
    let chunk = ChunkId([0x5a; 16]);
    let mut buffer = Vec::with_capacity(EVENTS * 300);
    let bytes = rows(&events, &encoder, &mut buffer);
    eprintln!(
        "bigquery_storage_write: {} events, {} bytes of JSON a record on average, {} bytes of protobuf a row",
        events.len(),
        json / events.len(),
        bytes / events.len()
    );
    let mut group = c.benchmark_group("bigquery_storage_write");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("Storage Write rows as the sink's items", |b| {
        b.iter(|| black_box(items(&events, &encoder, chunk)))
    });
    group.bench_function("Storage Write rows into one buffer", |b| {
        b.iter(|| black_box(rows(&events, &encoder, &mut buffer)))
    });
    group.bench_function("serde_json::to_vec of the records (baseline)", |b| {
        b.iter(|| {
            let mut n = 0;
            for (_, r) in &events {
                n += serde_json::to_vec(black_box(r)).unwrap().len();
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bigquery_storage_write);
criterion_main!(benches);
