//! The Google Cloud Secret Manager provider against the in-process emulator
//! (`kms-gcp-emulator`), keys made the way the spec's set-up makes them
//! (`gcloud secrets create boosterbeacon-encryption-key-default
//! --data-file=-` with `openssl rand -hex 32`), here through the official
//! Rust client, which the provider also uses.

use std::sync::Arc;

use kms::{Error, KeyId, KeyProvider, KeyVersion, LiveVersions};
use kms_tests::conformance::{self, Expect};

use crate::scenarios;

use kms_tests::fixtures::gcp::{
    Gcp, PROJECT, emulator_with_default_key, provider, secret_name, spec_env,
};
use kms_tests::fixtures::{ProviderFixture, kms_from, text_version};

/// The spec's set-up end to end: the key from the set-up encrypts and
/// decrypts through the library and through the `kms` CLI, both ways.
#[tokio::test]
async fn gcp_spec_setup_through_library_and_cli() {
    scenarios::spec_setup::<Gcp>().await;
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
    scenarios::errors_use_the_spec_wording::<Gcp>().await;
}

/// An outage (the emulator stopped): cached keys keep working, uncached
/// calls fail within the timeout budget, the circuit opens and then fails
/// fast, and the stack recovers by itself once the emulator is back.
#[tokio::test]
async fn gcp_outage_fails_fast_and_recovers() {
    scenarios::outage::<Gcp>().await;
}

/// The spec's Cloud KMS key (`gcloud kms keys create boosterbeacon-key
/// --keyring=boosterbeacon-keyring --location=global`), named in
/// `KMS_GCP_KMS_KEY_NAME`: a secret this project creates (an import, as
/// `kms migrate` does) uses customer-managed encryption under it, as the
/// service reports on the secret and on each version; the key works as any
/// other. A key name the service refuses fails the import, and a malformed
/// one fails the build.
#[tokio::test]
async fn gcp_new_secrets_use_the_cloud_kms_key() {
    let fixture = Gcp::start().await;
    let key = format!(
        "projects/{PROJECT}/locations/global/keyRings/boosterbeacon-keyring/cryptoKeys/boosterbeacon-key"
    );
    let kms = kms_from(&fixture.env(&[
        ("KMS_KEY_ID", "cmek"),
        ("KMS_GCP_KMS_KEY_NAME", key.as_str()),
    ]))
    .await;
    let cmek = KeyId::new("cmek").unwrap();
    kms.provider()
        .import(&cmek, kms::KeyMaterial::generate(), &LiveVersions::all())
        .await
        .unwrap();
    let ct = kms.encrypt(b"under cmek", b"").await.unwrap();
    assert_eq!(kms.decrypt(&ct, b"").await.unwrap(), b"under cmek");

    let secret = fixture
        .client
        .get_secret()
        .set_name(secret_name("cmek"))
        .send()
        .await
        .unwrap();
    let automatic = secret
        .replication
        .as_ref()
        .and_then(|r| r.automatic())
        .expect("automatic replication");
    assert_eq!(
        automatic
            .customer_managed_encryption
            .as_ref()
            .map(|c| c.kms_key_name.as_str()),
        Some(key.as_str())
    );
    let version = fixture
        .client
        .get_secret_version()
        .set_name(format!("{}/versions/1", secret_name("cmek")))
        .send()
        .await
        .unwrap();
    let status = version
        .replication_status
        .as_ref()
        .and_then(|r| r.automatic())
        .and_then(|a| a.customer_managed_encryption.as_ref())
        .map(|c| c.kms_key_version_name.clone());
    assert_eq!(status, Some(format!("{key}/cryptoKeyVersions/1")));

    // Secrets that exist keep their own encryption: `default` has none.
    let default = fixture
        .client
        .get_secret()
        .set_name(secret_name("default"))
        .send()
        .await
        .unwrap();
    assert!(
        default
            .replication
            .as_ref()
            .and_then(|r| r.automatic())
            .is_some_and(|a| a.customer_managed_encryption.is_none())
    );

    // A regional key: automatic replication refuses it, nothing is created.
    let regional = key.replace("/global/", "/europe-west1/");
    let kms = kms_from(&fixture.env(&[
        ("KMS_KEY_ID", "regional"),
        ("KMS_GCP_KMS_KEY_NAME", regional.as_str()),
    ]))
    .await;
    let regional_id = KeyId::new("regional").unwrap();
    let refused = kms
        .provider()
        .import(
            &regional_id,
            kms::KeyMaterial::generate(),
            &LiveVersions::all(),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    let missing = fixture
        .client
        .get_secret()
        .set_name(secret_name("regional"))
        .send()
        .await;
    assert!(missing.is_err());

    // Not a key name at all: the build names the variable.
    let err = kms::KmsBuilder::from_lookup(|n| {
        fixture
            .env(&[("KMS_GCP_KMS_KEY_NAME", "boosterbeacon-key")])
            .get(n)
            .cloned()
    })
    .unwrap()
    .build()
    .await
    .unwrap_err();
    assert!(err.to_string().contains("KMS_GCP_KMS_KEY_NAME"), "{err}");
}
