//! [`GcpProvider`]: the `KeyProvider` over one Secret Manager secret per key id.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use google_cloud_secretmanager_v1::client::SecretManagerService;
use google_cloud_secretmanager_v1::model::replication::Automatic;
use google_cloud_secretmanager_v1::model::secret_version::State;
use google_cloud_secretmanager_v1::model::{
    AccessSecretVersionResponse, CustomerManagedEncryption, Replication, Secret, SecretPayload,
    SecretVersion,
};
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider, KeyVersion,
    LiveVersions, Result, VersionInfo,
};
use zeroize::Zeroizing;

use crate::PROVIDER;
use crate::builder::GcpProviderBuilder;
use kms_core::provider_support::{CallError, Failure, describe_chain};

use crate::call;

/// Data keys in Google Cloud Secret Manager: one secret per key id, one
/// secret version per key version. See the crate documentation.
pub struct GcpProvider {
    client: SecretManagerService,
    project: String,
    secret_prefix: String,
    /// The Cloud KMS key of the secrets this provider creates
    /// (`KMS_GCP_KMS_KEY_NAME`); `None`: Google-managed encryption.
    kms_key_name: Option<String>,
}

impl fmt::Debug for GcpProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpProvider")
            .field("project", &self.project)
            .field("secret_prefix", &self.secret_prefix)
            .field("kms_key_name", &self.kms_key_name)
            .finish_non_exhaustive()
    }
}

/// A listed version: its number, state and creation time.
struct Listed {
    number: u64,
    enabled: bool,
    created_at: Option<DateTime<Utc>>,
}

impl Listed {
    /// The data key of a version this provider just added with `material`;
    /// logs `done` with the key id and version.
    fn into_key(self, key_id: &KeyId, material: KeyMaterial, done: &str) -> DataKey {
        tracing::info!(target: "kms::gcp", key_id = %key_id, version = self.number, "{done}");
        DataKey::with_created_at(
            key_id.clone(),
            KeyVersion::from(self.number),
            material,
            self.created_at.or_else(|| Some(Utc::now())),
        )
    }
}

impl GcpProvider {
    /// A builder with the documented defaults.
    #[must_use]
    pub fn builder() -> GcpProviderBuilder {
        GcpProviderBuilder::new()
    }

    /// Builds from the process environment (see the crate documentation for
    /// the variables).
    ///
    /// # Errors
    /// As [`GcpProviderBuilder::build`].
    pub async fn from_env() -> Result<Self> {
        GcpProviderBuilder::from_lookup(|name| std::env::var(name).ok())?
            .build()
            .await
    }

    pub(crate) fn new(
        client: SecretManagerService,
        project: String,
        secret_prefix: String,
        kms_key_name: Option<String>,
    ) -> Self {
        GcpProvider {
            client,
            project,
            secret_prefix,
            kms_key_name,
        }
    }

    /// The secret's resource name, `projects/<p>/secrets/<prefix><key id>`.
    pub(crate) fn secret_name(&self, key_id: &KeyId) -> String {
        format!(
            "projects/{}/secrets/{}{}",
            self.project, self.secret_prefix, key_id
        )
    }

    /// Accesses one version (`latest` or a number) of a key's secret.
    async fn access(
        &self,
        key_id: &KeyId,
        version: &str,
    ) -> Result<AccessSecretVersionResponse, CallError> {
        let name = format!("{}/versions/{version}", self.secret_name(key_id));
        self.client
            .access_secret_version()
            .set_name(&name)
            .send()
            .await
            .map_err(|e| call::classify(format!("access {name}"), e))
    }

    /// Every version of a key's secret, oldest first.
    async fn list(&self, key_id: &KeyId) -> Result<Vec<Listed>, CallError> {
        let parent = self.secret_name(key_id);
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let page = self
                .client
                .list_secret_versions()
                .set_parent(&parent)
                .set_page_token(token)
                .send()
                .await
                .map_err(|e| call::classify(format!("list versions of {parent}"), e))?;
            out.extend(page.versions.iter().filter_map(listed));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        out.sort_by_key(|v| v.number);
        Ok(out)
    }

    /// A loaded key from an access response.
    fn data_key(
        &self,
        key_id: &KeyId,
        access: AccessSecretVersionResponse,
        created_at: Option<DateTime<Utc>>,
    ) -> Result<DataKey> {
        let number = version_number(&access.name).ok_or_else(|| {
            Error::provider(
                PROVIDER,
                format!(
                    "the access response names no version number (name: {:?})",
                    access.name
                ),
            )
        })?;
        let payload = access.payload.unwrap_or_default();
        if let Some(crc) = payload.data_crc32c
            && crc != i64::from(crc32c::crc32c(&payload.data))
        {
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "the payload of {} failed its CRC32C check (corrupted in transit)",
                    access.name
                ),
            ));
        }
        let text = std::str::from_utf8(&payload.data).map_err(|_| Error::InvalidKeyLength)?;
        let material = KeyMaterial::from_hex(text)?;
        Ok(DataKey::with_created_at(
            key_id.clone(),
            KeyVersion::from(number),
            material,
            created_at,
        ))
    }

    /// Adds a version holding `material` (hex, with its CRC32C) to a key's
    /// secret. Secret Manager numbers versions itself: concurrent writers
    /// each get their own version and none is lost.
    async fn add_version(
        &self,
        key_id: &KeyId,
        material: &KeyMaterial,
    ) -> Result<Listed, CallError> {
        let hex = material.to_hex();
        let data = Zeroizing::new(hex.as_bytes().to_vec());
        let crc = i64::from(crc32c::crc32c(&data));
        let parent = self.secret_name(key_id);
        let what = format!("add a version to {parent}");
        let version = self
            .client
            .add_secret_version()
            .set_parent(&parent)
            .set_payload(
                SecretPayload::new()
                    .set_data(data.to_vec())
                    .set_data_crc32c(crc),
            )
            .send()
            .await
            .map_err(|e| call::classify(what.clone(), e))?;
        listed(&version).ok_or_else(|| {
            CallError::new(
                PROVIDER,
                Failure::Unexpected,
                what,
                format!(
                    "the new version has no version number (name: {:?})",
                    version.name
                ),
            )
        })
    }

    /// Creates a key's secret, with no version, automatic replication, and
    /// customer-managed encryption under the configured Cloud KMS key if
    /// there is one.
    async fn create_secret(&self, key_id: &KeyId) -> Result<(), CallError> {
        let parent = format!("projects/{}", self.project);
        let secret_id = format!("{}{}", self.secret_prefix, key_id);
        let mut automatic = Automatic::new();
        if let Some(key) = &self.kms_key_name {
            automatic = automatic.set_customer_managed_encryption(
                CustomerManagedEncryption::new().set_kms_key_name(key),
            );
        }
        self.client
            .create_secret()
            .set_parent(&parent)
            .set_secret_id(&secret_id)
            .set_secret(Secret::new().set_replication(Replication::new().set_automatic(automatic)))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| call::classify(format!("create {parent}/secrets/{secret_id}"), e))
    }

    /// The newest enabled version, used when `latest` is disabled or destroyed.
    async fn newest_enabled(&self, key_id: &KeyId) -> Result<DataKey> {
        let versions = self
            .list(key_id)
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        let newest = versions
            .iter()
            .rev()
            .find(|v| v.enabled)
            .ok_or_else(|| Error::key_not_found(key_id, None))?;
        tracing::warn!(
            target: "kms::gcp",
            key_id = %key_id,
            version = newest.number,
            "the latest secret version is disabled or destroyed: using the newest enabled one"
        );
        let access = self
            .access(key_id, &newest.number.to_string())
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        self.data_key(key_id, access, newest.created_at)
    }

    async fn check_health(&self) -> Result<(), String> {
        let parent = format!("projects/{}", self.project);
        self.client
            .list_secrets()
            .set_parent(&parent)
            .set_page_size(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let e = call::classify(format!("list secrets of {parent}"), e);
                match e.kind() {
                    Failure::Denied => {
                        format!("Secret Manager refused the credentials (Access denied to encryption key): {}", describe_chain(&e))
                    }
                    _ => describe_chain(&e),
                }
            })
    }
}

/// The secret annotation that claims a rotation: `<version> <RFC 3339 time>`.
const ROTATION_CLAIM: &str = "kms-rotating-from";

/// How long a rotation claim holds before another writer may take it over.
const CLAIM_MINUTES: i64 = 10;

/// When version `n`'s rotation was claimed, from an annotation value.
fn claim_time(value: &str, n: u64) -> Option<DateTime<Utc>> {
    let (version, time) = value.split_once(' ')?;
    if version.parse::<u64>().ok()? != n {
        return None;
    }
    DateTime::parse_from_rfc3339(time)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The number at the end of `projects/p/secrets/s/versions/N`.
fn version_number(name: &str) -> Option<u64> {
    name.rsplit_once("/versions/")
        .and_then(|(_, n)| n.parse().ok())
        .filter(|n| *n > 0)
}

/// A secret version number from a key version name; `None` for names
/// Secret Manager cannot have (those of other providers, `0`).
fn secret_version(version: &KeyVersion) -> Option<u64> {
    version.as_str().parse().ok().filter(|v| *v > 0)
}

fn timestamp(seconds: i64, nanos: i32) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, u32::try_from(nanos).unwrap_or(0))
}

fn listed(v: &SecretVersion) -> Option<Listed> {
    Some(Listed {
        number: version_number(&v.name)?,
        enabled: v.state == State::Enabled,
        created_at: v
            .create_time
            .as_ref()
            .and_then(|t| timestamp(t.seconds(), t.nanos())),
    })
}

#[async_trait]
impl KeyProvider for GcpProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        match self.access(key_id, "latest").await {
            Ok(access) => self.data_key(key_id, access, None),
            // `latest` is the most recently created version whatever its
            // state: fall back to the newest enabled one.
            Err(e) if e.kind() == Failure::Disabled => self.newest_enabled(key_id).await,
            Err(e) => Err(e.into_error(key_id, None)),
        }
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        let n =
            secret_version(version).ok_or_else(|| Error::key_not_found(key_id, Some(version)))?;
        let access = self.access(key_id, &n.to_string()).await.map_err(|e| {
            if e.kind() == Failure::Disabled {
                tracing::warn!(
                    target: "kms::gcp",
                    key_id = %key_id,
                    version = n,
                    error = %e,
                    "a ciphertext needs a disabled or destroyed secret version"
                );
            }
            e.into_error(key_id, Some(version))
        })?;
        let key = self.data_key(key_id, access, None)?;
        if key.version() != version {
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "asked for version {n} of {}, got version {}",
                    self.secret_name(key_id),
                    key.version()
                ),
            ));
        }
        Ok(key)
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        let versions = self
            .list(key_id)
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        Ok(versions
            .into_iter()
            .map(|v| VersionInfo::new(KeyVersion::from(v.number), v.created_at, v.enabled))
            .collect())
    }

    /// Secret Manager deletes no version by itself (versions are only
    /// disabled or destroyed on request), so no live version is at risk.
    async fn rotate(&self, key_id: &KeyId, _live: &LiveVersions) -> Result<DataKey> {
        let material = KeyMaterial::generate();
        let listed = self
            .add_version(key_id, &material)
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        Ok(listed.into_key(key_id, material, "rotated encryption key"))
    }

    /// Secret Manager has no check-and-set on `addVersion`, so the rotation
    /// from version N is claimed first on the secret itself: an UpdateSecret
    /// of the annotation `kms-rotating-from` = `N <time>` carrying the etag
    /// read before the version list. Only one writer's update matches the
    /// etag (the others get `FAILED_PRECONDITION`); a writer that sees a
    /// claim for N younger than 10 minutes backs off. Only the winner adds
    /// a version. A claim older than that (its writer died) may be taken
    /// over, again through the etag.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let Some(n) = secret_version(expected) else {
            return Ok(None);
        };
        let name = self.secret_name(key_id);
        // The etag first, then the versions: a claim made after this read
        // makes the update below fail.
        let secret = self
            .client
            .get_secret()
            .set_name(&name)
            .send()
            .await
            .map_err(|e| call::classify(format!("get {name}"), e).into_error(key_id, None))?;
        let versions = self
            .list(key_id)
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        if versions.iter().rev().find(|v| v.enabled).map(|v| v.number) != Some(n) {
            return Ok(None);
        }
        if let Some(claimed) = secret
            .annotations
            .get(ROTATION_CLAIM)
            .and_then(|c| claim_time(c, n))
            && Utc::now() - claimed < chrono::Duration::minutes(CLAIM_MINUTES)
        {
            return Ok(None);
        }
        let mut annotations = secret.annotations.clone();
        annotations.insert(
            ROTATION_CLAIM.to_owned(),
            format!(
                "{n} {}",
                Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
            ),
        );
        let claim = self
            .client
            .update_secret()
            .set_secret(
                Secret::new()
                    .set_name(&name)
                    .set_etag(secret.etag.clone())
                    .set_annotations(annotations),
            )
            .set_update_mask(google_cloud_wkt::FieldMask::default().set_paths(["annotations"]))
            .send()
            .await;
        if let Err(e) = claim {
            let e = call::classify(format!("claim the rotation of {name}"), e);
            // FAILED_PRECONDITION: the etag changed, another writer claimed first.
            if e.kind() == Failure::Disabled {
                tracing::info!(
                    target: "kms::gcp",
                    key_id = %key_id,
                    expected_version = n,
                    "another writer claimed the rotation from this version first"
                );
                return Ok(None);
            }
            return Err(e.into_error(key_id, None));
        }
        self.rotate(key_id, live).await.map(Some)
    }

    /// Adds a version holding `material`, as `rotate` does; when the secret
    /// does not exist it is created first (automatic replication).
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        _live: &LiveVersions,
    ) -> Result<DataKey> {
        let listed = match self.add_version(key_id, &material).await {
            Err(e) if e.kind() == Failure::NotFound => match self.create_secret(key_id).await {
                // Created here, or by another writer just now.
                Ok(()) => self.add_version(key_id, &material).await,
                Err(e) if e.kind() == Failure::Conflict => {
                    self.add_version(key_id, &material).await
                }
                Err(e) => Err(e),
            },
            added => added,
        }
        .map_err(|e| e.into_error(key_id, None))?;
        Ok(listed.into_key(key_id, material, "imported a key version"))
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        let name = self.secret_name(key_id);
        let (secret, versions) = tokio::join!(
            async {
                self.client
                    .get_secret()
                    .set_name(&name)
                    .send()
                    .await
                    .map_err(|e| call::classify(format!("get {name}"), e))
            },
            self.list(key_id),
        );
        let secret = secret.map_err(|e| e.into_error(key_id, None))?;
        let versions = versions.map_err(|e| e.into_error(key_id, None))?;
        let current = versions.iter().rev().find(|v| v.enabled);
        let mut m = KeyMetadata::new(key_id.clone(), PROVIDER);
        m.description = secret
            .annotations
            .get("description")
            .or_else(|| secret.labels.get("description"))
            .cloned();
        m.created_at = secret
            .create_time
            .as_ref()
            .and_then(|t| timestamp(t.seconds(), t.nanos()))
            .or_else(|| versions.first().and_then(|v| v.created_at));
        m.last_rotated = match (current, versions.first()) {
            (Some(c), Some(first)) if c.number != first.number => c.created_at,
            _ => None,
        };
        // Whether `latest` (the newest version) can be used; false when it
        // was disabled or destroyed and an older version stands in.
        m.enabled = versions.last().is_some_and(|v| v.enabled);
        m.current_version = current.map(|c| KeyVersion::from(c.number));
        m.version_count = Some(versions.len() as u64);
        Ok(m)
    }

    async fn health(&self) -> HealthStatus {
        HealthStatus::timed(PROVIDER, self.check_health()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_claims() {
        assert!(claim_time("3 2026-01-01T00:00:00Z", 3).is_some());
        assert!(claim_time("3 2026-01-01T00:00:00Z", 4).is_none());
        assert!(claim_time("3", 3).is_none());
        assert!(claim_time("x 2026-01-01T00:00:00Z", 3).is_none());
        assert!(claim_time("3 yesterday", 3).is_none());
    }

    #[test]
    fn version_numbers() {
        assert_eq!(version_number("projects/p/secrets/s/versions/12"), Some(12));
        assert_eq!(version_number("projects/p/secrets/s/versions/latest"), None);
        assert_eq!(version_number("projects/p/secrets/s/versions/0"), None);
        assert_eq!(version_number(""), None);
        assert_eq!(secret_version(&KeyVersion::from(3)), Some(3));
        assert_eq!(
            secret_version(
                &KeyVersion::new("a1b2c3d4e5f60718").unwrap_or_else(|_| KeyVersion::from(0))
            ),
            None
        );
    }
}
