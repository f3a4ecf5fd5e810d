#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod builder;
mod call;
mod provider;

pub use builder::GcpProviderBuilder;
pub use provider::GcpProvider;

/// The provider's name (`KMS_PROVIDER=gcp`).
pub const PROVIDER: &str = "gcp";

/// Default prefix of the secret ids (`KMS_GCP_SECRET_PREFIX`), as in the
/// spec's set-up: key id `default` is the secret
/// `boosterbeacon-encryption-key-default`.
pub const DEFAULT_SECRET_PREFIX: &str = "boosterbeacon-encryption-key-";

/// Longest secret id Secret Manager accepts.
pub const MAX_SECRET_ID_LEN: usize = 255;
