//! Which provider holds the keys, and the settings of the selected one.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use kms_core::{Error, KeyId, KeyProvider, Result};
use serde::Serialize;

/// Which provider holds the keys (`KMS_PROVIDER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ProviderKind {
    /// Environment variables (development only). The default.
    #[default]
    Env,
    /// AWS SSM Parameter Store SecureString, encrypted with AWS KMS.
    Aws,
    /// Google Cloud Secret Manager.
    Gcp,
    /// HashiCorp Vault KV version 2.
    Vault,
    /// A keyring file on the local disk (development and small single-host
    /// deployments; `--dev` uses it).
    File,
}

impl ProviderKind {
    /// The name used in `KMS_PROVIDER`, which is also the cargo feature of
    /// the `kms` crate that compiles the provider in.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Env => "env",
            ProviderKind::Aws => "aws",
            ProviderKind::Gcp => "gcp",
            ProviderKind::Vault => "vault",
            ProviderKind::File => "file",
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProviderKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "env" => Ok(ProviderKind::Env),
            "aws" => Ok(ProviderKind::Aws),
            "gcp" => Ok(ProviderKind::Gcp),
            "vault" => Ok(ProviderKind::Vault),
            "file" => Ok(ProviderKind::File),
            _ => Err(Error::config(
                "KMS_PROVIDER",
                "must be one of env, aws, gcp, vault, file",
            )),
        }
    }
}

/// The selected provider and its settings. Only the selected provider's
/// settings are held (and read from the environment), so a bad variable of
/// a provider that is not selected is not read at all.
#[derive(Debug)]
pub(crate) enum ProviderSettings {
    /// `KMS_PROVIDER=env`.
    #[cfg(feature = "env")]
    Env(kms_env::EnvProviderBuilder),
    /// `KMS_PROVIDER=vault`.
    #[cfg(feature = "vault")]
    Vault(Box<kms_vault::VaultProviderBuilder>),
    /// `KMS_PROVIDER=aws`.
    #[cfg(feature = "aws")]
    Aws(Box<kms_aws::AwsProviderBuilder>),
    /// `KMS_PROVIDER=gcp`.
    #[cfg(feature = "gcp")]
    Gcp(Box<kms_gcp::GcpProviderBuilder>),
    /// `KMS_PROVIDER=file`.
    #[cfg(feature = "file")]
    File(kms_file::FileProviderBuilder),
    /// A built-in kind whose cargo feature is off: building says which
    /// feature to enable.
    NotCompiledIn(ProviderKind),
    /// A provider given in code; `layered: false` uses it exactly as given.
    Custom {
        provider: Arc<dyn KeyProvider>,
        layered: bool,
    },
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings::unset(ProviderKind::default())
    }
}

impl ProviderSettings {
    /// `kind` with none of its settings given.
    pub(crate) fn unset(kind: ProviderKind) -> Self {
        match kind {
            #[cfg(feature = "env")]
            ProviderKind::Env => ProviderSettings::Env(kms_env::EnvProviderBuilder::default()),
            #[cfg(feature = "vault")]
            ProviderKind::Vault => ProviderSettings::Vault(Box::default()),
            #[cfg(feature = "aws")]
            ProviderKind::Aws => ProviderSettings::Aws(Box::default()),
            #[cfg(feature = "gcp")]
            ProviderKind::Gcp => ProviderSettings::Gcp(Box::default()),
            #[cfg(feature = "file")]
            ProviderKind::File => ProviderSettings::File(kms_file::FileProviderBuilder::default()),
            #[allow(
                unreachable_patterns,
                reason = "reachable only when some provider feature is off"
            )]
            kind => ProviderSettings::NotCompiledIn(kind),
        }
    }

    /// `kind` with its own variables read through `lookup`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the provider's first invalid variable.
    pub(crate) fn from_lookup(
        kind: ProviderKind,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        // Unused when no provider feature is on.
        let _ = lookup;
        Ok(match kind {
            #[cfg(feature = "env")]
            ProviderKind::Env => {
                ProviderSettings::Env(kms_env::EnvProviderBuilder::from_lookup(lookup)?)
            }
            #[cfg(feature = "vault")]
            ProviderKind::Vault => ProviderSettings::Vault(Box::new(
                kms_vault::VaultProviderBuilder::from_lookup(lookup)?,
            )),
            #[cfg(feature = "aws")]
            ProviderKind::Aws => {
                ProviderSettings::Aws(Box::new(kms_aws::AwsProviderBuilder::from_lookup(lookup)?))
            }
            #[cfg(feature = "gcp")]
            ProviderKind::Gcp => {
                ProviderSettings::Gcp(Box::new(kms_gcp::GcpProviderBuilder::from_lookup(lookup)?))
            }
            #[cfg(feature = "file")]
            ProviderKind::File => {
                ProviderSettings::File(kms_file::FileProviderBuilder::from_lookup(lookup)?)
            }
            #[allow(
                unreachable_patterns,
                reason = "reachable only when some provider feature is off"
            )]
            kind => ProviderSettings::NotCompiledIn(kind),
        })
    }

    /// The built-in kind, `None` for a provider given in code.
    pub(crate) fn kind(&self) -> Option<ProviderKind> {
        match self {
            #[cfg(feature = "env")]
            ProviderSettings::Env(_) => Some(ProviderKind::Env),
            #[cfg(feature = "vault")]
            ProviderSettings::Vault(_) => Some(ProviderKind::Vault),
            #[cfg(feature = "aws")]
            ProviderSettings::Aws(_) => Some(ProviderKind::Aws),
            #[cfg(feature = "gcp")]
            ProviderSettings::Gcp(_) => Some(ProviderKind::Gcp),
            #[cfg(feature = "file")]
            ProviderSettings::File(_) => Some(ProviderKind::File),
            ProviderSettings::NotCompiledIn(kind) => Some(*kind),
            ProviderSettings::Custom { .. } => None,
        }
    }

    /// The provider's name: the kind, or the custom provider's own name.
    pub(crate) fn name(&self) -> &'static str {
        match (self, self.kind()) {
            (ProviderSettings::Custom { provider, .. }, _) => provider.name(),
            (_, Some(kind)) => kind.as_str(),
            (_, None) => "custom",
        }
    }

    /// Whether the facade adds its layers around the provider.
    pub(crate) fn layered(&self) -> bool {
        match self {
            ProviderSettings::Custom { layered, .. } => *layered,
            _ => true,
        }
    }

    /// Builds the selected provider for `key_id`.
    ///
    /// # Errors
    /// The provider's build error, or [`Error::Config`] naming the missing
    /// cargo feature.
    #[allow(
        clippy::unused_async,
        reason = "cloud providers are built asynchronously; a build without them awaits nothing"
    )]
    pub(crate) async fn build(self, key_id: &KeyId) -> Result<Arc<dyn KeyProvider>> {
        // Unused without the env feature.
        let _ = key_id;
        Ok(match self {
            #[cfg(feature = "env")]
            ProviderSettings::Env(env) => Arc::new(env.key_id(key_id.clone()).build()?),
            #[cfg(feature = "vault")]
            ProviderSettings::Vault(vault) => Arc::new(vault.build().await?),
            #[cfg(feature = "aws")]
            ProviderSettings::Aws(aws) => Arc::new(aws.build().await?),
            #[cfg(feature = "gcp")]
            ProviderSettings::Gcp(gcp) => Arc::new(gcp.build().await?),
            #[cfg(feature = "file")]
            ProviderSettings::File(file) => Arc::new(file.build()?),
            ProviderSettings::NotCompiledIn(kind) => return Err(not_compiled_in(kind)),
            ProviderSettings::Custom { provider, .. } => provider,
        })
    }
}

fn not_compiled_in(kind: ProviderKind) -> Error {
    Error::config(
        "KMS_PROVIDER",
        format!(
            "the {kind} provider is not compiled in: enable the `{kind}` cargo feature of the `kms` crate"
        ),
    )
}
