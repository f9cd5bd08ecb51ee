//! The cloudwatch_logs sink's request building, per event: name the group and stream
//! from the templates (partition by stream), encode the record as compact JSON, batch
//! within PutLogEvents' limits (10,000 events, 1,048,576 bytes, 24 hours: the kit's
//! batcher), sort each batch by time and build the SDK's PutLogEvents input. On
//! Kubernetes records of about 326 bytes of JSON from 8 pods (8 streams), their times
//! a little out of order. Beside it, in the same run: `serde_json::to_string` of the
//! same records, the baseline (the JSON encoding alone, nothing else).
//!
//!   cargo bench -p nagare-benches --bench cloudwatch_request
//!
//! Under `cargo test` criterion runs each benchmark once.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nagare_aggregator::sinks::cloudwatch_logs::{self, CloudWatchLogsConfig, Key, RequestBuilder};
use nagare_benches::corpus::kubernetes_record;
use nagare_benches::ticket;
use nagare_core::config::ConfigDocument;
use nagare_core::sink::{Batcher, Item};
use nagare_core::{EventTime, Map};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const EVENTS: usize = 50_000;
const PODS: usize = 8;

fn config() -> CloudWatchLogsConfig {
    let yaml = "log_group_name: '/eks/{kubernetes.namespace_name}'\n\
                log_stream_name: '{kubernetes.pod_name}/{kubernetes.container_name}'\n\
                remove_keys: [logtag]\n";
    ConfigDocument::from_text("bench.yaml", yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap()
}

/// Partition, encode, batch, sort and build: the PutLogEvents inputs' event count.
fn build_requests(
    events: &[(EventTime, Map)],
    builder: &mut RequestBuilder,
    config: &CloudWatchLogsConfig,
) -> usize {
    let now = tokio::time::Instant::now();
    let mut batcher: Batcher<Key> = Batcher::new(config.batch.limits());
    let mut built = 0;
    let mut take = |batcher: &mut Batcher<Key>| {
        while let Some(mut batch) = batcher.take() {
            let request = cloudwatch_logs::build(&batch.key, &mut batch.items);
            built += black_box(request).events.len();
        }
    };
    for (position, (time, record)) in events.iter().enumerate() {
        let key = builder.key_for("kube.shop", record).unwrap();
        let mut bytes = Vec::with_capacity(400);
        builder.message(record, &mut bytes);
        let size = bytes.len() + cloudwatch_logs::limits::EVENT_OVERHEAD;
        batcher.push(
            Item {
                key,
                bytes,
                size,
                time: *time,
                ticket: ticket(position),
            },
            now,
        );
        take(&mut batcher);
    }
    batcher.seal_all();
    take(&mut batcher);
    built
}

fn cloudwatch_request(c: &mut Criterion) {
    let events: Vec<(EventTime, Map)> = (0..EVENTS)
        .map(|i| {
            // Out of order by a few seconds, as records of several files are.
            let secs = 1_705_314_600 + (i / 100) as i64 + ((i * 7) % 5) as i64;
            (
                EventTime::new(secs, (i % 1000) as u32 * 1_000_000),
                kubernetes_record(i, PODS),
            )
        })
        .collect();
    let json: usize = events
        .iter()
        .map(|(_, r)| serde_json::to_string(r).unwrap().len())
        .sum();
    eprintln!(
        "cloudwatch_request: {} events, {} bytes of JSON a record on average, {PODS} streams",
        events.len(),
        json / events.len()
    );
    let config = config();
    let mut builder = RequestBuilder::new(&config, "bench").unwrap();
    assert_eq!(build_requests(&events, &mut builder, &config), EVENTS);
    let mut group = c.benchmark_group("cloudwatch_request");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(
        "partition, encode, batch, sort, build PutLogEvents inputs",
        |b| b.iter(|| black_box(build_requests(&events, &mut builder, &config))),
    );
    group.bench_function("serde_json::to_string of the records (baseline)", |b| {
        b.iter(|| {
            let mut n = 0;
            for (_, r) in &events {
                n += serde_json::to_string(black_box(r)).unwrap().len();
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, cloudwatch_request);
criterion_main!(benches);
