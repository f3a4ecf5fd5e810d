//! AES-256-GCM sealing and opening in the ciphertext format of [`crate::format`].

use std::borrow::Cow;

use crate::error::{Error, Result};
use crate::format::{self, Envelope, IvLength, TAG_LEN};
use crate::key::DataKey;

/// Largest plaintext AES-GCM can encrypt under one IV: 2^36 - 32 bytes.
const P_MAX: u64 = (1 << 36) - 32;

/// Refuses a plaintext longer than GCM allows under one IV ([`P_MAX`]).
fn check_plaintext_len(len: usize) -> Result<()> {
    if len as u64 > P_MAX {
        Err(Error::InputTooLarge)
    } else {
        Ok(())
    }
}

/// Fills `iv` from the generator every IV of [`seal`] comes from: the
/// thread-local CSPRNG, reseeded from the operating system after a
/// `fork()` (see `kms-core/src/random.rs`).
pub fn fill_iv(iv: &mut [u8]) {
    crate::random::fill(iv);
}

/// Encrypts `plaintext` under `key` with a fresh random IV, binding `aad`.
///
/// Returns the binary ciphertext format. The IV comes from the thread-local
/// CSPRNG (`rand::rng()`, ChaCha-based, seeded and periodically reseeded
/// from the operating system, and reseeded after a `fork()`: see
/// `kms-core/src/random.rs`).
///
/// # Errors
/// [`Error::InputTooLarge`] if the plaintext exceeds what GCM allows.
pub fn seal(key: &DataKey, iv_len: IvLength, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    seal_into(key, iv_len, plaintext, aad, &mut out)?;
    Ok(out)
}

/// As [`seal`], appending the ciphertext to `out` (which it reserves room
/// in once): a caller that reuses a buffer allocates nothing per call.
///
/// # Errors
/// As [`seal`]; `out` is then left as it was.
pub fn seal_into(
    key: &DataKey,
    iv_len: IvLength,
    plaintext: &[u8],
    aad: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut iv = [0u8; 16];
    let iv = iv.get_mut(..iv_len.size()).unwrap_or_default();
    fill_iv(iv);
    seal_with_iv_into(key, iv, plaintext, aad, out)
}

/// Encrypts with a caller-chosen IV.
///
/// **Never use this outside test vectors:** reusing an IV under the same key
/// destroys GCM's confidentiality and authenticity. [`seal`] draws a fresh
/// random IV and is what every caller wants.
///
/// # Errors
/// [`Error::MalformedCiphertext`] if the IV is neither 12 nor 16 bytes,
/// [`Error::InputTooLarge`] if the plaintext exceeds what GCM allows.
pub fn seal_with_iv(key: &DataKey, iv: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    seal_with_iv_into(key, iv, plaintext, aad, &mut out)?;
    Ok(out)
}

fn seal_with_iv_into(
    key: &DataKey,
    iv: &[u8],
    plaintext: &[u8],
    aad: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let iv_len = IvLength::from_len(iv.len()).ok_or(Error::malformed("unsupported IV length"))?;
    check_plaintext_len(plaintext.len())?;
    let start = out.len();
    let header_len = format::header_len(key, iv_len);
    out.reserve(header_len + plaintext.len() + TAG_LEN);
    format::write_header(out, key, iv_len);
    out.extend_from_slice(iv);
    out.extend_from_slice(plaintext);

    let (header, body) = out
        .get_mut(start..)
        .unwrap_or_default()
        .split_at_mut(header_len);
    let full_aad = associated_data(header, aad);
    let sealed = key
        .ciphers()
        .seal(key.material().expose_secret(), iv, &full_aad, body)
        .map_err(|_| Error::InputTooLarge);
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(e) => {
            // Nothing half-written stays in the caller's buffer, not even
            // in its spare capacity (the plaintext was copied there).
            zeroize::Zeroize::zeroize(out.get_mut(start..).unwrap_or_default());
            out.truncate(start);
            Err(e)
        }
    }
}

/// Decrypts a parsed ciphertext with `key`, checking `aad`.
///
/// The key's fingerprint must match the header's; otherwise this fails with
/// [`Error::KeyNotFound`] before any AES work.
///
/// # Errors
/// [`Error::KeyNotFound`] for a key whose fingerprint does not match,
/// [`Error::Decryption`] when the tag does not verify (tampered ciphertext or
/// header, wrong AAD).
pub fn open(key: &DataKey, envelope: &Envelope<'_>, aad: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open_into(key, envelope, aad, &mut out)?;
    Ok(out)
}

/// As [`open`], appending the plaintext to `out`.
///
/// # Errors
/// As [`open`]; `out` is then left as it was (no unauthenticated byte of
/// plaintext stays in it).
pub fn open_into(
    key: &DataKey,
    envelope: &Envelope<'_>,
    aad: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    if key.fingerprint() != envelope.fingerprint() {
        return Err(Error::KeyNotFound {
            key_id: envelope.key_id()?,
            version: envelope.key_version().ok(),
        });
    }
    let full_aad = associated_data(envelope.header(), aad);
    let start = out.len();
    out.extend_from_slice(envelope.ciphertext());
    let body = out.get_mut(start..).unwrap_or_default();
    // Envelope::parse admits 12- and 16-byte IVs only.
    let opened = key.ciphers().open(
        key.material().expose_secret(),
        envelope.iv(),
        &full_aad,
        body,
        envelope.tag(),
    );
    if opened.is_err() {
        // Wipe what the failed open left (AES-CTR output of unauthenticated
        // input) before handing the buffer back.
        zeroize::Zeroize::zeroize(out.get_mut(start..).unwrap_or_default());
        out.truncate(start);
        return Err(Error::Decryption);
    }
    Ok(())
}

/// GCM associated data: the header, then the caller's AAD. The header is
/// self-delimiting, so the concatenation is unambiguous.
fn associated_data<'a>(header: &'a [u8], aad: &[u8]) -> Cow<'a, [u8]> {
    if aad.is_empty() {
        Cow::Borrowed(header)
    } else {
        let mut v = Vec::with_capacity(header.len() + aad.len());
        v.extend_from_slice(header);
        v.extend_from_slice(aad);
        Cow::Owned(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyId, KeyMaterial, KeyVersion};

    fn key(hex: &str) -> DataKey {
        DataKey::new(
            KeyId::default(),
            KeyVersion::from(1),
            KeyMaterial::from_hex(hex).unwrap(),
        )
    }

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    #[test]
    fn round_trip_both_iv_lengths() {
        let k = key(K1);
        for iv in [IvLength::Twelve, IvLength::Sixteen] {
            for aad in [&b""[..], b"users:42"] {
                let ct = seal(&k, iv, b"secret", aad).unwrap();
                let env = Envelope::parse(&ct).unwrap();
                assert_eq!(env.iv().len(), iv.size());
                assert_eq!(open(&k, &env, aad).unwrap(), b"secret");
            }
        }
    }

    #[test]
    fn fresh_iv_each_time() {
        let k = key(K1);
        let a = seal(&k, IvLength::Twelve, b"x", b"").unwrap();
        let b = seal(&k, IvLength::Twelve, b"x", b"").unwrap();
        assert_ne!(a, b);
        assert_ne!(
            Envelope::parse(&a).unwrap().iv(),
            Envelope::parse(&b).unwrap().iv()
        );
    }

    #[test]
    fn wrong_key_is_detected_from_the_header() {
        let ct = seal(&key(K1), IvLength::Twelve, b"secret", b"").unwrap();
        let env = Envelope::parse(&ct).unwrap();
        let err = open(&key(K2), &env, b"").unwrap_err();
        assert_eq!(err.code(), "KEY_NOT_FOUND");
    }

    #[test]
    fn wrong_aad_fails() {
        let k = key(K1);
        let ct = seal(&k, IvLength::Twelve, b"secret", b"users:42").unwrap();
        let env = Envelope::parse(&ct).unwrap();
        assert!(matches!(
            open(&k, &env, b"users:43"),
            Err(Error::Decryption)
        ));
        assert!(matches!(open(&k, &env, b""), Err(Error::Decryption)));
    }

    #[test]
    fn bad_iv_length_for_seal_with_iv() {
        assert!(seal_with_iv(&key(K1), &[0; 8], b"", b"").is_err());
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn plaintext_limit_is_gcm_s() {
        // 2^36 - 32 bytes (NIST SP 800-38D): the largest accepted, one more refused.
        assert!(check_plaintext_len(68_719_476_704).is_ok());
        assert!(matches!(
            check_plaintext_len(68_719_476_705),
            Err(Error::InputTooLarge)
        ));
        assert!(check_plaintext_len(0).is_ok());
    }

    #[test]
    fn into_variants_append_and_leave_the_buffer_as_it_was_on_failure() {
        let k = key(K1);
        for iv in [IvLength::Twelve, IvLength::Sixteen] {
            let mut buf = b"prefix".to_vec();
            seal_into(&k, iv, b"secret", b"aad", &mut buf).unwrap();
            assert_eq!(&buf[..6], b"prefix");
            let env = Envelope::parse(&buf[6..]).unwrap();
            let mut out = b"kept".to_vec();
            open_into(&k, &env, b"aad", &mut out).unwrap();
            assert_eq!(out, b"keptsecret");
            // Wrong AAD: refused, nothing appended.
            let mut out = b"kept".to_vec();
            assert!(matches!(
                open_into(&k, &env, b"other", &mut out),
                Err(Error::Decryption)
            ));
            assert_eq!(out, b"kept");
            // Wrong key: refused before any work, nothing appended.
            assert_eq!(
                open_into(&key(K2), &env, b"aad", &mut out)
                    .unwrap_err()
                    .code(),
                "KEY_NOT_FOUND"
            );
            assert_eq!(out, b"kept");
        }
    }
}
