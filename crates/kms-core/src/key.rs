//! Key identifiers, versions, key material and loaded data keys.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::aead::Ciphers;
use crate::error::{Error, Result};

/// Length of a data key in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Longest accepted [`KeyId`], in bytes.
pub const MAX_KEY_ID_LEN: usize = 128;

/// Longest accepted [`KeyVersion`], in bytes.
pub const MAX_KEY_VERSION_LEN: usize = 64;

/// Length of a [`Fingerprint`] in bytes.
pub const FINGERPRINT_LEN: usize = 8;

/// The message MAC'd under the key to derive its fingerprint (see `docs/FORMAT.md`).
const FINGERPRINT_LABEL: &[u8] = b"kms/v1/key-fingerprint";

/// Whether `id` is a valid [`KeyId`] (checked without allocating).
pub(crate) fn is_valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_KEY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Whether `v` is a valid [`KeyVersion`] (checked without allocating).
pub(crate) fn is_valid_key_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_KEY_VERSION_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The name of a key, as in `KMS_KEY_ID` (default `default`).
///
/// 1 to 128 characters from `A-Z a-z 0-9 _ -`: the intersection of what
/// SSM parameter names, Vault paths and Secret Manager secret ids accept,
/// so one id works with every provider.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Arc<str>);

impl KeyId {
    /// Validates and wraps a key id.
    ///
    /// # Errors
    /// [`Error::Config`] naming `KMS_KEY_ID` when the id is empty, too long
    /// or has a character outside `A-Z a-z 0-9 _ -`.
    pub fn new(id: &str) -> Result<Self> {
        if id.is_empty() || id.len() > MAX_KEY_ID_LEN {
            return Err(Error::config(
                "KMS_KEY_ID",
                format!("a key id must be 1 to {MAX_KEY_ID_LEN} characters long"),
            ));
        }
        if !is_valid_key_id(id) {
            return Err(Error::config(
                "KMS_KEY_ID",
                "a key id may only contain letters, digits, '_' and '-'",
            ));
        }
        Ok(KeyId(Arc::from(id)))
    }

    /// The id as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyId {
    /// The spec's default key id, `default`.
    fn default() -> Self {
        KeyId(Arc::from("default"))
    }
}

impl FromStr for KeyId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        KeyId::new(s)
    }
}

impl PartialEq<str> for KeyId {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for KeyId {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({:?})", &*self.0)
    }
}

impl AsRef<str> for KeyId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A provider's native name for one version of a key: a KV version in Vault,
/// a parameter version in SSM, a secret version in Secret Manager, the
/// fingerprint for env keys.
///
/// 1 to 64 characters from `A-Z a-z 0-9 _ - . :`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyVersion(Arc<str>);

impl KeyVersion {
    /// Validates and wraps a version name.
    ///
    /// # Errors
    /// [`Error::Provider`] when the name is empty, too long or has another character.
    pub fn new(version: &str) -> Result<Self> {
        if !is_valid_key_version(version) {
            return Err(Error::provider(
                "core",
                format!(
                    "a key version must be 1 to {MAX_KEY_VERSION_LEN} characters from A-Z a-z 0-9 _ - . :"
                ),
            ));
        }
        Ok(KeyVersion(Arc::from(version)))
    }

    /// The version as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<u64> for KeyVersion {
    fn from(n: u64) -> Self {
        KeyVersion(Arc::from(n.to_string()))
    }
}

impl FromStr for KeyVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        KeyVersion::new(s)
    }
}

impl PartialEq<str> for KeyVersion {
    fn eq(&self, other: &str) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<&str> for KeyVersion {
    fn eq(&self, other: &&str) -> bool {
        *self.0 == **other
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyVersion({:?})", &*self.0)
    }
}

/// 32 bytes of AES-256 key material.
///
/// Zeroized on drop; `Debug` prints no key bytes; equality is constant-time.
/// There is deliberately no `Display`, `Serialize` or `Clone` shortcut that
/// would let key bytes leak into logs: use [`KeyMaterial::to_hex`] when a
/// provider must store the key.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct KeyMaterial([u8; KEY_LEN]);

impl KeyMaterial {
    /// Wraps 32 bytes. The caller's array is copied; zeroize it if it matters.
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        KeyMaterial(bytes)
    }

    /// Copies key material from a slice.
    ///
    /// # Errors
    /// [`Error::InvalidKeyLength`] unless the slice is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| Error::InvalidKeyLength)?;
        Ok(KeyMaterial(array))
    }

    /// Parses the spec's key format: 64 hexadecimal characters (either case).
    /// Leading and trailing ASCII white space is ignored, so values read from
    /// files or command output with a final newline work.
    ///
    /// # Errors
    /// [`Error::InvalidKeyLength`] for anything else. The message never
    /// repeats the input.
    pub fn from_hex(hex_str: &str) -> Result<Self> {
        let trimmed = hex_str.trim_ascii();
        if trimmed.len() != 2 * KEY_LEN {
            return Err(Error::InvalidKeyLength);
        }
        let mut out = KeyMaterial([0; KEY_LEN]);
        hex::decode_to_slice(trimmed, &mut out.0).map_err(|_| Error::InvalidKeyLength)?;
        Ok(out)
    }

    /// A new random key from the thread-local CSPRNG (seeded by the OS,
    /// reseeded after a `fork()`).
    #[must_use]
    pub fn generate() -> Self {
        let mut out = KeyMaterial([0; KEY_LEN]);
        crate::random::fill(&mut out.0);
        out
    }

    /// The key as 64 lowercase hex characters, in a string that is zeroized on drop.
    #[must_use]
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0))
    }

    /// The raw key bytes. Handle with care.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The provider-independent fingerprint of this key (see [`Fingerprint`]).
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(FINGERPRINT_LABEL);
        let tag = mac.finalize().into_bytes();
        let mut fp = [0u8; FINGERPRINT_LEN];
        for (dst, src) in fp.iter_mut().zip(tag.iter()) {
            *dst = *src;
        }
        Fingerprint(fp)
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial([REDACTED])")
    }
}

impl ConstantTimeEq for KeyMaterial {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for KeyMaterial {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for KeyMaterial {}

/// A short, provider-independent identifier of the exact key bytes:
/// the first 8 bytes of `HMAC-SHA256(key, "kms/v1/key-fingerprint")`.
///
/// It is recorded in every ciphertext header so that the right key version
/// is found even after versions were copied to another provider with other
/// version numbers, and a wrong key is detected before AES runs. Being a MAC
/// under the key, it reveals nothing about the key (unlike a plain hash).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub(crate) [u8; FINGERPRINT_LEN]);

impl Fingerprint {
    /// The fingerprint's bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }

    /// Wraps raw fingerprint bytes (as read from a ciphertext header).
    #[must_use]
    pub fn from_bytes(bytes: [u8; FINGERPRINT_LEN]) -> Self {
        Fingerprint(bytes)
    }

    /// Parses 16 hex characters.
    ///
    /// # Errors
    /// [`Error::Provider`] if the text is not 16 hex characters.
    pub fn from_hex(s: &str) -> Result<Self> {
        let mut out = [0u8; FINGERPRINT_LEN];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| Error::provider("core", "a key fingerprint is 16 hex characters"))?;
        Ok(Fingerprint(out))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// One version of a key, loaded and ready to encrypt: what providers return.
///
/// Cheap to clone (an `Arc`). Holds the key material (zeroized when the last
/// clone is dropped), its fingerprint and the expanded AES key schedules, so
/// that no per-operation key set-up is needed.
#[derive(Clone)]
pub struct DataKey(Arc<DataKeyInner>);

struct DataKeyInner {
    key_id: KeyId,
    version: KeyVersion,
    fingerprint: Fingerprint,
    created_at: Option<DateTime<Utc>>,
    material: KeyMaterial,
    /// The expanded AES-GCM key schedules (see `aead.rs`).
    ciphers: Ciphers,
    /// The header this key writes, up to the IV (`format::key_header`).
    header: Box<[u8]>,
}

impl DataKey {
    /// Loads key material as version `version` of `key_id`.
    #[must_use]
    pub fn new(key_id: KeyId, version: KeyVersion, material: KeyMaterial) -> Self {
        Self::with_created_at(key_id, version, material, None)
    }

    /// Like [`DataKey::new`], recording when the provider created this version.
    #[must_use]
    pub fn with_created_at(
        key_id: KeyId,
        version: KeyVersion,
        material: KeyMaterial,
        created_at: Option<DateTime<Utc>>,
    ) -> Self {
        let ciphers = Ciphers::new(material.expose_secret());
        let fingerprint = material.fingerprint();
        let header = crate::format::key_header(&key_id, &version, fingerprint);
        DataKey(Arc::new(DataKeyInner {
            fingerprint,
            header,
            key_id,
            version,
            created_at,
            material,
            ciphers,
        }))
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> &KeyId {
        &self.0.key_id
    }

    /// The provider's native version.
    #[must_use]
    pub fn version(&self) -> &KeyVersion {
        &self.0.version
    }

    /// The provider-independent fingerprint.
    #[must_use]
    pub fn fingerprint(&self) -> Fingerprint {
        self.0.fingerprint
    }

    /// When the provider created this version, if it says.
    #[must_use]
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.0.created_at
    }

    /// The key material (for providers that store keys, and for migration).
    #[must_use]
    pub fn material(&self) -> &KeyMaterial {
        &self.0.material
    }

    pub(crate) fn ciphers(&self) -> &Ciphers {
        &self.0.ciphers
    }

    pub(crate) fn header(&self) -> &[u8] {
        &self.0.header
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("key_id", &self.0.key_id)
            .field("version", &self.0.version)
            .field("fingerprint", &self.0.fingerprint)
            .field("created_at", &self.0.created_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn parses_64_hex_either_case_and_trims() {
        let a = KeyMaterial::from_hex(HEX).unwrap();
        let b = KeyMaterial::from_hex(&HEX.to_uppercase()).unwrap();
        let c = KeyMaterial::from_hex(&format!("  {HEX}\n")).unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.expose_secret()[31], 0x1f);
        assert_eq!(&*a.to_hex(), HEX);
    }

    #[test]
    fn rejects_everything_else_with_the_spec_message() {
        let cases = [
            String::new(),
            "00".into(),
            HEX[..63].to_string(),
            format!("{HEX}0"),
            format!("{HEX}00"),
            format!("{}zz", &HEX[..62]),
            format!("{}é", &HEX[..62]),
            "your_encryption_key_here_32_chars_minimum_but_not_hex_at_all!!!".into(),
            format!("{} {}", &HEX[..32], &HEX[32..]),
        ];
        for case in cases {
            let err = KeyMaterial::from_hex(&case).unwrap_err();
            assert_eq!(err.to_string(), "Invalid key length: expected 32 bytes");
            assert!(matches!(err, Error::InvalidKeyLength));
        }
        assert!(matches!(
            KeyMaterial::from_slice(&[0; 31]),
            Err(Error::InvalidKeyLength)
        ));
        assert!(KeyMaterial::from_slice(&[0; 32]).is_ok());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = KeyMaterial::from_hex(HEX).unwrap();
        let dk = DataKey::new(KeyId::default(), KeyVersion::from(1), k);
        for text in [
            format!("{:?}", dk.material()),
            format!("{dk:?}"),
            format!("{dk:#?}"),
        ] {
            assert!(!text.contains("0102030405"), "{text}");
            assert!(!text.contains("[0, 1, 2"), "{text}");
        }
        assert_eq!(format!("{:?}", dk.material()), "KeyMaterial([REDACTED])");
    }

    #[test]
    fn generated_keys_differ_and_fingerprints_are_stable() {
        let a = KeyMaterial::generate();
        let b = KeyMaterial::generate();
        assert_ne!(a, b);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), a.fingerprint());
        // Known answer (also in docs/FORMAT.md).
        let k = KeyMaterial::from_hex(HEX).unwrap();
        assert_eq!(k.fingerprint().to_string().len(), 16);
        assert_eq!(
            Fingerprint::from_hex(&k.fingerprint().to_string()).unwrap(),
            k.fingerprint()
        );
    }

    #[test]
    fn key_ids() {
        assert_eq!(KeyId::default().as_str(), "default");
        assert!(KeyId::new("tenant_42-prod").is_ok());
        for bad in ["", "a/b", "a b", "ключ", "a.b", &"x".repeat(129)] {
            let e = KeyId::new(bad).unwrap_err();
            assert!(e.to_string().contains("KMS_KEY_ID"), "{e}");
        }
    }

    #[test]
    fn key_versions() {
        assert_eq!(KeyVersion::from(7).as_str(), "7");
        assert!(KeyVersion::new("projects:1.2_x-y").is_ok());
        for bad in ["", "a b", "a/b", &"1".repeat(65)] {
            assert!(KeyVersion::new(bad).is_err());
        }
    }

    #[test]
    fn zeroize_clears_material() {
        let mut k = KeyMaterial::from_hex(HEX).unwrap();
        k.zeroize();
        assert_eq!(k.expose_secret(), &[0u8; 32]);
    }

    #[test]
    fn key_id_from_str_and_as_ref() {
        let id: KeyId = "payments".parse().unwrap();
        assert_eq!(id.as_str(), "payments");
        assert_eq!(AsRef::<str>::as_ref(&id), "payments");
        assert!("".parse::<KeyId>().is_err());
        assert!("a b".parse::<KeyId>().is_err());
    }

    #[test]
    fn data_key_keeps_its_creation_time() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let key = DataKey::with_created_at(
            KeyId::default(),
            KeyVersion::from(1),
            KeyMaterial::from_bytes([1; KEY_LEN]),
            Some(at),
        );
        assert_eq!(key.created_at(), Some(at));
    }
}
