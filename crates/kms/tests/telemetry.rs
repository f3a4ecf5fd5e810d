//! The facade's metrics layer (provider, resilience, metrics, cache) and the
//! DEBUG audit events of encrypt and decrypt.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kms::circuit::ResilienceConfig;
use kms::telemetry::{AUDIT_TARGET, names};
use kms::{KeyId, KeyMaterial, Kms, KmsBuilder};
use kms_testing::capture::{self, Captured};
use kms_testing::{Fault, FaultyProvider, MemoryProvider};
use serde_json::Value;

/// The DEBUG audit events of encrypt and decrypt.
fn data_ops(c: &Captured) -> Vec<&Value> {
    c.events(AUDIT_TARGET)
        .into_iter()
        .filter(|e| e["fields"]["message"] == "data operation")
        .collect()
}

/// Runs `fut` capturing its metrics and the events at `level` and above.
fn observe<F: Future>(level: tracing::Level, fut: F) -> (F::Output, Captured) {
    capture::observe(level, fut).unwrap()
}

fn faulty() -> Arc<FaultyProvider> {
    Arc::new(FaultyProvider::new(MemoryProvider::with_key(
        KeyId::default(),
    )))
}

const P: (&str, &str) = ("provider", "memory");
const CURRENT: (&str, &str) = ("operation", "current_key");

#[test]
fn cache_hits_are_not_provider_calls() {
    let p = faulty();
    let ((), c) = observe(tracing::Level::INFO, async {
        let kms = Kms::builder()
            .provider_arc(p.clone())
            .build()
            .await
            .unwrap();
        for _ in 0..5 {
            let ct = kms.encrypt(b"x", b"").await.unwrap();
            kms.decrypt(&ct, b"").await.unwrap();
        }
    });
    assert_eq!(p.calls(), 1);
    assert_eq!(
        c.counter(
            names::PROVIDER_REQUESTS_TOTAL,
            &[P, CURRENT, ("outcome", "ok")]
        ),
        Ok(1)
    );
    assert_eq!(
        c.histogram(names::KEY_RETRIEVAL_DURATION_SECONDS, &[P, CURRENT])
            .map(|h| h.len()),
        Ok(1)
    );
}

#[test]
fn a_miss_is_measured_with_its_retries() {
    let p = faulty();
    p.fail_next(2, Fault::Temporary);
    let ((), c) = observe(tracing::Level::INFO, async {
        let kms = Kms::builder()
            .provider_arc(p.clone())
            .resilience(ResilienceConfig {
                retries: 2,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
                ..ResilienceConfig::default()
            })
            .build()
            .await
            .unwrap();
        kms.encrypt(b"x", b"").await.unwrap();
    });
    assert_eq!(p.calls(), 3, "two failed attempts and a retry that worked");
    assert_eq!(
        c.counter(
            names::PROVIDER_REQUESTS_TOTAL,
            &[P, CURRENT, ("outcome", "ok")]
        ),
        Ok(1),
        "one call as seen above the resilience layer"
    );
    assert_eq!(
        c.counter(
            names::PROVIDER_REQUESTS_TOTAL,
            &[P, CURRENT, ("outcome", "error")]
        ),
        Ok(0)
    );
}

#[test]
fn circuit_open_refusals_count_as_unavailable() {
    let p = faulty();
    p.set_fault(Fault::Temporary);
    let ((), c) = observe(tracing::Level::INFO, async {
        let kms = Kms::builder()
            .provider_arc(p.clone())
            .resilience(ResilienceConfig {
                retries: 0,
                failure_threshold: 1,
                open_duration: Duration::from_secs(60),
                ..ResilienceConfig::default()
            })
            .build()
            .await
            .unwrap();
        for _ in 0..3 {
            kms.encrypt(b"x", b"").await.unwrap_err();
        }
    });
    assert_eq!(p.calls(), 1, "the breaker refused the next two");
    assert_eq!(
        c.counter(
            names::PROVIDER_ERRORS_TOTAL,
            &[P, CURRENT, ("kind", "KMS_UNAVAILABLE")]
        ),
        Ok(3)
    );
    let alerts = c
        .events
        .iter()
        .filter(|e| e["fields"]["alert"] == "kms_unavailable")
        .count();
    assert_eq!(alerts, 3, "{}", c.raw);
}

#[test]
fn slow_threshold_is_configurable() {
    let lookup = |vars: &'static [(&'static str, &'static str)]| {
        move |n: &str| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let default = KmsBuilder::from_lookup(lookup(&[])).unwrap().config();
    assert_eq!(default.slow_threshold_ms, 1000);
    let json = serde_json::to_string(&default).unwrap();
    assert!(json.contains("\"slowThreshold\":1000"), "{json}");
    let bare = KmsBuilder::from_lookup(lookup(&[("KMS_SLOW_THRESHOLD", "250")]))
        .unwrap()
        .config();
    assert_eq!(bare.slow_threshold_ms, 250);
    let unit = KmsBuilder::from_lookup(lookup(&[("KMS_SLOW_THRESHOLD", "2s")]))
        .unwrap()
        .config();
    assert_eq!(unit.slow_threshold_ms, 2000);
    let err = KmsBuilder::from_lookup(lookup(&[("KMS_SLOW_THRESHOLD", "fast")])).unwrap_err();
    assert!(err.to_string().contains("KMS_SLOW_THRESHOLD"), "{err}");
    let built = Kms::builder()
        .slow_threshold(Duration::from_millis(40))
        .config();
    assert_eq!(built.slow_threshold_ms, 40);
}

#[test]
fn slow_provider_calls_raise_the_alert_through_the_facade() {
    let p = faulty();
    p.set_latency(Duration::from_millis(30));
    let ((), c) = observe(tracing::Level::INFO, async {
        let kms = Kms::builder()
            .provider_arc(p.clone())
            .slow_threshold(Duration::from_millis(5))
            .build()
            .await
            .unwrap();
        kms.encrypt(b"x", b"").await.unwrap();
    });
    let slow: Vec<&Value> = c
        .events
        .iter()
        .filter(|e| e["fields"]["alert"] == "slow_response")
        .collect();
    assert_eq!(slow.len(), 1, "{}", c.raw);
    assert_eq!(slow[0]["fields"]["threshold_ms"], 5);
}

#[test]
fn data_operations_are_audited_at_debug() {
    let memory = MemoryProvider::new();
    let material = KeyMaterial::from_bytes([0x3D; 32]);
    let hex = material.to_hex().to_string();
    memory.add_version(&KeyId::default(), material);
    let ((), c) = observe(tracing::Level::DEBUG, async {
        let kms = Kms::builder().provider(memory).build().await.unwrap();
        let ct = kms.encrypt(b"top secret", b"row:1").await.unwrap();
        assert_eq!(kms.decrypt(&ct, b"row:1").await.unwrap(), b"top secret");
        kms.decrypt(&ct, b"row:2").await.unwrap_err();
        kms.decrypt(b"not a ciphertext", b"").await.unwrap_err();
    });
    let ops = data_ops(&c);
    assert_eq!(ops.len(), 4, "{}", c.raw);
    for e in &ops {
        assert_eq!(e["level"], "DEBUG");
        assert!(e["fields"]["latency_us"].is_u64(), "{e}");
    }
    let f = |i: usize| &ops[i]["fields"];
    assert_eq!(f(0)["op"], "encrypt");
    assert_eq!(f(0)["key_id"], "default");
    assert_eq!(f(0)["version"], "1");
    assert_eq!(f(0)["outcome"], "ok");
    assert_eq!(f(1)["op"], "decrypt");
    assert_eq!(f(1)["version"], "1");
    assert_eq!(f(1)["outcome"], "ok");
    assert_eq!(f(2)["outcome"], "error");
    assert_eq!(f(2)["error"], "DECRYPTION_FAILED");
    assert_eq!(f(2)["key_id"], "default");
    assert_eq!(f(3)["error"], "MALFORMED_CIPHERTEXT");
    assert!(f(3).get("key_id").is_none());
    let raw = c.raw.to_ascii_lowercase();
    assert!(!raw.contains(&hex), "{raw}");
    assert!(!raw.contains("top secret"), "{raw}");
}

#[test]
fn data_operations_are_not_audited_at_info() {
    let ((), c) = observe(tracing::Level::INFO, async {
        let kms = Kms::builder().provider_arc(faulty()).build().await.unwrap();
        let ct = kms.encrypt(b"x", b"").await.unwrap();
        kms.decrypt(&ct, b"").await.unwrap();
    });
    assert!(data_ops(&c).is_empty(), "{}", c.raw);
    // The provider call below the cache is still audited at INFO.
    assert!(
        c.events
            .iter()
            .any(|e| e["target"] == AUDIT_TARGET && e["fields"]["message"] == "key operation"),
        "{}",
        c.raw
    );
}
