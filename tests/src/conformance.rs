//! The same behaviour checks for every [`KeyProvider`].
//!
//! Call [`run`] with a provider that holds a key named `key_id` (created the
//! way the spec's set-up steps create it). Rotation is exercised when the
//! provider supports it, and must be refused with a typed error otherwise.

use std::sync::Arc;

use kms::core::LiveVersions;
use kms::format::Envelope;
use kms::{Error, KeyId, KeyProvider, KeyVersion, Kms};

/// What the suite may expect of a provider.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    /// Whether [`KeyProvider::rotate`] creates versions.
    pub rotates: bool,
}

/// Runs every check; panics with a message naming the provider on failure.
pub async fn run(provider: Arc<dyn KeyProvider>, key_id: &KeyId, expect: Expect) {
    let name = provider.name();
    keys_are_stable_and_versioned(&*provider, key_id).await;
    missing_keys_are_typed(&*provider, key_id).await;
    metadata_and_health(&*provider, key_id).await;
    facade_round_trips(provider.clone(), key_id).await;
    if expect.rotates {
        rotation_keeps_old_ciphertexts(provider.clone(), key_id).await;
    } else {
        let before = provider.current_key(key_id).await.unwrap();
        let err = provider
            .rotate(key_id, &LiveVersions::all())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{name}: {err:?}");
        let after = provider.current_key(key_id).await.unwrap();
        assert_eq!(
            before.fingerprint(),
            after.fingerprint(),
            "{name}: a refused rotation changed the key"
        );
    }
    let debug = format!("{provider:?}");
    let hex = provider
        .current_key(key_id)
        .await
        .unwrap()
        .material()
        .to_hex();
    assert!(
        !debug.contains(&hex[..16]),
        "{name}: Debug shows key bytes: {debug}"
    );
}

async fn keys_are_stable_and_versioned(p: &dyn KeyProvider, key_id: &KeyId) {
    let name = p.name();
    let a = p.current_key(key_id).await.unwrap();
    let b = p.current_key(key_id).await.unwrap();
    assert_eq!(a.key_id(), key_id, "{name}");
    assert_eq!(
        a.fingerprint(),
        b.fingerprint(),
        "{name}: current key changed between two reads"
    );
    assert_eq!(a.version(), b.version(), "{name}");
    let same = p.key_version(key_id, a.version()).await.unwrap();
    assert_eq!(
        same.fingerprint(),
        a.fingerprint(),
        "{name}: version lookup returned other bytes"
    );
    let versions = p.versions(key_id).await.unwrap();
    assert!(!versions.is_empty(), "{name}: no versions listed");
    assert_eq!(
        &versions.last().unwrap().version,
        a.version(),
        "{name}: the current version must be listed last"
    );
}

async fn missing_keys_are_typed(p: &dyn KeyProvider, key_id: &KeyId) {
    let name = p.name();
    let missing = KeyId::new("conformance-missing-key").unwrap();
    let err = p.current_key(&missing).await.unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { .. }), "{name}: {err:?}");
    assert_eq!(
        err.to_string(),
        "Encryption key not found: conformance-missing-key",
        "{name}"
    );
    assert!(err.is_permanent(), "{name}");

    let err = p
        .key_version(key_id, &KeyVersion::new("999999").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { .. }), "{name}: {err:?}");
    assert_eq!(
        err.to_string(),
        format!("Encryption key not found: {key_id}"),
        "{name}"
    );
}

async fn metadata_and_health(p: &dyn KeyProvider, key_id: &KeyId) {
    let name = p.name();
    let m = p.metadata(key_id).await.unwrap();
    assert_eq!(&m.key_id, key_id, "{name}");
    assert_eq!(m.key_usage, "ENCRYPT_DECRYPT", "{name}");
    assert_eq!(m.key_spec, "AES-256", "{name}");
    assert!(m.enabled, "{name}");
    assert_eq!(m.provider, name);
    let json = serde_json::to_value(&m).unwrap();
    for field in [
        "keyId",
        "description",
        "createdAt",
        "lastRotated",
        "enabled",
        "keyUsage",
        "keySpec",
    ] {
        assert!(
            json.get(field).is_some(),
            "{name}: metadata lacks {field}: {json}"
        );
    }
    let h = p.health().await;
    assert!(h.healthy, "{name}: unhealthy: {h:?}");
    assert_eq!(h.provider, name);
    let json = serde_json::to_value(&h).unwrap();
    for field in ["provider", "healthy", "lastChecked", "responseTime"] {
        assert!(
            json.get(field).is_some(),
            "{name}: health lacks {field}: {json}"
        );
    }
}

async fn facade(provider: Arc<dyn KeyProvider>, key_id: &KeyId) -> Kms {
    Kms::builder()
        .provider_arc(provider)
        .key_id(key_id.clone())
        .build()
        .await
        .unwrap()
}

async fn facade_round_trips(provider: Arc<dyn KeyProvider>, key_id: &KeyId) {
    let name = provider.name();
    let kms = facade(provider, key_id).await;
    for pt in [&b""[..], b"x", b"an API token: sk_live_51H", &[0xAB; 5000]] {
        let ct = kms.encrypt(pt, b"row:1").await.unwrap();
        assert_eq!(kms.decrypt(&ct, b"row:1").await.unwrap(), pt, "{name}");
        assert!(
            matches!(kms.decrypt(&ct, b"row:2").await, Err(Error::Decryption)),
            "{name}"
        );
        let text = kms.encrypt_text(pt, b"").await.unwrap();
        assert_eq!(kms.decrypt_text(&text, b"").await.unwrap(), pt, "{name}");
    }
}

async fn rotation_keeps_old_ciphertexts(provider: Arc<dyn KeyProvider>, key_id: &KeyId) {
    let name = provider.name();
    let kms = facade(provider.clone(), key_id).await;
    let before = provider.current_key(key_id).await.unwrap();
    let n_before = provider.versions(key_id).await.unwrap().len();
    let old_ct = kms.encrypt(b"written before rotation", b"").await.unwrap();

    let new_version = kms.rotate().await.unwrap();
    let after = provider.current_key(key_id).await.unwrap();
    assert_eq!(after.version(), &new_version, "{name}");
    assert_ne!(
        after.version(),
        before.version(),
        "{name}: rotation kept the version"
    );
    assert_ne!(
        after.fingerprint(),
        before.fingerprint(),
        "{name}: rotation kept the key bytes"
    );
    assert_eq!(
        provider.versions(key_id).await.unwrap().len(),
        n_before + 1,
        "{name}"
    );

    assert_eq!(
        kms.decrypt(&old_ct, b"").await.unwrap(),
        b"written before rotation",
        "{name}"
    );
    let new_ct = kms.encrypt(b"written after rotation", b"").await.unwrap();
    let env = Envelope::parse(&new_ct).unwrap();
    assert_eq!(
        env.key_version().unwrap(),
        new_version,
        "{name}: new data must use the new version"
    );
    assert_eq!(
        kms.decrypt(&new_ct, b"").await.unwrap(),
        b"written after rotation",
        "{name}"
    );
}
