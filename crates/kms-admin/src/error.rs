//! The error response: `{"success":false,"error":{"code","message"}}` with
//! the matching HTTP status.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An admin API error: HTTP status, stable code and a message that never
/// holds key material or credentials.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<Duration>,
    data: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct Body<'a> {
    success: bool,
    error: Detail<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            data: None,
        }
    }

    /// 400: the request body or the posted configuration is invalid.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no credentials, or credentials that do not verify.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 403: valid credentials without the admin role.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404: no such route.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
    }

    /// 405: the route exists, not with this method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "method not allowed on this endpoint",
        )
    }

    /// 413: the body is larger than the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("request body larger than {limit} bytes"),
        )
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        ApiError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", message)
        }
    }

    /// 503: the request did not finish within the route's time limit.
    pub fn timeout(limit: Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "REQUEST_TIMEOUT",
            format!("the request did not finish within {} ms", limit.as_millis()),
        )
    }

    /// Adds a `data` member to the error body (a report that explains it).
    #[must_use]
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// The HTTP status for a library error.
#[must_use]
pub fn status_of(err: &kms::Error) -> StatusCode {
    match err {
        kms::Error::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        kms::Error::KeyNotFound { .. } => StatusCode::NOT_FOUND,
        kms::Error::AccessDenied { .. } => StatusCode::FORBIDDEN,
        // The key's state refuses the rotation until an operator acts.
        kms::Error::Conflict { .. } | kms::Error::RetentionExhausted { .. } => StatusCode::CONFLICT,
        kms::Error::Config { .. } | kms::Error::Unsupported { .. } => StatusCode::BAD_REQUEST,
        kms::Error::Provider { .. } => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<kms::Error> for ApiError {
    fn from(err: kms::Error) -> Self {
        // Display texts are the spec's messages and never hold secrets; the
        // error's sources (which may name hosts) stay in the server's log.
        ApiError::new(status_of(&err), err.code(), err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            success: false,
            error: Detail {
                code: self.code,
                message: &self.message,
            },
            data: self.data.as_ref(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(wait) = self.retry_after {
            // Whole seconds, rounded up, at least 1.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// The error code of a failed response, for the audit log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);
