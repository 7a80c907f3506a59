//! A rate from a growing count, for progress reports and the dashboard's env steps/s.

use std::time::{Duration, Instant};

/// Env steps per second from a growing count, over windows of at least a second (so a rate
/// read between two reports of a fast worker is not a division by microseconds).
#[derive(Debug, Clone)]
pub struct RateMeter {
    since: Instant,
    steps_then: u64,
    rate: f64,
}

impl Default for RateMeter {
    fn default() -> Self {
        RateMeter { since: Instant::now(), steps_then: 0, rate: 0.0 }
    }
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_secs(1);

    /// Notes that the count is `steps` now; returns the latest rate.
    pub fn record(&mut self, steps: u64) -> f64 {
        let elapsed = self.since.elapsed();
        if elapsed >= Self::WINDOW {
            self.rate = steps.saturating_sub(self.steps_then) as f64 / elapsed.as_secs_f64();
            self.since = Instant::now();
            self.steps_then = steps;
        }
        self.rate
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_waits_for_a_full_window() {
        let mut meter = RateMeter::default();
        assert_eq!(meter.record(100), 0.0, "less than a second has passed");
        meter.since -= Duration::from_secs(2);
        let rate = meter.record(1000);
        assert!((450.0..=500.0).contains(&rate), "1000 steps over ~2 s: {rate}");
    }
}
