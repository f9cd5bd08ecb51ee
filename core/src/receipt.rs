//! Receipts: how a source learns that what it emitted was delivered.
//!
//! A source that must not lose data (the tailer, whose checkpoint may advance only
//! after the next hop confirmed its lines) attaches a [`Receipt`] to the chunk it
//! emits. Every copy of the chunk (one per matching sink) holds a clone. When the last
//! clone is dropped, the receipt's callback runs once with the outcome: `Delivered`
//! unless some holder marked it otherwise. A sink drops its copy after the destination
//! confirmed it; a buffer that discards a chunk (overflow policy) marks it `Dropped`
//! first; a sink that gives up marks it `Failed`.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

/// What finally happened to a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Delivery {
    /// Every holder confirmed it.
    Delivered = 0,
    /// A buffer discarded it under its overflow policy.
    Dropped = 1,
    /// A sink gave up on it (retries exhausted or rejected); it went to the
    /// dead-letter output if one was configured.
    Failed = 2,
    /// The buffer holding it went away (the process stopped before the chunk was
    /// confirmed): it was not delivered, and a source that can should send it again.
    Abandoned = 3,
}

type Callback = Box<dyn FnOnce(Delivery) + Send>;

struct Inner {
    status: AtomicU8,
    callback: Mutex<Option<Callback>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let status = match self.status.load(Ordering::Acquire) {
            0 => Delivery::Delivered,
            1 => Delivery::Dropped,
            2 => Delivery::Failed,
            _ => Delivery::Abandoned,
        };
        let cb = self
            .callback
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|poisoned| poisoned.into_inner().take());
        if let Some(cb) = cb {
            cb(status);
        }
    }
}

/// A shared token that reports the outcome of a chunk once its last copy is gone.
#[derive(Clone)]
pub struct Receipt(Arc<Inner>);

impl Receipt {
    /// A receipt that calls `on_done` with the outcome.
    pub fn new(on_done: impl FnOnce(Delivery) + Send + 'static) -> Self {
        Receipt(Arc::new(Inner {
            status: AtomicU8::new(Delivery::Delivered as u8),
            callback: Mutex::new(Some(Box::new(on_done))),
        }))
    }

    /// A receipt and a future that resolves with its outcome.
    pub fn channel() -> (Self, tokio::sync::oneshot::Receiver<Delivery>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let r = Receipt::new(move |d| {
            let _ = tx.send(d);
        });
        (r, rx)
    }

    /// Records a worse outcome than the current one (`Abandoned` beats `Failed` beats
    /// `Dropped` beats `Delivered`).
    pub fn mark(&self, outcome: Delivery) {
        self.0.status.fetch_max(outcome as u8, Ordering::AcqRel);
    }
}

impl fmt::Debug for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receipt")
            .field("status", &self.0.status.load(Ordering::Relaxed))
            .field("holders", &Arc::strong_count(&self.0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_when_last_copy_drops() {
        let (r, mut rx) = Receipt::channel();
        let copy = r.clone();
        drop(r);
        assert!(rx.try_recv().is_err(), "still held by a copy");
        drop(copy);
        assert_eq!(rx.try_recv().unwrap(), Delivery::Delivered);
    }

    #[test]
    fn worst_outcome_wins() {
        let (r, mut rx) = Receipt::channel();
        let copy = r.clone();
        copy.mark(Delivery::Failed);
        r.mark(Delivery::Dropped);
        drop((r, copy));
        assert_eq!(rx.try_recv().unwrap(), Delivery::Failed);
    }
}
