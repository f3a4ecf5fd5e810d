//! Configuration: the spec's environment variables and the builder.
//!
//! The builder ([`KmsBuilder`], here) only collects settings; each job has
//! its own file: which provider and its settings (`kind.rs`), reading the
//! environment (`env.rs`), building the provider stack and the [`Kms`](crate::Kms)
//! (`stack.rs`), and the settings without secrets ([`KmsConfig`],
//! `summary.rs`). Only `stack.rs` knows the client; the client knows
//! only [`KmsConfig`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kms_cache::CacheConfig;
use kms_circuit::ResilienceConfig;
use kms_core::{IvLength, KeyId, KeyProvider, KeyVersion};
use kms_telemetry::TelemetryConfig;

use crate::lifecycle::LifecycleConfig;

mod env;
mod kind;
mod stack;
mod summary;
#[cfg(test)]
mod tests;

pub use env::{SETTINGS, parse_duration};
pub use kind::ProviderKind;
use kind::ProviderSettings;
pub use summary::KmsConfig;
use summary::millis;

/// Default per-call timeout (`KMS_TIMEOUT`): 10 000 ms, as in the spec.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

/// Default number of retries after a failed call (`KMS_RETRY_ATTEMPTS`): 3.
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 3;

/// Default key cache lifetime (`KMS_CACHE_TTL`): 5 minutes, as in the spec.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);

/// Most retries accepted in `KMS_RETRY_ATTEMPTS`.
pub const MAX_RETRY_ATTEMPTS: u32 = 10;

/// Builds a [`Kms`](crate::Kms), from the environment ([`KmsBuilder::from_env`]) or in code.
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
/// `min_decryption_version`): [`Kms::decrypt`](crate::Kms::decrypt) refuses a ciphertext written
/// under a version older than the minimum with
/// [`Error::KeyVersionRetired`](kms_core::Error::KeyVersionRetired), so old versions can be retired once the
/// data has been rewrapped ([`Kms::rewrap_text`](crate::Kms::rewrap_text), `kms rewrap`). Versions
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
/// The task stops when the last clone of the [`Kms`](crate::Kms) is dropped and never
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
    provider: ProviderSettings,
    key_id: KeyId,
    iv_length: IvLength,
    resilience: ResilienceConfig,
    telemetry: TelemetryConfig,
    cache: CacheConfig,
    lifecycle: LifecycleConfig,
}

impl fmt::Debug for KmsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsBuilder")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("iv_length", &self.iv_length)
            .field("resilience", &self.resilience)
            .field("telemetry", &self.telemetry)
            .field("cache", &self.cache)
            .field("lifecycle", &self.lifecycle)
            .finish()
    }
}

impl Default for KmsBuilder {
    fn default() -> Self {
        KmsBuilder {
            provider: ProviderSettings::default(),
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
        }
    }
}

impl KmsBuilder {
    /// A builder with the documented defaults and no provider settings.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Selects a built-in provider by kind. It must be compiled in (cargo
    /// feature of the same name).
    #[must_use]
    pub fn provider_kind(mut self, kind: ProviderKind) -> Self {
        if self.provider.kind() != Some(kind) {
            self.provider = ProviderSettings::unset(kind);
        }
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
        self.provider = ProviderSettings::Custom {
            provider,
            layered: true,
        };
        self
    }

    /// Uses `provider` exactly as given, adding no layers: for a stack
    /// composed by hand (see the example above).
    #[must_use]
    pub fn provider_unlayered(mut self, provider: impl KeyProvider) -> Self {
        self.provider = ProviderSettings::Custom {
            provider: Arc::new(provider),
            layered: false,
        };
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

    /// The env provider's current key (`ENCRYPTION_KEY`). Selects the env
    /// provider (`KMS_PROVIDER=env`), keeping its other settings when it was
    /// already selected.
    #[cfg(feature = "env")]
    #[must_use]
    pub fn env_key(self, value: impl Into<String>) -> Self {
        self.with_env(|env| env.encryption_key(value))
    }

    /// Adds an older env key (`ENCRYPTION_KEY_PREVIOUS`), used only to
    /// decrypt. Selects the env provider as [`env_key`](Self::env_key) does.
    #[cfg(feature = "env")]
    #[must_use]
    pub fn env_previous_key(self, value: impl Into<String>) -> Self {
        self.with_env(|env| env.previous_key(value))
    }

    #[cfg(feature = "env")]
    fn with_env(
        mut self,
        change: impl FnOnce(kms_env::EnvProviderBuilder) -> kms_env::EnvProviderBuilder,
    ) -> Self {
        let env = match std::mem::take(&mut self.provider) {
            ProviderSettings::Env(env) => env,
            _ => kms_env::EnvProviderBuilder::default(),
        };
        self.provider = ProviderSettings::Env(change(env));
        self
    }

    /// Selects the Vault provider (`KMS_PROVIDER=vault`) with these
    /// settings, replacing any read by [`KmsBuilder::from_env`]:
    /// `.vault(kms::vault::VaultProvider::builder().address(..).token(..))`.
    #[cfg(feature = "vault")]
    #[must_use]
    pub fn vault(mut self, settings: kms_vault::VaultProviderBuilder) -> Self {
        self.provider = ProviderSettings::Vault(Box::new(settings));
        self
    }

    /// Selects the AWS provider (`KMS_PROVIDER=aws`) with these settings,
    /// replacing any read by [`KmsBuilder::from_env`]:
    /// `.aws(kms::aws::AwsProvider::builder().region(..))`.
    #[cfg(feature = "aws")]
    #[must_use]
    pub fn aws(mut self, settings: kms_aws::AwsProviderBuilder) -> Self {
        self.provider = ProviderSettings::Aws(Box::new(settings));
        self
    }

    /// Selects the Google Cloud Secret Manager provider (`KMS_PROVIDER=gcp`)
    /// with these settings, replacing any read by [`KmsBuilder::from_env`]:
    /// `.gcp(kms::gcp::GcpProvider::builder().project(..))`.
    #[cfg(feature = "gcp")]
    #[must_use]
    pub fn gcp(mut self, settings: kms_gcp::GcpProviderBuilder) -> Self {
        self.provider = ProviderSettings::Gcp(Box::new(settings));
        self
    }

    /// The configuration this builder describes, without secrets.
    #[must_use]
    pub fn config(&self) -> KmsConfig {
        KmsConfig {
            provider: self.provider.name().to_owned(),
            key_id: self.key_id.clone(),
            timeout_ms: millis(self.resilience.timeout),
            retry_attempts: self.resilience.retries,
            cache_ttl_ms: millis(self.cache.ttl),
            iv_length: self.iv_length.size(),
            cache_stale_if_error_ms: self.cache.stale_if_error.map(millis),
            circuit_failure_threshold: self.resilience.failure_threshold,
            circuit_open_duration_ms: millis(self.resilience.open_duration),
            slow_threshold_ms: millis(self.telemetry.slow_threshold),
            layered: self.provider.layered(),
            min_decryption_versions: self
                .lifecycle
                .min_versions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            rotation_period_ms: self.lifecycle.rotation_period.map(millis),
        }
    }
}
