//! The Google Cloud Secret Manager provider against the in-process emulator
//! (`kms-gcp-emulator`), keys made the way the spec's set-up makes them
//! (`gcloud secrets create boosterbeacon-encryption-key-default
//! --data-file=-` with `openssl rand -hex 32`), here through the official
//! Rust client, which the provider also uses.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model::replication::Automatic;
use google_cloud_secretmanager_v1::model::{Replication, Secret, SecretPayload};
use kms::circuit::ResilienceConfig;
use kms::gcp::GcpProvider;
use kms::{Envelope, Error, KeyId, KeyProvider, KeyVersion, Kms};
use kms_gcp_emulator::{Emulator, EmulatorHandle};
use kms_testing::FaultyProvider;
use kms_tests::conformance::{self, Expect};

use kms_tests::fixtures::{error_chain, kms_cli, kms_from, random_hex, text_version};

const PROJECT: &str = "boosterbeacon-test";

fn secret_name(key_id: &str) -> String {
    format!("projects/{PROJECT}/secrets/boosterbeacon-encryption-key-{key_id}")
}

/// The official client, pointed at the emulator without credentials.
pub(crate) async fn admin(emu: &EmulatorHandle) -> SecretManagerService {
    SecretManagerService::builder()
        .with_endpoint(&emu.endpoint)
        .with_credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
        .build()
        .await
        .unwrap()
}

/// `gcloud secrets create boosterbeacon-encryption-key-<id> --data-file=-`:
/// a secret with automatic replication and a first version holding `payload`.
pub(crate) async fn create_key(client: &SecretManagerService, key_id: &str, payload: &str) {
    client
        .create_secret()
        .set_parent(format!("projects/{PROJECT}"))
        .set_secret_id(format!("boosterbeacon-encryption-key-{key_id}"))
        .set_secret(
            Secret::new().set_replication(Replication::new().set_automatic(Automatic::new())),
        )
        .send()
        .await
        .unwrap();
    add_version(client, key_id, payload).await;
}

async fn add_version(client: &SecretManagerService, key_id: &str, payload: &str) {
    client
        .add_secret_version()
        .set_parent(secret_name(key_id))
        .set_payload(SecretPayload::new().set_data(payload.as_bytes().to_vec()))
        .send()
        .await
        .unwrap();
}

/// An emulator holding key `default`, made as the spec says; returns its hex.
async fn emulator_with_default_key() -> (EmulatorHandle, SecretManagerService, String) {
    let emu = Emulator::start().await.unwrap();
    let client = admin(&emu).await;
    let key = random_hex();
    create_key(&client, "default", &key).await;
    (emu, client, key)
}

/// The spec's step 3 (`KMS_PROVIDER=gcp`, `KMS_KEY_ID=default`,
/// `GOOGLE_CLOUD_PROJECT`) plus the emulator settings and `extra`.
pub(crate) fn spec_env(emu: &EmulatorHandle, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("KMS_PROVIDER", "gcp"),
        ("KMS_KEY_ID", "default"),
        ("GOOGLE_CLOUD_PROJECT", PROJECT),
        ("KMS_GCP_ENDPOINT", emu.endpoint.as_str()),
        ("KMS_GCP_ANONYMOUS", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

async fn provider(emu: &EmulatorHandle) -> GcpProvider {
    GcpProvider::builder()
        .project(PROJECT)
        .endpoint(&emu.endpoint)
        .anonymous(true)
        .build()
        .await
        .unwrap()
}

/// The spec's set-up end to end: the key from the set-up encrypts and
/// decrypts through the library and through the `kms` CLI, both ways.
#[tokio::test]
async fn gcp_spec_setup_through_library_and_cli() {
    let (emu, _client, key) = emulator_with_default_key().await;
    let vars = spec_env(&emu, &[]);
    let kms = kms_from(&vars).await;
    assert_eq!(kms.config().provider, "gcp");

    let current = kms.provider().current_key(&KeyId::default()).await.unwrap();
    assert_eq!(*current.material().to_hex(), key);
    assert_eq!(
        current.version().as_str(),
        "1",
        "latest must report its real number"
    );

    let secret = "sk_live_51H8example";
    let stored = kms.encrypt_str(secret, b"users:42").await.unwrap();
    assert_eq!(kms.decrypt_str(&stored, b"users:42").await.unwrap(), secret);
    assert_eq!(text_version(&stored).as_str(), "1");

    let (code, out, err) =
        kms_cli(&vars, &["encrypt", "--aad", "users:42"], secret.as_bytes()).await;
    assert_eq!(code, 0, "kms encrypt: {err}");
    assert_eq!(
        kms.decrypt_str(out.trim(), b"users:42").await.unwrap(),
        secret
    );

    let (code, out, err) =
        kms_cli(&vars, &["decrypt", "--aad", "users:42"], stored.as_bytes()).await;
    assert_eq!(code, 0, "kms decrypt: {err}");
    assert_eq!(out, secret);

    let (code, out, err) = kms_cli(&vars, &["health"], b"").await;
    assert_eq!(code, 0, "kms health: {out} {err}");
    let health: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["data"]["provider"], "gcp", "{out}");
    assert_eq!(health["data"]["healthy"], true, "{out}");

    let (code, out, err) = kms_cli(&vars, &["metadata"], b"").await;
    assert_eq!(code, 0, "kms metadata: {err}");
    let meta: serde_json::Value = serde_json::from_str(&out).unwrap();
    let data = &meta["data"];
    assert_eq!(data["keyId"], "default", "{out}");
    assert_eq!(data["enabled"], true, "{out}");
    assert_eq!(data["provider"], "gcp", "{out}");
    assert_eq!(data["currentVersion"], "1", "{out}");
    assert!(data["createdAt"].is_string(), "{out}");
    assert!(data["lastRotated"].is_null(), "never rotated: {out}");
    assert!(!out.contains(&key), "metadata shows the key: {out}");
}

#[tokio::test]
async fn gcp_provider_conformance() {
    let (emu, _client, _) = emulator_with_default_key().await;
    let p = provider(&emu).await;
    conformance::run(Arc::new(p), &KeyId::default(), Expect { rotates: true }).await;
}

/// Rotation adds a version; disabling the newest version falls back to the
/// newest enabled one; destroying an old version makes its ciphertexts fail
/// with a clear error while everything else keeps working.
#[tokio::test]
async fn gcp_rotation_disable_and_destroy() {
    let (emu, client, first_key) = emulator_with_default_key().await;
    let vars = spec_env(&emu, &[("KMS_CACHE_TTL", "0")]);
    let kms = kms_from(&vars).await;
    let id = KeyId::default();
    let old = kms.encrypt_str("before", b"").await.unwrap();

    let v2 = kms.rotate().await.unwrap();
    assert_eq!(v2.as_str(), "2");
    let new = kms.encrypt_str("after", b"").await.unwrap();
    assert_eq!(text_version(&new), v2);
    assert_eq!(kms.decrypt_str(&old, b"").await.unwrap(), "before");
    let other = kms_from(&vars).await;
    assert_eq!(other.decrypt_str(&new, b"").await.unwrap(), "after");
    let m = kms.metadata().await.unwrap();
    assert_eq!(m.current_version, Some(v2.clone()));
    assert_eq!(m.version_count, Some(2));
    assert!(m.last_rotated.is_some() && m.last_rotated >= m.created_at);

    // A disabled current version: `latest` fails, the newest enabled one is used.
    client
        .disable_secret_version()
        .set_name(format!("{}/versions/2", secret_name("default")))
        .send()
        .await
        .unwrap();
    let p = provider(&emu).await;
    let current = p.current_key(&id).await.unwrap();
    assert_eq!(current.version().as_str(), "1");
    assert_eq!(*current.material().to_hex(), first_key);
    let listed: Vec<(String, bool)> = p
        .versions(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version.to_string(), v.enabled))
        .collect();
    assert_eq!(listed, [("1".to_owned(), true), ("2".to_owned(), false)]);
    let m = p.metadata(&id).await.unwrap();
    assert!(!m.enabled, "the newest version is disabled: {m:?}");
    assert_eq!(
        m.current_version.as_ref().map(KeyVersion::as_str),
        Some("1")
    );
    let err = p.key_version(&id, &v2).await.unwrap_err();
    assert!(
        matches!(&err, Error::KeyNotFound { version: Some(v), .. } if *v == "2"),
        "{err:?}"
    );
    let fresh = kms_from(&vars).await;
    assert_eq!(fresh.decrypt_str(&old, b"").await.unwrap(), "before");
    let during = fresh.encrypt_str("during", b"").await.unwrap();
    assert_eq!(text_version(&during).as_str(), "1");
    let err = fresh.decrypt_str(&new, b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Encryption key not found: default");
    client
        .enable_secret_version()
        .set_name(format!("{}/versions/2", secret_name("default")))
        .send()
        .await
        .unwrap();
    assert_eq!(p.current_key(&id).await.unwrap().version(), &v2);

    // A destroyed old version: its ciphertexts fail clearly, nothing else breaks.
    client
        .destroy_secret_version()
        .set_name(format!("{}/versions/1", secret_name("default")))
        .send()
        .await
        .unwrap();
    let fresh = kms_from(&vars).await;
    let err = fresh.decrypt_str(&old, b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Encryption key not found: default");
    assert!(err.is_permanent());
    assert_eq!(fresh.decrypt_str(&new, b"").await.unwrap(), "after");
    let ct = fresh.encrypt_str("still fine", b"").await.unwrap();
    assert_eq!(fresh.decrypt_str(&ct, b"").await.unwrap(), "still fine");
    assert!(fresh.health().await.healthy);
    let enabled: Vec<bool> = p
        .versions(&id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.enabled)
        .collect();
    assert_eq!(enabled, [false, true]);
}

/// The spec's error messages: refused credentials (not retried), a missing
/// key, and a payload that is not 64 hex characters.
#[tokio::test]
async fn gcp_errors_use_the_spec_wording() {
    let (emu, client, _) = emulator_with_default_key().await;
    create_key(&client, "malformed", "not-a-hex-key").await;

    emu.require_token(Some("the-right-token"));
    let counted = Arc::new(FaultyProvider::new(provider(&emu).await));
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
    assert!(chain.contains("UNAUTHENTICATED"), "{chain}");
    let health = kms.health().await;
    assert!(!health.healthy, "{health:?}");
    assert!(health.error.unwrap_or_default().contains("Access denied"));
    emu.require_token(None);

    let kms = kms_from(&spec_env(&emu, &[("KMS_KEY_ID", "missing-key")])).await;
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Encryption key not found: missing-key");

    let kms = kms_from(&spec_env(&emu, &[("KMS_KEY_ID", "malformed")])).await;
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Invalid key length: expected 32 bytes");
    assert!(err.is_permanent());
}

/// An outage (the emulator stopped): cached keys keep working, uncached
/// calls fail within the timeout budget, the circuit opens and then fails
/// fast, and the stack recovers by itself once the emulator is back.
#[tokio::test]
async fn gcp_outage_fails_fast_and_recovers() {
    let (emu, client, _) = emulator_with_default_key().await;
    create_key(&client, "second", &random_hex()).await;
    let open_for = Duration::from_millis(1000);
    let vars = spec_env(
        &emu,
        &[
            ("KMS_TIMEOUT", "300"),
            ("KMS_RETRY_ATTEMPTS", "1"),
            ("KMS_CIRCUIT_FAILURE_THRESHOLD", "3"),
            ("KMS_CIRCUIT_OPEN_DURATION", "1000"),
        ],
    );
    let kms = kms_from(&vars).await;
    let cached_ct = kms.encrypt(b"cached", b"").await.unwrap();
    let other = kms_from(&vars).await;
    other.rotate().await.unwrap();
    let unseen_ct = other.encrypt(b"unseen", b"").await.unwrap();
    assert_eq!(
        Envelope::parse(&unseen_ct)
            .unwrap()
            .key_version()
            .unwrap()
            .as_str(),
        "2"
    );

    let second = kms.with_key_id(KeyId::new("second").unwrap());
    crate::scenarios::outage_fails_fast_and_recovers(
        &kms,
        &second,
        &cached_ct,
        &unseen_ct,
        open_for,
        crate::scenarios::Outage::Refuses,
        emu.stop(),
        async { emu.restart().await.unwrap() },
    )
    .await;
}
