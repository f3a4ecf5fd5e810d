//! The facade's provider stack: provider, then timeout/retry/breaker, then cache.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use kms::circuit::CircuitState;
use kms::{Error, KeyId, KeyProvider, Kms, KmsBuilder};
use kms_testing::{Fault, FaultyProvider, MemoryProvider};

fn faulty() -> Arc<FaultyProvider> {
    Arc::new(FaultyProvider::new(MemoryProvider::with_key(
        KeyId::default(),
    )))
}

async fn kms_over(p: Arc<FaultyProvider>, b: KmsBuilder) -> Kms {
    b.provider_arc(p).build().await.unwrap()
}

#[tokio::test]
async fn a_cache_hit_never_reaches_the_breaker_or_the_provider() {
    let p = faulty();
    let kms = kms_over(
        p.clone(),
        Kms::builder().timeout(Duration::from_millis(100)),
    )
    .await;
    let ct = kms.encrypt(b"warm", b"").await.unwrap();
    let calls = p.calls();

    p.set_fault(Fault::Hang);
    let started = Instant::now();
    for _ in 0..100 {
        let ct2 = kms.encrypt(b"x", b"").await.unwrap();
        assert_eq!(kms.decrypt(&ct2, b"").await.unwrap(), b"x");
    }
    assert_eq!(kms.decrypt(&ct, b"").await.unwrap(), b"warm");
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(p.calls(), calls, "cache hits must not call the provider");
    assert_eq!(kms.circuit_state(), Some(CircuitState::Closed));
    assert!(kms.cache_stats().unwrap().hits >= 200);
}

#[tokio::test]
async fn uncached_calls_fail_within_the_timeout_budget_and_open_the_breaker() {
    let p = faulty();
    // KMS_TIMEOUT=100 ms, KMS_RETRY_ATTEMPTS=1: at most ~2 x 100 ms plus a short backoff.
    let lookup = |n: &str| match n {
        "KMS_TIMEOUT" => Some("100".to_owned()),
        "KMS_RETRY_ATTEMPTS" => Some("1".to_owned()),
        "KMS_CIRCUIT_FAILURE_THRESHOLD" => Some("2".to_owned()),
        "KMS_CIRCUIT_OPEN_DURATION" => Some("300ms".to_owned()),
        _ => None,
    };
    let kms = kms_over(p.clone(), KmsBuilder::from_lookup(lookup).unwrap()).await;
    p.set_fault(Fault::Hang);
    for _ in 0..2 {
        let started = Instant::now();
        let err = kms.encrypt(b"x", b"").await.unwrap_err();
        assert_eq!(err.to_string(), "KMS service unavailable");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(190), "{took:?}");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
    assert_eq!(kms.circuit_state(), Some(CircuitState::Open));
    let calls = p.calls();
    let started = Instant::now();
    assert!(kms.encrypt(b"x", b"").await.unwrap_err().is_temporary());
    assert!(
        started.elapsed() < Duration::from_millis(20),
        "open circuit must fail fast"
    );
    assert_eq!(p.calls(), calls);
    let health = kms.health().await;
    assert!(!health.healthy);
    assert_eq!(health.circuit.as_deref(), Some("open"));

    // Recovery without a restart.
    p.set_fault(Fault::None);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let ct = kms.encrypt(b"back", b"").await.unwrap();
    assert_eq!(kms.decrypt(&ct, b"").await.unwrap(), b"back");
    assert_eq!(kms.circuit_state(), Some(CircuitState::Closed));
    let health = kms.health().await;
    assert!(health.healthy);
    assert_eq!(health.circuit.as_deref(), Some("closed"));
    assert!(kms.cache_stats().is_some_and(|s| s.loads > 0));
}

#[tokio::test]
async fn permanent_errors_are_not_retried_through_the_facade() {
    let p = faulty();
    let kms = kms_over(p.clone(), Kms::builder().retry_attempts(3)).await;
    p.set_fault(Fault::Permanent);
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }));
    assert_eq!(err.to_string(), "Access denied to encryption key");
    assert_eq!(p.calls(), 1);
}

#[tokio::test]
async fn temporary_errors_are_retried_through_the_facade() {
    let p = faulty();
    let b = Kms::builder()
        .retry_attempts(3)
        .resilience(kms::circuit::ResilienceConfig {
            initial_backoff: Duration::from_millis(1),
            ..kms::circuit::ResilienceConfig::default()
        });
    let kms = kms_over(p.clone(), b).await;
    p.fail_next(2, Fault::Temporary);
    kms.encrypt(b"x", b"").await.unwrap();
    assert_eq!(p.calls(), 3);
}

#[tokio::test]
async fn a_second_instance_decrypts_new_versions_at_once() {
    let shared = Arc::new(MemoryProvider::with_key(KeyId::default()));
    let a = Kms::builder()
        .provider_arc(shared.clone())
        .build()
        .await
        .unwrap();
    let b = Kms::builder()
        .provider_arc(shared.clone())
        .build()
        .await
        .unwrap();
    let before_b = b.encrypt(b"b-old", b"").await.unwrap(); // B caches version 1
    let v2 = a.rotate().await.unwrap();
    assert_eq!(v2.as_str(), "2");
    let from_a = a.encrypt(b"a-new", b"").await.unwrap();
    assert_eq!(
        kms::Envelope::parse(&from_a)
            .unwrap()
            .key_version()
            .unwrap(),
        v2
    );
    // B has never seen version 2 and decrypts it at once; A decrypts B's old data.
    assert_eq!(b.decrypt(&from_a, b"").await.unwrap(), b"a-new");
    assert_eq!(a.decrypt(&before_b, b"").await.unwrap(), b"b-old");
    // B still encrypts with version 1 until its TTL ends (still decryptable by A).
    let from_b = b.encrypt(b"b-still-v1", b"").await.unwrap();
    assert_eq!(
        kms::Envelope::parse(&from_b)
            .unwrap()
            .key_version()
            .unwrap()
            .as_str(),
        "1"
    );
    assert_eq!(a.decrypt(&from_b, b"").await.unwrap(), b"b-still-v1");
}

#[tokio::test]
async fn unlayered_stacks_are_used_as_given() {
    let p = faulty();
    let kms = Kms::builder()
        .provider_unlayered(p.clone())
        .build()
        .await
        .unwrap();
    assert!(kms.circuit_state().is_none());
    assert!(kms.cache_stats().is_none());
    kms.encrypt(b"x", b"").await.unwrap();
    kms.encrypt(b"x", b"").await.unwrap();
    assert_eq!(p.calls(), 2, "no cache in an unlayered stack");
    assert_eq!(kms.provider().name(), "memory");
}

#[test]
fn config_reports_the_stack_without_secrets() {
    let lookup = |n: &str| match n {
        "ENCRYPTION_KEY" => {
            Some("8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334".to_owned())
        }
        "KMS_CACHE_STALE_IF_ERROR" => Some("15m".to_owned()),
        _ => None,
    };
    let b = KmsBuilder::from_lookup(lookup).unwrap();
    let json = serde_json::to_string(&b.config()).unwrap();
    assert!(json.contains("\"cacheStaleIfError\":900000"), "{json}");
    assert!(json.contains("\"circuitFailureThreshold\":5"), "{json}");
    assert!(!json.contains("8f7c2d54"), "{json}");
    assert!(!format!("{b:?}").contains("8f7c2d54"));
}

/// A ciphertext that parses but was never written: a real key id, a
/// version and a fingerprint of the attacker's choice, random IV and tag.
fn forged(key_id: &str, version: &str) -> Vec<u8> {
    let noise = *kms::KeyMaterial::generate().expose_secret();
    let mut out = vec![b'K', b'M', 1, 12, key_id.len() as u8];
    out.extend_from_slice(key_id.as_bytes());
    out.push(version.len() as u8);
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(&noise[..8]); // fingerprint
    out.extend_from_slice(&noise[8..20]); // IV
    out.extend_from_slice(b"forged plaintext");
    out.extend_from_slice(&noise[16..32]); // tag
    out
}

/// 10,000 forged ciphertexts (half under the fixed version 99, half under
/// random versions, every fingerprint random) decrypted while valid traffic
/// runs: every forged one fails with "Encryption key not found", no valid
/// request fails, the circuit stays closed, and the provider sees at most
/// two calls per `list_refresh` (one listing, one direct read of an
/// unlisted version), not one or two per forged ciphertext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_ciphertexts_cost_a_bounded_number_of_provider_calls() {
    let p = faulty();
    let refresh = Duration::from_millis(50);
    let kms = kms_over(
        p.clone(),
        Kms::builder().cache(kms::cache::CacheConfig {
            list_refresh: refresh,
            ..kms::cache::CacheConfig::default()
        }),
    )
    .await;
    // Valid data under versions 1, 2 and 3, then a cold cache.
    let mut warm = vec![kms.encrypt(b"valid", b"").await.unwrap()];
    for _ in 0..2 {
        kms.rotate().await.unwrap();
        warm.push(kms.encrypt(b"valid", b"").await.unwrap());
    }
    kms.clear_cache();
    for ct in &warm {
        assert_eq!(kms.decrypt(ct, b"").await.unwrap(), b"valid");
    }
    p.reset_calls();
    let started = Instant::now();
    let kms = Arc::new(kms);
    let mut tasks = Vec::new();
    for t in 0..200u64 {
        let kms = kms.clone();
        let warm = warm.clone();
        tasks.push(tokio::spawn(async move {
            let (mut forged_refused, mut valid_ok) = (0u64, 0u64);
            for i in 0..50u64 {
                let version = if (t + i) % 2 == 0 {
                    "99".to_owned()
                } else {
                    format!("{}", 1000 + t * 50 + i)
                };
                let err = kms
                    .decrypt(&forged("default", &version), b"")
                    .await
                    .unwrap_err();
                assert_eq!(
                    err.to_string(),
                    "Encryption key not found: default",
                    "{err:?}"
                );
                forged_refused += 1;
                // Valid traffic in between: old data and new data.
                let ct = &warm[(i % 3) as usize];
                assert_eq!(kms.decrypt(ct, b"").await.unwrap(), b"valid");
                let fresh = kms.encrypt(b"new", b"").await.unwrap();
                assert_eq!(kms.decrypt(&fresh, b"").await.unwrap(), b"new");
                valid_ok += 1;
            }
            (forged_refused, valid_ok)
        }));
    }
    let (mut forged_refused, mut valid_ok) = (0, 0);
    for t in tasks {
        let (f, v) = t.await.unwrap();
        forged_refused += f;
        valid_ok += v;
    }
    let elapsed = started.elapsed();
    let calls = p.calls();
    let windows = (elapsed.as_millis() / refresh.as_millis()) as u64 + 1;
    eprintln!(
        "{forged_refused} forged refused, {valid_ok} valid rounds, {calls} provider calls in {elapsed:?} ({windows} refresh windows)"
    );
    assert_eq!((forged_refused, valid_ok), (10_000, 10_000));
    assert!(
        calls <= 2 * windows + 2,
        "{calls} provider calls in {windows} windows"
    );
    assert_eq!(kms.circuit_state(), Some(CircuitState::Closed));
}

/// `encrypt_into` and `decrypt_into` append to the caller's buffer, agree
/// with `encrypt` and `decrypt`, and leave the buffer as it was on failure,
/// on the hot path (cached key) and the cold one (no cache).
#[tokio::test]
async fn into_variants_append_and_leave_the_buffer_as_it_was_on_failure() {
    for cached in [true, false] {
        let b = Kms::builder();
        let kms = if cached {
            b.provider_arc(faulty())
        } else {
            b.provider_unlayered(faulty())
        }
        .build()
        .await
        .unwrap();
        let mut ct = b"row:".to_vec();
        for size in [0, 1, 64, 1024, 16 * 1024] {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            ct.truncate(4);
            kms.encrypt_into(&plaintext, b"aad", &mut ct).await.unwrap();
            assert_eq!(&ct[..4], b"row:");
            assert_eq!(kms.decrypt(&ct[4..], b"aad").await.unwrap(), plaintext);
            let mut out = b"kept".to_vec();
            kms.decrypt_into(&ct[4..], b"aad", &mut out).await.unwrap();
            assert_eq!(&out[4..], &plaintext[..]);
            let mut out = b"kept".to_vec();
            let e = kms
                .decrypt_into(&ct[4..], b"other", &mut out)
                .await
                .unwrap_err();
            assert!(matches!(e, Error::Decryption), "{e}");
            assert_eq!(out, b"kept");
        }
    }
}

/// The default build encrypts 12-byte IVs with aws-lc-rs; without the
/// `aws-lc-aes-gcm` feature, with the pure-Rust aes-gcm.
#[test]
fn the_backend_follows_the_feature() {
    let expected = if cfg!(feature = "aws-lc-aes-gcm") {
        "aws-lc-rs"
    } else {
        "aes-gcm"
    };
    assert_eq!(kms::core::BACKEND_12, expected);
}
