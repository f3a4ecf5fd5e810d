//! What every provider crate needs to talk to its service the same way: one
//! failure type for a call to the service ([`CallError`]), its mapping onto
//! [`Error`], an error-chain formatter ([`describe_chain`]), the checks and
//! warnings of an endpoint setting ([`check_endpoint`],
//! [`warn_plain_http`]) and of credentials that come in pairs ([`paired`]).
//!
//! A provider crate keeps only what is its own: the table that says what
//! its SDK's errors mean (a [`Failure`] for each status or error code), as
//! opendal's services keep only their `parse_error`.

use std::fmt;

use crate::error::{BoxError, Error, Result};
use crate::key::{KeyId, KeyVersion};

/// What a failed call to a provider's service means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Credentials refused, a permission missing, a key-encryption key
    /// disabled: [`Error::AccessDenied`].
    Denied,
    /// No such key or version: [`Error::KeyNotFound`].
    NotFound,
    /// The version exists but is disabled or destroyed:
    /// [`Error::KeyNotFound`] too, told apart for providers that then look
    /// for another version.
    Disabled,
    /// Another writer got there first (a check-and-set that failed, a name
    /// that now exists): [`Error::Conflict`], which is temporary.
    Conflict,
    /// Unreachable, timed out, throttled, a server error: try again later
    /// ([`Error::Unavailable`]).
    Unavailable,
    /// An answer the provider does not understand: [`Error::Provider`].
    Unexpected,
}

/// A failed call to a provider's service: what it means, the operation,
/// the HTTP status and the service's error code where there are some, a
/// description, and the underlying error where one is safe to keep.
///
/// It never holds a response body: a body can hold a key (a read's answer)
/// or a credential (a token lookup's). Provider crates describe what went
/// wrong in `detail` from the parts of an error that cannot hold secrets
/// (status, code, the service's message), and keep as `source` only
/// transport and credential errors.
#[derive(Debug)]
pub struct CallError {
    provider: &'static str,
    kind: Failure,
    operation: String,
    status: Option<u16>,
    code: Option<String>,
    detail: String,
    source: Option<BoxError>,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.provider, self.operation, self.detail)
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
    /// A failure of `operation` (e.g. `read secret/app/keys/default`) on
    /// `provider`'s service, described by `detail` (e.g. `HTTP 403:
    /// permission denied`).
    pub fn new(
        provider: &'static str,
        kind: Failure,
        operation: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        CallError {
            provider,
            kind,
            operation: operation.into(),
            status: None,
            code: None,
            detail: detail.into(),
            source: None,
        }
    }

    /// With the HTTP status the service answered.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// With the service's error code (e.g. `ParameterNotFound`, `NOT_FOUND`).
    #[must_use]
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// With the underlying error (a transport or credential error: never
    /// one that holds a response body).
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same failure with another meaning and description (operation,
    /// status, code and source kept).
    #[must_use]
    pub fn reclassify(self, kind: Failure, detail: impl Into<String>) -> Self {
        CallError {
            kind,
            detail: detail.into(),
            ..self
        }
    }

    /// What the failure means.
    #[must_use]
    pub fn kind(&self) -> Failure {
        self.kind
    }

    /// The HTTP status, when the service answered one.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The service's error code, when it gave one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// Whether the service's error code is `code`.
    #[must_use]
    pub fn is_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }

    /// What was being done.
    #[must_use]
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// What went wrong, without the provider and the operation.
    #[must_use]
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The [`Error`] for this failure of an operation on `key_id`
    /// (`version` when a specific version was asked for). Access denied
    /// and unavailable keep this failure as their source.
    #[must_use]
    pub fn into_error(self, key_id: &KeyId, version: Option<&KeyVersion>) -> Error {
        let provider = self.provider;
        match self.kind {
            Failure::Denied => Error::access_denied(provider, self),
            Failure::NotFound | Failure::Disabled => Error::key_not_found(key_id, version),
            Failure::Conflict => Error::conflict(key_id),
            Failure::Unavailable => Error::unavailable(provider, self),
            Failure::Unexpected => Error::provider(provider, self),
        }
    }
}

/// An error and its causes on one line, separated by `: `.
#[must_use]
pub fn describe_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Checks an endpoint setting (`variable`, e.g. `AWS_ENDPOINT_URL`): an
/// `http://` or `https://` URL with a host, and no user name, password,
/// query or fragment. Returns it trimmed, without a trailing `/`. The
/// value is never echoed in the error (it could hold a password).
///
/// # Errors
/// [`Error::Config`] naming `variable`.
pub fn check_endpoint(variable: &str, value: &str) -> Result<String> {
    let value = value.trim();
    let (scheme, rest) = ["https://", "http://"]
        .into_iter()
        .find_map(|scheme| Some((scheme, value.strip_prefix(scheme)?)))
        .ok_or_else(|| {
            Error::config(
                variable,
                "must start with https:// (or http:// for a local emulator)",
            )
        })?;
    let rest = rest.trim_end_matches('/');
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(Error::config(variable, "has no host name"));
    }
    if rest.contains(['@', '?', '#']) || rest.contains(char::is_whitespace) {
        return Err(Error::config(
            variable,
            "must not contain a user name, password, query or fragment",
        ));
    }
    Ok(format!("{scheme}{rest}"))
}

/// Whether an endpoint is plain `http://`.
#[must_use]
pub fn is_plain_http(url: &str) -> bool {
    url.trim_start()
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
}

/// Warns (target `kms::provider`) when an endpoint setting is plain
/// `http://`: what the provider sends (`exposed`, e.g. "the encryption
/// keys") then crosses the network unencrypted. Returns whether it warned.
pub fn warn_plain_http(provider: &'static str, variable: &str, url: &str, exposed: &str) -> bool {
    let plain = is_plain_http(url);
    if plain {
        tracing::warn!(
            target: "kms::provider",
            provider,
            endpoint = %url,
            "{variable} uses plain http: {exposed} cross the network unencrypted; \
             use it only with a local server or emulator"
        );
    }
    plain
}

/// Two settings that are given together or not at all (an access key id
/// and its secret, a role id and its secret id): both values, or `None`
/// for neither. `needs` says why, e.g. "static credentials need both".
///
/// # Errors
/// [`Error::Config`] naming the one that is missing.
pub fn paired<A, B>(
    first: (&str, Option<A>),
    second: (&str, Option<B>),
    needs: &str,
) -> Result<Option<(A, B)>> {
    match (first, second) {
        ((_, Some(a)), (_, Some(b))) => Ok(Some((a, b))),
        ((_, None), (_, None)) => Ok(None),
        ((given, Some(_)), (missing, None)) | ((missing, None), (given, Some(_))) => Err(
            Error::config(missing, format!("is not set, but {given} is: {needs}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::error::Error as _;

    use super::*;

    fn failure(kind: Failure) -> CallError {
        CallError::new("vault", kind, "read secret/app/default", "HTTP 418: teapot")
            .with_status(418)
            .with_code("teapot")
    }

    #[test]
    fn each_failure_maps_to_the_spec_error_and_keeps_what_the_caller_needs() {
        let key = KeyId::default();
        let v = KeyVersion::from(3);
        let cases = [
            (Failure::Denied, "Access denied to encryption key", false),
            (
                Failure::NotFound,
                "Encryption key not found: default",
                false,
            ),
            (
                Failure::Disabled,
                "Encryption key not found: default",
                false,
            ),
            (
                Failure::Conflict,
                "conflicting concurrent update of encryption key: default",
                true,
            ),
            (Failure::Unavailable, "KMS service unavailable", true),
            (
                Failure::Unexpected,
                "unexpected response from the vault provider: vault: read secret/app/default: HTTP 418: teapot",
                false,
            ),
        ];
        for (kind, text, temporary) in cases {
            let e = failure(kind).into_error(&key, None);
            assert_eq!(e.to_string(), text, "{kind:?}");
            assert_eq!(e.is_temporary(), temporary, "{kind:?}");
        }
        // Denied and unavailable keep the call as their source.
        for kind in [Failure::Denied, Failure::Unavailable] {
            let e = failure(kind).into_error(&key, None);
            assert_eq!(
                e.source().unwrap().to_string(),
                "vault: read secret/app/default: HTTP 418: teapot"
            );
        }
        let e = failure(Failure::NotFound).into_error(&key, Some(&v));
        assert!(
            matches!(&e, Error::KeyNotFound { version, .. } if version.as_ref() == Some(&v)),
            "{e:?}"
        );
    }

    #[test]
    fn a_call_error_keeps_its_parts_and_its_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = failure(Failure::Unavailable).with_source(io);
        assert_eq!(
            (e.kind(), e.status(), e.code(), e.operation(), e.detail()),
            (
                Failure::Unavailable,
                Some(418),
                Some("teapot"),
                "read secret/app/default",
                "HTTP 418: teapot"
            )
        );
        assert!(e.is_code("teapot") && !e.is_code("tea"));
        assert_eq!(e.source().unwrap().to_string(), "refused");
        assert_eq!(
            describe_chain(&e),
            "vault: read secret/app/default: HTTP 418: teapot: refused"
        );
        let e = e.reclassify(Failure::Denied, "no");
        assert_eq!(
            (e.kind(), e.status(), e.detail()),
            (Failure::Denied, Some(418), "no")
        );
        assert!(e.source().is_some());
        assert_eq!(
            describe_chain(&e),
            "vault: read secret/app/default: no: refused"
        );
    }

    #[test]
    fn endpoints_are_http_urls_with_a_host_and_no_secrets() {
        for (value, cleaned) in [
            (" https://kms.example.com/ ", "https://kms.example.com"),
            ("http://127.0.0.1:4566", "http://127.0.0.1:4566"),
            ("https://h:8200/v1/", "https://h:8200/v1"),
        ] {
            assert_eq!(check_endpoint("X_URL", value).unwrap(), cleaned);
        }
        for (value, says) in [
            ("ftp://h", "must start with https://"),
            ("h:4566", "must start with https://"),
            ("https://", "has no host name"),
            ("http://:80", "has no host name"),
            ("https://user:hunter2@h", "must not contain a user name"),
            ("https://h/?token=hunter2", "must not contain"),
            ("https://h/#hunter2", "must not contain"),
            ("https://h /hunter2", "must not contain"),
        ] {
            let e = check_endpoint("X_URL", value).unwrap_err().to_string();
            assert!(e.contains("X_URL") && e.contains(says), "{value}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn only_plain_http_is_warned_about() {
        assert!(is_plain_http("http://localhost:8200"));
        assert!(is_plain_http(" HTTP://localhost"));
        assert!(!is_plain_http("https://localhost"));
        assert!(!is_plain_http("http:"));
        assert!(warn_plain_http(
            "aws",
            "AWS_ENDPOINT_URL",
            "http://h",
            "the keys"
        ));
        assert!(!warn_plain_http(
            "aws",
            "AWS_ENDPOINT_URL",
            "https://h",
            "the keys"
        ));
    }

    #[test]
    fn paired_settings_come_together_or_not_at_all() {
        let need = "AppRole login needs both";
        assert_eq!(
            paired(("A", Some(1)), ("B", Some("b")), need).unwrap(),
            Some((1, "b"))
        );
        assert_eq!(
            paired::<u8, u8>(("A", None), ("B", None), need).unwrap(),
            None
        );
        let e = paired(("A", Some(1)), ("B", None::<u8>), need).unwrap_err();
        assert_eq!(
            e.to_string(),
            Error::config("B", "is not set, but A is: AppRole login needs both").to_string()
        );
        let e = paired(("A", None::<u8>), ("B", Some(2)), need).unwrap_err();
        assert_eq!(
            e.to_string(),
            Error::config("A", "is not set, but B is: AppRole login needs both").to_string()
        );
    }
}
