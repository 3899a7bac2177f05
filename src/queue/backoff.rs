//! How long a failed task waits before its next delivery.
//!
//! A nack without `delayMs` returns its task after an exponential back-off,
//! `QUEUE_RETRY_BASE_MS`·2^(attempt-1) capped at `QUEUE_RETRY_MAX_MS`, with "equal jitter": half
//! of it fixed, the other half random. The fixed half keeps retries spaced as the exponent says;
//! the random half spreads the retries of tasks that failed together (a dependency that went
//! down for all of them) so they do not all come back in the same millisecond.
//!
//! The random draw is an argument (`jitter`, in `[0, 1)`), made by the caller: the in-process
//! stores and the Redis script then compute the same delay from the same inputs.

use super::limits::{Delay, MAX_DELAY_MS};

/// The back-off of nacked tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delay of the first retry, before jitter, in ms.
    pub base_ms: u64,
    /// The longest delay, before jitter, in ms.
    pub max_ms: u64,
}

impl RetryPolicy {
    /// The delay before delivery `attempt + 1` of a task whose delivery `attempt` (from 1)
    /// failed, with `jitter` in `[0, 1)`.
    pub fn delay(self, attempt: u32, jitter: f64) -> Delay {
        let doublings = attempt.saturating_sub(1).min(63);
        let full = self
            .base_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_ms)
            .min(MAX_DELAY_MS);
        let jitter = jitter.clamp(0.0, 1.0);
        // Exact for every delay below 2^53 ms (285 000 years).
        let ms = full / 2 + ((full - full / 2) as f64 * jitter) as u64;
        Delay::from_millis(ms.min(full)).unwrap_or(Delay::NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        base_ms: 1_000,
        max_ms: 300_000,
    };

    #[test]
    fn the_delay_doubles_with_each_attempt_up_to_the_cap() {
        let fixed: Vec<u64> = (1..=12)
            .map(|attempt| POLICY.delay(attempt, 0.0).as_millis())
            .collect();
        assert_eq!(
            fixed,
            [
                500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 150_000, 150_000,
                150_000
            ]
        );
        assert_eq!(POLICY.delay(3, 0.999_999).as_millis(), 3_999);
        assert_eq!(POLICY.delay(100, 0.5).as_millis(), 225_000);
    }

    #[test]
    fn jitter_stays_within_the_upper_half() {
        for jitter in [0.0, 0.25, 0.5, 0.75, 0.99] {
            let ms = POLICY.delay(4, jitter).as_millis();
            assert!((4_000..8_000).contains(&ms), "{jitter}: {ms}");
        }
        assert_eq!(POLICY.delay(4, 7.0).as_millis(), 8_000, "clamped");
    }

    #[test]
    fn a_zero_base_retries_at_once() {
        let policy = RetryPolicy {
            base_ms: 0,
            max_ms: 0,
        };
        assert!(policy.delay(5, 0.5).is_zero());
    }
}
