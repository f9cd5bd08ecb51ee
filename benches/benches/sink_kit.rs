//! The Elasticsearch sink's CPU work per event through the sink kit: chunks of 1,000
//! Kubernetes-style records of about 326 bytes of JSON each, from a memory buffer
//! through the kit's driver (decode, encode to bulk items, batch, build the request
//! body, resolve, ack) into a service that answers "all stored" at once. Beside it:
//! the same encoding and body building in a bare loop (what the kit adds is the
//! difference), and `serde_json::to_vec` of the same records, already decoded.
//! Bodies are not gzipped here (`compress: false`), so the figures are the kit's and
//! the encoder's, not the compressor's. And the file sink from the same buffer to a
//! file (envelope lines, fsync per batch).
//!
//!   cargo bench -p nagare-benches --bench sink_kit
//!
//! Under `cargo test` criterion runs each benchmark once.

use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nagare_aggregator::sinks::elasticsearch::{self, ElasticsearchConfig, RequestBuilder};
use nagare_aggregator::sinks::file;
use nagare_benches::corpus::kubernetes_record;
use nagare_core::buffer::{Buffer, BufferConfig};
use nagare_core::config::{ByteSize, ConfigDocument};
use nagare_core::sink::{self, BatchOutcome, Item, Outcome, Sent, Service, Words};
use nagare_core::testing::{chunk_of, sink_context};
use nagare_core::{Chunk, EventTime, Map};
use std::hint::black_box;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const EVENTS_PER_CHUNK: usize = 1_000;
const CHUNKS: usize = 10;

fn chunks() -> Vec<Chunk> {
    (0..CHUNKS)
        .map(|c| {
            chunk_of(
                "kube.shop.checkout",
                (0..EVENTS_PER_CHUNK).map(|i| {
                    let n = c * EVENTS_PER_CHUNK + i;
                    (
                        EventTime::new(1_705_314_600 + n as i64, 0),
                        kubernetes_record(n, 1),
                    )
                }),
            )
        })
        .collect()
}

fn config() -> ElasticsearchConfig {
    let yaml = "endpoints: [http://127.0.0.1:9]\ncompress: false\n";
    ConfigDocument::from_text("bench.yaml", yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap()
}

/// A destination that stores everything at once.
struct Instant;

impl Service<Arc<str>> for Instant {
    type Request = elasticsearch::BulkRequest;

    fn build(&mut self, _: &Arc<str>, items: &mut [Item<Arc<str>>]) -> Self::Request {
        elasticsearch::build(false, items.iter().map(|i| i.bytes.as_slice()))
    }

    async fn send(&mut self, request: &mut Self::Request) -> Sent {
        black_box(&request.body);
        Sent {
            destination: "bench".into(),
            outcome: BatchOutcome::All(Outcome::Delivered),
        }
    }
}

const WORDS: Words = Words {
    kind: "bench",
    rejected: "refused",
    retry_some: "retry some",
    retry_all: "retry all",
    split: "split",
};

/// A closed memory buffer holding `chunks`, as a sink finds it at shutdown.
async fn filled(chunks: &[Chunk]) -> Buffer {
    let buffer = Buffer::new(
        "bench",
        &BufferConfig {
            total_limit_size: ByteSize(1 << 30),
            ..BufferConfig::default()
        },
    );
    for chunk in chunks {
        buffer.push(chunk.clone()).await.unwrap();
    }
    buffer.close();
    buffer
}

fn through_kit(rt: &tokio::runtime::Runtime, chunks: &[Chunk], config: &ElasticsearchConfig) {
    rt.block_on(async {
        let buffer = filled(chunks).await;
        let (ctx, _abort) = sink_context("bench", &buffer, Path::new("/nonexistent"));
        let worker = (RequestBuilder::new(config).unwrap(), Instant);
        sink::run(&ctx, config.batch.limits(), WORDS, vec![worker]).await;
    });
}

fn bare(chunks: &[Chunk], builder: &mut RequestBuilder) -> usize {
    let mut bodies = 0;
    let mut items = Vec::with_capacity(EVENTS_PER_CHUNK);
    for chunk in chunks {
        for (entry, (origin, at)) in chunk.walk().zip(chunk.event_ids()) {
            let (time, record) = entry.unwrap();
            items.push(
                builder
                    .encode(origin, at, chunk.tag(), time, &record)
                    .expect("a fixed index")
                    .bytes,
            );
        }
        let request = builder.build(items.iter().map(Vec::as_slice));
        bodies += request.body.len();
        items.clear();
    }
    bodies
}

fn sink_kit(c: &mut Criterion) {
    let chunks = chunks();
    let records: Vec<Map> = chunks
        .iter()
        .flat_map(|c| c.walk().map(|e| e.unwrap().1))
        .collect();
    let json: usize = records
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    eprintln!(
        "sink_kit: {} events, {} bytes of JSON a record on average",
        records.len(),
        json / records.len()
    );
    let config = config();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("sink_kit");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("elasticsearch through the kit", |b| {
        b.iter(|| through_kit(&rt, &chunks, &config))
    });
    let mut builder = RequestBuilder::new(&config).unwrap();
    group.bench_function("elasticsearch encode and build, bare loop", |b| {
        b.iter(|| black_box(bare(&chunks, &mut builder)))
    });
    group.bench_function("serde_json::to_vec of the decoded records", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &records {
                n += serde_json::to_vec(black_box(r)).unwrap().len();
            }
            black_box(n)
        })
    });
    group.finish();
}

/// The file sink from a memory buffer to a file on disk (written and fsynced per
/// batch of up to 1 MiB), the same chunks; a new file each iteration.
fn file_sink(c: &mut Criterion) {
    let chunks = chunks();
    let events = (CHUNKS * EVENTS_PER_CHUNK) as u64;
    // On a tmpfs where there is one (`NAGARE_BENCH_DISK=1` for the disk): an fsync
    // there costs nothing, so the figure is the sink's CPU, not the disk's latency,
    // which on a shared machine varies more than the sink.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() && std::env::var_os("NAGARE_BENCH_DISK").is_none() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let path = dir.path().join("out.ndjson");
    let yaml = format!("path: {}\nformat: envelope\n", path.display());
    let config: file::FileConfig = ConfigDocument::from_text("bench.yaml", &yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("file_sink");
    group.throughput(Throughput::Elements(events));
    group.bench_function("file sink, envelope lines, fsync per batch", |b| {
        b.iter(|| {
            let _ = std::fs::remove_file(&path);
            rt.block_on(async {
                let buffer = filled(&chunks).await;
                let (ctx, _abort) = sink_context("bench", &buffer, dir.path());
                file::run(config.clone(), ctx).await.unwrap();
            })
        })
    });
    group.finish();
}

criterion_group!(benches, sink_kit, file_sink);
criterion_main!(benches);
