#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use kms_core::settings::{self, Setting};
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider, KeyVersion,
    LiveVersions, Result, VersionInfo,
};

mod keyring;
pub mod private;

pub use keyring::{FORMAT, FORMAT_VERSION};
use keyring::{Keyring, WriteLock};

/// The provider's name (`KMS_PROVIDER=file`).
pub const PROVIDER: &str = "file";

/// The variable naming the keyring file.
pub const KEYRING_FILE: &str = "KMS_KEYRING_FILE";

/// Every setting of this provider, declared once: the variables
/// [`FileProviderBuilder::from_lookup`] reads. The keyring's path has no
/// field in the admin API's configuration document on purpose: whoever
/// holds the admin token must not make the server read or replace a file
/// of their choosing.
pub const SETTINGS: &[Setting] = &[Setting::new(KEYRING_FILE)];

/// Keys in a keyring file on the local disk (see the crate's README).
///
/// Every call reads the file as it is on disk, so versions that another
/// process added are seen at once (the facade's cache sits above); every
/// change is made under the file's lock from the file as it is then.
#[derive(Clone)]
pub struct FileProvider {
    path: Arc<Path>,
}

impl fmt::Debug for FileProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileProvider")
            .field("path", &self.path)
            .finish()
    }
}

/// Settings of a [`FileProvider`].
#[derive(Debug, Clone, Default)]
pub struct FileProviderBuilder {
    path: Option<PathBuf>,
}

impl FileProviderBuilder {
    /// Reads [`KEYRING_FILE`] through `lookup` (for example `std::env::var`).
    ///
    /// # Errors
    /// Never today; kept fallible like every provider's.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        Ok(FileProviderBuilder {
            path: settings::value(&lookup, KEYRING_FILE).map(PathBuf::from),
        })
    }

    /// The keyring file.
    #[must_use]
    pub fn path(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The provider. The file itself need not exist yet (the first rotation
    /// or import creates it); its directory must, private to its owner.
    ///
    /// # Errors
    /// [`Error::Config`] naming [`KEYRING_FILE`] when no path is given or its
    /// directory is missing or writable by group or others.
    pub fn build(self) -> Result<FileProvider> {
        let path = self.path.ok_or_else(|| {
            Error::config(
                KEYRING_FILE,
                "is required with KMS_PROVIDER=file: the path of the keyring file",
            )
        })?;
        private::check_dir(keyring::parent(&path), "keyring")
            .map_err(|r| Error::config(KEYRING_FILE, r.message))?;
        Ok(FileProvider {
            path: Arc::from(path),
        })
    }
}

impl FileProvider {
    /// A builder with nothing set.
    #[must_use]
    pub fn builder() -> FileProviderBuilder {
        FileProviderBuilder::default()
    }

    /// The keyring file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the keyring file exists.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.path.symlink_metadata().is_ok()
    }

    /// Stores `material()` as version 1 of `key_id` when the keyring has no
    /// version of it (creating the file when missing), under the file's
    /// lock: of several processes starting at once, one creates the key and
    /// the others find it. `None` when the key already had a version
    /// (`material` is then not called).
    ///
    /// # Errors
    /// As [`KeyProvider::import`], or `material`'s error.
    pub async fn import_if_empty(
        &self,
        key_id: &KeyId,
        material: impl FnOnce() -> Result<KeyMaterial> + Send + 'static,
    ) -> Result<Option<DataKey>> {
        let key_id = key_id.clone();
        self.change(move |ring| {
            if ring.current_version(&key_id).is_some() {
                return Ok(None);
            }
            Ok(Some(ring.push(&key_id, material()?)))
        })
        .await
    }

    /// Runs `f` on the keyring as it is on disk (an empty one when there is
    /// no file), off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Keyring) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = Arc::clone(&self.path);
        blocking(move || f(&Keyring::load(&path)?.unwrap_or_default())).await
    }

    /// Changes the keyring under its lock: `f` gets the keyring as it is on
    /// disk then, and the file is replaced only when `f` answers `Ok(Some)`.
    async fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Keyring) -> Result<Option<T>> + Send + 'static,
    ) -> Result<Option<T>> {
        let path = Arc::clone(&self.path);
        blocking(move || {
            let _lock = WriteLock::acquire(&path)?;
            let mut ring = Keyring::load(&path)?.unwrap_or_default();
            let Some(answer) = f(&mut ring)? else {
                return Ok(None);
            };
            ring.save(&path)?;
            Ok(Some(answer))
        })
        .await
    }
}

/// Runs file work on Tokio's blocking threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::provider(PROVIDER, format!("the keyring task failed: {e}")))?
}

#[async_trait]
impl KeyProvider for FileProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        let key_id = key_id.clone();
        self.read(move |ring| ring.current(&key_id)).await
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        let (key_id, version) = (key_id.clone(), version.clone());
        self.read(move |ring| ring.version(&key_id, &version)).await
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        let key_id = key_id.clone();
        self.read(move |ring| ring.versions(&key_id)).await
    }

    /// A new random version, under the file's lock. Creates the key when
    /// the keyring has none of this id. Every version is kept, so `live` is
    /// never at risk.
    async fn rotate(&self, key_id: &KeyId, _live: &LiveVersions) -> Result<DataKey> {
        let key_id = key_id.clone();
        self.change(move |ring| Ok(Some(ring.push(&key_id, KeyMaterial::generate()))))
            .await?
            .ok_or_else(|| Error::provider(PROVIDER, "the keyring change made no version"))
    }

    /// A real check-and-set: the current version is compared, and the new
    /// one written, under the file's lock.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        _live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let (key_id, expected) = (key_id.clone(), expected.clone());
        self.change(move |ring| {
            let current = ring
                .current_version(&key_id)
                .ok_or_else(|| Error::key_not_found(&key_id, None))?;
            Ok((current == expected).then(|| ring.push(&key_id, KeyMaterial::generate())))
        })
        .await
    }

    /// Stores `material` as the new current version, creating the key (and
    /// the keyring file) when missing.
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        _live: &LiveVersions,
    ) -> Result<DataKey> {
        let key_id = key_id.clone();
        self.change(move |ring| Ok(Some(ring.push(&key_id, material))))
            .await?
            .ok_or_else(|| Error::provider(PROVIDER, "the keyring change made no version"))
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        let versions = self.versions(key_id).await?;
        let mut m = KeyMetadata::new(key_id.clone(), PROVIDER);
        m.description = Some(format!(
            "AES-256 key in the keyring file {}",
            self.path.display()
        ));
        m.created_at = versions.first().and_then(|v| v.created_at);
        m.last_rotated = versions
            .last()
            .filter(|_| versions.len() > 1)
            .and_then(|v| v.created_at);
        m.current_version = versions.last().map(|v| v.version.clone());
        m.version_count = Some(versions.len() as u64);
        Ok(m)
    }

    /// Healthy when the keyring file can be read and is valid.
    async fn health(&self) -> HealthStatus {
        let path = Arc::clone(&self.path);
        HealthStatus::timed(PROVIDER, async move {
            let found = blocking(move || Keyring::load(&path).map(|r| r.is_some()))
                .await
                .map_err(|e| kms_core::provider_support::describe_chain(&e))?;
            if found {
                Ok(())
            } else {
                Err(format!(
                    "the keyring file {} does not exist (a rotation or an import creates it)",
                    self.path.display()
                ))
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests;
