#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod builder;
mod call;
mod provider;

pub use builder::AwsProviderBuilder;
pub use provider::{AwsProvider, LIVE_LABEL, SSM_MAX_VERSIONS};

/// The provider's name (`KMS_PROVIDER=aws`).
pub const PROVIDER: &str = "aws";

/// Default name prefix of the SSM parameters (`KMS_AWS_PARAMETER_PREFIX`), as
/// in the spec's set-up: key id `default` is the parameter
/// `/boosterbeacon/encryption-keys/default`.
pub const DEFAULT_PARAMETER_PREFIX: &str = "/boosterbeacon/encryption-keys";
