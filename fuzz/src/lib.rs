//! Shared set-up of the fuzz targets: fixed keys and a Tokio runtime.

use kms_core::{DataKey, KeyId, KeyMaterial, KeyVersion};

/// The fixed key of the `ciphertext` target (version 1 of key `default`).
#[must_use]
pub fn fixed_key() -> DataKey {
    DataKey::new(KeyId::default(), KeyVersion::from(1), KeyMaterial::from_bytes([0x42; 32]))
}

/// A single-threaded runtime for the async targets.
#[must_use]
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
}
