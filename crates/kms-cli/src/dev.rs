//! Development mode (`--dev`): the local keyring provider, with its keyring
//! in `.kms-dev/keyring.json`, so that keys rotate and data encrypted in one
//! run decrypts in the next.
//!
//! A `.kms-dev/key` left by earlier versions of `--dev` (one key, 64 hex
//! characters) becomes version 1 of the keyring the first time, so nothing
//! encrypted under it is lost; the file is left in place, and read only
//! while the keyring has no version of the key id asked for (earlier
//! versions served that key under whatever `KMS_KEY_ID` was set, so a key
//! id new to the keyring takes it over too).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kms::file::FileProvider;
use kms::file::private::{self, Read};
use kms::{Error, KeyId, KeyMaterial, KmsBuilder};

/// Where `--dev` keeps its keyring, relative to the working directory.
pub(crate) const DEFAULT_DIR: &str = ".kms-dev";

/// The keyring's file name in the development directory.
const KEYRING: &str = "keyring.json";

/// The single key file of earlier versions of `--dev`.
const LEGACY_KEY: &str = "key";

/// Largest legacy key file read, in bytes: 64 hex characters and some white space.
const MAX_KEY_FILE: usize = 256;

/// How the development keyring came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// It was there, with the key.
    Reused,
    /// This run created it with a new random key.
    Created,
    /// This run created it from the legacy `key` file (version 1).
    TookOver,
}

/// The development keyring and the key id it serves.
pub(crate) struct DevKeyring {
    path: PathBuf,
    origin: Origin,
}

fn refuse(message: String) -> Error {
    Error::config("--dev-dir", message)
}

/// The key of a legacy `key` file, if there is one.
fn legacy_key(dir: &Path) -> Result<Option<KeyMaterial>, Error> {
    let path = dir.join(LEGACY_KEY);
    let read = private::read(&path, MAX_KEY_FILE, "development key");
    let bytes = match read.map_err(|r| refuse(r.message))? {
        Read::Missing => return Ok(None),
        Read::Bytes(bytes) => bytes,
    };
    let bad = || {
        refuse(format!(
            "the development key file {} does not hold a key of 64 hex characters \
             (Invalid key length: expected 32 bytes)",
            path.display()
        ))
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    // Validates the length and hex without echoing the content.
    KeyMaterial::from_hex(text).map(Some).map_err(|_| bad())
}

impl DevKeyring {
    /// Opens the keyring in `dir` (created 0700 when missing), making sure
    /// it holds a version of `key_id`: the legacy key file's key when there
    /// is one, else a new random key.
    pub(crate) async fn load_or_create(dir: &Path, key_id: &KeyId) -> Result<Self, Error> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| {
                refuse(format!(
                    "cannot create the development directory {}: {e}",
                    dir.display()
                ))
            })?;
        private::check_dir(dir, "development").map_err(|r| refuse(r.message))?;
        let provider = FileProvider::builder().path(dir.join(KEYRING)).build()?;
        // The legacy file is read only when the keyring has no version of
        // the key yet (under the keyring's lock): once taken over, it
        // no longer matters.
        let took_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&took_over);
        let legacy_dir = dir.to_path_buf();
        let created = provider
            .import_if_empty(key_id, move || {
                Ok(match legacy_key(&legacy_dir)? {
                    Some(key) => {
                        seen.store(true, std::sync::atomic::Ordering::Relaxed);
                        key
                    }
                    None => KeyMaterial::generate(),
                })
            })
            .await?;
        let took_over = took_over.load(std::sync::atomic::Ordering::Relaxed);
        let origin = match (created, took_over) {
            (None, _) => Origin::Reused,
            (Some(_), true) => Origin::TookOver,
            (Some(_), false) => Origin::Created,
        };
        Ok(DevKeyring {
            path: provider.path().to_path_buf(),
            origin,
        })
    }

    /// The keyring file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How this run found the keyring.
    pub(crate) fn origin(&self) -> Origin {
        self.origin
    }

    /// The process environment with `KMS_PROVIDER=file` and the keyring as
    /// `KMS_KEYRING_FILE`.
    pub(crate) fn lookup(&self) -> kms_admin::Lookup {
        let path = Arc::new(self.path.display().to_string());
        Arc::new(move |name: &str| match name {
            "KMS_PROVIDER" => Some(kms::file::PROVIDER.to_owned()),
            kms::file::KEYRING_FILE => Some(path.as_str().to_owned()),
            _ => std::env::var(name).ok(),
        })
    }

    /// A builder for the development setup (other variables from the environment).
    pub(crate) fn builder(&self) -> Result<KmsBuilder, Error> {
        KmsBuilder::from_lookup(&*self.lookup())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use kms::{KeyProvider as _, KeyVersion, LiveVersions};

    use super::*;

    const KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

    /// A 0700 directory, with a 0600 legacy `key` file holding [`KEY`] when
    /// `legacy`.
    fn dev_dir(legacy: bool) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        if legacy {
            let path = dir.join(LEGACY_KEY);
            std::fs::write(&path, format!("{KEY}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        (tmp, dir)
    }

    async fn provider(dev: &DevKeyring) -> FileProvider {
        FileProvider::builder().path(dev.path()).build().unwrap()
    }

    #[tokio::test]
    async fn a_legacy_key_becomes_version_1_and_a_rotation_keeps_it() {
        let (_tmp, dir) = dev_dir(true);
        let dev = DevKeyring::load_or_create(&dir, &KeyId::default())
            .await
            .unwrap();
        assert_eq!(dev.origin(), Origin::TookOver);
        assert_eq!(dev.path(), dir.join(KEYRING));
        let p = provider(&dev).await;
        let v1 = p.current_key(&KeyId::default()).await.unwrap();
        assert_eq!(v1.version().as_str(), "1");
        assert_eq!(v1.material().to_hex().as_str(), KEY);
        p.rotate(&KeyId::default(), &LiveVersions::all())
            .await
            .unwrap();
        // The next run reuses the keyring, and the legacy file stays as it
        // was; once taken over it is not read again (a later chmod does not
        // stop --dev).
        std::fs::set_permissions(dir.join(LEGACY_KEY), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let again = DevKeyring::load_or_create(&dir, &KeyId::default())
            .await
            .unwrap();
        assert_eq!(again.origin(), Origin::Reused);
        let old = p
            .key_version(&KeyId::default(), &KeyVersion::from(1))
            .await
            .unwrap();
        assert_eq!(old.material().to_hex().as_str(), KEY);
        assert_eq!(p.versions(&KeyId::default()).await.unwrap().len(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.join(LEGACY_KEY)).unwrap(),
            format!("{KEY}\n")
        );
    }

    #[tokio::test]
    async fn a_new_directory_gets_a_private_keyring_with_a_random_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join(DEFAULT_DIR);
        let dev = DevKeyring::load_or_create(&dir, &KeyId::default())
            .await
            .unwrap();
        assert_eq!(dev.origin(), Origin::Created);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dev.path()), 0o600);
        assert_eq!(mode(&dir), 0o700);
        // Another key id in the same keyring gets its own version 1.
        let other = KeyId::new("other").unwrap();
        let dev = DevKeyring::load_or_create(&dir, &other).await.unwrap();
        assert_eq!(dev.origin(), Origin::Created);
        let p = provider(&dev).await;
        assert_eq!(p.versions(&other).await.unwrap().len(), 1);
        assert_eq!(p.versions(&KeyId::default()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_legacy_key_file_that_is_not_private_or_not_a_key_is_refused_and_nothing_is_made() {
        for (content, mode, says) in [
            (format!("{KEY}\n"), 0o644, "chmod 600"),
            (KEY[..63].to_owned(), 0o600, "64 hex characters"),
            ("not a key at all".to_owned(), 0o600, "64 hex characters"),
            ("0".repeat(1000), 0o600, "larger than 256 bytes"),
        ] {
            let (_tmp, dir) = dev_dir(false);
            let path = dir.join(LEGACY_KEY);
            std::fs::write(&path, &content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let Err(e) = DevKeyring::load_or_create(&dir, &KeyId::default()).await else {
                panic!("accepted {content:?} with mode {mode:o}")
            };
            let text = format!("{e} {e:?}");
            assert!(text.contains(says), "{text}");
            assert!(!text.contains(&KEY[..16]), "{text}");
            assert!(!dir.join(KEYRING).exists(), "a keyring was made");
        }
    }

    #[tokio::test]
    async fn a_directory_writable_by_others_is_refused() {
        let (_tmp, dir) = dev_dir(true);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let Err(e) = DevKeyring::load_or_create(&dir, &KeyId::default()).await else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert!(!dir.join(KEYRING).exists());
    }
}
