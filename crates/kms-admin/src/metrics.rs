//! The Prometheus side: installing the recorder and exporting the key
//! cache's and circuit breaker's state at scrape time.

use std::time::{Duration, Instant};

use kms::Kms;
use kms::circuit::CircuitState;
use kms_telemetry::names;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds) of the latency metrics: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs a process-wide Prometheus recorder for the `metrics` crate,
/// describes every kms metric, and returns the handle `/metrics` renders.
///
/// # Errors
/// When a recorder is already installed.
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .install_recorder()?;
    kms_telemetry::describe_metrics();
    let upkeep = handle.clone();
    // Histograms are drained into their buckets periodically.
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                upkeep.run_upkeep();
            }
        });
    }
    Ok(handle)
}

/// How long a scrape of `/metrics` waits for the provider health check it
/// runs: 2 s, well under Prometheus' default scrape timeout (10 s).
pub(crate) const SCRAPE_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The shortest time between two provider health checks run by scrapes
/// of `/metrics`: 5 s. Scrapes more frequent than that (several
/// Prometheus servers, or anyone when `/metrics` is public) share the last
/// check instead of each calling the provider.
pub(crate) const SCRAPE_HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Runs a provider health check (which sets `kms_provider_healthy`) unless
/// one ran less than [`SCRAPE_HEALTH_INTERVAL`] ago; concurrent callers
/// wait for the one running. A check that does not answer within
/// [`SCRAPE_HEALTH_TIMEOUT`] sets the gauge to 0.
pub(crate) async fn check_health(kms: &Kms, last: &tokio::sync::Mutex<Option<Instant>>) {
    let mut last = last.lock().await;
    if last.is_some_and(|at| at.elapsed() < SCRAPE_HEALTH_INTERVAL) {
        return;
    }
    *last = Some(Instant::now());
    if tokio::time::timeout(SCRAPE_HEALTH_TIMEOUT, kms.health())
        .await
        .is_err()
    {
        let provider = kms.config().provider.clone();
        metrics::gauge!(names::PROVIDER_HEALTHY, "provider" => provider).set(0.0);
    }
}

/// Sets the cache counters and the circuit state gauge from `kms`.
pub fn record_gauges(kms: &Kms) {
    let provider = kms.config().provider.clone();
    if let Some(stats) = kms.cache_stats() {
        for (name, value) in [
            (names::CACHE_HITS_TOTAL, stats.hits),
            (names::CACHE_MISSES_TOTAL, stats.misses),
            (names::CACHE_LOADS_TOTAL, stats.loads),
            (names::CACHE_LOAD_FAILURES_TOTAL, stats.load_failures),
            (names::CACHE_STALE_SERVED_TOTAL, stats.stale_served),
        ] {
            metrics::counter!(name, "provider" => provider.clone()).absolute(value);
        }
    }
    if let Some(state) = kms.circuit_state() {
        let value = match state {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            _ => 2.0,
        };
        metrics::gauge!(names::CIRCUIT_STATE, "provider" => provider).set(value);
    }
}
