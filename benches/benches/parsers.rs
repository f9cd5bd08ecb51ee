//! Criterion benchmarks of nagare's log formats, each beside its baseline
//! (see `nagare_benches::baseline`), in bytes per second of log lines.
//!
//!   cargo bench -p nagare-benches --bench parsers
//!
//! Under `cargo test` criterion runs each benchmark once, on a small corpus.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nagare_benches::Case;
use std::hint::black_box;

fn parsers(c: &mut Criterion) {
    let quick = !std::env::args().any(|a| a == "--bench");
    for case in Case::all(if quick { 50 } else { 2_000 }) {
        let mut group = c.benchmark_group(case.name);
        group.throughput(Throughput::Bytes(case.bytes() as u64));
        group.bench_function("nagare", |b| b.iter(|| black_box(case.run_nagare())));
        group.bench_function("baseline", |b| b.iter(|| black_box(case.run_baseline())));
        group.finish();
    }
}

criterion_group!(benches, parsers);
criterion_main!(benches);
