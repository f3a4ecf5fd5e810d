#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kms_core::{
    DataKey, Error, Fingerprint, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider,
    KeyVersion, LiveVersions, Result, VersionInfo,
};
use metrics::Unit;

/// The `tracing` target of audit events (`kms::audit`): one INFO event per
/// key operation that reaches the provider, and (from the `kms` facade) one
/// DEBUG event per encryption and decryption.
pub const AUDIT_TARGET: &str = "kms::audit";

/// The `tracing` target of alert events (`kms::alert`): ERROR
/// `provider unavailable`, WARN `key retrieval failed`, WARN
/// `slow provider response`. Each carries an `alert` field naming it.
pub const ALERT_TARGET: &str = "kms::alert";

/// Default [`TelemetryConfig::slow_threshold`]: 1000 ms, the spec's
/// "slow response times (>1000ms)" alert.
pub const DEFAULT_SLOW_THRESHOLD: Duration = Duration::from_millis(1000);

/// Metric names, as recorded through the [`metrics`] facade. The crate
/// documentation has the table of types, labels and meanings.
pub mod names {
    /// Histogram, seconds; labels `provider`, `operation`. How long each
    /// provider call took (retries included when measured above the
    /// resilience layer).
    pub const KEY_RETRIEVAL_DURATION_SECONDS: &str = "kms_key_retrieval_duration_seconds";
    /// Counter; labels `provider`, `operation`, `outcome` (`ok`, `error`).
    pub const PROVIDER_REQUESTS_TOTAL: &str = "kms_provider_requests_total";
    /// Counter; labels `provider`, `operation`, `kind` (`kms_core::Error::code()`).
    pub const PROVIDER_ERRORS_TOTAL: &str = "kms_provider_errors_total";
    /// Counter; labels `provider`, `outcome` (`ok`, `skipped`, `error`).
    pub const KEY_ROTATIONS_TOTAL: &str = "kms_key_rotations_total";
    /// Gauge; label `provider`. 1 when the last health check was healthy, 0 otherwise.
    pub const PROVIDER_HEALTHY: &str = "kms_provider_healthy";
    /// Counter (set by the admin crate from the cache's counters): lookups
    /// answered from the key cache.
    pub const CACHE_HITS_TOTAL: &str = "kms_cache_hits_total";
    /// Counter (admin crate): key cache lookups that waited for a load.
    pub const CACHE_MISSES_TOTAL: &str = "kms_cache_misses_total";
    /// Counter (admin crate): provider calls made to fill the key cache.
    pub const CACHE_LOADS_TOTAL: &str = "kms_cache_loads_total";
    /// Counter (admin crate): key cache loads that failed.
    pub const CACHE_LOAD_FAILURES_TOTAL: &str = "kms_cache_load_failures_total";
    /// Counter (admin crate): expired current keys served because the
    /// provider was unavailable (stale-if-error).
    pub const CACHE_STALE_SERVED_TOTAL: &str = "kms_cache_stale_served_total";
    /// Gauge (admin crate): circuit breaker state, 0 closed, 1 half-open, 2 open.
    pub const CIRCUIT_STATE: &str = "kms_circuit_state";
    /// Counter (admin crate); labels `route`, `status`. Admin API requests.
    pub const ADMIN_REQUESTS_TOTAL: &str = "kms_admin_requests_total";
    /// Histogram, seconds (admin crate); label `route`. Admin API request duration.
    pub const ADMIN_REQUEST_DURATION_SECONDS: &str = "kms_admin_request_duration_seconds";
    /// Counter (admin crate); label `reason`. Refused admin API authentications.
    pub const AUTH_FAILURES_TOTAL: &str = "kms_auth_failures_total";

    /// Every name above, for exporters and tests.
    pub const ALL: &[&str] = &[
        KEY_RETRIEVAL_DURATION_SECONDS,
        PROVIDER_REQUESTS_TOTAL,
        PROVIDER_ERRORS_TOTAL,
        KEY_ROTATIONS_TOTAL,
        PROVIDER_HEALTHY,
        CACHE_HITS_TOTAL,
        CACHE_MISSES_TOTAL,
        CACHE_LOADS_TOTAL,
        CACHE_LOAD_FAILURES_TOTAL,
        CACHE_STALE_SERVED_TOTAL,
        CIRCUIT_STATE,
        ADMIN_REQUESTS_TOTAL,
        ADMIN_REQUEST_DURATION_SECONDS,
        AUTH_FAILURES_TOTAL,
    ];
}

/// Label keys used with the metrics in [`names`].
pub mod labels {
    /// The provider's name (`env`, `aws`, `gcp`, `vault`, ...).
    pub const PROVIDER: &str = "provider";
    /// The `KeyProvider` method: `current_key`, `key_version`, `versions`,
    /// `rotate`, `rotate_if_current`, `import`, `metadata`, `health`.
    pub const OPERATION: &str = "operation";
    /// `ok` or `error` (`skipped` too for rotations).
    pub const OUTCOME: &str = "outcome";
    /// The error's `kms_core::Error::code()`, as is (`KMS_UNAVAILABLE`, ...).
    pub const KIND: &str = "kind";
    /// Admin API route.
    pub const ROUTE: &str = "route";
    /// Admin API HTTP status code.
    pub const STATUS: &str = "status";
    /// Why an authentication failed.
    pub const REASON: &str = "reason";
}

/// Describes every metric of [`names`] (unit and help text) to the installed
/// recorder. Call it once after installing a recorder (exporters show the
/// help text); without a recorder it does nothing.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        names::KEY_RETRIEVAL_DURATION_SECONDS,
        Unit::Seconds,
        "Duration of key provider calls (retries included), by provider and operation"
    );
    describe_counter!(
        names::PROVIDER_REQUESTS_TOTAL,
        Unit::Count,
        "Key provider calls, by provider, operation and outcome (ok, error)"
    );
    describe_counter!(
        names::PROVIDER_ERRORS_TOTAL,
        Unit::Count,
        "Failed key provider calls, by provider, operation and error kind"
    );
    describe_counter!(
        names::KEY_ROTATIONS_TOTAL,
        Unit::Count,
        "Key rotations, by provider and outcome (ok, skipped, error)"
    );
    describe_gauge!(
        names::PROVIDER_HEALTHY,
        "Whether the last health check of the key provider succeeded (1) or not (0)"
    );
    describe_counter!(
        names::CACHE_HITS_TOTAL,
        Unit::Count,
        "Key lookups answered from the key cache"
    );
    describe_counter!(
        names::CACHE_MISSES_TOTAL,
        Unit::Count,
        "Key lookups that had to wait for a cache load"
    );
    describe_counter!(
        names::CACHE_LOADS_TOTAL,
        Unit::Count,
        "Provider calls made to fill the key cache"
    );
    describe_counter!(
        names::CACHE_LOAD_FAILURES_TOTAL,
        Unit::Count,
        "Key cache loads that failed"
    );
    describe_counter!(
        names::CACHE_STALE_SERVED_TOTAL,
        Unit::Count,
        "Expired current keys served because the provider was unavailable (stale-if-error)"
    );
    describe_gauge!(
        names::CIRCUIT_STATE,
        "Circuit breaker state: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        names::ADMIN_REQUESTS_TOTAL,
        Unit::Count,
        "Admin API requests, by route and status"
    );
    describe_histogram!(
        names::ADMIN_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Admin API request duration, by route"
    );
    describe_counter!(
        names::AUTH_FAILURES_TOTAL,
        Unit::Count,
        "Refused admin API authentications, by reason"
    );
}

/// How [`MeteredProvider`] behaves. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// A provider call slower than this raises the `slow_response` alert
    /// (`KMS_SLOW_THRESHOLD`). Default: [`DEFAULT_SLOW_THRESHOLD`], 1000 ms.
    pub slow_threshold: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            slow_threshold: DEFAULT_SLOW_THRESHOLD,
        }
    }
}

impl TelemetryConfig {
    /// The defaults with another slow-response threshold.
    #[must_use]
    pub fn with_slow_threshold(slow_threshold: Duration) -> Self {
        TelemetryConfig { slow_threshold }
    }
}

/// The `KeyProvider` methods, as `operation` label values and `op` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    CurrentKey,
    KeyVersion,
    Versions,
    Rotate,
    RotateIfCurrent,
    Import,
    Metadata,
    Health,
}

impl Op {
    const fn as_str(self) -> &'static str {
        match self {
            Op::CurrentKey => "current_key",
            Op::KeyVersion => "key_version",
            Op::Versions => "versions",
            Op::Rotate => "rotate",
            Op::RotateIfCurrent => "rotate_if_current",
            Op::Import => "import",
            Op::Metadata => "metadata",
            Op::Health => "health",
        }
    }

    /// Whether a failure is a "key retrieval failure" alert.
    const fn is_retrieval(self) -> bool {
        matches!(self, Op::CurrentKey | Op::KeyVersion | Op::Versions)
    }

    const fn is_rotation(self) -> bool {
        matches!(self, Op::Rotate | Op::RotateIfCurrent)
    }
}

const OK: &str = "ok";
const ERROR: &str = "error";
const SKIPPED: &str = "skipped";

/// What one finished call reports.
struct Report<'a> {
    op: Op,
    key_id: &'a KeyId,
    version: Option<&'a KeyVersion>,
    fingerprint: Option<Fingerprint>,
    /// `ok`, `skipped` (a check-and-set rotation that found another current version) or `error`.
    outcome: &'static str,
    error: Option<&'a Error>,
    elapsed: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An error with its cause ("KMS service unavailable: timed out after 10000 ms").
/// Errors never carry key material or credentials.
struct Chain<'a>(&'a Error);

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        if let Some(cause) = std::error::Error::source(self.0) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// A [`KeyProvider`] wrapper that records metrics, audit events and alerts
/// for every call that reaches the provider it wraps. See the crate
/// documentation for the metrics and events.
///
/// `name` is forwarded and not recorded. `health` records only its latency
/// (`operation="health"`) and the `kms_provider_healthy` gauge.
pub struct MeteredProvider {
    inner: Arc<dyn KeyProvider>,
    config: TelemetryConfig,
}

impl fmt::Debug for MeteredProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeteredProvider")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .finish()
    }
}

impl MeteredProvider {
    /// Wraps `inner`.
    pub fn new(inner: impl KeyProvider, config: TelemetryConfig) -> Self {
        Self::from_arc(Arc::new(inner), config)
    }

    /// Wraps a provider already in an `Arc`.
    #[must_use]
    pub fn from_arc(inner: Arc<dyn KeyProvider>, config: TelemetryConfig) -> Self {
        MeteredProvider { inner, config }
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &TelemetryConfig {
        &self.config
    }

    /// Reports a finished data key call.
    fn key_result(
        &self,
        op: Op,
        key_id: &KeyId,
        requested: Option<&KeyVersion>,
        started: Instant,
        result: &Result<DataKey>,
    ) {
        let elapsed = started.elapsed();
        match result {
            Ok(key) => self.report(&Report {
                op,
                key_id,
                version: Some(key.version()),
                fingerprint: Some(key.fingerprint()),
                outcome: OK,
                error: None,
                elapsed,
            }),
            Err(e) => self.report(&Report {
                op,
                key_id,
                version: requested,
                fingerprint: None,
                outcome: ERROR,
                error: Some(e),
                elapsed,
            }),
        }
    }

    /// Reports a finished call with no key in its result.
    fn plain_result<T>(
        &self,
        op: Op,
        key_id: &KeyId,
        version: Option<&KeyVersion>,
        started: Instant,
        result: &Result<T>,
    ) {
        let error = result.as_ref().err();
        self.report(&Report {
            op,
            key_id,
            version,
            fingerprint: None,
            outcome: if error.is_some() { ERROR } else { OK },
            error,
            elapsed: started.elapsed(),
        });
    }

    fn report(&self, r: &Report<'_>) {
        let provider = self.inner.name();
        let op = r.op.as_str();
        metrics::histogram!(
            names::KEY_RETRIEVAL_DURATION_SECONDS,
            labels::PROVIDER => provider,
            labels::OPERATION => op
        )
        .record(r.elapsed.as_secs_f64());
        let outcome = if r.error.is_some() { ERROR } else { OK };
        metrics::counter!(
            names::PROVIDER_REQUESTS_TOTAL,
            labels::PROVIDER => provider,
            labels::OPERATION => op,
            labels::OUTCOME => outcome
        )
        .increment(1);
        if let Some(e) = r.error {
            metrics::counter!(
                names::PROVIDER_ERRORS_TOTAL,
                labels::PROVIDER => provider,
                labels::OPERATION => op,
                labels::KIND => e.code()
            )
            .increment(1);
        }
        if r.op.is_rotation() {
            metrics::counter!(
                names::KEY_ROTATIONS_TOTAL,
                labels::PROVIDER => provider,
                labels::OUTCOME => r.outcome
            )
            .increment(1);
        }

        let latency_ms = millis(r.elapsed);
        tracing::info!(
            target: AUDIT_TARGET,
            op,
            provider,
            key_id = %r.key_id,
            version = r.version.map(tracing::field::display),
            fingerprint = r.fingerprint.map(tracing::field::display),
            outcome = r.outcome,
            latency_ms,
            error = r.error.map(Error::code),
            "key operation"
        );

        if let Some(e) = r.error {
            if matches!(e, Error::Unavailable { .. }) {
                tracing::error!(
                    target: ALERT_TARGET,
                    alert = "kms_unavailable",
                    op,
                    provider,
                    key_id = %r.key_id,
                    error = e.code(),
                    cause = %Chain(e),
                    "provider unavailable"
                );
            } else if r.op.is_retrieval() {
                tracing::warn!(
                    target: ALERT_TARGET,
                    alert = "key_retrieval_failure",
                    op,
                    provider,
                    key_id = %r.key_id,
                    version = r.version.map(tracing::field::display),
                    error = e.code(),
                    cause = %Chain(e),
                    "key retrieval failed"
                );
            }
        }
        if r.elapsed > self.config.slow_threshold {
            tracing::warn!(
                target: ALERT_TARGET,
                alert = "slow_response",
                op,
                provider,
                key_id = %r.key_id,
                outcome = r.outcome,
                latency_ms,
                threshold_ms = millis(self.config.slow_threshold),
                "slow provider response"
            );
        }
    }
}

#[async_trait]
impl KeyProvider for MeteredProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        let started = Instant::now();
        let result = self.inner.current_key(key_id).await;
        self.key_result(Op::CurrentKey, key_id, None, started, &result);
        result
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        let started = Instant::now();
        let result = self.inner.key_version(key_id, version).await;
        self.key_result(Op::KeyVersion, key_id, Some(version), started, &result);
        result
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        let started = Instant::now();
        let result = self.inner.versions(key_id).await;
        let newest = result
            .as_ref()
            .ok()
            .and_then(|v| v.last())
            .map(|v| &v.version);
        self.plain_result(Op::Versions, key_id, newest, started, &result);
        result
    }

    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        let started = Instant::now();
        let result = self.inner.rotate(key_id, live).await;
        self.key_result(Op::Rotate, key_id, None, started, &result);
        result
    }

    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let started = Instant::now();
        let result = self.inner.rotate_if_current(key_id, expected, live).await;
        let elapsed = started.elapsed();
        let report = match &result {
            Ok(Some(key)) => Report {
                op: Op::RotateIfCurrent,
                key_id,
                version: Some(key.version()),
                fingerprint: Some(key.fingerprint()),
                outcome: OK,
                error: None,
                elapsed,
            },
            Ok(None) => Report {
                op: Op::RotateIfCurrent,
                key_id,
                version: Some(expected),
                fingerprint: None,
                outcome: SKIPPED,
                error: None,
                elapsed,
            },
            Err(e) => Report {
                op: Op::RotateIfCurrent,
                key_id,
                version: Some(expected),
                fingerprint: None,
                outcome: ERROR,
                error: Some(e),
                elapsed,
            },
        };
        self.report(&report);
        result
    }

    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        let started = Instant::now();
        let result = self.inner.import(key_id, material, live).await;
        self.key_result(Op::Import, key_id, None, started, &result);
        result
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        let started = Instant::now();
        let result = self.inner.metadata(key_id).await;
        let current = result
            .as_ref()
            .ok()
            .and_then(|m| m.current_version.as_ref());
        self.plain_result(Op::Metadata, key_id, current, started, &result);
        result
    }

    async fn health(&self) -> HealthStatus {
        let started = Instant::now();
        let status = self.inner.health().await;
        let provider = self.inner.name();
        metrics::histogram!(
            names::KEY_RETRIEVAL_DURATION_SECONDS,
            labels::PROVIDER => provider,
            labels::OPERATION => Op::Health.as_str()
        )
        .record(started.elapsed().as_secs_f64());
        metrics::gauge!(names::PROVIDER_HEALTHY, labels::PROVIDER => provider)
            .set(if status.healthy { 1.0 } else { 0.0 });
        status
    }
}

#[cfg(test)]
mod tests;
