//! Durable delivery with real processes: the `nagare` binary as forwarder and as
//! aggregator with file buffers, killed with SIGKILL over and over; a destination
//! (osmem-server, the OpenSearch API) that stops answering for a minute; buffer files
//! damaged while the aggregator is stopped; and backpressure from a full buffer all
//! the way back to the tailer.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nagare_testkit::proc::{dir_bytes, rss_kib};
use nagare_testkit::{Osmem, free_port, wait_until};
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::{Nagare, forward_aggregator, seqs_in, signal};

/// 2024-05-01T12:00:00Z: every line's time is on that day, so one daily index.
const DAY: i64 = 1_714_564_800;

/// Appends numbered CRI lines `from..to` to the files of `dir`: line `n` goes to file
/// `n % files`, and its message is `{"seq":n,...}`.
fn write_lines(dir: &Path, names: &[String], from: usize, to: usize) {
    let mut per_file = vec![String::new(); names.len()];
    for n in from..to {
        let ts =
            nagare_core::EventTime::new(DAY + (n / 100_000) as i64, (n % 100_000) as u32 * 1000)
                .to_rfc3339();
        let _ = writeln!(
            per_file[n % names.len()],
            "{ts} stdout F {{\"seq\":{n},\"msg\":\"order placed\",\"user\":{}}}",
            n % 977
        );
    }
    for (name, text) in names.iter().zip(per_file) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }
}

/// The runs of lines of the NDJSON file that repeat a `seq` seen earlier in it: the
/// length of each run of consecutive repeats, in file order. Each run is what one
/// crash sent twice (a chunk or a batch in flight, or lines read again).
fn repeat_runs(path: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let mut runs = Vec::new();
    let mut run = 0;
    for line in text.lines() {
        let Some(at) = line.find("\"seq\":") else {
            continue;
        };
        let digits: String = line[at + 6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let Ok(n) = digits.parse::<u64>() else {
            continue;
        };
        if seen.insert(n) {
            if run > 0 {
                runs.push(run);
            }
            run = 0;
        } else {
            run += 1;
        }
    }
    if run > 0 {
        runs.push(run);
    }
    runs
}

/// Documents in osmem per `seq` in `from..to`, searched in windows small enough for
/// one search each.
fn es_seqs(osmem: &Osmem, index: &str, from: u64, to: u64, step: u64) -> HashMap<u64, u32> {
    let mut counts = HashMap::new();
    let mut at = from;
    while at < to {
        let docs = osmem.search(
            index,
            json!({ "range": { "seq": { "gte": at, "lt": (at + step).min(to) } } }),
        );
        assert!(
            docs.len() < 10_000,
            "a search window is full: {}",
            docs.len()
        );
        for d in docs {
            if let Some(n) = d.source["seq"].as_u64() {
                *counts.entry(n).or_insert(0) += 1;
            }
        }
        at += step;
    }
    counts
}

/// Starts an aggregator (its data in `dir/agg`) with a forward source on `port` and
/// an Elasticsearch sink `es` of every event to `osmem`, with the further sink keys
/// `keys` (YAML indented by four spaces).
fn start_es_aggregator(dir: &Path, port: u16, osmem: &Osmem, keys: &str) -> Nagare {
    let sinks = format!(
        "  es:
    type: elasticsearch
    match: \"**\"
    endpoints: [\"{url}\"]
{keys}",
        url = osmem.url()
    );
    Nagare::listening_again(
        "aggregator",
        dir,
        &forward_aggregator(&dir.join("agg"), port, &sinks),
        port,
        &[],
    )
}

/// The forwarder: `subset-*.log` files tagged `es.*`, their lines carrying an event
/// id under `line_id` (the same each time a line is read); `bulk-*.log` tagged
/// `bulk.*`; all forwarded to the aggregator at `port` through a file buffer.
fn forwarder_config(data: &Path, logs: &Path, port: u16, extra_buffer: &str) -> String {
    format!(
        "data_dir: {data}
sources:
  subset:
    type: tail
    paths: [\"{logs}/subset-*.log\"]
    tag: \"es.*\"
    event_id_key: line_id
    read_from_head: true
    refresh_interval: 100ms
    poll_interval: 50ms
    checkpoint_interval: 100ms
  bulk:
    type: tail
    paths: [\"{logs}/bulk-*.log\"]
    tag: \"bulk.*\"
    read_from_head: true
    refresh_interval: 100ms
    poll_interval: 50ms
    checkpoint_interval: 100ms
sinks:
  aggregator:
    type: forward
    match: \"**\"
    servers: [{{host: 127.0.0.1, port: {port}}}]
    ack_response_timeout: 10s
    buffer:
      type: file
      flush_interval: 200ms
      retry_forever: true
{extra_buffer}",
        data = data.display(),
        logs = logs.display(),
    )
}

#[test]
fn a_million_lines_survive_ten_sigkills_of_each_process() {
    const LINES: usize = 1_000_000;
    // Every tenth line goes to Elasticsearch (osmem) as well as to the file sink:
    // osmem indexes about 2,000 documents a second and holds about 300,000 in 3.4 GB
    // here, so it gets the largest share that keeps this test to a few minutes; the
    // file sink gets every line.
    const FILES: usize = 10;
    let seed = std::env::var("NAGARE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("crash schedule seed: {seed} (NAGARE_CRASH_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);

    let osmem = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let out = dir.path().join("out/all.ndjson");
    let port = free_port();
    let names: Vec<String> = (0..FILES)
        .map(|i| {
            let kind = if i == 0 { "subset" } else { "bulk" };
            format!("{kind}-{i}_shop_app-{i:064x}.log")
        })
        .collect();

    let aggregator_config = forward_aggregator(
        &dir.path().join("agg"),
        port,
        &format!(
            "  es:
    type: elasticsearch
    match: \"es.**\"
    endpoints: [\"{url}\"]
    request_timeout: 10s
    batch: {{ max_events: 2000, timeout: 200ms }}
    id_key: line_id
    remove_keys: [line_id]
    buffer:
      type: file
      total_limit_size: 512MiB
      flush_interval: 200ms
      retry_wait: 100ms
      retry_max_interval: 2s
      retry_forever: true
  archive:
    type: file
    match: \"**\"
    path: {out}
    format: record
    buffer:
      type: file
      total_limit_size: 512MiB
      chunk_limit_size: 1MiB
      flush_interval: 200ms
      retry_forever: true
",
            url = osmem.url(),
            out = out.display(),
        ),
    );
    let fwd_config = forwarder_config(
        &dir.path().join("fwd"),
        &logs,
        port,
        "      total_limit_size: 512MiB\n      chunk_limit_size: 1MiB\n",
    );

    let started = Instant::now();
    let mut aggregator =
        Nagare::listening_again("aggregator", dir.path(), &aggregator_config, port, &[]);
    let mut forwarder = Nagare::start("forwarder", dir.path(), &fwd_config);

    // The lines are written at a steady pace over about 40 s, while each process is
    // killed ten times at random moments and started again at once or after a short
    // pause.
    const WRITING: Duration = Duration::from_secs(40);
    let writer = {
        let (logs, names) = (logs.clone(), names.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let steps = 400;
            for step in 0..steps {
                write_lines(
                    &logs,
                    &names,
                    step * LINES / steps,
                    (step + 1) * LINES / steps,
                );
                let next = t0 + WRITING * (step as u32 + 1) / steps as u32;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
    };
    let mut kills: Vec<(Duration, bool)> = (0..20)
        .map(|k| {
            let at = rng.random_range(1_000..WRITING.as_millis() as u64 + 5_000);
            (Duration::from_millis(at), k % 2 == 0)
        })
        .collect();
    kills.sort();
    let mut kill_log = Vec::new();
    for (at, is_forwarder) in kills {
        std::thread::sleep(at.saturating_sub(started.elapsed()));
        let pause = Duration::from_millis(rng.random_range(0..1500));
        if is_forwarder {
            forwarder.kill9();
            std::thread::sleep(pause);
            forwarder = Nagare::start("forwarder", dir.path(), &fwd_config);
        } else {
            aggregator.kill9();
            std::thread::sleep(pause);
            aggregator =
                Nagare::listening_again("aggregator", dir.path(), &aggregator_config, port, &[]);
        }
        kill_log.push(format!(
            "{} at {:.1} s (+{} ms down)",
            if is_forwarder {
                "forwarder"
            } else {
                "aggregator"
            },
            at.as_secs_f64(),
            pause.as_millis()
        ));
    }
    writer.join().unwrap();
    println!("kills: {}", kill_log.join(", "));
    assert_eq!(kill_log.len(), 20);

    // Everything arrives: every line in the file, every tenth line in osmem.
    let es_lines = LINES.div_ceil(FILES);
    let mut file_seen = 0;
    let all_in = wait_until(Duration::from_secs(300), || {
        forwarder.assert_running();
        aggregator.assert_running();
        file_seen = seqs_in(&out).len();
        file_seen == LINES && osmem.count("logstash-*") >= es_lines as u64
    });
    assert!(
        all_in,
        "only {file_seen} of {LINES} lines in the file and {} of {es_lines} documents after {:?}\n{}\n{}",
        osmem.count("logstash-*"),
        started.elapsed(),
        forwarder.child.logs(),
        aggregator.child.logs()
    );
    let took = started.elapsed();
    assert!(forwarder.terminate(Duration::from_secs(30)).success());
    assert!(aggregator.terminate(Duration::from_secs(30)).success());

    let file = seqs_in(&out);
    assert_eq!(file.len(), LINES, "every line is in the file");
    assert!(file.keys().all(|&n| (n as usize) < LINES));
    let file_copies: u64 = file.values().map(|&c| u64::from(c)).sum();
    let es = es_seqs(&osmem, "logstash-*", 0, LINES as u64, 50_000);
    let es_wanted: Vec<u64> = (0..LINES as u64).step_by(FILES).collect();
    let missing: Vec<&u64> = es_wanted.iter().filter(|n| !es.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} lines are not in Elasticsearch, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        es.len(),
        es_wanted.len(),
        "only the subset goes to Elasticsearch"
    );
    let es_docs: u64 = es.values().map(|&c| u64::from(c)).sum();
    println!(
        "crash loop: {LINES} lines, 10 SIGKILLs of each process, all delivered in {:.1} s; \
         file sink: {} extra copies ({:.2} %); Elasticsearch: {} documents for {} lines \
         (ids from the tail's event_id_key: every copy overwrote its line's document)",
        took.as_secs_f64(),
        file_copies - LINES as u64,
        (file_copies - LINES as u64) as f64 * 100.0 / LINES as f64,
        es_docs,
        es_wanted.len(),
    );
    // Exactly one document per line: copies sent again, and lines the tailer read
    // again after a forwarder kill, carry the line's own id.
    let twice: Vec<(&u64, &u32)> = es.iter().filter(|&(_, &c)| c != 1).take(10).collect();
    assert!(twice.is_empty(), "lines indexed more than once: {twice:?}");
    assert_eq!(es_docs, es_wanted.len() as u64, "one document per line");
    // The id field made the `_id` and is not in the documents.
    let sample = osmem.search(
        "logstash-*",
        json!({ "range": { "seq": { "gte": 0, "lt": 20_000 } } }),
    );
    assert_eq!(sample.len(), 2_000);
    for d in &sample {
        assert!(d.source.get("line_id").is_none(), "{:?}", d.source);
        let (hash, offset) = d.id.split_once('-').expect("<hash>-<offset>");
        assert!(
            hash.len() == 16 && offset.parse::<u64>().is_ok(),
            "an event id: {}",
            d.id
        );
    }
    // At-least-once: copies come only from what was not acknowledged at a kill, and
    // the sizes configured above bound that. A line is at least 180 bytes as a
    // record (its Kubernetes fields alone, with the 64-digit container id, take
    // about 130), so 1 MiB holds at most 5,825 lines.
    // - An aggregator kill leaves unacknowledged: the file sink's batch being
    //   written (at most 1 MiB past which nothing joins it, plus one chunk of at most
    //   chunk_limit_size = 1 MiB), and the forwarder chunk it had committed but not
    //   yet acked (at most 1 MiB): 3 MiB.
    // - A forwarder kill: the chunks the aggregator had acked but whose ack it had not
    //   processed (max_in_flight = 4 chunks of at most 1 MiB), and the lines
    //   committed since the checkpoint was last written (checkpoint_interval =
    //   100 ms of reading, one tail chunk of at most 1 MiB per file in practice):
    //   5 MiB.
    // Each run of repeated lines in the file comes from one kill, so it is at most
    // 5 MiB of lines; all of them together at most 10 x 3 + 10 x 5 MiB.
    const LINES_PER_MIB: u64 = 1024 * 1024 / 180;
    let runs = repeat_runs(&out);
    let mut longest = runs.clone();
    longest.sort_unstable_by(|a, b| b.cmp(a));
    longest.truncate(12);
    let extra = file_copies - LINES as u64;
    let bound = (10 * 3 + 10 * 5) * LINES_PER_MIB;
    println!(
        "duplicates: {extra} extra lines in {} runs (longest {longest:?}); bound from the configured sizes: {} lines per run, {bound} in all",
        runs.len(),
        5 * LINES_PER_MIB
    );
    assert!(
        runs.iter().all(|&r| r as u64 <= 5 * LINES_PER_MIB),
        "a run of repeated lines longer than one kill can leave unacknowledged: {longest:?}"
    );
    assert!(extra <= bound, "{file_copies} copies of {LINES} lines");
}

#[test]
fn a_minute_without_the_destination_loses_nothing_and_keeps_memory_flat() {
    const RATE: usize = 500; // lines per second
    const BEFORE: u64 = 20;
    const OUTAGE: u64 = 60;
    const AFTER: u64 = 10;
    let osmem = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let names = vec!["subset-0_shop_app-00.log".to_string()];
    let agg_data = dir.path().join("agg");
    let mut aggregator = start_es_aggregator(
        dir.path(),
        port,
        &osmem,
        "    request_timeout: 3s
    batch: { max_events: 1000, timeout: 200ms }
    buffer:
      type: file
      flush_interval: 500ms
      retry_wait: 200ms
      retry_max_interval: 2s
",
    );
    let mut forwarder = Nagare::start(
        "forwarder",
        dir.path(),
        &forwarder_config(&dir.path().join("fwd"), &logs, port, ""),
    );

    // A steady stream, second by second; osmem is stopped (SIGSTOP: it accepts
    // connections and never answers) for a minute in the middle.
    let buffer_dir = agg_data.join("buffer/es");
    let mut samples: Vec<(u64, u64, u64)> = Vec::new(); // (second, rss KiB, buffer bytes)
    let mut written = 0;
    let t0 = Instant::now();
    for second in 0..BEFORE + OUTAGE + AFTER {
        if second == BEFORE {
            signal(osmem.child().pid(), Signal::SIGSTOP);
        }
        if second == BEFORE + OUTAGE {
            signal(osmem.child().pid(), Signal::SIGCONT);
        }
        write_lines(&logs, &names, written, written + RATE);
        written += RATE;
        let next = t0 + Duration::from_secs(second + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        forwarder.assert_running();
        aggregator.assert_running();
        samples.push((
            second,
            rss_kib(aggregator.child.pid()),
            dir_bytes(&buffer_dir),
        ));
    }
    let drained = wait_until(Duration::from_secs(120), || {
        osmem.count("logstash-*") >= written as u64
    });
    assert!(
        drained,
        "{} of {written} documents\n{}",
        osmem.count("logstash-*"),
        aggregator.child.logs()
    );
    let buffer_after = dir_bytes(&buffer_dir);
    let es = es_seqs(&osmem, "logstash-*", 0, written as u64, 5_000);
    assert_eq!(es.len(), written, "every line is indexed");
    assert!(es.values().all(|&c| c == 1), "each exactly once");

    let warm: Vec<u64> = samples[10..BEFORE as usize].iter().map(|s| s.1).collect();
    let outage: Vec<&(u64, u64, u64)> = samples[BEFORE as usize..(BEFORE + OUTAGE) as usize]
        .iter()
        .collect();
    let baseline = *warm.iter().max().unwrap();
    let peak = outage.iter().map(|s| s.1).max().unwrap();
    let grown = outage.last().unwrap().2;
    let before_outage = samples[BEFORE as usize - 1].2;
    println!(
        "outage: aggregator RSS {} KiB before, at most {} KiB during a {OUTAGE} s outage ({:+.1} %); \
         its file buffer grew from {before_outage} to {grown} bytes and drained to {buffer_after}",
        baseline,
        peak,
        (peak as f64 / baseline as f64 - 1.0) * 100.0
    );
    assert!(
        grown > before_outage + 10_000,
        "the file buffer grows while the destination is away: {samples:?}"
    );
    assert!(
        buffer_after < grown / 2,
        "and drains once it is back: {buffer_after} bytes left"
    );
    assert!(
        peak as f64 <= baseline as f64 * 1.2,
        "memory stays flat within 20 %: {baseline} KiB before, {peak} KiB during\n{samples:?}"
    );
    assert!(forwarder.terminate(Duration::from_secs(30)).success());
    assert!(aggregator.terminate(Duration::from_secs(30)).success());
}

/// The one segment file of a buffer folder, and where each of its chunks starts.
fn segment_chunks(dir: &Path) -> (PathBuf, Vec<usize>) {
    let segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "segment"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let bytes = std::fs::read(&segments[0]).unwrap();
    let mut starts = Vec::new();
    let mut at = 0;
    while let Ok(len) = nagare_core::buffer::format::sealed_len(&bytes[at..]) {
        starts.push(at);
        at += len;
    }
    assert_eq!(at, bytes.len(), "the segment is whole chunks");
    (segments[0].clone(), starts)
}

#[test]
fn damaged_buffer_files_are_quarantined_and_every_intact_chunk_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out_dir = dir.path().join("out");
    // The sink's folder is taken by a file: nothing can be delivered, so the chunks
    // stay in the aggregator's file buffer.
    std::fs::write(&out_dir, "not a folder").unwrap();
    let config = forward_aggregator(
        &dir.path().join("agg"),
        port,
        &format!(
            "  archive:
    type: file
    match: \"**\"
    path: {out}/all.ndjson
    format: record
    buffer:
      type: file
      flush_mode: immediate
      retry_forever: true
",
            out = out_dir.display(),
        ),
    );
    let mut aggregator = Nagare::listening_again("aggregator", dir.path(), &config, port, &[]);
    // Eight chunks of 50 records, each acked by the aggregator: committed.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    for c in 0..8u32 {
        let mut entries = Vec::new();
        for i in 0..50u32 {
            let mut m = nagare_core::Map::new();
            m.insert("seq", i64::from(c * 50 + i));
            entries.push(0x92);
            nagare_core::msgpack::write_time(&mut entries, nagare_core::EventTime::new(DAY, 0));
            nagare_core::msgpack::write_map(&mut entries, &m);
        }
        let id = nagare_core::ChunkId::random().to_base64();
        let (head, tail) = nagare_core::forward::encode_packed_forward(
            "app",
            entries.len(),
            50,
            Some(&id),
            nagare_core::compression::Compression::None,
        );
        client.write_all(&head).unwrap();
        client.write_all(&entries).unwrap();
        client.write_all(&tail).unwrap();
        let mut ack = vec![0u8; 256];
        let n = std::io::Read::read(&mut client, &mut ack).unwrap();
        assert!(
            String::from_utf8_lossy(&ack[..n]).contains(&id),
            "chunk {c} acked"
        );
    }
    drop(client);
    assert!(aggregator.terminate(Duration::from_secs(30)).success());

    // Damage three of the eight chunks while it is stopped: zero one, flip a bit in
    // another, and cut the file inside the last one.
    let buffer = dir.path().join("agg/buffer/archive");
    let (segment, at) = segment_chunks(&buffer);
    assert_eq!(at.len(), 8, "{at:?}");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[at[1]..at[2]].fill(0);
    bytes[(at[3] + at[4]) / 2] ^= 0x01;
    bytes.truncate((at[7] + bytes.len()) / 2);
    std::fs::write(&segment, bytes).unwrap();

    std::fs::remove_file(&out_dir).unwrap();
    let mut aggregator = Nagare::listening_again("aggregator", dir.path(), &config, port, &[]);
    let out = out_dir.join("all.ndjson");
    let delivered = wait_until(Duration::from_secs(30), || seqs_in(&out).len() >= 250);
    let got = seqs_in(&out);
    assert!(
        delivered,
        "{} records\n{}",
        got.len(),
        aggregator.child.logs()
    );
    std::thread::sleep(Duration::from_millis(500));
    let got = seqs_in(&out);
    let mut chunks: Vec<u64> = got.keys().map(|n| n / 50).collect();
    chunks.sort_unstable();
    chunks.dedup();
    assert_eq!(chunks, [0, 2, 4, 5, 6], "the five intact chunks, whole");
    assert_eq!(got.len(), 250);
    let quarantined = std::fs::read_dir(buffer.join("quarantine"))
        .unwrap()
        .count();
    assert_eq!(quarantined, 3);
    let logs = aggregator.child.logs();
    assert_eq!(
        logs.matches("copied it to quarantine").count(),
        3,
        "one line per damaged chunk\n{logs}"
    );
    for reason in ["no trailer", "zero bytes", "checksum"] {
        assert!(logs.contains(reason), "the log says why ({reason})\n{logs}");
    }
    assert!(aggregator.terminate(Duration::from_secs(30)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_with_block_pauses_the_tailer_until_the_destination_is_back() {
    use nagare_core::buffer::{Buffer, BufferConfig};
    use nagare_core::config::ByteSize;
    use nagare_core::pattern::TagPattern;
    use nagare_core::router::RouterBuilder;

    use nagare_core::testing::{sink_context, source_context};
    use nagare_forwarder::sinks::forward::{self, ForwardSinkConfig, ServerConfig};
    use nagare_forwarder::sources::tail::{self, TailConfig, TailMetrics};

    // Lines per second: well below what the chain moves through 64 KiB buffers on a
    // busy machine (about 600 lines per Elasticsearch request), so that the backlog
    // of the outage drains within seconds once the destination is back.
    const RATE: usize = 200;
    let osmem = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    // The aggregator holds at most 64 KiB of chunks and blocks when full. The chunks
    // are stored uncompressed so that the limit means about 600 lines on either side:
    // compressed tenfold, the two buffers would take half a minute of this stream
    // to fill, longer than the outage.
    let aggregator = start_es_aggregator(
        dir.path(),
        port,
        &osmem,
        "    request_timeout: 5s
    buffer:
      type: file
      total_limit_size: 64KiB
      chunk_limit_size: 32KiB
      compress: none
      overflow_action: block
      flush_interval: 200ms
      retry_wait: 200ms
      retry_max_interval: 1s
",
    );

    // The forwarder runs in this process so that its tail metrics can be read: the
    // same tail source and forward sink the binary runs, over a 64 KiB file buffer
    // (uncompressed too).
    let data = dir.path().join("fwd");
    let buffer = Buffer::open(
        "aggregator",
        &BufferConfig {
            total_limit_size: ByteSize(64 * 1024),
            chunk_limit_size: Some(ByteSize(32 * 1024)),
            compress: nagare_core::compression::Compression::None,
            flush_interval: nagare_core::config::HumanDuration::millis(200),
            ..BufferConfig::file(data.join("buffer"))
        },
        &data,
    )
    .unwrap();
    let mut rb = RouterBuilder::new();
    rb.sink("aggregator", TagPattern::new("**").unwrap(), buffer.clone());
    let (source_ctx, stop) = source_context("containers", rb.build(), &data);
    let (sink_ctx, abort) = sink_context("aggregator", &buffer, &data);
    let metrics = TailMetrics::new();
    let mut tail_config = TailConfig::new(vec![format!("{}/*.log", logs.display())]);
    tail_config.read_from_head = true;
    tail_config.poll_interval = nagare_core::config::HumanDuration::millis(50);
    tail_config.refresh_interval = nagare_core::config::HumanDuration::millis(100);
    let source = tokio::spawn(tail::run_with_metrics(
        tail_config,
        source_ctx,
        metrics.clone(),
    ));
    let sink = tokio::spawn(forward::run(
        ForwardSinkConfig::new(vec![ServerConfig::new("127.0.0.1", port)]),
        sink_ctx,
    ));

    // A steady stream for 40 s; osmem stops answering from 5 s to 20 s.
    let names = vec!["app-0_shop_app-00.log".to_string()];
    let mut written = 0;
    let mut timeline = String::new();
    let t0 = Instant::now();
    for tick in 0..400u64 {
        if tick == 50 {
            signal(osmem.child().pid(), Signal::SIGSTOP);
        }
        if tick == 200 {
            signal(osmem.child().pid(), Signal::SIGCONT);
        }
        write_lines(&logs, &names, written, written + RATE / 10);
        written += RATE / 10;
        let paused = metrics.paused.load(std::sync::atomic::Ordering::Relaxed);
        timeline.push(if paused { 'P' } else { '.' });
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            t0 + Duration::from_millis(100 * (tick + 1)),
        ))
        .await;
    }
    let waits = metrics
        .backpressure_waits
        .load(std::sync::atomic::Ordering::Relaxed);
    println!("paused timeline (0.1 s per mark): {timeline}");
    // Brief waits for room happen in normal operation (chunks in flight count toward
    // the limit); what matters is a pause that lasts.
    let sustained = |from: usize, to: usize| {
        timeline[from..to]
            .split('.')
            .map(str::len)
            .max()
            .unwrap_or(0)
    };
    assert!(sustained(0, 50) < 20, "no long pause before the outage");
    let long = timeline[50..200].find(&"P".repeat(20));
    let paused_at =
        long.expect("the tailer paused for 2 s or more while the buffers were full") + 50;
    // Once the destination is back the backlog drains (a few seconds on a busy
    // machine), then the tailer reads again, with only the brief waits of normal
    // operation.
    assert!(
        sustained(300, 400) < 20 && timeline[200..].matches('.').count() >= 100,
        "and read again once the destination was back: no long pause from 10 s after, unpaused at least half the time"
    );
    assert!(waits > 0);
    let all_in = {
        let osmem_url = osmem.url().to_string();
        let written = written as u64;
        tokio::task::spawn_blocking(move || {
            let probe = |os: &str| {
                nagare_testkit::http::send_json(os, "GET", "/logstash-*/_count", None)
                    .ok()
                    .and_then(|r| r.json()["count"].as_u64())
                    .unwrap_or(0)
            };
            wait_until(Duration::from_secs(120), || probe(&osmem_url) >= written)
        })
        .await
        .unwrap()
    };
    assert!(all_in, "{} of {written}", osmem.count("logstash-*"));
    let es = es_seqs(&osmem, "logstash-*", 0, written as u64, 5_000);
    assert_eq!(es.len(), written, "nothing lost");
    println!(
        "backpressure: the tailer stopped reading {:.1} s into a 15 s outage ({waits} waits for room) and read again after it; all {written} lines indexed",
        (paused_at - 50) as f64 / 10.0
    );
    stop.cancel();
    source.await.unwrap().unwrap();
    buffer.close();
    abort.cancel();
    sink.await.unwrap().unwrap();
    drop(aggregator);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forward_sink_gives_up_under_retry_max_times_into_its_dead_letter_output() {
    use nagare_core::buffer::{Buffer, BufferConfig};
    use nagare_core::receipt::{Delivery, Receipt};

    use nagare_core::testing::sink_context;
    use nagare_forwarder::sinks::forward::{self, ForwardSinkConfig, ServerConfig};

    // A server that takes every connection and closes it at once: each send fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let buffer = Buffer::new(
        "aggregator",
        &BufferConfig {
            retry_max_times: Some(1),
            ..BufferConfig::default()
        },
    );
    let mut b = nagare_core::ChunkBuilder::new(nagare_core::Tag::new("app"));
    for seq in 0..3i64 {
        let mut m = nagare_core::Map::new();
        m.insert("seq", seq);
        b.push(nagare_core::EventTime::new(DAY, 0), &m);
    }
    let (receipt, outcome) = Receipt::channel();
    buffer
        .push(b.finish().unwrap().with_receipt(receipt))
        .await
        .unwrap();
    buffer.close();
    let mut config = ForwardSinkConfig::new(vec![ServerConfig::new("127.0.0.1", port)]);
    config.retry_wait = nagare_core::config::HumanDuration::millis(100);
    let (ctx, _abort) = sink_context("aggregator", &buffer, dir.path());
    let sink = forward::run(config, ctx);
    // One send and one retry fail; then the chunk goes to the dead-letter output, and
    // the sink, its buffer closed and empty, returns.
    tokio::time::timeout(Duration::from_secs(30), sink)
        .await
        .expect("the sink gives up and returns")
        .unwrap();
    assert_eq!(outcome.await.unwrap(), Delivery::Failed);
    let dead = std::fs::read_to_string(dir.path().join("dead-letter/aggregator.ndjson")).unwrap();
    assert_eq!(dead.lines().count(), 3, "{dead}");
    assert_eq!(
        seqs_in(&dir.path().join("dead-letter/aggregator.ndjson")).len(),
        3
    );
    assert!(
        dead.lines()
            .all(|l| l.contains("gave up after 2 failed sends")),
        "{dead}"
    );
}
