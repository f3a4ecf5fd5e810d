//! The circuit breaker: failsafe's [`StateMachine`] with a consecutive-failures
//! policy, plus an exact, lock-free view of its state for
//! [`ResilientProvider::circuit_state`](crate::ResilientProvider::circuit_state).
//!
//! Three things failsafe 1.3 does that shape this module:
//!
//! - **Open to half-open is lazy.** The state machine stays `Open` after the
//!   open time has passed, until the next `is_call_permitted` moves it to
//!   `HalfOpen`. To report the state a call would meet *now*, the breaker
//!   records when the open time ends and [`Breaker::state`] reports
//!   [`CircuitState::HalfOpen`] once it has passed.
//! - **Instrument callbacks run after failsafe releases its lock**, so two
//!   racing transitions could report in the wrong order. Every call into the
//!   state machine goes through one small mutex (the gate), which keeps the
//!   callbacks, and so the atomic state, in transition order.
//! - **Half-open lets every call through.** The gate allows one trial call
//!   at a time; the others keep failing fast until the trial answers.
//!
//! failsafe's `backoff::exponential` counts whole seconds and refuses
//! anything under one second, so the open times come from [`OpenBackoff`].

use std::fmt;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use failsafe::failure_policy::{ConsecutiveFailures, consecutive_failures};
use failsafe::{Instrument, StateMachine, clock};

use crate::config::ResilienceConfig;

/// The state of a [`ResilientProvider`](crate::ResilientProvider)'s circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through to the provider (normal operation).
    Closed,
    /// The provider failed repeatedly: calls fail at once with
    /// "KMS service unavailable", without reaching it, until the open time ends.
    Open,
    /// The open time has ended: the next call goes through as a trial. If it
    /// succeeds the circuit closes, if it fails the circuit opens again, for
    /// longer. Other calls fail fast while the trial is in flight.
    HalfOpen,
}

impl CircuitState {
    /// `"closed"`, `"open"` or `"half-open"`, as in the health response's `circuit` field.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half-open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the state machine's instrument and backoff report, readable without a lock.
#[derive(Debug)]
struct Shared {
    /// `CLOSED`, `OPEN` or `HALF_OPEN`: failsafe's state as of its last transition.
    state: AtomicU8,
    /// When the current open period ends, in nanoseconds since `epoch`.
    open_until: AtomicU64,
    /// The open time failsafe last took from [`OpenBackoff`], in nanoseconds.
    last_open_time: AtomicU64,
    /// The breaker's creation, read from the clock failsafe measures with
    /// (`failsafe::clock::now()`: `std::time::Instant::now()`, unless a test
    /// froze it with `failsafe::clock::freeze`, as this crate's tests do).
    epoch: Instant,
}

impl Shared {
    /// Nanoseconds since `epoch`, on failsafe's clock.
    fn now(&self) -> u64 {
        nanos(clock::now().saturating_duration_since(self.epoch))
    }
}

/// Open times: `open_duration`, doubled after each failed trial, capped at
/// `max(open_duration, max_open_duration)`. failsafe starts a fresh copy when
/// the circuit closes. Each time handed out is recorded, so that the
/// instrument knows when the open period it is told about ends.
#[derive(Debug, Clone)]
struct OpenBackoff {
    next: Duration,
    max: Duration,
    shared: Arc<Shared>,
}

impl Iterator for OpenBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let time = self.next;
        self.next = time.saturating_mul(2).min(self.max);
        self.shared
            .last_open_time
            .store(nanos(time), Ordering::Relaxed);
        Some(time)
    }
}

/// Mirrors failsafe's transitions into [`Shared`]. Logging happens in
/// [`Breaker`], outside the gate.
#[derive(Debug)]
struct Observer(Arc<Shared>);

impl Instrument for Observer {
    fn on_call_rejected(&self) {}

    fn on_open(&self) {
        let shared = &self.0;
        // failsafe computed its own deadline a moment ago from the same open
        // time, so this one is never earlier: when `state()` says half-open,
        // failsafe lets the next call through.
        let until = shared
            .now()
            .saturating_add(shared.last_open_time.load(Ordering::Relaxed));
        shared.open_until.store(until, Ordering::Relaxed);
        shared.state.store(OPEN, Ordering::Release);
    }

    fn on_half_open(&self) {
        self.0.state.store(HALF_OPEN, Ordering::Release);
    }

    fn on_closed(&self) {
        self.0.state.store(CLOSED, Ordering::Release);
    }
}

/// Guarded by the gate mutex.
#[derive(Debug, Default)]
struct Gate {
    /// A half-open trial call is in flight.
    trial_in_flight: bool,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// The circuit is open.
    Open,
    /// The circuit is half-open and another call is the trial.
    TrialInFlight,
}

/// failsafe's state machine behind a gate, with its state mirrored in atomics.
pub(crate) struct Breaker {
    machine: StateMachine<ConsecutiveFailures<OpenBackoff>, Observer>,
    gate: Mutex<Gate>,
    shared: Arc<Shared>,
    provider: &'static str,
}

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Breaker {
    /// A closed breaker for `provider` (the name is for logs).
    pub(crate) fn new(provider: &'static str, config: &ResilienceConfig) -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(CLOSED),
            open_until: AtomicU64::new(0),
            last_open_time: AtomicU64::new(nanos(config.open_duration)),
            epoch: clock::now(),
        });
        let backoff = OpenBackoff {
            next: config.open_duration,
            max: config.max_open_duration.max(config.open_duration),
            shared: Arc::clone(&shared),
        };
        let policy = consecutive_failures(config.failure_threshold, backoff);
        Breaker {
            machine: StateMachine::new(policy, Observer(Arc::clone(&shared))),
            gate: Mutex::new(Gate::default()),
            shared,
            provider,
        }
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The state a call would meet now: an open circuit whose open time has
    /// passed is reported half-open, although failsafe only switches when the
    /// next call asks. Lock-free.
    pub(crate) fn state(&self) -> CircuitState {
        match self.shared.state.load(Ordering::Acquire) {
            CLOSED => CircuitState::Closed,
            HALF_OPEN => CircuitState::HalfOpen,
            _ if self.shared.now() > self.shared.open_until.load(Ordering::Relaxed) => {
                CircuitState::HalfOpen
            }
            _ => CircuitState::Open,
        }
    }

    /// Asks to make a call. When refused, nothing is allocated or logged.
    pub(crate) fn try_acquire(&self) -> Result<Permit<'_>, Rejection> {
        let trial = {
            let mut gate = self.gate();
            if !self.machine.is_call_permitted() {
                return Err(Rejection::Open);
            }
            if self.shared.state.load(Ordering::Relaxed) == HALF_OPEN {
                if gate.trial_in_flight {
                    return Err(Rejection::TrialInFlight);
                }
                gate.trial_in_flight = true;
                true
            } else {
                false
            }
        };
        if trial {
            tracing::info!(
                target: "kms::circuit",
                provider = self.provider,
                "circuit breaker half-open: letting a trial call through"
            );
        }
        Ok(Permit {
            breaker: self,
            trial,
            finished: false,
        })
    }
}

/// Permission for one call (with its retries). Report how it ended with
/// [`Permit::record`]; a permit dropped unrecorded (the caller gave up on
/// the call) records nothing, and if it was the half-open trial the next
/// call becomes the trial.
#[derive(Debug)]
pub(crate) struct Permit<'a> {
    breaker: &'a Breaker,
    trial: bool,
    finished: bool,
}

impl Permit<'_> {
    /// Records the call's outcome: `outage` when the provider could not be
    /// reached (a breaker failure), otherwise the provider answered.
    pub(crate) fn record(mut self, outage: bool) {
        self.finished = true;
        let breaker = self.breaker;
        let (before, after) = {
            let mut gate = breaker.gate();
            let before = breaker.shared.state.load(Ordering::Relaxed);
            if outage {
                breaker.machine.on_error();
            } else {
                breaker.machine.on_success();
            }
            if self.trial {
                gate.trial_in_flight = false;
            }
            (before, breaker.shared.state.load(Ordering::Relaxed))
        };
        if before != OPEN && after == OPEN {
            let open_ms = breaker.shared.last_open_time.load(Ordering::Relaxed) / 1_000_000;
            if before == HALF_OPEN {
                tracing::warn!(
                    target: "kms::circuit",
                    provider = breaker.provider,
                    open_ms,
                    "circuit breaker re-opened: the trial call failed; calls fail fast until the next trial"
                );
            } else {
                tracing::warn!(
                    target: "kms::circuit",
                    provider = breaker.provider,
                    open_ms,
                    "circuit breaker opened after repeated failures; calls fail fast until a trial call succeeds"
                );
            }
        } else if before != CLOSED && after == CLOSED {
            tracing::warn!(
                target: "kms::circuit",
                provider = breaker.provider,
                "circuit breaker closed: the provider answers again"
            );
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.trial && !self.finished {
            self.breaker.gate().trial_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One permitted call with the given outcome.
    fn call(b: &Breaker, outage: bool) {
        b.try_acquire().unwrap().record(outage);
    }

    fn config(threshold: u32, open_ms: u64, max_open_ms: u64) -> ResilienceConfig {
        ResilienceConfig {
            failure_threshold: threshold,
            open_duration: Duration::from_millis(open_ms),
            max_open_duration: Duration::from_millis(max_open_ms),
            ..ResilienceConfig::default()
        }
    }

    #[test]
    fn open_times_double_up_to_the_cap() {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(CLOSED),
            open_until: AtomicU64::new(0),
            last_open_time: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let backoff = OpenBackoff {
            next: Duration::from_millis(150),
            max: Duration::from_millis(1000),
            shared: Arc::clone(&shared),
        };
        let times: Vec<u128> = backoff.take(5).map(|d| d.as_millis()).collect();
        assert_eq!(times, [150, 300, 600, 1000, 1000]);
        assert_eq!(shared.last_open_time.load(Ordering::Relaxed), 1_000_000_000);
    }

    #[test]
    fn threshold_zero_behaves_like_one() {
        let b = Breaker::new("test", &config(0, 60_000, 60_000));
        call(&b, true);
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.try_acquire().err(), Some(Rejection::Open));
    }

    #[test]
    fn lazy_half_open_is_reported_and_matches_failsafe() {
        let b = Breaker::new("test", &config(1, 50, 50));
        call(&b, true);
        assert_eq!(b.state(), CircuitState::Open);
        std::thread::sleep(Duration::from_millis(60));
        // failsafe itself is still `Open` (nothing asked yet) ...
        assert_eq!(b.shared.state.load(Ordering::Relaxed), OPEN);
        // ... but a call would be let through, and that is what is reported.
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let trial = b.try_acquire().unwrap();
        assert_eq!(b.shared.state.load(Ordering::Relaxed), HALF_OPEN);
        assert_eq!(b.state(), CircuitState::HalfOpen);
        // One trial at a time.
        assert_eq!(b.try_acquire().err(), Some(Rejection::TrialInFlight));
        // A trial given up without an outcome frees the slot.
        drop(trial);
        b.try_acquire().unwrap().record(false);
        assert_eq!(b.state(), CircuitState::Closed);
    }

    /// failsafe lets a call through once its clock is *past* the deadline
    /// (`now > until`). At the deadline itself the circuit is still open,
    /// and `state()` says so: it never reports half-open before failsafe
    /// would let the trial through.
    #[test]
    fn half_open_is_reported_exactly_when_failsafe_lets_the_trial_through() {
        clock::freeze(|clock| {
            let b = Breaker::new("test", &config(1, 150, 150));
            call(&b, true);
            clock.advance(Duration::from_millis(150));
            assert_eq!(b.state(), CircuitState::Open);
            assert_eq!(b.try_acquire().err(), Some(Rejection::Open));
            assert_eq!(b.state(), CircuitState::Open);

            clock.advance(Duration::from_nanos(1));
            assert_eq!(b.state(), CircuitState::HalfOpen);
            let trial = b.try_acquire().unwrap();
            assert_eq!(b.state(), CircuitState::HalfOpen);
            trial.record(false);
            assert_eq!(b.state(), CircuitState::Closed);
        });
    }

    /// The instrument computes its deadline a moment after failsafe computed
    /// its own, so for that moment failsafe already lets the trial through
    /// while the recorded deadline has not passed. A trial in flight is
    /// reported half-open all the same, as the rejection of the other calls says.
    #[test]
    fn a_trial_in_flight_is_half_open_even_before_the_recorded_deadline() {
        clock::freeze(|clock| {
            let b = Breaker::new("test", &config(1, 150, 150));
            call(&b, true);
            // The instrument ran one microsecond after failsafe's transition.
            b.shared.open_until.fetch_add(1_000, Ordering::Relaxed);
            clock.advance(Duration::from_millis(150) + Duration::from_nanos(1));
            let trial = b.try_acquire().unwrap();
            assert_eq!(b.try_acquire().err(), Some(Rejection::TrialInFlight));
            assert_eq!(b.state(), CircuitState::HalfOpen);
            trial.record(true);
            assert_eq!(b.state(), CircuitState::Open);
        });
    }

    /// Only the trial's own permit frees the trial slot when dropped: an
    /// ordinary call that started while the circuit was closed and is given
    /// up during the trial must not let a second trial through.
    #[test]
    fn a_cancelled_ordinary_call_does_not_free_the_trial_slot() {
        clock::freeze(|clock| {
            let b = Breaker::new("test", &config(1, 150, 150));
            let slow = b.try_acquire().unwrap();
            call(&b, true);
            assert_eq!(b.state(), CircuitState::Open);
            clock.advance(Duration::from_millis(151));
            let trial = b.try_acquire().unwrap();
            drop(slow);
            assert_eq!(b.try_acquire().err(), Some(Rejection::TrialInFlight));
            assert_eq!(b.state(), CircuitState::HalfOpen);
            // The trial's own outcome still decides.
            trial.record(false);
            assert_eq!(b.state(), CircuitState::Closed);
            call(&b, false);
        });
    }

    #[test]
    fn answers_reset_the_failure_count() {
        let b = Breaker::new("test", &config(2, 60_000, 60_000));
        for outage in [true, false, true, false, true] {
            call(&b, outage);
        }
        assert_eq!(b.state(), CircuitState::Closed);
        call(&b, true);
        assert_eq!(b.state(), CircuitState::Open);
    }
}
