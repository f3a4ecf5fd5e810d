//! The keyring file: its JSON form, and how it is read and replaced.
//!
//! ```json
//! {
//!   "format": "kms-keyring",
//!   "formatVersion": 1,
//!   "keys": {
//!     "default": {
//!       "versions": [
//!         { "version": 1, "createdAt": "2026-12-04T10:00:00Z", "key": "<64 hex characters>" },
//!         { "version": 2, "createdAt": "2026-12-05T10:00:00Z", "key": "<64 hex characters>" }
//!       ]
//!     }
//!   }
//! }
//! ```
//!
//! Versions are numbered from 1, oldest first; the last is the current one.
//! Every version is kept: nothing in this provider deletes one.
//!
//! A change is made under an exclusive advisory lock (`flock`) on a lock
//! file beside the keyring (`<keyring>.lock`), and always from the keyring
//! as it is on disk under that lock: the new keyring is written to a
//! temporary file in the same directory (mode 0600), flushed to disk,
//! renamed over the keyring, and the directory is flushed. A reader sees
//! the old keyring or the new one, never a part; two processes changing
//! the keyring at once both keep their versions; a crash at any point
//! leaves the old keyring or the new one.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound as _, Utc};
use kms_core::{DataKey, Error, KeyId, KeyMaterial, KeyVersion, Result, VersionInfo};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::PROVIDER;
use crate::private::{self, Read, Refusal, RefusalKind};

/// The `format` field of every keyring file.
pub const FORMAT: &str = "kms-keyring";

/// The `formatVersion` this crate reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Largest keyring file read: 16 MiB (about 100,000 versions).
pub(crate) const MAX_FILE: usize = 16 << 20;

/// What the checks of [`private`] call the file in their messages.
const WHAT: &str = "keyring";

/// The whole file.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Keyring {
    format: String,
    format_version: u32,
    #[serde(deserialize_with = "unique_ids")]
    keys: BTreeMap<String, Entry>,
}

/// The `keys` object, refusing a key id given twice (a plain map would keep
/// the last, and the next change would write the others away).
fn unique_ids<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, Entry>, D::Error> {
    struct Ids;
    impl<'de> serde::de::Visitor<'de> for Ids {
        type Value = BTreeMap<String, Entry>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object of key ids")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut keys = BTreeMap::new();
            while let Some((id, entry)) = map.next_entry::<String, Entry>()? {
                if keys.insert(id, entry).is_some() {
                    return Err(serde::de::Error::custom("a key id is given twice"));
                }
            }
            Ok(keys)
        }
    }
    d.deserialize_map(Ids)
}

/// One key id's versions, oldest first.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Entry {
    /// Boxed, so that the list growing moves pointers, not key bytes
    /// (a reallocation would leave a copy of every key behind, unwiped).
    #[allow(
        clippy::vec_box,
        reason = "the boxes keep key bytes in place while the list grows"
    )]
    versions: Vec<Box<Stored>>,
}

/// One version.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Stored {
    version: u64,
    created_at: DateTime<Utc>,
    #[serde(serialize_with = "hex_out", deserialize_with = "hex_in")]
    key: KeyMaterial,
}

/// The key as 64 hex characters, from a buffer wiped on drop.
fn hex_out<S: Serializer>(key: &KeyMaterial, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&key.to_hex())
}

/// The key from 64 hex characters, borrowed from the file's bytes (no copy
/// of the text is made).
fn hex_in<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<KeyMaterial, D::Error> {
    let hex = <&str>::deserialize(d)?;
    KeyMaterial::from_hex(hex).map_err(|_| {
        serde::de::Error::custom(
            "a key is not 64 hex characters (Invalid key length: expected 32 bytes)",
        )
    })
}

impl Stored {
    fn data_key(&self, key_id: &KeyId) -> DataKey {
        let bytes = Zeroizing::new(*self.key.expose_secret());
        DataKey::with_created_at(
            key_id.clone(),
            KeyVersion::from(self.version),
            KeyMaterial::from_bytes(*bytes),
            Some(self.created_at),
        )
    }
}

impl Default for Keyring {
    fn default() -> Self {
        Keyring {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            keys: BTreeMap::new(),
        }
    }
}

impl Keyring {
    /// Reads the keyring at `path`; `None` when there is no file.
    pub(crate) fn load(path: &Path) -> Result<Option<Self>> {
        let bytes = match private::read(path, MAX_FILE, WHAT).map_err(refused)? {
            Read::Missing => return Ok(None),
            Read::Bytes(bytes) => bytes,
        };
        let keyring: Keyring = serde_json::from_slice(&bytes).map_err(|e| {
            // Where, not serde_json's message: that may quote the value it
            // read, which could be a key.
            let kind = match e.classify() {
                serde_json::error::Category::Syntax => "not JSON",
                serde_json::error::Category::Eof => "cut short",
                _ => "not a keyring (a missing, unknown or mistyped field, or a key that is not 64 hex characters)",
            };
            corrupt(path, &format!("{kind} at line {}, column {}", e.line(), e.column()))
        })?;
        if keyring.format != FORMAT || keyring.format_version != FORMAT_VERSION {
            return Err(corrupt(
                path,
                // The `format` field is not quoted: whatever a bad edit put
                // there (a key?) stays out of the message.
                &format!(
                    "it is not a `{FORMAT}` file of formatVersion {FORMAT_VERSION} \
                     (formatVersion {})",
                    keyring.format_version
                ),
            ));
        }
        for (id, entry) in &keyring.keys {
            KeyId::new(id).map_err(|_| corrupt(path, &format!("{id:?} is not a valid key id")))?;
            let numbered = entry
                .versions
                .iter()
                .zip(1u64..)
                .all(|(stored, n)| stored.version == n);
            if !numbered {
                return Err(corrupt(
                    path,
                    &format!("the versions of key {id:?} are not numbered 1, 2, 3, ... in order"),
                ));
            }
        }
        Ok(Some(keyring))
    }

    fn entry(&self, key_id: &KeyId) -> Option<&Entry> {
        self.keys
            .get(key_id.as_str())
            .filter(|e| !e.versions.is_empty())
    }

    /// The current version of `key_id`.
    pub(crate) fn current(&self, key_id: &KeyId) -> Result<DataKey> {
        self.entry(key_id)
            .and_then(|e| e.versions.last())
            .map(|s| s.data_key(key_id))
            .ok_or_else(|| Error::key_not_found(key_id, None))
    }

    /// Version `version` of `key_id`. Versions are numbered 1, 2, 3, ...
    /// in order ([`Keyring::load`] checks it): version `n` is the `n`th.
    pub(crate) fn version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        let index = version
            .as_str()
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1));
        self.entry(key_id)
            .zip(index)
            .and_then(|(e, i)| e.versions.get(i))
            .map(|s| s.data_key(key_id))
            .ok_or_else(|| Error::key_not_found(key_id, Some(version)))
    }

    /// The number of the current version of `key_id`, without building its
    /// key.
    pub(crate) fn current_version(&self, key_id: &KeyId) -> Option<KeyVersion> {
        self.entry(key_id)
            .and_then(|e| e.versions.last())
            .map(|s| KeyVersion::from(s.version))
    }

    /// Every version of `key_id`, oldest first.
    pub(crate) fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        let entry = self
            .entry(key_id)
            .ok_or_else(|| Error::key_not_found(key_id, None))?;
        Ok(entry
            .versions
            .iter()
            .map(|s| VersionInfo::new(KeyVersion::from(s.version), Some(s.created_at), true))
            .collect())
    }

    /// Adds `material` as the new current version of `key_id` (creating the
    /// key when it has none), created now.
    pub(crate) fn push(&mut self, key_id: &KeyId, material: KeyMaterial) -> DataKey {
        let entry = self.keys.entry(key_id.as_str().to_owned()).or_default();
        let version = entry.versions.last().map_or(1, |s| s.version + 1);
        // Whole seconds, as every timestamp of the API.
        let stored = Stored {
            version,
            created_at: Utc::now().trunc_subsecs(0),
            key: material,
        };
        let key = stored.data_key(key_id);
        entry.versions.push(Box::new(stored));
        key
    }

    /// Writes this keyring over the file at `path`: a temporary file in the
    /// same directory, flushed, renamed over it, and the directory flushed.
    /// Call it holding the [`WriteLock`].
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let dir = parent(path);
        private::check_dir(dir, WHAT).map_err(refused)?;
        let encode = |out: &mut dyn std::io::Write| {
            serde_json::to_writer_pretty(out, self)
                .map_err(|e| Error::provider(PROVIDER, format!("cannot encode the keyring: {e}")))
        };
        // Measured first, then written into a buffer of that exact size: a
        // growing buffer would leave copies of the keys behind, unwiped.
        let mut counter = Counter(0);
        encode(&mut counter)?;
        if counter.0 >= MAX_FILE {
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "the keyring would exceed {MAX_FILE} bytes, the most that is read back; \
                     nothing was written (move some key ids to another keyring)"
                ),
            ));
        }
        let mut json = Zeroizing::new(Vec::with_capacity(counter.0.saturating_add(1)));
        encode(&mut *json)?;
        let cannot = |what: &str, e: std::io::Error| {
            refused(Refusal::io(
                &e,
                format!("cannot {what} the keyring file {}: {e}", path.display()),
            ))
        };
        sweep_stale(path);
        // Mode 0600; removed on drop unless persisted.
        let mut tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(path))
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(|e| cannot("create a temporary file beside", e))?;
        tmp.write_all(&json)
            .and_then(|()| tmp.write_all(b"\n"))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| cannot("write", e))?;
        tmp.persist(path).map_err(|e| cannot("replace", e.error))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| cannot("flush the directory of", e))
    }
}

/// The temporary files of a keyring: `.<keyring file name>.<random>.tmp`.
fn temp_prefix(path: &Path) -> String {
    format!(
        ".{}.",
        path.file_name().unwrap_or_default().to_string_lossy()
    )
}

const TEMP_SUFFIX: &str = ".tmp";

/// Removes the temporary files a writer killed before its rename left
/// (they hold keys). Called under the [`WriteLock`]: no other writer of
/// this keyring is between creating one and renaming it. Best effort.
fn sweep_stale(path: &Path) {
    let prefix = temp_prefix(path);
    let Ok(entries) = std::fs::read_dir(parent(path)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix)
            && name.ends_with(TEMP_SUFFIX)
            && entry.file_type().is_ok_and(|t| t.is_file())
        {
            let _removed = std::fs::remove_file(entry.path());
        }
    }
}

/// Counts what is written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The exclusive lock every change holds, on `<keyring>.lock` (created
/// empty, mode 0600). Released when dropped (or when the process dies).
pub(crate) struct WriteLock(File);

impl WriteLock {
    /// Waits for the lock.
    pub(crate) fn acquire(path: &Path) -> Result<Self> {
        let lock_path = lock_path(path);
        private::check_dir(parent(path), WHAT).map_err(refused)?;
        // Never through a link, and only a regular file of ours: the lock
        // file is created in the (checked) directory, not wherever a link
        // planted there points.
        let cannot = |what: &str, e: std::io::Error| {
            refused(Refusal::io(
                &e,
                format!("cannot {what} the lock file {}: {e}", lock_path.display()),
            ))
        };
        let file =
            private::open_no_follow(&lock_path, true, true).map_err(|e| cannot("open", e))?;
        let meta = file.metadata().map_err(|e| cannot("read", e))?;
        private::check_file(&lock_path, &meta, private::current_uid(), "keyring lock")
            .map_err(refused)?;
        file.lock().map_err(|e| cannot("lock", e))?;
        Ok(WriteLock(file))
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; this says so early.
        let _unlocked = self.0.unlock();
    }
}

/// `<keyring>.lock`.
pub(crate) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// The directory of `path` (`.` for a bare file name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A refused or unreadable file: a configuration error naming the variable
/// when the operator must mend the file, "Access denied to encryption key"
/// when the system refuses this process, "KMS service unavailable"
/// (temporary) for other I/O failures.
fn refused(refusal: private::Refusal) -> Error {
    match refusal.kind {
        RefusalKind::Denied => Error::access_denied(PROVIDER, refusal.message),
        RefusalKind::Io => Error::unavailable(PROVIDER, refusal.message),
        _ => Error::config(crate::KEYRING_FILE, refusal.message),
    }
}

fn corrupt(path: &Path, why: &str) -> Error {
    Error::provider(
        PROVIDER,
        format!("the keyring file {} is not valid: {why}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> KeyId {
        KeyId::new(s).unwrap()
    }

    #[test]
    fn versions_are_numbered_from_one_and_survive_a_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keyring.json");
        let mut ring = Keyring::default();
        let first = ring.push(&id("default"), KeyMaterial::generate());
        let second = ring.push(&id("default"), KeyMaterial::generate());
        let other = ring.push(&id("other"), KeyMaterial::generate());
        assert_eq!(
            [first.version(), second.version(), other.version()].map(KeyVersion::as_str),
            ["1", "2", "1"]
        );
        ring.save(&path).unwrap();
        let back = Keyring::load(&path).unwrap().unwrap();
        assert_eq!(
            back.current(&id("default")).unwrap().fingerprint(),
            second.fingerprint()
        );
        assert_eq!(
            back.version(&id("default"), &KeyVersion::from(1))
                .unwrap()
                .fingerprint(),
            first.fingerprint()
        );
        assert_eq!(back.versions(&id("default")).unwrap().len(), 2);
        assert!(matches!(
            back.current(&id("missing")),
            Err(Error::KeyNotFound { .. })
        ));
        for missing in ["3", "0", "-1", "x", "18446744073709551616"] {
            assert!(
                matches!(
                    back.version(&id("default"), &KeyVersion::new(missing).unwrap()),
                    Err(Error::KeyNotFound { .. })
                ),
                "{missing}"
            );
        }
        assert_eq!(
            back.current_version(&id("default")),
            Some(KeyVersion::from(2))
        );
        assert_eq!(back.current_version(&id("missing")), None);
        // No temporary file is left behind; one a killed writer left is
        // swept by the next change, another keyring's is not.
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(tmp.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(), ["keyring.json"]);
        std::fs::write(tmp.path().join(".keyring.json.k1LLed.tmp"), "keys").unwrap();
        std::fs::write(tmp.path().join(".other.json.busy01.tmp"), "keys").unwrap();
        ring.push(&id("default"), KeyMaterial::generate());
        ring.save(&path).unwrap();
        assert_eq!(names(), [".other.json.busy01.tmp", "keyring.json"]);
    }

    #[test]
    fn a_corrupt_file_is_a_typed_error_that_shows_no_key() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keyring.json");
        let key = "ab".repeat(32);
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            let private = std::os::unix::fs::PermissionsExt::from_mode(0o600);
            std::fs::set_permissions(&path, private).unwrap();
        };
        let version = |n: u64, key: &str| {
            format!(r#"{{"version":{n},"createdAt":"2026-01-01T00:00:00Z","key":"{key}"}}"#)
        };
        for text in [
            "not json".to_owned(),
            r#"{"format":"other","formatVersion":1,"keys":{}}"#.to_owned(),
            format!(r#"{{"format":"{key}","formatVersion":1,"keys":{{}}}}"#),
            r#"{"format":"kms-keyring","formatVersion":2,"keys":{}}"#.to_owned(),
            format!(
                r#"{{"format":"kms-keyring","formatVersion":1,"keys":{{"default":{{"versions":[{}]}}}}}}"#,
                version(2, &key)
            ),
            format!(
                r#"{{"format":"kms-keyring","formatVersion":1,"keys":{{"bad/id":{{"versions":[{}]}}}}}}"#,
                version(1, &key)
            ),
            format!(
                r#"{{"format":"kms-keyring","formatVersion":1,"keys":{{"default":{{"versions":[{}]}}}}}}"#,
                version(1, &key[..62])
            ),
            format!(
                r#"{{"format":"kms-keyring","formatVersion":1,"keys":{{"default":{{"versions":[{}]}}}},"extra":1}}"#,
                version(1, &key)
            ),
            format!(
                r#"{{"format":"kms-keyring","formatVersion":1,"keys":{{"default":{{"versions":[{}]}},"default":{{"versions":[{}]}}}}}}"#,
                version(1, &key),
                version(1, &key)
            ),
        ] {
            write(&text);
            let Err(e) = Keyring::load(&path) else {
                panic!("accepted: {text}")
            };
            assert!(matches!(e, Error::Provider { .. }), "{e:?}");
            let shown = format!("{e} {e:?}");
            assert!(shown.contains("keyring.json"), "{shown}");
            assert!(!shown.contains(&key[..16]), "{shown}");
        }
        write(&format!(
            r#"{{"format":"kms-keyring","formatVersion":1,"keys":{{"default":{{"versions":[{}]}}}}}}"#,
            version(1, &key)
        ));
        assert!(Keyring::load(&path).unwrap().is_some());
    }

    /// Past the horizon of ordinary use: a keyring that would be too large
    /// to read back (about 110,000 versions) is refused before anything is
    /// written, and the file keeps what it had.
    #[test]
    fn a_keyring_too_large_to_read_back_is_never_written() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keyring.json");
        let mut ring = Keyring::default();
        ring.push(&id("default"), KeyMaterial::generate());
        ring.save(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        let entry = ring.keys.get_mut("default").unwrap();
        let created_at = Utc::now().trunc_subsecs(0);
        for version in 2..=120_000 {
            entry.versions.push(Box::new(Stored {
                version,
                created_at,
                key: KeyMaterial::from_bytes([7; 32]),
            }));
        }
        let e = ring.save(&path).unwrap_err();
        assert!(e.to_string().contains("nothing was written"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // Just under the limit, it is written and read back.
        let entry = ring.keys.get_mut("default").unwrap();
        entry.versions.truncate(90_000);
        ring.save(&path).unwrap();
        let back = Keyring::load(&path).unwrap().unwrap();
        assert_eq!(back.versions(&id("default")).unwrap().len(), 90_000);
        assert_eq!(
            back.current_version(&id("default")),
            Some(KeyVersion::from(90_000))
        );
    }

    #[test]
    fn a_lock_file_that_is_a_link_is_refused_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keyring.json");
        let elsewhere = tmp.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, lock_path(&path)).unwrap();
        let Err(e) = WriteLock::acquire(&path) else {
            panic!("a linked lock file was used")
        };
        assert!(matches!(e, Error::Config { .. }), "{e:?}");
        assert!(!elsewhere.exists(), "the link's target was created");
    }

    #[test]
    fn io_failures_are_typed_by_what_the_caller_should_do() {
        let kind = |e: std::io::Error| refused(Refusal::io(&e, "the keyring file x".into()));
        let denied = kind(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(denied.to_string(), "Access denied to encryption key");
        let eio = kind(std::io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(eio.to_string(), "KMS service unavailable");
        assert!(eio.is_temporary(), "{eio:?}");
        let emfile = kind(std::io::Error::from_raw_os_error(libc::EMFILE));
        assert!(emfile.is_temporary(), "{emfile:?}");
        for unsafe_to_use in [
            std::io::Error::from_raw_os_error(libc::ELOOP),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ] {
            let e = kind(unsafe_to_use);
            assert!(matches!(e, Error::Config { .. }), "{e:?}");
            assert!(e.to_string().contains(crate::KEYRING_FILE), "{e}");
        }
    }

    #[test]
    fn the_lock_file_sits_beside_the_keyring() {
        assert_eq!(
            lock_path(Path::new("/a/b/keyring.json")),
            Path::new("/a/b/keyring.json.lock")
        );
        assert_eq!(parent(Path::new("keyring.json")), Path::new("."));
    }
}
