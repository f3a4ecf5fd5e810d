//! The admin HTTP API of `kms`, as an [axum] router a service mounts in its
//! own server (or runs with `kms serve`).
//!
//! | route | does |
//! | --- | --- |
//! | `GET /api/admin/kms/health` | the provider's health, circuit state and cache figures (503 when unhealthy) |
//! | `GET /api/admin/kms/key/metadata` | the configured key's metadata |
//! | `POST /api/admin/kms/key/rotate` | a new key version; the key cache is cleared |
//! | `GET /api/admin/kms/config` | the active configuration, secrets redacted |
//! | `POST /api/admin/kms/config/test` | builds a provider from the posted configuration, checks its health and fetches its key; changes nothing (no write, no scheduled rotation) |
//! | `PUT /api/admin/kms/config` | the same test, then a continuity check, then an atomic swap (scheduled rotation starts only then) |
//! | `GET /metrics` | Prometheus metrics (when a recorder is given) |
//!
//! Every response is JSON in the spec's shape: `{"success":true,"data":...}`
//! or `{"success":false,"error":{"code","message"}}` with the matching
//! status: 400 malformed JSON or invalid configuration, 401 missing, wrong
//! or expired credentials, 403 a valid token without the admin role (or a
//! provider refusing access to the key), 404, 409 a swap that would strand
//! data or a concurrent rotation, 413 a body over the limit, 429 a rate
//! limit (with `Retry-After`), 503 the provider unavailable or the request
//! over its time limit.
//!
//! ## Security
//! - Authentication: a static bearer token compared in constant time, or
//!   JWTs (HS256, RS256) carrying the admin role; see [`AuthConfig`].
//! - Rate limits per client, stricter on rotate and config routes, and a
//!   lockout after repeated failed authentications; see [`RateLimitConfig`].
//! - Body size limit and a time limit on every route; see [`AdminConfig`].
//! - Credentials posted to `/config` are kept only inside the new provider:
//!   never echoed (`GET /config` shows `"[REDACTED]"`), logged or written.
//! - The configuration document cannot weaken the server (400 naming the
//!   field): `rotationPeriod` and `minDecryptionVersion` left out keep the
//!   running server's values; a `rotationPeriod` under
//!   [`MIN_ROTATION_PERIOD`] (`0` and `""` included) is refused, and so is
//!   removing or lowering a key's minimum decryption version (compared in
//!   the new provider's version order, by key material). Every minimum of
//!   the server carries over to the new configuration, or the document is
//!   refused.
//! - The server's credentials only go to its own endpoints: a document that
//!   moves an endpoint brings its own credentials (400 naming `credentials`
//!   otherwise, before any request; `anonymous: true` for Google Cloud), and
//!   a document's credentials are used alone.
//! - A swap is refused (409) unless every enabled version of the active key
//!   is also readable through the new configuration, so data written before
//!   the swap stays decryptable; copy keys first with `kms migrate`.
//!
//! ## Audit and metrics
//! Every admin request gives one event on the `kms::audit` tracing target
//! (request id, who, client, route, key id, version, status, latency);
//! failed authentications also give a `kms::alert` event. Metric names are
//! listed in [`kms_telemetry`].
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! use std::net::SocketAddr;
//!
//! let kms = kms::Kms::from_env().await?;
//! let shared = kms_admin::SharedKms::new(kms);
//! let config = kms_admin::AdminConfig::from_env()?.metrics(kms_admin::install_prometheus()?);
//! let app = axum::Router::new().merge(kms_admin::router(shared.clone(), config)?);
//! // The service encrypts with `shared.kms()`, which follows PUT /config.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod auth;
mod document;
mod error;
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
pub use document::{FIELDS, Field, Lookup, MIN_ROTATION_PERIOD};
pub use error::{ApiError, status_of};
pub use guard::REQUEST_ID_HEADER;
pub use limit::{
    DEFAULT_AUTH_FAILURE_WINDOW, DEFAULT_AUTH_FAILURES, DEFAULT_BURST, DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_SENSITIVE_PER_MINUTE, RateLimitConfig,
};
pub use metrics::{LATENCY_BUCKETS, install_prometheus, record_gauges};
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
