#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod builder;
mod call;
mod provider;

pub use builder::AwsProviderBuilder;
use kms_core::settings::Setting;
pub use provider::{AwsProvider, LIVE_LABEL, SSM_MAX_VERSIONS};

/// The provider's name (`KMS_PROVIDER=aws`).
pub const PROVIDER: &str = "aws";

/// Every setting of this provider, declared once: the variables
/// [`AwsProviderBuilder::from_lookup`] reads, with their names in the admin
/// API's configuration document.
pub const SETTINGS: &[Setting] = &[
    Setting::new("AWS_REGION").fields(&["region"]),
    Setting::new("AWS_DEFAULT_REGION"),
    Setting::new("AWS_ENDPOINT_URL")
        .fields(&["endpoint"])
        .endpoint(),
    Setting::new("KMS_AWS_KMS_KEY_ID").fields(&["kmsKeyId"]),
    Setting::new("KMS_AWS_PARAMETER_PREFIX")
        .fields(&["parameterPrefix"])
        .default(DEFAULT_PARAMETER_PREFIX),
    Setting::new("AWS_PROFILE").fields(&["profile"]),
    Setting::new("AWS_ACCESS_KEY_ID")
        .fields(&["credentials.accessKeyId"])
        .secret(),
    Setting::new("AWS_SECRET_ACCESS_KEY")
        .fields(&["credentials.secretAccessKey"])
        .secret(),
    Setting::new("AWS_SESSION_TOKEN")
        .fields(&["credentials.sessionToken"])
        .secret(),
];

/// Default name prefix of the SSM parameters (`KMS_AWS_PARAMETER_PREFIX`), as
/// in the spec's set-up: key id `default` is the parameter
/// `/boosterbeacon/encryption-keys/default`.
pub const DEFAULT_PARAMETER_PREFIX: &str = "/boosterbeacon/encryption-keys";
