//! The summary table of nagare's log formats: MiB/s and records/s on one core,
//! nagare beside its baseline measured in the same run, and the ratio.
//!
//!   cargo bench -p nagare-benches --bench parsers_table
//!
//! Each side parses the whole corpus repeatedly for about a second; the best pass
//! counts (the least disturbed by the rest of the machine). Under `cargo test` it
//! checks, on a small corpus, that every line parses with both and prints nothing.

use std::hint::black_box;
use std::time::{Duration, Instant};

use nagare_benches::Case;

/// The best time of one pass over the corpus, passes repeated for `budget`.
fn best_pass(budget: Duration, mut pass: impl FnMut() -> usize) -> Duration {
    let started = Instant::now();
    let mut best = Duration::MAX;
    while started.elapsed() < budget || best == Duration::MAX {
        let t = Instant::now();
        black_box(pass());
        best = best.min(t.elapsed());
    }
    best
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    if !benching {
        for case in Case::all(200) {
            assert!(case.run_nagare() > 0);
            for line in &case.lines {
                assert!(
                    case.run_baseline_line(line) > 0,
                    "{}: baseline fails on {}",
                    case.name,
                    String::from_utf8_lossy(line)
                );
            }
        }
        return;
    }
    let budget = Duration::from_millis(1500);
    println!(
        "| format | nagare MiB/s | nagare records/s | baseline MiB/s | baseline records/s | ratio | baseline |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for case in Case::all(20_000) {
        let ours = best_pass(budget, || case.run_nagare());
        let theirs = best_pass(budget, || case.run_baseline());
        let mib = case.bytes() as f64 / (1024.0 * 1024.0);
        let n = case.lines.len() as f64;
        println!(
            "| {} | {:.1} | {:.0} | {:.1} | {:.0} | {:.1}x | {} |",
            case.name,
            mib / ours.as_secs_f64(),
            n / ours.as_secs_f64(),
            mib / theirs.as_secs_f64(),
            n / theirs.as_secs_f64(),
            theirs.as_secs_f64() / ours.as_secs_f64(),
            case.baseline_name
        );
    }
}
