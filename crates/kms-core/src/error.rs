//! The one error type of the workspace.

use std::fmt;

/// A boxed error from a provider's SDK or transport, as accepted by the constructors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The shared form in which an [`Error`] keeps its `source`, so that errors
/// are `Clone` (a cache hands one load failure to every waiting caller).
pub type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the `kms` workspace.
///
/// The four errors a user of the spec knows keep its exact wording as their
/// `Display` text; the details (provider, SDK error, timeout) are in the fields
/// and in [`std::error::Error::source`]. No variant ever carries key material
/// or credentials.
///
/// Use [`Error::is_temporary`] to decide whether an operation is worth
/// retrying.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider could not be reached, timed out, throttled us, or a
    /// circuit breaker is open. Temporary.
    #[error("KMS service unavailable")]
    Unavailable {
        /// Name of the provider (`env`, `aws`, `gcp`, `vault`, ...).
        provider: &'static str,
        /// What happened underneath, if known.
        #[source]
        source: Option<SharedError>,
    },

    /// The key, or the requested version of it, does not exist. Permanent.
    #[error("Encryption key not found: {key_id}")]
    KeyNotFound {
        /// The key id that was asked for.
        key_id: String,
        /// The version that was asked for, when a specific one was.
        version: Option<String>,
    },

    /// The provider refused access (bad credentials, missing permission,
    /// disabled key). Permanent.
    #[error("Access denied to encryption key")]
    AccessDenied {
        /// Name of the provider.
        provider: &'static str,
        /// What the provider said, if anything.
        #[source]
        source: Option<SharedError>,
    },

    /// Key material was not exactly 32 bytes (64 hex characters). Permanent.
    #[error("Invalid key length: expected 32 bytes")]
    InvalidKeyLength,

    /// The ciphertext, its header or the associated data is not authentic:
    /// it was modified, the AAD differs, or the key is wrong. Permanent.
    #[error("decryption failed: the ciphertext or its associated data is not authentic")]
    Decryption,

    /// The input is not a ciphertext of this library's format. Permanent.
    #[error("malformed ciphertext: {reason}")]
    MalformedCiphertext {
        /// Which part of the format is wrong.
        reason: &'static str,
    },

    /// The ciphertext uses a format version this build does not know. Permanent.
    #[error("unsupported ciphertext format version {version}")]
    UnsupportedFormatVersion {
        /// The version byte found.
        version: u8,
    },

    /// The plaintext or associated data is larger than AES-GCM allows
    /// (2^36 - 32 bytes). Permanent.
    #[error("input too large for AES-256-GCM")]
    InputTooLarge,

    /// Decrypted data was asked for as text but is not UTF-8. Permanent.
    #[error("decrypted plaintext is not valid UTF-8")]
    NotUtf8,

    /// A configuration value is missing or invalid. Permanent.
    #[error("invalid configuration: {variable}: {message}")]
    Config {
        /// The environment variable or builder setting at fault.
        variable: String,
        /// What is wrong with it (never the value itself when it is secret).
        message: String,
    },

    /// The provider cannot do this operation (for example rotating env keys).
    /// The message says what to do instead. Permanent.
    #[error("the {provider} provider does not support this operation: {message}")]
    Unsupported {
        /// Name of the provider.
        provider: &'static str,
        /// What to do instead.
        message: String,
    },

    /// Another writer changed the key at the same time (a rotation lost a
    /// check-and-set race). Temporary: reading the key again and retrying is safe.
    #[error("conflicting concurrent update of encryption key: {key_id}")]
    Conflict {
        /// The key id.
        key_id: String,
    },

    /// The ciphertext was written under a key version older than the key's
    /// minimum decryption version (`KMS_MIN_DECRYPTION_VERSION`): that
    /// version is retired. Rewrap the data (`kms rewrap`) under the current
    /// version. Permanent.
    #[error(
        "key version {version} of key {key_id} is retired (minimum decryption version is {minimum}): rewrap the data"
    )]
    KeyVersionRetired {
        /// The key id.
        key_id: String,
        /// The version that wrote the ciphertext.
        version: String,
        /// The configured minimum decryption version.
        minimum: String,
    },

    /// Writing a new version of the key (a rotation, an import) would make
    /// the provider delete a version that may still decrypt data: the
    /// provider keeps only `max_versions` versions (Vault's `max_versions`,
    /// SSM's 100) and the oldest live one would be evicted. Nothing was
    /// written. Permanent until an operator acts: rewrap the old data
    /// (`kms rewrap`), then set the minimum decryption version
    /// (`KMS_MIN_DECRYPTION_VERSION`) past the old versions, or raise the
    /// provider's limit.
    #[error(
        "a new version of encryption key {key_id} would make the {provider} provider delete version {oldest_live}, which may still decrypt data ({detail}): nothing was written; rewrap the old data with `kms rewrap`, then set KMS_MIN_DECRYPTION_VERSION to a newer version, or raise max_versions"
    )]
    RetentionExhausted {
        /// Name of the provider.
        provider: &'static str,
        /// The key id.
        key_id: String,
        /// The oldest version that may still decrypt data.
        oldest_live: String,
        /// How many versions the provider keeps, when known.
        max_versions: Option<u64>,
        /// Why the limit could not be raised, or what else to do.
        detail: String,
    },

    /// The provider answered something this library does not understand.
    /// Permanent.
    #[error("unexpected response from the {provider} provider: {message}")]
    Provider {
        /// Name of the provider.
        provider: &'static str,
        /// What was unexpected (never key material).
        message: String,
    },
}

impl Error {
    /// Whether the operation may succeed if tried again later.
    ///
    /// Temporary: [`Error::Unavailable`] (network failures, timeouts,
    /// throttling, open circuit) and [`Error::Conflict`]. Everything else is
    /// permanent and must not be retried.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Conflict { .. })
    }

    /// The opposite of [`Error::is_temporary`].
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        !self.is_temporary()
    }

    /// A short, stable, machine-readable name for the error kind
    /// (for metrics labels and API error codes).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Error::Unavailable { .. } => "KMS_UNAVAILABLE",
            Error::KeyNotFound { .. } => "KEY_NOT_FOUND",
            Error::AccessDenied { .. } => "ACCESS_DENIED",
            Error::InvalidKeyLength => "INVALID_KEY_LENGTH",
            Error::Decryption => "DECRYPTION_FAILED",
            Error::MalformedCiphertext { .. } => "MALFORMED_CIPHERTEXT",
            Error::UnsupportedFormatVersion { .. } => "UNSUPPORTED_FORMAT_VERSION",
            Error::InputTooLarge => "INPUT_TOO_LARGE",
            Error::NotUtf8 => "NOT_UTF8",
            Error::Config { .. } => "INVALID_CONFIG",
            Error::Unsupported { .. } => "UNSUPPORTED",
            Error::Conflict { .. } => "CONFLICT",
            Error::KeyVersionRetired { .. } => "KEY_VERSION_RETIRED",
            Error::RetentionExhausted { .. } => "RETENTION_EXHAUSTED",
            Error::Provider { .. } => "PROVIDER_ERROR",
        }
    }

    /// [`Error::Unavailable`] with an underlying cause.
    pub fn unavailable(provider: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            provider,
            source: Some(SharedError::from(source.into())),
        }
    }

    /// [`Error::AccessDenied`] with an underlying cause.
    pub fn access_denied(provider: &'static str, source: impl Into<BoxError>) -> Self {
        Error::AccessDenied {
            provider,
            source: Some(SharedError::from(source.into())),
        }
    }

    /// [`Error::KeyNotFound`] for a key id, optionally a specific version.
    pub fn key_not_found(key_id: impl fmt::Display, version: Option<impl fmt::Display>) -> Self {
        Error::KeyNotFound {
            key_id: key_id.to_string(),
            version: version.map(|v| v.to_string()),
        }
    }

    /// [`Error::Config`] naming the variable or setting at fault.
    pub fn config(variable: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            variable: variable.into(),
            message: message.into(),
        }
    }

    /// [`Error::MalformedCiphertext`].
    #[must_use]
    pub const fn malformed(reason: &'static str) -> Self {
        Error::MalformedCiphertext { reason }
    }
}

/// A plain-text cause, for [`Error::Unavailable`] and [`Error::AccessDenied`]
/// sources that have no error type of their own (for example a timeout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause(pub String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_wording() {
        assert_eq!(
            Error::Unavailable {
                provider: "aws",
                source: None
            }
            .to_string(),
            "KMS service unavailable"
        );
        assert_eq!(
            Error::key_not_found("default", None::<&str>).to_string(),
            "Encryption key not found: default"
        );
        assert_eq!(
            Error::AccessDenied {
                provider: "vault",
                source: None
            }
            .to_string(),
            "Access denied to encryption key"
        );
        assert_eq!(
            Error::InvalidKeyLength.to_string(),
            "Invalid key length: expected 32 bytes"
        );
    }

    #[test]
    fn temporary_vs_permanent() {
        assert!(Error::unavailable("aws", Cause("timed out".into())).is_temporary());
        assert!(Error::Conflict { key_id: "k".into() }.is_temporary());
        for e in [
            Error::key_not_found("k", Some(3)),
            Error::access_denied("vault", Cause("403".into())),
            Error::InvalidKeyLength,
            Error::Decryption,
            Error::malformed("x"),
            Error::config("KMS_TIMEOUT", "not a number"),
            Error::KeyVersionRetired {
                key_id: "default".into(),
                version: "3".into(),
                minimum: "5".into(),
            },
        ] {
            assert!(e.is_permanent(), "{e:?}");
        }
    }

    #[test]
    fn retired_version_says_what_to_do() {
        let e = Error::KeyVersionRetired {
            key_id: "default".into(),
            version: "3".into(),
            minimum: "5".into(),
        };
        assert_eq!(
            e.to_string(),
            "key version 3 of key default is retired (minimum decryption version is 5): rewrap the data"
        );
        assert_eq!(e.code(), "KEY_VERSION_RETIRED");
    }

    #[test]
    fn retention_refusal_names_the_fix() {
        let e = Error::RetentionExhausted {
            provider: "vault",
            key_id: "default".into(),
            oldest_live: "1".into(),
            max_versions: Some(10),
            detail: "it keeps 10 versions; the token may not update secret/metadata/default".into(),
        };
        let text = e.to_string();
        for part in [
            "delete version 1",
            "keeps 10 versions",
            "nothing was written",
            "kms rewrap",
            "KMS_MIN_DECRYPTION_VERSION",
            "max_versions",
        ] {
            assert!(text.contains(part), "{text}");
        }
        assert!(e.is_permanent());
        assert_eq!(e.code(), "RETENTION_EXHAUSTED");
    }

    #[test]
    fn source_is_kept() {
        use std::error::Error as _;
        let e = Error::unavailable("aws", Cause("connection refused".into()));
        assert_eq!(
            e.source().map(ToString::to_string).as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }

    #[test]
    fn temporary_and_permanent_are_opposites() {
        let temporary = Error::unavailable("vault", "connection refused");
        assert!(temporary.is_temporary() && !temporary.is_permanent());
        let permanent = Error::InvalidKeyLength;
        assert!(permanent.is_permanent() && !permanent.is_temporary());
    }
}
