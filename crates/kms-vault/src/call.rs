//! Classification of vaultrs errors into what the `kms` error type means.
//!
//! vaultrs errors are not kept verbatim: some of its variants carry the raw
//! response body (`ResponseParseError { content }`), which for a KV read is
//! the key itself and for `auth/token/lookup-self` is the token. A
//! [`CallError`] keeps only the operation, the HTTP status, Vault's own error
//! messages and, for transport failures, the underlying network error.

use std::fmt;

use kms_core::{BoxError, Error, KeyId, KeyVersion};
use rustify::errors::ClientError as HttpError;
use vaultrs::error::ClientError;

use crate::PROVIDER;

/// What a failed Vault call means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// 401/403: bad, expired or revoked token, or a policy that does not allow the path.
    Denied,
    /// 404: no such path, version, or the version is deleted or destroyed.
    NotFound,
    /// 400 "check-and-set parameter did not match the current version".
    CasMismatch,
    /// Unreachable, timed out, 429, 5xx (503: sealed), 412 (not yet replicated).
    Unavailable,
    /// Anything else: an answer this crate does not understand.
    Unexpected,
}

/// A failed Vault call, without response bodies.
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) kind: Kind,
    /// The HTTP status, when the server answered.
    pub(crate) status: Option<u16>,
    /// What was being done, e.g. `read secret/boosterbeacon/encryption-keys/default`.
    what: String,
    /// What went wrong, e.g. `HTTP 403: permission denied`.
    detail: String,
    /// The transport error, for network failures.
    source: Option<BoxError>,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vault: {}: {}", self.what, self.detail)
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
    /// An error this crate raises itself (no SDK error behind it).
    pub(crate) fn new(kind: Kind, what: impl Into<String>, detail: impl Into<String>) -> Self {
        CallError {
            kind,
            status: None,
            what: what.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// What went wrong, without the operation.
    pub(crate) fn detail(&self) -> &str {
        &self.detail
    }

    /// The same failure with another meaning and explanation (status and source kept).
    pub(crate) fn reclassify(self, kind: Kind, detail: impl Into<String>) -> Self {
        CallError {
            kind,
            detail: detail.into(),
            ..self
        }
    }

    /// Classifies a vaultrs error from doing `what`.
    pub(crate) fn from_client(what: impl Into<String>, err: ClientError) -> Self {
        let what = what.into();
        match err {
            ClientError::APIError { code, errors } => Self::from_status(what, code, &errors),
            ClientError::RestClientError { source } => Self::from_http(what, source),
            ClientError::JsonParseError { source } => {
                Self::new(Kind::Unexpected, what, parse_detail(&source))
            }
            ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
                Self::new(Kind::Unexpected, what, "the response had no data")
            }
            other => Self::new(Kind::Unexpected, what, other.to_string()),
        }
    }

    fn from_http(what: String, err: HttpError) -> Self {
        match err {
            HttpError::ServerResponseError { code, .. } => Self::from_status(what, code, &[]),
            HttpError::RequestError { source, .. } => CallError {
                source: Some(source.into()),
                ..Self::new(Kind::Unavailable, what, "the request failed")
            },
            HttpError::ResponseError { source } => CallError {
                source: Some(source.into()),
                ..Self::new(Kind::Unavailable, what, "reading the response failed")
            },
            HttpError::ResponseParseError { source, .. } => {
                let detail = source
                    .downcast_ref::<serde_json::Error>()
                    .map_or_else(|| "the response is not JSON".to_owned(), parse_detail);
                Self::new(Kind::Unexpected, what, detail)
            }
            HttpError::ResponseConversionError { .. } => {
                Self::new(Kind::Unexpected, what, "the response is not UTF-8 text")
            }
            other => Self::new(Kind::Unexpected, what, other.to_string()),
        }
    }

    /// Classifies an HTTP status with Vault's `errors` messages.
    pub(crate) fn from_status(what: String, code: u16, errors: &[String]) -> Self {
        let messages = errors.join("; ");
        let kind = match code {
            401 | 403 => Kind::Denied,
            404 => Kind::NotFound,
            400 if messages.contains("check-and-set") => Kind::CasMismatch,
            // 412: Vault Enterprise's "not yet replicated" precondition; 429:
            // rate limited or an unready standby; 472/473: DR/performance
            // standby; 5xx: sealed (503), uninitialized (501), server errors.
            412 | 429 | 472 | 473 | 500..=599 => Kind::Unavailable,
            _ => Kind::Unexpected,
        };
        let detail = if messages.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {messages}")
        };
        CallError {
            status: Some(code),
            ..Self::new(kind, what, detail)
        }
    }

    /// The `kms` error for this failure of an operation on `key_id`
    /// (`version` when a specific version was asked for).
    pub(crate) fn into_error(self, key_id: &KeyId, version: Option<&KeyVersion>) -> Error {
        match self.kind {
            Kind::Denied => Error::access_denied(PROVIDER, self),
            Kind::NotFound => Error::key_not_found(key_id, version),
            Kind::CasMismatch => Error::Conflict {
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
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
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
            let e = CallError::from_client("read x", err).into_error(&key(), None);
            assert_eq!(e.to_string(), text);
            assert_eq!(e.is_temporary(), temporary, "{e:?}");
        }
    }

    #[test]
    fn the_source_keeps_status_and_vault_messages() {
        use std::error::Error as _;
        let e = CallError::from_client(
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
        let e = CallError::from_client("read x", err).into_error(&key(), None);
        for text in [e.to_string(), format!("{e:?}"), format!("{e:#?}")] {
            assert!(!text.contains("00112233"), "{text}");
            assert!(!text.contains("SECRETTOKEN"), "{text}");
        }
        assert!(matches!(e, Error::Provider { .. }));

        let e = CallError::from_client("read x", server(404, body)).into_error(&key(), None);
        assert!(!format!("{e:?}").contains("SECRETTOKEN"));
    }

    #[test]
    fn not_found_names_the_version() {
        let v = KeyVersion::from(7);
        let e = CallError::from_client("read x", api(404, &[])).into_error(&key(), Some(&v));
        assert!(
            matches!(&e, Error::KeyNotFound { key_id, version } if key_id == "default" && version.as_deref() == Some("7"))
        );
    }
}
