//! The BigQuery sink's row building: each record and its event time as one
//! `tabledata.insertAll` row (`insertId` from chunk and position, every field
//! converted to its column's type, the event time in `time_field`, the pod labels as a
//! JSON column), written into request bodies of 500 rows. On Kubernetes records of about 326
//! bytes of JSON. Beside it, in the same run: `serde_json::to_vec` of the same
//! records, the baseline (the JSON encoding alone, nothing else). And the sink's own
//! path: each event's table named from its template (`logs_{kubernetes.namespace_name}`
//! with the event's day), its row written, rows batched per table and built into
//! insertAll bodies by the sink's request builder.
//!
//!   cargo bench -p nagare-benches --bench bigquery_rows
//!
//! Under `cargo test` criterion runs each benchmark once.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::collections::HashMap;

use nagare_aggregator::sinks::bigquery::rows::{RowBuilder, RowOptions};
use nagare_aggregator::sinks::bigquery::schema::Schema;
use nagare_aggregator::sinks::bigquery::{self, BigQueryConfig, BodyOptions, Key, TableTemplates};
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

/// Rows per request: insertAll's default batch.
const ROWS_PER_REQUEST: usize = 500;

/// Every row into request bodies of [`ROWS_PER_REQUEST`] rows, as a request builder
/// would: the bodies' total length.
fn build_rows(events: &[(EventTime, Map)], builder: &RowBuilder, chunk: ChunkId) -> usize {
    let mut total = 0;
    for (n, batch) in events.chunks(ROWS_PER_REQUEST).enumerate() {
        let mut body = Vec::with_capacity(batch.len() * 460);
        body.extend_from_slice(b"{\"rows\":[");
        for (i, (time, record)) in batch.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            let position = (n * ROWS_PER_REQUEST + i) as u32;
            builder
                .write_row(&mut body, record, *time, (chunk, position))
                .expect("every record fits the schema");
        }
        body.extend_from_slice(b"]}");
        total += black_box(body).len();
    }
    total
}

/// The sink's path: table from the templates, row, batches of [`ROWS_PER_REQUEST`]
/// per table, bodies from the request builder; the bodies' total length.
fn sink_requests(
    events: &[(EventTime, Map)],
    tables: &mut TableTemplates,
    builder: &RowBuilder,
    chunk: ChunkId,
) -> usize {
    let mut open: HashMap<Key, Vec<Vec<u8>>> = HashMap::new();
    let mut total = 0;
    let send = |key: &Key, rows: &mut Vec<Vec<u8>>| {
        let request = bigquery::build(key, rows.iter().map(Vec::as_slice), BodyOptions::default());
        rows.clear();
        black_box(request).body.len()
    };
    for (position, (time, record)) in events.iter().enumerate() {
        let key = tables
            .key_for("kube.app", record, *time)
            .expect("every record names its table");
        let mut row = Vec::with_capacity(512);
        builder
            .write_row(&mut row, record, *time, (chunk, position as u32))
            .expect("every record fits the schema");
        let rows = open.entry(key.clone()).or_default();
        rows.push(row);
        if rows.len() == ROWS_PER_REQUEST {
            total += send(&key, rows);
        }
    }
    for (key, rows) in &mut open {
        if !rows.is_empty() {
            total += send(key, rows);
        }
    }
    total
}

fn bigquery_rows(c: &mut Criterion) {
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
    let builder = RowBuilder::new(schema, options).unwrap();
    let chunk = ChunkId([0x5a; 16]);
    let body = build_rows(&events, &builder, chunk);
    eprintln!(
        "bigquery_rows: {} events, {} bytes of JSON a record on average, {} bytes of insertAll body a row",
        events.len(),
        json / events.len(),
        body / events.len()
    );
    let config: BigQueryConfig = serde_json::from_value(serde_json::json!({
        "project": "my-project",
        "dataset": "logs",
        "table": "logs_{kubernetes.namespace_name}_%Y%m%d",
        "fetch_schema": true,
    }))
    .unwrap();
    let mut tables = TableTemplates::new(&config).unwrap();
    let mut group = c.benchmark_group("bigquery_rows");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("insertAll rows for the schema, bodies of 500", |b| {
        b.iter(|| black_box(build_rows(&events, &builder, chunk)))
    });
    group.bench_function(
        "the sink: tables from templates, rows, insertAll bodies per table",
        |b| b.iter(|| black_box(sink_requests(&events, &mut tables, &builder, chunk))),
    );
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

criterion_group!(benches, bigquery_rows);
criterion_main!(benches);
