//! What AWS SDK errors mean: a `kms_core::provider_support::CallError` per
//! failed call, without ever carrying a parameter value or credentials.

use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use kms_core::provider_support::{CallError, Failure};

use crate::PROVIDER;

/// Classifies an SDK error of operation `what`. Keeps the SDK error as the
/// source for timeouts and dispatch failures only: the other variants hold
/// the raw HTTP response, whose body can be a parameter's value.
pub(crate) fn classify<E>(what: &str, err: SdkError<E, HttpResponse>) -> CallError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => {
            CallError::new(PROVIDER, Failure::Unavailable, what, "the request failed")
                .with_source(err)
        }
        SdkError::ResponseError(_) => CallError::new(
            PROVIDER,
            Failure::Unavailable,
            what,
            format!("reading the response failed: {}", DisplayErrorContext(&err)),
        ),
        SdkError::ConstructionFailure(_) => CallError::new(
            PROVIDER,
            Failure::Unexpected,
            what,
            format!("could not build the request: {}", DisplayErrorContext(&err)),
        ),
        _ => {
            let code = err.code().unwrap_or("").to_owned();
            let message = err.message().unwrap_or("");
            let status = err.raw_response().map(|r| r.status().as_u16());
            let call = CallError::new(
                PROVIDER,
                kind_of_code(&code),
                what,
                format!("{code}: {message}"),
            );
            let call = match status {
                Some(status) => call.with_status(status),
                None => call,
            };
            call.with_code(code)
        }
    }
}

/// The kind of an AWS error code (SSM, KMS and the common STS/signing codes).
pub(crate) fn kind_of_code(code: &str) -> Failure {
    match code {
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "RequestExpired"
        // The KMS key is disabled or pending deletion (KMS), or SSM could not
        // use it (SSM reports the KMS failure with these codes).
        | "DisabledException"
        | "KMSInvalidStateException"
        | "KMSDisabledException"
        | "InvalidKeyId"
        | "NotFoundException"
        | "KMSNotFoundException" => Failure::Denied,
        "ParameterNotFound" | "ParameterVersionNotFound" => Failure::NotFound,
        "ThrottlingException"
        | "Throttling"
        | "ThrottledException"
        | "TooManyRequestsException"
        | "TooManyUpdates"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "InternalFailure"
        | "ServiceUnavailable"
        | "KMSInternalException"
        | "KMSInternalServerError"
        | "DependencyTimeoutException"
        | "RequestTimeout"
        | "RequestTimeoutException" => Failure::Unavailable,
        _ => Failure::Unexpected,
    }
}

#[cfg(test)]
mod tests {
    use kms_core::KeyId;

    use super::*;

    #[test]
    fn codes_are_classified() {
        for code in [
            "AccessDeniedException",
            "UnrecognizedClientException",
            "InvalidSignatureException",
            "ExpiredTokenException",
            "DisabledException",
            "KMSInvalidStateException",
        ] {
            assert_eq!(kind_of_code(code), Failure::Denied, "{code}");
        }
        for code in ["ParameterNotFound", "ParameterVersionNotFound"] {
            assert_eq!(kind_of_code(code), Failure::NotFound, "{code}");
        }
        for code in [
            "ThrottlingException",
            "InternalServerError",
            "KMSInternalException",
        ] {
            assert_eq!(kind_of_code(code), Failure::Unavailable, "{code}");
        }
        assert_eq!(kind_of_code("ValidationException"), Failure::Unexpected);
    }

    #[test]
    fn errors_have_the_spec_wording() {
        let id = KeyId::default();
        let e = CallError::new(PROVIDER, Failure::Unavailable, "SSM GetParameter", "x")
            .into_error(&id, None);
        assert_eq!(e.to_string(), "KMS service unavailable");
        assert!(e.is_temporary());
        let e = CallError::new(PROVIDER, Failure::Denied, "SSM GetParameter", "x")
            .into_error(&id, None);
        assert_eq!(e.to_string(), "Access denied to encryption key");
        let e = CallError::new(PROVIDER, Failure::NotFound, "SSM GetParameter", "x")
            .into_error(&id, None);
        assert_eq!(e.to_string(), "Encryption key not found: default");
    }
}
