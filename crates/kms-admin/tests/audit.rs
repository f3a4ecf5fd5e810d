//! Audit events and secrets in the admin API's logs. Its own test binary:
//! it installs a thread-local subscriber, and tracing caches per call site
//! whether anyone listens, so tests of another binary running in parallel
//! threads could make it miss events.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

mod common;
use common::*;

use axum::http::{Method, StatusCode};
use kms_testing::capture::LogCapture;
use serde_json::{Value, json};

#[tokio::test(flavor = "current_thread")]
async fn audit_events_are_logged_and_secrets_never_are() {
    let captured = LogCapture::new();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .json()
        .with_writer(captured.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary run on other threads without a subscriber:
    // a callsite they register while this one is being set up can have its
    // interest cached as "never"; recompute it with this subscriber known.
    tracing::callsite::rebuild_interest_cache();

    let (app, _) = app(env_kms(KEY1, None).await, config());
    let exp = now() + 600;
    let admin_jwt = hs256(&json!({"sub":"alice@example.com","role":"admin","exp":exp}));
    assert_eq!(
        call(Method::GET, HEALTH).send(&app).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(Method::GET, METADATA)
            .token(Some(&admin_jwt))
            .send(&app)
            .await
            .status,
        StatusCode::OK
    );
    let guess = "guessed-token-abcdef-0123";
    assert_eq!(
        call(Method::GET, HEALTH)
            .token(Some(guess))
            .client(77)
            .send(&app)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let posted = json!({"provider":"aws","region":"us-east-1","endpoint":"http://127.0.0.1:9",
        "timeout":200,"retryAttempts":0,
        "credentials":{"accessKeyId":"AKIAPOSTEDEXAMPLE","secretAccessKey":"posted-aws-secret-key"}});
    let r = call(Method::POST, CONFIG_TEST)
        .body(posted.to_string())
        .send(&app)
        .await;
    assert!(!r.text.contains("posted-aws-secret-key"));
    let body =
        json!({"provider":"env","credentials":{"encryptionKey":KEY2,"encryptionKeyPrevious":KEY1}});
    tracing::callsite::rebuild_interest_cache();
    assert_eq!(
        call(Method::PUT, CONFIG)
            .body(body.to_string())
            .send(&app)
            .await
            .status,
        StatusCode::OK
    );

    let logs = captured.contents();
    let events: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let audit: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "kms::audit" && e["fields"]["message"] == "admin request")
        .collect();
    assert!(audit.len() >= 5, "{logs}");
    let metadata = audit
        .iter()
        .find(|e| e["fields"]["route"] == METADATA)
        .unwrap();
    assert_eq!(metadata["fields"]["who"], "alice@example.com");
    assert_eq!(metadata["fields"]["auth"], "jwt");
    assert_eq!(metadata["fields"]["key_id"], "default");
    assert_eq!(metadata["fields"]["outcome"], "success");
    assert_eq!(metadata["fields"]["status"], 200);
    assert!(metadata["fields"]["request_id"].is_string());
    assert!(metadata["fields"]["latency_ms"].is_u64());
    let failed = audit.iter().find(|e| e["fields"]["status"] == 401).unwrap();
    assert_eq!(failed["fields"]["who"], "anonymous");
    assert!(
        events.iter().any(
            |e| e["target"] == "kms::alert" && e["fields"]["alert"] == "authentication_failure"
        )
    );
    assert!(
        events
            .iter()
            .any(|e| e["target"] == "kms::audit" && e["fields"]["op"] == "config.replace")
    );
    for secret in [
        TOKEN,
        KEY1,
        KEY2,
        guess,
        "posted-aws-secret-key",
        JWT_SECRET,
        admin_jwt.as_str(),
    ] {
        assert!(!logs.contains(secret), "secret in logs: {secret}");
    }
}
