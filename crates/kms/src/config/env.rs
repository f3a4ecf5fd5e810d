//! Reading the settings from the environment: the spec's variables.

use std::time::Duration;

use kms_core::{Error, IvLength, KeyId, KeyVersion, Result};

use kms_core::settings::Setting;

use super::{KmsBuilder, MAX_RETRY_ATTEMPTS, ProviderKind, ProviderSettings};

/// The facade's own settings, declared once: the variables
/// [`KmsBuilder::from_lookup`] reads besides the selected provider's (each
/// provider crate declares its own `SETTINGS`), with their names in the
/// admin API's configuration document.
pub const SETTINGS: &[Setting] = &[
    Setting::new("KMS_PROVIDER")
        .fields(&["provider"])
        .default("env"),
    Setting::new("KMS_KEY_ID")
        .fields(&["keyId"])
        .default("default"),
    Setting::new("KMS_TIMEOUT")
        .fields(&["timeout"])
        .default("10000"),
    Setting::new("KMS_RETRY_ATTEMPTS")
        .fields(&["retryAttempts"])
        .default("3"),
    Setting::new("KMS_CACHE_TTL")
        .fields(&["cacheTtl"])
        .default("300000"),
    Setting::new("KMS_IV_LENGTH")
        .fields(&["ivLength"])
        .default("12"),
    Setting::new("KMS_CACHE_STALE_IF_ERROR").fields(&["cacheStaleIfError"]),
    Setting::new("KMS_CIRCUIT_FAILURE_THRESHOLD")
        .fields(&["circuitFailureThreshold"])
        .default("5"),
    Setting::new("KMS_CIRCUIT_OPEN_DURATION")
        .fields(&["circuitOpenDuration"])
        .default("30000"),
    Setting::new("KMS_SLOW_THRESHOLD")
        .fields(&["slowThreshold"])
        .default("1000"),
    Setting::new("KMS_ROTATION_PERIOD").fields(&["rotationPeriod"]),
    Setting::new("KMS_MIN_DECRYPTION_VERSION").fields(&["minDecryptionVersion"]),
];

impl KmsBuilder {
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
        let kind = match get("KMS_PROVIDER") {
            Some(v) => v.parse()?,
            None => ProviderKind::default(),
        };
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
        // Only the selected provider's variables are read.
        b.provider = ProviderSettings::from_lookup(kind, &lookup)?;
        Ok(b)
    }
}

/// Parses a duration: a bare number is milliseconds; `ms`, `s`, `m`, `h`
/// suffixes are accepted.
///
/// # Errors
/// [`Error::Config`] naming `variable`.
pub fn parse_duration(variable: &str, value: &str) -> Result<Duration> {
    kms_core::settings::parse_duration(variable, value, kms_core::settings::BareUnit::Millis)
}
