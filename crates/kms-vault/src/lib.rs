#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::time::Duration;

mod builder;
mod call;
mod endpoints;
mod provider;

pub use builder::VaultProviderBuilder;
pub use provider::VaultProvider;

/// The provider's name (`KMS_PROVIDER=vault`).
pub const PROVIDER: &str = "vault";

/// Default KV version 2 mount (`KMS_VAULT_MOUNT`), as in the spec's set-up.
pub const DEFAULT_MOUNT: &str = "secret";

/// Default path of the keys under the mount (`KMS_VAULT_PATH_PREFIX`), as in
/// the spec's set-up: key id `default` lives at
/// `secret/boosterbeacon/encryption-keys/default`.
pub const DEFAULT_PATH_PREFIX: &str = "boosterbeacon/encryption-keys";

/// Log targets of the Vault client libraries (vaultrs and the rustify HTTP
/// layer under it) that an application should switch off: they log failed
/// HTTP calls on their own, and at trace level request details, while this
/// provider maps and reports those errors itself. Keeping them off keeps
/// logs free of noise and of anything a server put in a response body.
/// `kms serve` and the CLI install their filter with these off.
pub const QUIET_LOG_TARGETS: [&str; 2] = ["rustify", "vaultrs"];

/// Default mount of the AppRole auth method (`VAULT_APPROLE_MOUNT`).
pub const DEFAULT_APPROLE_MOUNT: &str = "approle";

/// Default time limit of one HTTP request (`VAULT_CLIENT_TIMEOUT`), as for the Vault CLI.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
