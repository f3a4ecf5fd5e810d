#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::Once;

use async_trait::async_trait;
use hkdf::Hkdf;
use kms_core::key::KEY_LEN;
use kms_core::settings::Setting;
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider, KeyVersion,
    LiveVersions, Result, VersionInfo,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The provider's name.
pub const PROVIDER: &str = "env";

/// Every setting of this provider, declared once: the variables
/// [`EnvProviderBuilder::from_lookup`] reads, with their names in the admin
/// API's configuration document (`KMS_KEY_ID` has none here: the facade's
/// `keyId` sets it).
pub const SETTINGS: &[Setting] = &[
    Setting::new("KMS_KEY_ID"),
    Setting::new(ENCRYPTION_KEY)
        .fields(&["credentials.encryptionKey"])
        .secret(),
    Setting::new(ENCRYPTION_KEY_PREVIOUS)
        .fields(&["credentials.encryptionKeyPrevious"])
        .secret(),
];

/// The variable holding the current key.
pub const ENCRYPTION_KEY: &str = "ENCRYPTION_KEY";

/// The variable holding older keys, comma separated.
pub const ENCRYPTION_KEY_PREVIOUS: &str = "ENCRYPTION_KEY_PREVIOUS";

/// Shortest passphrase accepted, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 32;

/// HKDF-SHA256 salt for passphrases (public, fixed: part of the contract).
pub const HKDF_SALT: &[u8] = b"kms-env/v1/salt";

/// HKDF-SHA256 info for passphrases (public, fixed: part of the contract).
pub const HKDF_INFO: &[u8] = b"kms-env/v1/key";

const ROTATE_HELP: &str = "env keys are not rotated by the library (a key it invented would die with the process). \
To rotate: generate a key with `kms generate-key`, move the current ENCRYPTION_KEY value to the front of \
ENCRYPTION_KEY_PREVIOUS (comma separated), set ENCRYPTION_KEY to the new key and restart; \
old ciphertexts keep decrypting";

static DEV_WARNING: Once = Once::new();

/// Turns an `ENCRYPTION_KEY`-style value into key material: 64 hex characters
/// are the key itself; a value made only of hex digits but of another length
/// is a mistyped key and is refused; any other value of at least 32
/// characters is a passphrase, stretched with HKDF-SHA256 ([`HKDF_SALT`],
/// [`HKDF_INFO`]), and logs a warning (target `kms::env`) that it is for
/// development only.
///
/// # Errors
/// [`Error::InvalidKeyLength`] for hex digits of any length but 64 (a
/// warning names `variable` and the length); [`Error::Config`] naming
/// `variable` for other values shorter than 32 characters. The value is never
/// part of the message or of the log.
pub fn key_from_value(value: &str, variable: &str) -> Result<KeyMaterial> {
    parse_key(value, variable, None)
}

/// What [`key_from_value`] does; `entry` is the 1-based position of the
/// value in `ENCRYPTION_KEY_PREVIOUS`, for the log.
fn parse_key(value: &str, variable: &str, entry: Option<usize>) -> Result<KeyMaterial> {
    let value = value.trim_ascii();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        if value.len() == 2 * KEY_LEN {
            return KeyMaterial::from_hex(value);
        }
        // Only hex digits: a key with a digit too many or too few (or a short
        // hex string), never a passphrase. The error cannot name the
        // variable, so the log does.
        tracing::warn!(
            target: "kms::env",
            variable,
            entry,
            hex_digits = value.len(),
            "refused: only hex digits, but a hex key has exactly 64 (a typo?); \
             generate one with `kms generate-key`"
        );
        return Err(Error::InvalidKeyLength);
    }
    if value.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(Error::config(
            variable,
            format!(
                "must be 64 hex characters (generate one with `kms generate-key`) \
                 or a passphrase of at least {MIN_PASSPHRASE_CHARS} characters"
            ),
        ));
    }
    let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), value.as_bytes());
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    hk.expand(HKDF_INFO, okm.as_mut())
        .map_err(|_| Error::config(variable, "key derivation failed"))?;
    tracing::warn!(
        target: "kms::env",
        variable,
        entry,
        "a passphrase, not a 64-hex-character key: its key is derived with HKDF-SHA256, which is fast, \
         so anyone holding a ciphertext can test passphrase guesses offline against the key fingerprint \
         in its header; for development only, use a random key from `kms generate-key` for real data"
    );
    Ok(KeyMaterial::from_bytes(*okm))
}

/// Keys from environment variables. Development only.
pub struct EnvProvider {
    key_id: KeyId,
    current: DataKey,
    /// Every key (current and previous), by version (= fingerprint).
    by_version: HashMap<KeyVersion, DataKey>,
    /// Versions oldest first, current last.
    order: Vec<KeyVersion>,
}

impl fmt::Debug for EnvProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvProvider")
            .field("key_id", &self.key_id)
            .field("current_version", self.current.version())
            .field("versions", &self.order.len())
            .finish_non_exhaustive()
    }
}

impl EnvProvider {
    /// A builder with no keys and key id `default`.
    #[must_use]
    pub fn builder() -> EnvProviderBuilder {
        EnvProviderBuilder::default()
    }

    /// Reads `ENCRYPTION_KEY`, `ENCRYPTION_KEY_PREVIOUS` and `KMS_KEY_ID`
    /// from the process environment.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable at fault.
    pub fn from_env() -> Result<Self> {
        EnvProviderBuilder::from_lookup(|name| std::env::var(name).ok())?.build()
    }

    fn lookup(&self, key_id: &KeyId) -> Result<()> {
        if *key_id == self.key_id {
            Ok(())
        } else {
            Err(Error::key_not_found(key_id, None))
        }
    }
}

/// Builds an [`EnvProvider`].
#[derive(Default)]
pub struct EnvProviderBuilder {
    key_id: Option<KeyId>,
    current: Option<SecretString>,
    previous: Vec<SecretString>,
}

impl fmt::Debug for EnvProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvProviderBuilder")
            .field("key_id", &self.key_id)
            .field(
                "encryption_key",
                &self.current.as_ref().map(|_| "[REDACTED]"),
            )
            .field("previous_keys", &self.previous.len())
            .finish()
    }
}

impl EnvProviderBuilder {
    /// Reads `KMS_KEY_ID`, `ENCRYPTION_KEY` and `ENCRYPTION_KEY_PREVIOUS`
    /// through `lookup` (for example `|n| std::env::var(n).ok()`).
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid `KMS_KEY_ID`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut b = EnvProviderBuilder::default();
        if let Some(id) = lookup("KMS_KEY_ID").filter(|v| !v.trim().is_empty()) {
            b.key_id = Some(KeyId::new(id.trim())?);
        }
        if let Some(v) = lookup(ENCRYPTION_KEY).filter(|v| !v.is_empty()) {
            b.current = Some(SecretString::from(v));
        }
        if let Some(v) = lookup(ENCRYPTION_KEY_PREVIOUS) {
            let v = Zeroizing::new(v);
            b.previous = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| SecretString::from(s.to_owned()))
                .collect();
        }
        Ok(b)
    }

    /// The key id served (default `default`).
    #[must_use]
    pub fn key_id(mut self, key_id: KeyId) -> Self {
        self.key_id = Some(key_id);
        self
    }

    /// The current key (`ENCRYPTION_KEY`): 64 hex characters or a passphrase
    /// of at least 32 characters that is not only hex digits.
    #[must_use]
    pub fn encryption_key(mut self, value: impl Into<String>) -> Self {
        self.current = Some(SecretString::from(value.into()));
        self
    }

    /// Adds an older key (`ENCRYPTION_KEY_PREVIOUS`), used only to decrypt.
    #[must_use]
    pub fn previous_key(mut self, value: impl Into<String>) -> Self {
        self.previous.push(SecretString::from(value.into()));
        self
    }

    /// Validates the keys and builds the provider. Logs, once per process,
    /// a warning that env keys are for development only.
    ///
    /// # Errors
    /// [`Error::Config`] naming `ENCRYPTION_KEY` when it is missing or too
    /// short, or `ENCRYPTION_KEY_PREVIOUS` when one of its keys is;
    /// [`Error::InvalidKeyLength`] when either holds hex digits of another
    /// length than 64 (see [`key_from_value`]).
    pub fn build(self) -> Result<EnvProvider> {
        let key_id = self.key_id.unwrap_or_default();
        let current = self.current.ok_or_else(|| {
            Error::config(
                ENCRYPTION_KEY,
                "is not set: the env provider needs a key (generate one with `kms generate-key`)",
            )
        })?;
        let current = key_from_value(current.expose_secret(), ENCRYPTION_KEY)?;
        let current = DataKey::new(key_id.clone(), version_of(&current)?, current);

        let mut by_version = HashMap::new();
        let mut order = Vec::new();
        // ENCRYPTION_KEY_PREVIOUS lists the most recent first; versions go oldest first.
        for (i, value) in self.previous.iter().enumerate().rev() {
            let material = parse_key(value.expose_secret(), ENCRYPTION_KEY_PREVIOUS, Some(i + 1))?;
            let version = version_of(&material)?;
            if version == *current.version() || by_version.contains_key(&version) {
                continue;
            }
            order.push(version.clone());
            by_version.insert(
                version.clone(),
                DataKey::new(key_id.clone(), version, material),
            );
        }
        order.push(current.version().clone());
        by_version.insert(current.version().clone(), current.clone());

        DEV_WARNING.call_once(|| {
            tracing::warn!(
                target: "kms::env",
                "using the env key provider: keys come from environment variables, \
                 which is for development and tests only; use aws, gcp or vault in production"
            );
        });
        Ok(EnvProvider {
            key_id,
            current,
            by_version,
            order,
        })
    }
}

fn version_of(material: &KeyMaterial) -> Result<KeyVersion> {
    KeyVersion::new(&material.fingerprint().to_string())
}

#[async_trait]
impl KeyProvider for EnvProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        self.lookup(key_id)?;
        Ok(self.current.clone())
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        self.lookup(key_id)?;
        self.by_version
            .get(version)
            .cloned()
            .ok_or_else(|| Error::key_not_found(key_id, Some(version)))
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        self.lookup(key_id)?;
        Ok(self
            .order
            .iter()
            .map(|v| VersionInfo::new(v.clone(), None, true))
            .collect())
    }

    async fn rotate(&self, key_id: &KeyId, _live: &LiveVersions) -> Result<DataKey> {
        self.lookup(key_id)?;
        Err(Error::Unsupported {
            provider: PROVIDER,
            message: ROTATE_HELP.into(),
        })
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        self.lookup(key_id)?;
        let mut m = KeyMetadata::new(key_id.clone(), PROVIDER);
        m.description = Some(
            "Development key from the ENCRYPTION_KEY environment variable (not for production)"
                .into(),
        );
        m.current_version = Some(self.current.version().clone());
        m.version_count = Some(self.order.len() as u64);
        Ok(m)
    }

    async fn health(&self) -> HealthStatus {
        HealthStatus::healthy(PROVIDER, 0)
    }
}

#[cfg(test)]
mod tests {
    use kms_testing::lookup;

    use super::*;

    kms_testing::settings_declared_test!(crate::SETTINGS, EnvProviderBuilder);

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";
    const PASS: &str = "your_encryption_key_here_32_chars_minimum";

    #[test]
    fn hex_keys_are_used_as_is() {
        let k = key_from_value(K1, ENCRYPTION_KEY).unwrap();
        assert_eq!(k, KeyMaterial::from_hex(K1).unwrap());
    }

    #[test]
    fn passphrases_are_stretched_with_hkdf() {
        let k = key_from_value(PASS, ENCRYPTION_KEY).unwrap();
        // Known answer: HKDF-SHA256(salt "kms-env/v1/salt", ikm PASS, info "kms-env/v1/key").
        let hk = Hkdf::<Sha256>::new(Some(b"kms-env/v1/salt"), PASS.as_bytes());
        let mut want = [0u8; 32];
        hk.expand(b"kms-env/v1/key", &mut want).unwrap();
        assert_eq!(k.expose_secret(), &want);
        assert_ne!(
            k,
            key_from_value(&format!("{PASS}!"), ENCRYPTION_KEY).unwrap()
        );
    }

    #[test]
    fn short_values_are_refused_without_echoing_them() {
        let err = key_from_value("short-secret-value", ENCRYPTION_KEY).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ENCRYPTION_KEY"), "{text}");
        assert!(!text.contains("short-secret-value"), "{text}");
        assert!(!format!("{err:?}").contains("short-secret-value"));
    }

    /// Hex digits of another length than 64: typos, never passphrases.
    const HEX_TYPOS: [&str; 4] = [
        "deadbeef",
        // 63 and 65 characters.
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0",
        // 62 characters, upper case.
        "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E",
    ];

    #[test]
    fn hex_of_the_wrong_length_is_refused_not_stretched() {
        assert_eq!(HEX_TYPOS.map(str::len), [8, 63, 65, 62]);
        for typo in HEX_TYPOS {
            for value in [typo.to_owned(), format!(" {typo}\n")] {
                let err = key_from_value(&value, ENCRYPTION_KEY).unwrap_err();
                assert!(matches!(err, Error::InvalidKeyLength), "{typo}: {err:?}");
                assert_eq!(err.to_string(), "Invalid key length: expected 32 bytes");
            }
            let err = EnvProvider::builder()
                .encryption_key(typo)
                .build()
                .unwrap_err();
            assert!(matches!(err, Error::InvalidKeyLength), "{typo}: {err:?}");
            let err = EnvProvider::builder()
                .encryption_key(K1)
                .previous_key(K2)
                .previous_key(typo)
                .build()
                .unwrap_err();
            assert!(matches!(err, Error::InvalidKeyLength), "{typo}: {err:?}");
            let err = EnvProviderBuilder::from_lookup(lookup(&[
                ("ENCRYPTION_KEY", K1),
                ("ENCRYPTION_KEY_PREVIOUS", &format!("{K2}, {typo}")),
            ]))
            .unwrap()
            .build()
            .unwrap_err();
            assert!(matches!(err, Error::InvalidKeyLength), "{typo}: {err:?}");
        }
        // 64 hex digits in either case are still a key.
        assert_eq!(
            key_from_value(&K1.to_uppercase(), ENCRYPTION_KEY).unwrap(),
            KeyMaterial::from_hex(K1).unwrap()
        );
    }

    #[test]
    fn refused_hex_is_logged_by_variable_without_the_value() {
        let typo = HEX_TYPOS[1];
        let (res, c) = kms_testing::capture::observe(tracing::Level::WARN, async {
            EnvProvider::builder()
                .encryption_key(K1)
                .previous_key(K2)
                .previous_key(typo)
                .build()
        })
        .unwrap();
        assert!(matches!(res.unwrap_err(), Error::InvalidKeyLength));
        let events = c.events("kms::env");
        assert_eq!(events.len(), 1, "{}", c.raw);
        let fields = &events[0]["fields"];
        assert_eq!(fields["variable"], "ENCRYPTION_KEY_PREVIOUS");
        assert_eq!(fields["entry"], 2);
        assert_eq!(fields["hex_digits"], 63);
        assert!(!c.raw.contains(&typo[..16]), "{}", c.raw);
    }

    #[test]
    fn passphrases_work_and_warn_without_showing_them() {
        // 40 characters, not all hex.
        let pass = "correct horse battery staple, 40 chars!!";
        assert_eq!(pass.len(), 40);
        let (res, c) = kms_testing::capture::observe(tracing::Level::WARN, async {
            EnvProvider::builder()
                .encryption_key(pass)
                .previous_key(PASS)
                .build()
        })
        .unwrap();
        let p = res.unwrap();
        let key = key_from_value(pass, ENCRYPTION_KEY).unwrap();
        assert_eq!(p.current.material(), &key);
        let warnings: Vec<_> = c
            .events("kms::env")
            .into_iter()
            .filter(|e| e["level"] == "WARN" && e["fields"]["variable"].is_string())
            .collect();
        assert_eq!(warnings.len(), 2, "{}", c.raw);
        assert_eq!(warnings[0]["fields"]["variable"], "ENCRYPTION_KEY");
        assert_eq!(warnings[1]["fields"]["variable"], "ENCRYPTION_KEY_PREVIOUS");
        assert_eq!(warnings[1]["fields"]["entry"], 1);
        let message = warnings[0]["fields"]["message"].as_str().unwrap();
        assert!(message.contains("passphrase"), "{message}");
        assert!(message.contains("offline"), "{message}");
        for secret in [pass, "horse battery", PASS, "encryption_key_here"] {
            assert!(!c.raw.contains(secret), "{secret} in {}", c.raw);
        }
        // Keys made of 64 hex digits log nothing of the sort.
        let ((), c) = kms_testing::capture::observe(tracing::Level::WARN, async {
            key_from_value(K1, ENCRYPTION_KEY).unwrap();
        })
        .unwrap();
        assert!(c.events("kms::env").is_empty(), "{}", c.raw);
    }

    #[test]
    fn other_formats_are_passphrases_as_before() {
        // Base64 of 32 bytes (`openssl rand -base64 32`) and `0x`-prefixed
        // hex are not hex digits only: stretched as before, with the warning.
        for value in [
            "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=",
            "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ] {
            let k = key_from_value(value, ENCRYPTION_KEY).unwrap();
            let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), value.as_bytes());
            let mut want = [0u8; 32];
            hk.expand(HKDF_INFO, &mut want).unwrap();
            assert_eq!(k.expose_secret(), &want);
        }
        // Blank values are missing keys, not hex of length 0.
        let err = key_from_value("   ", ENCRYPTION_KEY).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn current_and_previous_keys() {
        let p = EnvProviderBuilder::from_lookup(lookup(&[
            ("ENCRYPTION_KEY", K1),
            ("ENCRYPTION_KEY_PREVIOUS", &format!(" {K2} , {PASS},")),
        ]))
        .unwrap()
        .build()
        .unwrap();
        let id = KeyId::default();
        let cur = p.current_key(&id).await.unwrap();
        assert_eq!(cur.material(), &KeyMaterial::from_hex(K1).unwrap());
        let versions = p.versions(&id).await.unwrap();
        assert_eq!(versions.len(), 3);
        assert_eq!(&versions[2].version, cur.version());
        let k2 = KeyMaterial::from_hex(K2).unwrap();
        // K2 is listed first in PREVIOUS, so it is the newer of the two old keys.
        assert_eq!(versions[1].version.as_str(), k2.fingerprint().to_string());
        let old = p.key_version(&id, &versions[1].version).await.unwrap();
        assert_eq!(old.material(), &k2);
        let missing = p
            .key_version(&id, &KeyVersion::new("0000000000000000").unwrap())
            .await
            .unwrap_err();
        assert_eq!(missing.to_string(), "Encryption key not found: default");
    }

    #[tokio::test]
    async fn other_key_ids_are_not_found() {
        let p = EnvProvider::builder()
            .key_id(KeyId::new("payments").unwrap())
            .encryption_key(K1)
            .build()
            .unwrap();
        let err = p.current_key(&KeyId::default()).await.unwrap_err();
        assert_eq!(err.to_string(), "Encryption key not found: default");
        assert!(
            p.current_key(&KeyId::new("payments").unwrap())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn rotate_explains_how() {
        let p = EnvProvider::builder().encryption_key(K1).build().unwrap();
        let err = p
            .rotate(&KeyId::default(), &LiveVersions::all())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }));
        let text = err.to_string();
        assert!(text.contains("ENCRYPTION_KEY_PREVIOUS"), "{text}");
        assert!(text.contains("kms generate-key"), "{text}");
    }

    #[test]
    fn missing_key_names_the_variable() {
        let err = EnvProviderBuilder::from_lookup(lookup(&[]))
            .unwrap()
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("ENCRYPTION_KEY"));
        let err = EnvProvider::builder()
            .encryption_key(K1)
            .previous_key("too short")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("ENCRYPTION_KEY_PREVIOUS"));
    }

    #[test]
    fn debug_hides_keys() {
        let b = EnvProvider::builder().encryption_key(K1).previous_key(K2);
        let text = format!("{b:?}");
        assert!(
            !text.contains("0102030405") && !text.contains("1f1e1d"),
            "{text}"
        );
        let p = b.build().unwrap();
        let text = format!("{p:?}");
        assert!(
            !text.contains("0102030405") && !text.contains("1f1e1d"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn metadata_and_health() {
        let p = EnvProvider::builder().encryption_key(K1).build().unwrap();
        let m = p.metadata(&KeyId::default()).await.unwrap();
        assert_eq!(m.key_usage, "ENCRYPT_DECRYPT");
        assert_eq!(m.key_spec, "AES-256");
        assert!(m.enabled);
        assert_eq!(m.version_count, Some(1));
        let h = p.health().await;
        assert!(h.healthy);
        assert_eq!(h.provider, "env");
    }
}
