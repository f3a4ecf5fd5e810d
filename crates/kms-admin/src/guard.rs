//! The middleware in front of every route: request id, body size, rate
//! limits, authentication, time limit, audit event and metrics.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kms_telemetry::{ALERT_TARGET, AUDIT_TARGET, names};
use tracing::Instrument as _;

use crate::AdminState;
use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode};
use crate::routes::AuditInfo;

/// The request id header, read (when sane) and echoed.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Routes with the stricter rate limit: they change keys or configuration.
fn is_sensitive(method: &Method, route: &str) -> bool {
    route.ends_with("/key/rotate")
        || route.ends_with("/config/test")
        || (route.ends_with("/config") && method == Method::PUT)
}

/// The caller's request id if it is short and plain, a new one otherwise.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(
            || format!("{:032x}", rand::random::<u128>()),
            ToOwned::to_owned,
        )
}

pub(crate) async fn guard(
    State(state): State<Arc<AdminState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let client = state.limiters.client(&request);
    request
        .extensions_mut()
        .insert(crate::BodyLimit(state.config.body_limit));

    let mut principal: Option<Principal> = None;
    let result: Result<Response, ApiError> = async {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > state.config.body_limit as u64) {
            return Err(ApiError::too_large(state.config.body_limit));
        }
        state
            .limiters
            .check_general(client)
            .map_err(|wait| ApiError::rate_limited("too many requests", wait))?;
        let public = route == "/metrics" && state.config.metrics_public;
        if !public {
            if let Some(wait) = state.limiters.locked_out(client) {
                return Err(ApiError::rate_limited(
                    "too many failed authentications from this client",
                    wait,
                ));
            }
            let header = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes);
            match state.config.auth.authenticate(header) {
                Ok(p) => principal = Some(p),
                Err(failure) => {
                    if failure != crate::auth::Failure::NotAdmin {
                        state.limiters.record_failure(client);
                    }
                    metrics::counter!(names::AUTH_FAILURES_TOTAL, "reason" => failure.reason())
                        .increment(1);
                    tracing::warn!(
                        target: ALERT_TARGET,
                        alert = "authentication_failure",
                        request_id = %id,
                        client = %client,
                        method = %method,
                        route = %route,
                        reason = failure.reason(),
                        "admin authentication failed"
                    );
                    return Err(failure.into_error());
                }
            }
        }
        if is_sensitive(&method, &route) {
            state.limiters.check_sensitive(client).map_err(|wait| {
                ApiError::rate_limited("too many key or configuration changes", wait)
            })?;
        }
        let who = principal
            .as_ref()
            .map_or("anonymous", |p| p.subject.as_str());
        let span =
            tracing::info_span!("admin_request", request_id = %id, who = %who, client = %client);
        tokio::time::timeout(
            state.config.request_timeout,
            next.run(request).instrument(span),
        )
        .await
        .map_err(|_| ApiError::timeout(state.config.request_timeout))
    }
    .await;

    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    let status = response.status();
    let latency = started.elapsed();
    let audit = response
        .extensions()
        .get::<AuditInfo>()
        .cloned()
        .unwrap_or_default();
    let code = response.extensions().get::<ErrorCode>().map(|c| c.0);
    let who = principal
        .as_ref()
        .map_or("anonymous", |p| p.subject.as_str());
    let auth = principal.as_ref().map_or("none", |p| p.method);
    let outcome = if status.is_success() {
        "success"
    } else {
        "failure"
    };
    macro_rules! audit {
        ($level:ident) => {
            tracing::$level!(
                target: AUDIT_TARGET,
                request_id = %id,
                who,
                auth,
                client = %client,
                method = %method,
                route = %route,
                key_id = audit.key_id.as_deref(),
                version = audit.version.as_deref(),
                provider = audit.provider.as_deref(),
                status = status.as_u16(),
                outcome,
                error = code,
                latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                "admin request"
            )
        };
    }
    if status.is_client_error() || status.is_server_error() {
        audit!(warn);
    } else {
        audit!(info);
    }
    metrics::counter!(
        names::ADMIN_REQUESTS_TOTAL,
        "route" => route.clone(),
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!(names::ADMIN_REQUEST_DURATION_SECONDS, "route" => route)
        .record(latency.as_secs_f64());
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}
