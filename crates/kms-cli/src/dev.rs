//! Development mode (`--dev`): the env provider with a key kept in a local file.

use std::io::{Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
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

fn refuse(message: String) -> Error {
    Error::config("--dev-dir", message)
}

/// Largest key file read, in bytes: 64 hex characters and some white space.
const MAX_KEY_FILE: usize = 256;

/// The effective uid of this process, without `libc` (`unsafe_code` is
/// forbidden): the owner of `/proc/self` on Linux, else of a new temporary
/// file.
fn current_uid() -> std::io::Result<u32> {
    match std::fs::metadata("/proc/self") {
        Ok(meta) => Ok(meta.uid()),
        Err(_) => Ok(tempfile::tempfile()?.metadata()?.uid()),
    }
}

/// The directory holding the key must not let anyone but its owner replace
/// the key: not writable by group or others.
fn check_dir(dir: &Path) -> Result<(), Error> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        refuse(format!(
            "cannot read the development key directory {}: {e}",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(refuse(format!(
            "the development key directory {} is not a directory",
            dir.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(refuse(format!(
            "the development key directory {} has mode {mode:04o}, writable by group or others \
             (who could replace the key); run `chmod 700 {}`",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The key file must be a regular file (not a symbolic link), owned by the
/// current user, with no permission for group or others (0600, or 0400).
fn check_file(path: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<(), Error> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(refuse(format!(
            "the development key file {} is a symbolic link; it must be a regular file \
             (point --dev-dir at the directory that holds the key instead)",
            path.display()
        )));
    }
    if !kind.is_file() {
        return Err(refuse(format!(
            "the development key file {} is not a regular file",
            path.display()
        )));
    }
    if meta.uid() != uid {
        return Err(refuse(format!(
            "the development key file {} is owned by uid {}, not by the current user (uid {uid}); \
             run `chown {uid} {}` if it is yours",
            path.display(),
            meta.uid(),
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o7077 != 0 {
        return Err(refuse(format!(
            "the development key file {} has mode {mode:04o}, open to group or others \
             (it must be 0600); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Reads the key file at `path`, whose `lstat` is `meta`: checks it, opens
/// it, checks that the open file is the one checked (same device and inode,
/// so a swap for a link in between is caught) and reads at most
/// [`MAX_KEY_FILE`] bytes into a buffer zeroized on drop.
fn read_key(path: &Path, meta: &std::fs::Metadata) -> Result<KeyMaterial, Error> {
    let uid = current_uid().map_err(|e| {
        refuse(format!(
            "cannot tell which user runs this process, to check the owner of the \
             development key file {}: {e}",
            path.display()
        ))
    })?;
    check_file(path, meta, uid)?;
    let mut file = std::fs::File::open(path).map_err(|e| file_error(path, "open", &e))?;
    let opened = file.metadata().map_err(|e| file_error(path, "read", &e))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(refuse(format!(
            "the development key file {} was replaced while it was being opened",
            path.display()
        )));
    }
    check_file(path, &opened, uid)?;

    let mut buf = Zeroizing::new([0u8; MAX_KEY_FILE + 1]);
    let mut len = 0;
    while let Some(rest) = buf.get_mut(len..).filter(|rest| !rest.is_empty()) {
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(file_error(path, "read", &e)),
        }
    }
    let bad = || {
        refuse(format!(
            "the development key file {} does not hold a key of 64 hex characters \
             (Invalid key length: expected 32 bytes)",
            path.display()
        ))
    };
    if len > MAX_KEY_FILE {
        return Err(bad());
    }
    let text = buf
        .get(..len)
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .ok_or_else(bad)?;
    // Validates the length and hex without echoing the content.
    KeyMaterial::from_hex(text).map_err(|_| bad())
}

impl DevKey {
    /// Reads the key file, or creates it (directory 0700, file 0600) with a
    /// new random key. The file is read only if it is a regular file (not a
    /// symbolic link) owned by the current user, with mode 0600 (or
    /// stricter), in a directory not writable by group or others; a key is
    /// created only in such a directory.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Self, Error> {
        let path = dir.join("key");
        match std::fs::symlink_metadata(&path) {
            Ok(meta) => {
                check_dir(dir)?;
                let key = read_key(&path, &meta)?;
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
                check_dir(dir)?;
                let hex = KeyMaterial::generate().to_hex();
                // `create_new` (O_EXCL) never follows a link planted meanwhile.
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| file_error(&path, "create", &e))?;
                file.write_all(hex.as_bytes())
                    .and_then(|()| file.write_all(b"\n"))
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

    /// A 0700 directory holding a 0600 `key` file with [`KEY`].
    fn key_dir() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (tmp, dir)
    }

    /// The error of loading `dir`, checked to name `named` and never the key.
    fn refused(dir: &Path, named: &Path, what: &str) -> String {
        let err = match DevKey::load_or_create(dir) {
            Ok(_) => panic!("{} was accepted ({what})", dir.display()),
            Err(err) => err,
        };
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&named.display().to_string()), "{text}");
        assert!(text.contains(what), "{text}");
        assert!(!text.contains(&KEY[..16]), "{text}");
        assert!(!format!("{err:?}").contains(&KEY[..16]), "{err:?}");
        text
    }

    #[test]
    fn a_private_regular_file_in_a_private_directory_is_read() {
        let (_tmp, dir) = key_dir();
        let key = DevKey::load_or_create(&dir).unwrap();
        assert!(!key.created());
        assert_eq!(key.path(), dir.join("key"));
        assert_eq!(key.hex.as_str(), KEY);
        // A read-only key file (0400) is stricter than 0600: accepted too.
        std::fs::set_permissions(dir.join("key"), std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(DevKey::load_or_create(&dir).unwrap().hex.as_str(), KEY);
    }

    #[test]
    fn a_new_key_is_created_private_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join(DEFAULT_DIR);
        let created = DevKey::load_or_create(&dir).unwrap();
        assert!(created.created());
        let meta = std::fs::metadata(created.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let again = DevKey::load_or_create(&dir).unwrap();
        assert!(!again.created());
        assert_eq!(again.hex.as_str(), created.hex.as_str());
    }

    #[test]
    fn a_symlinked_key_file_is_refused() {
        let (_tmp, dir) = key_dir();
        // The target is itself a fine key file, in a fine directory.
        let (_other, elsewhere) = key_dir();
        let link = dir.join("key");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("key"), &link).unwrap();
        refused(&dir, &link, "symbolic link");
        // A dangling link is refused the same way, not replaced.
        std::fs::remove_file(elsewhere.join("key")).unwrap();
        refused(&dir, &link, "symbolic link");
    }

    #[test]
    fn a_key_file_open_to_others_is_refused() {
        let (_tmp, dir) = key_dir();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(dir.join("key"), std::fs::Permissions::from_mode(mode))
                .unwrap();
            let text = refused(&dir, &dir.join("key"), "chmod 600");
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
        }
    }

    #[test]
    fn a_directory_writable_by_others_is_refused() {
        for mode in [0o777, 0o770, 0o730, 0o703, 0o1777] {
            let (_tmp, dir) = key_dir();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let text = refused(&dir, &dir, "writable by group or others");
            assert!(text.contains(&format!("{mode:04o}")), "{text}");
            // Nor is a key created there.
            std::fs::remove_file(dir.join("key")).unwrap();
            refused(&dir, &dir, "writable by group or others");
            assert!(!dir.join("key").exists());
        }
    }

    #[test]
    fn a_key_file_of_another_user_is_refused() {
        let me = current_uid().unwrap();
        let (_tmp, dir) = key_dir();
        let path = dir.join("key");
        if me == 0 {
            // The whole path, with a file really given to another user.
            std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            let text = refused(&dir, &path, "owned by uid 65534");
            assert!(text.contains("current user (uid 0)"), "{text}");
        } else {
            // Not root: the check itself, as if we were another user.
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let text = check_file(&path, &meta, me + 1).unwrap_err().to_string();
            assert!(text.contains(&format!("owned by uid {me}")), "{text}");
        }
    }

    #[test]
    fn other_kinds_of_file_and_bad_content_are_refused() {
        let (_tmp, dir) = key_dir();
        let path = dir.join("key");
        std::fs::remove_file(&path).unwrap();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap();
        refused(&dir, &path, "not a regular file");
        std::fs::remove_dir(&path).unwrap();

        for content in [&KEY[..63], "not a key at all", &"0".repeat(1000)] {
            std::fs::write(&path, content).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            refused(&dir, &path, "does not hold a key of 64 hex characters");
        }
    }

    #[test]
    fn the_current_uid_is_the_owner_of_new_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("probe");
        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            current_uid().unwrap(),
            std::fs::metadata(&path).unwrap().uid()
        );
    }
}
