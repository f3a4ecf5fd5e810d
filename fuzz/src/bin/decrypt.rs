//! Decryption through the facade's whole stack, the key looked up from the
//! header (version, fingerprint search), over an in-memory provider with
//! three versions of `default` and a minimum decryption version.
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use kms::{KeyId, KeyProvider, Kms, KmsBuilder, KeyVersion, LiveVersions};

fn main() {
    let rt = kms_fuzz::runtime();
    let kms: Kms = rt.block_on(async {
        let p = Arc::new(kms_testing::MemoryProvider::with_key(KeyId::default()));
        for _ in 0..2 {
            p.rotate(&KeyId::default(), &LiveVersions::all()).await.expect("rotate");
        }
        KmsBuilder::new()
            .provider_arc(p)
            // No wait before listing a key again (the bound against forged
            // ciphertexts slows each one by up to 250 ms): the in-memory
            // provider lists for free, and the fuzzer wants executions.
            .cache(kms::cache::CacheConfig {
                list_refresh: std::time::Duration::ZERO,
                ..kms::cache::CacheConfig::default()
            })
            .min_decryption_version(KeyId::default(), KeyVersion::from(2))
            .build()
            .await
            .expect("a Kms over the memory provider")
    });
    // The closure must be unwind-safe; panics abort here anyway.
    let (rt, kms) = (AssertUnwindSafe(rt), AssertUnwindSafe(kms));
    afl::fuzz!(|data: &[u8]| {
        rt.block_on(async {
            let _ = kms.decrypt(data, b"").await;
            if let Ok(text) = std::str::from_utf8(data) {
                let _ = kms.decrypt_text(text, b"aad").await;
            }
        });
    });
}
