//! Hostile and broken clients against a running `nagare` aggregator process: random
//! bytes, a frame claiming 4 GiB, truncated frames, one client opening 2,000
//! connections, and one sending a byte per second. Throughout, a well-behaved client
//! streams acked chunks and must be served promptly; the aggregator's memory (RSS,
//! from /proc) must stay bounded; nothing may crash; and every chunk of the
//! well-behaved client must reach the file sink.
#![cfg(feature = "aggregator")]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nagare_core::forward;
use nagare_core::{ChunkBuilder, EventTime, Map, Tag};
use nagare_testkit::proc::rss_kib;
use nagare_testkit::{free_port, wait_until};
use support::{Nagare, read_ndjson};

const FLOOD: usize = 2_000;

/// 2,000 sockets here and as many in the aggregator: make sure the limit allows it.
fn raise_open_file_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let want = (3 * FLOOD as u64).min(hard);
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want, hard).unwrap();
    }
}

fn frame(n: u64, chunk: &str) -> Vec<u8> {
    let mut b = ChunkBuilder::new(Tag::new("good"));
    for i in 0..10 {
        let mut m = Map::new();
        m.insert("n", (n * 10 + i) as i64);
        m.insert("message", "10.1.2.3 - - \"GET /health HTTP/1.1\" 200 2");
        b.push(EventTime::new(1_700_000_000, 0), &m);
    }
    let c = b.finish().unwrap();
    let (mut f, tail) = forward::encode_packed_forward(
        "good",
        c.entries().len(),
        c.count(),
        Some(chunk),
        nagare_core::compression::Compression::None,
    );
    f.extend_from_slice(c.entries());
    f.extend_from_slice(&tail);
    f
}

/// Sends one chunk and waits for its ack; returns how long that took.
fn send_acked(stream: &mut TcpStream, n: u64) -> Duration {
    let id = format!("good-{n}");
    let started = Instant::now();
    stream.write_all(&frame(n, &id)).unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some((ack, _)) = forward::decode_ack(&buf).unwrap() {
            assert_eq!(ack, id);
            return started.elapsed();
        }
        let mut more = [0u8; 256];
        let got = stream.read(&mut more).expect("the good client's ack");
        assert_ne!(got, 0, "the server closed the good client's connection");
        buf.extend_from_slice(&more[..got]);
    }
}

fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn hostile_clients_do_not_disturb_a_good_one() {
    raise_open_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("out.ndjson");
    let mut agg = Nagare::start(
        "aggregator",
        dir.path(),
        &format!(
            "data_dir: {data}\n\
             sources:\n  in:\n    type: forward\n    bind: 127.0.0.1:{port}\n    idle_timeout: 3s\n    max_connections: 4096\n    max_frame_size: 4MiB\n    max_decompressed_size: 16MiB\n    max_buffered_bytes: 64MiB\n\
             sinks:\n  out:\n    type: file\n    match: \"**\"\n    path: {out}\n    format: record\n",
            data = dir.path().join("data").display(),
            out = out.display(),
        ),
    );
    support::wait_listening(&mut agg, port);
    let pid = agg.child.pid();
    let baseline = rss_kib(pid);
    let addr = ("127.0.0.1", port);

    // The good client connects first and streams throughout.
    let done = Arc::new(AtomicBool::new(false));
    let good = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut n = 0;
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                slowest = slowest.max(send_acked(&mut s, n));
                n += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (n, slowest)
        })
    };
    // One byte per second of an otherwise valid frame.
    let trickle = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let bytes = frame(999_999, "slow");
            for b in bytes.iter().take(30) {
                if done.load(Ordering::Relaxed) || s.write_all(&[*b]).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };

    let mut peak = baseline;
    let mut sample = || peak = peak.max(rss_kib(pid));
    let mut claim = vec![0x93, 0xa1, b't', 0xc6, 0xff, 0xff, 0xff, 0xff];
    claim.extend_from_slice(&noise(7, 1024));
    let whole = frame(1, "cut");
    for round in 0..20u64 {
        let garbage: [Vec<u8>; 3] = [
            noise(round, 64 * 1024),
            claim.clone(),
            whole[..whole.len() / 2].to_vec(),
        ];
        for bytes in garbage {
            if let Ok(mut s) = TcpStream::connect(addr) {
                let _ = s.write_all(&bytes);
            }
        }
        sample();
    }

    // One client, 2,000 connections, all silent, all held open while the good
    // client keeps streaming. (With fewer max_connections the rest would wait in the
    // listen backlog; the server's unit tests cover that.)
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        match TcpStream::connect_timeout(&addr.into_addr(), Duration::from_secs(2)) {
            Ok(s) => flood.push(s),
            Err(_) => break,
        }
        if flood.len() % 200 == 0 {
            sample();
        }
    }
    let opened = flood.len();
    for _ in 0..30 {
        sample();
        std::thread::sleep(Duration::from_millis(100));
    }
    agg.assert_running();
    drop(flood);
    let mut late = TcpStream::connect(addr).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let late_latency = send_acked(&mut late, 1_000_000);
    sample();

    done.store(true, Ordering::Relaxed);
    let (sent, slowest) = good.join().unwrap();
    trickle.join().unwrap();
    agg.assert_running();
    let peak_mib = peak / 1024;
    println!(
        "good client: {sent} chunks acked, slowest ack {slowest:?}; {opened} flood connections opened; new client served in {late_latency:?}; aggregator RSS {} MiB at start, {peak_mib} MiB at peak",
        baseline / 1024
    );
    assert_eq!(opened, FLOOD, "every flood connection was accepted");
    assert!(sent >= 20, "the good client got only {sent} acks");
    assert!(
        slowest < Duration::from_secs(2),
        "the good client waited {slowest:?} for an ack"
    );
    assert!(peak_mib < 256, "aggregator RSS reached {peak_mib} MiB");

    // Every chunk of the good client is in the sink, and nothing else is.
    let want = (sent + 1) as usize * 10;
    assert!(
        wait_until(Duration::from_secs(10), || read_ndjson(&out).len() >= want),
        "{} of {want} records in the sink\n{}",
        read_ndjson(&out).len(),
        agg.child.logs()
    );
    assert!(agg.terminate(Duration::from_secs(20)).success());
    assert_eq!(read_ndjson(&out).len(), want, "garbage produced no record");
    let logs = agg.child.stderr();
    assert!(
        logs.contains("exceeds the limit of 4194304 bytes"),
        "the 4 GiB claim was refused"
    );
    assert!(
        logs.contains("in the middle of a frame"),
        "truncated frames were reported"
    );
    assert!(!logs.contains("panicked"), "{logs}");
}

trait IntoAddr {
    fn into_addr(self) -> std::net::SocketAddr;
}

impl IntoAddr for (&str, u16) {
    fn into_addr(self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.0.parse().unwrap(), self.1)
    }
}
