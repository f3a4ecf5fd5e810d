#![doc = include_str!("../README.md")]
// One `unsafe` block: the FFI call that registers the fork handler
// (`random.rs`); everything else is safe code.
#![deny(unsafe_code)]

mod aead;
pub mod crypto;
pub mod error;
pub mod format;
pub mod key;
pub mod provider;
pub mod provider_support;
mod random;
pub mod retention;
pub mod settings;

pub use aead::BACKEND_12;
pub use async_trait::async_trait;
pub use error::{BoxError, Error, Result, Retry, SharedError};
pub use format::{Envelope, IvLength};
pub use key::{DataKey, Fingerprint, KeyId, KeyMaterial, KeyVersion};
pub use provider::{
    HealthStatus, KeyMetadata, KeyProvider, VersionInfo, find_by_fingerprint, resolve_key,
};
pub use retention::LiveVersions;
