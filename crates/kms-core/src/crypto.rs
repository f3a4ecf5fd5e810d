//! AES-256-GCM sealing and opening in the ciphertext format of [`crate::format`].

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::{U12, U16};
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
    let mut iv = [0u8; 16];
    let iv = iv.get_mut(..iv_len.size()).unwrap_or_default();
    crate::random::fill(iv);
    seal_with_iv(key, iv, plaintext, aad)
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
    let iv_len = IvLength::from_len(iv.len()).ok_or(Error::malformed("unsupported IV length"))?;
    check_plaintext_len(plaintext.len())?;
    let header_len = format::header_len(key, iv_len);
    let mut out = Vec::with_capacity(header_len + plaintext.len() + TAG_LEN);
    format::write_header(&mut out, key, iv.len());
    out.extend_from_slice(iv);
    out.extend_from_slice(plaintext);

    let (header, body) = out.split_at_mut(header_len);
    let full_aad = associated_data(header, aad);
    let tag = match iv_len {
        IvLength::Twelve => {
            let nonce: &Array<u8, U12> = iv
                .try_into()
                .map_err(|_| Error::malformed("unsupported IV length"))?;
            key.gcm12()
                .encrypt_inout_detached(nonce, &full_aad, body.into())
        }
        IvLength::Sixteen => {
            let nonce: &Array<u8, U16> = iv
                .try_into()
                .map_err(|_| Error::malformed("unsupported IV length"))?;
            key.gcm16()
                .encrypt_inout_detached(nonce, &full_aad, body.into())
        }
    }
    .map_err(|_| Error::InputTooLarge)?;
    out.extend_from_slice(&tag);
    Ok(out)
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
    if key.fingerprint() != envelope.fingerprint() {
        return Err(Error::key_not_found(
            envelope.key_id_str(),
            Some(envelope.fingerprint()),
        ));
    }
    let full_aad = associated_data(envelope.header(), aad);
    let mut out = envelope.ciphertext().to_vec();
    let tag = Array::from(*envelope.tag());
    let iv = envelope.iv();
    let result = match IvLength::from_len(iv.len()) {
        Some(IvLength::Twelve) => {
            let nonce: &Array<u8, U12> = iv.try_into().map_err(|_| Error::Decryption)?;
            key.gcm12()
                .decrypt_inout_detached(nonce, &full_aad, out.as_mut_slice().into(), &tag)
        }
        Some(IvLength::Sixteen) => {
            let nonce: &Array<u8, U16> = iv.try_into().map_err(|_| Error::Decryption)?;
            key.gcm16()
                .decrypt_inout_detached(nonce, &full_aad, out.as_mut_slice().into(), &tag)
        }
        _ => return Err(Error::malformed("unsupported IV length")),
    };
    result.map_err(|_| Error::Decryption)?;
    Ok(out)
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
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
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
}
