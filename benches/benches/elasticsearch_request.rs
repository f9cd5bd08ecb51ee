//! The elasticsearch sink's request building, per event: name the index from the
//! template `logs-{kubernetes.namespace_name}-%Y.%m.%d` (records of 3 namespaces, so
//! 3 indices a day), encode the bulk action and document, batch per index into
//! bodies of at most 5 MiB of NDJSON (the kit's batcher, gzipping each batch at
//! level 1 as it fills, as the sink sends them) and sign each body with AWS SigV4
//! (as for Amazon OpenSearch Service: the body's SHA-256 and the signature). On
//! Kubernetes records of about 326 bytes of JSON.
//! The same without gzip, to tell the compressor's share. Beside it, in the same
//! run: `serde_json::to_string` of the same records, the baseline (the JSON encoding
//! alone, nothing else). And a second one, for scale: `serde_json` of the same records
//! into NDJSON bodies of 2 MiB (the average body here), each gzipped at the same level
//! with flate2 (the JSON and the compression, no action line or `@timestamp`, no
//! naming, batching or signing).
//!
//! And the compressor alone: the request bodies, built once not gzipped, gzipped as
//! the kit gzips them (nagare-core's `gzip_parts`, zlib-rs level 1), item by item: the
//! share of the baseline's time no request building can go below while it gzips.
//!
//! Before criterion's runs, request building and the baseline are also timed in
//! turn, pass after pass over the records, and the ratio of each pair printed (median
//! and quartiles): on a shared machine, where runs of a few seconds apart differ by
//! ±15 %, a pair measured within the same tenth of a second is the fairest ratio.
//! Then the same against the second baseline, and the compressor alone against the
//! first.
//!
//!   cargo bench -p nagare-benches --bench elasticsearch_request
//!
//! Under `cargo test` criterion runs each benchmark once (and no pairs).

use std::hint::black_box;
use std::io::Write;
use std::sync::Arc;

use std::sync::LazyLock;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nagare_aggregator::sinks::elasticsearch::{
    self, BulkRequest, ElasticsearchConfig, RequestBuilder, Scope, sign,
};
use nagare_benches::corpus::kubernetes_record;
use nagare_benches::ticket;
use nagare_core::config::ConfigDocument;
use nagare_core::sink::{Batch, Batcher, Item};
use nagare_core::{ChunkId, EventTime, Map, Value, compression};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const EVENTS: usize = 50_000;
const PODS: usize = 8;
/// Namespaces of the same length as the corpus' own, so records keep their size.
const NAMESPACES: [&str; 3] = ["shop", "cart", "auth"];

fn config() -> ElasticsearchConfig {
    let yaml = "endpoints: [http://127.0.0.1:9200]\n\
                index: 'logs-{kubernetes.namespace_name}-%Y.%m.%d'\n\
                index_fallback: 'logs-unknown-%Y.%m.%d'\n\
                remove_keys: [logtag]\n\
                batch: {max_events: 100000, max_bytes: 5MiB}\n";
    let config: ElasticsearchConfig = ConfigDocument::from_text("bench.yaml", yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap();
    config.validate().unwrap();
    config
}

/// Temporary credentials, as IRSA gives them (a session token is signed too).
static CREDENTIALS: LazyLock<Credentials> = LazyLock::new(|| {
    Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("FwoGZXIvYXdzEXAMPLE".into()),
        None,
        "bench",
    )
});

/// What happens to each request body once built: signed with SigV4 over the body
/// as sent (gzipped), as the sink does with `aws:`.
fn finish(request: BulkRequest) -> usize {
    let mut headers = vec![
        ("host", "search-logs.eu-west-1.es.amazonaws.com"),
        ("content-type", "application/x-ndjson"),
    ];
    if request.gzip {
        headers.push(("content-encoding", "gzip"));
    }
    let signed = sign(
        "POST",
        "https://search-logs.eu-west-1.es.amazonaws.com/_bulk",
        &headers,
        &request.body,
        &CREDENTIALS,
        Scope {
            region: "eu-west-1",
            service: "es",
        },
        SystemTime::now(),
    )
    .expect("signed");
    black_box(signed);
    request.items
}

/// Name, encode, batch, build and gzip: the events in the bodies built.
fn build_requests(
    events: &[(EventTime, Map)],
    builder: &mut RequestBuilder,
    config: &ElasticsearchConfig,
) -> usize {
    let now = tokio::time::Instant::now();
    let mut batcher = batcher(config);
    let mut built = 0;
    let mut take = |batcher: &mut Batcher<Arc<str>>| {
        while let Some(batch) = batcher.take() {
            built += finish(builder_build(config, batch));
        }
    };
    for (position, event) in events.iter().enumerate() {
        batcher.push(item(builder, position, event), now);
        take(&mut batcher);
    }
    batcher.seal_all();
    take(&mut batcher);
    built
}

/// The event at `position` as the batcher's item, encoded as the sink encodes it.
/// Inlined: a call here made the measured loop about 20 % slower in one build.
#[inline(always)]
fn item(
    builder: &mut RequestBuilder,
    position: usize,
    (time, record): &(EventTime, Map),
) -> Item<Arc<str>> {
    let item = builder
        .encode(
            ChunkId([7; 16]),
            position as u32,
            "kube.shop",
            *time,
            record,
        )
        .unwrap();
    let size = item.bytes.len();
    Item {
        key: item.index,
        bytes: item.bytes,
        size,
        time: *time,
        ticket: ticket(position),
    }
}

/// Every event batched, then every batch sealed: the batches, in the order taken.
fn batches(
    events: &[(EventTime, Map)],
    builder: &mut RequestBuilder,
    config: &ElasticsearchConfig,
) -> Vec<Batch<Arc<str>>> {
    let now = tokio::time::Instant::now();
    let mut batcher = batcher(config);
    for (position, event) in events.iter().enumerate() {
        batcher.push(item(builder, position, event), now);
    }
    batcher.seal_all();
    std::iter::from_fn(|| batcher.take()).collect()
}

/// The kit's batcher as the sink's worker has it: gzipping batches as they fill
/// when bodies are gzipped.
fn batcher(config: &ElasticsearchConfig) -> Batcher<Arc<str>> {
    Batcher::new(config.batch.limits()).gzip(config.compress.then_some(elasticsearch::GZIP_LEVEL))
}

/// A batch's request, as the sink's service builds it.
fn builder_build(config: &ElasticsearchConfig, batch: Batch<Arc<str>>) -> BulkRequest {
    match batch.gzipped {
        Some(gzipped) => elasticsearch::build_gzipped(gzipped),
        None => elasticsearch::build(
            config.compress,
            batch.items.iter().map(|i| i.bytes.as_slice()),
        ),
    }
}

fn elasticsearch_request(c: &mut Criterion) {
    let events: Vec<(EventTime, Map)> = (0..EVENTS)
        .map(|i| {
            let mut record = kubernetes_record(i, PODS);
            if let Some(Value::Map(k)) = record.get_mut("kubernetes") {
                k.insert("namespace_name", NAMESPACES[i % NAMESPACES.len()]);
            }
            let secs = 1_705_314_600 + (i / 100) as i64;
            (EventTime::new(secs, (i % 1000) as u32 * 1_000_000), record)
        })
        .collect();
    let json: usize = events
        .iter()
        .map(|(_, r)| serde_json::to_string(r).unwrap().len())
        .sum();
    let config = config();
    let mut builder = RequestBuilder::new(&config).unwrap();
    // One pass to report the shape: bodies, their sizes, the compression.
    let (mut bodies, mut ndjson, mut gz) = (0, 0, 0);
    for batch in batches(&events, &mut builder, &config) {
        let r = builder_build(&config, batch);
        bodies += 1;
        ndjson += r.ndjson_bytes;
        gz += r.body.len();
    }
    eprintln!(
        "elasticsearch_request: {} events, {} bytes of JSON a record on average, {} indices, {bodies} bodies of {:.2} MiB NDJSON on average, gzip to {:.1} %",
        events.len(),
        json / events.len(),
        NAMESPACES.len(),
        ndjson as f64 / bodies as f64 / 1048576.0,
        100.0 * gz as f64 / ndjson as f64
    );
    assert_eq!(build_requests(&events, &mut builder, &config), EVENTS);
    let mut plain = config.clone();
    plain.compress = false;
    let mut plain_builder = RequestBuilder::new(&plain).unwrap();
    let bodies = plain_bodies(&events, &mut plain_builder, &plain);
    let plain_bytes: usize = bodies.iter().flatten().map(Vec::len).sum();
    assert_eq!(plain_bytes, ndjson, "the plain bodies hold the same NDJSON");
    if std::env::args().any(|a| a == "--bench") {
        paired(&events, &mut builder, &config);
        compressor_share(&events, &bodies);
    }
    let mut group = c.benchmark_group("elasticsearch_request");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function(
        "templated index, encode, batch, build 5 MiB gzip _bulk bodies, sign",
        |b| b.iter(|| black_box(build_requests(&events, &mut builder, &config))),
    );
    // The same without gzip: what naming and encoding cost, apart from the compressor.
    group.bench_function("the same, bodies not gzipped", |b| {
        b.iter(|| black_box(build_requests(&events, &mut plain_builder, &plain)))
    });
    group.bench_function("serde_json::to_string of the records (baseline)", |b| {
        b.iter(|| black_box(baseline(&events)))
    });
    group.bench_function("serde_json + gzip of the records (second baseline)", |b| {
        b.iter(|| black_box(baseline_gzip(&events)))
    });
    group.bench_function(
        "gzip alone of the same request bodies (the compressor)",
        |b| b.iter(|| black_box(gzip_bodies(&bodies))),
    );
    group.finish();
}

/// The request bodies not gzipped, item by item: what the kit gzips.
fn plain_bodies(
    events: &[(EventTime, Map)],
    builder: &mut RequestBuilder,
    config: &ElasticsearchConfig,
) -> Vec<Vec<Vec<u8>>> {
    batches(events, builder, config)
        .into_iter()
        .map(|batch| batch.items.into_iter().map(|i| i.bytes).collect())
        .collect()
}

/// Each body's items gzipped as one stream, the way the kit's batcher does it: the
/// gzipped bytes.
fn gzip_bodies(bodies: &[Vec<Vec<u8>>]) -> usize {
    bodies
        .iter()
        .map(|items| {
            let size = items.iter().map(Vec::len).sum();
            compression::gzip_parts(
                elasticsearch::GZIP_LEVEL,
                size,
                items.iter().map(Vec::as_slice),
            )
            .len()
        })
        .sum()
}

/// Times the compressor alone ([`gzip_bodies`]) and the first baseline in turn,
/// [`PAIRS`] times, and prints the share of the baseline's time the compressor takes
/// within each pair: its median and quartiles.
fn compressor_share(events: &[(EventTime, Map)], bodies: &[Vec<Vec<u8>>]) {
    let time = |f: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        f();
        start.elapsed().as_secs_f64()
    };
    let mut shares = Vec::with_capacity(PAIRS);
    for _ in 0..PAIRS {
        let gzip = time(&mut || {
            black_box(gzip_bodies(bodies));
        });
        let base = time(&mut || {
            black_box(baseline(events));
        });
        shares.push(gzip / base);
    }
    shares.sort_by(f64::total_cmp);
    eprintln!(
        "elasticsearch_request: {PAIRS} pairs, gzip alone of the request bodies / serde_json::to_string: {:.2}x of its time median ({:.2}-{:.2}x between the quartiles)",
        shares[PAIRS / 2],
        shares[PAIRS / 4],
        shares[3 * PAIRS / 4],
    );
}

/// A baseline: a pass over the records, returning the bytes it wrote.
type Baseline = fn(&[(EventTime, Map)]) -> usize;

/// How many pairs [`paired`] times.
const PAIRS: usize = 40;

/// Times the request building and each baseline in turn, [`PAIRS`] times, and
/// prints the ratio of their rates within each pair: its median and quartiles.
fn paired(events: &[(EventTime, Map)], builder: &mut RequestBuilder, config: &ElasticsearchConfig) {
    let baselines: [(&str, Baseline); 2] = [
        ("serde_json::to_string", baseline),
        ("serde_json + gzip", baseline_gzip),
    ];
    for (name, baseline) in baselines {
        let time = |f: &mut dyn FnMut()| {
            let start = std::time::Instant::now();
            f();
            start.elapsed().as_secs_f64()
        };
        let mut ratios = Vec::with_capacity(PAIRS);
        let mut ours = Vec::with_capacity(PAIRS);
        for _ in 0..PAIRS {
            let built = time(&mut || {
                black_box(build_requests(events, builder, config));
            });
            let base = time(&mut || {
                black_box(baseline(events));
            });
            ratios.push(base / built);
            ours.push(built);
        }
        ratios.sort_by(f64::total_cmp);
        ours.sort_by(f64::total_cmp);
        let rate = |secs: f64| events.len() as f64 / secs / 1000.0;
        eprintln!(
            "elasticsearch_request: {PAIRS} pairs, request building / {name}: {:.2}x median ({:.2}-{:.2}x between the quartiles); request building {:.0} k events/s median, {:.0} k fastest",
            ratios[PAIRS / 2],
            ratios[PAIRS / 4],
            ratios[3 * PAIRS / 4],
            rate(ours[PAIRS / 2]),
            rate(ours[0]),
        );
    }
}

/// `serde_json::to_string` of each record: the bytes written.
fn baseline(events: &[(EventTime, Map)]) -> usize {
    let mut n = 0;
    for (_, r) in events {
        n += serde_json::to_string(black_box(r)).unwrap().len();
    }
    n
}

/// The size of the second baseline's bodies: the average of the request bodies here.
const BASELINE_BODY: usize = 2 << 20;

/// `serde_json` of each record into NDJSON bodies of [`BASELINE_BODY`], each gzipped
/// at [`elasticsearch::GZIP_LEVEL`] with flate2: the gzipped bytes.
fn baseline_gzip(events: &[(EventTime, Map)]) -> usize {
    let gzip = |body: &[u8]| {
        let level = flate2::Compression::new(elasticsearch::GZIP_LEVEL);
        let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
        encoder.write_all(body).expect("gzip into memory");
        encoder.finish().expect("gzip into memory").len()
    };
    let mut body = Vec::with_capacity(BASELINE_BODY + 4096);
    let mut n = 0;
    for (_, r) in events {
        serde_json::to_writer(&mut body, black_box(r)).unwrap();
        body.push(b'\n');
        if body.len() >= BASELINE_BODY {
            n += gzip(&body);
            body.clear();
        }
    }
    n + gzip(&body)
}

criterion_group!(benches, elasticsearch_request);
criterion_main!(benches);
