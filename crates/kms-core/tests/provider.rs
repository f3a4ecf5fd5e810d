//! The provider trait's shared logic: the default `rotate_if_current`, the
//! forwarding impls for `Arc` and `Box`, and finding the key of a ciphertext
//! (`resolve_key`, `find_by_fingerprint`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::sync::Arc;

use kms_core::{
    DataKey, Envelope, HealthStatus, IvLength, KeyId, KeyMaterial, KeyMetadata, KeyProvider,
    KeyVersion, LiveVersions, Result, VersionInfo, async_trait, crypto, resolve_key,
};
use kms_testing::MemoryProvider;

/// A provider that implements only what it must: `rotate_if_current` and
/// `import` are the trait's defaults.
#[derive(Debug)]
struct Plain(MemoryProvider);

#[async_trait]
impl KeyProvider for Plain {
    fn name(&self) -> &'static str {
        "plain"
    }
    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        self.0.current_key(key_id).await
    }
    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        self.0.key_version(key_id, version).await
    }
    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        self.0.versions(key_id).await
    }
    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        self.0.rotate(key_id, live).await
    }
    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        self.0.metadata(key_id).await
    }
    async fn health(&self) -> HealthStatus {
        self.0.health().await
    }
}

fn id() -> KeyId {
    KeyId::new("payments").unwrap()
}

fn v(n: u64) -> KeyVersion {
    KeyVersion::from(n)
}

#[tokio::test]
async fn default_rotate_if_current_rotates_only_from_the_expected_version() {
    let p = Plain(MemoryProvider::with_key(id()));
    let live = LiveVersions::all();
    // Stale expectation: nothing is written.
    assert!(
        p.rotate_if_current(&id(), &v(7), &live)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(p.versions(&id()).await.unwrap().len(), 1);
    // Current expectation: one new version.
    let new = p
        .rotate_if_current(&id(), &v(1), &live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.version(), &v(2));
    assert_eq!(p.current_key(&id()).await.unwrap().version(), &v(2));
    // The default import refuses.
    let e = p
        .import(&id(), KeyMaterial::generate(), &live)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "UNSUPPORTED");
}

/// Every method of `wrapped` answers as `inner` does.
async fn forwards(wrapped: &dyn KeyProvider, inner: &MemoryProvider) {
    let live = LiveVersions::all();
    assert_eq!(wrapped.name(), inner.name());
    assert_eq!(
        wrapped.versions(&id()).await.unwrap(),
        inner.versions(&id()).await.unwrap()
    );
    let current = wrapped.current_key(&id()).await.unwrap();
    assert_eq!(
        wrapped
            .key_version(&id(), current.version())
            .await
            .unwrap()
            .fingerprint(),
        current.fingerprint()
    );
    let next = wrapped
        .rotate_if_current(&id(), current.version(), &live)
        .await
        .unwrap()
        .expect("rotated from the current version");
    assert_eq!(
        inner.current_key(&id()).await.unwrap().version(),
        next.version()
    );
    let rotated = wrapped.rotate(&id(), &live).await.unwrap();
    let material = KeyMaterial::generate();
    let fingerprint = material.fingerprint();
    let imported = wrapped.import(&id(), material, &live).await.unwrap();
    assert_eq!(imported.fingerprint(), fingerprint);
    assert_ne!(rotated.version(), imported.version());
    assert_eq!(
        wrapped
            .metadata(&id())
            .await
            .unwrap()
            .current_version
            .as_ref(),
        Some(imported.version())
    );
    assert_eq!(
        wrapped.health().await.provider,
        inner.health().await.provider
    );
}

#[tokio::test]
async fn arc_and_box_forward_every_method() {
    let inner = Arc::new(MemoryProvider::with_key(id()));
    forwards(&Arc::clone(&inner), &inner).await;
    let boxed: Box<dyn KeyProvider> = Box::new(Arc::clone(&inner));
    forwards(&boxed, &inner).await;
    assert_eq!(inner.versions(&id()).await.unwrap().len(), 7);
}

/// A ciphertext under `material`, whose header names version `hint`.
fn sealed(material: &KeyMaterial, hint: &str) -> Vec<u8> {
    let key = DataKey::new(
        id(),
        KeyVersion::new(hint).unwrap(),
        KeyMaterial::from_bytes(*material.expose_secret()),
    );
    crypto::seal(&key, IvLength::Twelve, b"x", b"").unwrap()
}

/// A provider holding versions 1, 2 and 3 of `payments`, and their materials.
fn three_versions() -> (MemoryProvider, Vec<KeyMaterial>) {
    let p = MemoryProvider::new();
    let materials: Vec<KeyMaterial> = (0..3).map(|_| KeyMaterial::generate()).collect();
    for m in &materials {
        p.add_version(&id(), KeyMaterial::from_bytes(*m.expose_secret()));
    }
    (p, materials)
}

#[tokio::test]
async fn resolve_key_takes_the_header_s_version_when_its_fingerprint_matches() {
    let (p, materials) = three_versions();
    for (n, m) in materials.iter().enumerate() {
        let ct = sealed(m, &(n + 1).to_string());
        let key = resolve_key(&p, &Envelope::parse(&ct).unwrap())
            .await
            .unwrap();
        assert_eq!(key.version(), &v(n as u64 + 1));
        assert_eq!(key.fingerprint(), m.fingerprint());
    }
}

#[tokio::test]
async fn resolve_key_searches_by_fingerprint_when_the_version_differs() {
    let (p, materials) = three_versions();
    // Written elsewhere as version 1 with the bytes of version 2 here (a
    // migrated key), or as a version this provider does not have.
    for hint in ["1", "3", "99"] {
        let ct = sealed(&materials[1], hint);
        let key = resolve_key(&p, &Envelope::parse(&ct).unwrap())
            .await
            .unwrap();
        assert_eq!(key.version(), &v(2), "hint {hint}");
        assert_eq!(key.fingerprint(), materials[1].fingerprint());
    }
    // Bytes no version has: not found, naming the header's version.
    let ct = sealed(&KeyMaterial::generate(), "2");
    let e = resolve_key(&p, &Envelope::parse(&ct).unwrap())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "KEY_NOT_FOUND");
}

#[tokio::test]
async fn find_by_fingerprint_returns_the_matching_candidate_or_none() {
    let (p, materials) = three_versions();
    let newest_first = [v(3), v(2), v(1), v(42)];
    for (n, m) in materials.iter().enumerate() {
        let found = kms_core::find_by_fingerprint(&p, &id(), m.fingerprint(), &newest_first)
            .await
            .unwrap()
            .expect("a candidate has it");
        assert_eq!(found.version(), &v(n as u64 + 1));
    }
    let none = kms_core::find_by_fingerprint(
        &p,
        &id(),
        KeyMaterial::generate().fingerprint(),
        &newest_first,
    )
    .await
    .unwrap();
    assert!(none.is_none());
}
