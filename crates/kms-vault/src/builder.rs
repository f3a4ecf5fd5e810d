//! [`VaultProviderBuilder`]: settings, their environment variables and validation.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use kms_core::provider_support;
use kms_core::settings::{self, BareUnit, parse_bool, parse_duration};
use kms_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::provider::{AppRole, VaultProvider};
use crate::{DEFAULT_APPROLE_MOUNT, DEFAULT_MOUNT, DEFAULT_PATH_PREFIX, DEFAULT_REQUEST_TIMEOUT};

/// Builds a [`VaultProvider`], from environment variables
/// ([`from_lookup`](Self::from_lookup), [`VaultProvider::from_env`]) or in code.
///
/// Every setting is explicit: unlike `vaultrs`'s own settings builder,
/// nothing is read from the process environment behind the caller's back.
#[derive(Clone)]
pub struct VaultProviderBuilder {
    address: Option<String>,
    token: Option<SecretString>,
    namespace: Option<String>,
    ca_cert: Option<PathBuf>,
    skip_verify: bool,
    role_id: Option<SecretString>,
    secret_id: Option<SecretString>,
    approle_mount: String,
    mount: String,
    path_prefix: String,
    request_timeout: Duration,
}

impl Default for VaultProviderBuilder {
    fn default() -> Self {
        VaultProviderBuilder {
            address: None,
            token: None,
            namespace: None,
            ca_cert: None,
            skip_verify: false,
            role_id: None,
            secret_id: None,
            approle_mount: DEFAULT_APPROLE_MOUNT.to_owned(),
            mount: DEFAULT_MOUNT.to_owned(),
            path_prefix: DEFAULT_PATH_PREFIX.to_owned(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl fmt::Debug for VaultProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = |s: &Option<SecretString>| s.as_ref().map(|_| "[REDACTED]");
        f.debug_struct("VaultProviderBuilder")
            .field("address", &self.address)
            .field("token", &redacted(&self.token))
            .field("namespace", &self.namespace)
            .field("ca_cert", &self.ca_cert)
            .field("skip_verify", &self.skip_verify)
            .field("role_id", &redacted(&self.role_id))
            .field("secret_id", &redacted(&self.secret_id))
            .field("approle_mount", &self.approle_mount)
            .field("mount", &self.mount)
            .field("path_prefix", &self.path_prefix)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl VaultProviderBuilder {
    /// A builder with the documented defaults and no address or credentials.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the variables listed in the crate documentation through
    /// `lookup` (for example `|n| std::env::var(n).ok()`). Empty values
    /// count as unset, except `KMS_VAULT_PATH_PREFIX`, where empty means
    /// key ids directly under the mount.
    ///
    /// # Errors
    /// [`Error::Config`] naming `VAULT_SKIP_VERIFY` or `VAULT_CLIENT_TIMEOUT`
    /// when their value cannot be parsed. Everything else is checked by
    /// [`build`](Self::build).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| settings::value(&lookup, name);
        // Secrets are taken without copies; surrounding white space is
        // removed by `build` (it is not allowed in an HTTP header anyway).
        let secret = |name: &str| settings::secret_value(&lookup, name).map(SecretString::from);
        let mut b = VaultProviderBuilder {
            address: get("VAULT_ADDR"),
            token: secret("VAULT_TOKEN"),
            namespace: get("VAULT_NAMESPACE"),
            ca_cert: get("VAULT_CACERT").map(PathBuf::from),
            role_id: secret("VAULT_ROLE_ID"),
            secret_id: secret("VAULT_SECRET_ID"),
            ..VaultProviderBuilder::default()
        };
        if let Some(v) = get("VAULT_SKIP_VERIFY") {
            b.skip_verify = parse_bool("VAULT_SKIP_VERIFY", &v)?;
        }
        if let Some(v) = get("VAULT_APPROLE_MOUNT") {
            b.approle_mount = v;
        }
        if let Some(v) = get("KMS_VAULT_MOUNT") {
            b.mount = v;
        }
        if let Some(v) = lookup("KMS_VAULT_PATH_PREFIX") {
            // An empty prefix is meaningful: keys directly under the mount.
            b.path_prefix = v.trim().to_owned();
        }
        if let Some(v) = get("VAULT_CLIENT_TIMEOUT") {
            b.request_timeout = parse_timeout("VAULT_CLIENT_TIMEOUT", &v)?;
        }
        Ok(b)
    }

    /// The server address (`VAULT_ADDR`), e.g. `https://vault.example.com:8200`.
    ///
    /// **`http://` sends the token and the keys unencrypted**: use it only
    /// for a local development server. A warning is logged when it is used.
    #[must_use]
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.address = Some(address.into());
        self
    }

    /// The token (`VAULT_TOKEN`). Ignored when AppRole credentials are set.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(SecretString::from(token.into()));
        self
    }

    /// The Vault Enterprise / OpenBao namespace (`VAULT_NAMESPACE`).
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// A PEM file of CA certificates to trust for the server's TLS
    /// certificate, besides the system's roots (`VAULT_CACERT`).
    #[must_use]
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// **Insecure**: accept any TLS certificate (`VAULT_SKIP_VERIFY`),
    /// so anyone on the network path can impersonate Vault and read the
    /// token and keys. For throw-away test set-ups only; a warning is logged.
    #[must_use]
    pub fn danger_skip_verify(mut self, skip: bool) -> Self {
        self.skip_verify = skip;
        self
    }

    /// Logs in with AppRole (`VAULT_ROLE_ID`, `VAULT_SECRET_ID`) instead of
    /// using a fixed token.
    #[must_use]
    pub fn approle(mut self, role_id: impl Into<String>, secret_id: impl Into<String>) -> Self {
        self.role_id = Some(SecretString::from(role_id.into()));
        self.secret_id = Some(SecretString::from(secret_id.into()));
        self
    }

    /// Where the AppRole auth method is mounted (`VAULT_APPROLE_MOUNT`,
    /// default `approle`).
    #[must_use]
    pub fn approle_mount(mut self, mount: impl Into<String>) -> Self {
        self.approle_mount = mount.into();
        self
    }

    /// The KV version 2 mount holding the keys (`KMS_VAULT_MOUNT`, default `secret`).
    #[must_use]
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into();
        self
    }

    /// The path under the mount where each key id is a secret
    /// (`KMS_VAULT_PATH_PREFIX`, default `boosterbeacon/encryption-keys`;
    /// empty: key ids directly under the mount).
    #[must_use]
    pub fn path_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = prefix.into();
        self
    }

    /// The time limit of each HTTP request to Vault (`VAULT_CLIENT_TIMEOUT`,
    /// default 60 s as for the Vault CLI). The `kms` facade's `KMS_TIMEOUT`
    /// applies on top of it.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Validates the settings, creates the HTTP client and, with AppRole,
    /// logs in.
    ///
    /// # Errors
    /// - [`Error::Config`] naming the variable at fault: `VAULT_ADDR` missing
    ///   or not an `http(s)` URL, neither `VAULT_TOKEN` nor both AppRole
    ///   variables set, a token or namespace with characters an HTTP header
    ///   cannot carry, an unreadable `VAULT_CACERT`, an invalid mount or prefix.
    /// - With AppRole: [`Error::AccessDenied`] when Vault refuses the
    ///   credentials, [`Error::Unavailable`] when it cannot be reached.
    pub async fn build(self) -> Result<VaultProvider> {
        let address = validate_address(self.address.as_deref())?;
        let mount = clean_path("KMS_VAULT_MOUNT", &self.mount, false)?;
        let path_prefix = clean_path("KMS_VAULT_PATH_PREFIX", &self.path_prefix, true)?;
        let approle_mount = clean_path("VAULT_APPROLE_MOUNT", &self.approle_mount, false)?;
        let namespace = match self
            .namespace
            .as_deref()
            .map(|n| n.trim().trim_matches('/'))
        {
            None | Some("") => None,
            Some(ns) => {
                check_header_value("VAULT_NAMESPACE", ns)?;
                Some(ns.to_owned())
            }
        };
        if self.request_timeout.is_zero() {
            return Err(Error::config(
                "VAULT_CLIENT_TIMEOUT",
                "must be greater than 0",
            ));
        }

        let approle = match provider_support::paired(
            ("VAULT_ROLE_ID", self.role_id),
            ("VAULT_SECRET_ID", self.secret_id),
            "AppRole login needs both",
        )? {
            Some((role_id, secret_id)) => {
                check_header_value("VAULT_ROLE_ID", role_id.expose_secret().trim())?;
                Some(AppRole {
                    mount: approle_mount,
                    role_id,
                    secret_id,
                })
            }
            None => None,
        };
        let token = match (&approle, &self.token) {
            (Some(_), _) => String::new(),
            (None, Some(token)) => {
                let token = token.expose_secret().trim();
                check_header_value("VAULT_TOKEN", token)?;
                token.to_owned()
            }
            (None, None) => {
                return Err(Error::config(
                    "VAULT_TOKEN",
                    "is not set: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole login",
                ));
            }
        };

        let ca_certs = match &self.ca_cert {
            Some(path) => vec![check_ca_file(path)?],
            None => Vec::new(),
        };
        let plain = provider_support::warn_plain_http(
            crate::PROVIDER,
            "VAULT_ADDR",
            address.as_str(),
            "the Vault token and the encryption keys",
        );
        if !plain && self.skip_verify {
            tracing::warn!(
                target: "kms::vault",
                address = %address,
                "VAULT_SKIP_VERIFY is set: the Vault server's TLS certificate is not verified, so anyone \
                 on the network path can impersonate Vault and read the token and the keys"
            );
        }

        let settings = VaultClientSettingsBuilder::default()
            // Cannot panic: `validate_address` parsed this very string.
            .address(address.as_str())
            .token(token)
            .namespace(namespace.clone())
            .ca_certs(ca_certs)
            .verify(!self.skip_verify)
            .identity(None)
            .timeout(Some(self.request_timeout))
            .build()
            .map_err(|e| Error::config("VAULT_ADDR", e.to_string()))?;
        let client = VaultClient::new(settings).map_err(client_build_error)?;

        VaultProvider::connect(client, address, namespace, mount, path_prefix, approle).await
    }
}

/// Parses `VAULT_ADDR`: an `http` or `https` URL with a host, and no user
/// name, password, query or fragment. The value is never echoed (it could
/// hold a password).
fn validate_address(address: Option<&str>) -> Result<Url> {
    const VAR: &str = "VAULT_ADDR";
    let address = address.map(str::trim).filter(|a| !a.is_empty()).ok_or_else(|| {
        Error::config(
            VAR,
            "is not set: the vault provider needs the server address, e.g. https://vault.example.com:8200",
        )
    })?;
    let url = Url::parse(address).map_err(|e| {
        Error::config(
            VAR,
            format!("is not a valid URL ({e}); expected e.g. https://vault.example.com:8200"),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::config(
            VAR,
            "must start with https:// (or http:// for a local development server)",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::config(VAR, "has no host name"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::config(
            VAR,
            "must not contain a user name or password",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::config(VAR, "must not have a query or fragment"));
    }
    Ok(url)
}

/// Checks a mount or path prefix: segments of `A-Z a-z 0-9 _ - .` separated
/// by `/`, no `.` or `..` segment. Leading and trailing slashes are dropped.
fn clean_path(variable: &str, value: &str, may_be_empty: bool) -> Result<String> {
    let v = value.trim().trim_matches('/');
    if v.is_empty() {
        return if may_be_empty {
            Ok(String::new())
        } else {
            Err(Error::config(variable, "must not be empty"))
        };
    }
    let ok = v.split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    });
    if ok {
        Ok(v.to_owned())
    } else {
        Err(Error::config(
            variable,
            "must be path segments of letters, digits, '_', '-' and '.' separated by '/'",
        ))
    }
}

/// Values sent as HTTP headers (token, namespace) must be visible ASCII:
/// vaultrs would panic on anything else. The value is never echoed.
fn check_header_value(variable: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::config(variable, "must not be empty"));
    }
    if value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(Error::config(
            variable,
            "contains characters that cannot be sent in an HTTP header (only visible ASCII is allowed)",
        ))
    }
}

/// `VAULT_CACERT` must name a readable PEM file with at least one certificate
/// (reqwest silently accepts a file without any).
fn check_ca_file(path: &PathBuf) -> Result<String> {
    const VAR: &str = "VAULT_CACERT";
    let text = std::fs::read(path)
        .map_err(|e| Error::config(VAR, format!("cannot read {}: {e}", path.display())))?;
    if !text
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(Error::config(
            VAR,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::config(VAR, "the path is not valid UTF-8"))
}

fn client_build_error(e: ClientError) -> Error {
    match e {
        ClientError::FileReadError { path, source } => {
            Error::config("VAULT_CACERT", format!("cannot read {path}: {source}"))
        }
        ClientError::ParseCertificateError { path, .. } => Error::config(
            "VAULT_CACERT",
            format!("{path} is not a PEM certificate bundle"),
        ),
        other => Error::config(
            "VAULT_ADDR",
            format!("cannot create the HTTP client: {other}"),
        ),
    }
}

/// A timeout as the Vault CLI takes it: whole seconds, or a number with one
/// of the units `ms`, `s`, `m`, `h`; never zero.
fn parse_timeout(variable: &str, value: &str) -> Result<Duration> {
    let d = parse_duration(variable, value, BareUnit::Seconds)?;
    if d.is_zero() {
        return Err(Error::config(variable, "must be greater than 0"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use kms_testing::lookup;

    use super::*;

    kms_testing::settings_declared_test!(crate::SETTINGS, VaultProviderBuilder);

    const TOKEN: &str = "hvs.CAESIJ-not-a-real-token-5up3r53cr3t";

    async fn build_err(vars: &[(&str, &str)]) -> Error {
        VaultProviderBuilder::from_lookup(lookup(vars))
            .unwrap()
            .build()
            .await
            .expect_err("must be refused")
    }

    #[test]
    fn defaults_are_the_spec_layout() {
        let b = VaultProviderBuilder::from_lookup(lookup(&[])).unwrap();
        assert_eq!(b.mount, "secret");
        assert_eq!(b.path_prefix, "boosterbeacon/encryption-keys");
        assert_eq!(b.approle_mount, "approle");
        assert_eq!(b.request_timeout, Duration::from_secs(60));
        assert!(!b.skip_verify);
    }

    #[test]
    fn reads_every_variable() {
        let b = VaultProviderBuilder::from_lookup(lookup(&[
            ("VAULT_ADDR", " https://vault.example.com:8200 "),
            ("VAULT_TOKEN", TOKEN),
            ("VAULT_NAMESPACE", "team-a"),
            ("VAULT_CACERT", "/etc/ssl/vault-ca.pem"),
            ("VAULT_SKIP_VERIFY", "true"),
            ("VAULT_ROLE_ID", "role"),
            ("VAULT_SECRET_ID", "secret"),
            ("VAULT_APPROLE_MOUNT", "approle-kms"),
            ("KMS_VAULT_MOUNT", "kv"),
            ("KMS_VAULT_PATH_PREFIX", ""),
            ("VAULT_CLIENT_TIMEOUT", "5s"),
        ]))
        .unwrap();
        assert_eq!(b.address.as_deref(), Some("https://vault.example.com:8200"));
        assert_eq!(b.token.as_ref().unwrap().expose_secret(), TOKEN);
        assert_eq!(b.namespace.as_deref(), Some("team-a"));
        assert_eq!(b.ca_cert, Some(PathBuf::from("/etc/ssl/vault-ca.pem")));
        assert!(b.skip_verify);
        assert_eq!(b.role_id.as_ref().unwrap().expose_secret(), "role");
        assert_eq!(b.secret_id.as_ref().unwrap().expose_secret(), "secret");
        assert_eq!(b.approle_mount, "approle-kms");
        assert_eq!(b.mount, "kv");
        assert_eq!(b.path_prefix, "");
        assert_eq!(b.request_timeout, Duration::from_secs(5));
    }

    #[test]
    fn unparseable_values_name_the_variable() {
        for (var, val) in [
            ("VAULT_SKIP_VERIFY", "maybe"),
            ("VAULT_CLIENT_TIMEOUT", "soon"),
            ("VAULT_CLIENT_TIMEOUT", "0"),
            ("VAULT_CLIENT_TIMEOUT", "1.5s"),
        ] {
            let err = VaultProviderBuilder::from_lookup(lookup(&[(var, val)])).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            assert!(err.to_string().contains(var), "{var}={val}: {err}");
        }
        assert_eq!(
            parse_timeout("X", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(parse_timeout("X", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_timeout("X", "30").unwrap(), Duration::from_secs(30));
        assert!(!parse_bool("X", "0").unwrap());
        assert!(parse_bool("X", "T").unwrap());
    }

    #[tokio::test]
    async fn invalid_settings_name_the_variable() {
        let addr = ("VAULT_ADDR", "https://vault.example.com:8200");
        let tok = ("VAULT_TOKEN", TOKEN);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![tok], "VAULT_ADDR"),
            (
                vec![("VAULT_ADDR", "vault.example.com:8200"), tok],
                "VAULT_ADDR",
            ),
            (
                vec![("VAULT_ADDR", "ftp://vault.example.com"), tok],
                "VAULT_ADDR",
            ),
            (vec![("VAULT_ADDR", "https://"), tok], "VAULT_ADDR"),
            (
                vec![
                    ("VAULT_ADDR", "https://admin:hunter2@vault.example.com"),
                    tok,
                ],
                "VAULT_ADDR",
            ),
            (
                vec![("VAULT_ADDR", "https://v.example.com/?x=1"), tok],
                "VAULT_ADDR",
            ),
            (vec![addr], "VAULT_TOKEN"),
            (vec![addr, ("VAULT_TOKEN", "bad token")], "VAULT_TOKEN"),
            (vec![addr, ("VAULT_TOKEN", "tökén")], "VAULT_TOKEN"),
            (vec![addr, ("VAULT_ROLE_ID", "r")], "VAULT_SECRET_ID"),
            (vec![addr, tok, ("VAULT_SECRET_ID", "s")], "VAULT_ROLE_ID"),
            (
                vec![addr, tok, ("VAULT_NAMESPACE", "a b")],
                "VAULT_NAMESPACE",
            ),
            (vec![addr, tok, ("KMS_VAULT_MOUNT", "/")], "KMS_VAULT_MOUNT"),
            (
                vec![addr, tok, ("KMS_VAULT_MOUNT", "a/../b")],
                "KMS_VAULT_MOUNT",
            ),
            (
                vec![addr, tok, ("KMS_VAULT_PATH_PREFIX", "keys?x")],
                "KMS_VAULT_PATH_PREFIX",
            ),
            (
                vec![addr, tok, ("KMS_VAULT_PATH_PREFIX", "a//b")],
                "KMS_VAULT_PATH_PREFIX",
            ),
            (
                vec![addr, tok, ("VAULT_APPROLE_MOUNT", "a b")],
                "VAULT_APPROLE_MOUNT",
            ),
            (
                vec![addr, tok, ("VAULT_CACERT", "/nonexistent/ca.pem")],
                "VAULT_CACERT",
            ),
            (
                vec![addr, tok, ("VAULT_CACERT", "/dev/null")],
                "VAULT_CACERT",
            ),
        ];
        for (vars, var) in cases {
            let err = build_err(&vars).await;
            assert!(matches!(err, Error::Config { .. }), "{vars:?}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(var), "{vars:?}: {text}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(!text.contains(TOKEN), "{text}");
            assert!(!format!("{err:?}").contains("tökén"), "{err:?}");
        }
    }

    #[tokio::test]
    async fn a_token_build_does_not_touch_the_network() {
        // Nothing listens on port 9; a token-only build must still succeed.
        let p = VaultProviderBuilder::new()
            .address("https://127.0.0.1:9")
            .token(format!("  {TOKEN}\n"))
            .namespace("/team-a/")
            .mount("/kv/")
            .path_prefix("")
            .build()
            .await
            .unwrap();
        assert_eq!(p.secret_path(&kms_core::KeyId::default()), "default");
        let text = format!("{p:?}");
        assert!(text.contains("team-a") && text.contains("\"kv\""), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
    }

    #[test]
    fn debug_hides_secrets() {
        let b = VaultProviderBuilder::new()
            .address("https://vault.example.com")
            .token(TOKEN)
            .approle("role-id-value", "secret-id-value");
        let text = format!("{b:?}");
        for secret in [TOKEN, "role-id-value", "secret-id-value"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("[REDACTED]"));
    }
}
