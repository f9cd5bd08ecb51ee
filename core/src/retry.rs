//! Exponential backoff with jitter, for every sink and client that retries.

use std::time::Duration;

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
}
