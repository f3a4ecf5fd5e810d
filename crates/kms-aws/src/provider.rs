//! [`AwsProvider`]: the `KeyProvider` over one SSM SecureString parameter per key id.

use std::fmt;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType};
use chrono::{DateTime, Utc};
use kms_core::retention::{LOW_RETENTION, evicted_by_next_write};
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider, KeyVersion,
    LiveVersions, Result, VersionInfo,
};
use zeroize::{Zeroize, Zeroizing};

use crate::PROVIDER;
use crate::builder::AwsProviderBuilder;
use kms_core::provider_support::{CallError, Failure};

use crate::call;

/// Data keys in AWS Systems Manager Parameter Store: one SecureString
/// parameter per key id, encrypted under a KMS key, one parameter version per
/// key version. See the crate documentation.
pub struct AwsProvider {
    ssm: aws_sdk_ssm::Client,
    kms: aws_sdk_kms::Client,
    region: Option<String>,
    endpoint_url: Option<String>,
    prefix: String,
    kms_key_id: Option<String>,
}

impl fmt::Debug for AwsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The SDK clients are left out: their configuration holds the
        // credentials provider.
        f.debug_struct("AwsProvider")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("parameter_prefix", &self.prefix)
            .field("kms_key_id", &self.kms_key_id)
            .finish_non_exhaustive()
    }
}

/// What DescribeParameters says about a key's parameter.
struct ParameterInfo {
    version: i64,
    kms_key_id: Option<String>,
    description: Option<String>,
}

impl ParameterInfo {
    /// A parameter that does not exist yet (version 0).
    fn absent() -> Self {
        ParameterInfo {
            version: 0,
            kms_key_id: None,
            description: None,
        }
    }
}

impl AwsProvider {
    /// A builder with the documented defaults.
    #[must_use]
    pub fn builder() -> AwsProviderBuilder {
        AwsProviderBuilder::new()
    }

    /// Builds from the process environment (see the crate documentation for
    /// the variables).
    ///
    /// # Errors
    /// As [`AwsProviderBuilder::build`].
    pub async fn from_env() -> Result<Self> {
        AwsProviderBuilder::from_lookup(|name| std::env::var(name).ok())?
            .build()
            .await
    }

    pub(crate) fn new(
        config: &SdkConfig,
        prefix: String,
        kms_key_id: Option<String>,
        endpoint_url: Option<String>,
    ) -> Self {
        AwsProvider {
            ssm: aws_sdk_ssm::Client::new(config),
            kms: aws_sdk_kms::Client::new(config),
            region: config.region().map(ToString::to_string),
            endpoint_url,
            prefix,
            kms_key_id,
        }
    }

    /// The SSM parameter name of a key id: `<prefix>/<key id>`.
    #[must_use]
    pub fn parameter_name(&self, key_id: &KeyId) -> String {
        format!("{}/{}", self.prefix, key_id)
    }

    /// Turns on KMS's yearly automatic rotation of the KMS key that
    /// encrypts the parameter of `key_id` (the configured
    /// `KMS_AWS_KMS_KEY_ID`, else the parameter's own key). This rotates
    /// the *wrapping* key's material; the data key (the parameter value)
    /// changes only with [`rotate`](KeyProvider::rotate).
    ///
    /// # Errors
    /// As the other operations; [`Error::Provider`] when the parameter
    /// uses the AWS managed key `alias/aws/ssm`, which AWS rotates itself.
    pub async fn enable_key_rotation(&self, key_id: &KeyId) -> Result<()> {
        let kms_key = self.wrapping_key(key_id).await?;
        self.kms
            .enable_key_rotation()
            .key_id(&kms_key)
            .send()
            .await
            .map_err(|e| call::classify("KMS EnableKeyRotation", e).into_error(key_id, None))?;
        tracing::info!(target: "kms::aws", key_id = %key_id, kms_key = %kms_key, "KMS automatic key rotation enabled");
        Ok(())
    }

    /// The KMS key `rotate` encrypts with: the configured one, else the
    /// parameter's.
    async fn wrapping_key(&self, key_id: &KeyId) -> Result<String> {
        if let Some(k) = &self.kms_key_id {
            return Ok(k.clone());
        }
        let info = self.describe_parameter(key_id).await?;
        info.kms_key_id.ok_or_else(|| {
            Error::provider(
                PROVIDER,
                format!(
                    "{} has no KMS key id (is it a SecureString?)",
                    self.parameter_name(key_id)
                ),
            )
        })
    }

    /// DescribeParameters filtered to the key's parameter name.
    async fn describe_parameter(&self, key_id: &KeyId) -> Result<ParameterInfo> {
        let name = self.parameter_name(key_id);
        let filter = ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .values(&name)
            .build()
            .map_err(|e| Error::provider(PROVIDER, e.to_string()))?;
        let out = self
            .ssm
            .describe_parameters()
            .parameter_filters(filter)
            .send()
            .await
            .map_err(|e| call::classify("SSM DescribeParameters", e).into_error(key_id, None))?;
        let p = out
            .parameters()
            .iter()
            .find(|p| p.name() == Some(name.as_str()))
            .ok_or_else(|| Error::key_not_found(key_id, None))?;
        Ok(ParameterInfo {
            version: p.version(),
            kms_key_id: p.key_id().map(str::to_owned),
            description: p.description().map(str::to_owned),
        })
    }

    /// GetParameter with decryption: `name` or `name:N`.
    async fn read(&self, key_id: &KeyId, version: Option<&KeyVersion>) -> Result<DataKey> {
        let mut name = self.parameter_name(key_id);
        if let Some(v) = version {
            let n = parse_version(v).ok_or_else(|| Error::key_not_found(key_id, Some(v)))?;
            name = format!("{name}:{n}");
        }
        let out = self
            .ssm
            .get_parameter()
            .name(&name)
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| {
                let e = call::classify("SSM GetParameter", e);
                // SSM answers a version selector beyond the last version with
                // ParameterVersionNotFound, and an invalid one with
                // ValidationException.
                if e.kind() == Failure::Unexpected
                    && e.is_code("ValidationException")
                    && version.is_some()
                {
                    Error::key_not_found(key_id, version)
                } else {
                    e.into_error(key_id, version)
                }
            })?;
        let mut parameter = out
            .parameter
            .ok_or_else(|| Error::provider(PROVIDER, "GetParameter returned no parameter"))?;
        let value = Zeroizing::new(parameter.value.take().unwrap_or_default());
        if parameter.r#type() != Some(&ParameterType::SecureString) {
            tracing::warn!(
                target: "kms::aws",
                parameter = %name,
                "the key's parameter is not a SecureString: the key is stored unencrypted"
            );
        }
        let material = KeyMaterial::from_hex(value.trim()).map_err(|_| Error::InvalidKeyLength)?;
        let got = KeyVersion::from(u64::try_from(parameter.version()).unwrap_or(0));
        if let Some(v) = version
            && parse_version(v) != parse_version(&got)
        {
            return Err(Error::key_not_found(key_id, Some(v)));
        }
        Ok(DataKey::new(key_id.clone(), got, material))
    }

    /// GetParameterHistory, every page; oldest first.
    async fn history(&self, key_id: &KeyId) -> Result<Vec<HistoryEntry>> {
        let name = self.parameter_name(key_id);
        let mut entries = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = self
                .ssm
                .get_parameter_history()
                .name(&name)
                .with_decryption(false)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| {
                    call::classify("SSM GetParameterHistory", e).into_error(key_id, None)
                })?;
            for p in out.parameters() {
                entries.push(HistoryEntry {
                    version: p.version(),
                    modified: p.last_modified_date().and_then(to_chrono),
                    description: p.description().map(str::to_owned),
                    kms_key_id: p.key_id().map(str::to_owned),
                    labels: p.labels().to_vec(),
                });
            }
            match out.next_token {
                Some(token) if !token.is_empty() => next = Some(token),
                _ => break,
            }
        }
        if entries.is_empty() {
            return Err(Error::key_not_found(key_id, None));
        }
        entries.sort_by_key(|e| e.version);
        Ok(entries)
    }

    /// Writes a new parameter version over the one `info` describes (see
    /// [`ParameterInfo::absent`] for a parameter that does not exist yet),
    /// holding `material`, or 32 random bytes from KMS when `None`.
    ///
    /// Before writing, [`make_room`](Self::make_room) checks SSM's window
    /// of 100 versions against `live` and labels the oldest live version,
    /// so that SSM refuses rather than deletes it; that refusal becomes
    /// [`Error::RetentionExhausted`]. Once SSM has written the version it is
    /// returned, even when another writer wrote one at the same time: an
    /// error then would invite a retry that writes yet another version.
    async fn put_new_version(
        &self,
        key_id: &KeyId,
        info: ParameterInfo,
        material: Option<KeyMaterial>,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        let name = self.parameter_name(key_id);
        let kms_key = match (&self.kms_key_id, info.kms_key_id) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(k)) => Some(k),
            // A new parameter: SSM's default key for SecureStrings (`alias/aws/ssm`).
            (None, None) if info.version == 0 => None,
            (None, None) => {
                return Err(Error::provider(
                    PROVIDER,
                    format!("{name} has no KMS key id (is it a SecureString?)"),
                ));
            }
        };
        if let Some(k) = &kms_key {
            self.require_enabled(key_id, k).await?;
        }
        if info.version > 0 {
            self.make_room(key_id, live).await?;
        }
        let (material, what) = match material {
            Some(m) => (m, "key version imported"),
            None => (self.random_key(key_id).await?, "key rotated"),
        };
        let hex = material.to_hex();
        let mut put = self
            .ssm
            .put_parameter()
            .name(&name)
            .value(hex.as_str())
            .r#type(ParameterType::SecureString)
            // Creating: ParameterAlreadyExists if another writer created it first.
            .overwrite(info.version > 0);
        if let Some(k) = &kms_key {
            put = put.key_id(k);
        }
        if let Some(d) = &info.description {
            put = put.description(d);
        }
        let out = match put.send().await {
            Ok(out) => out,
            Err(e) => {
                let e = call::classify("SSM PutParameter", e);
                return Err(if e.is_code("ParameterAlreadyExists") {
                    Error::Conflict {
                        key_id: key_id.clone(),
                    }
                } else if e.is_code("ParameterMaxVersionLimitExceeded") {
                    self.refused_eviction(key_id, &e).await
                } else {
                    e.into_error(key_id, None)
                });
            }
        };
        let written = out.version();
        let version = KeyVersion::from(u64::try_from(written).unwrap_or(0));
        tracing::info!(target: "kms::aws", key_id = %key_id, version = %version, "{what}");
        if written != info.version + 1 {
            // Written, and current or soon superseded: not an error, which
            // would invite a retry that writes a third version.
            tracing::warn!(
                target: "kms::aws",
                key_id = %key_id,
                expected = info.version + 1,
                written,
                "another writer wrote a version of the key at the same time"
            );
        }
        Ok(DataKey::new(key_id.clone(), version, material))
    }

    /// Checks that one more version fits SSM's window of
    /// [`SSM_MAX_VERSIONS`] without deleting a live version (refuses with
    /// [`Error::RetentionExhausted`] otherwise, before writing anything),
    /// and puts [`LIVE_LABEL`] on the oldest live version, so that SSM
    /// itself refuses a write that would delete it (a concurrent writer, a
    /// stale check). Without permission to label, it asks for
    /// [`LOW_RETENTION`] versions of room instead of one, so that two
    /// writers racing cannot push the oldest live version out.
    async fn make_room(&self, key_id: &KeyId, live: &LiveVersions) -> Result<()> {
        let history = self.history(key_id).await?;
        let listed = version_list(&history);
        let Some(oldest_index) = live.oldest_live_index(&listed) else {
            return Ok(());
        };
        let (Some(oldest), Some(entry)) = (listed.get(oldest_index), history.get(oldest_index))
        else {
            return Ok(());
        };
        let refuse = |detail: String| Error::RetentionExhausted {
            provider: PROVIDER,
            key_id: key_id.clone(),
            oldest_live: Some(oldest.version.clone()),
            max_versions: Some(SSM_MAX_VERSIONS),
            detail,
        };
        let needed = live.slots(&listed) + 1;
        if needed > SSM_MAX_VERSIONS {
            return Err(refuse(format!(
                "SSM keeps {SSM_MAX_VERSIONS} versions of a parameter"
            )));
        }
        if !entry.labels.iter().any(|l| l == LIVE_LABEL) {
            let labelled = self
                .ssm
                .label_parameter_version()
                .name(self.parameter_name(key_id))
                .parameter_version(entry.version)
                .labels(LIVE_LABEL)
                .send()
                .await;
            match labelled {
                Ok(out) if out.invalid_labels().is_empty() => {
                    tracing::debug!(
                        target: "kms::aws",
                        key_id = %key_id,
                        version = %oldest.version,
                        label = LIVE_LABEL,
                        "labelled the oldest live key version"
                    );
                }
                Ok(_) => {
                    return Err(Error::provider(
                        PROVIDER,
                        format!("SSM refused the label {LIVE_LABEL} as invalid"),
                    ));
                }
                Err(e) => {
                    let e = call::classify("SSM LabelParameterVersion", e);
                    if e.kind() != Failure::Denied {
                        return Err(e.into_error(key_id, None));
                    }
                    if needed + LOW_RETENTION - 1 > SSM_MAX_VERSIONS {
                        return Err(refuse(format!(
                            "SSM keeps {SSM_MAX_VERSIONS} versions of a parameter, and without ssm:LabelParameterVersion the last free place is not used (a concurrent writer could push version {} out)",
                            oldest.version
                        )));
                    }
                    tracing::warn!(
                        target: "kms::aws",
                        key_id = %key_id,
                        error = %e,
                        "cannot label the oldest live key version (grant ssm:LabelParameterVersion): SSM is not protecting it against a concurrent writer"
                    );
                }
            }
        }
        if let Some(last) = evicted_by_next_write(SSM_MAX_VERSIONS, &listed).last() {
            tracing::warn!(
                target: "kms::audit",
                key_id = %key_id,
                provider = PROVIDER,
                evicted_through = %last.version,
                minimum_decryption_version = ?live.minimum().map(ToString::to_string),
                max_versions = SSM_MAX_VERSIONS,
                "the new key version makes SSM delete retired key versions"
            );
        }
        Ok(())
    }

    /// SSM refused a new version because its oldest version carries a
    /// label (ours on the oldest live version, or anyone's): names that
    /// version and its labels.
    async fn refused_eviction(&self, key_id: &KeyId, e: &CallError) -> Error {
        let oldest = self.history(key_id).await.ok().and_then(|h| {
            h.into_iter().next().map(|e| {
                let version = u64::try_from(e.version).ok().map(KeyVersion::from);
                (version, e.labels.join(", "))
            })
        });
        let (version, labels) = oldest.unwrap_or_default();
        Error::RetentionExhausted {
            provider: PROVIDER,
            key_id: key_id.clone(),
            oldest_live: version,
            max_versions: Some(SSM_MAX_VERSIONS),
            detail: format!(
                "SSM keeps {SSM_MAX_VERSIONS} versions and refused to delete the oldest, which is labelled ({labels}): {}",
                e.detail()
            ),
        }
    }

    /// KMS DescribeKey: refuses a disabled (or pending deletion) KMS key
    /// before a new version is written with it. AWS itself refuses such a
    /// PutParameter, emulators may not; either way the error is the same.
    async fn require_enabled(&self, key_id: &KeyId, kms_key: &str) -> Result<()> {
        let out = self
            .kms
            .describe_key()
            .key_id(kms_key)
            .send()
            .await
            .map_err(|e| call::classify("KMS DescribeKey", e).into_error(key_id, None))?;
        match out.key_metadata() {
            Some(k) if !k.enabled() => {
                let state = k.key_state().map_or("not enabled", |s| s.as_str());
                Err(CallError::new(
                    PROVIDER,
                    Failure::Denied,
                    "KMS DescribeKey",
                    format!("the KMS key {kms_key} is {state}"),
                )
                .into_error(key_id, None))
            }
            _ => Ok(()),
        }
    }

    /// KMS GenerateRandom: 32 bytes, the returned buffer wiped after use.
    async fn random_key(&self, key_id: &KeyId) -> Result<KeyMaterial> {
        let out = self
            .kms
            .generate_random()
            .number_of_bytes(32)
            .send()
            .await
            .map_err(|e| call::classify("KMS GenerateRandom", e).into_error(key_id, None))?;
        let mut bytes = out
            .plaintext
            .map(aws_smithy_blob_into_inner)
            .unwrap_or_default();
        let material = KeyMaterial::from_slice(&bytes);
        bytes.zeroize();
        material
            .map_err(|_| Error::provider(PROVIDER, "KMS GenerateRandom did not return 32 bytes"))
    }
}

fn aws_smithy_blob_into_inner(blob: aws_sdk_kms::primitives::Blob) -> Vec<u8> {
    blob.into_inner()
}

/// One entry of GetParameterHistory, without the value.
struct HistoryEntry {
    version: i64,
    modified: Option<DateTime<Utc>>,
    description: Option<String>,
    kms_key_id: Option<String>,
    labels: Vec<String>,
}

/// How many versions SSM Parameter Store keeps of a parameter.
pub const SSM_MAX_VERSIONS: u64 = 100;

/// The parameter label that protects the oldest live key version: SSM
/// refuses (`ParameterMaxVersionLimitExceeded`) to write a new version
/// when that would delete a labelled oldest version, instead of deleting it.
pub const LIVE_LABEL: &str = "kms-oldest-live";

/// Versions from GetParameterHistory, oldest first.
fn version_list(history: &[HistoryEntry]) -> Vec<VersionInfo> {
    history
        .iter()
        .filter_map(|e| {
            let v = u64::try_from(e.version).ok()?;
            Some(VersionInfo::new(KeyVersion::from(v), e.modified, true))
        })
        .collect()
}

/// A key version is a positive parameter version number.
fn parse_version(v: &KeyVersion) -> Option<i64> {
    v.as_str().parse::<i64>().ok().filter(|n| *n > 0)
}

fn to_chrono(t: &aws_sdk_ssm::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl KeyProvider for AwsProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        self.read(key_id, None).await
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        self.read(key_id, Some(version)).await
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        Ok(version_list(&self.history(key_id).await?))
    }

    /// Writes a new parameter version with 32 random bytes from KMS
    /// GenerateRandom, keeping `live` (see `put_new_version`). SSM has no
    /// check-and-set: when another writer raced this one, both versions
    /// are written and each call returns its own (a warning is logged).
    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        let info = self.describe_parameter(key_id).await?;
        self.put_new_version(key_id, info, None, live).await
    }

    /// Writes `material` as a new parameter version, as `rotate` does
    /// (same KMS key, same retention check), creating the
    /// parameter when it does not exist: under `KMS_AWS_KMS_KEY_ID` when
    /// set, else SSM's default key for SecureStrings (`alias/aws/ssm`).
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        let info = match self.describe_parameter(key_id).await {
            Ok(info) => info,
            Err(Error::KeyNotFound { .. }) => ParameterInfo::absent(),
            Err(e) => return Err(e),
        };
        self.put_new_version(key_id, info, Some(material), live)
            .await
    }

    /// SSM has no check-and-set, so the rotation from version N is claimed
    /// first by creating the marker parameter `<parameter>.rotation/<N>`
    /// with `Overwrite=false` (SSM creates a name at most once): only the
    /// instance that created it rotates. It then checks that N is still
    /// current, writes the new version and deletes the marker. A process
    /// that dies between claiming and writing leaves the marker behind,
    /// which blocks scheduled rotation from N until it is deleted (the
    /// warning names it); `rotate` is not affected.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let Some(n) = parse_version(expected) else {
            return Ok(None);
        };
        if self.describe_parameter(key_id).await?.version != n {
            return Ok(None);
        }
        let marker = format!("{}.rotation/{n}", self.parameter_name(key_id));
        let claimed = self
            .ssm
            .put_parameter()
            .name(&marker)
            .value(Utc::now().to_rfc3339())
            .r#type(ParameterType::String)
            .description("kms: a rotation from this key version is in progress")
            .overwrite(false)
            .send()
            .await;
        match claimed {
            Ok(_) => {}
            Err(e) => {
                let e = call::classify("SSM PutParameter (rotation marker)", e);
                if e.is_code("ParameterAlreadyExists") {
                    tracing::info!(
                        target: "kms::aws",
                        key_id = %key_id,
                        marker = %marker,
                        "another writer is rotating the key from this version"
                    );
                    return Ok(None);
                }
                return Err(e.into_error(key_id, None));
            }
        }
        // Claimed: still current? (The claim may come after another writer
        // rotated from N and deleted its marker.)
        let result = match self.describe_parameter(key_id).await {
            Ok(info) if info.version == n => self
                .put_new_version(key_id, info, None, live)
                .await
                .map(Some),
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        };
        if let Err(e) = self.ssm.delete_parameter().name(&marker).send().await {
            tracing::warn!(
                target: "kms::aws",
                key_id = %key_id,
                marker = %marker,
                error = %call::classify("SSM DeleteParameter (rotation marker)", e),
                "could not delete the rotation marker: delete it by hand, or scheduled rotation from this version stays blocked"
            );
        }
        result
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        let history = self.history(key_id).await?;
        let mut meta = KeyMetadata::new(key_id.clone(), PROVIDER);
        let (Some(first), Some(last)) = (history.first(), history.last()) else {
            return Err(Error::key_not_found(key_id, None));
        };
        meta.created_at = first.modified;
        if history.len() > 1 {
            meta.last_rotated = last.modified;
        }
        meta.current_version = u64::try_from(last.version).ok().map(KeyVersion::from);
        meta.version_count = u64::try_from(history.len()).ok();
        meta.max_versions = Some(SSM_MAX_VERSIONS);
        meta.versions_remaining =
            Some(LiveVersions::all().remaining(SSM_MAX_VERSIONS, &version_list(&history)));
        meta.description = last.description.clone();
        let kms_key = self.kms_key_id.clone().or_else(|| last.kms_key_id.clone());
        if let Some(kms_key) = kms_key {
            let out = self
                .kms
                .describe_key()
                .key_id(&kms_key)
                .send()
                .await
                .map_err(|e| call::classify("KMS DescribeKey", e).into_error(key_id, None))?;
            if let Some(k) = out.key_metadata() {
                meta.enabled = k.enabled();
                if let Some(usage) = k.key_usage() {
                    meta.key_usage = usage.as_str().to_owned();
                }
                if meta.description.is_none() {
                    meta.description = k.description().filter(|d| !d.is_empty()).map(str::to_owned);
                }
            }
        }
        Ok(meta)
    }

    async fn health(&self) -> HealthStatus {
        HealthStatus::timed(PROVIDER, async {
            match self.ssm.describe_parameters().max_results(1).send().await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let e = call::classify("SSM DescribeParameters", e);
                    let text = e.to_string();
                    let err = e.into_error(&KeyId::default(), None);
                    Err(format!("{err}: {text}"))
                }
            }
        })
        .await
    }
}
