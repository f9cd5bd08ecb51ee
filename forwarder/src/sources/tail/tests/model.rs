//! Model-based test: random scripts of writes, partial writes, rename rotations,
//! copytruncates, deletions, recreations, graceful restarts and crashes are played
//! against the real tail source on real files, and what comes out is checked against
//! a model of which lines must: every line completed in a file the source had a
//! chance to see comes out at least once, nothing else comes out, without crashes
//! nothing comes out twice, and a line that comes out twice (read again after a
//! crash, from the file, from its rotated name or from a copytruncate copy) carries
//! the same event id each time.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Write(u8),
    PartialWrite,
    Rotate,
    CopyTruncate,
    Delete,
    Recreate,
    Restart,
    /// The next hop acknowledges what the source emitted so far (until then it
    /// lies past the checkpoint).
    Ack,
    /// The source is killed; with `true`, what it emitted was acknowledged first,
    /// with `false` what was not acknowledged yet never will be (chunks in
    /// flight), so it is read again after the restart.
    Crash(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..40).prop_map(Op::Write),
        2 => Just(Op::PartialWrite),
        2 => Just(Op::Rotate),
        2 => Just(Op::CopyTruncate),
        1 => Just(Op::Delete),
        1 => Just(Op::Recreate),
        1 => Just(Op::Restart),
        2 => Just(Op::Ack),
        1 => any::<bool>().prop_map(Op::Crash),
    ]
}

/// The writer's side of the model.
#[derive(Default)]
struct Model {
    next: u32,
    /// A line of which only the first half is written: its number and the rest.
    partial: Option<(u32, String)>,
    /// Lines that must come out.
    must: BTreeSet<String>,
    rotations: u32,
    exists: bool,
    /// Lines in the file now at the path.
    current: Vec<String>,
    /// Lines of deleted files: a crash before they were delivered loses them (no
    /// process can read a deleted file it did not hold open).
    deleted: Vec<String>,
    /// Lines that may come out but need not.
    may: BTreeSet<String>,
}

impl Model {
    fn line(n: u32) -> String {
        // Long enough that the fingerprint of each file differs quickly.
        format!("L{n:06} {}", "p".repeat((n % 7) as usize * 10))
    }
}

struct Run {
    tail: Option<Tail>,
    got: BTreeMap<String, usize>,
    /// The event ids each line came out with.
    ids: BTreeMap<String, BTreeSet<String>>,
    /// Chunks taken from the buffer and not acknowledged yet: their lines lie
    /// past the checkpoint.
    held: Vec<Lease>,
    /// Chunks a crashed source had handed out, never acknowledged: kept until
    /// the end so that dropping them neither hands them back nor fires their
    /// receipts (as after a kill, nothing of that process acts again).
    dead: Vec<Lease>,
}

impl Run {
    fn tail(&self) -> &Tail {
        self.tail.as_ref().expect("running")
    }

    fn record(&mut self, got: &[Got]) {
        for g in got {
            let line = g.str("log").unwrap().to_string();
            let id = g.str("line_id").expect("an event id").to_string();
            self.ids.entry(line.clone()).or_default().insert(id);
            *self.got.entry(line).or_default() += 1;
        }
    }

    /// Takes what the source emitted and acknowledges everything taken.
    fn drain(&mut self) {
        self.take();
        for lease in self.held.drain(..) {
            lease.delivered();
        }
    }

    /// Takes what the source emitted so far, recorded but not acknowledged.
    fn take(&mut self) {
        while let Some(lease) = self.tail().buffer.try_pop() {
            self.record(&decode(lease.chunk()));
            self.held.push(lease);
        }
    }

    /// Waits until the source follows the file now at `path` (it has seen it, so
    /// what is written to it can no longer be lost).
    async fn wait_followed(&mut self, path: &Path) {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        for _ in 0..300 {
            self.take();
            let m = self.tail().metrics.snapshot();
            if m.files
                .iter()
                .any(|f| f.inode == meta.ino() && f.path == path)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the source never followed {}", path.display());
    }
}

async fn play(ops: Vec<Op>) {
    let dir = Tail::dir();
    let path = dir.path().join("app.log");
    let mut config = raw_config(dir.path());
    config.rotate_wait = HumanDuration::millis(30);
    config.event_id_key = Some("line_id".into());
    let mut model = Model::default();
    let mut run = Run {
        tail: Some(Tail::start(dir, config)),
        got: BTreeMap::new(),
        ids: BTreeMap::new(),
        held: Vec::new(),
        dead: Vec::new(),
    };
    let crashes = ops.iter().filter(|o| matches!(o, Op::Crash(_))).count();
    let complete_partial = |model: &mut Model| {
        if let Some((n, rest)) = model.partial.take() {
            append(&path, format!("{rest}\n").as_bytes());
            model.must.insert(Model::line(n));
        }
    };
    for op in &ops {
        match op {
            Op::Write(k) => {
                let mut text = String::new();
                if let Some((n, rest)) = model.partial.take() {
                    text.push_str(&rest);
                    text.push('\n');
                    model.must.insert(Model::line(n));
                }
                for _ in 0..*k {
                    let line = Model::line(model.next);
                    model.next += 1;
                    text.push_str(&line);
                    text.push('\n');
                    model.current.push(line.clone());
                    model.must.insert(line);
                }
                append(&path, text.as_bytes());
                model.exists = true;
            }
            Op::PartialWrite if model.partial.is_none() => {
                // Half a line: the rest and its newline come with the next write.
                let n = model.next;
                model.next += 1;
                let line = Model::line(n);
                let (head, rest) = line.split_at(line.len() / 2);
                append(&path, head.as_bytes());
                model.partial = Some((n, rest.to_string()));
                model.current.push(line);
                model.exists = true;
            }
            Op::Rotate | Op::CopyTruncate | Op::Delete if model.exists => {
                complete_partial(&mut model);
                run.wait_followed(&path).await;
                model.rotations += 1;
                let rotated = path.with_file_name(format!("app.log.{}", model.rotations));
                match op {
                    Op::Rotate => {
                        std::fs::rename(&path, &rotated).unwrap();
                        model.exists = false;
                    }
                    Op::CopyTruncate => {
                        copytruncate(&path, &rotated);
                    }
                    _ => {
                        std::fs::remove_file(&path).unwrap();
                        model.deleted.append(&mut model.current);
                        model.exists = false;
                    }
                }
                model.current.clear();
            }
            Op::Recreate => {
                complete_partial(&mut model);
                if model.exists {
                    run.wait_followed(&path).await;
                    std::fs::remove_file(&path).unwrap();
                    model.deleted.append(&mut model.current);
                }
                let line = Model::line(model.next);
                model.next += 1;
                append(&path, format!("{line}\n").as_bytes());
                model.current.push(line.clone());
                model.must.insert(line);
                model.exists = true;
            }
            Op::Ack => run.drain(),
            Op::Restart => {
                run.drain();
                let (got, tail) = run.tail.take().unwrap().restart().await;
                run.record(&got);
                run.tail = Some(tail);
            }
            Op::Crash(ack) => {
                if *ack {
                    run.drain();
                } else {
                    run.take();
                    let in_flight = std::mem::take(&mut run.held);
                    run.dead.extend(in_flight);
                }
                for line in model.deleted.drain(..) {
                    if !run.got.contains_key(&line) && model.must.remove(&line) {
                        model.may.insert(line);
                    }
                }
                let stopped = run.tail.take().unwrap().crash().await;
                tokio::time::sleep(Duration::from_millis(30)).await;
                run.tail = Some(stopped.start());
            }
            _ => {}
        }
        run.take();
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    // Everything that must come out does.
    for _ in 0..1000 {
        run.drain();
        if model.must.iter().all(|l| run.got.contains_key(l)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    run.drain();
    let tail = run.tail.take().unwrap();
    let got = tail.stop().await;
    run.record(&got);
    let missing: Vec<&String> = model
        .must
        .iter()
        .filter(|l| !run.got.contains_key(*l))
        .collect();
    assert!(missing.is_empty(), "lines lost: {missing:?}\nops: {ops:?}");
    let unexpected: Vec<&String> = run
        .got
        .keys()
        .filter(|l| !model.must.contains(*l) && !model.may.contains(*l))
        .collect();
    assert!(
        unexpected.is_empty(),
        "lines that were never written whole: {unexpected:?}\nops: {ops:?}"
    );
    if crashes == 0 {
        let dups: Vec<(&String, &usize)> = run.got.iter().filter(|(_, c)| **c > 1).collect();
        assert!(
            dups.is_empty(),
            "duplicates without a crash: {dups:?}\nops: {ops:?}"
        );
    }
    let two_ids: Vec<(&String, &BTreeSet<String>)> =
        run.ids.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        two_ids.is_empty(),
        "{} lines came out with two different ids: {two_ids:?}\nops: {ops:?}",
        two_ids.len()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn the_tailer_follows_the_model(ops in proptest::collection::vec(op(), 1..14)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(play(ops));
    }
}
