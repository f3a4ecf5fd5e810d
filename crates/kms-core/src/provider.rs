//! The provider trait and the data it returns.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::Envelope;
use crate::key::{DataKey, KeyId, KeyMaterial, KeyVersion};
use crate::retention::LiveVersions;

/// A source of data keys: env variables, AWS SSM, Google Secret Manager,
/// HashiCorp Vault, or a wrapper around another provider (cache, retries,
/// circuit breaker) that implements this same trait.
///
/// Object-safe: the facade holds an `Arc<dyn KeyProvider>`.
///
/// Implementations map their SDK errors onto [`Error`] with the spec's
/// meanings: unreachable or throttled gives [`Error::Unavailable`]
/// (temporary), missing key or version gives [`Error::KeyNotFound`], refused
/// credentials give [`Error::AccessDenied`], a stored value that is not 64
/// hex characters gives [`Error::InvalidKeyLength`].
#[async_trait]
pub trait KeyProvider: Send + Sync + Debug + 'static {
    /// Short name of the provider (`env`, `aws`, `gcp`, `vault`).
    /// Wrappers return the name of what they wrap.
    fn name(&self) -> &'static str;

    /// The current (newest enabled) version of a key: what new encryptions use.
    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey>;

    /// One specific version of a key, for decrypting older ciphertexts.
    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey>;

    /// Every version of a key the provider still has, oldest first.
    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>>;

    /// Creates a new current version of a key. Older versions stay readable,
    /// so every existing ciphertext stays decryptable: a provider that
    /// evicts old versions (Vault's `max_versions`, SSM's 100) first makes
    /// sure that no version in `live` would be evicted, and refuses with
    /// [`Error::RetentionExhausted`] before writing when it cannot.
    ///
    /// The default refuses with [`Error::Unsupported`].
    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        let _ = (key_id, live);
        Err(Error::Unsupported {
            provider: self.name(),
            message: "this provider cannot create key versions".into(),
        })
    }

    /// Rotates only if `expected` is still the current version of the key:
    /// a check-and-set rotation, so that many instances sharing a key (each
    /// running scheduled rotation) make one new version, not one each.
    ///
    /// `Ok(Some(key))`: this call created the new current version.
    /// `Ok(None)`: the current version is no longer `expected` (another
    /// writer rotated first); nothing was written.
    ///
    /// Keeps `live` as [`rotate`](Self::rotate) does.
    ///
    /// The default reads the current version and calls
    /// [`rotate`](Self::rotate) when it is `expected`. That is **racy**: two
    /// callers may both see `expected` and both rotate. Providers with a
    /// check-and-set (Vault KV `cas`) or an equivalent (a create-once marker,
    /// an etag) override it; wrappers forward it.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let current = self.current_key(key_id).await?;
        if current.version() != expected {
            return Ok(None);
        }
        self.rotate(key_id, live).await.map(Some)
    }

    /// Stores `material` as a new current version of a key, creating the key
    /// if it does not exist; returns the stored version. Older versions stay
    /// readable. This is how `kms migrate` copies a key's versions from one
    /// provider to another (oldest first, so the newest copied is current).
    ///
    /// Not idempotent (each call makes a version) and never retried by the
    /// resilience layer; keeps `live` as [`rotate`](Self::rotate) does.
    ///
    /// The default refuses with [`Error::Unsupported`] (for example the env
    /// provider, whose keys live in variables it cannot write).
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        let _ = (key_id, material, live);
        Err(Error::Unsupported {
            provider: self.name(),
            message: "this provider cannot store key versions".into(),
        })
    }

    /// What the provider knows about a key (the spec's metadata response).
    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata>;

    /// Whether the provider answers, and how fast. Never fails: an
    /// unreachable provider gives `healthy: false` with a message.
    async fn health(&self) -> HealthStatus;
}

#[async_trait]
impl<P: KeyProvider + ?Sized> KeyProvider for Arc<P> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        (**self).current_key(key_id).await
    }
    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        (**self).key_version(key_id, version).await
    }
    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        (**self).versions(key_id).await
    }
    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        (**self).rotate(key_id, live).await
    }
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        (**self).rotate_if_current(key_id, expected, live).await
    }
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        (**self).import(key_id, material, live).await
    }
    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        (**self).metadata(key_id).await
    }
    async fn health(&self) -> HealthStatus {
        (**self).health().await
    }
}

#[async_trait]
impl<P: KeyProvider + ?Sized> KeyProvider for Box<P> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        (**self).current_key(key_id).await
    }
    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        (**self).key_version(key_id, version).await
    }
    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        (**self).versions(key_id).await
    }
    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        (**self).rotate(key_id, live).await
    }
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        (**self).rotate_if_current(key_id, expected, live).await
    }
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        (**self).import(key_id, material, live).await
    }
    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        (**self).metadata(key_id).await
    }
    async fn health(&self) -> HealthStatus {
        (**self).health().await
    }
}

/// Finds the key that encrypted a ciphertext.
///
/// First the provider's native version from the header; if that version is
/// missing or holds other key bytes (the key's versions were copied to
/// another provider, which numbers them differently), every version of the
/// key is searched, newest first, for the header's fingerprint.
///
/// # Errors
/// [`Error::KeyNotFound`] when no version of the key has the fingerprint;
/// provider errors other than "not found" and "access denied" on a single
/// version are passed on.
pub async fn resolve_key(provider: &dyn KeyProvider, envelope: &Envelope<'_>) -> Result<DataKey> {
    let key_id = envelope.key_id()?;
    let hint = envelope.key_version()?;
    match provider.key_version(&key_id, &hint).await {
        Ok(key) if key.fingerprint() == envelope.fingerprint() => return Ok(key),
        Ok(_) | Err(Error::KeyNotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let versions = provider.versions(&key_id).await?;
    let others: Vec<KeyVersion> = versions
        .iter()
        .rev()
        .map(|v| v.version.clone())
        .filter(|v| *v != hint)
        .collect();
    find_by_fingerprint(provider, &key_id, envelope.fingerprint(), &others)
        .await?
        .ok_or_else(|| Error::key_not_found(&key_id, Some(&hint)))
}

/// The first of `candidates` (versions of `key_id`, tried in order) whose
/// key has `fingerprint`; `None` when none has. A candidate that is missing
/// or refused is passed over; other errors (an unavailable provider) are
/// returned. Shared by [`resolve_key`] and the key cache's resolution.
///
/// # Errors
/// Provider errors other than "not found" and "access denied".
pub async fn find_by_fingerprint(
    provider: &dyn KeyProvider,
    key_id: &KeyId,
    fingerprint: crate::key::Fingerprint,
    candidates: &[KeyVersion],
) -> Result<Option<DataKey>> {
    for version in candidates {
        match provider.key_version(key_id, version).await {
            Ok(key) if key.fingerprint() == fingerprint => return Ok(Some(key)),
            Ok(_) | Err(Error::KeyNotFound { .. } | Error::AccessDenied { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// One version of a key, as listed by [`KeyProvider::versions`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VersionInfo {
    /// The provider's native version name.
    pub version: KeyVersion,
    /// When it was created, if known.
    #[serde(with = "rfc3339_opt")]
    pub created_at: Option<DateTime<Utc>>,
    /// Whether it can be read (a disabled or destroyed version cannot).
    pub enabled: bool,
}

impl VersionInfo {
    /// A listed version.
    #[must_use]
    pub fn new(version: KeyVersion, created_at: Option<DateTime<Utc>>, enabled: bool) -> Self {
        VersionInfo {
            version,
            created_at,
            enabled,
        }
    }
}

impl Serialize for KeyVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyVersion::new(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        KeyId::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Key metadata, serialized with the spec's field names
/// (`keyId`, `description`, `createdAt`, `lastRotated`, `enabled`,
/// `keyUsage`, `keySpec`), plus the provider and current version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KeyMetadata {
    /// The key id.
    pub key_id: KeyId,
    /// A human description.
    pub description: Option<String>,
    /// When the key (its first version) was created.
    #[serde(with = "rfc3339_opt")]
    pub created_at: Option<DateTime<Utc>>,
    /// When the current version was created, if there was a rotation.
    #[serde(with = "rfc3339_opt")]
    pub last_rotated: Option<DateTime<Utc>>,
    /// Whether the key can be used.
    pub enabled: bool,
    /// Always `ENCRYPT_DECRYPT`.
    pub key_usage: String,
    /// Always `AES-256`.
    pub key_spec: String,
    /// The provider (`env`, `aws`, `gcp`, `vault`).
    pub provider: String,
    /// The current version's native name.
    pub current_version: Option<KeyVersion>,
    /// How many versions the provider holds.
    pub version_count: Option<u64>,
    /// How many versions the provider keeps of this key before it deletes
    /// the oldest (Vault's effective `max_versions`, SSM's 100); `None` when
    /// it deletes none (Google Secret Manager, env).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u64>,
    /// How many more versions the key can take before a live version (one
    /// that may still decrypt data) would be evicted; `None` when the
    /// provider evicts nothing. Computed by the provider with every version
    /// live; the facade recomputes it from the key's minimum decryption
    /// version ([`LiveVersions::remaining`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions_remaining: Option<u64>,
    /// Why the provider could not tell how many versions it keeps, when it
    /// evicts old versions and the limit is unknown (for example: the token
    /// may not read the Vault mount's configuration). A health check shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_note: Option<String>,
}

impl KeyMetadata {
    /// Metadata with the spec's fixed values (`enabled: true`,
    /// `keyUsage: ENCRYPT_DECRYPT`, `keySpec: AES-256`) and nothing else known.
    #[must_use]
    pub fn new(key_id: KeyId, provider: &str) -> Self {
        KeyMetadata {
            key_id,
            description: None,
            created_at: None,
            last_rotated: None,
            enabled: true,
            key_usage: "ENCRYPT_DECRYPT".into(),
            key_spec: "AES-256".into(),
            provider: provider.into(),
            current_version: None,
            version_count: None,
            max_versions: None,
            versions_remaining: None,
            retention_note: None,
        }
    }
}

/// The spec's health response: `provider`, `healthy`, `lastChecked`,
/// `responseTime` (milliseconds), plus an `error` message when unhealthy and
/// the circuit breaker state when one is in the stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct HealthStatus {
    /// The provider.
    pub provider: String,
    /// Whether it answered correctly.
    pub healthy: bool,
    /// When the check ran.
    #[serde(with = "rfc3339")]
    pub last_checked: DateTime<Utc>,
    /// How long the check took, in milliseconds.
    pub response_time: u64,
    /// Why it is unhealthy (never a credential).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Circuit breaker state (`closed`, `open`, `half-open`) when one is in the stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit: Option<String>,
    /// Something an operator should act on although the provider answers
    /// (for example: the key can take fewer than two more versions before
    /// rotation is refused to protect live versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl HealthStatus {
    /// A healthy result, checked now.
    #[must_use]
    pub fn healthy(provider: &str, response_time_ms: u64) -> Self {
        HealthStatus {
            provider: provider.into(),
            healthy: true,
            last_checked: Utc::now(),
            response_time: response_time_ms,
            error: None,
            circuit: None,
            warning: None,
        }
    }

    /// Runs a provider's health check and times it: healthy when `check`
    /// succeeds, unhealthy with its message (which must hold no secret) otherwise.
    pub async fn timed(
        provider: &str,
        check: impl std::future::Future<Output = std::result::Result<(), String>>,
    ) -> Self {
        let started = std::time::Instant::now();
        let result = check.await;
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(()) => HealthStatus::healthy(provider, ms),
            Err(message) => HealthStatus::unhealthy(provider, ms, message),
        }
    }

    /// An unhealthy result, checked now.
    #[must_use]
    pub fn unhealthy(provider: &str, response_time_ms: u64, error: impl Into<String>) -> Self {
        HealthStatus {
            healthy: false,
            error: Some(error.into()),
            ..HealthStatus::healthy(provider, response_time_ms)
        }
    }
}

/// RFC 3339 with whole seconds and `Z`, as in the spec's examples.
mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod rfc3339_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        t: &Option<DateTime<Utc>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                DateTime::parse_from_rfc3339(&s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_and_times_survive_json() {
        let mut meta = KeyMetadata::new(KeyId::new("payments").unwrap(), "vault");
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        meta.last_rotated = Some(at);
        meta.created_at = Some(at);
        let json = serde_json::to_string(&meta).unwrap();
        assert!(
            json.contains("\"lastRotated\":\"2026-01-02T03:04:05Z\""),
            "{json}"
        );
        let back: KeyMetadata = serde_json::from_str(&json).unwrap();
        assert_eq!(back, meta);
        assert!(serde_json::from_str::<KeyId>("\"a b\"").is_err());
    }

    #[test]
    fn unhealthy_is_not_healthy_and_says_why() {
        let h = HealthStatus::unhealthy("vault", 12, "connection refused");
        assert!(!h.healthy);
        assert_eq!(h.error.as_deref(), Some("connection refused"));
        assert_eq!((h.provider.as_str(), h.response_time), ("vault", 12));
        assert!(HealthStatus::healthy("vault", 1).healthy);
    }
}
