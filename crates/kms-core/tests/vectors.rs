//! The test vectors of docs/FORMAT.md, read from the document itself so the
//! two cannot drift apart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::collections::HashMap;

use kms_core::{DataKey, Envelope, KeyId, KeyMaterial, KeyVersion, crypto, format};

const DOC: &str = include_str!("../../../docs/FORMAT.md");

fn vectors() -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    let mut current: Option<HashMap<String, String>> = None;
    for line in DOC.lines() {
        match (line.trim(), current.as_mut()) {
            ("```vector", None) => current = Some(HashMap::new()),
            ("```", Some(_)) => out.push(current.take().unwrap()),
            (l, Some(map)) => {
                let (k, v) = l.split_once(':').expect("field: value");
                map.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => {}
        }
    }
    out
}

fn hex(v: &HashMap<String, String>, field: &str) -> Vec<u8> {
    hex::decode(v[field].replace(' ', "")).unwrap()
}

#[test]
fn format_md_vectors() {
    let vectors = vectors();
    assert!(
        vectors.len() >= 3,
        "FORMAT.md must carry at least three vectors"
    );
    for v in &vectors {
        let material = KeyMaterial::from_hex(&v["key"]).unwrap();
        assert_eq!(material.fingerprint().to_string(), v["fingerprint"]);
        let key = DataKey::new(
            KeyId::new(&v["key_id"]).unwrap(),
            KeyVersion::new(&v["key_version"]).unwrap(),
            material,
        );
        let (iv, aad, pt, ct) = (
            hex(v, "iv"),
            hex(v, "aad"),
            hex(v, "plaintext"),
            hex(v, "ciphertext"),
        );

        // Encrypting with the vector's IV gives exactly the documented bytes.
        assert_eq!(crypto::seal_with_iv(&key, &iv, &pt, &aad).unwrap(), ct);
        assert_eq!(format::to_text(&ct), v["text"]);

        // Decrypting the documented bytes and text gives the plaintext back.
        let env = Envelope::parse(&ct).unwrap();
        assert_eq!(env.key_id_str(), v["key_id"]);
        assert_eq!(env.key_version().unwrap().as_str(), v["key_version"]);
        assert_eq!(env.iv(), iv.as_slice());
        assert_eq!(crypto::open(&key, &env, &aad).unwrap(), pt);
        let from_text = format::from_text(&v["text"]).unwrap();
        assert_eq!(from_text, ct);

        // And the AAD matters.
        let mut other_aad = aad.clone();
        other_aad.push(b'!');
        assert!(crypto::open(&key, &env, &other_aad).is_err());
    }
}
