//! The tail benchmarks' container log: realistic CRI lines, the same for every bench
//! that tails (the tail source alone, and the tail source shipping over a forward
//! link).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What [`generate`] wrote.
#[derive(Debug, Default)]
pub struct Generated {
    /// CRI lines.
    pub lines: u64,
    /// Messages (a message split into `P` pieces is one).
    pub messages: u64,
    /// Messages that are JSON objects.
    pub json: u64,
    /// Messages split into a `P` and an `F` piece.
    pub split: u64,
}

const PATHS: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/items/8812",
    "/healthz",
    "/api/v1/users/42/cart",
    "/static/app.3f9c.js",
    "/api/v1/checkout",
];

/// Writes realistic CRI lines to a new file at `path` until it holds `bytes`: 70 %
/// JSON messages, mostly 100-400 bytes with a tail up to 1,000, 5 % split into `P`
/// pieces, deterministic for a `seed`.
pub fn generate(path: &Path, bytes: u64, seed: u64) -> Generated {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut g = Generated::default();
    let mut written = 0u64;
    let mut n = 0u64;
    while written < bytes {
        n += 1;
        let ts = format!(
            "2024-05-01T12:{:02}:{:02}.{:09}Z",
            (n / 60_000) % 60,
            (n / 1000) % 60,
            n % 1_000_000_000
        );
        let stream = if rng.random_range(0..10) == 0 {
            "stderr"
        } else {
            "stdout"
        };
        // Message length: mostly 100-400 bytes, a tail up to 1000.
        let target = if rng.random_range(0..10) < 8 {
            rng.random_range(60..380)
        } else {
            rng.random_range(380..960)
        };
        let json = rng.random_range(0..100) < 70;
        let mut msg = if json {
            g.json += 1;
            format!(
                r#"{{"level":"{}","ts":"{ts}","logger":"http.server","msg":"request served","method":"GET","path":"{}","status":{},"latency_ms":{:.2},"request_id":"{:016x}","user":{{"id":{},"tier":"gold"}}"#,
                if n.is_multiple_of(13) {
                    "error"
                } else {
                    "info"
                },
                PATHS[(n % 6) as usize],
                if n.is_multiple_of(13) { 500 } else { 200 },
                rng.random::<f64>() * 120.0,
                rng.random::<u64>(),
                n % 9973
            )
        } else {
            format!(
                "10.244.{}.{} - - [01/May/2024:12:00:00 +0000] \"GET {} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
                n % 250,
                n % 200,
                PATHS[(n % 6) as usize],
                n % 40_000
            )
        };
        if json {
            if msg.len() + 12 < target {
                let pad = target - msg.len() - 12;
                msg.push_str(&format!(r#","detail":"{}""#, "d".repeat(pad)));
            }
            msg.push('}');
        } else {
            while msg.len() < target {
                msg.push_str(" trace=ok");
            }
        }
        g.messages += 1;
        if rng.random_range(0..100) < 5 {
            // The runtime split it: P pieces, then the F piece.
            g.split += 1;
            let cut = msg.len() / 2;
            let line = format!(
                "{ts} {stream} P {}\n{ts} {stream} F {}\n",
                &msg[..cut],
                &msg[cut..]
            );
            written += line.len() as u64;
            out.write_all(line.as_bytes()).unwrap();
            g.lines += 2;
        } else {
            let line = format!("{ts} {stream} F {msg}\n");
            written += line.len() as u64;
            out.write_all(line.as_bytes()).unwrap();
            g.lines += 1;
        }
    }
    out.flush().unwrap();
    g
}
