//! What SigV4 signing costs the Elasticsearch sink per `_bulk` request: one request
//! of 5 MiB of NDJSON (the default `batch.max_bytes`) of 326-byte Kubernetes records,
//! built as the sink builds it (encode each event, concatenate, gzip level 1), then
//! signed as the sink signs it (SHA-256 of the body as sent, `x-amz-content-sha256`,
//! the signature). Both with `compress: true` (the default) and `compress: false`
//! (the whole 5 MiB hashed). Criterion measures each step; the summary printed at
//! the end gives signing as a share of building, from the same run.
//!
//!   cargo bench -p nagare-benches --bench elasticsearch_sign
//!
//! Under `cargo test` criterion runs each benchmark once.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use criterion::{Criterion, Throughput};
use nagare_aggregator::sinks::elasticsearch::{
    BulkRequest, ElasticsearchConfig, RequestBuilder, Scope, sign,
};
use nagare_benches::corpus::kubernetes_record;
use nagare_core::config::ConfigDocument;
use nagare_core::{ChunkId, EventTime, Map};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// NDJSON bytes in one request: the default `batch.max_bytes`.
const REQUEST_BYTES: usize = 5 * 1024 * 1024;
const URL: &str = "https://search-logs-abc123.eu-west-1.es.amazonaws.com/_bulk";
const HOST: &str = "search-logs-abc123.eu-west-1.es.amazonaws.com";

fn builder(compress: bool) -> RequestBuilder {
    let yaml = format!("endpoints: [\"https://{HOST}\"]\ncompress: {compress}\n");
    let config: ElasticsearchConfig = ConfigDocument::from_text("bench.yaml", &yaml, |_| None)
        .unwrap()
        .parse()
        .unwrap();
    RequestBuilder::new(&config).unwrap()
}

/// Events until their items fill one request.
fn events() -> Vec<(EventTime, Map)> {
    let mut b = builder(false);
    let mut bytes = 0;
    let mut out = Vec::new();
    while bytes < REQUEST_BYTES {
        let i = out.len();
        let time = EventTime::new(1_705_314_600 + (i / 100) as i64, 0);
        let record = kubernetes_record(i, 8);
        let item = b
            .encode(ChunkId([7; 16]), i as u32, "kube.shop", time, &record)
            .expect("a fixed index");
        if bytes + item.bytes.len() > REQUEST_BYTES {
            break;
        }
        bytes += item.bytes.len();
        out.push((time, record));
    }
    out
}

/// Encode every event, then build the request body (gzipped when configured).
fn build(b: &mut RequestBuilder, events: &[(EventTime, Map)]) -> BulkRequest {
    let items: Vec<Vec<u8>> = events
        .iter()
        .enumerate()
        .map(|(i, (t, r))| {
            b.encode(ChunkId([7; 16]), i as u32, "kube.shop", *t, r)
                .expect("a fixed index")
                .bytes
        })
        .collect();
    b.build(items.iter().map(Vec::as_slice))
}

fn signed(request: &BulkRequest, credentials: &Credentials) -> usize {
    let mut headers = vec![("host", HOST), ("content-type", "application/x-ndjson")];
    if request.gzip {
        headers.push(("content-encoding", "gzip"));
    }
    let scope = Scope {
        region: "eu-west-1",
        service: "es",
    };
    sign(
        "POST",
        URL,
        &headers,
        &request.body,
        credentials,
        scope,
        SystemTime::now(),
    )
    .unwrap()
    .len()
}

/// The median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let events = events();
    let credentials = Credentials::new(
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("FwoGZXIvYXdzEXAMPLE".into()),
        None,
        "bench",
    );
    let runs = if std::env::args().any(|a| a == "--bench") {
        21
    } else {
        1
    };
    let mut summary = Vec::new();
    for compress in [true, false] {
        let mut b = builder(compress);
        let request = build(&mut b, &events);
        let name = if compress { "gzip" } else { "plain" };
        eprintln!(
            "elasticsearch_sign ({name}): {} events, {} bytes of NDJSON, a body of {} bytes",
            events.len(),
            request.ndjson_bytes,
            request.body.len()
        );
        let mut group = c.benchmark_group(format!("elasticsearch_sign_{name}"));
        group.throughput(Throughput::Elements(events.len() as u64));
        group.sample_size(10);
        group.bench_function("build the request (encode, concatenate, compress)", |x| {
            x.iter(|| black_box(build(&mut b, &events)))
        });
        group.bench_function("sign it (SigV4, SHA-256 of the body)", |x| {
            x.iter(|| black_box(signed(&request, &credentials)))
        });
        group.finish();
        let built = median(runs, || {
            black_box(build(&mut b, &events));
        });
        let sign_time = median(runs, || {
            black_box(signed(&request, &credentials));
        });
        summary.push((name, request.body.len(), built, sign_time));
    }
    c.final_summary();
    println!("| body | bytes | build | sign | sign / build |");
    println!("|---|---:|---:|---:|---:|");
    for (name, bytes, built, sign_time) in summary {
        println!(
            "| {name} | {bytes} | {:.2} ms | {:.3} ms | {:.2} % |",
            built.as_secs_f64() * 1e3,
            sign_time.as_secs_f64() * 1e3,
            100.0 * sign_time.as_secs_f64() / built.as_secs_f64()
        );
    }
}
