//! The configuration document of `POST /config/test` and `PUT /config`,
//! mapped onto the library's environment variables.
//!
//! The document is the spec's shape (`{"provider":"aws","keyId":"default",
//! "region":"us-east-1","credentials":{"accessKeyId":..,"secretAccessKey":..}}`);
//! every field stands for one variable, listed by [`fields`].
//!
//! The document cannot weaken the server:
//! - `rotationPeriod` and `minDecryptionVersion` left out keep the running
//!   server's values (not its environment's); a `rotationPeriod` under
//!   [`MIN_ROTATION_PERIOD`] (`0` and `""` included) is refused, and so is
//!   removing (`""`) or lowering the minimum decryption version of a key
//!   (checked against the new provider in `routes`).
//! - The server's credentials only go to the server's own endpoints: a
//!   document that moves a provider's endpoint brings its own credentials
//!   (or `anonymous: true` for Google Cloud), and a document that brings
//!   credentials gets none of the server's.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use kms::KeyVersion;
use kms::core::settings::{self, BareUnit, Setting};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::ApiError;

/// The shortest `rotationPeriod` a configuration document may set: one
/// hour. (The library builder allows shorter periods, for tests.)
pub const MIN_ROTATION_PERIOD: Duration = Duration::from_secs(3600);

/// The lifecycle variables: never inherited from the server's
/// environment, since the running server's values apply when the document
/// leaves them out (see [`Requested`]).
pub(crate) const LIFECYCLE: &[&str] = &["KMS_ROTATION_PERIOD", "KMS_MIN_DECRYPTION_VERSION"];

/// How `GET /config` shows a secret. A secret field holding exactly this in
/// a document is taken as left out, so that a document read with `GET` can
/// be sent back with `PUT`: the server's own secret then applies, under the
/// same rules as when the field is missing.
pub const REDACTED: &str = "[REDACTED]";

/// Reads a configuration variable by name.
pub type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// One document field: its JSON name (`credentials.` prefix for the nested
/// credentials object), the providers it applies to (empty: all), the
/// variable it sets, whether it is a secret (never echoed or logged) and
/// whether it is a provider's endpoint. Derived from the settings each
/// crate declares (`kms::config::SETTINGS`, each provider's `SETTINGS`).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Field {
    /// JSON name; `credentials.x` is `x` inside `"credentials": {...}`.
    pub name: &'static str,
    /// Providers it applies to; empty for every provider.
    pub providers: &'static [&'static str],
    /// The variable it stands for.
    pub variable: &'static str,
    /// A secret: write-only.
    pub secret: bool,
    /// Addresses the provider's server: a document that changes it must
    /// bring its own credentials.
    pub endpoint: bool,
}

const ALL: &[&str] = &[];
const ENV: &[&str] = &[kms::env::PROVIDER];
#[cfg(feature = "aws")]
const AWS: &[&str] = &[kms::aws::PROVIDER];
#[cfg(feature = "gcp")]
const GCP: &[&str] = &[kms::gcp::PROVIDER];
#[cfg(feature = "vault")]
const VAULT: &[&str] = &[kms::vault::PROVIDER];

/// Every field of the document: the facade's settings for every provider,
/// then each compiled-in provider's own.
pub fn fields() -> &'static [Field] {
    static FIELDS: LazyLock<Vec<Field>> = LazyLock::new(|| {
        let mut fields = Vec::new();
        let mut add = |providers: &'static [&'static str], settings: &'static [Setting]| {
            for setting in settings {
                for name in setting.fields {
                    fields.push(Field {
                        name,
                        providers,
                        variable: setting.variable,
                        secret: setting.secret,
                        endpoint: setting.endpoint,
                    });
                }
            }
        };
        add(ALL, kms::config::SETTINGS);
        add(ENV, kms::env::SETTINGS);
        #[cfg(feature = "aws")]
        add(AWS, kms::aws::SETTINGS);
        #[cfg(feature = "gcp")]
        add(GCP, kms::gcp::SETTINGS);
        #[cfg(feature = "vault")]
        add(VAULT, kms::vault::SETTINGS);
        fields
    });
    &FIELDS
}

fn applies(f: &Field, provider: &str) -> bool {
    f.providers.is_empty() || f.providers.contains(&provider)
}

fn is_credential(variable: &str) -> bool {
    fields().iter().any(|f| f.secret && f.variable == variable)
}

/// Whether the document field `name` (`credentials.x` for nested ones) is
/// a secret.
pub(crate) fn is_secret_field(name: &str) -> bool {
    fields().iter().any(|f| f.secret && f.name == name)
}

fn is_endpoint(variable: &str) -> bool {
    fields()
        .iter()
        .any(|f| f.endpoint && f.variable == variable)
}

/// What a document asks of the minimum decryption version of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MinVersion {
    /// Left out (or `null`): the server's minimum stays.
    Keep,
    /// `""`: no minimum (refused when the server has one for the key).
    Remove,
    /// A version name of the key.
    Set(KeyVersion),
}

/// The lifecycle settings a document asks for; checked against the
/// running server before they apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Requested {
    /// `rotationPeriod`, at least [`MIN_ROTATION_PERIOD`]; `None`: the
    /// server's period stays.
    pub(crate) rotation_period: Option<Duration>,
    /// `minDecryptionVersion`, for the document's key id.
    pub(crate) min_decryption_version: MinVersion,
}

/// A parsed document: the variables it sets (secrets zeroized on drop).
pub(crate) struct Document {
    provider: String,
    vars: BTreeMap<&'static str, Zeroizing<String>>,
    requested: Requested,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("provider", &self.provider)
            .field("variables", &self.vars.keys().collect::<Vec<_>>())
            .field("requested", &self.requested)
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("INVALID_CONFIG", message)
}

/// `rotationPeriod`: a duration of at least [`MIN_ROTATION_PERIOD`].
fn rotation_period(value: &str) -> Result<Duration, ApiError> {
    let too_short = || {
        invalid(format!(
            "`rotationPeriod` must be at least 1h ({} ms): shorter periods would rotate the key \
             continuously; scheduled rotation cannot be turned off through the admin API \
             (leave `rotationPeriod` out to keep the server's)",
            MIN_ROTATION_PERIOD.as_millis()
        ))
    };
    if value.trim().is_empty() {
        return Err(too_short());
    }
    let period =
        settings::parse_duration("rotationPeriod", value, BareUnit::Millis).map_err(|_| {
            invalid(
                "`rotationPeriod` must be a whole number of milliseconds, or a number with one of \
             the units ms, s, m, h, d (e.g. \"90d\")",
            )
        })?;
    if period < MIN_ROTATION_PERIOD {
        return Err(too_short());
    }
    Ok(period)
}

/// `minDecryptionVersion`: `""` asks for no minimum.
fn min_decryption_version(value: &str) -> Result<MinVersion, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(MinVersion::Remove);
    }
    KeyVersion::new(value).map(MinVersion::Set).map_err(|_| {
        invalid(
            "`minDecryptionVersion` must be a key version name (1 to 64 of A-Z a-z 0-9 _ - . :)",
        )
    })
}

/// A scalar as the text of a variable.
fn scalar(name: &str, value: &Value) -> Result<Zeroizing<String>, ApiError> {
    match value {
        Value::String(s) => Ok(Zeroizing::new(s.clone())),
        Value::Number(n) => Ok(Zeroizing::new(n.to_string())),
        Value::Bool(b) => Ok(Zeroizing::new(b.to_string())),
        _ => Err(invalid(format!(
            "`{name}` must be a string, a number or a boolean"
        ))),
    }
}

impl Document {
    /// Parses a JSON body. Unknown fields and fields of another provider are
    /// refused, naming the field (never its value).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            // serde_json's messages give line and column, never input text.
            ApiError::bad_request("INVALID_JSON", format!("malformed JSON: {e}"))
        })?;
        let Value::Object(mut top) = value else {
            return Err(invalid("the configuration must be a JSON object"));
        };
        let provider = match top.get("provider") {
            Some(Value::String(p)) => p
                .parse::<kms::ProviderKind>()
                .map_err(|_| invalid("`provider` must be one of env, aws, gcp, vault, file"))?
                .as_str()
                .to_owned(),
            Some(_) => return Err(invalid("`provider` must be a string")),
            None => {
                return Err(invalid(
                    "`provider` is required (env, aws, gcp, vault or file)",
                ));
            }
        };
        let credentials = match top.remove("credentials") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(c)) => c,
            Some(_) => return Err(invalid("`credentials` must be an object")),
        };
        let mut vars = BTreeMap::new();
        let entries = top.iter().map(|(k, v)| (k.clone(), v)).chain(
            credentials
                .iter()
                .map(|(k, v)| (format!("credentials.{k}"), v)),
        );
        for (name, value) in entries {
            if value.is_null() {
                continue;
            }
            let redacted_secret = value.as_str() == Some(REDACTED)
                && fields().iter().any(|f| f.name == name && f.secret);
            if redacted_secret {
                continue;
            }
            let Some(f) = fields()
                .iter()
                .find(|f| f.name == name && applies(f, &provider))
            else {
                return Err(match fields().iter().find(|f| f.name == name) {
                    Some(_) => invalid(format!(
                        "`{name}` does not apply to the {provider} provider"
                    )),
                    None => invalid(format!("unknown field `{name}`")),
                });
            };
            vars.insert(f.variable, scalar(&name, value)?);
        }
        let requested = Requested {
            rotation_period: vars
                .remove("KMS_ROTATION_PERIOD")
                .map(|v| rotation_period(&v))
                .transpose()?,
            min_decryption_version: vars
                .remove("KMS_MIN_DECRYPTION_VERSION")
                .map_or(Ok(MinVersion::Keep), |v| min_decryption_version(&v))?,
        };
        Ok(Document {
            provider,
            vars,
            requested,
        })
    }

    /// The provider the document selects.
    pub(crate) fn provider(&self) -> &str {
        &self.provider
    }

    /// The lifecycle settings the document asks for.
    pub(crate) fn requested(&self) -> &Requested {
        &self.requested
    }

    fn has(&self, variable: &str) -> bool {
        self.vars.contains_key(variable)
    }

    /// Refuses a moved endpoint without credentials of the document's own:
    /// the server's are only sent to the server's endpoints.
    fn check_moved_endpoint(&self) -> Result<(), ApiError> {
        match self.provider.as_str() {
            "gcp" => {
                let anonymous = self
                    .vars
                    .get("KMS_GCP_ANONYMOUS")
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
                if !anonymous {
                    return Err(invalid(
                        "a Google Cloud `endpoint` other than the server's needs `anonymous: true` \
                         (the server's Google credentials are only sent to its own endpoint)",
                    ));
                }
            }
            "aws" if !(self.has("AWS_ACCESS_KEY_ID") && self.has("AWS_SECRET_ACCESS_KEY")) => {
                return Err(invalid(
                    "an AWS `endpoint` other than the server's needs `credentials` \
                     (`accessKeyId` and `secretAccessKey`, optionally `sessionToken`) in the \
                     document: the server's AWS credentials are only sent to its own endpoint",
                ));
            }
            "vault"
                if !(self.has("VAULT_TOKEN")
                    || (self.has("VAULT_ROLE_ID") && self.has("VAULT_SECRET_ID"))) =>
            {
                return Err(invalid(
                    "a Vault `address` other than the server's needs `credentials` (`token`, or \
                     `roleId` and `secretId`) in the document: the server's Vault credentials \
                     are only sent to its own address",
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The document's variables over `base` (the server's environment).
    ///
    /// Credentials are inherited from `base` only while the document keeps
    /// the server's own endpoint and brings no credentials of its own: a
    /// document pointing at another Vault address or AWS/GCP endpoint must
    /// bring its own credentials, so an admin call cannot send the server's
    /// tokens to a host of its choice, and a document's credentials are used
    /// alone (never completed with, or overridden by, the server's). The
    /// lifecycle variables are never inherited: the running server's values
    /// apply (see [`Requested`]).
    ///
    /// # Errors
    /// 400 naming `credentials` for an AWS endpoint or Vault address of the
    /// document's choosing without credentials in the document, and naming
    /// `anonymous` for such a Google Cloud endpoint without `anonymous:
    /// true` (Google credentials cannot be posted): the SDKs would otherwise
    /// fall back to the server's ambient credentials (process environment,
    /// profiles, metadata servers) and send them there.
    pub(crate) fn lookup(self, base: &Lookup) -> Result<Lookup, ApiError> {
        let moved_endpoint = self
            .vars
            .iter()
            .any(|(name, v)| is_endpoint(name) && base(name).as_deref() != Some(v.as_str()));
        if moved_endpoint {
            self.check_moved_endpoint()?;
        }
        // Env "credentials" are the keys themselves, not a login: a new
        // current key may keep the server's previous keys.
        let own_credentials =
            self.provider != "env" && self.vars.keys().any(|name| is_credential(name));
        let base = Arc::clone(base);
        let vars = self.vars;
        Ok(Arc::new(move |name: &str| {
            if let Some(v) = vars.get(name) {
                return Some(v.to_string());
            }
            if LIFECYCLE.contains(&name) {
                return None;
            }
            if is_credential(name) && (moved_endpoint || own_credentials) {
                return None;
            }
            base(name)
        }))
    }
}

/// The provider settings shown by `GET /config`: every field of `provider`
/// that is set, secrets as `"[REDACTED]"`.
pub(crate) fn describe(provider: &str, lookup: &Lookup) -> Map<String, Value> {
    let mut settings = Map::new();
    let mut credentials = Map::new();
    for f in fields()
        .iter()
        .filter(|f| !f.providers.is_empty() && applies(f, provider))
    {
        let Some(value) = lookup(f.variable).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let shown = if f.secret {
            Value::String(REDACTED.into())
        } else {
            Value::String(value)
        };
        match f.name.strip_prefix("credentials.") {
            Some(name) => credentials.insert(name.to_owned(), shown),
            None => settings.insert(f.name.to_owned(), shown),
        };
    }
    if !credentials.is_empty() {
        settings.insert("credentials".into(), Value::Object(credentials));
    }
    settings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(vars: &'static [(&'static str, &'static str)]) -> Lookup {
        Arc::new(move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn spec_document_maps_to_variables() {
        let doc = Document::parse(
            br#"{"provider":"aws","keyId":"default","region":"us-east-1",
                "credentials":{"accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s3cr3t"}}"#,
        )
        .unwrap();
        let lookup = doc.lookup(&base(&[])).unwrap();
        assert_eq!(lookup("KMS_PROVIDER").as_deref(), Some("aws"));
        assert_eq!(lookup("AWS_REGION").as_deref(), Some("us-east-1"));
        assert_eq!(lookup("AWS_SECRET_ACCESS_KEY").as_deref(), Some("s3cr3t"));
    }

    /// An attacker with the admin token cannot send the server's own
    /// credentials elsewhere by naming them `"[REDACTED]"`: a redacted
    /// secret counts as left out, so a moved endpoint still needs
    /// credentials of the document's own.
    #[test]
    fn a_redacted_secret_never_follows_a_moved_endpoint() {
        let server = base(&[
            ("KMS_PROVIDER", "vault"),
            ("VAULT_ADDR", "https://vault.internal:8200"),
            ("VAULT_TOKEN", "hvs.the-servers-own-token"),
            ("AWS_ENDPOINT_URL", "https://ssm.internal"),
            ("AWS_ACCESS_KEY_ID", "AKIASERVER"),
            ("AWS_SECRET_ACCESS_KEY", "server-secret"),
        ]);
        for body in [
            &br#"{"provider":"vault","address":"https://evil.example","credentials":{"token":"[REDACTED]"}}"#[..],
            br#"{"provider":"aws","endpoint":"https://evil.example","credentials":{"accessKeyId":"[REDACTED]","secretAccessKey":"[REDACTED]"}}"#,
        ] {
            let doc = Document::parse(body).unwrap();
            let err = doc.lookup(&server).err().expect("refused");
            assert_eq!(err.code(), "INVALID_CONFIG", "{err:?}");
            assert!(err.message().contains("credentials"), "{err:?}");
        }
        // The same endpoint as the server's: its own credentials apply.
        let doc = Document::parse(
            br#"{"provider":"vault","address":"https://vault.internal:8200","credentials":{"token":"[REDACTED]"}}"#,
        )
        .unwrap();
        let lookup = doc.lookup(&server).unwrap();
        assert_eq!(
            lookup("VAULT_TOKEN").as_deref(),
            Some("hvs.the-servers-own-token")
        );
    }

    /// A field comes from the provider crate's declaration alone
    /// (`kms_vault::SETTINGS` names `requestTimeout`).
    #[test]
    fn provider_declarations_make_the_fields() {
        let doc = Document::parse(br#"{"provider":"vault","requestTimeout":"30s"}"#).unwrap();
        let lookup = doc.lookup(&base(&[])).unwrap();
        assert_eq!(lookup("VAULT_CLIENT_TIMEOUT").as_deref(), Some("30s"));
        let err = Document::parse(br#"{"provider":"aws","requestTimeout":"30s"}"#).unwrap_err();
        assert!(format!("{err:?}").contains("does not apply"), "{err:?}");
        for setting in kms::vault::SETTINGS {
            for name in setting.fields {
                assert!(
                    fields()
                        .iter()
                        .any(|f| f.name == *name && f.variable == setting.variable),
                    "{name}"
                );
            }
        }
    }

    #[test]
    fn errors_name_fields_not_values() {
        for (body, expected) in [
            (
                &br#"{"provider":"vault","region":"us-east-1"}"#[..],
                "`region` does not apply",
            ),
            (
                br#"{"provider":"aws","colour":"blue"}"#,
                "unknown field `colour`",
            ),
            (br#"{"keyId":"x"}"#, "`provider` is required"),
            (br#"{"provider":"azure"}"#, "must be one of"),
            (br#"[1,2]"#, "JSON object"),
            // Server file paths are not the caller's to choose.
            (
                br#"{"provider":"vault","caCert":"/etc/shadow"}"#,
                "unknown field `caCert`",
            ),
            (
                br#"{"provider":"env","credentials":{"encryptionKey":["s3cr3t"]}}"#,
                "must be a string",
            ),
        ] {
            let err = Document::parse(body).unwrap_err();
            assert!(err.message().contains(expected), "{}", err.message());
            assert!(!err.message().contains("s3cr3t"));
        }
        let err = Document::parse(br#"{"provider": "#).unwrap_err();
        assert_eq!(err.code(), "INVALID_JSON");
    }

    #[test]
    fn credentials_stay_with_their_endpoint() {
        let server = base(&[
            ("VAULT_ADDR", "http://vault:8200"),
            ("VAULT_TOKEN", "server-token"),
            ("VAULT_ROLE_ID", "server-role"),
            ("VAULT_SECRET_ID", "server-secret"),
            ("AWS_ACCESS_KEY_ID", "AKIASERVER"),
            ("AWS_SECRET_ACCESS_KEY", "server-aws-secret"),
            ("AWS_SESSION_TOKEN", "server-session"),
        ]);
        let same = Document::parse(br#"{"provider":"vault","address":"http://vault:8200"}"#)
            .unwrap()
            .lookup(&server)
            .unwrap();
        assert_eq!(same("VAULT_TOKEN").as_deref(), Some("server-token"));
        // A moved endpoint without credentials of the document's own: refused,
        // naming `credentials` (the SDKs would fall back to ambient ones).
        for body in [
            &br#"{"provider":"vault","address":"http://elsewhere:8200"}"#[..],
            br#"{"provider":"vault","endpoint":"http://elsewhere:8200","credentials":{"roleId":"r"}}"#,
            br#"{"provider":"aws","region":"us-east-1","endpoint":"http://127.0.0.1:1"}"#,
            br#"{"provider":"aws","endpoint":"http://127.0.0.1:1","credentials":{"accessKeyId":"AKIA"}}"#,
            br#"{"provider":"aws","endpoint":"http://127.0.0.1:1","profile":"prod"}"#,
        ] {
            let err = Document::parse(body).unwrap().lookup(&server).err().unwrap();
            assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
            assert!(err.message().contains("`credentials`"), "{}", err.message());
        }
        // With the document's credentials: those, and none of the server's.
        let moved = Document::parse(
            br#"{"provider":"vault","address":"http://elsewhere:8200","credentials":{"token":"doc"}}"#,
        )
        .unwrap()
        .lookup(&server)
        .unwrap();
        assert_eq!(moved("VAULT_TOKEN").as_deref(), Some("doc"));
        assert_eq!(moved("VAULT_ROLE_ID"), None);
        // Also at the server's own address: a posted token is not overridden
        // by the server's AppRole login.
        let own = Document::parse(br#"{"provider":"vault","credentials":{"token":"doc"}}"#)
            .unwrap()
            .lookup(&server)
            .unwrap();
        assert_eq!(own("VAULT_TOKEN").as_deref(), Some("doc"));
        assert_eq!((own("VAULT_ROLE_ID"), own("VAULT_SECRET_ID")), (None, None));
        let aws = Document::parse(
            br#"{"provider":"aws","endpoint":"http://127.0.0.1:1",
                "credentials":{"accessKeyId":"AKIADOC","secretAccessKey":"doc-secret"}}"#,
        )
        .unwrap()
        .lookup(&server)
        .unwrap();
        assert_eq!(aws("AWS_ACCESS_KEY_ID").as_deref(), Some("AKIADOC"));
        assert_eq!(aws("AWS_SESSION_TOKEN"), None);
        let gcp = Document::parse(br#"{"provider":"gcp","projectId":"p","endpoint":"http://x"}"#)
            .unwrap()
            .lookup(&server)
            .err()
            .unwrap();
        assert!(
            gcp.message().contains("`anonymous: true`"),
            "{}",
            gcp.message()
        );
        // Env keys are not a login: the server's previous keys stay.
        let env = Document::parse(br#"{"provider":"env","credentials":{"encryptionKey":"k"}}"#)
            .unwrap()
            .lookup(&base(&[("ENCRYPTION_KEY_PREVIOUS", "p")]))
            .unwrap();
        assert_eq!(env("ENCRYPTION_KEY_PREVIOUS").as_deref(), Some("p"));
    }

    #[test]
    fn lifecycle_fields_are_checked_and_never_inherited() {
        let parse = |body: &str| Document::parse(body.as_bytes());
        for period in [
            r#""1ms""#, r#""59m""#, "3599999", r#""0""#, "0", r#""""#, r#"" ""#,
        ] {
            let err = parse(&format!(
                r#"{{"provider":"env","rotationPeriod":{period}}}"#
            ))
            .unwrap_err();
            assert!(
                err.message().contains("`rotationPeriod`"),
                "{period}: {}",
                err.message()
            );
        }
        let err = parse(r#"{"provider":"env","rotationPeriod":"soon"}"#).unwrap_err();
        assert!(
            err.message().contains("`rotationPeriod`"),
            "{}",
            err.message()
        );
        let doc =
            parse(r#"{"provider":"env","rotationPeriod":"1h","minDecryptionVersion":3}"#).unwrap();
        assert_eq!(doc.requested().rotation_period, Some(MIN_ROTATION_PERIOD));
        assert_eq!(
            doc.requested().min_decryption_version,
            MinVersion::Set(KeyVersion::new("3").unwrap())
        );
        let doc =
            parse(r#"{"provider":"env","rotationPeriod":null,"minDecryptionVersion":""}"#).unwrap();
        assert_eq!(doc.requested().rotation_period, None);
        assert_eq!(doc.requested().min_decryption_version, MinVersion::Remove);
        let err = parse(r#"{"provider":"env","minDecryptionVersion":"a/b"}"#).unwrap_err();
        assert!(
            err.message().contains("`minDecryptionVersion`"),
            "{}",
            err.message()
        );
        // Left out: not taken from the server's environment (the running
        // server's values apply), and never passed on by the lookup.
        let server = base(&[
            ("KMS_ROTATION_PERIOD", "1ms"),
            ("KMS_MIN_DECRYPTION_VERSION", "1"),
        ]);
        let doc = parse(r#"{"provider":"env","minDecryptionVersion":"2","rotationPeriod":"2h"}"#)
            .unwrap();
        let lookup = doc.lookup(&server).unwrap();
        assert_eq!(lookup("KMS_ROTATION_PERIOD"), None);
        assert_eq!(lookup("KMS_MIN_DECRYPTION_VERSION"), None);
    }

    #[test]
    fn describe_redacts_secrets() {
        let lookup = base(&[
            ("VAULT_ADDR", "http://vault:8200"),
            ("VAULT_TOKEN", "server-token"),
            ("AWS_REGION", "us-east-1"),
        ]);
        let shown = Value::Object(describe("vault", &lookup)).to_string();
        assert!(shown.contains("http://vault:8200"));
        assert!(shown.contains("[REDACTED]"));
        assert!(!shown.contains("server-token"));
        assert!(!shown.contains("us-east-1"));
    }
}
