//! A gate for log lines that would repeat: one a period gets through, across a
//! sink's workers, with how many it held back.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Lets a log line through at most once a period, across a sink's workers, and
/// counts the ones it held back.
#[derive(Debug, Default)]
pub(super) struct LogGate {
    /// When it last opened, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogGate {
    /// `Some(held back since the last)` if a line may be logged now.
    pub(super) fn open(&self, every: Duration) -> Option<u64> {
        self.open_at(Instant::now(), every)
    }

    fn open_at(&self, now: Instant, every: Duration) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match state.0 {
            Some(last) if now.duration_since(last) < every => {
                state.1 += 1;
                None
            }
            _ => {
                let held = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_a_period_and_counts_what_it_held() {
        let gate = LogGate::default();
        let every = Duration::from_secs(60);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(gate.open_at(at(0), every), Some(0));
        assert_eq!(gate.open_at(at(1), every), None);
        assert_eq!(gate.open_at(at(30), every), None);
        assert_eq!(gate.open_at(at(61), every), Some(2));
        assert_eq!(gate.open_at(at(62), every), None);
    }
}
