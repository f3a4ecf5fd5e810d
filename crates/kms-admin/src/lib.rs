#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod auth;
mod document;
mod error;
mod file;
mod guard;
mod limit;
mod metrics;
mod routes;
mod state;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

pub use auth::{
    AuthConfig, DEFAULT_ADMIN_ROLE, MIN_ADMIN_TOKEN_LEN, Principal, generate_admin_token,
};
pub use document::{Field, Lookup, MIN_ROTATION_PERIOD, REDACTED, fields};
pub use error::{ApiError, status_of};
pub use file::{CONFIG_FILE_VARIABLE, ConfigFile};
pub use guard::REQUEST_ID_HEADER;
pub use limit::{
    DEFAULT_AUTH_FAILURE_WINDOW, DEFAULT_AUTH_FAILURES, DEFAULT_BURST, DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_SENSITIVE_PER_MINUTE, RateLimitConfig,
};
pub use metrics::{LATENCY_BUCKETS, install_prometheus, record_gauges};
pub use routes::HealthReport;
pub use state::{AdminConfig, DEFAULT_BODY_LIMIT, DEFAULT_REQUEST_TIMEOUT, SharedKms};

/// The path prefix of the admin routes.
pub const BASE_PATH: &str = "/api/admin/kms";

/// The body limit in force, for the body extractor.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

/// Shared by every request of one router.
#[derive(Debug)]
struct AdminState {
    shared: SharedKms,
    config: AdminConfig,
    limiters: limit::Limiters,
    swap_lock: tokio::sync::Mutex<()>,
    /// When a scrape of `/metrics` last ran a provider health check: at
    /// most one per [`metrics::SCRAPE_HEALTH_INTERVAL`], shared by
    /// concurrent scrapes (see `metrics::check_health`).
    scrape_checked: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// The admin router: the routes in the table above (and `/metrics` when
/// [`AdminConfig::metrics`] is set), behind authentication, rate limits,
/// body and time limits, audit and metrics.
///
/// # Errors
/// [`kms::Error::Config`] when no authentication method is configured: the
/// router never serves key operations to anyone who asks.
pub fn router(shared: SharedKms, config: AdminConfig) -> kms::Result<Router> {
    if !config.auth.is_configured() {
        return Err(kms::Error::config(
            "KMS_ADMIN_TOKEN",
            "the admin API needs an authentication method: set KMS_ADMIN_TOKEN \
             (or KMS_ADMIN_JWT_SECRET / KMS_ADMIN_JWT_PUBLIC_KEY)",
        ));
    }
    let body_limit = config.body_limit;
    let with_metrics = config.metrics.is_some();
    let state = Arc::new(AdminState {
        limiters: limit::Limiters::new(&config.limits),
        shared,
        config,
        swap_lock: tokio::sync::Mutex::new(()),
        scrape_checked: tokio::sync::Mutex::new(None),
    });
    let mut app = Router::new()
        .route(&format!("{BASE_PATH}/health"), get(routes::health))
        .route(&format!("{BASE_PATH}/key/metadata"), get(routes::metadata))
        .route(&format!("{BASE_PATH}/key/rotate"), post(routes::rotate))
        .route(
            &format!("{BASE_PATH}/config"),
            get(routes::get_config).put(routes::put_config),
        )
        .route(
            &format!("{BASE_PATH}/config/test"),
            post(routes::test_config),
        );
    if with_metrics {
        app = app.route("/metrics", get(routes::metrics));
    }
    Ok(app
        .method_not_allowed_fallback(routes::method_not_allowed)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .fallback(routes::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state))
}
