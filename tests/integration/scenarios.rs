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

use std::sync::Arc;

use kms::circuit::{CircuitState, ResilienceConfig};
use kms::{Envelope, KeyId, Kms};
use kms_testing::FaultyProvider;
use kms_tests::fixtures::{
    Outage, ProviderFixture, error_chain, kms_cli, kms_from, random_hex, text_version,
};

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

/// The outage scenario of [`outage_fails_fast_and_recovers`] on fixture
/// `F`: key `default` (cached before the outage, and a version 2 written by
/// another instance, never fetched) and key `second`.
pub(crate) async fn outage<F: ProviderFixture>() {
    let fixture = F::start().await;
    fixture.put_key("second", &random_hex()).await;
    let open_for = Duration::from_millis(2000);
    let vars = fixture.env(&[
        ("KMS_TIMEOUT", "300"),
        ("KMS_RETRY_ATTEMPTS", "1"),
        ("KMS_CIRCUIT_FAILURE_THRESHOLD", "3"),
        ("KMS_CIRCUIT_OPEN_DURATION", "2000"),
    ]);
    let kms = kms_from(&vars).await;
    let cached_ct = kms.encrypt(b"cached", b"").await.unwrap();

    // Version 2 is written by another instance; this `kms` never fetches it
    // before the outage.
    let other = kms_from(&vars).await;
    other.rotate().await.unwrap();
    let unseen_ct = other.encrypt(b"unseen", b"").await.unwrap();
    let unseen_version = Envelope::parse(&unseen_ct).unwrap().key_version().unwrap();
    assert_eq!(unseen_version.as_str(), "2", "{}", F::PROVIDER);

    let second = kms.with_key_id(KeyId::new("second").unwrap());
    outage_fails_fast_and_recovers(
        &kms,
        &second,
        &cached_ct,
        &unseen_ct,
        open_for,
        F::OUTAGE,
        fixture.outage(),
        fixture.recover(),
    )
    .await;
}

/// The spec's error wording on fixture `F`: a key that does not exist is
/// "Encryption key not found: <id>", a stored value that is not a 64-hex
/// key is "Invalid key length: expected 32 bytes", both permanent; refused
/// credentials are "Access denied to encryption key", permanent, tried
/// once behind a facade that would retry temporary errors, with the
/// server's answer in the error chain and the credential nowhere, and make
/// the health check unhealthy.
pub(crate) async fn errors_use_the_spec_wording<F: ProviderFixture>() {
    let fixture = F::start().await;

    let kms = kms_from(&fixture.env(&[("KMS_KEY_ID", "missing-key")])).await;
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Encryption key not found: missing-key");
    assert!(err.is_permanent());

    fixture.put_key("malformed", "not-a-hex-key").await;
    let kms = kms_from(&fixture.env(&[("KMS_KEY_ID", "malformed")])).await;
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Invalid key length: expected 32 bytes");
    assert!(err.is_permanent());
    assert!(!format!("{err:?}").contains("not-a-hex-key"));

    let Some(refused) = fixture.refused().await else {
        return;
    };
    let counted = Arc::new(FaultyProvider::new(refused.provider));
    let kms = Kms::builder()
        .provider_arc(counted.clone())
        .resilience(ResilienceConfig {
            retries: 3,
            initial_backoff: Duration::from_millis(300),
            ..ResilienceConfig::default()
        })
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Access denied to encryption key");
    assert!(err.is_permanent());
    assert_eq!(counted.calls(), 1, "an access denial must not be retried");
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let chain = error_chain(&err);
    assert!(chain.contains(refused.says), "{chain}");
    assert!(
        !chain.contains(refused.credential) && !format!("{err:?}").contains(refused.credential)
    );
    let health = kms.health().await;
    assert!(!health.healthy, "{health:?}");
    let message = health.error.unwrap_or_default();
    assert!(message.contains("Access denied"), "{message}");
    assert!(!message.contains(refused.credential), "{message}");
}

/// What [`spec_setup`] leaves for a provider's own further checks.
pub(crate) struct SetUp<F> {
    pub(crate) fixture: F,
    /// The spec's environment.
    pub(crate) vars: HashMap<String, String>,
    /// The library built from it.
    pub(crate) kms: Kms,
    /// [`SECRET`] encrypted by `kms` with AAD `users:42`.
    pub(crate) stored: String,
    /// The `data` of `kms metadata`.
    pub(crate) metadata: serde_json::Value,
}

/// The plaintext of the spec set-up scenario.
pub(crate) const SECRET: &str = "sk_live_51H8example";

/// The spec's own set-up on fixture `F`, end to end: the key the set-up
/// stored is the one the library uses (version 1); it encrypts and decrypts
/// through the library and through the `kms` CLI in both directions
/// ([`cli_round_trip`]); `kms metadata` reports the key in the spec's shape
/// and never shows it.
pub(crate) async fn spec_setup<F: ProviderFixture>() -> SetUp<F> {
    let fixture = F::start().await;
    let vars = fixture.env(&[]);
    let kms = kms_from(&vars).await;
    assert_eq!(kms.config().provider, F::PROVIDER);

    // The library uses exactly the key the set-up stored, as version 1.
    let current = kms.provider().current_key(&KeyId::default()).await.unwrap();
    assert_eq!(*current.material().to_hex(), fixture.default_key());
    assert_eq!(current.version().as_str(), "1");

    let stored = kms.encrypt_str(SECRET, b"users:42").await.unwrap();
    assert_eq!(kms.decrypt_str(&stored, b"users:42").await.unwrap(), SECRET);
    assert_eq!(text_version(&stored).as_str(), "1");

    cli_round_trip(&vars, &kms, SECRET, &stored, F::PROVIDER).await;

    let (code, out, err) = kms_cli(&vars, &["metadata"], b"").await;
    assert_eq!(code, 0, "kms metadata: {err}");
    assert!(
        !out.contains(fixture.default_key()),
        "metadata shows the key: {out}"
    );
    let meta: serde_json::Value = serde_json::from_str(&out).unwrap();
    let data = meta["data"].clone();
    assert_eq!(data["keyId"], "default", "{out}");
    assert_eq!(data["enabled"], true, "{out}");
    assert_eq!(data["keyUsage"], "ENCRYPT_DECRYPT", "{out}");
    assert_eq!(data["keySpec"], "AES-256", "{out}");
    assert_eq!(data["provider"], F::PROVIDER, "{out}");
    assert_eq!(data["currentVersion"], "1", "{out}");
    assert!(data["createdAt"].is_string(), "{out}");
    assert!(data["lastRotated"].is_null(), "never rotated: {out}");
    SetUp {
        fixture,
        vars,
        kms,
        stored,
        metadata: data,
    }
}
