//! [`AwsProviderBuilder`]: settings, their environment variables and validation.

use std::fmt;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_ssm::config::Credentials;
use kms_core::{Error, Result};
use kms_core::{provider_support, settings};
use secrecy::{ExposeSecret, SecretString};

use crate::provider::AwsProvider;
use crate::{DEFAULT_PARAMETER_PREFIX, PROVIDER};

/// Builds an [`AwsProvider`], from environment variables
/// ([`from_lookup`](Self::from_lookup), [`AwsProvider::from_env`]) or in code.
///
/// Settings not given here come from the AWS SDK's own configuration chain
/// (process environment, `~/.aws/config` and `~/.aws/credentials`, web
/// identity, container and instance metadata credentials).
///
/// Without [`credentials`](Self::credentials), requests to the
/// [`endpoint_url`](Self::endpoint_url) are signed with whatever that chain
/// finds in the process, even when every other setting came through
/// [`from_lookup`](Self::from_lookup): an endpoint chosen by someone else
/// must come with credentials of theirs. Static credentials replace the
/// chain: nothing of the process's own (not even `AWS_SESSION_TOKEN`) is
/// added to them.
#[derive(Clone)]
pub struct AwsProviderBuilder {
    region: Option<String>,
    endpoint_url: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<SecretString>,
    session_token: Option<SecretString>,
    profile: Option<String>,
    parameter_prefix: String,
    kms_key_id: Option<String>,
}

impl Default for AwsProviderBuilder {
    fn default() -> Self {
        AwsProviderBuilder {
            region: None,
            endpoint_url: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            profile: None,
            parameter_prefix: DEFAULT_PARAMETER_PREFIX.to_owned(),
            kms_key_id: None,
        }
    }
}

impl fmt::Debug for AwsProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<SecretString>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("AwsProviderBuilder")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("profile", &self.profile)
            .field("parameter_prefix", &self.parameter_prefix)
            .field("kms_key_id", &self.kms_key_id)
            .finish()
    }
}

impl AwsProviderBuilder {
    /// A builder with the documented defaults; region and credentials from
    /// the AWS SDK's configuration chain.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the variables listed in the crate documentation through
    /// `lookup` (for example `|n| std::env::var(n).ok()`). Empty values
    /// count as unset. The AWS SDK's own chain still applies to what is
    /// not found here (e.g. `~/.aws/config`).
    ///
    /// # Errors
    /// None today; fallible like the other providers' builders so that
    /// parsing can be added without breaking callers.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| settings::value(&lookup, name);
        let secret = |name: &str| settings::secret_value(&lookup, name).map(SecretString::from);
        let mut b = AwsProviderBuilder {
            region: get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")),
            endpoint_url: get("AWS_ENDPOINT_URL"),
            access_key_id: get("AWS_ACCESS_KEY_ID"),
            secret_access_key: secret("AWS_SECRET_ACCESS_KEY"),
            session_token: secret("AWS_SESSION_TOKEN"),
            profile: get("AWS_PROFILE"),
            kms_key_id: get("KMS_AWS_KMS_KEY_ID"),
            ..AwsProviderBuilder::default()
        };
        if let Some(prefix) = get("KMS_AWS_PARAMETER_PREFIX") {
            b.parameter_prefix = prefix;
        }
        Ok(b)
    }

    /// The AWS region (`AWS_REGION`, or `AWS_DEFAULT_REGION`), e.g. `us-east-1`.
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sends every SSM and KMS request to this URL instead of the AWS
    /// endpoints (`AWS_ENDPOINT_URL`), e.g. `http://localhost:4566` for
    /// LocalStack. **`http://` sends the keys unencrypted**: local testing only.
    #[must_use]
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Static credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// optional `AWS_SESSION_TOKEN`) instead of the SDK's credential chain.
    #[must_use]
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(SecretString::from(secret_access_key.into()));
        self.session_token = session_token.map(SecretString::from);
        self
    }

    /// The named profile of `~/.aws/config` to use (`AWS_PROFILE`).
    #[must_use]
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// The name prefix of the parameters (`KMS_AWS_PARAMETER_PREFIX`, default
    /// `/boosterbeacon/encryption-keys`); key id `ID` is `<prefix>/ID`.
    #[must_use]
    pub fn parameter_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.parameter_prefix = prefix.into();
        self
    }

    /// The KMS key (id, ARN, alias name or alias ARN) that `rotate` encrypts
    /// new parameter versions with (`KMS_AWS_KMS_KEY_ID`). Unset: the key the
    /// parameter is encrypted with now.
    #[must_use]
    pub fn kms_key_id(mut self, key: impl Into<String>) -> Self {
        self.kms_key_id = Some(key.into());
        self
    }

    /// Validates the settings and creates the SSM and KMS clients. Makes no
    /// network call beyond what the SDK's region chain may need when no
    /// region is set.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable at fault: no region anywhere,
    /// `AWS_ENDPOINT_URL` not an `http(s)` URL with a host (or with a user
    /// name, password, query or fragment), a secret key without an
    /// access key id (or the reverse), an invalid parameter prefix.
    pub async fn build(self) -> Result<AwsProvider> {
        let prefix = clean_prefix(&self.parameter_prefix)?;
        let endpoint_url = match &self.endpoint_url {
            Some(url) => {
                let url = provider_support::check_endpoint("AWS_ENDPOINT_URL", url)?;
                provider_support::warn_plain_http(
                    PROVIDER,
                    "AWS_ENDPOINT_URL",
                    &url,
                    "the encryption keys",
                );
                Some(url)
            }
            None => None,
        };
        // The SDK retries nothing: the `kms` facade's resilience layer
        // (KMS_RETRY_ATTEMPTS, KMS_TIMEOUT per attempt) does, so attempts
        // are never multiplied.
        let mut loader =
            aws_config::defaults(BehaviorVersion::latest()).retry_config(RetryConfig::disabled());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = endpoint_url {
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile.clone());
        }
        if let Some((id, secret)) = provider_support::paired(
            ("AWS_ACCESS_KEY_ID", self.access_key_id.as_ref()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_access_key.as_ref()),
            "static credentials need both",
        )? {
            let credentials = Credentials::new(
                id.clone(),
                secret.expose_secret().trim().to_owned(),
                self.session_token
                    .as_ref()
                    .map(|t| t.expose_secret().trim().to_owned()),
                None,
                "kms-aws static credentials",
            );
            loader = loader.credentials_provider(credentials);
        }
        let config = loader.load().await;
        match config.region() {
            None => {
                return Err(Error::config(
                    "AWS_REGION",
                    "is not set and no region is configured for the AWS SDK: set AWS_REGION, e.g. us-east-1",
                ));
            }
            // The SDK pastes the region into the endpoint's host name
            // (`ssm.<region>.amazonaws.com`): anything but a plain label
            // would send requests, signed with whatever credentials are in
            // force, to a host of the region's choosing.
            Some(r) if !is_region_name(r.as_ref()) => {
                return Err(Error::config(
                    "AWS_REGION",
                    "is not a region name (lowercase letters, digits and hyphens, e.g. us-east-1)",
                ));
            }
            Some(_) => {}
        }
        Ok(AwsProvider::new(
            &config,
            prefix,
            self.kms_key_id,
            self.endpoint_url,
        ))
    }
}

/// An SSM parameter name prefix: `/`-separated segments of letters, digits
/// and `_ . -`; a leading `/` is added, a trailing one dropped.
fn clean_prefix(prefix: &str) -> Result<String> {
    const VAR: &str = "KMS_AWS_PARAMETER_PREFIX";
    let p = prefix.trim().trim_matches('/');
    if p.is_empty() {
        return Ok(String::new());
    }
    let ok = p.split('/').all(|seg| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    });
    if !ok {
        return Err(Error::config(
            VAR,
            "must be path segments of letters, digits, '_', '-' and '.' separated by '/'",
        ));
    }
    if p.to_ascii_lowercase().starts_with("aws") || p.to_ascii_lowercase().starts_with("ssm") {
        return Err(Error::config(
            VAR,
            "must not start with aws or ssm (reserved by AWS)",
        ));
    }
    Ok(format!("/{p}"))
}

/// A region name as AWS spells them: `us-east-1`, `cn-north-1`, `us-gov-west-1`.
fn is_region_name(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use kms_testing::lookup;

    use super::*;

    kms_testing::settings_declared_test!(crate::SETTINGS, AwsProviderBuilder);

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn defaults_are_the_spec_layout() {
        let b = AwsProviderBuilder::from_lookup(lookup(&[])).unwrap();
        assert_eq!(b.parameter_prefix, "/boosterbeacon/encryption-keys");
        assert_eq!(
            clean_prefix(&b.parameter_prefix).unwrap(),
            "/boosterbeacon/encryption-keys"
        );
        assert!(b.kms_key_id.is_none() && b.region.is_none());
    }

    #[test]
    fn reads_every_variable() {
        let b = AwsProviderBuilder::from_lookup(lookup(&[
            ("AWS_REGION", " eu-west-1 "),
            ("AWS_ENDPOINT_URL", "http://localhost:4566"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_PROFILE", "prod"),
            ("KMS_AWS_PARAMETER_PREFIX", "keys/"),
            ("KMS_AWS_KMS_KEY_ID", "alias/kms"),
        ]))
        .unwrap();
        assert_eq!(b.region.as_deref(), Some("eu-west-1"));
        assert_eq!(b.endpoint_url.as_deref(), Some("http://localhost:4566"));
        assert_eq!(b.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        assert_eq!(
            b.secret_access_key.as_ref().unwrap().expose_secret(),
            SECRET
        );
        assert_eq!(b.session_token.as_ref().unwrap().expose_secret(), "tok");
        assert_eq!(b.profile.as_deref(), Some("prod"));
        assert_eq!(clean_prefix(&b.parameter_prefix).unwrap(), "/keys");
        assert_eq!(b.kms_key_id.as_deref(), Some("alias/kms"));
        let b = AwsProviderBuilder::from_lookup(lookup(&[("AWS_DEFAULT_REGION", "us-west-2")]))
            .unwrap();
        assert_eq!(b.region.as_deref(), Some("us-west-2"));
    }

    #[tokio::test]
    async fn invalid_settings_name_the_variable() {
        let region = ("AWS_REGION", "us-east-1");
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![region, ("AWS_ENDPOINT_URL", "localhost:4566")],
                "AWS_ENDPOINT_URL",
            ),
            (
                vec![region, ("AWS_ACCESS_KEY_ID", "AKID")],
                "AWS_SECRET_ACCESS_KEY",
            ),
            (
                vec![region, ("AWS_SECRET_ACCESS_KEY", SECRET)],
                "AWS_ACCESS_KEY_ID",
            ),
            (
                vec![region, ("KMS_AWS_PARAMETER_PREFIX", "a b")],
                "KMS_AWS_PARAMETER_PREFIX",
            ),
            (
                vec![region, ("KMS_AWS_PARAMETER_PREFIX", "a//b")],
                "KMS_AWS_PARAMETER_PREFIX",
            ),
            (
                vec![region, ("KMS_AWS_PARAMETER_PREFIX", "/aws/x")],
                "KMS_AWS_PARAMETER_PREFIX",
            ),
            // A region that would move the endpoint to another host.
            (vec![("AWS_REGION", "attacker.example/")], "AWS_REGION"),
            (vec![("AWS_REGION", "us-east-1.evil.example")], "AWS_REGION"),
            (vec![("AWS_REGION", "US-EAST-1")], "AWS_REGION"),
        ];
        for (vars, var) in cases {
            let err = AwsProviderBuilder::from_lookup(lookup(&vars))
                .unwrap()
                .build()
                .await
                .expect_err("must be refused");
            assert!(matches!(err, Error::Config { .. }), "{vars:?}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(var), "{vars:?}: {text}");
            assert!(!text.contains(SECRET), "{text}");
        }
    }

    #[tokio::test]
    async fn a_build_does_not_touch_the_network() {
        let p = AwsProviderBuilder::new()
            .region("us-east-1")
            .endpoint_url("http://127.0.0.1:9")
            .credentials("AKIDEXAMPLE", SECRET, Some("session-token-value".into()))
            .parameter_prefix("")
            .build()
            .await
            .unwrap();
        assert_eq!(p.parameter_name(&kms_core::KeyId::default()), "/default");
        let text = format!("{p:?}");
        assert!(text.contains("127.0.0.1:9"), "{text}");
        assert!(
            !text.contains(SECRET) && !text.contains("session-token-value"),
            "{text}"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let b = AwsProviderBuilder::new().credentials(
            "AKIDEXAMPLE",
            SECRET,
            Some("session-token-value".into()),
        );
        let text = format!("{b:?}");
        assert!(
            !text.contains(SECRET) && !text.contains("session-token-value"),
            "{text}"
        );
        assert!(text.contains("[REDACTED]"));
    }
}
