//! [`GcpProviderBuilder`]: settings, their environment variables and validation.

use std::fmt;

use google_cloud_auth::credentials::Credentials;
use google_cloud_gax::retry_policy::NeverRetry;
use google_cloud_secretmanager_v1::client::SecretManagerService;
use kms_core::{Error, Result};
use kms_core::{provider_support, settings};

use crate::provider::GcpProvider;
use crate::{DEFAULT_SECRET_PREFIX, MAX_SECRET_ID_LEN, PROVIDER};

/// Longest key id (see `kms_core::KeyId`).
const MAX_KEY_ID_LEN: usize = 128;

/// Builds a [`GcpProvider`], from environment variables
/// ([`from_lookup`](Self::from_lookup), [`GcpProvider::from_env`]) or in code.
#[derive(Clone, Default)]
pub struct GcpProviderBuilder {
    project: Option<String>,
    secret_prefix: Option<String>,
    endpoint: Option<String>,
    anonymous: bool,
    credentials: Option<Credentials>,
    kms_key_name: Option<String>,
}

impl fmt::Debug for GcpProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpProviderBuilder")
            .field("project", &self.project)
            .field("secret_prefix", &self.prefix())
            .field("endpoint", &self.endpoint)
            .field("anonymous", &self.anonymous)
            .field("kms_key_name", &self.kms_key_name)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|_| "[CUSTOM]"),
            )
            .finish()
    }
}

impl GcpProviderBuilder {
    /// A builder with the documented defaults and no project.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the variables listed in the crate documentation through
    /// `lookup` (for example `|n| std::env::var(n).ok()`). Empty values
    /// count as unset. `GOOGLE_APPLICATION_CREDENTIALS` is not read here:
    /// the official client reads it itself (Application Default Credentials).
    ///
    /// # Errors
    /// [`Error::Config`] naming `KMS_GCP_ANONYMOUS` when it is not a boolean.
    /// Everything else is checked by [`build`](Self::build).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| settings::value(&lookup, name);
        let mut b = GcpProviderBuilder {
            project: get("GOOGLE_CLOUD_PROJECT"),
            secret_prefix: get("KMS_GCP_SECRET_PREFIX"),
            endpoint: get("KMS_GCP_ENDPOINT"),
            kms_key_name: get("KMS_GCP_KMS_KEY_NAME"),
            ..GcpProviderBuilder::default()
        };
        if let Some(v) = get("KMS_GCP_ANONYMOUS") {
            b.anonymous = kms_core::settings::parse_bool("KMS_GCP_ANONYMOUS", &v)?;
        }
        Ok(b)
    }

    /// The Cloud KMS key (`KMS_GCP_KMS_KEY_NAME`,
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`) that encrypts the
    /// secrets this provider creates (an import, as `kms migrate` does; a
    /// rotation never creates a secret): customer-managed encryption, as the spec's
    /// `gcloud kms keys create` step intends. With automatic replication the
    /// key must be in location `global`, and Secret Manager's service agent
    /// needs `roles/cloudkms.cryptoKeyEncrypterDecrypter` on it. Secrets that
    /// exist already keep their own encryption. Unset: Google-managed keys.
    #[must_use]
    pub fn kms_key_name(mut self, name: impl Into<String>) -> Self {
        self.kms_key_name = Some(name.into());
        self
    }

    /// The Google Cloud project holding the secrets (`GOOGLE_CLOUD_PROJECT`),
    /// its id or number.
    #[must_use]
    pub fn project(mut self, project: impl Into<String>) -> Self {
        self.project = Some(project.into());
        self
    }

    /// The prefix of the secret ids (`KMS_GCP_SECRET_PREFIX`, default
    /// `boosterbeacon-encryption-key-`): key id `K` is the secret `<prefix>K`.
    #[must_use]
    pub fn secret_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.secret_prefix = Some(prefix.into());
        self
    }

    /// Another API endpoint than `https://secretmanager.googleapis.com`
    /// (`KMS_GCP_ENDPOINT`): a regional or private endpoint, or an emulator.
    ///
    /// **`http://` sends the keys unencrypted**: use it only for a local
    /// emulator. A warning is logged when it is used.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// **For emulators only**: send no credentials at all (`KMS_GCP_ANONYMOUS`),
    /// instead of Application Default Credentials. A warning is logged.
    #[must_use]
    pub fn anonymous(mut self, anonymous: bool) -> Self {
        self.anonymous = anonymous;
        self
    }

    /// Credentials built in code (see the `google-cloud-auth` crate), instead
    /// of Application Default Credentials.
    #[must_use]
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    fn prefix(&self) -> &str {
        self.secret_prefix
            .as_deref()
            .unwrap_or(DEFAULT_SECRET_PREFIX)
    }

    /// Validates the settings and creates the client. No network call is
    /// made; credentials are fetched on the first request.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable at fault: `GOOGLE_CLOUD_PROJECT`
    /// missing or invalid, `KMS_GCP_SECRET_PREFIX` with characters a secret
    /// id cannot have, `KMS_GCP_ENDPOINT` not an `http(s)` URL, or
    /// `GOOGLE_APPLICATION_CREDENTIALS` when no credentials can be loaded.
    pub async fn build(self) -> Result<GcpProvider> {
        let project = validate_project(self.project.as_deref())?;
        let prefix = self.prefix().trim().to_owned();
        validate_prefix(&prefix)?;
        let kms_key_name = self
            .kms_key_name
            .as_deref()
            .map(validate_kms_key_name)
            .transpose()?;
        let mut client = SecretManagerService::builder()
            // kms-circuit retries temporary errors with its own budget; the
            // client's default (10 attempts within 60 s) would multiply it.
            .with_retry_policy(NeverRetry);
        if let Some(endpoint) = &self.endpoint {
            let endpoint = provider_support::check_endpoint("KMS_GCP_ENDPOINT", endpoint)?;
            provider_support::warn_plain_http(
                PROVIDER,
                "KMS_GCP_ENDPOINT",
                &endpoint,
                "the encryption keys",
            );
            client = client.with_endpoint(endpoint);
        }
        if let Some(credentials) = self.credentials {
            client = client.with_credentials(credentials);
        } else if self.anonymous {
            tracing::warn!(
                target: "kms::gcp",
                "KMS_GCP_ANONYMOUS is set: requests carry no credentials (for emulators only)"
            );
            client = client.with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let client = client.build().await.map_err(|e| {
            Error::config(
                "GOOGLE_APPLICATION_CREDENTIALS",
                format!("cannot create the Secret Manager client: {e}"),
            )
        })?;
        Ok(GcpProvider::new(client, project, prefix, kms_key_name))
    }
}

/// A Cloud KMS key's resource name:
/// `projects/P/locations/L/keyRings/R/cryptoKeys/K`, each part non-empty
/// and free of `/` and white space.
fn validate_kms_key_name(name: &str) -> Result<String> {
    let name = name.trim();
    let parts: Vec<&str> = name.split('/').collect();
    let labels = ["projects", "locations", "keyRings", "cryptoKeys"];
    let well_formed = parts.len() == 8
        && parts.chunks(2).zip(labels).all(|(pair, label)| {
            pair.first() == Some(&label)
                && pair
                    .get(1)
                    .is_some_and(|v| !v.is_empty() && !v.chars().any(char::is_whitespace))
        });
    if well_formed {
        Ok(name.to_owned())
    } else {
        Err(Error::config(
            "KMS_GCP_KMS_KEY_NAME",
            "must be a Cloud KMS key name: projects/P/locations/L/keyRings/R/cryptoKeys/K",
        ))
    }
}

/// Project ids are 6 to 30 characters of lowercase letters, digits and
/// hyphens (older ones may be domain-scoped, `example.com:project`);
/// project numbers are digits. Only what cannot be part of a resource
/// name is refused here.
fn validate_project(project: Option<&str>) -> Result<String> {
    const VAR: &str = "GOOGLE_CLOUD_PROJECT";
    let project = project
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::config(VAR, "is not set: the gcp provider needs the project id"))?;
    let ok = project.len() <= 100
        && project.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.' | b':')
        });
    if ok {
        Ok(project.to_owned())
    } else {
        Err(Error::config(
            VAR,
            "must be a project id (lowercase letters, digits and hyphens) or number",
        ))
    }
}

/// Secret ids are 1 to 255 characters of letters, digits, `_` and `-`;
/// the prefix must leave room for the longest key id.
fn validate_prefix(prefix: &str) -> Result<()> {
    const VAR: &str = "KMS_GCP_SECRET_PREFIX";
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return Err(Error::config(
            VAR,
            "may only contain letters, digits, '_' and '-' (it starts a secret id)",
        ));
    }
    if prefix.len() + MAX_KEY_ID_LEN > MAX_SECRET_ID_LEN {
        return Err(Error::config(
            VAR,
            format!(
                "is too long: at most {} characters",
                MAX_SECRET_ID_LEN - MAX_KEY_ID_LEN
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kms_testing::lookup;

    use super::*;

    kms_testing::settings_declared_test!(crate::SETTINGS, GcpProviderBuilder);

    #[test]
    fn reads_every_variable() {
        let b = GcpProviderBuilder::from_lookup(lookup(&[
            ("GOOGLE_CLOUD_PROJECT", " my-project "),
            ("KMS_GCP_SECRET_PREFIX", "keys-"),
            ("KMS_GCP_ENDPOINT", "http://127.0.0.1:8085"),
            ("KMS_GCP_ANONYMOUS", "true"),
        ]))
        .unwrap();
        assert_eq!(b.project.as_deref(), Some("my-project"));
        assert_eq!(b.prefix(), "keys-");
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:8085"));
        assert!(b.anonymous);
        let d = GcpProviderBuilder::from_lookup(lookup(&[])).unwrap();
        assert_eq!(d.prefix(), "boosterbeacon-encryption-key-");
        assert!(!d.anonymous);
        let err =
            GcpProviderBuilder::from_lookup(lookup(&[("KMS_GCP_ANONYMOUS", "maybe")])).unwrap_err();
        assert!(err.to_string().contains("KMS_GCP_ANONYMOUS"), "{err}");
    }

    #[tokio::test]
    async fn a_cloud_kms_key_name_is_read_and_checked() {
        let name = "projects/p/locations/global/keyRings/boosterbeacon-keyring/cryptoKeys/boosterbeacon-key";
        let b = GcpProviderBuilder::from_lookup(lookup(&[
            ("GOOGLE_CLOUD_PROJECT", "my-project"),
            ("KMS_GCP_ANONYMOUS", "true"),
            ("KMS_GCP_KMS_KEY_NAME", name),
        ]))
        .unwrap();
        assert_eq!(b.kms_key_name.as_deref(), Some(name));
        let p = b.build().await.unwrap();
        assert!(format!("{p:?}").contains(name));
    }

    #[tokio::test]
    async fn invalid_settings_name_the_variable() {
        let p = ("GOOGLE_CLOUD_PROJECT", "my-project");
        let anon = ("KMS_GCP_ANONYMOUS", "true");
        let long = "p".repeat(200);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![anon], "GOOGLE_CLOUD_PROJECT"),
            (
                vec![("GOOGLE_CLOUD_PROJECT", "My Project"), anon],
                "GOOGLE_CLOUD_PROJECT",
            ),
            (
                vec![("GOOGLE_CLOUD_PROJECT", "a/b"), anon],
                "GOOGLE_CLOUD_PROJECT",
            ),
            (
                vec![p, anon, ("KMS_GCP_SECRET_PREFIX", "a/b")],
                "KMS_GCP_SECRET_PREFIX",
            ),
            (
                vec![p, anon, ("KMS_GCP_SECRET_PREFIX", &long)],
                "KMS_GCP_SECRET_PREFIX",
            ),
            (
                vec![p, anon, ("KMS_GCP_ENDPOINT", "localhost:8085")],
                "KMS_GCP_ENDPOINT",
            ),
            (
                vec![p, anon, ("KMS_GCP_ENDPOINT", "https://")],
                "KMS_GCP_ENDPOINT",
            ),
            (
                vec![p, anon, ("KMS_GCP_KMS_KEY_NAME", "my-key")],
                "KMS_GCP_KMS_KEY_NAME",
            ),
            (
                vec![
                    p,
                    anon,
                    (
                        "KMS_GCP_KMS_KEY_NAME",
                        "projects/p/locations/global/keyRings//cryptoKeys/k",
                    ),
                ],
                "KMS_GCP_KMS_KEY_NAME",
            ),
            (
                vec![
                    p,
                    anon,
                    (
                        "KMS_GCP_KMS_KEY_NAME",
                        "projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
                    ),
                ],
                "KMS_GCP_KMS_KEY_NAME",
            ),
            (
                vec![p, anon, ("KMS_GCP_ENDPOINT", "https://u:pw@host")],
                "KMS_GCP_ENDPOINT",
            ),
        ];
        for (vars, var) in cases {
            let err = GcpProviderBuilder::from_lookup(lookup(&vars))
                .unwrap()
                .build()
                .await
                .expect_err("must be refused");
            assert!(matches!(err, Error::Config { .. }), "{vars:?}: {err:?}");
            assert!(err.to_string().contains(var), "{vars:?}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[tokio::test]
    async fn an_anonymous_build_does_not_touch_the_network() {
        let p = GcpProviderBuilder::new()
            .project("my-project")
            .endpoint("http://127.0.0.1:9/")
            .anonymous(true)
            .build()
            .await
            .unwrap();
        assert_eq!(
            p.secret_name(&kms_core::KeyId::default()),
            "projects/my-project/secrets/boosterbeacon-encryption-key-default"
        );
        assert!(format!("{p:?}").contains("my-project"));
    }
}
