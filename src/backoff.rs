//! Capped exponential backoff with jitter, shared by every stage that retries.

use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `attempt` (1-based): `initial * 2^(attempt-1)`, capped at `max`,
    /// with up to 20% jitter below the cap so retries of many partitions spread out.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.max);
        let jitter = rand::random::<f64>() * 0.2;
        capped.mul_f64(1.0 - jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps() {
        let b = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        let d1 = b.delay(1);
        assert!(d1 <= Duration::from_millis(100) && d1 >= Duration::from_millis(80), "{d1:?}");
        let d3 = b.delay(3);
        assert!(d3 <= Duration::from_millis(400) && d3 >= Duration::from_millis(320), "{d3:?}");
        let d30 = b.delay(30);
        assert!(d30 <= Duration::from_secs(1) && d30 >= Duration::from_millis(800), "{d30:?}");
    }
}
