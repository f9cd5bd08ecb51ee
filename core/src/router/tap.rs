//! Taps: copies of the events that pass a point of the router, for `nagare tap`
//! ("what does my record look like here?").
//!
//! A tap names a tag pattern and a point: as the source emits them (before the
//! filters), after the filters, or on their way into one sink's buffer. The
//! pipeline hands each matching chunk's entries (a reference-counted copy, no
//! decoding) to the tap's bounded queue without waiting: when the queue is full the
//! copy is dropped and counted, so a slow tap reader never slows the pipeline.
//! With no tap open the cost is one atomic load per chunk.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::event::Tag;
use crate::pattern::TagPattern;

/// Where a tap copies events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapPoint {
    /// As the sources emit them, before the filters.
    Source,
    /// After the filters, on their way to every matching sink.
    AfterFilters,
    /// On their way into the buffer of the named sink.
    Sink(String),
}

/// The events of one chunk that passed a tap's point.
#[derive(Debug, Clone)]
pub struct TapCopy {
    /// Their tag.
    pub tag: Tag,
    /// The chunk's MessagePack `[time, record]` entries.
    pub entries: Bytes,
    /// How many.
    pub count: u32,
}

struct TapEntry {
    pattern: TagPattern,
    point: TapPoint,
    tx: mpsc::Sender<TapCopy>,
    dropped: AtomicU64,
}

/// The taps open on a router, shared by every handle of it and kept across
/// reloads.
#[derive(Default)]
pub struct Taps {
    open: AtomicUsize,
    entries: Mutex<Vec<Arc<TapEntry>>>,
    /// Events dropped because a tap's queue was full, over every tap.
    dropped: AtomicU64,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taps")
            .field("open", &self.open.load(Ordering::Relaxed))
            .finish()
    }
}

/// An open tap: the copies arrive on [`recv`](Tap::recv); dropping it closes the
/// tap.
pub struct Tap {
    rx: mpsc::Receiver<TapCopy>,
    entry: Arc<TapEntry>,
    taps: Arc<Taps>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("pattern", &self.entry.pattern.as_str())
            .field("point", &self.entry.point)
            .finish()
    }
}

impl Tap {
    /// The next copy; `None` once the router is gone.
    pub async fn recv(&mut self) -> Option<TapCopy> {
        self.rx.recv().await
    }

    /// Events this tap dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.entry.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        let mut entries = self.taps.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|e| !Arc::ptr_eq(e, &self.entry));
        self.taps.open.store(entries.len(), Ordering::Release);
    }
}

impl Taps {
    /// Opens a tap on events whose tag matches `pattern` at `point`, queueing at
    /// most `capacity` chunks.
    pub fn open(self: &Arc<Self>, pattern: TagPattern, point: TapPoint, capacity: usize) -> Tap {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let entry = Arc::new(TapEntry {
            pattern,
            point,
            tx,
            dropped: AtomicU64::new(0),
        });
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.push(entry.clone());
        self.open.store(entries.len(), Ordering::Release);
        Tap {
            rx,
            entry,
            taps: self.clone(),
        }
    }

    /// Whether any tap is open: the pipeline's only cost when none is.
    pub fn any(&self) -> bool {
        self.open.load(Ordering::Acquire) > 0
    }

    /// Taps open now.
    pub fn open_count(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Events dropped because a tap's queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Copies `count` events of `tag` (`entries`) to the taps at a point `at` says
    /// is theirs.
    pub(super) fn copy(
        &self,
        at: impl Fn(&TapPoint) -> bool,
        tag: &Tag,
        entries: &Bytes,
        count: u32,
    ) {
        if !self.any() || count == 0 {
            return;
        }
        let taps = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for tap in taps {
            if !at(&tap.point) || !tap.pattern.matches(tag) {
                continue;
            }
            let copy = TapCopy {
                tag: tag.clone(),
                entries: entries.clone(),
                count,
            };
            if tap.tx.try_send(copy).is_err() {
                tap.dropped.fetch_add(u64::from(count), Ordering::Relaxed);
                self.dropped.fetch_add(u64::from(count), Ordering::Relaxed);
            }
        }
    }
}
