//! Scenarios that every remote provider's tests run the same way.
#![cfg_attr(
    not(all(feature = "vault", feature = "aws", feature = "gcp")),
    allow(
        dead_code,
        reason = "each scenario serves some providers; with only some compiled in, others go unused"
    )
)]

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use kms::Kms;
use kms::circuit::CircuitState;

use kms_tests::fixtures::kms_cli;

/// The `kms` CLI with `vars` against `kms` (built from the same `vars`):
/// CLI encrypts and the library decrypts, the library encrypts (`stored`,
/// of `secret` with AAD `users:42`) and the CLI decrypts and refuses the
/// wrong AAD; `kms health` reports `provider` healthy.
pub(crate) async fn cli_round_trip(
    vars: &HashMap<String, String>,
    kms: &Kms,
    secret: &str,
    stored: &str,
    provider: &str,
) {
    let (code, out, err) =
        kms_cli(vars, &["encrypt", "--aad", "users:42"], secret.as_bytes()).await;
    assert_eq!(code, 0, "kms encrypt: {err}");
    let from_cli = out.trim();
    assert!(from_cli.starts_with("kms:v1:"), "{from_cli}");
    assert_eq!(
        kms.decrypt_str(from_cli, b"users:42").await.unwrap(),
        secret
    );

    let (code, out, err) =
        kms_cli(vars, &["decrypt", "--aad", "users:42"], stored.as_bytes()).await;
    assert_eq!(code, 0, "kms decrypt: {err}");
    assert_eq!(out, secret);
    let (code, _, _) = kms_cli(vars, &["decrypt", "--aad", "users:43"], stored.as_bytes()).await;
    assert_ne!(code, 0, "the CLI decrypted with the wrong AAD");

    let (code, out, err) = kms_cli(vars, &["health"], b"").await;
    assert_eq!(code, 0, "kms health: {out} {err}");
    let health: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["success"], true, "{out}");
    assert_eq!(health["data"]["provider"], provider, "{out}");
    assert_eq!(health["data"]["healthy"], true, "{out}");
    assert!(health["data"]["responseTime"].is_u64(), "{out}");
}

/// An outage of the server behind `kms`, whose settings are
/// `KMS_TIMEOUT=300`, `KMS_RETRY_ATTEMPTS=1`,
/// `KMS_CIRCUIT_FAILURE_THRESHOLD=3` and `KMS_CIRCUIT_OPEN_DURATION=open_for`:
/// once `pause` has frozen the server, cached keys keep working
/// (`cached_ct` was encrypted by `kms`), uncached calls (`unseen_ct`, a
/// version `kms` never fetched; `second`, another key id) fail within the
/// timeout budget with "KMS service unavailable", the circuit opens and
/// then fails fast; after `unpause`, the stack recovers by itself.
/// How the server fails during an outage.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outage {
    /// It accepts connections and never answers (a paused container):
    /// every attempt runs into `KMS_TIMEOUT`.
    Hangs,
    /// It refuses connections (a stopped server): attempts fail at once.
    Refuses,
}

#[expect(
    clippy::too_many_arguments,
    reason = "a test scenario: each argument is one knob of it"
)]
pub(crate) async fn outage_fails_fast_and_recovers(
    kms: &Kms,
    second: &Kms,
    cached_ct: &[u8],
    unseen_ct: &[u8],
    open_for: Duration,
    outage: Outage,
    pause: impl Future<Output = ()>,
    unpause: impl Future<Output = ()>,
) {
    pause.await;

    // Cached keys keep working.
    let ct = kms.encrypt(b"during", b"").await.unwrap();
    assert_eq!(kms.decrypt(&ct, b"").await.unwrap(), b"during");
    assert_eq!(kms.decrypt(cached_ct, b"").await.unwrap(), b"cached");

    // Uncached calls fail within 2 attempts x 300 ms + one backoff (<= 100 ms).
    for attempt in 0..3 {
        let started = Instant::now();
        let err = if attempt == 1 {
            second.encrypt(b"x", b"").await.unwrap_err()
        } else {
            kms.decrypt(unseen_ct, b"").await.unwrap_err()
        };
        let took = started.elapsed();
        assert_eq!(err.to_string(), "KMS service unavailable", "{err:?}");
        let at_least = match outage {
            Outage::Hangs => Duration::from_millis(290),
            Outage::Refuses => Duration::ZERO,
        };
        assert!(
            took >= at_least && took < Duration::from_millis(1500),
            "attempt {attempt} took {took:?}"
        );
    }
    // Three failures in a row: the circuit is open and calls fail at once.
    assert_eq!(kms.circuit_state(), Some(CircuitState::Open));
    let started = Instant::now();
    let err = kms.decrypt(unseen_ct, b"").await.unwrap_err();
    assert_eq!(err.to_string(), "KMS service unavailable");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "{:?}",
        started.elapsed()
    );
    // The cache still answers while the circuit is open.
    assert_eq!(kms.decrypt(cached_ct, b"").await.unwrap(), b"cached");

    let opened_at = Instant::now();
    unpause.await;
    tokio::time::sleep(open_for.saturating_sub(opened_at.elapsed())).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match kms.decrypt(unseen_ct, b"").await {
            Ok(pt) => {
                assert_eq!(pt, b"unseen");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.to_string(), "KMS service unavailable");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("the stack did not recover: {e:?}"),
        }
    }
    assert_eq!(kms.circuit_state(), Some(CircuitState::Closed));
    second.encrypt(b"x", b"").await.unwrap();
    assert!(kms.health().await.healthy);
}
