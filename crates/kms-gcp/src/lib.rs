#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod builder;
mod call;
mod provider;

pub use builder::GcpProviderBuilder;
use kms_core::settings::Setting;
pub use provider::GcpProvider;

/// The provider's name (`KMS_PROVIDER=gcp`).
pub const PROVIDER: &str = "gcp";

/// Every setting of this provider, declared once: the variables
/// [`GcpProviderBuilder::from_lookup`] reads (and
/// `GOOGLE_APPLICATION_CREDENTIALS`, which the Google client reads itself),
/// with their names in the admin API's configuration document.
pub const SETTINGS: &[Setting] = &[
    Setting::new("GOOGLE_CLOUD_PROJECT").fields(&["projectId"]),
    Setting::new("GOOGLE_APPLICATION_CREDENTIALS"),
    Setting::new("KMS_GCP_ENDPOINT")
        .fields(&["endpoint"])
        .endpoint(),
    Setting::new("KMS_GCP_SECRET_PREFIX")
        .fields(&["secretPrefix"])
        .default(DEFAULT_SECRET_PREFIX),
    Setting::new("KMS_GCP_KMS_KEY_NAME").fields(&["kmsKeyName"]),
    Setting::new("KMS_GCP_ANONYMOUS")
        .fields(&["anonymous"])
        .default("false"),
];

/// Default prefix of the secret ids (`KMS_GCP_SECRET_PREFIX`), as in the
/// spec's set-up: key id `default` is the secret
/// `boosterbeacon-encryption-key-default`.
pub const DEFAULT_SECRET_PREFIX: &str = "boosterbeacon-encryption-key-";

/// Longest secret id Secret Manager accepts.
pub const MAX_SECRET_ID_LEN: usize = 255;
