//! The hot slot's clock: a coarse monotonic clock, read on every encryption.
//!
//! `Instant::now()` costs 16 to 20 ns on a virtual machine whose clock
//! source is the TSC, a fifth of a 64-byte encryption. On Linux the hot slot
//! reads `CLOCK_MONOTONIC_COARSE` instead (5 to 6 ns: the kernel's last tick,
//! from the vDSO, without a TSC read), so a fresh key's expiry is noticed up
//! to one kernel tick (1 to 4 ms) late. Elsewhere it reads `Instant`. The
//! cache's own unit tests run on Tokio's clock, so that paused time moves
//! the hot slot's deadlines too.

use std::time::Duration;

/// When a hot-slot entry stops being fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Deadline(Stamp);

impl Deadline {
    /// `remaining` from now; `None` if that is past the clock's range.
    pub(crate) fn after(remaining: Duration) -> Option<Self> {
        now().checked_add(remaining).map(Deadline)
    }

    /// Whether the deadline has come.
    #[inline]
    pub(crate) fn passed(self) -> bool {
        now() >= self.0
    }
}

#[cfg(test)]
use test_clock::{Stamp, now};

#[cfg(all(not(test), any(target_os = "linux", target_os = "android")))]
use coarse::{Stamp, now};

#[cfg(all(not(test), not(any(target_os = "linux", target_os = "android"))))]
use fine::{Stamp, now};

/// Nanoseconds of `CLOCK_MONOTONIC_COARSE`.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod coarse {
    use std::time::Duration;

    use rustix::time::{ClockId, clock_gettime};

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub(super) struct Stamp(u64);

    impl Stamp {
        pub(super) fn checked_add(self, d: Duration) -> Option<Self> {
            u64::try_from(d.as_nanos())
                .ok()
                .and_then(|d| self.0.checked_add(d))
                .map(Stamp)
        }
    }

    #[inline]
    pub(super) fn now() -> Stamp {
        let t = clock_gettime(ClockId::MonotonicCoarse);
        // A monotonic clock counts up from boot: both fields are positive.
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
        Stamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_coarse_clock_moves_forward_with_real_time() {
            let start = now();
            std::thread::sleep(Duration::from_millis(30));
            let later = now();
            // One tick is at most 10 ms (HZ=100), so 30 ms move it by 20 ms at least.
            assert!(later >= start.checked_add(Duration::from_millis(20)).unwrap());
            assert!(later < start.checked_add(Duration::from_secs(30)).unwrap());
            assert!(start.checked_add(Duration::MAX).is_none());
        }
    }
}

/// `Instant`, where no coarse clock is at hand.
#[cfg(all(not(test), not(any(target_os = "linux", target_os = "android"))))]
mod fine {
    pub(super) use std::time::Instant as Stamp;

    #[inline]
    pub(super) fn now() -> Stamp {
        Stamp::now()
    }
}

/// Tokio's clock, which paused-time tests move.
#[cfg(test)]
mod test_clock {
    pub(super) use tokio::time::Instant as Stamp;

    pub(super) fn now() -> Stamp {
        Stamp::now()
    }
}
