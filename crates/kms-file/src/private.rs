//! Files only their owner may read or replace: the checks every file that
//! holds key material passes before it is read (the keyring here, and the
//! CLI's legacy development key file).
//!
//! A file is read only if it is a regular file (not a symbolic link), owned
//! by the user running this process, with no permission for group or others
//! (0600, or 0400), in a directory owned by that user (or root) that group
//! and others cannot write (who could otherwise replace or delete the
//! file). It is opened without following a link and without waiting on a
//! FIFO, and the open file is checked again, by device and inode, so that a
//! file swapped in between is caught.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use zeroize::Zeroizing;

/// Why a file or directory was refused, or could not be read: a message
/// naming the path and what to run to mend it, never the content. It reads
/// as its message (`Display`, and `Deref` to `str`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of failure it is.
    pub kind: RefusalKind,
    /// The message.
    pub message: String,
}

/// What kind of failure a [`Refusal`] is: what its caller should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusalKind {
    /// The file or its directory is not safe to use (owner, mode, a link,
    /// not a regular file, too large, missing directory): an operator must
    /// mend it.
    Unsafe,
    /// The operating system refused this process (`EACCES`, `EPERM`).
    Denied,
    /// Another I/O failure (`EIO`, `EMFILE`, ...): may pass.
    Io,
}

impl Refusal {
    fn unsafe_to_use(message: String) -> Self {
        Refusal {
            kind: RefusalKind::Unsafe,
            message,
        }
    }

    /// `message` for the I/O error `e`, of the kind its error kind says.
    #[must_use]
    pub fn io(e: &std::io::Error, message: String) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::PermissionDenied => RefusalKind::Denied,
            std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => RefusalKind::Unsafe,
            // A link met by `O_NOFOLLOW`.
            _ if e.raw_os_error() == Some(libc::ELOOP) => RefusalKind::Unsafe,
            _ => RefusalKind::Io,
        };
        Refusal { kind, message }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::ops::Deref for Refusal {
    type Target = str;
    fn deref(&self) -> &str {
        &self.message
    }
}

/// The effective uid of this process.
#[must_use]
pub fn current_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Opens `path` for `read`/`write` without following a symbolic link at
/// its last component and without blocking on a FIFO (`create`: created
/// with mode 0600 when missing).
///
/// # Errors
/// The `open` error (`ELOOP` for a link).
pub fn open_no_follow(path: &Path, write: bool, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .create(create)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Checks that `dir` is a directory owned by this process's user (or by
/// root) that group and others cannot write.
///
/// # Errors
/// Why not.
pub fn check_dir(dir: &Path, what: &str) -> Result<(), Refusal> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        Refusal::io(
            &e,
            format!("cannot read the {what} directory {}: {e}", dir.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} directory {} is not a directory",
            dir.display()
        )));
    }
    let uid = current_uid();
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} directory {} is owned by uid {}, not by the current user (uid {uid}) \
             or root: its owner could replace or delete the file",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} directory {} has mode {mode:04o}, writable by group or others \
             (who could replace the file); run `chmod 700 {}`",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Checks the `lstat` of the file at `path`: a regular file, owned by
/// `uid`, with no permission for group or others.
///
/// # Errors
/// Why not.
pub fn check_file(path: &Path, meta: &Metadata, uid: u32, what: &str) -> Result<(), Refusal> {
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} file {} is a symbolic link; it must be a regular file \
             (point to the directory that holds the file instead)",
            path.display()
        )));
    }
    if !kind.is_file() {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} file {} is not a regular file",
            path.display()
        )));
    }
    if meta.uid() != uid {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} file {} is owned by uid {}, not by the current user (uid {uid}); \
             run `chown {uid} {}` if it is yours",
            path.display(),
            meta.uid(),
            path.display()
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o7077 != 0 {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} file {} has mode {mode:04o}, open to group or others \
             (it must be 0600); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// What [`read`] found. Its `Debug` never shows the bytes.
pub enum Read {
    /// No file at the path.
    Missing,
    /// The file's bytes, wiped on drop.
    Bytes(Zeroizing<Vec<u8>>),
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Read::Missing => f.write_str("Missing"),
            Read::Bytes(b) => write!(f, "Bytes({} bytes, redacted)", b.len()),
        }
    }
}

/// Reads the private file at `path` (see the module's checks), at most
/// `limit` bytes, into a buffer wiped on drop.
///
/// # Errors
/// Why the file was refused or could not be read, including a file longer
/// than `limit`.
pub fn read(path: &Path, limit: usize, what: &str) -> Result<Read, Refusal> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::Missing),
        Err(e) => {
            return Err(Refusal::unsafe_to_use(format!(
                "cannot read the {what} file {}: {e}",
                path.display()
            )));
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    check_dir(dir, what)?;
    let uid = current_uid();
    check_file(path, &meta, uid, what)?;
    let cannot = |verb: &str, e: std::io::Error| {
        Refusal::io(
            &e,
            format!("cannot {verb} the {what} file {}: {e}", path.display()),
        )
    };
    let file = open_no_follow(path, false, false).map_err(|e| cannot("open", e))?;
    let opened = file.metadata().map_err(|e| cannot("read", e))?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} file {} was replaced while it was being opened",
            path.display()
        )));
    }
    check_file(path, &opened, uid, what)?;

    // Sized up front so that the buffer never reallocates (a reallocation
    // would leave a copy of the content behind, unwiped).
    let cap = usize::try_from(opened.len())
        .unwrap_or(usize::MAX)
        .min(limit);
    let mut bytes = Zeroizing::new(Vec::with_capacity(cap.saturating_add(1)));
    let read = file
        .take(u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| cannot("read", e))?;
    if read > limit {
        return Err(Refusal::unsafe_to_use(format!(
            "the {what} file {} is larger than {limit} bytes",
            path.display()
        )));
    }
    Ok(Read::Bytes(bytes))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::DirBuilderExt as _;

    use super::*;

    const WHAT: &str = "test";

    /// A 0700 directory holding a 0600 file `f` with `content`.
    fn private_file(content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, content).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        (tmp, path)
    }

    fn bytes(r: Result<Read, Refusal>) -> Vec<u8> {
        match r.unwrap() {
            Read::Bytes(b) => b.to_vec(),
            Read::Missing => panic!("missing"),
        }
    }

    #[test]
    fn a_private_file_is_read_and_a_missing_one_is_missing() {
        let (_tmp, path) = private_file("secret");
        assert_eq!(bytes(read(&path, 100, WHAT)), b"secret");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(bytes(read(&path, 100, WHAT)), b"secret");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(read(&path, 100, WHAT), Ok(Read::Missing)));
    }

    #[test]
    fn open_files_links_open_directories_and_large_files_are_refused_without_their_content() {
        for mode in [0o644, 0o640, 0o604, 0o660, 0o4600] {
            let (_tmp, path) = private_file("secret");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read(&path, 100, WHAT).unwrap_err();
            assert!(
                e.contains(&format!("{mode:04o}")) && e.contains("chmod 600"),
                "{e}"
            );
            assert!(!e.contains("secret"), "{e}");
        }
        for mode in [0o777, 0o770, 0o730, 0o703, 0o1777] {
            let (_tmp, path) = private_file("secret");
            let dir = path.parent().unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read(&path, 100, WHAT).unwrap_err();
            assert!(e.contains("writable by group or others"), "{e}");
        }
        let (_tmp, path) = private_file("secret");
        let (_other, target) = private_file("secret");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let e = read(&path, 100, WHAT).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");

        let (_tmp, path) = private_file("0123456789");
        let e = read(&path, 9, WHAT).unwrap_err();
        assert!(e.contains("larger than 9 bytes"), "{e}");
        assert_eq!(bytes(read(&path, 10, WHAT)), b"0123456789");

        // A FIFO is refused, without waiting for a writer.
        let (_tmp, path) = private_file("x");
        std::fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if made.is_ok_and(|s| s.success()) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = read(&path, 100, WHAT).unwrap_err();
            assert!(e.contains("not a regular file"), "{e}");
        }
        // Debug never shows the bytes.
        let (_tmp, path) = private_file("secret-bytes");
        let shown = format!("{:?}", read(&path, 100, WHAT).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let (_tmp, path) = private_file("secret");
        let dir = path.parent().unwrap();
        if current_uid() == 0 {
            std::os::unix::fs::chown(dir, Some(65534), None).unwrap();
            let e = read(&path, 100, WHAT).unwrap_err();
            assert!(e.contains("owned by uid 65534"), "{e}");
            let e = check_dir(dir, WHAT).unwrap_err();
            assert!(e.contains("replace or delete"), "{e}");
        }
        // Root's own directories are fine (`/` here).
        check_dir(Path::new("/"), WHAT).unwrap();
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        let me = current_uid();
        let (_tmp, path) = private_file("secret");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let e = check_file(&path, &meta, me + 1, WHAT).unwrap_err();
        assert!(e.contains(&format!("owned by uid {me}")), "{e}");
        assert_eq!(
            me,
            std::fs::metadata(&path).unwrap().uid(),
            "the current uid owns new files"
        );
    }
}
