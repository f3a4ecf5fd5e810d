//! Classification of Secret Manager client errors into what the `kms` error
//! type means.
//!
//! The client's errors are not kept verbatim as sources of service errors:
//! the [`CallError`] made here keeps the operation, the gRPC status code and
//! Google's message, and, for transport and credential failures, the
//! underlying error. No payload (key material) is ever part of an error.
//! What a failure then means for the caller is
//! `kms_core::provider_support`'s job.

use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::error::{CredentialsError, Error as GaxError};
use kms_core::provider_support::{CallError, Failure};

use crate::PROVIDER;

/// Classifies an error of the official client from doing `what`.
pub(crate) fn classify(what: impl Into<String>, err: GaxError) -> CallError {
    let what = what.into();
    if let Some(status) = err.status() {
        let detail = format!("{}: {}", status.code.name(), status.message);
        return CallError::new(PROVIDER, kind_of(status.code), what, detail)
            .with_code(status.code.name());
    }
    if err.is_authentication() {
        let transient = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<CredentialsError>())
            .is_some_and(CredentialsError::is_transient);
        let kind = if transient {
            Failure::Unavailable
        } else {
            Failure::Denied
        };
        return CallError::new(PROVIDER, kind, what, "cannot get credentials").with_source(err);
    }
    if let Some(code) = err.http_status_code() {
        // An error answer that is not Google's JSON (a proxy, a load balancer).
        let kind = match code {
            401 | 403 => Failure::Denied,
            404 => Failure::NotFound,
            408 | 429 | 500..=599 => Failure::Unavailable,
            _ => Failure::Unexpected,
        };
        return CallError::new(PROVIDER, kind, what, format!("HTTP {code}")).with_status(code);
    }
    if err.is_timeout()
        || err.is_io()
        || err.is_connect()
        || err.is_transport()
        || err.is_exhausted()
    {
        return CallError::new(PROVIDER, Failure::Unavailable, what, "the request failed")
            .with_source(err);
    }
    if err.is_deserialization() {
        return CallError::new(
            PROVIDER,
            Failure::Unexpected,
            what,
            "the response could not be parsed",
        );
    }
    CallError::new(PROVIDER, Failure::Unexpected, what, err.to_string())
}

/// The meaning of a gRPC status code.
fn kind_of(code: Code) -> Failure {
    match code {
        Code::PermissionDenied | Code::Unauthenticated => Failure::Denied,
        Code::NotFound => Failure::NotFound,
        Code::FailedPrecondition => Failure::Disabled,
        Code::AlreadyExists => Failure::Conflict,
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Internal
        | Code::Aborted
        | Code::Unknown
        | Code::Cancelled => Failure::Unavailable,
        _ => Failure::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use google_cloud_gax::error::rpc::Status;
    use kms_core::{Error, KeyId};

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
            let e = classify("access x", service(code, "m")).into_error(&KeyId::default(), None);
            assert_eq!(e.to_string(), text, "{code:?}");
            assert_eq!(e.is_temporary(), temporary, "{code:?}");
        }
        let e = classify("access x", service(Code::InvalidArgument, "bad"))
            .into_error(&KeyId::default(), None);
        assert!(matches!(e, Error::Provider { .. }), "{e:?}");
    }

    #[test]
    fn the_source_keeps_the_status_and_message() {
        let e = classify(
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
        let e = classify("access x", GaxError::connect(io)).into_error(&KeyId::default(), None);
        assert!(matches!(e, Error::Unavailable { .. }), "{e:?}");
    }
}
