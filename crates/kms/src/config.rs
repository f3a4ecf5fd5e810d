//! Configuration: the spec's environment variables and the builder.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use kms_cache::{CacheConfig, CachingProvider};
use kms_circuit::{ResilienceConfig, ResilientProvider};
use kms_core::{Error, IvLength, KeyId, KeyProvider, KeyVersion, Result};
use kms_telemetry::{MeteredProvider, TelemetryConfig};
use serde::Serialize;

use crate::client::Kms;
use crate::lifecycle::LifecycleConfig;

/// Default per-call timeout (`KMS_TIMEOUT`): 10 000 ms, as in the spec.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Default number of retries after a failed call (`KMS_RETRY_ATTEMPTS`): 3.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;

/// Default key cache lifetime (`KMS_CACHE_TTL`): 5 minutes, as in the spec.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// Most retries accepted in `KMS_RETRY_ATTEMPTS`.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// Which provider holds the keys (`KMS_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProviderKind {
    /// Environment variables (development only). The default.
    #[default]
    Env,
    /// AWS SSM Parameter Store SecureString, encrypted with AWS KMS.
    Aws,
    /// Google Cloud Secret Manager.
    Gcp,
    /// HashiCorp Vault KV version 2.
    Vault,
}

impl ProviderKind {
    /// The name used in `KMS_PROVIDER`, which is also the cargo feature of
    /// the `kms` crate that compiles the provider in.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Env => "env",
            ProviderKind::Aws => "aws",
            ProviderKind::Gcp => "gcp",
            ProviderKind::Vault => "vault",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "env" => Ok(ProviderKind::Env),
            "aws" => Ok(ProviderKind::Aws),
            "gcp" => Ok(ProviderKind::Gcp),
            "vault" => Ok(ProviderKind::Vault),
            _ => Err(Error::config(
                "KMS_PROVIDER",
                "must be one of env, aws, gcp, vault",
            )),
        }
    }
}

/// The active configuration, with no secrets in it: what
/// `GET /api/admin/kms/config` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KmsConfig {
    /// `KMS_PROVIDER`.
    pub provider: String,
    /// `KMS_KEY_ID`.
    pub key_id: KeyId,
    /// `KMS_TIMEOUT`, in milliseconds.
    #[serde(rename = "timeout")]
    pub timeout_ms: u64,
    /// `KMS_RETRY_ATTEMPTS`.
    pub retry_attempts: u32,
    /// `KMS_CACHE_TTL`, in milliseconds (0: no cache).
    #[serde(rename = "cacheTtl")]
    pub cache_ttl_ms: u64,
    /// `KMS_IV_LENGTH`, in bytes.
    pub iv_length: usize,
    /// `KMS_CACHE_STALE_IF_ERROR`, in milliseconds (`null`: off).
    #[serde(rename = "cacheStaleIfError")]
    pub cache_stale_if_error_ms: Option<u64>,
    /// `KMS_CIRCUIT_FAILURE_THRESHOLD`.
    pub circuit_failure_threshold: u32,
    /// `KMS_CIRCUIT_OPEN_DURATION`, in milliseconds.
    #[serde(rename = "circuitOpenDuration")]
    pub circuit_open_duration_ms: u64,
    /// `KMS_SLOW_THRESHOLD`, in milliseconds: provider calls slower than
    /// this raise the `slow_response` alert.
    #[serde(rename = "slowThreshold")]
    pub slow_threshold_ms: u64,
    /// Whether the facade added its cache, metrics and resilience layers.
    pub layered: bool,
    /// Minimum decryption version per key id (`KMS_MIN_DECRYPTION_VERSION`
    /// for `KMS_KEY_ID`, and the builder's
    /// [`min_decryption_version`](KmsBuilder::min_decryption_version)).
    pub min_decryption_versions: std::collections::BTreeMap<String, String>,
    /// `KMS_ROTATION_PERIOD`, in milliseconds (`null`: no scheduled rotation).
    #[serde(rename = "rotationPeriod")]
    pub rotation_period_ms: Option<u64>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Builds a [`Kms`], from the environment ([`KmsBuilder::from_env`]) or in code.
///
/// | variable | builder | default |
/// | --- | --- | --- |
/// | `KMS_PROVIDER` | [`provider_kind`](Self::provider_kind) / [`provider`](Self::provider) | `env` |
/// | `KMS_KEY_ID` | [`key_id`](Self::key_id) | `default` |
/// | `KMS_TIMEOUT` | [`timeout`](Self::timeout) | 10000 (ms) |
/// | `KMS_RETRY_ATTEMPTS` | [`retry_attempts`](Self::retry_attempts) | 3 |
/// | `KMS_CACHE_TTL` | [`cache_ttl`](Self::cache_ttl) | 300000 (ms, 5 minutes) |
/// | `KMS_IV_LENGTH` | [`iv_length`](Self::iv_length) | 12 (bytes; 16 also accepted) |
/// | `KMS_CACHE_STALE_IF_ERROR` | [`cache_stale_if_error`](Self::cache_stale_if_error) | off |
/// | `KMS_CIRCUIT_FAILURE_THRESHOLD` | [`circuit_failure_threshold`](Self::circuit_failure_threshold) | 5 |
/// | `KMS_CIRCUIT_OPEN_DURATION` | [`circuit_open_duration`](Self::circuit_open_duration) | 30000 (ms) |
/// | `KMS_SLOW_THRESHOLD` | [`slow_threshold`](Self::slow_threshold) | 1000 (ms; slower provider calls raise the `slow_response` alert) |
/// | `KMS_MIN_DECRYPTION_VERSION` | [`min_decryption_version`](Self::min_decryption_version) (any key id; the variable applies to `KMS_KEY_ID`) | none: every version decrypts |
/// | `KMS_ROTATION_PERIOD` | [`rotation_period`](Self::rotation_period), [`rotation_check_interval`](Self::rotation_check_interval) | off |
/// | `ENCRYPTION_KEY`, `ENCRYPTION_KEY_PREVIOUS` | [`env_key`](Self::env_key), [`env_previous_key`](Self::env_previous_key) | none |
/// | `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_*`, `KMS_VAULT_*` (feature `vault`; listed in the `kms-vault` crate) | `vault` | mount `secret`, prefix `boosterbeacon/encryption-keys` |
/// | `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_*`, `KMS_AWS_*` (feature `aws`; listed in the `kms-aws` crate) | `aws` | parameter `/boosterbeacon/encryption-keys/<KMS_KEY_ID>` |
/// | `GOOGLE_CLOUD_PROJECT`, `GOOGLE_APPLICATION_CREDENTIALS`, `KMS_GCP_*` (feature `gcp`; listed in the `kms-gcp` crate) | `gcp` | secret `boosterbeacon-encryption-key-<KMS_KEY_ID>` |
///
/// Durations are milliseconds when given as a bare number; the suffixes
/// `ms`, `s`, `m`, `h` and `d` (days) are accepted too (`KMS_CACHE_TTL=5m`,
/// `KMS_ROTATION_PERIOD=90d`).
///
/// # Key lifecycle
///
/// **Minimum decryption version** (as Vault transit's
/// `min_decryption_version`): [`Kms::decrypt`] refuses a ciphertext written
/// under a version older than the minimum with
/// [`Error::KeyVersionRetired`], so old versions can be retired once the
/// data has been rewrapped ([`Kms::rewrap_text`], `kms rewrap`). Versions
/// are the provider's own names (Vault and Secret Manager numbers, SSM
/// parameter versions, env fingerprints); "older" means earlier in
/// [`KeyProvider::versions`]. `build()` lists the key's versions (one
/// provider call) and fails when the minimum is not among them. The list is
/// cached and fetched again when a ciphertext names a version it lacks.
///
/// **Scheduled rotation**: with a rotation period, `build()` starts a
/// background task (on the current Tokio runtime) that checks every
/// min(period / 10, 1 h), with jitter, whether the configured key's current
/// version is at least the period old (its creation time as the provider
/// lists it, never cached) and then rotates it with
/// [`KeyProvider::rotate_if_current`]: a check-and-set, so that many
/// instances sharing the key make one new version per period, not one each.
/// The task stops when the last clone of the [`Kms`] is dropped and never
/// keeps the process alive. Outcomes are logged (target `kms`): rotations at
/// `info`, failures at `warn`.
///
/// # The provider stack
///
/// [`build`](Self::build) wraps the provider in layers that implement the
/// same [`KeyProvider`] trait, in this order (innermost first): the
/// provider; a per-attempt timeout, retries of temporary errors and a
/// circuit breaker ([`kms_circuit::ResilientProvider`]); metrics, audit
/// events and alerts ([`kms_telemetry::MeteredProvider`]), so that every
/// call that leaves the cache is measured with its retries, and a call
/// refused by the open circuit counts as unavailable; the key cache
/// ([`kms_cache::CachingProvider`]) outermost, so a cache hit never touches
/// the metrics, the breaker or the provider. Built by hand, the same stack is:
///
/// ```no_run
/// use kms::cache::{CacheConfig, CachingProvider};
/// use kms::circuit::{ResilienceConfig, ResilientProvider};
/// use kms::telemetry::{MeteredProvider, TelemetryConfig};
///
/// # async fn stack() -> kms::Result<()> {
/// // 1. The provider.
/// let provider = kms::env::EnvProvider::from_env()?;
/// // 2. Timeout inside retry inside the circuit breaker (KMS_TIMEOUT, KMS_RETRY_ATTEMPTS).
/// let guarded = ResilientProvider::new(provider, ResilienceConfig::default());
/// // 3. Metrics, audit events and alerts (KMS_SLOW_THRESHOLD).
/// let metered = MeteredProvider::new(guarded, TelemetryConfig::default());
/// // 4. The cache outermost (KMS_CACHE_TTL).
/// let cached = CachingProvider::new(metered, CacheConfig::default());
/// // Used as is: no further layers.
/// let kms = kms::Kms::builder().provider_unlayered(cached).build().await?;
/// # let _ = kms; Ok(()) }
/// ```
pub struct KmsBuilder {
    kind: ProviderKind,
    custom: Option<Arc<dyn KeyProvider>>,
    layered: bool,
    key_id: KeyId,
    iv_length: IvLength,
    resilience: ResilienceConfig,
    telemetry: TelemetryConfig,
    cache: CacheConfig,
    lifecycle: LifecycleConfig,
    #[cfg(feature = "env")]
    env: kms_env::EnvProviderBuilder,
    #[cfg(feature = "vault")]
    vault: kms_vault::VaultProviderBuilder,
    #[cfg(feature = "aws")]
    aws: kms_aws::AwsProviderBuilder,
    #[cfg(feature = "gcp")]
    gcp: kms_gcp::GcpProviderBuilder,
}

impl fmt::Debug for KmsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("KmsBuilder");
        d.field("provider", &self.kind)
            .field("custom_provider", &self.custom)
            .field("key_id", &self.key_id)
            .field("layered", &self.layered)
            .field("iv_length", &self.iv_length)
            .field("resilience", &self.resilience)
            .field("telemetry", &self.telemetry)
            .field("cache", &self.cache)
            .field("lifecycle", &self.lifecycle);
        #[cfg(feature = "env")]
        d.field("env", &self.env);
        #[cfg(feature = "vault")]
        d.field("vault", &self.vault);
        #[cfg(feature = "aws")]
        d.field("aws", &self.aws);
        #[cfg(feature = "gcp")]
        d.field("gcp", &self.gcp);
        d.finish()
    }
}

impl Default for KmsBuilder {
    fn default() -> Self {
        KmsBuilder {
            kind: ProviderKind::default(),
            custom: None,
            layered: true,
            key_id: KeyId::default(),
            iv_length: IvLength::default(),
            resilience: ResilienceConfig {
                timeout: DEFAULT_TIMEOUT,
                retries: DEFAULT_RETRY_ATTEMPTS,
                ..ResilienceConfig::default()
            },
            telemetry: TelemetryConfig::default(),
            cache: CacheConfig::with_ttl(DEFAULT_CACHE_TTL),
            lifecycle: LifecycleConfig::default(),
            #[cfg(feature = "env")]
            env: kms_env::EnvProviderBuilder::default(),
            #[cfg(feature = "vault")]
            vault: kms_vault::VaultProviderBuilder::default(),
            #[cfg(feature = "aws")]
            aws: kms_aws::AwsProviderBuilder::default(),
            #[cfg(feature = "gcp")]
            gcp: kms_gcp::GcpProviderBuilder::default(),
        }
    }
}

impl KmsBuilder {
    /// A builder with the documented defaults and no provider settings.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every variable in the table above from the process environment.
    ///
    /// # Errors
    /// [`Error::Config`] naming the first variable with an invalid value.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`KmsBuilder::from_env`], reading variables through `lookup`
    /// (handy in tests, and for prefixed or file-based configuration).
    ///
    /// # Errors
    /// [`Error::Config`] naming the first variable with an invalid value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let mut b = KmsBuilder::default();
        if let Some(v) = get("KMS_PROVIDER") {
            b.kind = v.parse()?;
        }
        if let Some(v) = get("KMS_KEY_ID") {
            b.key_id = KeyId::new(v.trim())?;
        }
        if let Some(v) = get("KMS_TIMEOUT") {
            b.resilience.timeout = parse_duration("KMS_TIMEOUT", &v)?;
            if b.resilience.timeout.is_zero() {
                return Err(Error::config("KMS_TIMEOUT", "must be greater than 0"));
            }
        }
        if let Some(v) = get("KMS_RETRY_ATTEMPTS") {
            b.resilience.retries = v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n <= MAX_RETRY_ATTEMPTS)
                .ok_or_else(|| {
                    Error::config(
                        "KMS_RETRY_ATTEMPTS",
                        format!("must be a whole number from 0 to {MAX_RETRY_ATTEMPTS}"),
                    )
                })?;
        }
        if let Some(v) = get("KMS_CACHE_TTL") {
            b.cache.ttl = parse_duration("KMS_CACHE_TTL", &v)?;
        }
        if let Some(v) = get("KMS_CACHE_STALE_IF_ERROR") {
            let grace = parse_duration("KMS_CACHE_STALE_IF_ERROR", &v)?;
            b.cache.stale_if_error = (!grace.is_zero()).then_some(grace);
        }
        if let Some(v) = get("KMS_CIRCUIT_FAILURE_THRESHOLD") {
            b.resilience.failure_threshold =
                v.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                    Error::config(
                        "KMS_CIRCUIT_FAILURE_THRESHOLD",
                        "must be a whole number of at least 1",
                    )
                })?;
        }
        if let Some(v) = get("KMS_CIRCUIT_OPEN_DURATION") {
            b.resilience.open_duration = parse_duration("KMS_CIRCUIT_OPEN_DURATION", &v)?;
            if b.resilience.open_duration.is_zero() {
                return Err(Error::config(
                    "KMS_CIRCUIT_OPEN_DURATION",
                    "must be greater than 0",
                ));
            }
        }
        if let Some(v) = get("KMS_MIN_DECRYPTION_VERSION") {
            let version = KeyVersion::new(v.trim()).map_err(|_| {
                Error::config(
                    "KMS_MIN_DECRYPTION_VERSION",
                    "must be a key version name (1 to 64 of A-Z a-z 0-9 _ - . :)",
                )
            })?;
            b.lifecycle.min_versions.push((b.key_id.clone(), version));
        }
        if let Some(v) = get("KMS_ROTATION_PERIOD") {
            let period = parse_duration("KMS_ROTATION_PERIOD", &v)?;
            b.lifecycle.rotation_period = (!period.is_zero()).then_some(period);
        }
        if let Some(v) = get("KMS_SLOW_THRESHOLD") {
            b.telemetry.slow_threshold = parse_duration("KMS_SLOW_THRESHOLD", &v)?;
        }
        if let Some(v) = get("KMS_IV_LENGTH") {
            b.iv_length = v
                .trim()
                .parse()
                .ok()
                .and_then(IvLength::from_len)
                .ok_or_else(|| Error::config("KMS_IV_LENGTH", "must be 12 or 16"))?;
        }
        #[cfg(feature = "env")]
        {
            b.env = kms_env::EnvProviderBuilder::from_lookup(&lookup)?;
        }
        #[cfg(feature = "vault")]
        match kms_vault::VaultProviderBuilder::from_lookup(&lookup) {
            Ok(vault) => b.vault = vault,
            Err(e) if b.kind == ProviderKind::Vault => return Err(e),
            // Another provider is selected: a bad Vault variable is not its concern.
            Err(_) => {}
        }
        #[cfg(feature = "aws")]
        match kms_aws::AwsProviderBuilder::from_lookup(&lookup) {
            Ok(aws) => b.aws = aws,
            Err(e) if b.kind == ProviderKind::Aws => return Err(e),
            // Another provider is selected: a bad AWS variable is not its concern.
            Err(_) => {}
        }
        #[cfg(feature = "gcp")]
        match kms_gcp::GcpProviderBuilder::from_lookup(&lookup) {
            Ok(gcp) => b.gcp = gcp,
            Err(e) if b.kind == ProviderKind::Gcp => return Err(e),
            // Another provider is selected: a bad GCP variable is not its concern.
            Err(_) => {}
        }
        Ok(b)
    }

    /// Selects a built-in provider by kind. It must be compiled in (cargo
    /// feature of the same name).
    #[must_use]
    pub fn provider_kind(mut self, kind: ProviderKind) -> Self {
        self.kind = kind;
        self.custom = None;
        self
    }

    /// Uses any [`KeyProvider`] (a provider built by hand, a test double, or
    /// a custom one) instead of a built-in kind. The facade still wraps it in
    /// its resilience and cache layers.
    #[must_use]
    pub fn provider(self, provider: impl KeyProvider) -> Self {
        self.provider_arc(Arc::new(provider))
    }

    /// Like [`KmsBuilder::provider`], for a provider already in an `Arc`.
    #[must_use]
    pub fn provider_arc(mut self, provider: Arc<dyn KeyProvider>) -> Self {
        self.custom = Some(provider);
        self.layered = true;
        self
    }

    /// Uses `provider` exactly as given, adding no layers: for a stack
    /// composed by hand (see the example above).
    #[must_use]
    pub fn provider_unlayered(mut self, provider: impl KeyProvider) -> Self {
        self.custom = Some(Arc::new(provider));
        self.layered = false;
        self
    }

    /// The key id new encryptions use (`KMS_KEY_ID`, default `default`).
    #[must_use]
    pub fn key_id(mut self, key_id: KeyId) -> Self {
        self.key_id = key_id;
        self
    }

    /// The IV length for new encryptions (`KMS_IV_LENGTH`, default 12 bytes).
    #[must_use]
    pub fn iv_length(mut self, iv_length: IvLength) -> Self {
        self.iv_length = iv_length;
        self
    }

    /// The timeout of each attempt to reach the provider (`KMS_TIMEOUT`,
    /// default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.resilience.timeout = timeout;
        self
    }

    /// Retries after a failed attempt, for temporary errors only
    /// (`KMS_RETRY_ATTEMPTS`, default 3).
    #[must_use]
    pub fn retry_attempts(mut self, retries: u32) -> Self {
        self.resilience.retries = retries;
        self
    }

    /// How long the current key version is cached (`KMS_CACHE_TTL`,
    /// default 5 minutes; zero asks the provider on every encryption).
    #[must_use]
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache.ttl = ttl;
        self
    }

    /// Stale-if-error grace period (`KMS_CACHE_STALE_IF_ERROR`, default off).
    #[must_use]
    pub fn cache_stale_if_error(mut self, grace: Option<Duration>) -> Self {
        self.cache.stale_if_error = grace;
        self
    }

    /// Failed calls in a row that open the circuit
    /// (`KMS_CIRCUIT_FAILURE_THRESHOLD`, default 5).
    #[must_use]
    pub fn circuit_failure_threshold(mut self, failures: u32) -> Self {
        self.resilience.failure_threshold = failures;
        self
    }

    /// How long an open circuit refuses calls before a trial
    /// (`KMS_CIRCUIT_OPEN_DURATION`, default 30 s).
    #[must_use]
    pub fn circuit_open_duration(mut self, duration: Duration) -> Self {
        self.resilience.open_duration = duration;
        self
    }

    /// Provider calls slower than this raise the `slow_response` alert on
    /// `kms::alert` (`KMS_SLOW_THRESHOLD`, default 1000 ms, the spec's).
    #[must_use]
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.telemetry.slow_threshold = threshold;
        self
    }

    /// Every resilience setting at once (timeout, retries, backoff, breaker).
    #[must_use]
    pub fn resilience(mut self, config: ResilienceConfig) -> Self {
        self.resilience = config;
        self
    }

    /// Every cache setting at once.
    #[must_use]
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// Refuses to decrypt ciphertexts of `key_id` written under a version
    /// older than `version` (`KMS_MIN_DECRYPTION_VERSION` for `KMS_KEY_ID`).
    /// May be called for several keys; a second call for the same key
    /// replaces the first. See "Key lifecycle" above.
    #[must_use]
    pub fn min_decryption_version(mut self, key_id: KeyId, version: KeyVersion) -> Self {
        self.lifecycle.min_versions.retain(|(k, _)| *k != key_id);
        self.lifecycle.min_versions.push((key_id, version));
        self
    }

    /// Rotates the configured key once its current version is older than
    /// `period` (`KMS_ROTATION_PERIOD`; `None` or zero: off, the default).
    /// See "Key lifecycle" above.
    #[must_use]
    pub fn rotation_period(mut self, period: impl Into<Option<Duration>>) -> Self {
        self.lifecycle.rotation_period = period.into().filter(|p| !p.is_zero());
        self
    }

    /// How often scheduled rotation checks the key's age (default
    /// min(period / 10, 1 h)); each wait is jittered by +-25%. For tests
    /// and unusual deployments.
    #[must_use]
    pub fn rotation_check_interval(mut self, interval: Duration) -> Self {
        self.lifecycle.check_interval = Some(interval);
        self
    }

    /// The env provider's current key (`ENCRYPTION_KEY`).
    #[cfg(feature = "env")]
    #[must_use]
    pub fn env_key(mut self, value: impl Into<String>) -> Self {
        self.env = self.env.encryption_key(value);
        self
    }

    /// Adds an older env key (`ENCRYPTION_KEY_PREVIOUS`), used only to decrypt.
    #[cfg(feature = "env")]
    #[must_use]
    pub fn env_previous_key(mut self, value: impl Into<String>) -> Self {
        self.env = self.env.previous_key(value);
        self
    }

    /// Selects the Vault provider (`KMS_PROVIDER=vault`) with these
    /// settings, replacing any read by [`KmsBuilder::from_env`]:
    /// `.vault(kms::vault::VaultProvider::builder().address(..).token(..))`.
    #[cfg(feature = "vault")]
    #[must_use]
    pub fn vault(mut self, settings: kms_vault::VaultProviderBuilder) -> Self {
        self.vault = settings;
        self.provider_kind(ProviderKind::Vault)
    }

    /// Selects the AWS provider (`KMS_PROVIDER=aws`) with these settings,
    /// replacing any read by [`KmsBuilder::from_env`]:
    /// `.aws(kms::aws::AwsProvider::builder().region(..))`.
    #[cfg(feature = "aws")]
    #[must_use]
    pub fn aws(mut self, settings: kms_aws::AwsProviderBuilder) -> Self {
        self.aws = settings;
        self.provider_kind(ProviderKind::Aws)
    }

    /// Selects the Google Cloud Secret Manager provider (`KMS_PROVIDER=gcp`)
    /// with these settings, replacing any read by [`KmsBuilder::from_env`]:
    /// `.gcp(kms::gcp::GcpProvider::builder().project(..))`.
    #[cfg(feature = "gcp")]
    #[must_use]
    pub fn gcp(mut self, settings: kms_gcp::GcpProviderBuilder) -> Self {
        self.gcp = settings;
        self.provider_kind(ProviderKind::Gcp)
    }

    /// The configuration this builder describes, without secrets.
    #[must_use]
    pub fn config(&self) -> KmsConfig {
        KmsConfig {
            provider: self
                .custom
                .as_ref()
                .map_or(self.kind.as_str(), |p| p.name())
                .to_owned(),
            key_id: self.key_id.clone(),
            timeout_ms: millis(self.resilience.timeout),
            retry_attempts: self.resilience.retries,
            cache_ttl_ms: millis(self.cache.ttl),
            iv_length: self.iv_length.size(),
            cache_stale_if_error_ms: self.cache.stale_if_error.map(millis),
            circuit_failure_threshold: self.resilience.failure_threshold,
            circuit_open_duration_ms: millis(self.resilience.open_duration),
            slow_threshold_ms: millis(self.telemetry.slow_threshold),
            layered: self.layered,
            min_decryption_versions: self
                .lifecycle
                .min_versions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            rotation_period_ms: self.lifecycle.rotation_period.map(millis),
        }
    }

    /// Builds the provider and the [`Kms`].
    ///
    /// # Errors
    /// [`Error::Config`] when the provider's settings are invalid or the
    /// provider was not compiled in (the message names the cargo feature).
    #[allow(
        clippy::unused_async,
        reason = "cloud providers are built asynchronously; a build without them awaits nothing"
    )]
    pub async fn build(self) -> Result<Kms> {
        let config = self.config();
        let provider: Arc<dyn KeyProvider> = match self.custom {
            Some(p) => p,
            None => match self.kind {
                #[cfg(feature = "env")]
                ProviderKind::Env => Arc::new(self.env.key_id(self.key_id.clone()).build()?),
                #[cfg(feature = "vault")]
                ProviderKind::Vault => Arc::new(self.vault.build().await?),
                #[cfg(feature = "aws")]
                ProviderKind::Aws => Arc::new(self.aws.build().await?),
                #[cfg(feature = "gcp")]
                ProviderKind::Gcp => Arc::new(self.gcp.build().await?),
                #[allow(
                    unreachable_patterns,
                    reason = "reachable only when some provider feature is off"
                )]
                kind => return Err(not_compiled_in(kind)),
            },
        };
        if !self.layered {
            return self
                .lifecycle
                .attach(Kms::from_parts(
                    provider,
                    None,
                    None,
                    self.key_id,
                    self.iv_length,
                    config,
                ))
                .await;
        }
        let guarded = Arc::new(ResilientProvider::from_arc(provider, self.resilience));
        let metered = Arc::new(MeteredProvider::from_arc(guarded.clone(), self.telemetry));
        let cached = Arc::new(CachingProvider::from_arc(metered, self.cache));
        self.lifecycle
            .attach(Kms::from_parts(
                cached.clone(),
                Some(cached),
                Some(guarded),
                self.key_id,
                self.iv_length,
                config,
            ))
            .await
    }
}

fn not_compiled_in(kind: ProviderKind) -> Error {
    Error::config(
        "KMS_PROVIDER",
        format!(
            "the {kind} provider is not compiled in: enable the `{kind}` cargo feature of the `kms` crate"
        ),
    )
}

/// Parses a duration: a bare number is milliseconds; `ms`, `s`, `m`, `h`
/// suffixes are accepted.
///
/// # Errors
/// [`Error::Config`] naming `variable`.
pub fn parse_duration(variable: &str, value: &str) -> Result<Duration> {
    kms_core::settings::parse_duration(variable, value, kms_core::settings::BareUnit::Millis)
}

#[cfg(test)]
mod tests {
    use kms_testing::lookup;

    use super::*;

    #[test]
    fn defaults() {
        let c = KmsBuilder::from_lookup(lookup(&[])).unwrap().config();
        assert_eq!(c.provider, "env");
        assert_eq!(c.key_id.as_str(), "default");
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.retry_attempts, 3);
        assert_eq!(c.cache_ttl_ms, 300_000);
        assert_eq!(c.iv_length, 12);
    }

    #[test]
    fn spec_variables() {
        let c = KmsBuilder::from_lookup(lookup(&[
            ("KMS_PROVIDER", "ENV"),
            ("KMS_KEY_ID", "payments"),
            ("KMS_TIMEOUT", "2500"),
            ("KMS_RETRY_ATTEMPTS", "0"),
            ("KMS_CACHE_TTL", "5m"),
            ("KMS_IV_LENGTH", "16"),
        ]))
        .unwrap()
        .config();
        assert_eq!(c.key_id.as_str(), "payments");
        assert_eq!(c.timeout_ms, 2500);
        assert_eq!(c.retry_attempts, 0);
        assert_eq!(c.cache_ttl_ms, 300_000);
        assert_eq!(c.iv_length, 16);
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (var, val) in [
            ("KMS_PROVIDER", "azure"),
            ("KMS_KEY_ID", "a/b"),
            ("KMS_TIMEOUT", "ten"),
            ("KMS_TIMEOUT", "0"),
            ("KMS_TIMEOUT", "-5"),
            ("KMS_RETRY_ATTEMPTS", "-1"),
            ("KMS_RETRY_ATTEMPTS", "11"),
            ("KMS_CACHE_TTL", "5 minutes"),
            ("KMS_CACHE_TTL", "99999999999999999999"),
            ("KMS_IV_LENGTH", "8"),
        ] {
            let err = KmsBuilder::from_lookup(lookup(&[(var, val)])).unwrap_err();
            assert!(err.to_string().contains(var), "{var}={val}: {err}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("X", "250").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("X", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_duration("X", "30s").unwrap(), Duration::from_secs(30));
        assert_eq!(
            parse_duration("X", "2h").unwrap(),
            Duration::from_secs(7200)
        );
        assert!(parse_duration("X", "").is_err());
        assert!(parse_duration("X", "1.5s").is_err());
    }

    #[tokio::test]
    async fn missing_features_are_named() {
        for (kind, compiled_in) in [
            ("aws", cfg!(feature = "aws")),
            ("gcp", cfg!(feature = "gcp")),
            ("vault", cfg!(feature = "vault")),
        ] {
            if compiled_in {
                continue;
            }
            let err = KmsBuilder::from_lookup(lookup(&[("KMS_PROVIDER", kind)]))
                .unwrap()
                .build()
                .await
                .unwrap_err();
            let text = err.to_string();
            assert!(text.contains("KMS_PROVIDER"), "{text}");
            assert!(text.contains(&format!("`{kind}` cargo feature")), "{text}");
        }
    }
}
