//! Classification of Secret Manager client errors into what the `kms` error
//! type means.
//!
//! The client's errors are not kept verbatim as sources of service errors:
//! a [`CallError`] keeps the operation, the gRPC status code and Google's
//! message, and, for transport and credential failures, the underlying
//! error. No payload (key material) is ever part of an error.

use std::fmt;

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::error::{CredentialsError, Error as GaxError};
use kms_core::{BoxError, Error, KeyId, KeyVersion};

use crate::PROVIDER;

/// What a failed Secret Manager call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `PERMISSION_DENIED`, `UNAUTHENTICATED`, refused credentials.
    Denied,
    /// `NOT_FOUND`: no such secret or version.
    NotFound,
    /// `FAILED_PRECONDITION`: the version is disabled or destroyed.
    NotEnabled,
    /// `ALREADY_EXISTS`: a secret being created exists (another writer created it).
    Exists,
    /// Unreachable, timed out, `UNAVAILABLE`, `DEADLINE_EXCEEDED`,
    /// `RESOURCE_EXHAUSTED`, `INTERNAL`, `ABORTED`, `UNKNOWN`, HTTP 5xx/429.
    Unavailable,
    /// Anything else: an answer this crate does not understand.
    Unexpected,
}

/// A failed Secret Manager call.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) kind: Kind,
    /// What was being done, e.g. `access projects/p/secrets/s/versions/latest`.
    what: String,
    /// What went wrong, e.g. `NOT_FOUND: Secret [...] not found.`.
    detail: String,
    source: Option<BoxError>,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gcp: {}: {}", self.what, self.detail)
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl CallError {
    /// An error this crate raises itself.
    pub(crate) fn new(kind: Kind, what: impl Into<String>, detail: impl Into<String>) -> Self {
        CallError {
            kind,
            what: what.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Classifies an error of the official client from doing `what`.
    pub(crate) fn from_client(what: impl Into<String>, err: GaxError) -> Self {
        let what = what.into();
        if let Some(status) = err.status() {
            let kind = kind_of(status.code);
            let detail = format!("{}: {}", status.code.name(), status.message);
            return Self::new(kind, what, detail);
        }
        if err.is_authentication() {
            let transient = std::error::Error::source(&err)
                .and_then(|s| s.downcast_ref::<CredentialsError>())
                .is_some_and(CredentialsError::is_transient);
            let kind = if transient {
                Kind::Unavailable
            } else {
                Kind::Denied
            };
            return CallError {
                source: Some(err.into()),
                ..Self::new(kind, what, "cannot get credentials")
            };
        }
        if let Some(code) = err.http_status_code() {
            // An error answer that is not Google's JSON (a proxy, a load balancer).
            let kind = match code {
                401 | 403 => Kind::Denied,
                404 => Kind::NotFound,
                408 | 429 | 500..=599 => Kind::Unavailable,
                _ => Kind::Unexpected,
            };
            return Self::new(kind, what, format!("HTTP {code}"));
        }
        if err.is_timeout()
            || err.is_io()
            || err.is_connect()
            || err.is_transport()
            || err.is_exhausted()
        {
            return CallError {
                source: Some(err.into()),
                ..Self::new(Kind::Unavailable, what, "the request failed")
            };
        }
        if err.is_deserialization() {
            return Self::new(Kind::Unexpected, what, "the response could not be parsed");
        }
        Self::new(Kind::Unexpected, what, err.to_string())
    }

    /// The `kms` error for this failure of an operation on `key_id`
    /// (`version` when a specific version was asked for).
    pub(crate) fn into_error(self, key_id: &KeyId, version: Option<&KeyVersion>) -> Error {
        match self.kind {
            Kind::Denied => Error::access_denied(PROVIDER, self),
            Kind::NotFound | Kind::NotEnabled => Error::key_not_found(key_id, version),
            Kind::Exists => Error::Conflict {
                key_id: key_id.to_string(),
            },
            Kind::Unavailable => Error::unavailable(PROVIDER, self),
            Kind::Unexpected => Error::Provider {
                provider: PROVIDER,
                message: self.to_string(),
            },
        }
    }
}

/// The meaning of a gRPC status code.
fn kind_of(code: Code) -> Kind {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => Kind::Denied,
        Code::NotFound => Kind::NotFound,
        Code::FailedPrecondition => Kind::NotEnabled,
        Code::AlreadyExists => Kind::Exists,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Internal
        | Code::Aborted
        | Code::Unknown
        | Code::Cancelled => Kind::Unavailable,
        _ => Kind::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use google_cloud_gax::error::rpc::Status;

    use super::*;

    fn service(code: Code, message: &str) -> GaxError {
        GaxError::service(Status::default().set_code(code).set_message(message))
    }

    #[test]
    fn statuses_map_to_the_spec_errors() {
        let cases = [
            (Code::NotFound, "Encryption key not found: default", false),
            (
                Code::PermissionDenied,
                "Access denied to encryption key",
                false,
            ),
            (
                Code::Unauthenticated,
                "Access denied to encryption key",
                false,
            ),
            (
                Code::FailedPrecondition,
                "Encryption key not found: default",
                false,
            ),
            (Code::Unavailable, "KMS service unavailable", true),
            (Code::DeadlineExceeded, "KMS service unavailable", true),
            (Code::ResourceExhausted, "KMS service unavailable", true),
            (Code::Internal, "KMS service unavailable", true),
        ];
        for (code, text, temporary) in cases {
            let e = CallError::from_client("access x", service(code, "m"))
                .into_error(&KeyId::default(), None);
            assert_eq!(e.to_string(), text, "{code:?}");
            assert_eq!(e.is_temporary(), temporary, "{code:?}");
        }
        let e = CallError::from_client("access x", service(Code::InvalidArgument, "bad"))
            .into_error(&KeyId::default(), None);
        assert!(matches!(e, Error::Provider { .. }), "{e:?}");
    }

    #[test]
    fn the_source_keeps_the_status_and_message() {
        let e = CallError::from_client(
            "access projects/p/secrets/s/versions/latest",
            service(Code::PermissionDenied, "Permission denied."),
        )
        .into_error(&KeyId::default(), None);
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert_eq!(
            source,
            "gcp: access projects/p/secrets/s/versions/latest: PERMISSION_DENIED: Permission denied."
        );
    }

    #[test]
    fn transport_errors_are_temporary() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = CallError::from_client("access x", GaxError::connect(io))
            .into_error(&KeyId::default(), None);
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    }
}
