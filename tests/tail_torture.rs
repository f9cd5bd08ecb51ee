//! Torture test of the tail source with real processes: a writer process
//! (`tests/tail_torture/writer.py`) writes numbered CRI lines at 50,000 lines/s for
//! 60 s into four files, rotating each at 10 MiB and keeping 5 files (the kubelet's
//! defaults), by rename + create in one run and by copytruncate in the other. The
//! real `nagare` forwarder tails them and ships to the real `nagare` aggregator,
//! which writes every record to a file. The forwarder is killed with SIGKILL six
//! times during the run and restarted, once only after every file was rotated.
//!
//! Checked at the end: every line written is in the aggregator's output (zero loss);
//! lines that arrived more than once are counted, and each of them was not yet
//! acknowledged at some kill: its offset was at or past the checkpoint the forwarder
//! had on disk when it was killed (the checkpoint is where a forwarder records what
//! the aggregator acknowledged); and every copy of a line carries the event id its
//! first copy had (`event_id_key`), whether it was read from the file, from its
//! rotated name or from a copytruncate copy.
//!
//! A shorter test kills the forwarder with lines past its checkpoint, runs
//! copytruncate while it is down, and checks that the lines read again from the copy
//! keep their ids, so that the Elasticsearch sink (osmem-server, `id_key`) holds one
//! document per line.
#![cfg(all(feature = "forwarder", feature = "aggregator"))]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nagare_forwarder::sources::tail::checkpoint::{self, Stored};
use nagare_forwarder::sources::tail::file::{FINGERPRINT_BYTES, fnv1a};
use nagare_testkit::{Child, Osmem, free_port, wait_until};
use support::{Nagare, forward_aggregator};

const FILES: usize = 4;
const RATE: u64 = 52_000;
const SECONDS: u64 = 60;
const MAX_BYTES: u64 = 10 * 1024 * 1024;
const KEEP: usize = 5;
/// Every line the writer writes is this long, newline included.
const LINE: u64 = 64;
/// When the forwarder is killed, in seconds after the writer started.
const KILLS: [u64; 6] = [6, 15, 24, 33, 42, 51];
/// The kill after which the forwarder stays down until every file was rotated (about
/// 25 s in: each file reaches 10 MiB every 12.6 s), so that what it had read past its
/// checkpoint is read again from the rotated file (the copy, with copytruncate).
const DOWN_OVER_A_ROTATION: usize = 2;

#[test]
fn rename_rotation_with_sigkills_loses_nothing() {
    torture("rename");
}

#[test]
fn copytruncate_rotation_with_sigkills_loses_nothing() {
    torture("copytruncate");
}

/// One generation of one file, from the writer's manifest.
#[derive(Debug, Clone, Copy)]
struct Generation {
    file: usize,
    first_seq: u64,
}

fn forwarder_config(data: &Path, logs: &Path, port: u16) -> String {
    format!(
        "data_dir: {data}\n\
         sources:\n  containers:\n    type: tail\n    paths: [\"{logs}/*.log\"]\n    format: cri\n    read_from_head: true\n    kubernetes_metadata: false\n    refresh_interval: 200ms\n    poll_interval: 50ms\n    checkpoint_interval: 250ms\n    event_id_key: line_id\n\
         sinks:\n  aggregator:\n    type: forward\n    match: \"**\"\n    servers: [{{host: 127.0.0.1, port: {port}}}]\n    buffer:\n      total_limit_size: 16MiB\n",
        data = data.display(),
        logs = logs.display(),
    )
}

/// The two runs take the machine's two cores each: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn torture(mode: &str) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::Builder::new()
        .prefix(&format!("nagare-torture-{mode}-"))
        .tempdir()
        .unwrap();
    let logs = dir.path().join("logs");
    let out = dir.path().join("out");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let port = free_port();
    let output = out.join("records.ndjson");
    let sinks = format!(
        "  archive:\n    type: file\n    match: \"**\"\n    path: {output}\n    format: record\n",
        output = output.display(),
    );
    let aggregator_config = forward_aggregator(&dir.path().join("agg-data"), port, &sinks);
    let mut aggregator = Nagare::listening("aggregator", dir.path(), &aggregator_config, port);

    let fwd_data = dir.path().join("fwd-data");
    let config = forwarder_config(&fwd_data, &logs, port);
    let mut forwarder = Nagare::start("forwarder", dir.path(), &config);
    let store = fwd_data.join("tail").join("containers").join("checkpoints");

    let writer_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tail_torture/writer.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&writer_script).arg(&logs).args([
        FILES.to_string(),
        RATE.to_string(),
        SECONDS.to_string(),
        mode.to_string(),
        MAX_BYTES.to_string(),
        KEEP.to_string(),
    ]);
    let started = Instant::now();
    let mut writer = Child::spawn("writer", cmd);

    // Kill the forwarder with SIGKILL on schedule, noting the checkpoints it had on
    // disk at that moment, and start it again.
    let mut at_kills: Vec<Vec<(usize, u64, u64)>> = Vec::new();
    for (k, at) in KILLS.into_iter().enumerate() {
        let due = Duration::from_secs(at);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        forwarder.assert_running();
        forwarder.child.kill();
        let saved = std::fs::read(&store).unwrap_or_default();
        let entries = checkpoint::decode(&saved).unwrap_or_else(|e| {
            panic!("the checkpoint file is unreadable after a kill ({e}); it must always be whole")
        });
        at_kills.push(resolve(&entries, &logs));
        std::thread::sleep(Duration::from_millis(300));
        if k == DOWN_OVER_A_ROTATION {
            let manifest = logs.join("manifest");
            let generations = || {
                std::fs::read_to_string(&manifest)
                    .unwrap_or_default()
                    .lines()
                    .count()
            };
            let before = generations();
            let rotated = wait_until(Duration::from_secs(15), || generations() >= before + FILES);
            assert!(rotated, "the files were not rotated within 15 s of a kill");
        }
        forwarder = Nagare::start("forwarder", dir.path(), &config);
    }
    writer.expect_success(Duration::from_secs(SECONDS + 60));
    let write_time = started.elapsed();

    let (generations, totals) = read_manifest(&logs.join("manifest"));
    let total: u64 = totals.iter().sum();
    assert!(
        total >= RATE * SECONDS * 95 / 100,
        "the writer wrote {total} lines, short of the rate"
    );
    // Wait until every line has arrived (or time runs out; the check below says
    // what is missing).
    let arrived = wait_until(Duration::from_secs(90), || {
        forwarder.assert_running();
        count_lines(&output) >= total
    });
    let drained = started.elapsed();
    let stopped = forwarder.terminate(Duration::from_secs(30));
    assert!(stopped.success(), "forwarder: {stopped}");
    let stopped = aggregator.terminate(Duration::from_secs(60));
    assert!(stopped.success(), "aggregator: {stopped}");

    let (counts, two_ids) = read_output(&output, &totals);
    let mut missing = Vec::new();
    let mut duplicated = 0u64;
    let mut dup_lines = Vec::new();
    for (file, seqs) in counts.iter().enumerate() {
        for (seq, &n) in seqs.iter().enumerate() {
            match n {
                0 => missing.push((file, seq)),
                1 => {}
                n => {
                    duplicated += u64::from(n - 1);
                    dup_lines.push((file, seq as u64));
                }
            }
        }
    }
    eprintln!(
        "{mode}: {total} lines written in {write_time:?} ({:.0} lines/s), all arrived after {drained:?}: {arrived}; {} kills; {duplicated} duplicates ({} distinct lines, {:.3}%); {} lines arrived with two different ids",
        total as f64 / write_time.as_secs_f64(),
        KILLS.len(),
        dup_lines.len(),
        duplicated as f64 * 100.0 / total as f64,
        two_ids.len(),
    );
    assert_none(&missing, "lines lost");

    // Each duplicate was past the checkpoint on disk at some kill.
    assert!(
        at_kills.iter().filter(|c| !c.is_empty()).count() >= KILLS.len() - 1,
        "checkpoints were on disk at the kills: {at_kills:?}"
    );
    let acked_at_every_kill: Vec<(usize, u64)> = dup_lines
        .iter()
        .copied()
        .filter(|&(file, seq)| {
            at_kills
                .iter()
                .all(|c| acknowledged(c, &generations, file, seq))
        })
        .collect();
    assert_none(
        &acked_at_every_kill,
        "duplicated lines were checkpointed (acknowledged) before every kill",
    );
    assert_none(&two_ids, "lines arrived with two different event ids");
    drop(writer);
}

/// Asserts that `items` is empty; if not, says how many `what` there are and shows
/// the first 20.
fn assert_none<T: std::fmt::Debug>(items: &[T], what: &str) {
    assert!(
        items.is_empty(),
        "{} {what}, e.g. {:?}",
        items.len(),
        &items[..items.len().min(20)]
    );
}

/// The generations and, per file, the number of lines written.
fn read_manifest(path: &Path) -> (Vec<Generation>, Vec<u64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut generations = Vec::new();
    let mut totals = vec![0u64; FILES];
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts[0] == "done" {
            totals[parts[1].parse::<usize>().unwrap()] = parts[2].parse().unwrap();
        } else {
            generations.push(Generation {
                file: parts[0].parse().unwrap(),
                first_seq: parts[1].parse().unwrap(),
            });
        }
    }
    (generations, totals)
}

/// Lines in the output file so far.
fn count_lines(path: &Path) -> u64 {
    let Ok(f) = std::fs::File::open(path) else {
        return 0;
    };
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut n = 0u64;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) if !b.is_empty() => b,
            _ => return n,
        };
        n += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        let len = buf.len();
        reader.consume(len);
    }
}

/// How many times each (file, seq) arrived, and the (file, seq) of the lines that
/// arrived with two different event ids.
#[allow(clippy::type_complexity)]
fn read_output(path: &Path, totals: &[u64]) -> (Vec<Vec<u32>>, Vec<(usize, usize)>) {
    let mut counts: Vec<Vec<u32>> = totals.iter().map(|&t| vec![0; t as usize]).collect();
    // A hash of each line's first id (0: not seen yet).
    let mut ids: Vec<Vec<u64>> = totals.iter().map(|&t| vec![0; t as usize]).collect();
    let mut two_ids = Vec::new();
    let reader = BufReader::with_capacity(1 << 20, std::fs::File::open(path).unwrap());
    for line in reader.split(b'\n') {
        let line = line.unwrap();
        // {"stream":"stdout","logtag":"F","log":"f<i> <seq> xxx","line_id":"<hash>-<offset>"}
        let Some(at) = find(&line, b"\"log\":\"f") else {
            panic!("unexpected record {}", String::from_utf8_lossy(&line));
        };
        let rest = &line[at + 8..];
        let sp = rest.iter().position(|&b| b == b' ').unwrap();
        let file: usize = std::str::from_utf8(&rest[..sp]).unwrap().parse().unwrap();
        let seq: usize = std::str::from_utf8(&rest[sp + 1..sp + 11])
            .unwrap()
            .parse()
            .unwrap();
        counts[file][seq] += 1;
        let Some(at) = find(&line, b"\"line_id\":\"") else {
            panic!(
                "a record without its event id: {}",
                String::from_utf8_lossy(&line)
            );
        };
        let id = &line[at + 11..];
        let id = fnv1a(&id[..id.iter().position(|&b| b == b'"').unwrap()]).max(1);
        match ids[file][seq] {
            0 => ids[file][seq] = id,
            first if first != id => two_ids.push((file, seq)),
            _ => {}
        }
    }
    (counts, two_ids)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The checkpoints on disk at a kill, resolved to generations: (file, first line of
/// the generation, delivered offset). A fingerprint is resolved by finding the file
/// whose first bytes it matches (still on disk right after the kill) and reading the
/// line it starts with.
fn resolve(entries: &[Stored], logs: &Path) -> Vec<(usize, u64, u64)> {
    let files: Vec<PathBuf> = std::fs::read_dir(logs)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('f'))
        })
        .collect();
    let mut out = Vec::new();
    for e in entries {
        if e.fingerprint.len < LINE as u32 {
            continue;
        }
        for p in &files {
            let Ok(data) = read_prefix(p, e.fingerprint.len as usize) else {
                continue;
            };
            if data.len() != e.fingerprint.len as usize || fnv1a(&data) != e.fingerprint.hash {
                continue;
            }
            // `<30-byte time> stdout F f<i> <seq> x..`
            let line = String::from_utf8_lossy(&data[..LINE as usize]).into_owned();
            let mut parts = line.split_whitespace().skip(3);
            let file = parts.next().and_then(|f| f[1..].parse().ok());
            let seq = parts.next().and_then(|s| s.parse().ok());
            if let (Some(file), Some(seq)) = (file, seq) {
                out.push((file, seq, e.offset));
            }
            break;
        }
    }
    out
}

/// Whether line `seq` of `file` lay before the delivered offset of its generation
/// in a kill's resolved checkpoints.
fn acknowledged(
    checkpoints: &[(usize, u64, u64)],
    generations: &[Generation],
    file: usize,
    seq: u64,
) -> bool {
    let Some(generation) = generations
        .iter()
        .filter(|g| g.file == file && g.first_seq <= seq)
        .max_by_key(|g| g.first_seq)
    else {
        return false;
    };
    let offset = (seq - generation.first_seq) * LINE;
    checkpoints.iter().any(|&(f, first, delivered)| {
        f == file && first == generation.first_seq && delivered > offset
    })
}

fn read_prefix(path: &Path, len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0; len.min(FINGERPRINT_BYTES as usize)];
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    buf.truncate(n);
    Ok(buf)
}

/// Writes CRI lines `from..to` to `path`, each message `{"seq":n,...}`, all on
/// 2024-05-01 (one daily index).
fn write_seq_lines(path: &Path, from: usize, to: usize) {
    let mut text = String::new();
    for n in from..to {
        let ts = nagare_core::EventTime::new(1_714_564_800 + n as i64, 0).to_rfc3339();
        let _ = writeln!(
            text,
            "{ts} stdout F {{\"seq\":{n},\"msg\":\"order placed\"}}"
        );
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
}

/// Per `seq`, the event ids its copies in the NDJSON file carried (as many entries
/// as copies).
fn ids_by_seq(path: &Path) -> HashMap<u64, Vec<String>> {
    let mut ids: HashMap<u64, Vec<String>> = HashMap::new();
    for record in support::read_ndjson(path) {
        let seq = record["seq"].as_u64().expect("a seq");
        let id = record["line_id"].as_str().expect("an event id");
        ids.entry(seq).or_default().push(id.to_string());
    }
    ids
}

/// The forwarder reads lines, is killed with SIGKILL before its checkpoint passes
/// them (`checkpoint_interval: 1h`: only the write when the file was found, with its
/// first line, is on disk), logrotate's copytruncate runs while it is down
/// (`app.log` copied to `app.log.1`, then emptied, then written again), and after
/// the restart the lines are read again from the copy. They carry the ids they had, so the Elasticsearch
/// sink with `id_key` holds exactly one document per line.
#[test]
fn lines_read_again_from_a_copytruncate_copy_stay_one_document_each() {
    const BEFORE: usize = 3_000;
    const AFTER: usize = 1_000;
    let osmem = Osmem::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let port = free_port();
    let archive = dir.path().join("out/all.ndjson");
    let sinks = format!(
        "  es:\n    type: elasticsearch\n    match: \"**\"\n    endpoints: [\"{url}\"]\n    batch: {{ max_events: 1000, timeout: 100ms }}\n    id_key: line_id\n    remove_keys: [line_id]\n\
             \x20 archive:\n    type: file\n    match: \"**\"\n    path: {archive}\n    format: record\n",
        url = osmem.url(),
        archive = archive.display(),
    );
    let aggregator_config = forward_aggregator(&dir.path().join("agg-data"), port, &sinks);
    let mut aggregator = Nagare::listening("aggregator", dir.path(), &aggregator_config, port);
    let app = logs.join("app.log");
    // One line first: the write when the file is found happens soon after, not at
    // once, so the rest is written only once that write is on disk. Otherwise, on a
    // loaded machine, it could already hold the offsets of every line delivered.
    write_seq_lines(&app, 0, 1);
    let fwd_data = dir.path().join("fwd-data");
    let config = format!(
        "data_dir: {data}\n\
         sources:\n  app:\n    type: tail\n    paths: [\"{logs}/*.log\"]\n    format: cri\n    read_from_head: true\n    kubernetes_metadata: false\n    refresh_interval: 100ms\n    poll_interval: 50ms\n    checkpoint_interval: 1h\n    event_id_key: line_id\n\
         sinks:\n  aggregator:\n    type: forward\n    match: \"**\"\n    servers: [{{host: 127.0.0.1, port: {port}}}]\n",
        data = fwd_data.display(),
        logs = logs.display(),
    );
    let mut forwarder = Nagare::start("forwarder", dir.path(), &config);
    let store = fwd_data.join("tail/app/checkpoints");
    let found = wait_until(Duration::from_secs(30), || {
        forwarder.assert_running();
        std::fs::read(&store)
            .ok()
            .and_then(|bytes| checkpoint::decode(&bytes).ok())
            .is_some_and(|entries| entries.iter().any(|e| e.path == app))
    });
    assert!(
        found,
        "the file's entry never reached the checkpoints\n{}",
        forwarder.child.logs()
    );
    write_seq_lines(&app, 1, BEFORE);
    let read = wait_until(Duration::from_secs(60), || {
        forwarder.assert_running();
        count_lines(&archive) >= BEFORE as u64
    });
    assert!(
        read,
        "the first lines never arrived\n{}",
        forwarder.child.logs()
    );
    forwarder.child.kill();
    let entries = checkpoint::decode(&std::fs::read(&store).unwrap()).unwrap();
    let size = std::fs::metadata(&app).unwrap().len();
    let checkpointed = entries.iter().map(|e| e.offset).max().unwrap_or(0);
    assert!(
        checkpointed < size,
        "the lines must lie past the checkpoint on disk: {entries:?}"
    );
    // copytruncate, as logrotate does it, then the application writes on.
    std::fs::copy(&app, logs.join("app.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    write_seq_lines(&app, BEFORE, BEFORE + AFTER);

    let mut forwarder = Nagare::start("forwarder", dir.path(), &config);
    let all = wait_until(Duration::from_secs(60), || {
        forwarder.assert_running();
        ids_by_seq(&archive).len() == BEFORE + AFTER
    });
    assert!(all, "lines are missing\n{}", forwarder.child.logs());
    assert!(forwarder.terminate(Duration::from_secs(30)).success());
    // A stopped aggregator delivers what its buffers hold first.
    assert!(aggregator.terminate(Duration::from_secs(30)).success());

    let ids = ids_by_seq(&archive);
    let read_twice = ids.values().filter(|v| v.len() > 1).count();
    let two_ids: Vec<(&u64, BTreeSet<&String>)> = ids
        .iter()
        .map(|(seq, v)| (seq, v.iter().collect::<BTreeSet<_>>()))
        .filter(|(_, v)| v.len() > 1)
        .collect();
    let docs = osmem.documents("logstash-*");
    let mut per_seq: HashMap<u64, u32> = HashMap::new();
    for d in &docs {
        *per_seq
            .entry(d.source["seq"].as_u64().unwrap())
            .or_default() += 1;
    }
    let indexed_twice = per_seq.values().filter(|&&n| n > 1).count();
    println!(
        "copytruncate after SIGKILL: {} lines, {read_twice} read twice (checkpoint on disk at byte {checkpointed} of {size}); {} lines with two different ids; Elasticsearch: {} documents, {indexed_twice} lines indexed twice",
        BEFORE + AFTER,
        two_ids.len(),
        docs.len(),
    );
    assert!(read_twice > 0, "no line was read again: nothing was tested");
    assert!(
        two_ids.is_empty(),
        "{} lines read again with another id, e.g. {:?}",
        two_ids.len(),
        &two_ids[..two_ids.len().min(5)]
    );
    assert_eq!(
        per_seq.len(),
        BEFORE + AFTER,
        "every line is in Elasticsearch"
    );
    assert_eq!(docs.len(), BEFORE + AFTER, "one document per line");
}
