//! Rows that came twice and wait for another worker's append: which streams hold
//! them and since when, so that an append abandoned by its worker does not hold
//! them forever.
//!
//! A worker's append whose answer was lost goes again with the next send of its
//! table's rows. When none comes (its driver gave up on those rows under
//! `retry_timeout` / `retry_max_times`, and it gets no more rows of that table), the
//! append stays unanswered, and the other copy of its rows, at another worker,
//! would wait until shutdown, or until that worker gives up on them in turn. Once
//! a stream has held rows of a worker for [`MAX_CLAIM_WAIT`], that worker finalizes
//! the stream itself, as a restart would: its length says whether the append landed
//! (its rows are delivered) or not (they are free, and this worker appends them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long rows wait for another worker's append not answered yet before this
/// worker finalizes that worker's stream. An append that is answered at all is
/// answered within the request timeout; one waited on this long was given up on.
pub const MAX_CLAIM_WAIT: Duration = Duration::from_secs(60);

/// The streams whose appends hold rows a worker waits for.
#[derive(Debug, Default)]
pub struct Waits {
    /// Per table, since when each stream has held rows of this worker.
    since: HashMap<String, HashMap<u32, Instant>>,
    /// The streams that hold rows of the current send, with how many.
    current: HashMap<u32, usize>,
}

/// A stream that has held rows long enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    /// The stream's id in the journal.
    pub sid: u32,
    /// How long the rows have waited.
    pub waited: Duration,
    /// How many rows of the current send it holds.
    pub rows: usize,
}

impl Waits {
    /// A send starts: none of its rows waits yet.
    pub fn begin(&mut self) {
        self.current.clear();
    }

    /// A row of the current send is held by stream `sid`.
    pub fn held_by(&mut self, sid: u32) {
        *self.current.entry(sid).or_default() += 1;
    }

    /// How many rows of the current send wait.
    pub fn rows(&self) -> usize {
        self.current.values().sum()
    }

    /// The send of `table`'s rows is planned: the streams that no longer hold any
    /// of its rows are forgotten, and those that have held some for `max` or longer
    /// are returned.
    pub fn overdue(&mut self, table: &str, max: Duration) -> Vec<Overdue> {
        let now = Instant::now();
        let since = self.since.entry(table.to_string()).or_default();
        since.retain(|sid, _| self.current.contains_key(sid));
        for sid in self.current.keys() {
            since.entry(*sid).or_insert(now);
        }
        let overdue = since
            .iter()
            .map(|(&sid, &from)| Overdue {
                sid,
                waited: now.duration_since(from),
                rows: self.current.get(&sid).copied().unwrap_or(0),
            })
            .filter(|o| o.waited >= max)
            .collect();
        if since.is_empty() {
            self.since.remove(table);
        }
        overdue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_overdue_once_it_has_held_rows_of_every_send_for_the_bound() {
        let mut w = Waits::default();
        let t = "projects/p/datasets/d/tables/t";
        w.begin();
        w.held_by(7);
        w.held_by(7);
        assert_eq!(w.rows(), 2);
        assert!(w.overdue(t, Duration::from_millis(50)).is_empty());
        std::thread::sleep(Duration::from_millis(60));
        w.begin();
        w.held_by(7);
        let overdue = w.overdue(t, Duration::from_millis(50));
        assert_eq!(overdue.len(), 1);
        assert_eq!((overdue[0].sid, overdue[0].rows), (7, 1));
        assert!(overdue[0].waited >= Duration::from_millis(50));
        // A send where the stream holds nothing any more: the clock starts again.
        w.begin();
        assert!(w.overdue(t, Duration::ZERO).is_empty());
        w.begin();
        w.held_by(7);
        assert!(w.overdue(t, Duration::from_millis(50)).is_empty());
        // Another table's sends leave this one's clock alone.
        w.begin();
        assert!(
            w.overdue("projects/p/datasets/d/tables/other", Duration::ZERO)
                .is_empty()
        );
        std::thread::sleep(Duration::from_millis(60));
        w.begin();
        w.held_by(7);
        assert_eq!(w.overdue(t, Duration::from_millis(50)).len(), 1);
    }
}
