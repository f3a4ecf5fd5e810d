//! The env provider: conformance and the facade's from-environment path.

use std::sync::Arc;

use kms::env::EnvProvider;
use kms::{Error, KeyId, KeyMaterial, KeyProvider, Kms, KmsBuilder};
use kms_tests::conformance::{self, Expect};

const K1: &str = "5f0c2e8a9b1d3f4e6a7c8b9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
const K0: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#[tokio::test]
async fn env_provider_conformance() {
    let p = EnvProvider::builder()
        .encryption_key(K1)
        .previous_key(K0)
        .build()
        .unwrap();
    conformance::run(Arc::new(p), &KeyId::default(), Expect { rotates: false }).await;
}

#[tokio::test]
async fn env_passphrase_provider_conformance() {
    let p = EnvProvider::builder()
        .key_id(KeyId::new("tenant-7").unwrap())
        .encryption_key("a development passphrase of 32+ characters")
        .build()
        .unwrap();
    conformance::run(
        Arc::new(p),
        &KeyId::new("tenant-7").unwrap(),
        Expect { rotates: false },
    )
    .await;
}

/// The spec's migration story for env keys: data written under the old key
/// decrypts after the key moves to ENCRYPTION_KEY_PREVIOUS.
#[tokio::test]
async fn env_rotation_by_previous_keys() {
    let lookup_old = |n: &str| (n == "ENCRYPTION_KEY").then(|| K0.to_owned());
    let old = KmsBuilder::from_lookup(lookup_old)
        .unwrap()
        .build()
        .await
        .unwrap();
    let ct = old.encrypt_str("token", b"").await.unwrap();

    let lookup_new = |n: &str| match n {
        "ENCRYPTION_KEY" => Some(K1.to_owned()),
        "ENCRYPTION_KEY_PREVIOUS" => Some(K0.to_owned()),
        _ => None,
    };
    let new = KmsBuilder::from_lookup(lookup_new)
        .unwrap()
        .build()
        .await
        .unwrap();
    assert_eq!(new.decrypt_str(&ct, b"").await.unwrap(), "token");
    let fresh = new.encrypt(b"x", b"").await.unwrap();
    let env = kms::Envelope::parse(&fresh).unwrap();
    assert_eq!(
        env.fingerprint(),
        KeyMaterial::from_hex(K1).unwrap().fingerprint()
    );
}

/// A ciphertext keeps decrypting when the key's versions are renumbered (as
/// after copying a key to another provider): the fingerprint finds the key.
#[tokio::test]
async fn fingerprint_finds_the_key_when_versions_differ() {
    #[derive(Debug)]
    struct Renumbered(EnvProvider);
    #[kms::core::async_trait]
    impl KeyProvider for Renumbered {
        fn name(&self) -> &'static str {
            "renumbered"
        }
        async fn current_key(&self, id: &KeyId) -> kms::Result<kms::DataKey> {
            let k = self.0.current_key(id).await?;
            Ok(renumber(&k, 2))
        }
        async fn key_version(&self, id: &KeyId, v: &kms::KeyVersion) -> kms::Result<kms::DataKey> {
            let list = self.0.versions(id).await?;
            let idx: usize = v
                .as_str()
                .parse()
                .map_err(|_| Error::key_not_found(id, Some(v)))?;
            let info = list
                .get(idx.wrapping_sub(1))
                .ok_or_else(|| Error::key_not_found(id, Some(v)))?;
            let k = self.0.key_version(id, &info.version).await?;
            Ok(renumber(&k, idx as u64))
        }
        async fn versions(&self, id: &KeyId) -> kms::Result<Vec<kms::VersionInfo>> {
            let list = self.0.versions(id).await?;
            Ok((1..=list.len() as u64)
                .map(|n| kms::VersionInfo::new(n.into(), None, true))
                .collect())
        }
        async fn metadata(&self, id: &KeyId) -> kms::Result<kms::KeyMetadata> {
            self.0.metadata(id).await
        }
        async fn health(&self) -> kms::HealthStatus {
            self.0.health().await
        }
    }
    fn renumber(k: &kms::DataKey, n: u64) -> kms::DataKey {
        let m = KeyMaterial::from_slice(k.material().expose_secret()).unwrap();
        kms::DataKey::new(k.key_id().clone(), n.into(), m)
    }

    // Written by the env provider, whose versions are fingerprints...
    let env = EnvProvider::builder()
        .encryption_key(K1)
        .previous_key(K0)
        .build()
        .unwrap();
    let writer = Kms::builder()
        .provider(EnvProvider::builder().encryption_key(K0).build().unwrap())
        .build()
        .await
        .unwrap();
    let old_ct = writer.encrypt(b"old", b"").await.unwrap();
    // ...read through a provider that numbers the same keys 1 and 2.
    let reader = Kms::builder()
        .provider(Renumbered(env))
        .build()
        .await
        .unwrap();
    assert_eq!(reader.decrypt(&old_ct, b"").await.unwrap(), b"old");
}

#[tokio::test]
async fn blocking_api_from_plain_threads() {
    let kms = kms::blocking::Kms::build(Kms::builder().env_key(K1)).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let kms = kms.clone();
            std::thread::spawn(move || {
                let s = kms.encrypt_str(&format!("value {i}"), b"").unwrap();
                kms.decrypt_str(&s, b"").unwrap()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), format!("value {i}"));
    }
}
