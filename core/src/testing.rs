//! Builders the tests of every nagare crate share: chunks of records (and one with an
//! entry that cannot be decoded), the numbers back out of a chunk, a chunk taken off a
//! buffer, the contexts a source or a sink runs in, the deterministic numbers of the
//! fuzz smoke runs, and the openssl command line that makes keys as users have them. Compiled for core's own tests,
//! and for other crates' tests with the `test-support` feature (their dev-dependency
//! on nagare-core turns it on); never in a release build.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::buffer::Buffer;
use crate::chunk::{Chunk, ChunkBuilder};
use crate::component::{SinkContext, SourceContext};
use crate::event::Tag;
use crate::receipt::{Delivery, Receipt};
use crate::router::Router;
use crate::shutdown::Shutdown;
use crate::time::EventTime;
use crate::value::{Map, Value};

/// A chunk of `events` under `tag`; panics when there are none.
pub fn chunk_of(tag: &str, events: impl IntoIterator<Item = (EventTime, Map)>) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new(tag));
    for (time, record) in events {
        b.push(time, &record);
    }
    b.finish().expect("a test chunk has events")
}

/// An entry that cannot be decoded, `[1, "x"]` (its record is not a map), as a
/// misbehaving client could send: it is framed, so the entries after it can be.
pub const UNDECODABLE_ENTRY: [u8; 4] = [0x92, 0x01, 0xa1, b'x'];

/// A chunk of `events` under `tag` with [`UNDECODABLE_ENTRY`] inserted before the
/// event at `at` (so at entry position `at`); panics when there are no events.
pub fn chunk_with_undecodable(
    tag: &str,
    events: impl IntoIterator<Item = (EventTime, Map)>,
    at: usize,
) -> Chunk {
    let mut b = ChunkBuilder::new(Tag::new(tag));
    for (i, (time, record)) in events.into_iter().enumerate() {
        if i == at {
            b.push_encoded(&UNDECODABLE_ENTRY);
        }
        b.push(time, &record);
    }
    b.finish().expect("a test chunk has events")
}

/// `chunk` with a receipt, and the receiver that learns how it was delivered.
pub fn with_receipt(chunk: Chunk) -> (Chunk, tokio::sync::oneshot::Receiver<Delivery>) {
    let (receipt, delivered) = Receipt::channel();
    (chunk.with_receipt(receipt), delivered)
}

/// The `n` field of each event of `chunk`, in order; panics on an event without one.
pub fn numbers(chunk: &Chunk) -> Vec<i64> {
    chunk
        .events()
        .map(|e| {
            let (_, record) = e.expect("a chunk of well-formed events");
            record
                .get("n")
                .and_then(Value::as_i64)
                .expect("every event has a number `n`")
        })
        .collect()
}

/// Takes the next chunk off `buffer` within `timeout` and acknowledges it; panics when
/// none comes (a lease dropped unacknowledged would go back to the front).
pub async fn take(buffer: &Buffer, timeout: Duration) -> Chunk {
    let lease = tokio::time::timeout(timeout, buffer.pop())
        .await
        .unwrap_or_else(|_| panic!("no chunk within {timeout:?}"))
        .expect("the buffer is open");
    let chunk = lease.chunk().clone();
    lease.delivered();
    chunk
}

/// What source `name` runs with: `router`, and a shutdown the test cancels to stop it.
pub fn source_context(name: &str, router: Router, data_dir: &Path) -> (SourceContext, Shutdown) {
    let shutdown = Shutdown::new();
    let ctx = SourceContext {
        name: name.into(),
        router: Arc::new(router),
        shutdown: shutdown.clone(),
        data_dir: data_dir.to_path_buf(),
        metrics: crate::metrics::ComponentMetrics::detached(name),
    };
    (ctx, shutdown)
}

/// What sink `name` runs with: `buffer` as its input, and the abort the test cancels
/// to make it return at once.
pub fn sink_context(name: &str, buffer: &Buffer, data_dir: &Path) -> (SinkContext, Shutdown) {
    let abort = Shutdown::new();
    let ctx = SinkContext {
        name: name.into(),
        buffer: buffer.clone(),
        abort: abort.clone(),
        data_dir: data_dir.to_path_buf(),
        metrics: crate::metrics::ComponentMetrics::detached(name),
    };
    (ctx, abort)
}

/// Runs the openssl command line in `dir` with `args` (split at spaces); panics with
/// its output if it fails.
pub fn openssl(dir: &Path, args: &str) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args.split(' '))
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}); scripts/test installs it"));
    assert!(
        out.status.success(),
        "openssl {args} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// xorshift64*: a small, fast, deterministic source of numbers for the fuzz smoke
/// runs, so that a seed gives the same inputs on every machine.
#[derive(Debug)]
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Closes `buffer`, waits at most `within` for the sink `task` that drains it to
/// return without an error, and checks that nothing is left queued or in flight.
pub async fn close_and_drain<E: std::fmt::Debug>(
    buffer: &Buffer,
    task: tokio::task::JoinHandle<Result<(), E>>,
    within: Duration,
) {
    buffer.close();
    tokio::time::timeout(within, task)
        .await
        .expect("the sink returns once its buffer is closed and drained")
        .expect("the sink's task does not panic")
        .expect("the sink stops without an error");
    let stats = buffer.stats();
    assert_eq!(
        (stats.queued_chunks, stats.in_flight_chunks),
        (0, 0),
        "every chunk was acknowledged: {stats:?}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::BufferConfig;
    use crate::pattern::TagPattern;
    use crate::router::RouterBuilder;

    fn numbered(n: i64) -> (EventTime, Map) {
        let mut m = Map::new();
        m.insert("n", n);
        (EventTime::new(n, 0), m)
    }

    #[tokio::test]
    async fn a_chunk_goes_through_a_context_and_back() {
        let buffer = Buffer::new("out", &BufferConfig::default());
        let mut routes = RouterBuilder::new();
        routes.sink("out", TagPattern::new("**").unwrap(), buffer.clone());
        let (source, shutdown) = source_context("in", routes.build(), Path::new("/d"));
        assert_eq!(
            (source.name.as_str(), source.data_dir.as_path()),
            ("in", Path::new("/d"))
        );
        shutdown.cancel();
        assert!(source.shutdown.is_cancelled());

        let (chunk, delivered) = with_receipt(chunk_of("t", (0..3).map(numbered)));
        buffer.push(chunk).await.unwrap();
        let (sink, _abort) = sink_context("out", &buffer, Path::new("/d"));
        let taken = take(&sink.buffer, Duration::from_secs(5)).await;
        assert_eq!(
            (taken.tag().as_str(), numbers(&taken)),
            ("t", vec![0, 1, 2])
        );
        drop(taken);
        assert!(matches!(delivered.await, Ok(Delivery::Delivered)));
    }
}
