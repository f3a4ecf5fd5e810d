use std::error::Error as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMetadata, KeyProvider, KeyVersion, LiveVersions,
    Result, VersionInfo,
};
use kms_testing::capture::observe;
use kms_testing::{Fault, FaultyProvider, MemoryProvider};

use crate::{CircuitState, ResilienceConfig, ResilientProvider};

/// Small timings so that the tests stay fast; the breaker's open time is
/// real time (failsafe reads `std::time::Instant`).
fn fast(retries: u32) -> ResilienceConfig {
    ResilienceConfig {
        timeout: Duration::from_secs(5),
        retries,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        failure_threshold: 3,
        open_duration: Duration::from_millis(150),
        max_open_duration: Duration::from_secs(1),
    }
}

fn setup(config: ResilienceConfig) -> (Arc<FaultyProvider>, ResilientProvider, KeyId) {
    let id = KeyId::default();
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(id.clone())));
    let provider = ResilientProvider::from_arc(faulty.clone(), config);
    (faulty, provider, id)
}

/// Awaits `fut`, failing the test instead of hanging if the wrapper never answers.
async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .expect("the wrapper should have answered by now")
}

fn cause(e: &Error) -> String {
    e.source().map(ToString::to_string).unwrap_or_default()
}

#[track_caller]
fn assert_fails_fast(e: &Error) {
    assert!(
        matches!(
            e,
            Error::Unavailable {
                provider: "memory",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "KMS service unavailable");
    assert_eq!(cause(e), "circuit breaker open");
}

#[tokio::test]
async fn timeout_fires_at_the_configured_time() {
    let (faulty, p, id) = setup(ResilienceConfig {
        timeout: Duration::from_millis(200),
        ..fast(0)
    });
    faulty.set_fault(Fault::Hang);
    let started = Instant::now();
    let e = within(Duration::from_secs(2), p.current_key(&id))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        matches!(
            e,
            Error::Unavailable {
                provider: "memory",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.is_temporary());
    assert_eq!(cause(&e), "timed out after 200 ms");
    assert_eq!(faulty.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_gets_its_own_timeout() {
    let (faulty, p, id) = setup(ResilienceConfig {
        timeout: Duration::from_millis(200),
        ..fast(2)
    });
    faulty.set_fault(Fault::Hang);
    let started = tokio::time::Instant::now();
    let e = within(Duration::from_secs(2), p.current_key(&id))
        .await
        .unwrap_err();
    assert_eq!(faulty.calls(), 3);
    assert_eq!(cause(&e), "timed out after 200 ms");
    let took = started.elapsed();
    // Three timeouts plus two backoffs of at most 1 and 2 ms.
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(took <= Duration::from_millis(605), "{took:?}");
}

#[tokio::test]
async fn temporary_errors_are_retried_up_to_the_limit() {
    let (faulty, p, id) = setup(ResilienceConfig {
        failure_threshold: 100,
        ..fast(3)
    });
    faulty.set_fault(Fault::Temporary);
    let version = KeyVersion::from(1);
    for op in ["current_key", "key_version", "versions", "metadata"] {
        faulty.reset_calls();
        let e = match op {
            "current_key" => p.current_key(&id).await.map(drop),
            "key_version" => p.key_version(&id, &version).await.map(drop),
            "versions" => p.versions(&id).await.map(drop),
            _ => p.metadata(&id).await.map(drop),
        }
        .unwrap_err();
        assert!(e.is_temporary(), "{op}: {e:?}");
        assert_eq!(faulty.calls(), 4, "{op}: first attempt + 3 retries");
    }
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let (faulty, p, id) = setup(fast(3));
    faulty.set_fault(Fault::Permanent);
    let e = p.current_key(&id).await.unwrap_err();
    assert!(matches!(e, Error::AccessDenied { .. }), "{e:?}");
    assert_eq!(faulty.calls(), 1);

    // Not found comes from the inner provider: also answered at once.
    faulty.set_fault(Fault::None);
    faulty.reset_calls();
    let missing = KeyId::new("missing").unwrap();
    let e = p.current_key(&missing).await.unwrap_err();
    assert!(matches!(e, Error::KeyNotFound { .. }), "{e:?}");
    assert_eq!(faulty.calls(), 1);
}

#[tokio::test]
async fn a_short_outage_is_absorbed_by_retries() {
    let (faulty, p, id) = setup(fast(3));
    faulty.fail_next(2, Fault::Temporary);
    let key = p.current_key(&id).await.unwrap();
    assert_eq!(key.version().as_str(), "1");
    assert_eq!(faulty.calls(), 3);
    assert_eq!(p.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn breaker_opens_fails_fast_then_closes_after_a_good_trial() {
    // 300 ms open, so that a busy machine cannot reach half-open before the
    // open-state checks are done.
    let (faulty, p, id) = setup(ResilienceConfig {
        open_duration: Duration::from_millis(300),
        ..fast(1)
    });
    faulty.set_fault(Fault::Temporary);
    // Three failed calls (each: attempt + one retry) open the circuit.
    for n in 1..=3 {
        assert_eq!(p.circuit_state(), CircuitState::Closed, "before call {n}");
        assert!(p.current_key(&id).await.unwrap_err().is_temporary());
    }
    assert_eq!(faulty.calls(), 6);
    assert_eq!(p.circuit_state(), CircuitState::Open);

    // Open: fails at once, even though the provider now takes a second.
    faulty.set_latency(Duration::from_secs(1));
    for _ in 0..20 {
        let started = Instant::now();
        let e = p.current_key(&id).await.unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(10), "{took:?}");
        assert_fails_fast(&e);
        assert!(e.is_temporary());
    }
    assert_fails_fast(&p.rotate(&id, &LiveVersions::all()).await.unwrap_err());
    assert_eq!(
        faulty.calls(),
        6,
        "an open circuit never reaches the provider"
    );
    assert_eq!(p.circuit_state(), CircuitState::Open);

    // Health still probes, and reports the open circuit as unhealthy.
    faulty.set_latency(Duration::ZERO);
    faulty.set_fault(Fault::None);
    let health = p.health().await;
    assert_eq!(faulty.calls(), 7, "the health probe runs while open");
    assert_eq!(health.circuit.as_deref(), Some("open"));
    assert!(!health.healthy);
    assert_eq!(
        health.error.as_deref(),
        Some("circuit breaker open after repeated failures")
    );
    assert_eq!(p.circuit_state(), CircuitState::Open, "a probe is no trial");

    // After the open time the next call is a trial: reported before any call.
    tokio::time::sleep(Duration::from_millis(310)).await;
    assert_eq!(p.circuit_state(), CircuitState::HalfOpen);
    let health = p.health().await;
    assert!(health.healthy, "{health:?}");
    assert_eq!(health.circuit.as_deref(), Some("half-open"));
    assert_eq!(faulty.calls(), 8);

    // The trial reaches the provider, succeeds, and closes the circuit.
    assert!(p.current_key(&id).await.is_ok());
    assert_eq!(faulty.calls(), 9);
    assert_eq!(p.circuit_state(), CircuitState::Closed);
    assert!(p.current_key(&id).await.is_ok());
    assert_eq!(faulty.calls(), 10);
    assert_eq!(p.health().await.circuit.as_deref(), Some("closed"));
}

#[tokio::test]
async fn a_failed_trial_reopens_for_longer() {
    let (faulty, p, id) = setup(ResilienceConfig {
        failure_threshold: 1,
        ..fast(0)
    });
    faulty.set_fault(Fault::Temporary);
    assert!(p.current_key(&id).await.is_err());
    assert_eq!(p.circuit_state(), CircuitState::Open);

    tokio::time::sleep(Duration::from_millis(160)).await;
    assert_eq!(p.circuit_state(), CircuitState::HalfOpen);
    // The trial fails: open again, now for 300 ms.
    assert_eq!(
        cause(&p.current_key(&id).await.unwrap_err()),
        "injected outage"
    );
    assert_eq!(faulty.calls(), 2);
    assert_eq!(p.circuit_state(), CircuitState::Open);

    tokio::time::sleep(Duration::from_millis(160)).await;
    assert_eq!(p.circuit_state(), CircuitState::Open, "open time doubled");
    assert_fails_fast(&p.current_key(&id).await.unwrap_err());
    assert_eq!(faulty.calls(), 2);

    tokio::time::sleep(Duration::from_millis(160)).await;
    assert_eq!(p.circuit_state(), CircuitState::HalfOpen);
    faulty.set_fault(Fault::None);
    assert!(p.current_key(&id).await.is_ok());
    assert_eq!(p.circuit_state(), CircuitState::Closed);

    // Closing resets the open time to 150 ms.
    faulty.set_fault(Fault::Temporary);
    assert!(p.current_key(&id).await.is_err());
    assert_eq!(p.circuit_state(), CircuitState::Open);
    tokio::time::sleep(Duration::from_millis(160)).await;
    assert_eq!(p.circuit_state(), CircuitState::HalfOpen);
}

#[tokio::test]
async fn half_open_lets_one_trial_through_at_a_time() {
    let (faulty, p, id) = setup(ResilienceConfig {
        failure_threshold: 1,
        ..fast(0)
    });
    faulty.set_fault(Fault::Temporary);
    assert!(p.current_key(&id).await.is_err());
    faulty.set_fault(Fault::None);
    faulty.set_latency(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(160)).await;

    // A trial abandoned by its caller frees the slot for the next call.
    let abandoned = tokio::time::timeout(Duration::from_millis(20), p.current_key(&id)).await;
    assert!(abandoned.is_err());
    assert_eq!(faulty.calls(), 2);
    assert_eq!(p.circuit_state(), CircuitState::HalfOpen);

    // While a trial is in flight, other calls fail fast.
    let (trial, other) = tokio::join!(p.current_key(&id), async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.current_key(&id).await
    });
    assert!(trial.is_ok());
    let e = other.unwrap_err();
    assert_eq!(e.to_string(), "KMS service unavailable");
    assert_eq!(cause(&e), "circuit breaker half-open, trial call in flight");
    assert_eq!(faulty.calls(), 3);
    assert_eq!(p.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn permanent_errors_never_open_the_breaker() {
    let (faulty, p, id) = setup(ResilienceConfig {
        failure_threshold: 2,
        ..fast(0)
    });
    faulty.set_fault(Fault::Permanent);
    for _ in 0..20 {
        let e = p.current_key(&id).await.unwrap_err();
        assert!(matches!(e, Error::AccessDenied { .. }), "{e:?}");
    }
    assert_eq!(faulty.calls(), 20);
    assert_eq!(p.circuit_state(), CircuitState::Closed);

    // An answer, even a refusal, also resets the count of failures in a row.
    for fault in [Fault::Temporary, Fault::Permanent, Fault::Temporary] {
        faulty.set_fault(fault);
        assert!(p.current_key(&id).await.is_err());
    }
    assert_eq!(p.circuit_state(), CircuitState::Closed);
    assert!(p.current_key(&id).await.is_err());
    assert_eq!(p.circuit_state(), CircuitState::Open);
}

#[tokio::test]
async fn rotate_is_not_retried() {
    let (faulty, p, id) = setup(fast(3));
    faulty.set_fault(Fault::Temporary);
    assert!(
        p.rotate(&id, &LiveVersions::all())
            .await
            .unwrap_err()
            .is_temporary()
    );
    assert_eq!(faulty.calls(), 1);

    faulty.set_fault(Fault::None);
    assert_eq!(
        p.rotate(&id, &LiveVersions::all())
            .await
            .unwrap()
            .version()
            .as_str(),
        "2"
    );
    assert_eq!(faulty.calls(), 2);
    assert_eq!(p.current_key(&id).await.unwrap().version().as_str(), "2");
}

#[tokio::test(start_paused = true)]
async fn rotate_still_times_out_and_counts_for_the_breaker() {
    let (faulty, p, id) = setup(ResilienceConfig {
        timeout: Duration::from_millis(200),
        failure_threshold: 2,
        ..fast(3)
    });
    faulty.set_fault(Fault::Hang);
    for _ in 0..2 {
        let e = within(Duration::from_secs(2), p.rotate(&id, &LiveVersions::all()))
            .await
            .unwrap_err();
        assert_eq!(cause(&e), "timed out after 200 ms");
    }
    assert_eq!(faulty.calls(), 2);
    assert_eq!(p.circuit_state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_health_check_times_out() {
    let (faulty, p, _) = setup(ResilienceConfig {
        timeout: Duration::from_millis(200),
        ..fast(0)
    });
    faulty.set_fault(Fault::Hang);
    let health = within(Duration::from_secs(2), p.health()).await;
    assert!(!health.healthy);
    assert_eq!(health.provider, "memory");
    assert_eq!(health.response_time, 200);
    assert_eq!(
        health.error.as_deref(),
        Some("health check timed out after 200 ms")
    );
    assert_eq!(health.circuit.as_deref(), Some("closed"));
    assert_eq!(
        p.circuit_state(),
        CircuitState::Closed,
        "health is no breaker call"
    );
}

#[tokio::test]
async fn health_while_open_keeps_the_probe_error() {
    let (faulty, p, id) = setup(ResilienceConfig {
        failure_threshold: 1,
        open_duration: Duration::from_secs(60),
        ..fast(0)
    });
    faulty.set_fault(Fault::Temporary);
    assert!(p.current_key(&id).await.is_err());
    let health = p.health().await;
    assert!(!health.healthy);
    assert_eq!(health.circuit.as_deref(), Some("open"));
    assert_eq!(
        health.error.as_deref(),
        Some("circuit breaker open after repeated failures; probe: KMS service unavailable")
    );
}

#[tokio::test]
async fn rejection_is_cheap() {
    let (faulty, p, id) = setup(ResilienceConfig {
        failure_threshold: 1,
        open_duration: Duration::from_secs(60),
        ..fast(0)
    });
    faulty.set_fault(Fault::Temporary);
    assert!(p.current_key(&id).await.is_err());
    faulty.set_latency(Duration::from_secs(1));
    const N: u32 = 10_000;
    let started = Instant::now();
    for _ in 0..N {
        assert!(p.current_key(&id).await.is_err());
    }
    let each = started.elapsed() / N;
    println!("rejection: {each:?} per call");
    // Generous for an unoptimised build on a busy machine; see the report for release numbers.
    assert!(each < Duration::from_micros(50), "{each:?}");
    assert_eq!(faulty.calls(), 1);
}

#[tokio::test]
async fn works_as_a_boxed_trait_object() {
    let id = KeyId::default();
    let p: Box<dyn KeyProvider> = Box::new(ResilientProvider::new(
        MemoryProvider::with_key(id.clone()),
        ResilienceConfig::default(),
    ));
    assert_eq!(p.name(), "memory");
    assert_eq!(p.current_key(&id).await.unwrap().version().as_str(), "1");
    let shared: Arc<dyn KeyProvider> = Arc::from(p);
    let nested = ResilientProvider::from_arc(shared, ResilienceConfig::default());
    assert_eq!(nested.health().await.circuit.as_deref(), Some("closed"));
    assert!(format!("{nested:?}").contains("circuit: Closed"));
}

#[test]
fn circuit_state_names() {
    assert_eq!(CircuitState::Closed.as_str(), "closed");
    assert_eq!(CircuitState::Open.as_str(), "open");
    assert_eq!(CircuitState::HalfOpen.as_str(), "half-open");
    assert_eq!(CircuitState::HalfOpen.to_string(), "half-open");
}

#[test]
fn config_returns_the_configuration_it_was_built_with() {
    let config = ResilienceConfig {
        timeout: Duration::from_millis(1234),
        retries: 7,
        ..fast(0)
    };
    let (_, p, _) = setup(config.clone());
    assert_eq!(p.config(), &config);
}

#[tokio::test(start_paused = true)]
async fn retries_wait_a_jittered_backoff_up_to_its_cap() {
    let (faulty, p, id) = setup(ResilienceConfig {
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(1),
        ..fast(1)
    });
    let mut waits = Vec::new();
    for _ in 0..50 {
        faulty.reset_calls();
        faulty.fail_next(1, Fault::Temporary);
        let started = tokio::time::Instant::now();
        assert!(
            within(Duration::from_secs(10), p.current_key(&id))
                .await
                .is_ok()
        );
        assert_eq!(faulty.calls(), 2, "one failed attempt, one retry");
        waits.push(started.elapsed());
    }
    // Each wait is random in 0..=1 s (tokio's timer rounds up to the millisecond).
    for wait in &waits {
        assert!(*wait <= Duration::from_millis(1001), "{wait:?}");
    }
    // Fifty waits all in the lower half has odds of 2^-50.
    assert!(
        waits.iter().any(|w| *w > Duration::from_millis(500)),
        "{waits:?}"
    );
    assert_ne!(
        waits.iter().min(),
        waits.iter().max(),
        "jittered: {waits:?}"
    );
}

#[tokio::test]
async fn rotate_if_current_is_forwarded_and_not_retried() {
    let (faulty, p, id) = setup(fast(3));
    let live = LiveVersions::all();
    let first = KeyVersion::from(1);
    let rotated = p
        .rotate_if_current(&id, &first, &live)
        .await
        .unwrap()
        .expect("version 1 is current: this call rotates");
    assert_eq!(rotated.version().as_str(), "2");
    assert_eq!(faulty.calls(), 1);
    assert_eq!(p.current_key(&id).await.unwrap().version().as_str(), "2");

    // Version 1 is no longer current: nothing is written.
    assert!(
        p.rotate_if_current(&id, &first, &live)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(p.current_key(&id).await.unwrap().version().as_str(), "2");

    // A temporary error is returned after one attempt.
    faulty.set_fault(Fault::Temporary);
    faulty.reset_calls();
    let e = p
        .rotate_if_current(&id, &KeyVersion::from(2), &live)
        .await
        .unwrap_err();
    assert!(e.is_temporary(), "{e:?}");
    assert_eq!(faulty.calls(), 1);
}

/// Opening, re-opening and closing are logged once each, as warnings with
/// the open time; calls that change nothing log nothing.
#[test]
fn circuit_transitions_are_logged_once_each() {
    let ((), captured) = failsafe::clock::freeze(|clock| {
        observe(tracing::Level::INFO, async {
            let (faulty, p, id) = setup(ResilienceConfig {
                failure_threshold: 2,
                ..fast(0)
            });
            assert!(p.current_key(&id).await.is_ok());
            faulty.set_fault(Fault::Temporary);
            assert!(p.current_key(&id).await.is_err());
            assert_eq!(p.circuit_state(), CircuitState::Closed);
            assert!(p.current_key(&id).await.is_err());
            assert_eq!(p.circuit_state(), CircuitState::Open);
            assert_fails_fast(&p.current_key(&id).await.unwrap_err());

            // The trial fails: open again, for twice as long.
            clock.advance(Duration::from_millis(151));
            assert_eq!(
                cause(&p.current_key(&id).await.unwrap_err()),
                "injected outage"
            );
            assert_eq!(p.circuit_state(), CircuitState::Open);

            // The next trial succeeds: closed.
            clock.advance(Duration::from_millis(301));
            faulty.set_fault(Fault::None);
            assert!(p.current_key(&id).await.is_ok());
            assert_eq!(p.circuit_state(), CircuitState::Closed);
            assert!(p.current_key(&id).await.is_ok());
            assert_eq!(faulty.calls(), 6);
        })
    })
    .unwrap();
    let events: Vec<_> = captured
        .events("kms::circuit")
        .into_iter()
        .map(|e| {
            let fields = &e["fields"];
            assert_eq!(fields["provider"], "memory", "{e}");
            (
                e["level"].as_str().unwrap().to_owned(),
                fields["message"].as_str().unwrap().to_owned(),
                fields["open_ms"].as_u64(),
            )
        })
        .collect();
    let expected = [
        (
            "WARN",
            "circuit breaker opened after repeated failures; calls fail fast until a trial call succeeds",
            Some(150),
        ),
        (
            "INFO",
            "circuit breaker half-open: letting a trial call through",
            None,
        ),
        (
            "WARN",
            "circuit breaker re-opened: the trial call failed; calls fail fast until the next trial",
            Some(300),
        ),
        (
            "INFO",
            "circuit breaker half-open: letting a trial call through",
            None,
        ),
        (
            "WARN",
            "circuit breaker closed: the provider answers again",
            None,
        ),
    ]
    .map(|(level, message, open_ms)| (level.to_owned(), message.to_owned(), open_ms));
    assert_eq!(events, expected, "{}", captured.raw);
}

/// Down for key calls; its health check passes but carries a message in
/// `error` (which a provider may do: the field is public).
#[derive(Debug)]
struct DownWithHealthNote;

impl DownWithHealthNote {
    fn down<T>() -> Result<T> {
        Err(Error::unavailable("noted", "down"))
    }
}

#[async_trait]
impl KeyProvider for DownWithHealthNote {
    fn name(&self) -> &'static str {
        "noted"
    }
    async fn current_key(&self, _: &KeyId) -> Result<DataKey> {
        Self::down()
    }
    async fn key_version(&self, _: &KeyId, _: &KeyVersion) -> Result<DataKey> {
        Self::down()
    }
    async fn versions(&self, _: &KeyId) -> Result<Vec<VersionInfo>> {
        Self::down()
    }
    async fn metadata(&self, _: &KeyId) -> Result<KeyMetadata> {
        Self::down()
    }
    async fn health(&self) -> HealthStatus {
        let mut status = HealthStatus::healthy("noted", 0);
        status.error = Some("a note".into());
        status
    }
}

/// Only a failed probe's error is added to the open circuit's: a probe that
/// passed is no diagnosis, whatever text it carries.
#[tokio::test]
async fn health_while_open_adds_only_a_failed_probes_error() {
    let p = ResilientProvider::new(
        DownWithHealthNote,
        ResilienceConfig {
            failure_threshold: 1,
            open_duration: Duration::from_secs(60),
            ..fast(0)
        },
    );
    let health = p.health().await;
    assert!(health.healthy);
    assert_eq!(health.circuit.as_deref(), Some("closed"));

    assert!(p.current_key(&KeyId::default()).await.is_err());
    let health = p.health().await;
    assert!(!health.healthy);
    assert_eq!(health.circuit.as_deref(), Some("open"));
    assert_eq!(
        health.error.as_deref(),
        Some("circuit breaker open after repeated failures")
    );
}
