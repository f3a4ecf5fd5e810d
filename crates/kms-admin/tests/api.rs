//! The admin router, route by route, over the env provider and test doubles.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey};
use kms::{KeyId, KeyProvider, Kms};
use kms_admin::{AdminConfig, AuthConfig, SharedKms};
use kms_testing::{Fault, FaultyProvider, MemoryProvider};
use serde_json::json;
use tower::ServiceExt as _;

mod common;
use common::*;

#[tokio::test]
async fn health_has_the_spec_shape_with_circuit_and_cache() {
    let (app, _) = app(env_kms(KEY1, None).await, config());
    let r = call(Method::GET, HEALTH).send(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["success"], true);
    let data = &r.json["data"];
    assert_eq!(data["provider"], "env");
    assert_eq!(data["healthy"], true);
    assert!(data["lastChecked"].as_str().unwrap().ends_with('Z'));
    assert!(data["responseTime"].is_u64());
    assert_eq!(data["circuit"], "closed");
    assert!(data["cache"]["hits"].is_u64(), "{}", r.text);
    // A request id is always returned; a sane one given by the caller is kept.
    assert_eq!(r.headers["x-request-id"].len(), 32);
    let r = call(Method::GET, HEALTH)
        .header("x-request-id", "abc-123")
        .send(&app)
        .await;
    assert_eq!(r.headers["x-request-id"], "abc-123");
}

#[tokio::test]
async fn metadata_has_the_spec_fields() {
    let (app, _) = app(env_kms(KEY1, None).await, config());
    let r = call(Method::GET, METADATA).send(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let data = &r.json["data"];
    assert_eq!(data["keyId"], "default");
    assert_eq!(data["enabled"], true);
    assert_eq!(data["keyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(data["keySpec"], "AES-256");
    for field in ["description", "createdAt", "lastRotated"] {
        assert!(data.get(field).is_some(), "{field} missing: {}", r.text);
    }
}

#[tokio::test]
async fn rotate_creates_a_version_and_old_data_still_decrypts() {
    let memory = Arc::new(MemoryProvider::with_key(KeyId::default()));
    let kms = Kms::builder()
        .provider_arc(memory.clone())
        .build()
        .await
        .unwrap();
    let (app, shared) = app(kms, config());
    let before = shared
        .kms()
        .encrypt_str("card 4242", b"row:1")
        .await
        .unwrap();
    let r = call(Method::POST, ROTATE).send(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["message"], "Encryption key rotated successfully");
    let version = r.json["data"]["newKeyVersion"].as_str().unwrap().to_owned();
    let meta = call(Method::GET, METADATA).send(&app).await;
    assert_eq!(meta.json["data"]["currentVersion"], version.as_str());
    // The cache was cleared: new data uses the new version at once.
    let after = shared
        .kms()
        .encrypt_str("card 4242", b"row:1")
        .await
        .unwrap();
    let envelope = kms::format::from_text(&after).unwrap();
    let parsed = kms::Envelope::parse(&envelope).unwrap();
    assert_eq!(parsed.key_version().unwrap().as_str(), version);
    assert_eq!(
        shared.kms().decrypt_str(&before, b"row:1").await.unwrap(),
        "card 4242"
    );
}

/// A provider that keeps 2 versions: the rotation that would delete
/// version 1 is a 409 naming the fix; metadata and health say so first.
#[tokio::test]
async fn rotate_that_would_evict_a_live_version_is_a_409() {
    let memory = Arc::new(MemoryProvider::with_key(KeyId::default()).with_max_versions(2));
    let kms = Kms::builder()
        .provider_arc(memory.clone())
        .build()
        .await
        .unwrap();
    let (app, _) = app(kms, config());
    let r = call(Method::POST, ROTATE).send(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let meta = call(Method::GET, METADATA).send(&app).await;
    assert_eq!(meta.json["data"]["maxVersions"], 2);
    assert_eq!(meta.json["data"]["versionsRemaining"], 0);
    let health = call(Method::GET, HEALTH).send(&app).await;
    assert_eq!(health.status, StatusCode::OK);
    assert!(
        health.json["data"]["warning"]
            .as_str()
            .unwrap()
            .contains("kms rewrap"),
        "{}",
        health.text
    );
    let r = call(Method::POST, ROTATE).send(&app).await;
    assert_error(&r, StatusCode::CONFLICT, "RETENTION_EXHAUSTED");
    assert!(r.text.contains("KMS_MIN_DECRYPTION_VERSION"), "{}", r.text);
    assert_eq!(memory.versions(&KeyId::default()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn rotate_on_the_env_provider_is_a_clear_400() {
    let (app, _) = app(env_kms(KEY1, None).await, config());
    let r = call(Method::POST, ROTATE).send(&app).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "UNSUPPORTED");
}

#[tokio::test]
async fn authentication_statuses() {
    let (app, _) = app(env_kms(KEY1, None).await, config());
    let exp = now() + 600;
    let cases: Vec<(&str, Option<String>, StatusCode)> = vec![
        ("no token", None, StatusCode::UNAUTHORIZED),
        (
            "wrong token",
            Some("test-admin-token-0123456780".into()),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "HS256 admin",
            Some(hs256(&json!({"sub":"alice","role":"admin","exp":exp}))),
            StatusCode::OK,
        ),
        (
            "HS256 roles list",
            Some(hs256(
                &json!({"sub":"bob","roles":["ops","admin"],"exp":exp}),
            )),
            StatusCode::OK,
        ),
        (
            "HS256 expired",
            Some(hs256(
                &json!({"sub":"alice","role":"admin","exp":now() - 3600}),
            )),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "HS256 without exp",
            Some(hs256(&json!({"sub":"alice","role":"admin"}))),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "HS256 non-admin",
            Some(hs256(&json!({"sub":"eve","role":"viewer","exp":exp}))),
            StatusCode::FORBIDDEN,
        ),
        (
            "HS256 other secret",
            Some(jwt(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-of-at-least-thirty-two-bytes").unwrap(),
                &json!({"sub":"alice","role":"admin","exp":exp}),
            )),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "RS256 admin",
            Some(rs256(
                RSA_PRIVATE,
                &json!({"sub":"carol","role":"admin","exp":exp}),
            )),
            StatusCode::OK,
        ),
        (
            "RS256 other key",
            Some(rs256(
                OTHER_RSA_PRIVATE,
                &json!({"sub":"carol","role":"admin","exp":exp}),
            )),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "RS256 non-admin",
            Some(rs256(RSA_PRIVATE, &json!({"sub":"dave","exp":exp}))),
            StatusCode::FORBIDDEN,
        ),
        (
            // Algorithm confusion: an HS256 token keyed with the RSA public key.
            "HS256 keyed with the public key",
            Some(jwt(
                Algorithm::HS256,
                &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()).unwrap(),
                &json!({"sub":"mallory","role":"admin","exp":exp}),
            )),
            StatusCode::UNAUTHORIZED,
        ),
        ("garbage", Some("a.b.c".into()), StatusCode::UNAUTHORIZED),
    ];
    for (i, (name, token, expected)) in cases.into_iter().enumerate() {
        // A client each, so the failed-authentication lockout does not interfere.
        let r = call(Method::GET, HEALTH)
            .token(token.as_deref())
            .client(u8::try_from(100 + i).unwrap())
            .send(&app)
            .await;
        assert_eq!(r.status, expected, "{name}: {}", r.text);
        match expected {
            StatusCode::UNAUTHORIZED => assert_error(&r, expected, "UNAUTHORIZED"),
            StatusCode::FORBIDDEN => assert_error(&r, expected, "FORBIDDEN"),
            _ => {}
        }
    }
    // A scheme other than Bearer.
    let r = call(Method::GET, HEALTH)
        .token(None)
        .header("authorization", &format!("Basic {TOKEN}"))
        .client(200)
        .send(&app)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_when_configured() {
    let mut c = config();
    c.auth = AuthConfig::new()
        .jwt_hs256_secret(JWT_SECRET.as_bytes())
        .unwrap()
        .jwt_issuer("https://issuer.example")
        .jwt_audience("kms-admin");
    let (app, _) = app(env_kms(KEY1, None).await, c);
    let exp = now() + 600;
    let good = hs256(
        &json!({"sub":"a","role":"admin","exp":exp,"iss":"https://issuer.example","aud":"kms-admin"}),
    );
    let wrong_iss = hs256(
        &json!({"sub":"a","role":"admin","exp":exp,"iss":"https://evil.example","aud":"kms-admin"}),
    );
    let wrong_aud = hs256(
        &json!({"sub":"a","role":"admin","exp":exp,"iss":"https://issuer.example","aud":"other"}),
    );
    assert_eq!(
        call(Method::GET, HEALTH)
            .token(Some(&good))
            .send(&app)
            .await
            .status,
        StatusCode::OK
    );
    for t in [wrong_iss, wrong_aud, TOKEN.to_owned()] {
        let r = call(Method::GET, HEALTH)
            .token(Some(&t))
            .client(7)
            .send(&app)
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn no_authentication_method_means_no_router() {
    let shared = SharedKms::new(env_kms(KEY1, None).await);
    let err = kms_admin::router(shared, AdminConfig::new(AuthConfig::new())).unwrap_err();
    assert!(err.to_string().contains("KMS_ADMIN_TOKEN"), "{err}");
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let (app, _) = app(env_kms(KEY1, None).await, config());
    let r = call(Method::GET, "/api/admin/kms/nothing").send(&app).await;
    assert_error(&r, StatusCode::NOT_FOUND, "NOT_FOUND");
    let r = call(Method::DELETE, HEALTH).send(&app).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED");
    // Without metrics configured, /metrics does not exist.
    let r = call(Method::GET, "/metrics").send(&app).await;
    assert_error(&r, StatusCode::NOT_FOUND, "NOT_FOUND");
}

#[tokio::test]
async fn oversized_and_malformed_bodies() {
    let mut c = config();
    c.body_limit = 2048;
    c.limits.sensitive_per_minute = 0;
    let (app, _) = app(env_kms(KEY1, None).await, c);
    let big = format!(r#"{{"provider":"env","keyId":"{}"}}"#, "x".repeat(4096));
    let r = call(Method::PUT, CONFIG).body(big.clone()).send(&app).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    // The same without a Content-Length (streamed): still 413.
    let stream = futures_stream(big);
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(CONFIG_TEST)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(stream)
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 9], 1))));
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    for (body, code) in [
        (r#"{"provider": "env","#, "INVALID_JSON"),
        ("not json at all", "INVALID_JSON"),
        (r#"{"provider":"azure"}"#, "INVALID_CONFIG"),
        (r#"{"provider":"env","colour":"blue"}"#, "INVALID_CONFIG"),
        (r#"{"provider":"env","timeout":"soon"}"#, "INVALID_CONFIG"),
        (
            r#"{"provider":"env","credentials":{"encryptionKey":"s3cr3t"}}"#,
            "INVALID_CONFIG",
        ),
    ] {
        for method in [Method::PUT, Method::POST] {
            let path = if method == Method::PUT {
                CONFIG
            } else {
                CONFIG_TEST
            };
            let r = call(method, path).body(body).send(&app).await;
            assert_error(&r, StatusCode::BAD_REQUEST, code);
        }
    }
    let r = call(Method::POST, CONFIG_TEST)
        .body(r#"{"provider":"env","credentials":{"encryptionKey":"s3cr3t"}}"#)
        .send(&app)
        .await;
    // The variable is named, its (secret) value is not echoed.
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("ENCRYPTION_KEY"), "{message}");
    assert!(!r.text.contains("s3cr3t"), "{}", r.text);
}

/// A body without Content-Length.
fn futures_stream(text: String) -> Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text
        .into_bytes()
        .chunks(512)
        .map(|c| Ok(c.to_vec()))
        .collect();
    Body::from_stream(futures_util::stream::iter(chunks))
}

#[tokio::test]
async fn rate_limits_with_retry_after() {
    let mut c = config();
    c.limits.requests_per_minute = 60;
    c.limits.burst = 3;
    c.limits.sensitive_per_minute = 2;
    let memory = Arc::new(MemoryProvider::with_key(KeyId::default()));
    let kms = Kms::builder().provider_arc(memory).build().await.unwrap();
    let (app, _) = app(kms, c);
    for _ in 0..3 {
        assert_eq!(
            call(Method::GET, HEALTH).send(&app).await.status,
            StatusCode::OK
        );
    }
    let r = call(Method::GET, HEALTH).send(&app).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another client is not affected.
    assert_eq!(
        call(Method::GET, HEALTH).client(2).send(&app).await.status,
        StatusCode::OK
    );
    // Rotation is stricter: one, then 429, while reads still pass.
    assert_eq!(
        call(Method::POST, ROTATE).client(3).send(&app).await.status,
        StatusCode::OK
    );
    let r = call(Method::POST, ROTATE).client(3).send(&app).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(
        call(Method::GET, METADATA)
            .client(3)
            .send(&app)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn repeated_failed_authentications_lock_the_client_out() {
    let mut c = config();
    c.limits.auth_failures = 3;
    let (app, _) = app(env_kms(KEY1, None).await, c);
    for guess in [
        "guess-number-one-xxxx",
        "guess-number-two-xxxx",
        "guess-number-three-xx",
    ] {
        let r = call(Method::GET, HEALTH)
            .token(Some(guess))
            .send(&app)
            .await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    }
    // Locked out: even the right token gets 429, so guesses learn nothing.
    let r = call(Method::GET, HEALTH).send(&app).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((250..=300).contains(&retry), "{retry}");
    // Other clients are not.
    assert_eq!(
        call(Method::GET, HEALTH).client(9).send(&app).await.status,
        StatusCode::OK
    );
}

/// A client on a fault-injecting in-memory provider, without retries.
async fn faulty_kms() -> (Arc<FaultyProvider>, Kms) {
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(
        KeyId::default(),
    )));
    let kms = Kms::builder()
        .provider_arc(faulty.clone())
        .retry_attempts(0)
        .build()
        .await
        .unwrap();
    (faulty, kms)
}

#[tokio::test]
async fn provider_unavailable_is_503_and_denied_is_403() {
    let (faulty, kms) = faulty_kms().await;
    let (app, _) = app(kms, config());
    faulty.set_fault(Fault::Temporary);
    let r = call(Method::GET, METADATA).send(&app).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "KMS_UNAVAILABLE");
    assert_eq!(r.json["error"]["message"], "KMS service unavailable");
    let r = call(Method::GET, HEALTH).send(&app).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "KMS_UNAVAILABLE");
    assert_eq!(r.json["data"]["healthy"], false);
    faulty.set_fault(Fault::Permanent);
    let r = call(Method::POST, ROTATE).send(&app).await;
    assert_error(&r, StatusCode::FORBIDDEN, "ACCESS_DENIED");
    assert_eq!(
        r.json["error"]["message"],
        "Access denied to encryption key"
    );
}

#[tokio::test]
async fn slow_requests_hit_the_time_limit() {
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(
        KeyId::default(),
    )));
    faulty.set_latency(Duration::from_secs(2));
    let kms = Kms::builder().provider_arc(faulty).build().await.unwrap();
    let mut c = config();
    c.request_timeout = Duration::from_millis(100);
    let (app, _) = app(kms, c);
    let started = std::time::Instant::now();
    let r = call(Method::GET, METADATA).send(&app).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "REQUEST_TIMEOUT");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn config_is_shown_without_secrets() {
    let mut c = config();
    c.settings = settings(&[
        ("KMS_PROVIDER", "env"),
        ("ENCRYPTION_KEY", KEY1),
        ("VAULT_TOKEN", "hvs.server-vault-token"),
    ]);
    let (app, _) = app(env_kms(KEY1, None).await, c);
    let r = call(Method::GET, CONFIG).send(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let data = &r.json["data"];
    assert_eq!(data["provider"], "env");
    assert_eq!(data["keyId"], "default");
    assert_eq!(data["timeout"], 10_000);
    assert_eq!(data["credentials"]["encryptionKey"], "[REDACTED]");
    assert!(!r.text.contains(KEY1));
    assert!(!r.text.contains("server-vault-token"));
}

#[tokio::test]
async fn config_test_reports_and_changes_nothing() {
    let (app, shared) = app(env_kms(KEY1, None).await, config());
    let body = json!({"provider":"env","keyId":"default","credentials":{"encryptionKey":KEY2}})
        .to_string();
    let r = call(Method::POST, CONFIG_TEST).body(body).send(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["data"]["healthy"], true);
    assert_eq!(r.json["data"]["keyAvailable"], true);
    let fp2 = kms::KeyMaterial::from_hex(KEY2)
        .unwrap()
        .fingerprint()
        .to_string();
    assert_eq!(r.json["data"]["fingerprint"], fp2.as_str());
    assert!(!r.text.contains(KEY2));
    // Nothing changed.
    let fp1 = kms::KeyMaterial::from_hex(KEY1).unwrap().fingerprint();
    let ct = shared.kms().encrypt(b"x", b"").await.unwrap();
    assert_eq!(kms::Envelope::parse(&ct).unwrap().fingerprint(), fp1);
}

#[cfg(feature = "vault")]
#[tokio::test]
async fn config_test_of_an_unreachable_provider_is_503_without_secrets() {
    let (app, _) = app(env_kms(KEY1, None).await, config());
    // An unreachable provider: 503, with the report, never the posted token.
    let body = json!({
        "provider":"vault","address":"http://127.0.0.1:9","timeout":300,"retryAttempts":0,
        "credentials":{"token":"hvs.posted-secret-token"}
    })
    .to_string();
    let r = call(Method::POST, CONFIG_TEST).body(body).send(&app).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "KMS_UNAVAILABLE");
    assert_eq!(r.json["data"]["keyAvailable"], false);
    assert!(!r.text.contains("posted-secret-token"));
}

#[tokio::test]
async fn a_swap_that_would_strand_data_is_refused() {
    let (app, shared) = app(env_kms(KEY1, None).await, config());
    let stored = shared.kms().encrypt_str("secret", b"").await.unwrap();
    let body = json!({"provider":"env","credentials":{"encryptionKey":KEY2}}).to_string();
    let r = call(Method::PUT, CONFIG).body(body).send(&app).await;
    assert_error(&r, StatusCode::CONFLICT, "KEYS_NOT_MIGRATED");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kms migrate")
    );
    let fp1 = kms::KeyMaterial::from_hex(KEY1)
        .unwrap()
        .fingerprint()
        .to_string();
    assert_eq!(
        r.json["data"]["missingVersions"][0]["fingerprint"],
        fp1.as_str()
    );
    assert_eq!(
        shared.kms().decrypt_str(&stored, b"").await.unwrap(),
        "secret"
    );
}

#[tokio::test]
async fn a_swap_keeping_every_version_goes_through() {
    let (app, shared) = app(env_kms(KEY1, None).await, config());
    let stored = shared.kms().encrypt_str("secret", b"").await.unwrap();
    let body = json!({"provider":"env","timeout":2500,
        "credentials":{"encryptionKey":KEY2,"encryptionKeyPrevious":KEY1}})
    .to_string();
    let r = call(Method::PUT, CONFIG).body(body).send(&app).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["message"], "KMS configuration updated");
    assert!(!r.text.contains(KEY1) && !r.text.contains(KEY2));
    let fp2 = kms::KeyMaterial::from_hex(KEY2).unwrap().fingerprint();
    let ct = shared.kms().encrypt(b"x", b"").await.unwrap();
    assert_eq!(kms::Envelope::parse(&ct).unwrap().fingerprint(), fp2);
    assert_eq!(
        shared.kms().decrypt_str(&stored, b"").await.unwrap(),
        "secret"
    );
    let r = call(Method::GET, CONFIG).send(&app).await;
    assert_eq!(r.json["data"]["timeout"], 2500);
    assert_eq!(r.json["data"]["credentials"]["encryptionKey"], "[REDACTED]");
    assert!(!r.text.contains(KEY1) && !r.text.contains(KEY2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swaps_under_concurrent_load_fail_no_request() {
    let mut c = config();
    c.limits.requests_per_minute = 0;
    c.limits.sensitive_per_minute = 0;
    let (app, shared) = app(env_kms(KEY1, Some(KEY2)).await, c);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4u8 {
        let (app, shared, stop) = (app.clone(), shared.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut done = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || done < 20 {
                let kms = shared.kms();
                let aad = format!("worker:{w}:{done}");
                let ct = kms.encrypt_str("payload", aad.as_bytes()).await.unwrap();
                // Decrypt through whichever configuration is current now.
                let pt = shared.kms().decrypt_str(&ct, aad.as_bytes()).await.unwrap();
                assert_eq!(pt, "payload");
                let r = call(Method::GET, METADATA).client(w).send(&app).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.text);
                done += 1;
                // Cache hits never wait: let the runtime drive its timers.
                tokio::task::yield_now().await;
            }
            done
        }));
    }
    let configs = [
        json!({"provider":"env","credentials":{"encryptionKey":KEY2,"encryptionKeyPrevious":KEY1}}),
        json!({"provider":"env","credentials":{"encryptionKey":KEY1,"encryptionKeyPrevious":KEY2}}),
    ];
    for i in 0..10 {
        let r = call(Method::PUT, CONFIG)
            .body(configs[i % 2].to_string())
            .client(50)
            .send(&app)
            .await;
        assert_eq!(r.status, StatusCode::OK, "swap {i}: {}", r.text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        total += w.await.unwrap();
    }
    assert!(total >= 80, "{total}");
}

fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| kms_admin::install_prometheus().unwrap())
        .clone()
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format() {
    let handle = prometheus();
    let memory = Arc::new(MemoryProvider::with_key(KeyId::default()));
    let kms = Kms::builder().provider_arc(memory).build().await.unwrap();
    let (app, shared) = app(kms, config().metrics(handle.clone()));
    shared.kms().encrypt(b"x", b"").await.unwrap();
    shared.kms().encrypt(b"y", b"").await.unwrap();
    assert_eq!(
        call(Method::GET, METADATA).send(&app).await.status,
        StatusCode::OK
    );
    let r = call(Method::GET, "/metrics").token(None).send(&app).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "UNAUTHORIZED");
    let r = call(Method::GET, "/metrics").send(&app).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    for name in [
        "kms_admin_requests_total",
        "kms_cache_hits_total",
        "kms_circuit_state",
        "kms_key_retrieval_duration_seconds",
    ] {
        assert!(r.text.contains(name), "{name} missing:\n{}", r.text);
    }
    assert!(!r.text.contains(TOKEN));

    let mut public = config().metrics(handle);
    public.metrics_public = true;
    let (app, _) = self::app(env_kms(KEY1, None).await, public);
    let r = call(Method::GET, "/metrics").token(None).send(&app).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// A scrape runs a provider health check, so that `kms_provider_healthy`
/// follows the provider without anyone calling the health endpoint; many
/// scrapes at once (or anyone, when `/metrics` is public) share one check
/// every 5 s instead of each calling the provider; a check that hangs
/// holds a scrape up for 2 s at most. (The gauge's value is checked by the
/// end-to-end Prometheus test: here other tests of this binary share the
/// recorder and the provider name.)
#[tokio::test]
async fn scrapes_check_the_provider_at_most_every_five_seconds() {
    let handle = prometheus();
    let (faulty, kms) = faulty_kms().await;
    let mut public = config().metrics(handle);
    public.metrics_public = true;
    public.limits.requests_per_minute = 1000;
    public.limits.burst = 100;
    let (app, _) = app(kms, public);
    // The first check also reads the key's retention (kept for a minute).
    let r = call(Method::GET, "/metrics").token(None).send(&app).await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let before = faulty.calls();
    let scrapes = (0..20).map(|_| call(Method::GET, "/metrics").token(None).send(&app));
    let answers = futures_util::future::join_all(scrapes).await;
    assert!(answers.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(faulty.calls() - before, 1, "20 scrapes, one health check");

    // Past the interval, the next scrape checks again; a provider that
    // hangs holds it up for the 2 s bound, not for the request time limit.
    tokio::time::sleep(Duration::from_millis(5100)).await;
    faulty.set_fault(Fault::Hang);
    let started = std::time::Instant::now();
    let r = call(Method::GET, "/metrics").token(None).send(&app).await;
    assert_eq!(r.status, StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(faulty.calls() - before, 2, "one check per interval");
}
