//! The failure detector: phi accrual over heartbeat arrivals, per server.
//!
//! Each heartbeat that arrives records the time since the previous one. From the last
//! [`WINDOW`] intervals the detector keeps a mean and a standard deviation, and at any
//! moment it can say how suspicious the current silence is:
//!
//! ```text
//! phi(now) = -log10( P(a heartbeat comes later than now - last) )
//! ```
//!
//! with the intervals taken as normally distributed (the logistic approximation of
//! the normal CDF, as in Hayashibara et al. and Akka). phi 1 means a 10 % chance that
//! the server is still fine, phi 16 (the default threshold) one in 10^16. The standard
//! deviation is never taken below a quarter of the heartbeat interval, and one whole
//! interval is added to the mean (one missed heartbeat is an acceptable pause, as in
//! Akka), so a very regular history does not turn one late heartbeat, or a machine
//! that stalls for a moment, into a failure. With heartbeats every second, a server
//! that stops answering is marked down after about 3.5 seconds.
//!
//! A server is marked down when phi passes the threshold, when no heartbeat came for
//! `hard_timeout`, or at once when sending to it fails. It is marked up again once
//! heartbeats have arrived steadily for `recover_wait` since the first one after the
//! failure.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Intervals kept for the mean and deviation.
pub const WINDOW: usize = 100;

/// The detector's settings.
#[derive(Debug, Clone, Copy)]
pub struct DetectorConfig {
    /// Expected time between heartbeats.
    pub interval: Duration,
    /// Use phi (otherwise only the hard timeout).
    pub use_phi: bool,
    /// phi above which the server is down.
    pub phi_threshold: f64,
    /// Silence after which the server is down whatever phi says.
    pub hard_timeout: Duration,
    /// Steady heartbeats needed to come back up.
    pub recover_wait: Duration,
}

/// What a check or a heartbeat changed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transition {
    /// Nothing.
    None,
    /// The server was just marked down, with the phi that did it (infinite for the
    /// hard timeout).
    Down(f64),
    /// The server was just marked up again.
    Up,
}

/// One server's detector.
#[derive(Debug, Clone)]
pub struct FailureDetector {
    config: DetectorConfig,
    intervals: VecDeque<f64>,
    last: Instant,
    available: bool,
    /// While down: when the current run of steady heartbeats started.
    recovering_since: Option<Instant>,
}

impl FailureDetector {
    /// A detector that starts with the server up, as if a heartbeat had just come.
    pub fn new(config: DetectorConfig, now: Instant) -> Self {
        let mut intervals = VecDeque::with_capacity(WINDOW);
        intervals.push_back(config.interval.as_secs_f64());
        Self {
            config,
            intervals,
            last: now,
            available: true,
            recovering_since: None,
        }
    }

    /// Whether the server may be sent to.
    pub fn is_available(&self) -> bool {
        self.available
    }

    /// Time since the last heartbeat.
    pub fn silence(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last)
    }

    /// A heartbeat arrived (a probe was answered, a connection opened, an ack came).
    pub fn heartbeat(&mut self, now: Instant) -> Transition {
        let gap = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        if self.intervals.len() == WINDOW {
            self.intervals.pop_front();
        }
        self.intervals.push_back(gap);
        if self.available {
            return Transition::None;
        }
        let since = *self.recovering_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.config.recover_wait {
            self.available = true;
            self.recovering_since = None;
            Transition::Up
        } else {
            Transition::None
        }
    }

    /// Checks the silence so far; marks the server down when it is too suspicious.
    pub fn check(&mut self, now: Instant) -> Transition {
        let silence = now.saturating_duration_since(self.last);
        let phi = self.phi(now);
        let hard = silence > self.config.hard_timeout;
        let suspicious = hard || (self.config.use_phi && phi > self.config.phi_threshold);
        if !suspicious {
            return Transition::None;
        }
        // A recovering server that goes quiet again starts its recovery over.
        self.recovering_since = None;
        if self.available {
            self.fail();
            Transition::Down(if hard { f64::INFINITY } else { phi })
        } else {
            Transition::None
        }
    }

    /// Marks the server down now (a send failed). The history is kept for phi; the
    /// recovery needs `recover_wait` of heartbeats from here.
    pub fn fail(&mut self) {
        self.available = false;
        self.recovering_since = None;
    }

    /// The current suspicion level.
    pub fn phi(&self, now: Instant) -> f64 {
        let n = self.intervals.len() as f64;
        let mean = self.intervals.iter().sum::<f64>() / n;
        let variance = self
            .intervals
            .iter()
            .map(|x| (x - mean).powi(2))
            .sum::<f64>()
            / n;
        let interval = self.config.interval.as_secs_f64();
        let std = variance.sqrt().max(interval / 4.0);
        let t = now.saturating_duration_since(self.last).as_secs_f64();
        phi(t, mean + interval, std)
    }
}

/// -log10 of the probability that a normally distributed interval (`mean`, `std`)
/// is longer than `t`, with the logistic approximation of the CDF.
fn phi(t: f64, mean: f64, std: f64) -> f64 {
    let y = (t - mean) / std;
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    let p_later = if t > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    // Past about y = 38, p underflows to 0: as suspicious as it gets.
    if p_later <= 0.0 {
        f64::MAX
    } else {
        -p_later.log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DetectorConfig {
        DetectorConfig {
            interval: Duration::from_secs(1),
            use_phi: true,
            phi_threshold: 16.0,
            hard_timeout: Duration::from_secs(60),
            recover_wait: Duration::from_secs(10),
        }
    }

    fn steady(d: &mut FailureDetector, start: Instant, beats: u64) -> Instant {
        let mut now = start;
        for _ in 0..beats {
            now += Duration::from_secs(1);
            assert_eq!(d.heartbeat(now), Transition::None);
        }
        now
    }

    #[test]
    fn phi_grows_with_silence() {
        assert!(phi(1.0, 1.0, 0.25) < 0.31, "on time: about a coin toss");
        assert!(phi(2.0, 1.0, 0.25) > 4.0);
        assert!(phi(2.0, 1.0, 0.25) < phi(3.0, 1.0, 0.25));
        assert!(phi(100.0, 1.0, 0.25) > 1e6);
        assert!(phi(0.1, 1.0, 0.25) < 0.01);
    }

    #[test]
    fn a_silent_server_is_down_within_seconds() {
        let start = Instant::now();
        let mut d = FailureDetector::new(config(), start);
        let last = steady(&mut d, start, 20);
        let mut down_after = None;
        for ms in (0..10_000).step_by(100) {
            let now = last + Duration::from_millis(ms);
            if let Transition::Down(phi) = d.check(now) {
                assert!(phi > 16.0);
                down_after = Some(ms);
                break;
            }
        }
        let ms = down_after.expect("never marked down");
        assert!((2_000..=4_000).contains(&ms), "down after {ms} ms");
        assert!(!d.is_available());
        assert_eq!(
            d.check(last + Duration::from_secs(30)),
            Transition::None,
            "reported once"
        );
    }

    #[test]
    fn a_late_heartbeat_is_not_a_failure() {
        let start = Instant::now();
        let mut d = FailureDetector::new(config(), start);
        let last = steady(&mut d, start, 50);
        assert_eq!(
            d.check(last + Duration::from_millis(1_800)),
            Transition::None
        );
        assert!(d.is_available());
    }

    #[test]
    fn the_hard_timeout_works_without_phi() {
        let start = Instant::now();
        let mut d = FailureDetector::new(
            DetectorConfig {
                use_phi: false,
                hard_timeout: Duration::from_secs(5),
                ..config()
            },
            start,
        );
        assert_eq!(d.check(start + Duration::from_secs(4)), Transition::None);
        assert_eq!(
            d.check(start + Duration::from_secs(6)),
            Transition::Down(f64::INFINITY)
        );
    }

    #[test]
    fn recovery_needs_steady_heartbeats_for_recover_wait() {
        let start = Instant::now();
        let mut d = FailureDetector::new(config(), start);
        let now = steady(&mut d, start, 5);
        d.fail();
        assert!(!d.is_available());
        // Heartbeats resume; 10 s of them bring it back, not fewer.
        let mut t = now;
        let mut up_at = None;
        for i in 1..=12 {
            t += Duration::from_secs(1);
            if d.heartbeat(t) == Transition::Up {
                up_at = Some(i);
                break;
            }
            assert_eq!(d.check(t), Transition::None);
        }
        assert_eq!(up_at, Some(11), "first beat at 1 s starts the 10 s wait");
        assert!(d.is_available());

        // A recovery interrupted by silence starts over.
        d.fail();
        t += Duration::from_secs(1);
        d.heartbeat(t);
        t += Duration::from_secs(30);
        assert_eq!(d.check(t), Transition::None);
        for _ in 0..9 {
            t += Duration::from_secs(1);
            assert_eq!(d.heartbeat(t), Transition::None);
        }
    }
}
