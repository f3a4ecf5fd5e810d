//! Property and adversarial tests of the ciphertext format and AES-256-GCM.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use kms_core::{
    DataKey, Envelope, Error, IvLength, KeyId, KeyMaterial, KeyVersion, crypto, format,
};
use proptest::prelude::*;

fn key_with(hex: &str, version: u64) -> DataKey {
    DataKey::new(
        KeyId::new("default").unwrap(),
        KeyVersion::from(version),
        KeyMaterial::from_hex(hex).unwrap(),
    )
}

fn key() -> DataKey {
    key_with(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        1,
    )
}

fn decrypt(key: &DataKey, ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, Error> {
    let env = Envelope::parse(ct)?;
    crypto::open(key, &env, aad)
}

#[test]
fn round_trip_sizes_0_to_1_mib() {
    let k = key();
    for size in [0usize, 1, 15, 16, 17, 63, 64, 1024, 4095, 65_536, 1 << 20] {
        let pt: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        for iv in [IvLength::Twelve, IvLength::Sixteen] {
            let ct = crypto::seal(&k, iv, &pt, b"ctx").unwrap();
            assert_eq!(
                ct.len(),
                format::header_len(&k, iv) + size + format::TAG_LEN
            );
            assert_eq!(decrypt(&k, &ct, b"ctx").unwrap(), pt, "size {size}");
            let text = format::to_text(&ct);
            assert!(text.starts_with("kms:v1:"));
            assert_eq!(format::from_text(&text).unwrap(), ct);
        }
    }
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let k = key();
    for iv in [IvLength::Twelve, IvLength::Sixteen] {
        let ct = crypto::seal(&k, iv, b"an API token to protect", b"users:42").unwrap();
        for i in 0..ct.len() {
            for bit in 0..8 {
                let mut bad = ct.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    decrypt(&k, &bad, b"users:42").is_err(),
                    "flip of bit {bit} in byte {i} was accepted"
                );
            }
        }
    }
}

#[test]
fn truncated_and_extended_inputs_are_rejected() {
    let k = key();
    let ct = crypto::seal(&k, IvLength::Twelve, b"payload", b"").unwrap();
    for len in 0..ct.len() {
        assert!(decrypt(&k, &ct[..len], b"").is_err(), "truncated to {len}");
    }
    for extra in [&[0u8][..], &[0, 0, 0, 0], &ct[..]] {
        let mut long = ct.clone();
        long.extend_from_slice(extra);
        assert!(decrypt(&k, &long, b"").is_err());
    }
}

#[test]
fn unknown_format_version_is_typed() {
    let k = key();
    let mut ct = crypto::seal(&k, IvLength::Twelve, b"payload", b"").unwrap();
    ct[2] = 2;
    assert!(matches!(
        decrypt(&k, &ct, b""),
        Err(Error::UnsupportedFormatVersion { version: 2 })
    ));
}

#[test]
fn wrong_key_with_same_version_is_detected_before_aes() {
    let a = key();
    let b = key_with(
        "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100",
        1,
    );
    let ct = crypto::seal(&a, IvLength::Twelve, b"payload", b"").unwrap();
    let err = decrypt(&b, &ct, b"").unwrap_err();
    assert!(matches!(err, Error::KeyNotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), "Encryption key not found: default");
}

#[test]
fn no_key_bytes_in_debug_or_errors() {
    let hex = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let k = key_with(hex, 3);
    let ct = crypto::seal(&k, IvLength::Twelve, b"payload", b"").unwrap();
    let env = Envelope::parse(&ct).unwrap();
    let wrong = key();
    let outputs = [
        format!("{k:?}"),
        format!("{:?}", k.material()),
        format!("{env:?}"),
        format!("{:?}", crypto::open(&wrong, &env, b"")),
        format!("{}", crypto::open(&wrong, &env, b"").unwrap_err()),
        format!("{:?}", KeyMaterial::from_hex(&hex[..60])),
    ];
    let raw_debug = format!("{:?}", k.material().expose_secret());
    for out in outputs {
        assert!(!out.contains(&hex[..16]), "{out}");
        assert!(!out.contains(&raw_debug[1..20]), "{out}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_any(pt in proptest::collection::vec(any::<u8>(), 0..4096),
                      aad in proptest::collection::vec(any::<u8>(), 0..64),
                      sixteen in any::<bool>()) {
        let k = key();
        let iv = if sixteen { IvLength::Sixteen } else { IvLength::Twelve };
        let ct = crypto::seal(&k, iv, &pt, &aad).unwrap();
        prop_assert_eq!(decrypt(&k, &ct, &aad).unwrap(), pt);
    }

    /// The decryption fast path reads what the full parser reads, for the
    /// key's own ciphertexts, damaged ones and other keys' ones.
    #[test]
    fn parse_under_answers_what_parse_does(
        id in "[A-Za-z0-9_-]{1,40}",
        version in 1u64..u64::MAX,
        pt in proptest::collection::vec(any::<u8>(), 0..64),
        sixteen in any::<bool>(),
        damage in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..3),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let k = DataKey::new(KeyId::new(&id).unwrap(), KeyVersion::from(version), KeyMaterial::generate());
        let iv = if sixteen { IvLength::Sixteen } else { IvLength::Twelve };
        let ct = crypto::seal(&k, iv, &pt, b"").unwrap();
        let whole = Envelope::parse_under(&ct, &k).expect("the key's own ciphertext");
        prop_assert_eq!(format!("{whole:?}"), format!("{:?}", Envelope::parse(&ct).unwrap()));
        // Another version of the same key id, or other material: not its header.
        let next = DataKey::new(k.key_id().clone(), KeyVersion::from(version - 1), KeyMaterial::generate());
        prop_assert!(Envelope::parse_under(&ct, &next).is_none());

        let mut bad = ct.clone();
        for (at, x) in &damage {
            bad[at.index(ct.len())] ^= x;
        }
        if let Some(at) = cut {
            bad.truncate(at.index(ct.len()));
        }
        match Envelope::parse_under(&bad, &k) {
            Some(fast) => prop_assert_eq!(
                format!("{fast:?}"),
                format!("{:?}", Envelope::parse(&bad).unwrap())
            ),
            // Only a damaged header or a truncation sends it to the full parser.
            None => prop_assert!(bad.len() < ct.len() || bad[..whole.header().len()] != ct[..whole.header().len()]),
        }
    }

    #[test]
    fn garbage_binary_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let k = key();
        prop_assert!(decrypt(&k, &bytes, b"").is_err());
    }

    #[test]
    fn garbage_with_valid_magic_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut bytes = b"KM\x01".to_vec();
        bytes.extend_from_slice(&tail);
        let k = key();
        prop_assert!(decrypt(&k, &bytes, b"").is_err());
    }

    #[test]
    fn garbage_text_never_panics(s in ".{0,300}") {
        let _ = format::from_text(&s);
        let with_prefix = format!("kms:v1:{s}");
        if let Ok(bin) = format::from_text(&with_prefix) {
            prop_assert!(decrypt(&key(), &bin, b"").is_err());
        }
    }

    #[test]
    fn mutated_ciphertexts_are_rejected(pos in any::<prop::sample::Index>(), val in any::<u8>()) {
        let k = key();
        let ct = crypto::seal(&k, IvLength::Twelve, b"some secret value", b"aad").unwrap();
        let i = pos.index(ct.len());
        prop_assume!(ct[i] != val);
        let mut bad = ct.clone();
        bad[i] = val;
        prop_assert!(decrypt(&k, &bad, b"aad").is_err());
    }
}
