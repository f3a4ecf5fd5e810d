//! The one error type of the workspace.

use std::fmt;

use crate::key::{KeyId, KeyVersion};

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
/// Each variant states how it bears on trying again; [`Error::retry`] gives
/// it as a [`Retry`], and [`Error::is_temporary`] says whether an operation is
/// worth retrying at all.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The provider could not be reached, timed out, throttled us, or a
    /// circuit breaker is open. [`Retry::AfterBackoff`].
    Unavailable {
        /// Name of the provider (`env`, `aws`, `gcp`, `vault`, ...).
        provider: &'static str,
        /// What happened underneath, if known.
        source: Option<SharedError>,
    },

    /// The key, or the requested version of it, does not exist. [`Retry::Never`].
    KeyNotFound {
        /// The key id that was asked for.
        key_id: KeyId,
        /// The version that was asked for, when a specific one was.
        version: Option<KeyVersion>,
    },

    /// The provider refused access (bad credentials, missing permission,
    /// disabled key). [`Retry::Never`].
    AccessDenied {
        /// Name of the provider.
        provider: &'static str,
        /// What the provider said, if anything.
        source: Option<SharedError>,
    },

    /// Key material was not exactly 32 bytes (64 hex characters). Permanent.
    InvalidKeyLength,

    /// The ciphertext, its header or the associated data is not authentic:
    /// it was modified, the AAD differs, or the key is wrong. Permanent.
    Decryption,

    /// The input is not a ciphertext of this library's format. Permanent.
    MalformedCiphertext {
        /// Which part of the format is wrong.
        reason: &'static str,
    },

    /// The ciphertext uses a format version this build does not know. Permanent.
    UnsupportedFormatVersion {
        /// The version byte found.
        version: u8,
    },

    /// The plaintext or associated data is larger than AES-GCM allows
    /// (2^36 - 32 bytes). Permanent.
    InputTooLarge,

    /// Decrypted data was asked for as text but is not UTF-8. Permanent.
    NotUtf8,

    /// A configuration value is missing or invalid. Permanent.
    Config {
        /// The environment variable or builder setting at fault.
        variable: String,
        /// What is wrong with it (never the value itself when it is secret).
        message: String,
    },

    /// The provider cannot do this operation (for example rotating env keys).
    /// The message says what to do instead. Permanent.
    Unsupported {
        /// Name of the provider.
        provider: &'static str,
        /// What to do instead.
        message: String,
    },

    /// Another writer changed the key at the same time (a rotation lost a
    /// check-and-set race). [`Retry::Immediately`]: reading the key again and
    /// retrying is safe, and the provider is healthy.
    Conflict {
        /// The key id.
        key_id: KeyId,
    },

    /// The ciphertext was written under a key version older than the key's
    /// minimum decryption version (`KMS_MIN_DECRYPTION_VERSION`): that
    /// version is retired. Rewrap the data (`kms rewrap`) under the current
    /// version. Permanent.
    KeyVersionRetired {
        /// The key id.
        key_id: KeyId,
        /// The version that wrote the ciphertext.
        version: KeyVersion,
        /// The configured minimum decryption version.
        minimum: KeyVersion,
    },

    /// Writing a new version of the key (a rotation, an import) would make
    /// the provider delete a version that may still decrypt data: the
    /// provider keeps only `max_versions` versions (Vault's `max_versions`,
    /// SSM's 100) and the oldest live one would be evicted. Nothing was
    /// written. Permanent until an operator acts: rewrap the old data
    /// (`kms rewrap`), then set the minimum decryption version
    /// (`KMS_MIN_DECRYPTION_VERSION`) past the old versions, or raise the
    /// provider's limit.
    RetentionExhausted {
        /// Name of the provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
        /// The oldest version that may still decrypt data, when the
        /// provider could list it (`?` in the message otherwise).
        oldest_live: Option<KeyVersion>,
        /// How many versions the provider keeps, when known.
        max_versions: Option<u64>,
        /// Why the limit could not be raised, or what else to do.
        detail: String,
    },

    /// The provider answered something this library does not understand, or
    /// a local step around it failed (reading a file, writing output).
    /// [`Retry::Never`].
    Provider {
        /// Name of the provider (or of the tool: `cli`, `rewrap`).
        provider: &'static str,
        /// What was unexpected (never key material), with its own sources.
        source: SharedError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable { .. } => f.write_str("KMS service unavailable"),
            Error::KeyNotFound { key_id, .. } => write!(f, "Encryption key not found: {key_id}"),
            Error::AccessDenied { .. } => f.write_str("Access denied to encryption key"),
            Error::InvalidKeyLength => f.write_str("Invalid key length: expected 32 bytes"),
            Error::Decryption => f.write_str(
                "decryption failed: the ciphertext or its associated data is not authentic",
            ),
            Error::MalformedCiphertext { reason } => write!(f, "malformed ciphertext: {reason}"),
            Error::UnsupportedFormatVersion { version } => {
                write!(f, "unsupported ciphertext format version {version}")
            }
            Error::InputTooLarge => f.write_str("input too large for AES-256-GCM"),
            Error::NotUtf8 => f.write_str("decrypted plaintext is not valid UTF-8"),
            Error::Config { variable, message } => {
                write!(f, "invalid configuration: {variable}: {message}")
            }
            Error::Unsupported { provider, message } => write!(
                f,
                "the {provider} provider does not support this operation: {message}"
            ),
            Error::Conflict { key_id } => write!(
                f,
                "conflicting concurrent update of encryption key: {key_id}"
            ),
            Error::KeyVersionRetired {
                key_id,
                version,
                minimum,
            } => write!(
                f,
                "key version {version} of key {key_id} is retired (minimum decryption version is {minimum}): rewrap the data"
            ),
            Error::RetentionExhausted {
                provider,
                key_id,
                oldest_live,
                detail,
                ..
            } => {
                let oldest = oldest_live.as_ref().map_or("?", KeyVersion::as_str);
                write!(
                    f,
                    "a new version of encryption key {key_id} would make the {provider} provider delete version {oldest}, which may still decrypt data ({detail}): nothing was written; rewrap the old data with `kms rewrap`, then set KMS_MIN_DECRYPTION_VERSION to a newer version, or raise max_versions"
                )
            }
            Error::Provider { provider, source } => write!(
                f,
                "unexpected response from the {provider} provider: {source}"
            ),
        }
    }
}

/// The source is the error the variant was made from itself (not the shared
/// handle around it), so callers can downcast it to the SDK's or the I/O
/// error type.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source: &SharedError = match self {
            Error::Unavailable {
                source: Some(source),
                ..
            }
            | Error::AccessDenied {
                source: Some(source),
                ..
            }
            | Error::Provider { source, .. } => source,
            _ => return None,
        };
        Some(&**source)
    }
}

/// How an [`Error`] bears on trying the operation again: a property of each
/// variant, documented on it, so that retry loops and circuit breakers ask
/// this instead of matching variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Retry {
    /// Trying again cannot help: the request, the key, the credentials or the
    /// data must change first.
    Never,
    /// The service is unhealthy (unreachable, timing out, throttling, its
    /// circuit open): retry after a back-off. Counts against the provider's
    /// health.
    AfterBackoff,
    /// Another writer won a race: read again and retry at once. The service
    /// is healthy; this does not count against it.
    Immediately,
}

impl Error {
    /// How this error bears on trying again.
    #[must_use]
    pub fn retry(&self) -> Retry {
        match self {
            Error::Unavailable { .. } => Retry::AfterBackoff,
            Error::Conflict { .. } => Retry::Immediately,
            Error::KeyNotFound { .. }
            | Error::AccessDenied { .. }
            | Error::InvalidKeyLength
            | Error::Decryption
            | Error::MalformedCiphertext { .. }
            | Error::UnsupportedFormatVersion { .. }
            | Error::InputTooLarge
            | Error::NotUtf8
            | Error::Config { .. }
            | Error::Unsupported { .. }
            | Error::KeyVersionRetired { .. }
            | Error::RetentionExhausted { .. }
            | Error::Provider { .. } => Retry::Never,
        }
    }

    /// Whether the operation may succeed if tried again:
    /// [`Error::retry`] is not [`Retry::Never`]. Temporary:
    /// [`Error::Unavailable`] (network failures, timeouts, throttling, open
    /// circuit) and [`Error::Conflict`]. Everything else is permanent and
    /// must not be retried.
    #[must_use]
    pub fn is_temporary(&self) -> bool {
        self.retry() != Retry::Never
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
    #[must_use]
    pub fn key_not_found(key_id: &KeyId, version: Option<&KeyVersion>) -> Self {
        Error::KeyNotFound {
            key_id: key_id.clone(),
            version: version.cloned(),
        }
    }

    /// [`Error::Conflict`] on a key id.
    #[must_use]
    pub fn conflict(key_id: &KeyId) -> Self {
        Error::Conflict {
            key_id: key_id.clone(),
        }
    }

    /// [`Error::Provider`]: an answer of `provider` this library does not
    /// understand, or a local step that failed, with its cause (an error, or
    /// a message: never key material).
    pub fn provider(provider: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Provider {
            provider,
            source: SharedError::from(source.into()),
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
            Error::key_not_found(&KeyId::default(), None).to_string(),
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
        assert!(Error::unavailable("aws", "timed out").is_temporary());
        assert!(Error::conflict(&KeyId::default()).is_temporary());
        for e in [
            Error::key_not_found(&KeyId::default(), Some(&KeyVersion::from(3))),
            Error::access_denied("vault", "403"),
            Error::InvalidKeyLength,
            Error::Decryption,
            Error::malformed("x"),
            Error::config("KMS_TIMEOUT", "not a number"),
            Error::KeyVersionRetired {
                key_id: KeyId::default(),
                version: KeyVersion::from(3),
                minimum: KeyVersion::from(5),
            },
        ] {
            assert!(e.is_permanent(), "{e:?}");
        }
    }

    #[test]
    fn retired_version_says_what_to_do() {
        let e = Error::KeyVersionRetired {
            key_id: KeyId::default(),
            version: KeyVersion::from(3),
            minimum: KeyVersion::from(5),
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
            key_id: KeyId::default(),
            oldest_live: Some(KeyVersion::from(1)),
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
        let e = Error::unavailable("aws", "connection refused");
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
    fn retry_says_how_to_try_again() {
        assert_eq!(
            Error::unavailable("vault", "connection refused").retry(),
            Retry::AfterBackoff
        );
        assert_eq!(
            Error::conflict(&KeyId::default()).retry(),
            Retry::Immediately
        );
        assert_eq!(Error::provider("vault", "odd answer").retry(), Retry::Never);
        assert_eq!(Error::Decryption.retry(), Retry::Never);
    }

    #[test]
    fn a_provider_error_keeps_its_source() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::provider("cli", io);
        assert_eq!(
            e.to_string(),
            "unexpected response from the cli provider: no such file"
        );
        let source = e.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("no such file"));
        assert!(
            e.source()
                .and_then(|s| s.downcast_ref::<std::io::Error>())
                .is_some()
        );
    }

    #[test]
    fn temporary_and_permanent_are_opposites() {
        let temporary = Error::unavailable("vault", "connection refused");
        assert!(temporary.is_temporary() && !temporary.is_permanent());
        let permanent = Error::InvalidKeyLength;
        assert!(permanent.is_permanent() && !permanent.is_temporary());
    }
}
