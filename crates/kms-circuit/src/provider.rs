//! [`ResilientProvider`]: the wrapper.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use kms_core::provider_support::describe_chain;
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider, KeyVersion,
    LiveVersions, Result, Retry, VersionInfo,
};

use crate::breaker::{Breaker, CircuitState, Rejection};
use crate::config::ResilienceConfig;

/// The `error` of a health response while the circuit is open.
const CIRCUIT_OPEN_HEALTH: &str = "circuit breaker open after repeated failures";

/// Wraps a [`KeyProvider`] with a timeout on every attempt, retries of
/// temporary errors with jittered exponential backoff, and a circuit breaker,
/// and implements [`KeyProvider`] itself.
///
/// The layers, from the inside out:
///
/// 1. **Timeout** ([`ResilienceConfig::timeout`]) on each attempt. A timeout
///    is `Error::Unavailable` ("KMS service unavailable", cause
///    "timed out after N ms"), a temporary error.
/// 2. **Retry** ([`ResilienceConfig::retries`]) of temporary errors only,
///    after a random wait of up to `initial_backoff * 2^n`, capped at
///    `max_backoff`. A permanent error (key not found, access denied,
///    invalid key, ...) is returned at once.
/// 3. **Circuit breaker** (failsafe's state machine, consecutive-failures
///    policy) around the whole retried call. A call counts as a failure when
///    it ends, after its retries, with an error to retry after a back-off
///    ([`Retry::AfterBackoff`], that is `Error::Unavailable`: down,
///    throttling, timed out). Anything else, including a permanent error or
///    one to retry at once (a `Conflict`), means the provider answered and
///    counts as a success. After
///    [`failure_threshold`](ResilienceConfig::failure_threshold) failures in
///    a row the circuit opens: calls fail at once with `Error::Unavailable`
///    (cause "circuit breaker open") without reaching the provider. After
///    [`open_duration`](ResilienceConfig::open_duration) one trial call goes
///    through (other calls keep failing fast meanwhile); if it succeeds the
///    circuit closes, if it fails it opens again for twice as long, up to
///    [`max_open_duration`](ResilienceConfig::max_open_duration).
///
/// The breaker measures time with the real clock (`std::time::Instant`),
/// so a paused tokio clock in tests does not move it; timeouts and backoff
/// waits use tokio's clock.
///
/// **`rotate` and `rotate_if_current` are never retried.** Creating a key version is not idempotent:
/// an attempt that timed out or lost its connection may still have created
/// the version, and a retry would then create a second one. It still gets the
/// timeout and the breaker; a caller that sees a temporary error can list
/// the versions to find out whether the rotation happened.
///
/// **`health`** runs the provider's check under the timeout even when the
/// circuit is open (it is a probe, and does not count toward the breaker), and
/// reports the breaker's state in the `circuit` field. While the circuit is
/// open, `healthy` is `false` with the error
/// "circuit breaker open after repeated failures", whatever the probe said,
/// since calls are being refused. Once the open time has passed the state is
/// `half-open` and `healthy` is the probe's result, so a load balancer that
/// polls health lets traffic back in, and that traffic's first call is the
/// trial that closes the circuit.
pub struct ResilientProvider {
    inner: Arc<dyn KeyProvider>,
    config: ResilienceConfig,
    breaker: Breaker,
}

impl fmt::Debug for ResilientProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResilientProvider")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("circuit", &self.circuit_state())
            .finish()
    }
}

impl ResilientProvider {
    /// Wraps `inner`, with a closed circuit.
    pub fn new(inner: impl KeyProvider, config: ResilienceConfig) -> Self {
        Self::from_arc(Arc::new(inner), config)
    }

    /// Wraps a provider that is already shared, with a closed circuit.
    pub fn from_arc(inner: Arc<dyn KeyProvider>, config: ResilienceConfig) -> Self {
        let breaker = Breaker::new(inner.name(), &config);
        ResilientProvider {
            inner,
            config,
            breaker,
        }
    }

    /// The circuit breaker's state as a call would meet it now. Lock-free.
    ///
    /// failsafe switches an open circuit to half-open only when the next call
    /// asks; this reports [`CircuitState::HalfOpen`] as soon as the open time
    /// has passed, because the next call will go through as the trial.
    #[must_use]
    pub fn circuit_state(&self) -> CircuitState {
        self.breaker.state()
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ResilienceConfig {
        &self.config
    }

    /// Runs `call` through the breaker, with up to `retries` retries, each
    /// attempt under the timeout.
    async fn guarded<'a, T, F, Fut>(&'a self, op: &'static str, retries: u32, call: F) -> Result<T>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
        T: Send,
    {
        let permit = match self.breaker.try_acquire() {
            Ok(permit) => permit,
            Err(rejection) => return Err(self.rejected(rejection)),
        };
        let result = self.retrying(op, retries, call).await;
        permit.record(matches!(&result, Err(e) if is_outage(e)));
        result
    }

    async fn retrying<'a, T, F, Fut>(&'a self, op: &'static str, retries: u32, call: F) -> Result<T>
    where
        F: Fn() -> Fut + Send + Sync + 'a,
        Fut: Future<Output = Result<T>> + Send + 'a,
        T: Send,
    {
        let mut retry = 0;
        loop {
            let result = match tokio::time::timeout(self.config.timeout, call()).await {
                Ok(result) => result,
                Err(_elapsed) => Err(self.timed_out()),
            };
            match result {
                Err(e) if e.is_temporary() && retry < retries => {
                    let wait = self.config.backoff(retry);
                    retry += 1;
                    tracing::debug!(
                        target: "kms::circuit",
                        provider = self.inner.name(),
                        op,
                        retry,
                        retries,
                        wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        error = %describe_chain(&e),
                        "temporary error, retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }

    fn timed_out(&self) -> Error {
        Error::unavailable(
            self.inner.name(),
            format!("timed out after {} ms", self.config.timeout.as_millis()),
        )
    }

    fn rejected(&self, rejection: Rejection) -> Error {
        let cause = match rejection {
            Rejection::Open => "circuit breaker open",
            Rejection::TrialInFlight => "circuit breaker half-open, trial call in flight",
        };
        Error::unavailable(self.inner.name(), cause)
    }
}

/// Whether an error means the provider could not be reached (a breaker
/// failure): [`Retry::AfterBackoff`]. Other errors, permanent ones and
/// those to retry at once (a lost check-and-set race), show that it is up.
fn is_outage(e: &Error) -> bool {
    e.retry() == Retry::AfterBackoff
}

#[async_trait]
impl KeyProvider for ResilientProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        self.guarded("current_key", self.config.retries, || {
            self.inner.current_key(key_id)
        })
        .await
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        self.guarded("key_version", self.config.retries, || {
            self.inner.key_version(key_id, version)
        })
        .await
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        self.guarded("versions", self.config.retries, || {
            self.inner.versions(key_id)
        })
        .await
    }

    /// Timeout and breaker, no retries: see the type's documentation.
    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        self.guarded("rotate", 0, || self.inner.rotate(key_id, live))
            .await
    }

    /// Timeout and breaker, no retries, as `rotate`.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        self.guarded("rotate_if_current", 0, || {
            self.inner.rotate_if_current(key_id, expected, live)
        })
        .await
    }

    /// Timeout and breaker, no retries, as `rotate` (each call stores a version).
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        // With no retries the call runs once: the material moves into it.
        let material = std::sync::Mutex::new(Some(material));
        self.guarded("import", 0, || {
            let material = material
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            async move {
                match material {
                    Some(material) => self.inner.import(key_id, material, live).await,
                    None => Err(Error::provider(
                        self.inner.name(),
                        "an import was attempted twice",
                    )),
                }
            }
        })
        .await
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        self.guarded("metadata", self.config.retries, || {
            self.inner.metadata(key_id)
        })
        .await
    }

    /// The inner check under the timeout, with the circuit state; see the
    /// type's documentation.
    async fn health(&self) -> HealthStatus {
        let started = tokio::time::Instant::now();
        let mut status = match tokio::time::timeout(self.config.timeout, self.inner.health()).await
        {
            Ok(status) => status,
            Err(_elapsed) => HealthStatus::unhealthy(
                self.inner.name(),
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                format!(
                    "health check timed out after {} ms",
                    self.config.timeout.as_millis()
                ),
            ),
        };
        let state = self.circuit_state();
        if state == CircuitState::Open {
            status.error = Some(match status.error.take() {
                Some(probe) if !status.healthy => format!("{CIRCUIT_OPEN_HEALTH}; probe: {probe}"),
                _ => CIRCUIT_OPEN_HEALTH.to_owned(),
            });
            status.healthy = false;
        }
        status.circuit = Some(state.as_str().to_owned());
        status
    }
}
