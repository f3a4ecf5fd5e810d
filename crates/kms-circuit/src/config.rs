//! [`ResilienceConfig`]: timeout, retry and circuit breaker settings.

use std::time::Duration;

/// How a [`ResilientProvider`](crate::ResilientProvider) protects calls.
///
/// Every field is public; start from [`Default`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use kms_circuit::ResilienceConfig;
///
/// let config = ResilienceConfig {
///     timeout: Duration::from_millis(2500),
///     retries: 1,
///     ..ResilienceConfig::default()
/// };
/// assert_eq!(config.failure_threshold, 5);
/// ```
///
/// | field | default |
/// | --- | --- |
/// | [`timeout`](Self::timeout) | 10 s |
/// | [`retries`](Self::retries) | 3 |
/// | [`initial_backoff`](Self::initial_backoff) | 100 ms |
/// | [`max_backoff`](Self::max_backoff) | 2 s |
/// | [`failure_threshold`](Self::failure_threshold) | 5 |
/// | [`open_duration`](Self::open_duration) | 30 s |
/// | [`max_open_duration`](Self::max_open_duration) | 5 min |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResilienceConfig {
    /// Time limit of each attempt (each retry gets a fresh one), and of a
    /// health check. An attempt that runs out fails with
    /// `Error::Unavailable` ("timed out after N ms"), which is temporary.
    ///
    /// Default: 10 s (the spec's `KMS_TIMEOUT=10000`).
    pub timeout: Duration,

    /// Retries after the first attempt, for temporary errors only
    /// (unavailable, timed out, conflict). Permanent errors are returned at
    /// once. `rotate` is never retried.
    ///
    /// Default: 3 (the spec's `KMS_RETRY_ATTEMPTS`).
    pub retries: u32,

    /// Upper bound of the wait before the first retry. Retry `n` (from 0)
    /// waits a random time between zero and
    /// `min(max_backoff, initial_backoff * 2^n)` ("full jitter").
    ///
    /// Default: 100 ms.
    pub initial_backoff: Duration,

    /// Cap on the wait before any retry.
    ///
    /// Default: 2 s.
    pub max_backoff: Duration,

    /// How many calls in a row, each after all its retries, must fail with
    /// the provider unreachable (`Error::Unavailable`, timeouts included) for
    /// the circuit to open. Any answer resets the count: a success, a
    /// permanent error, or a `Conflict`. `0` behaves like `1`.
    ///
    /// Default: 5.
    pub failure_threshold: u32,

    /// How long an open circuit refuses calls before letting one trial call
    /// through.
    ///
    /// Default: 30 s.
    pub open_duration: Duration,

    /// Each failed trial call doubles the open time, up to this cap (never
    /// below [`open_duration`](Self::open_duration)). A successful trial
    /// closes the circuit and resets the open time to `open_duration`.
    ///
    /// Default: 5 min.
    pub max_open_duration: Duration,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            timeout: Duration::from_secs(10),
            retries: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            failure_threshold: 5,
            open_duration: Duration::from_secs(30),
            max_open_duration: Duration::from_secs(5 * 60),
        }
    }
}

impl ResilienceConfig {
    /// The wait before retry number `retry` (0 for the first retry): a
    /// uniformly random duration in `0..=min(max_backoff, initial_backoff * 2^retry)`.
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        use rand::RngExt as _;

        let factor = 1_u32.checked_shl(retry).unwrap_or(u32::MAX);
        let cap = self
            .initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff);
        let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=cap_nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_spec() {
        let c = ResilienceConfig::default();
        assert_eq!(c.timeout, Duration::from_millis(10_000));
        assert_eq!(c.retries, 3);
        assert_eq!(c.initial_backoff, Duration::from_millis(100));
        assert_eq!(c.max_backoff, Duration::from_secs(2));
        assert_eq!(c.failure_threshold, 5);
        assert_eq!(c.open_duration, Duration::from_secs(30));
        assert_eq!(c.max_open_duration, Duration::from_secs(300));
    }

    #[test]
    fn backoff_is_jittered_and_capped() {
        let c = ResilienceConfig {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
            ..ResilienceConfig::default()
        };
        let mut seen_below_half = false;
        for _ in 0..200 {
            let first = c.backoff(0);
            assert!(first <= Duration::from_millis(100), "{first:?}");
            seen_below_half |= first < Duration::from_millis(50);
            // 100 ms * 2^5 = 3.2 s, capped at 300 ms.
            assert!(c.backoff(5) <= Duration::from_millis(300));
            // Huge retry numbers neither overflow nor panic.
            assert!(c.backoff(u32::MAX) <= Duration::from_millis(300));
        }
        assert!(seen_below_half, "full jitter should often pick short waits");
        let zero = ResilienceConfig {
            initial_backoff: Duration::ZERO,
            ..c
        };
        assert_eq!(zero.backoff(3), Duration::ZERO);
    }
}
