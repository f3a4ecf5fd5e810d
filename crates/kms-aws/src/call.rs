//! Maps AWS SDK errors onto `kms_core::Error`, without ever carrying a
//! parameter value or credentials.

use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use kms_core::error::Cause;
use kms_core::{Error, KeyId, KeyVersion};

use crate::PROVIDER;

/// What an AWS error means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Credentials refused, permission missing, KMS key disabled.
    Denied,
    /// No such parameter or parameter version.
    NotFound,
    /// Network, timeout, throttling, 5xx: try again later.
    Unavailable,
    /// Anything else: a permanent, unexpected answer.
    Unexpected,
}

/// A failed AWS call: its kind and a description (operation, error code,
/// AWS's message) that holds no secret.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) kind: Kind,
    pub(crate) code: Option<String>,
    pub(crate) detail: String,
}

impl CallError {
    pub(crate) fn new(kind: Kind, detail: impl Into<String>) -> Self {
        CallError {
            kind,
            code: None,
            detail: detail.into(),
        }
    }

    /// Classifies an SDK error of operation `what`.
    pub(crate) fn from_sdk<E, R>(what: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => CallError::new(
                Kind::Unavailable,
                format!("{what}: {}", DisplayErrorContext(&err)),
            ),
            SdkError::ConstructionFailure(_) => CallError::new(
                Kind::Unexpected,
                format!(
                    "{what}: could not build the request: {}",
                    DisplayErrorContext(&err)
                ),
            ),
            _ => {
                let code = err.code().unwrap_or("").to_owned();
                let message = err.message().unwrap_or("").to_owned();
                let kind = kind_of_code(&code);
                CallError {
                    kind,
                    detail: format!("{what}: {code}: {message}"),
                    code: Some(code),
                }
            }
        }
    }

    pub(crate) fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// The `kms_core::Error` for key `key_id` (version `version`).
    pub(crate) fn into_error(self, key_id: &KeyId, version: Option<&KeyVersion>) -> Error {
        match self.kind {
            Kind::Denied => Error::access_denied(PROVIDER, Cause(self.detail)),
            Kind::NotFound => Error::key_not_found(key_id, version),
            Kind::Unavailable => Error::unavailable(PROVIDER, Cause(self.detail)),
            Kind::Unexpected => Error::Provider {
                provider: PROVIDER,
                message: self.detail,
            },
        }
    }
}

/// The kind of an AWS error code (SSM, KMS and the common STS/signing codes).
pub(crate) fn kind_of_code(code: &str) -> Kind {
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
        | "KMSNotFoundException" => Kind::Denied,
        "ParameterNotFound" | "ParameterVersionNotFound" => Kind::NotFound,
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
        | "RequestTimeoutException" => Kind::Unavailable,
        _ => Kind::Unexpected,
    }
}

#[cfg(test)]
mod tests {
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
            assert_eq!(kind_of_code(code), Kind::Denied, "{code}");
        }
        for code in ["ParameterNotFound", "ParameterVersionNotFound"] {
            assert_eq!(kind_of_code(code), Kind::NotFound, "{code}");
        }
        for code in [
            "ThrottlingException",
            "InternalServerError",
            "KMSInternalException",
        ] {
            assert_eq!(kind_of_code(code), Kind::Unavailable, "{code}");
        }
        assert_eq!(kind_of_code("ValidationException"), Kind::Unexpected);
    }

    #[test]
    fn errors_have_the_spec_wording() {
        let id = KeyId::default();
        let e = CallError::new(Kind::Unavailable, "x").into_error(&id, None);
        assert_eq!(e.to_string(), "KMS service unavailable");
        assert!(e.is_temporary());
        let e = CallError::new(Kind::Denied, "x").into_error(&id, None);
        assert_eq!(e.to_string(), "Access denied to encryption key");
        let e = CallError::new(Kind::NotFound, "x").into_error(&id, None);
        assert_eq!(e.to_string(), "Encryption key not found: default");
    }
}
