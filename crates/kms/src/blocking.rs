//! A blocking API (the spec's "sync mode") for code without an async runtime.
//!
//! [`Kms`] owns a small Tokio runtime, so it works from a plain `fn main`.
//! It also works when called from inside another runtime's thread (it then
//! runs the call on a scoped helper thread instead of panicking), though
//! async code should use [`crate::Kms`] directly.
//!
//! ```
//! fn main() -> Result<(), kms::Error> {
//!     let kms = kms::blocking::Kms::build(
//!         kms::Kms::builder()
//!             .env_key("8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334"),
//!     )?;
//!     let stored = kms.encrypt_str("hunter2", b"")?;
//!     assert_eq!(kms.decrypt_str(&stored, b"")?, "hunter2");
//!     Ok(())
//! }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use kms_core::{Error, HealthStatus, KeyMetadata, KeyVersion, Result};
use tokio::runtime::{Handle, Runtime};

use crate::config::{KmsBuilder, KmsConfig};

/// The blocking twin of [`crate::Kms`]. Cheap to clone.
#[derive(Clone)]
pub struct Kms {
    inner: crate::Kms,
    runtime: Arc<OwnedRuntime>,
}

impl fmt::Debug for Kms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("blocking::Kms")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// A runtime that shuts down without blocking, so dropping the last handle
/// inside async code does not panic.
struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl OwnedRuntime {
    fn new() -> Result<Self> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kms-blocking")
            .enable_all()
            .build()
            .map(|rt| OwnedRuntime(Some(rt)))
            .map_err(|e| Error::config("runtime", format!("cannot start a Tokio runtime: {e}")))
    }

    fn block_on<T: Send>(&self, fut: impl Future<Output = Result<T>> + Send) -> Result<T> {
        let rt = self
            .0
            .as_ref()
            .ok_or_else(|| Error::config("runtime", "the runtime has shut down"))?;
        if Handle::try_current().is_err() {
            return rt.block_on(fut);
        }
        // Inside another runtime `block_on` would panic; a scoped thread has
        // no runtime context and may borrow the caller's data.
        std::thread::scope(|s| s.spawn(|| rt.block_on(fut)).join())
            .map_err(|_| Error::provider("blocking", "the operation panicked"))?
    }
}

impl Kms {
    /// Builds from the spec's environment variables.
    ///
    /// # Errors
    /// As [`crate::Kms::from_env`].
    pub fn from_env() -> Result<Self> {
        Self::build(KmsBuilder::from_env()?)
    }

    /// Builds from a configured builder.
    ///
    /// # Errors
    /// As [`KmsBuilder::build`].
    pub fn build(builder: KmsBuilder) -> Result<Self> {
        let runtime = Arc::new(OwnedRuntime::new()?);
        let inner = runtime.block_on(builder.build())?;
        Ok(Kms { inner, runtime })
    }

    /// The async handle behind this one (shares the provider and caches).
    #[must_use]
    pub fn as_async(&self) -> &crate::Kms {
        &self.inner
    }

    /// The active configuration, without secrets.
    #[must_use]
    pub fn config(&self) -> &KmsConfig {
        self.inner.config()
    }

    /// See [`crate::Kms::encrypt`].
    ///
    /// # Errors
    /// As the async method.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.runtime.block_on(self.inner.encrypt(plaintext, aad))
    }

    /// See [`crate::Kms::decrypt`].
    ///
    /// # Errors
    /// As the async method.
    pub fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        self.runtime.block_on(self.inner.decrypt(ciphertext, aad))
    }

    /// See [`crate::Kms::encrypt_text`].
    ///
    /// # Errors
    /// As the async method.
    pub fn encrypt_text(&self, plaintext: &[u8], aad: &[u8]) -> Result<String> {
        self.runtime
            .block_on(self.inner.encrypt_text(plaintext, aad))
    }

    /// See [`crate::Kms::decrypt_text`].
    ///
    /// # Errors
    /// As the async method.
    pub fn decrypt_text(&self, ciphertext: &str, aad: &[u8]) -> Result<Vec<u8>> {
        self.runtime
            .block_on(self.inner.decrypt_text(ciphertext, aad))
    }

    /// See [`crate::Kms::encrypt_str`].
    ///
    /// # Errors
    /// As the async method.
    pub fn encrypt_str(&self, plaintext: &str, aad: &[u8]) -> Result<String> {
        self.runtime
            .block_on(self.inner.encrypt_str(plaintext, aad))
    }

    /// See [`crate::Kms::decrypt_str`].
    ///
    /// # Errors
    /// As the async method.
    pub fn decrypt_str(&self, ciphertext: &str, aad: &[u8]) -> Result<String> {
        self.runtime
            .block_on(self.inner.decrypt_str(ciphertext, aad))
    }

    /// See [`crate::Kms::rotate`].
    ///
    /// # Errors
    /// As the async method.
    pub fn rotate(&self) -> Result<KeyVersion> {
        self.runtime.block_on(self.inner.rotate())
    }

    /// See [`crate::Kms::metadata`].
    ///
    /// # Errors
    /// As the async method.
    pub fn metadata(&self) -> Result<KeyMetadata> {
        self.runtime.block_on(self.inner.metadata())
    }

    /// See [`crate::Kms::health`].
    #[must_use]
    pub fn health(&self) -> HealthStatus {
        let inner = &self.inner;
        self.runtime
            .block_on(async { Ok(inner.health().await) })
            .unwrap_or_else(|e| HealthStatus::unhealthy(inner.provider().name(), 0, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334";

    #[test]
    fn works_without_a_runtime() {
        let kms = Kms::build(KmsBuilder::new().env_key(K)).unwrap();
        let ct = kms.encrypt(b"abc", b"x").unwrap();
        assert_eq!(kms.decrypt(&ct, b"x").unwrap(), b"abc");
        assert!(kms.health().healthy);
    }

    #[tokio::test]
    async fn works_inside_a_runtime_and_drops_cleanly() {
        let kms = Kms::build(KmsBuilder::new().env_key(K)).unwrap();
        let s = kms.encrypt_str("abc", b"").unwrap();
        assert_eq!(kms.decrypt_str(&s, b"").unwrap(), "abc");
        drop(kms); // must not panic inside the runtime
    }
}
