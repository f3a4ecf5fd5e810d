#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::time::Duration;

mod builder;
mod call;
mod endpoints;
mod provider;

pub use builder::VaultProviderBuilder;
use kms_core::settings::Setting;
pub use provider::VaultProvider;

/// The provider's name (`KMS_PROVIDER=vault`).
pub const PROVIDER: &str = "vault";

/// Every setting of this provider, declared once: the variables
/// [`VaultProviderBuilder::from_lookup`] reads, with their names in the admin
/// API's configuration document. `VAULT_CACERT` and `VAULT_SKIP_VERIFY`
/// have none: a document may not make the server read a file of the
/// caller's choosing or stop verifying certificates.
pub const SETTINGS: &[Setting] = &[
    Setting::new("VAULT_ADDR")
        .fields(&["address", "endpoint"])
        .endpoint(),
    Setting::new("VAULT_TOKEN")
        .fields(&["credentials.token"])
        .secret(),
    Setting::new("VAULT_ROLE_ID")
        .fields(&["credentials.roleId"])
        .secret(),
    Setting::new("VAULT_SECRET_ID")
        .fields(&["credentials.secretId"])
        .secret(),
    Setting::new("VAULT_APPROLE_MOUNT")
        .fields(&["approleMount"])
        .default(DEFAULT_APPROLE_MOUNT),
    Setting::new("VAULT_NAMESPACE").fields(&["namespace"]),
    Setting::new("VAULT_CACERT"),
    Setting::new("VAULT_SKIP_VERIFY").default("false"),
    Setting::new("VAULT_CLIENT_TIMEOUT")
        .fields(&["requestTimeout"])
        .default("60s"),
    Setting::new("KMS_VAULT_MOUNT")
        .fields(&["mount"])
        .default(DEFAULT_MOUNT),
    Setting::new("KMS_VAULT_PATH_PREFIX")
        .fields(&["pathPrefix"])
        .default(DEFAULT_PATH_PREFIX),
];

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
