//! [`KmsConfig`]: the settings in effect, without secrets.

use std::time::Duration;

use kms_core::KeyId;
use serde::Serialize;

/// The active configuration, with no secrets in it: what
/// `GET /api/admin/kms/config` shows of the facade's settings (through
/// [`KmsConfig::get`], under each setting's document name).
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
    /// [`min_decryption_version`](super::KmsBuilder::min_decryption_version)).
    pub min_decryption_versions: std::collections::BTreeMap<String, String>,
    /// `KMS_ROTATION_PERIOD`, in milliseconds (`null`: no scheduled rotation).
    #[serde(rename = "rotationPeriod")]
    pub rotation_period_ms: Option<u64>,
}

impl KmsConfig {
    /// The value in effect of one of the facade's settings
    /// ([`SETTINGS`](super::SETTINGS)), as the text its variable would hold
    /// (durations in milliseconds); `None` when it is unset or not one of
    /// them. `KMS_MIN_DECRYPTION_VERSION` is the minimum of `KMS_KEY_ID`.
    #[must_use]
    pub fn get(&self, variable: &str) -> Option<String> {
        Some(match variable {
            "KMS_PROVIDER" => self.provider.clone(),
            "KMS_KEY_ID" => self.key_id.to_string(),
            "KMS_TIMEOUT" => self.timeout_ms.to_string(),
            "KMS_RETRY_ATTEMPTS" => self.retry_attempts.to_string(),
            "KMS_CACHE_TTL" => self.cache_ttl_ms.to_string(),
            "KMS_IV_LENGTH" => self.iv_length.to_string(),
            "KMS_CACHE_STALE_IF_ERROR" => self.cache_stale_if_error_ms?.to_string(),
            "KMS_CIRCUIT_FAILURE_THRESHOLD" => self.circuit_failure_threshold.to_string(),
            "KMS_CIRCUIT_OPEN_DURATION" => self.circuit_open_duration_ms.to_string(),
            "KMS_SLOW_THRESHOLD" => self.slow_threshold_ms.to_string(),
            "KMS_ROTATION_PERIOD" => self.rotation_period_ms?.to_string(),
            "KMS_MIN_DECRYPTION_VERSION" => self
                .min_decryption_versions
                .get(self.key_id.as_str())?
                .clone(),
            _ => return None,
        })
    }
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
