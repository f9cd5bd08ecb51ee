//! Retries: exponential backoff with jitter, and the retry policy every sink applies
//! the same way (Fluentd's `retry_*` buffer parameters).
//!
//! A sink that fails to deliver something (a request, a chunk) keeps an [`Attempts`]
//! for it and asks its [`Retrier`] what to do after each failure: wait and try again,
//! or give up (the sink then hands the chunk to its dead-letter output). Two clocks
//! decide when to give up under `retry_timeout`: how long this piece has been failing,
//! and how long the whole sink has been failing without a single success. The second
//! one makes a long outage behave as in Fluentd: once the destination has been down
//! for `retry_timeout`, every chunk that fails goes to the dead-letter output at once instead
//! of starting a fresh timeout of its own; one success resets it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Growth per attempt.
    pub multiplier: f64,
    /// Fraction of each wait that is randomized (0 to 1), so that many clients that
    /// failed together do not retry together.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.25,
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        let capped = base.min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = 1.0 - jitter + rand::random::<f64>() * 2.0 * jitter;
        Duration::from_secs_f64((capped * factor).min(self.max.as_secs_f64()).max(0.0))
    }
}

/// When a sink stops retrying. Both limits unset means retrying forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryLimit {
    /// Give up once failing for this long (`retry_timeout`).
    pub timeout: Option<Duration>,
    /// Give up after this many retries (`retry_max_times`).
    pub max_times: Option<u32>,
}

impl RetryLimit {
    /// Never give up (`retry_forever`).
    pub const FOREVER: RetryLimit = RetryLimit {
        timeout: None,
        max_times: None,
    };
}

/// How a sink retries: the waits and the limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The waits between attempts (a multiplier of 1 is Fluentd's `periodic`).
    pub backoff: Backoff,
    /// When to give up.
    pub limit: RetryLimit,
}

impl Default for RetryPolicy {
    /// Fluentd's defaults: exponential from 1 s with jitter, at most 60 s apart, for
    /// up to 72 hours.
    fn default() -> Self {
        Self {
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(60),
                multiplier: 2.0,
                jitter: 0.125,
            },
            limit: RetryLimit {
                timeout: Some(Duration::from_secs(72 * 3600)),
                max_times: None,
            },
        }
    }
}

/// What to do after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Wait this long, then try again.
    RetryIn(Duration),
    /// Stop: send it to the dead-letter output.
    GiveUp {
        /// Failures so far, this one included.
        failures: u32,
        /// How long it has been failing.
        failing_for: Duration,
    },
}

/// The failures of one thing being delivered (a request, a chunk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    failures: u32,
    first_failure: Option<Instant>,
}

impl Attempts {
    /// No failure yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// A sink's retry policy and its sink-wide clock. Cloning gives another handle to the
/// same clock (one per flush worker).
#[derive(Debug, Clone)]
pub struct Retrier {
    policy: RetryPolicy,
    /// When the sink started failing, if it has not succeeded since.
    failing_since: Arc<Mutex<Option<Instant>>>,
}

impl Retrier {
    /// A retrier applying `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            failing_since: Arc::new(Mutex::new(None)),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Something was delivered: the sink is healthy again.
    pub fn succeeded(&self) {
        *self.failing_since.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records a failure of `attempts` and says what to do next.
    pub fn failed(&self, attempts: &mut Attempts) -> Next {
        self.failed_at(attempts, Instant::now())
    }

    fn failed_at(&self, attempts: &mut Attempts, now: Instant) -> Next {
        let sink_since = *self
            .failing_since
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(now);
        let first = *attempts.first_failure.get_or_insert(now);
        attempts.failures = attempts.failures.saturating_add(1);
        let since = first.min(sink_since);
        let failing_for = now.saturating_duration_since(since);
        let limit = self.policy.limit;
        let too_many = limit.max_times.is_some_and(|max| attempts.failures > max);
        let too_long = limit.timeout.is_some_and(|t| failing_for >= t);
        if too_many || too_long {
            return Next::GiveUp {
                failures: attempts.failures,
                failing_for,
            };
        }
        let mut delay = self.policy.backoff.delay(attempts.failures - 1);
        if let Some(t) = limit.timeout {
            // The last attempt happens when the timeout runs out, not a whole wait
            // after it.
            delay = delay.min(t.saturating_sub(failing_for));
        }
        Next::RetryIn(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_within_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
            multiplier: 2.0,
            jitter: 0.25,
        };
        for _ in 0..100 {
            let d0 = b.delay(0).as_secs_f64();
            assert!((0.075..=0.125).contains(&d0), "{d0}");
            let d3 = b.delay(3).as_secs_f64();
            assert!((0.6..=1.0).contains(&d3), "{d3}");
            assert!(b.delay(40) <= Duration::from_secs(2));
        }
    }

    fn policy(timeout: Option<u64>, max_times: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(8),
                multiplier: 2.0,
                jitter: 0.0,
            },
            limit: RetryLimit {
                timeout: timeout.map(Duration::from_secs),
                max_times,
            },
        }
    }

    #[test]
    fn max_times_counts_retries() {
        let r = Retrier::new(policy(None, Some(2)));
        let mut a = Attempts::new();
        let t0 = Instant::now();
        assert_eq!(
            r.failed_at(&mut a, t0),
            Next::RetryIn(Duration::from_secs(1))
        );
        assert_eq!(
            r.failed_at(&mut a, t0),
            Next::RetryIn(Duration::from_secs(2))
        );
        assert!(matches!(
            r.failed_at(&mut a, t0),
            Next::GiveUp { failures: 3, .. }
        ));
    }

    #[test]
    fn timeout_cuts_the_last_wait_and_then_gives_up() {
        let r = Retrier::new(policy(Some(10), None));
        let mut a = Attempts::new();
        let t0 = Instant::now();
        assert_eq!(
            r.failed_at(&mut a, t0),
            Next::RetryIn(Duration::from_secs(1))
        );
        // 8 s in, the next wait (2 s) would end at 10 s exactly; at 9 s it is cut.
        assert_eq!(
            r.failed_at(&mut a, t0 + Duration::from_secs(9)),
            Next::RetryIn(Duration::from_secs(1))
        );
        assert_eq!(
            r.failed_at(&mut a, t0 + Duration::from_secs(10)),
            Next::GiveUp {
                failures: 3,
                failing_for: Duration::from_secs(10)
            }
        );
    }

    #[test]
    fn a_long_outage_gives_up_on_the_next_chunk_at_once_until_a_success() {
        let r = Retrier::new(policy(Some(10), None));
        let t0 = Instant::now();
        let mut first = Attempts::new();
        r.failed_at(&mut first, t0);
        assert!(matches!(
            r.failed_at(&mut first, t0 + Duration::from_secs(10)),
            Next::GiveUp { .. }
        ));
        // The next chunk fails for the first time: the sink has been failing for
        // 11 s, so it goes to the dead-letter output without waiting another timeout.
        let mut second = Attempts::new();
        assert!(matches!(
            r.failed_at(&mut second, t0 + Duration::from_secs(11)),
            Next::GiveUp { failures: 1, .. }
        ));
        // Once something gets through, a new failure starts a new clock.
        r.succeeded();
        let mut third = Attempts::new();
        assert!(matches!(
            r.failed_at(&mut third, t0 + Duration::from_secs(12)),
            Next::RetryIn(_)
        ));
    }

    #[test]
    fn forever_never_gives_up() {
        let r = Retrier::new(RetryPolicy {
            limit: RetryLimit::FOREVER,
            ..policy(None, None)
        });
        let mut a = Attempts::new();
        let t0 = Instant::now();
        for i in 0..100 {
            match r.failed_at(&mut a, t0 + Duration::from_secs(i * 3600)) {
                Next::RetryIn(d) => assert!(d <= Duration::from_secs(8)),
                other => panic!("gave up: {other:?}"),
            }
        }
    }
}
