//! Classification of vaultrs errors into what the `kms` error type means.
//!
//! vaultrs errors are not kept verbatim: some of its variants carry the raw
//! response body (`ResponseParseError { content }`), which for a KV read is
//! the key itself and for `auth/token/lookup-self` is the token. The
//! [`CallError`] made here keeps only the operation, the HTTP status,
//! Vault's own error messages and, for transport failures, the underlying
//! network error. What a failure then means for the caller is
//! `kms_core::provider_support`'s job.

use kms_core::provider_support::{CallError, Failure};
use rustify::errors::ClientError as HttpError;
use vaultrs::error::ClientError;

use crate::PROVIDER;

/// Classifies a vaultrs error from doing `what`.
pub(crate) fn classify(what: impl Into<String>, err: ClientError) -> CallError {
    let what = what.into();
    match err {
        ClientError::APIError { code, errors } => from_status(what, code, &errors),
        ClientError::RestClientError { source } => from_http(what, source),
        ClientError::JsonParseError { source } => {
            CallError::new(PROVIDER, Failure::Unexpected, what, parse_detail(&source))
        }
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => CallError::new(
            PROVIDER,
            Failure::Unexpected,
            what,
            "the response had no data",
        ),
        other => CallError::new(PROVIDER, Failure::Unexpected, what, other.to_string()),
    }
}

fn from_http(what: String, err: HttpError) -> CallError {
    match err {
        HttpError::ServerResponseError { code, .. } => from_status(what, code, &[]),
        HttpError::RequestError { source, .. } => {
            CallError::new(PROVIDER, Failure::Unavailable, what, "the request failed")
                .with_source(source)
        }
        HttpError::ResponseError { source } => CallError::new(
            PROVIDER,
            Failure::Unavailable,
            what,
            "reading the response failed",
        )
        .with_source(source),
        HttpError::ResponseParseError { source, .. } => {
            let detail = source
                .downcast_ref::<serde_json::Error>()
                .map_or_else(|| "the response is not JSON".to_owned(), parse_detail);
            CallError::new(PROVIDER, Failure::Unexpected, what, detail)
        }
        HttpError::ResponseConversionError { .. } => CallError::new(
            PROVIDER,
            Failure::Unexpected,
            what,
            "the response is not UTF-8 text",
        ),
        other => CallError::new(PROVIDER, Failure::Unexpected, what, other.to_string()),
    }
}

/// Classifies an HTTP status with Vault's `errors` messages.
pub(crate) fn from_status(what: String, code: u16, errors: &[String]) -> CallError {
    let messages = errors.join("; ");
    let kind = match code {
        401 | 403 => Failure::Denied,
        404 => Failure::NotFound,
        // "check-and-set parameter did not match the current version".
        400 if messages.contains("check-and-set") => Failure::Conflict,
        // 412: Vault Enterprise's "not yet replicated" precondition; 429:
        // rate limited or an unready standby; 472/473: DR/performance
        // standby; 5xx: sealed (503), uninitialized (501), server errors.
        412 | 429 | 472 | 473 | 500..=599 => Failure::Unavailable,
        _ => Failure::Unexpected,
    };
    let detail = if messages.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {messages}")
    };
    CallError::new(PROVIDER, kind, what, detail).with_status(code)
}

/// A JSON error's position and category, without its message: serde's
/// messages can quote the unexpected value, which may be a key or a token.
fn parse_detail(e: &serde_json::Error) -> String {
    format!(
        "the response could not be parsed ({:?} error at line {}, column {})",
        e.classify(),
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    use kms_core::{Error, KeyId, KeyVersion};

    use super::*;

    fn api(code: u16, errors: &[&str]) -> ClientError {
        ClientError::APIError {
            code,
            errors: errors.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    fn server(code: u16, body: &str) -> ClientError {
        ClientError::RestClientError {
            source: HttpError::ServerResponseError {
                code,
                content: Some(body.to_owned()),
            },
        }
    }

    fn key() -> KeyId {
        KeyId::default()
    }

    #[test]
    fn statuses_map_to_the_spec_errors() {
        let cases: [(ClientError, &str, bool); 10] = [
            (
                api(403, &["permission denied"]),
                "Access denied to encryption key",
                false,
            ),
            (api(401, &[]), "Access denied to encryption key", false),
            (api(404, &[]), "Encryption key not found: default", false),
            // A deleted or destroyed version: 404 with a body vaultrs cannot parse as errors.
            (
                server(
                    404,
                    r#"{"data":{"data":null,"metadata":{"destroyed":true}}}"#,
                ),
                "Encryption key not found: default",
                false,
            ),
            (
                api(503, &["Vault is sealed"]),
                "KMS service unavailable",
                true,
            ),
            (
                server(502, "<html>bad gateway</html>"),
                "KMS service unavailable",
                true,
            ),
            (api(429, &[]), "KMS service unavailable", true),
            (
                api(500, &["internal error"]),
                "KMS service unavailable",
                true,
            ),
            (
                api(
                    400,
                    &["check-and-set parameter did not match the current version"],
                ),
                "conflicting concurrent update of encryption key: default",
                true,
            ),
            (
                api(400, &["invalid request"]),
                "unexpected response from the vault provider: vault: read x: HTTP 400: invalid request",
                false,
            ),
        ];
        for (err, text, temporary) in cases {
            let e = classify("read x", err).into_error(&key(), None);
            assert_eq!(e.to_string(), text);
            assert_eq!(e.is_temporary(), temporary, "{e:?}");
        }
    }

    #[test]
    fn the_source_keeps_status_and_vault_messages() {
        use std::error::Error as _;
        let e = classify(
            "read secret/boosterbeacon/encryption-keys/default",
            api(403, &["permission denied"]),
        )
        .into_error(&key(), None);
        assert!(matches!(e, Error::AccessDenied { .. }));
        assert_eq!(
            e.source().unwrap().to_string(),
            "vault: read secret/boosterbeacon/encryption-keys/default: HTTP 403: permission denied"
        );
    }

    #[test]
    fn response_bodies_never_reach_the_error() {
        // A 200 response that fails to parse: rustify keeps the whole body,
        // which here holds a key and a token.
        let body = r#"{"data":{"key":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","id":"hvs.SECRETTOKEN"}}"#;
        let json_err = serde_json::from_str::<u64>(body).unwrap_err();
        let err = ClientError::RestClientError {
            source: HttpError::ResponseParseError {
                source: json_err.into(),
                content: Some(body.to_owned()),
            },
        };
        let e = classify("read x", err).into_error(&key(), None);
        for text in [e.to_string(), format!("{e:?}"), format!("{e:#?}")] {
            assert!(!text.contains("00112233"), "{text}");
            assert!(!text.contains("SECRETTOKEN"), "{text}");
        }
        assert!(matches!(e, Error::Provider { .. }));

        let e = classify("read x", server(404, body)).into_error(&key(), None);
        assert!(!format!("{e:?}").contains("SECRETTOKEN"));
    }

    #[test]
    fn not_found_names_the_version() {
        let v = KeyVersion::from(7);
        let e = classify("read x", api(404, &[])).into_error(&key(), Some(&v));
        assert!(
            matches!(&e, Error::KeyNotFound { key_id, version } if key_id == "default" && version.as_ref().is_some_and(|v| v == "7"))
        );
    }
}
