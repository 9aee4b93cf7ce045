//! Jitter: a delay spread over a range, so that many waiters (a fleet
//! reconnecting, steps retrying after one outage) do not act in lockstep.

use std::time::Duration;

/// `delay` scaled by a factor in `[low, high)`, picked by `seed`.
pub fn scale(delay: Duration, low: f64, high: f64, seed: u32) -> Duration {
    delay.mul_f64(low + (high - low) * f64::from(seed % 1000) / 1000.0)
}

/// `delay` scaled by a factor in `[low, high)`, picked by the clock: its
/// nanoseconds are random enough to spread a fleet.
pub fn jitter(delay: Duration, low: f64, high: f64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    scale(delay, low, high, nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delay_is_spread_over_its_range() {
        let second = Duration::from_secs(1);
        assert_eq!(scale(second, 0.75, 1.0, 0), Duration::from_millis(750));
        assert_eq!(
            scale(second, 0.75, 1.0, 999),
            Duration::from_micros(999_750)
        );
        assert_eq!(scale(second, 1.0, 1.2, 1500), Duration::from_millis(1100));
        for _ in 0..100 {
            let spread = jitter(second, 1.0, 1.2);
            assert!(spread >= second && spread < Duration::from_millis(1200));
        }
    }
}
