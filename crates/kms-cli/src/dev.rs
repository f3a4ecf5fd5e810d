//! Development mode (`--dev`): the env provider with a key kept in a local file.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kms::{Error, KeyMaterial, KmsBuilder};
use zeroize::Zeroizing;

/// Where `--dev` keeps its key, relative to the working directory.
pub(crate) const DEFAULT_DIR: &str = ".kms-dev";

/// The development key: 64 hex characters in `<dir>/key`, mode 0600.
pub(crate) struct DevKey {
    path: PathBuf,
    hex: Arc<Zeroizing<String>>,
    created: bool,
}

fn file_error(path: &Path, what: &str, e: &std::io::Error) -> Error {
    Error::config(
        "--dev-dir",
        format!(
            "cannot {what} the development key file {}: {e}",
            path.display()
        ),
    )
}

impl DevKey {
    /// Reads the key file, or creates it (directory 0700, file 0600) with a
    /// new random key. An existing file readable by others is refused.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("key");
        match std::fs::metadata(&path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(Error::config(
                        "--dev-dir",
                        format!(
                            "the development key file {} has mode {mode:04o}, readable by others; \
                             run `chmod 600 {}`",
                            path.display(),
                            path.display()
                        ),
                    ));
                }
                let text = Zeroizing::new(
                    std::fs::read_to_string(&path).map_err(|e| file_error(&path, "read", &e))?,
                );
                // Validates the length and hex without echoing the content.
                let key = KeyMaterial::from_hex(text.trim())?;
                Ok(DevKey {
                    path,
                    hex: Arc::new(key.to_hex()),
                    created: false,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| file_error(&path, "create the directory of", &e))?;
                let hex = KeyMaterial::generate().to_hex();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| file_error(&path, "create", &e))?;
                file.write_all(format!("{}\n", hex.as_str()).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| file_error(&path, "write", &e))?;
                Ok(DevKey {
                    path,
                    hex: Arc::new(hex),
                    created: true,
                })
            }
            Err(e) => Err(file_error(&path, "read", &e)),
        }
    }

    /// The key file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this run created the key.
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    /// The process environment with `KMS_PROVIDER=env` and the key as
    /// `ENCRYPTION_KEY`.
    pub(crate) fn lookup(&self) -> kms_admin::Lookup {
        let hex = Arc::clone(&self.hex);
        Arc::new(move |name: &str| match name {
            "KMS_PROVIDER" => Some("env".to_owned()),
            "ENCRYPTION_KEY" => Some(hex.as_str().to_owned()),
            // The file's key is the only one: a previous key from the
            // environment would belong to another setup.
            "ENCRYPTION_KEY_PREVIOUS" => None,
            _ => std::env::var(name).ok(),
        })
    }

    /// A builder for the development setup (other variables from the environment).
    pub(crate) fn builder(&self) -> Result<KmsBuilder, Error> {
        KmsBuilder::from_lookup(&*self.lookup())
    }
}
