//! The [`Kms`] handle: encrypt, decrypt, rotate, metadata, health.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kms_cache::{CacheStats, CachingProvider};
use kms_circuit::{CircuitState, ResilientProvider};
use kms_core::format::{self, Envelope};
use kms_core::retention::LOW_RETENTION;
use kms_core::{
    Error, HealthStatus, IvLength, KeyId, KeyMetadata, KeyProvider, KeyVersion, LiveVersions,
    Result, crypto, resolve_key,
};

use kms_telemetry::AUDIT_TARGET;

use crate::config::KmsConfig;
use crate::lifecycle::{Lifecycle, Verdict};

/// Encrypts and decrypts with AES-256-GCM under keys from a provider.
///
/// The async API runs on Tokio and needs a runtime with its time and I/O
/// drivers enabled (`#[tokio::main]` and `Runtime::new()` have both); timeouts
/// and backoff use Tokio's timer. [`crate::blocking::Kms`] brings its own.
///
/// Cheap to clone; clones share the provider. Every ciphertext records the
/// key id, key version and key fingerprint, so data written under any
/// version, before or after rotations, decrypts for as long as the provider
/// keeps that version.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let kms = kms::Kms::builder()
///     .env_key("8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334")
///     .build()
///     .await?;
///
/// // Text form, for a database text column; AAD binds it to its row.
/// let stored = kms.encrypt_str("sk_live_51H...", b"users:42:api_token").await?;
/// assert!(stored.starts_with("kms:v1:"));
/// assert_eq!(kms.decrypt_str(&stored, b"users:42:api_token").await?, "sk_live_51H...");
///
/// // The same ciphertext under another row's AAD is refused.
/// assert!(kms.decrypt_str(&stored, b"users:43:api_token").await.is_err());
/// # Ok::<(), kms::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Kms {
    /// The top of the provider stack.
    provider: Arc<dyn KeyProvider>,
    /// The cache layer, when the facade built the stack (its hot slot is the
    /// encrypt fast path).
    cache: Option<Arc<CachingProvider>>,
    /// The resilience layer, when the facade built the stack.
    circuit: Option<Arc<ResilientProvider>>,
    key_id: KeyId,
    iv_length: IvLength,
    config: Arc<KmsConfig>,
    /// Minimum decryption versions (`KMS_MIN_DECRYPTION_VERSION`) and
    /// scheduled rotation (`KMS_ROTATION_PERIOD`, stopped when the last
    /// clone is dropped).
    lifecycle: Lifecycle,
    /// The last retention check of `key_id` for [`Kms::health`]: when, and
    /// its warning. Shared by clones of the same key id.
    retention_checked: Arc<Mutex<Option<RetentionCheck>>>,
}

/// The provider stack a [`Kms`] is made of.
pub(crate) struct Stack {
    /// The top of the stack: what the client calls.
    pub(crate) top: Arc<dyn KeyProvider>,
    /// The cache layer, when the facade built the stack.
    pub(crate) cache: Option<Arc<CachingProvider>>,
    /// The resilience layer, when the facade built the stack.
    pub(crate) circuit: Option<Arc<ResilientProvider>>,
}

impl Stack {
    /// The stack below the key cache (the whole stack without one).
    pub(crate) fn uncached(&self) -> Arc<dyn KeyProvider> {
        match &self.cache {
            Some(cache) => cache.inner().clone(),
            None => self.top.clone(),
        }
    }
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kms")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("iv_length", &self.iv_length)
            .finish_non_exhaustive()
    }
}

impl Kms {
    pub(crate) fn from_parts(
        stack: Stack,
        key_id: KeyId,
        iv_length: IvLength,
        config: KmsConfig,
        lifecycle: Lifecycle,
    ) -> Self {
        Kms {
            provider: stack.top,
            cache: stack.cache,
            circuit: stack.circuit,
            key_id,
            iv_length,
            config: Arc::new(config),
            lifecycle,
            retention_checked: Arc::default(),
        }
    }

    /// The minimum decryption version of a key, if one is configured.
    #[must_use]
    pub fn min_decryption_version(&self, key_id: &KeyId) -> Option<&KeyVersion> {
        self.lifecycle
            .retired
            .as_ref()
            .and_then(|r| r.minimum(key_id))
    }

    /// A handle that encrypts under another key id of the same provider.
    /// Decryption always uses the key id recorded in the ciphertext.
    #[must_use]
    pub fn with_key_id(&self, key_id: KeyId) -> Self {
        let mut config = (*self.config).clone();
        config.key_id = key_id.clone();
        Kms {
            key_id,
            config: Arc::new(config),
            retention_checked: Arc::default(),
            ..self.clone()
        }
    }

    /// The key id new encryptions use.
    #[must_use]
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The provider stack.
    #[must_use]
    pub fn provider(&self) -> &Arc<dyn KeyProvider> {
        &self.provider
    }

    /// The active configuration, without secrets.
    #[must_use]
    pub fn config(&self) -> &KmsConfig {
        &self.config
    }

    /// The key cache's counters, when the facade built the stack.
    #[must_use]
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// Forgets every cached key (versions and current pointers).
    pub fn clear_cache(&self) {
        if let Some(c) = &self.cache {
            c.clear();
        }
    }

    /// The provider stack below the key cache (metrics and audit, then
    /// resilience, when the facade built the stack; else the provider
    /// itself): for tools that must see what the provider stores, such as
    /// the read-back of [`crate::migrate::MigrationPlan::apply`].
    #[must_use]
    pub fn uncached_provider(&self) -> Arc<dyn KeyProvider> {
        match &self.cache {
            Some(cache) => cache.inner().clone(),
            None => self.provider.clone(),
        }
    }

    /// The circuit breaker's state, when the facade built the stack.
    #[must_use]
    pub fn circuit_state(&self) -> Option<CircuitState> {
        self.circuit.as_ref().map(|c| c.circuit_state())
    }

    /// Encrypts bytes under the current key version; returns the binary format.
    /// `aad` (may be empty) is authenticated, not stored: decryption needs the same.
    ///
    /// # Errors
    /// Provider errors while fetching the key; [`Error::InputTooLarge`].
    pub async fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if tracing::enabled!(target: AUDIT_TARGET, tracing::Level::DEBUG) {
            Box::pin(self.encrypt_into(plaintext, aad, &mut out)).await?;
            return Ok(out);
        }
        // As `encrypt_unaudited`, inlined: the hot slot's path then runs
        // inside this one future, without polling nested ones. The other
        // paths are boxed, so that this future stays small (it is moved
        // and polled on every call).
        match self.seal_if_hot(plaintext, aad, &mut out) {
            Some(sealed) => sealed?,
            None => Box::pin(self.seal_with_provider(plaintext, aad, &mut out)).await?,
        }
        Ok(out)
    }

    /// Encrypts with the current key when it is fresh in the cache's hot
    /// slot; `None` when it is not (or there is no cache).
    fn seal_if_hot(&self, plaintext: &[u8], aad: &[u8], out: &mut Vec<u8>) -> Option<Result<()>> {
        self.cache.as_ref().and_then(|c| {
            c.with_current_if_fresh(&self.key_id, |key| {
                crypto::seal_into(key, self.iv_length, plaintext, aad, out)
            })
        })
    }

    /// As [`Kms::encrypt`], appending the ciphertext to `out`: the plaintext
    /// is copied once, into `out`, and encrypted there; a caller that reuses
    /// `out` allocates nothing per call.
    ///
    /// # Errors
    /// As [`Kms::encrypt`]; `out` is then left as it was.
    pub async fn encrypt_into(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        // Auditing off (the default): one filter check, no clock read.
        if !tracing::enabled!(target: AUDIT_TARGET, tracing::Level::DEBUG) {
            return self.encrypt_unaudited(plaintext, aad, out).await;
        }
        let started = Instant::now();
        let start = out.len();
        let result = self.encrypt_unaudited(plaintext, aad, out).await;
        let version = result.as_ref().ok().and_then(|()| {
            Envelope::parse(out.get(start..).unwrap_or_default())
                .and_then(|e| e.key_version())
                .ok()
        });
        audit_data_op(
            "encrypt",
            Some(self.key_id.as_str()),
            version,
            started,
            &result,
        );
        result
    }

    /// [`Kms::encrypt_into`] without the audit event.
    async fn encrypt_unaudited(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match self.seal_if_hot(plaintext, aad, out) {
            Some(sealed) => sealed,
            None => self.seal_with_provider(plaintext, aad, out).await,
        }
    }

    /// Encrypts with the current key from the provider stack (the hot slot
    /// missed).
    async fn seal_with_provider(
        &self,
        plaintext: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let key = self.provider.current_key(&self.key_id).await?;
        crypto::seal_into(&key, self.iv_length, plaintext, aad, out)
    }

    /// Decrypts the binary format, whichever key version wrote it.
    ///
    /// # Errors
    /// [`Error::MalformedCiphertext`], [`Error::UnsupportedFormatVersion`],
    /// [`Error::KeyNotFound`] (no version of the key has the recorded
    /// fingerprint), [`Error::Decryption`] (tampered data or wrong AAD),
    /// [`Error::KeyVersionRetired`] (written under a version older than the
    /// key's minimum decryption version), or provider errors.
    pub async fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        if tracing::enabled!(target: AUDIT_TARGET, tracing::Level::DEBUG) {
            Box::pin(self.decrypt_into(ciphertext, aad, &mut out)).await?;
            return Ok(out);
        }
        // As `decrypt_unaudited`, inlined and with the other paths boxed, as
        // in `encrypt`.
        match self.open_if_hot(ciphertext, aad, &mut out) {
            Some(opened) => opened?,
            None => Box::pin(self.open_resolved(ciphertext, aad, &mut out)).await?,
        }
        Ok(out)
    }

    /// Decrypts with the cache's hot-slot key when the ciphertext's header
    /// is that key's (compared whole, not parsed: see
    /// [`Envelope::parse_under`]) and its version is not retired; `None`
    /// when the stack must find the key.
    fn open_if_hot(&self, ciphertext: &[u8], aad: &[u8], out: &mut Vec<u8>) -> Option<Result<()>> {
        self.cache.as_ref().and_then(|c| {
            c.with_hot_key(|key| {
                let envelope = Envelope::parse_under(ciphertext, key)?;
                match self.lifecycle.retired.as_ref().map(|r| r.verdict(key)) {
                    None | Some(Verdict::Allowed) => {
                        Some(crypto::open_into(key, &envelope, aad, &mut *out))
                    }
                    Some(Verdict::Retired(e)) => Some(Err(e)),
                    Some(Verdict::Unknown) => None,
                }
            })
        })
    }

    /// As [`Kms::decrypt`], appending the plaintext to `out`.
    ///
    /// # Errors
    /// As [`Kms::decrypt`]; `out` is then left as it was (no byte of an
    /// unauthenticated plaintext stays in it).
    pub async fn decrypt_into(
        &self,
        ciphertext: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        // Auditing off (the default): one filter check, no clock read.
        if !tracing::enabled!(target: AUDIT_TARGET, tracing::Level::DEBUG) {
            return self.decrypt_unaudited(ciphertext, aad, out).await;
        }
        let started = Instant::now();
        let result = self.decrypt_unaudited(ciphertext, aad, out).await;
        let envelope = Envelope::parse(ciphertext).ok();
        audit_data_op(
            "decrypt",
            envelope.as_ref().map(Envelope::key_id_str),
            envelope.as_ref().and_then(|e| e.key_version().ok()),
            started,
            &result,
        );
        result
    }

    /// [`Kms::decrypt_into`] without the audit event.
    async fn decrypt_unaudited(
        &self,
        ciphertext: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        match self.open_if_hot(ciphertext, aad, out) {
            Some(opened) => opened,
            None => self.open_resolved(ciphertext, aad, out).await,
        }
    }

    /// Parses the ciphertext and decrypts it with the key the provider
    /// stack finds for it (the hot slot missed), refusing a retired version.
    async fn open_resolved(&self, ciphertext: &[u8], aad: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let envelope = &Envelope::parse(ciphertext)?;
        let key = match &self.cache {
            // The cache finds the key by fingerprint without a provider
            // call per forged ciphertext.
            Some(cache) => {
                cache
                    .resolve(
                        &envelope.key_id()?,
                        &envelope.key_version()?,
                        envelope.fingerprint(),
                    )
                    .await?
            }
            None => resolve_key(&*self.provider, envelope).await?,
        };
        if let Some(retired) = &self.lifecycle.retired {
            retired.check(&*self.provider, &key).await?;
        }
        crypto::open_into(&key, envelope, aad, out)
    }

    /// Encrypts bytes and returns the text form (`kms:v1:<base64url>`).
    ///
    /// # Errors
    /// As [`Kms::encrypt`].
    pub async fn encrypt_text(&self, plaintext: &[u8], aad: &[u8]) -> Result<String> {
        Ok(format::to_text(&self.encrypt(plaintext, aad).await?))
    }

    /// Decrypts the text form to bytes.
    ///
    /// # Errors
    /// As [`Kms::decrypt`].
    pub async fn decrypt_text(&self, ciphertext: &str, aad: &[u8]) -> Result<Vec<u8>> {
        self.decrypt(&format::from_text(ciphertext)?, aad).await
    }

    /// Encrypts a string to the text form.
    ///
    /// # Errors
    /// As [`Kms::encrypt`].
    pub async fn encrypt_str(&self, plaintext: &str, aad: &[u8]) -> Result<String> {
        self.encrypt_text(plaintext.as_bytes(), aad).await
    }

    /// Decrypts the text form to a string.
    ///
    /// # Errors
    /// As [`Kms::decrypt`], and [`Error::NotUtf8`].
    pub async fn decrypt_str(&self, ciphertext: &str, aad: &[u8]) -> Result<String> {
        String::from_utf8(self.decrypt_text(ciphertext, aad).await?).map_err(|_| Error::NotUtf8)
    }

    /// Creates a new version of the configured key; new encryptions use it,
    /// older ciphertexts stay decryptable. Returns the new version.
    ///
    /// No live version is lost: where the provider keeps a limited number
    /// of versions (Vault's `max_versions`, SSM's 100), it makes room
    /// (Vault: raises the secret's `max_versions` when the token may) or
    /// refuses before writing. Live are the versions at or after the key's
    /// minimum decryption version, all of them when it has none.
    ///
    /// # Errors
    /// [`Error::Unsupported`] for providers that cannot rotate (env),
    /// [`Error::RetentionExhausted`] when the new version would evict a
    /// live one, or provider errors.
    pub async fn rotate(&self) -> Result<KeyVersion> {
        let key = self
            .provider
            .rotate(&self.key_id, &self.live_versions())
            .await?;
        tracing::info!(
            target: "kms",
            key_id = %self.key_id,
            version = %key.version(),
            fingerprint = %key.fingerprint(),
            "encryption key rotated"
        );
        Ok(key.version().clone())
    }

    /// The versions of the configured key that may still decrypt data:
    /// those at or after its minimum decryption version, all without one.
    #[must_use]
    pub fn live_versions(&self) -> LiveVersions {
        LiveVersions::from_optional(self.min_decryption_version(&self.key_id).cloned())
    }

    /// Metadata of the configured key. `versionsRemaining` counts how many
    /// more versions the key can take before a live version would be
    /// evicted (see [`Kms::live_versions`]); `None` when the provider
    /// evicts nothing.
    ///
    /// # Errors
    /// Provider errors.
    pub async fn metadata(&self) -> Result<KeyMetadata> {
        let mut meta = self.provider.metadata(&self.key_id).await?;
        let live = self.live_versions();
        if let (Some(max), Some(_)) = (meta.max_versions, live.minimum()) {
            let versions = self.provider.versions(&self.key_id).await?;
            meta.versions_remaining = Some(live.remaining(max, &versions));
        }
        Ok(meta)
    }

    /// Health of the provider stack. A healthy provider whose key can take
    /// fewer than two more versions before a live one would be evicted
    /// (so the next rotation may be refused) carries a `warning` that says
    /// so and what to do.
    ///
    /// The retention figures come from [`Kms::metadata`] at most once per
    /// [`RETENTION_CHECK_INTERVAL`] (health checks are polled often), and
    /// only while the provider is healthy.
    pub async fn health(&self) -> HealthStatus {
        let mut status = self.provider.health().await;
        if status.healthy {
            status.warning = self.retention_warning().await;
        }
        status
    }

    /// The retention warning of the configured key, from the last check
    /// when it is recent enough.
    async fn retention_warning(&self) -> Option<String> {
        let last = self
            .retention_checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some((at, warning)) = last
            && at.elapsed() < RETENTION_CHECK_INTERVAL
        {
            return warning;
        }
        // A failed metadata read is the health check's business, not this one's.
        let meta = self.metadata().await.ok()?;
        let warning = retention_warning(&self.key_id, &meta);
        *self
            .retention_checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), warning.clone()));
        warning
    }
}

/// The DEBUG audit event of one encryption or decryption (target
/// `kms::audit`): never the data or the key, only where it came from.
fn audit_data_op<T>(
    op: &'static str,
    key_id: Option<&str>,
    version: Option<KeyVersion>,
    started: Instant,
    result: &Result<T>,
) {
    let error = result.as_ref().err().map(Error::code);
    tracing::debug!(
        target: AUDIT_TARGET,
        op,
        key_id,
        version = version.as_ref().map(tracing::field::display),
        outcome = if error.is_some() { "error" } else { "ok" },
        latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        error,
        "data operation"
    );
}

/// When the retention of a key was last checked, and its warning.
type RetentionCheck = (Instant, Option<String>);

/// How often [`Kms::health`] asks the provider for the key's retention figures.
pub const RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(60);

/// What an operator must know about the key's retention: fewer than
/// [`LOW_RETENTION`] versions left before a live one would be evicted, or
/// a limit the provider could not determine.
fn retention_warning(key_id: &KeyId, meta: &KeyMetadata) -> Option<String> {
    if let Some(note) = &meta.retention_note {
        return Some(format!("key {key_id}: {note}"));
    }
    let remaining = meta.versions_remaining?;
    (remaining < LOW_RETENTION).then(|| {
        format!(
            "key {key_id} can take {remaining} more version(s) before the {} provider would delete a version that may still decrypt data (it keeps {} versions): rewrap old data with `kms rewrap` and set KMS_MIN_DECRYPTION_VERSION, or raise max_versions",
            meta.provider,
            meta.max_versions.unwrap_or_default(),
        )
    })
}
