//! A smoke run of every fuzz target's body (the same checks `fuzz/` runs under
//! libFuzzer): each fixture line and file as a seed, then a few thousand inputs
//! made from them by mutation and a few thousand random ones. Deterministic (a
//! fixed seed), and a second or two in all.

use std::path::Path;
use std::time::Instant;

use nagare_core::testing::Rng;
use nagare_parsers::fuzzing::Target;

/// Bytes the formats give meaning to, so that mutations reach deep states.
const SPECIAL: &[u8] = b" \t\n\r\"\\[]<>=:,;-./%*#{}0129Zz\xef\xbb\xbf\xff\xc3";

fn seeds(target: Target) -> Vec<Vec<u8>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = match target {
        Target::Time => fixtures.join("syslog"),
        other => fixtures.join(other.name()),
    };
    let mut seeds = vec![Vec::new()];
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let data = std::fs::read(&path).unwrap();
            seeds.extend(data.split(|&b| b == b'\n').map(<[u8]>::to_vec));
            seeds.push(data);
        }
    }
    if target == Target::Time {
        for t in [
            "15/Jan/2024:10:30:00 +0000",
            "2024-01-15T10:30:00.123456789+09:00",
            "Mon Jan 15 10:30:00.5 2024 UTC",
            "1705314600.123",
            "1705314600123",
            "01/15/24 12:30:00 PM",
            "2024 366",
        ] {
            seeds.push(t.as_bytes().to_vec());
        }
    }
    seeds
}

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(6) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] = rng.next_u64() as u8;
            }
            1 => data.insert(at, SPECIAL[rng.below(SPECIAL.len())]),
            2 if !data.is_empty() => {
                let end = (at + rng.below(16)).min(data.len());
                data.drain(at.min(end)..end);
            }
            3 => data.truncate(at),
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let tail = other[from..].to_vec();
                data.splice(at..at, tail);
            }
            _ => {
                let i = rng.below(data.len() + 1);
                let piece = data[at.min(i)..at.max(i)].to_vec();
                data.extend_from_slice(&piece);
            }
        }
    }
    data
}

fn random(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(160);
    (0..len)
        .map(|_| {
            if rng.below(3) == 0 {
                SPECIAL[rng.below(SPECIAL.len())]
            } else {
                rng.next_u64() as u8
            }
        })
        .collect()
}

#[test]
fn every_fuzz_target_survives_its_seeds_and_mutations() {
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut runs = 0;
    for target in Target::ALL {
        let seeds = seeds(target);
        for s in &seeds {
            target.check(s);
        }
        for _ in 0..6000 {
            let input = mutate(&mut rng, &seeds);
            target.check(&input);
        }
        for _ in 0..2000 {
            target.check(&random(&mut rng));
        }
        runs += seeds.len() + 8000;
    }
    eprintln!(
        "fuzz smoke: {runs} inputs over {} targets in {:.2?}",
        Target::ALL.len(),
        started.elapsed()
    );
}
