//! The configuration document of `POST /config/test` and `PUT /config`,
//! mapped onto the library's environment variables.
//!
//! The document is the spec's shape (`{"provider":"aws","keyId":"default",
//! "region":"us-east-1","credentials":{"accessKeyId":..,"secretAccessKey":..}}`);
//! every field stands for one variable, listed in [`FIELDS`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::ApiError;

/// Reads a configuration variable by name.
pub type Lookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// One document field: its JSON name (`credentials.` prefix for the nested
/// credentials object), the providers it applies to (empty: all), the
/// variable it sets, and whether it is a secret (never echoed or logged).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// JSON name; `credentials.x` is `x` inside `"credentials": {...}`.
    pub name: &'static str,
    /// Providers it applies to; empty for every provider.
    pub providers: &'static [&'static str],
    /// The variable it stands for.
    pub variable: &'static str,
    /// A secret: write-only.
    pub secret: bool,
}

const fn field(
    name: &'static str,
    providers: &'static [&'static str],
    variable: &'static str,
    secret: bool,
) -> Field {
    Field {
        name,
        providers,
        variable,
        secret,
    }
}

const ALL: &[&str] = &[];
const AWS: &[&str] = &["aws"];
const GCP: &[&str] = &["gcp"];
const VAULT: &[&str] = &["vault"];
const ENV: &[&str] = &["env"];

/// Every field of the document.
pub const FIELDS: &[Field] = &[
    field("provider", ALL, "KMS_PROVIDER", false),
    field("keyId", ALL, "KMS_KEY_ID", false),
    field("timeout", ALL, "KMS_TIMEOUT", false),
    field("retryAttempts", ALL, "KMS_RETRY_ATTEMPTS", false),
    field("cacheTtl", ALL, "KMS_CACHE_TTL", false),
    field("ivLength", ALL, "KMS_IV_LENGTH", false),
    field("cacheStaleIfError", ALL, "KMS_CACHE_STALE_IF_ERROR", false),
    field(
        "circuitFailureThreshold",
        ALL,
        "KMS_CIRCUIT_FAILURE_THRESHOLD",
        false,
    ),
    field(
        "circuitOpenDuration",
        ALL,
        "KMS_CIRCUIT_OPEN_DURATION",
        false,
    ),
    field("slowThreshold", ALL, "KMS_SLOW_THRESHOLD", false),
    field("rotationPeriod", ALL, "KMS_ROTATION_PERIOD", false),
    field(
        "minDecryptionVersion",
        ALL,
        "KMS_MIN_DECRYPTION_VERSION",
        false,
    ),
    // AWS.
    field("region", AWS, "AWS_REGION", false),
    field("endpoint", AWS, "AWS_ENDPOINT_URL", false),
    field("kmsKeyId", AWS, "KMS_AWS_KMS_KEY_ID", false),
    field("parameterPrefix", AWS, "KMS_AWS_PARAMETER_PREFIX", false),
    field("profile", AWS, "AWS_PROFILE", false),
    field("credentials.accessKeyId", AWS, "AWS_ACCESS_KEY_ID", true),
    field(
        "credentials.secretAccessKey",
        AWS,
        "AWS_SECRET_ACCESS_KEY",
        true,
    ),
    field("credentials.sessionToken", AWS, "AWS_SESSION_TOKEN", true),
    // Google Cloud.
    field("projectId", GCP, "GOOGLE_CLOUD_PROJECT", false),
    field("endpoint", GCP, "KMS_GCP_ENDPOINT", false),
    field("secretPrefix", GCP, "KMS_GCP_SECRET_PREFIX", false),
    field("anonymous", GCP, "KMS_GCP_ANONYMOUS", false),
    // Vault.
    field("address", VAULT, "VAULT_ADDR", false),
    field("endpoint", VAULT, "VAULT_ADDR", false),
    field("namespace", VAULT, "VAULT_NAMESPACE", false),
    field("mount", VAULT, "KMS_VAULT_MOUNT", false),
    field("pathPrefix", VAULT, "KMS_VAULT_PATH_PREFIX", false),
    field("approleMount", VAULT, "VAULT_APPROLE_MOUNT", false),
    // Not `VAULT_CACERT`: a path on the server; an admin call must not make
    // the server read files of the caller's choosing. The server's own
    // setting applies.
    field("credentials.token", VAULT, "VAULT_TOKEN", true),
    field("credentials.roleId", VAULT, "VAULT_ROLE_ID", true),
    field("credentials.secretId", VAULT, "VAULT_SECRET_ID", true),
    // Env (development).
    field("credentials.encryptionKey", ENV, "ENCRYPTION_KEY", true),
    field(
        "credentials.encryptionKeyPrevious",
        ENV,
        "ENCRYPTION_KEY_PREVIOUS",
        true,
    ),
];

/// Variables that address a provider's server.
const ENDPOINTS: &[&str] = &["VAULT_ADDR", "AWS_ENDPOINT_URL", "KMS_GCP_ENDPOINT"];

fn applies(f: &Field, provider: &str) -> bool {
    f.providers.is_empty() || f.providers.contains(&provider)
}

/// A parsed document: the variables it sets (secrets zeroized on drop).
pub(crate) struct Document {
    provider: String,
    vars: BTreeMap<&'static str, Zeroizing<String>>,
}

impl std::fmt::Debug for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Document")
            .field("provider", &self.provider)
            .field("variables", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("INVALID_CONFIG", message)
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
            Some(Value::String(p)) => p.trim().to_ascii_lowercase(),
            Some(_) => return Err(invalid("`provider` must be a string")),
            None => return Err(invalid("`provider` is required (env, aws, gcp or vault)")),
        };
        if !["env", "aws", "gcp", "vault"].contains(&provider.as_str()) {
            return Err(invalid("`provider` must be one of env, aws, gcp, vault"));
        }
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
            let Some(f) = FIELDS
                .iter()
                .find(|f| f.name == name && applies(f, &provider))
            else {
                return Err(match FIELDS.iter().find(|f| f.name == name) {
                    Some(_) => invalid(format!(
                        "`{name}` does not apply to the {provider} provider"
                    )),
                    None => invalid(format!("unknown field `{name}`")),
                });
            };
            vars.insert(f.variable, scalar(&name, value)?);
        }
        Ok(Document { provider, vars })
    }

    /// The provider the document selects.
    pub(crate) fn provider(&self) -> &str {
        &self.provider
    }

    /// The document's variables over `base` (the server's environment).
    ///
    /// Credentials are inherited from `base` only while the document keeps
    /// the server's own endpoint: a document pointing at another Vault
    /// address or AWS/GCP endpoint must bring its own credentials, so an
    /// admin call cannot send the server's tokens to a host of its choice.
    ///
    /// # Errors
    /// 400 for a Google Cloud endpoint of the document's choosing without
    /// `anonymous: true` (the client would send the server's Google
    /// credentials there).
    pub(crate) fn lookup(self, base: &Lookup) -> Result<Lookup, ApiError> {
        let moved_endpoint = ENDPOINTS.iter().any(|name| {
            self.vars
                .get(name)
                .is_some_and(|v| base(name).as_deref() != Some(v.as_str()))
        });
        if self.provider == "gcp" && moved_endpoint {
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
        let base = Arc::clone(base);
        let vars = self.vars;
        Ok(Arc::new(move |name: &str| {
            if let Some(v) = vars.get(name) {
                return Some(v.to_string());
            }
            let credential = FIELDS.iter().any(|f| f.secret && f.variable == name);
            if credential && moved_endpoint {
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
    for f in FIELDS
        .iter()
        .filter(|f| !f.providers.is_empty() && applies(f, provider))
    {
        let Some(value) = lookup(f.variable).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let shown = if f.secret {
            Value::String("[REDACTED]".into())
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
    #![allow(clippy::unwrap_used)]
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
        ]);
        let same = Document::parse(br#"{"provider":"vault","address":"http://vault:8200"}"#)
            .unwrap()
            .lookup(&server)
            .unwrap();
        assert_eq!(same("VAULT_TOKEN").as_deref(), Some("server-token"));
        let moved = Document::parse(br#"{"provider":"vault","address":"http://elsewhere:8200"}"#)
            .unwrap()
            .lookup(&server)
            .unwrap();
        assert_eq!(moved("VAULT_TOKEN"), None);
        let gcp = Document::parse(br#"{"provider":"gcp","projectId":"p","endpoint":"http://x"}"#)
            .unwrap()
            .lookup(&server);
        assert!(gcp.is_err());
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
