//! Bearer authentication: a static admin token and JWTs (HS256, RS256).

use std::fmt;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use kms::core::settings;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::ApiError;

/// Shortest static admin token accepted (`KMS_ADMIN_TOKEN`).
pub const MIN_ADMIN_TOKEN_LEN: usize = 16;

/// Default role a JWT must carry (`KMS_ADMIN_JWT_ROLE`).
pub const DEFAULT_ADMIN_ROLE: &str = "admin";

/// Clock skew allowed on a JWT's `exp` and `nbf`, in seconds.
const JWT_LEEWAY_SECS: u64 = 30;

/// Who made a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// `admin-token` for the static token, the JWT's `sub` otherwise.
    pub subject: String,
    /// `token` or `jwt`.
    pub method: &'static str,
}

/// Why authentication failed, for the audit log and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that matches nothing or does not verify.
    Invalid,
    /// A JWT past its `exp`.
    Expired,
    /// A JWT before its `nbf`.
    NotYetValid,
    /// A valid JWT without the admin role (403).
    NotAdmin,
}

impl Failure {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Invalid => "invalid",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::NotAdmin => "not_admin",
        }
    }

    pub(crate) fn into_error(self) -> ApiError {
        match self {
            Failure::Missing => ApiError::unauthorized("missing bearer token"),
            Failure::Invalid => ApiError::unauthorized("invalid bearer token"),
            Failure::Expired => ApiError::unauthorized("expired bearer token"),
            Failure::NotYetValid => ApiError::unauthorized("bearer token not yet valid"),
            Failure::NotAdmin => ApiError::forbidden("the token does not carry the admin role"),
        }
    }
}

/// How admin requests authenticate. At least one method must be set.
///
/// | variable | meaning |
/// | --- | --- |
/// | `KMS_ADMIN_TOKEN` (or `ADMIN_TOKEN`, the spec script's name) | static bearer token (at least 16 characters), compared in constant time |
/// | `KMS_ADMIN_JWT_SECRET` | HS256 shared secret for JWTs |
/// | `KMS_ADMIN_JWT_PUBLIC_KEY` | RS256 public key: PEM text, or the path of a PEM file |
/// | `KMS_ADMIN_JWT_ISSUER` | required `iss`, if set: a token without it is refused |
/// | `KMS_ADMIN_JWT_AUDIENCE` | required `aud`, if set: a token without it is refused |
/// | `KMS_ADMIN_JWT_ROLE` | role required in the `role` (string) or `roles` (array) claim; default `admin` |
///
/// JWTs must carry `exp`; `exp` and, when present, `nbf` are checked with
/// 30 s of leeway. A configured issuer or audience must be present in the
/// token, not only match when present. Only the algorithms with a
/// configured key are accepted (no `none`, no algorithm confusion between
/// the HMAC secret and the RSA key).
#[derive(Clone, Default)]
pub struct AuthConfig {
    token_digest: Option<[u8; 32]>,
    hs256: Option<Arc<DecodingKey>>,
    rs256: Option<Arc<DecodingKey>>,
    issuer: Option<String>,
    audience: Option<String>,
    role: Option<String>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("admin_token", &self.token_digest.map(|_| "[REDACTED]"))
            .field("hs256", &self.hs256.as_ref().map(|_| "[REDACTED]"))
            .field("rs256", &self.rs256.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("role", &self.role())
            .finish()
    }
}

impl AuthConfig {
    /// No method configured (every request is refused until one is added).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the variables in the table above through `lookup`.
    ///
    /// # Errors
    /// [`kms::Error::Config`] naming the variable at fault.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> kms::Result<Self> {
        let mut auth = AuthConfig::new();
        // ADMIN_TOKEN is the spec's health check script's variable.
        if let Some(token) = settings::secret_value(&lookup, "KMS_ADMIN_TOKEN")
            .or_else(|| settings::secret_value(&lookup, "ADMIN_TOKEN"))
        {
            auth = auth.admin_token(&token)?;
        }
        if let Some(secret) = settings::secret_value(&lookup, "KMS_ADMIN_JWT_SECRET") {
            auth = auth.jwt_hs256_secret(secret.as_bytes())?;
        }
        if let Some(key) = settings::value(&lookup, "KMS_ADMIN_JWT_PUBLIC_KEY") {
            let pem = if key.trim_start().starts_with("-----BEGIN") {
                key
            } else {
                std::fs::read_to_string(key.trim()).map_err(|e| {
                    kms::Error::config(
                        "KMS_ADMIN_JWT_PUBLIC_KEY",
                        format!("cannot read the PEM file: {e}"),
                    )
                })?
            };
            auth = auth.jwt_rs256_public_key_pem(pem.as_bytes())?;
        }
        auth.issuer = settings::value(&lookup, "KMS_ADMIN_JWT_ISSUER");
        auth.audience = settings::value(&lookup, "KMS_ADMIN_JWT_AUDIENCE");
        auth.role = settings::value(&lookup, "KMS_ADMIN_JWT_ROLE");
        Ok(auth)
    }

    /// Accepts this static bearer token (`KMS_ADMIN_TOKEN`). Only its
    /// SHA-256 digest is kept; requests are compared digest to digest in
    /// constant time, so neither content nor length leaks through timing.
    ///
    /// # Errors
    /// [`kms::Error::Config`] when shorter than [`MIN_ADMIN_TOKEN_LEN`].
    pub fn admin_token(mut self, token: &str) -> kms::Result<Self> {
        if token.chars().count() < MIN_ADMIN_TOKEN_LEN {
            return Err(kms::Error::config(
                "KMS_ADMIN_TOKEN",
                format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters"),
            ));
        }
        self.token_digest = Some(Sha256::digest(token.as_bytes()).into());
        Ok(self)
    }

    /// Accepts HS256 JWTs signed with this secret (`KMS_ADMIN_JWT_SECRET`).
    ///
    /// # Errors
    /// [`kms::Error::Config`] when shorter than 32 bytes.
    pub fn jwt_hs256_secret(mut self, secret: &[u8]) -> kms::Result<Self> {
        if secret.len() < 32 {
            return Err(kms::Error::config(
                "KMS_ADMIN_JWT_SECRET",
                "must be at least 32 bytes",
            ));
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| {
            kms::Error::config("KMS_ADMIN_JWT_SECRET", format!("unusable secret: {e}"))
        })?;
        self.hs256 = Some(Arc::new(key));
        Ok(self)
    }

    /// Accepts RS256 JWTs verified with this PEM public key
    /// (`KMS_ADMIN_JWT_PUBLIC_KEY`).
    ///
    /// # Errors
    /// [`kms::Error::Config`] when the PEM is not an RSA public key.
    pub fn jwt_rs256_public_key_pem(mut self, pem: &[u8]) -> kms::Result<Self> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| {
            kms::Error::config(
                "KMS_ADMIN_JWT_PUBLIC_KEY",
                format!("not an RSA public key in PEM: {e}"),
            )
        })?;
        self.rs256 = Some(Arc::new(key));
        Ok(self)
    }

    /// Requires this `iss` in JWTs.
    #[must_use]
    pub fn jwt_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires this `aud` in JWTs.
    #[must_use]
    pub fn jwt_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The role JWTs must carry (default [`DEFAULT_ADMIN_ROLE`]).
    #[must_use]
    pub fn jwt_role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Whether any method is configured.
    #[must_use]
    pub fn is_configured(&self) -> bool {
        self.token_digest.is_some() || self.hs256.is_some() || self.rs256.is_some()
    }

    fn role(&self) -> &str {
        self.role.as_deref().unwrap_or(DEFAULT_ADMIN_ROLE)
    }

    /// Checks an `Authorization` header value.
    pub(crate) fn authenticate(&self, header: Option<&[u8]>) -> Result<Principal, Failure> {
        let token = header
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(bearer)
            .ok_or(Failure::Missing)?;
        if let Some(expected) = &self.token_digest {
            let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            if bool::from(presented.ct_eq(expected)) {
                return Ok(Principal {
                    subject: "admin-token".into(),
                    method: "token",
                });
            }
        }
        self.verify_jwt(token)
    }

    /// What a JWT signed with `alg` must satisfy. jsonwebtoken checks `iss`
    /// and `aud` only when the token carries them, so a configured one is
    /// also a required claim; `nbf` is checked only when asked for.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = JWT_LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.validate_aud = true;
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation
    }

    fn verify_jwt(&self, token: &str) -> Result<Principal, Failure> {
        // Three dot-separated parts, or it is not a JWT (a wrong static token).
        if token.split('.').count() != 3 {
            return Err(Failure::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| Failure::Invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or(Failure::Invalid)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation(header.alg))
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Failure::Expired,
                ErrorKind::ImmatureSignature => Failure::NotYetValid,
                _ => Failure::Invalid,
            })?;
        let claims = data.claims;
        let role = self.role();
        let is_admin =
            claims.role.as_deref() == Some(role) || claims.roles.iter().any(|r| r == role);
        if !is_admin {
            return Err(Failure::NotAdmin);
        }
        Ok(Principal {
            subject: claims.sub.unwrap_or_else(|| "jwt".into()),
            method: "jwt",
        })
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default, deserialize_with = "string_or_list")]
    roles: Vec<String>,
}

/// `roles` as a list of strings, or one string.
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// A random admin token: 32 bytes from the OS generator, as 64 hex characters.
#[must_use]
pub fn generate_admin_token() -> Zeroizing<String> {
    kms::KeyMaterial::generate().to_hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn configured_issuer_and_audience_are_required_claims() {
        let claims = |auth: &AuthConfig| {
            let mut c: Vec<String> = auth
                .validation(Algorithm::HS256)
                .required_spec_claims
                .into_iter()
                .collect();
            c.sort();
            c
        };
        let auth = AuthConfig::new();
        assert_eq!(claims(&auth), ["exp"]);
        let v = auth.validation(Algorithm::RS256);
        assert!(v.validate_exp && v.validate_nbf && !v.validate_aud);
        assert_eq!(v.leeway, JWT_LEEWAY_SECS);
        assert_eq!(v.algorithms, [Algorithm::RS256]);
        assert_eq!(claims(&auth.clone().jwt_audience("a")), ["aud", "exp"]);
        assert_eq!(claims(&auth.clone().jwt_issuer("i")), ["exp", "iss"]);
        let both = auth.jwt_audience("a").jwt_issuer("i");
        assert_eq!(claims(&both), ["aud", "exp", "iss"]);
        assert!(both.validation(Algorithm::HS256).validate_aud);
        assert_eq!(Failure::NotYetValid.reason(), "not_yet_valid");
    }

    #[test]
    fn static_token() {
        let auth = AuthConfig::new()
            .admin_token("0123456789abcdef-admin")
            .unwrap();
        assert!(
            auth.authenticate(Some(b"Bearer 0123456789abcdef-admin"))
                .is_ok()
        );
        assert_eq!(
            auth.authenticate(Some(b"Bearer 0123456789abcdef-admiN")),
            Err(Failure::Invalid)
        );
        assert_eq!(auth.authenticate(None), Err(Failure::Missing));
        assert!(AuthConfig::new().admin_token("short").is_err());
        assert!(!format!("{auth:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn secrets_shorter_than_the_minimum_are_refused_at_the_minimum_accepted() {
        let token = "t".repeat(MIN_ADMIN_TOKEN_LEN);
        assert!(AuthConfig::new().admin_token(&token).is_ok());
        assert!(AuthConfig::new().admin_token(&token[1..]).is_err());
        // Characters, not bytes: 16 two-byte characters are enough, 15 are not.
        assert!(AuthConfig::new().admin_token(&"é".repeat(16)).is_ok());
        assert!(AuthConfig::new().admin_token(&"é".repeat(15)).is_err());
        assert!(AuthConfig::new().jwt_hs256_secret(&[7; 32]).is_ok());
        assert!(AuthConfig::new().jwt_hs256_secret(&[7; 31]).is_err());
    }

    fn hs256_token(claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            claims,
            &jsonwebtoken::EncodingKey::from_secret(&[7; 32]).unwrap(),
        )
        .unwrap()
    }

    fn check(auth: &AuthConfig, claims: serde_json::Value) -> Result<Principal, Failure> {
        let header = format!("Bearer {}", hs256_token(&claims));
        auth.authenticate(Some(header.as_bytes()))
    }

    #[test]
    fn the_admin_role_comes_from_role_or_roles_and_can_be_renamed() {
        use serde_json::json;
        let exp = chrono::Utc::now().timestamp() + 600;
        let auth = AuthConfig::new().jwt_hs256_secret(&[7; 32]).unwrap();
        assert!(check(&auth, json!({"role": "admin", "exp": exp})).is_ok());
        assert!(check(&auth, json!({"roles": ["reader", "admin"], "exp": exp})).is_ok());
        assert!(check(&auth, json!({"roles": "admin", "exp": exp})).is_ok());
        for refused in [
            json!({"role": "reader", "exp": exp}),
            json!({"roles": ["reader"], "exp": exp}),
            json!({"exp": exp}),
        ] {
            assert_eq!(
                check(&auth, refused.clone()),
                Err(Failure::NotAdmin),
                "{refused}"
            );
        }
        let operator = auth.jwt_role("kms-operator");
        assert!(check(&operator, json!({"role": "kms-operator", "exp": exp})).is_ok());
        assert!(check(&operator, json!({"roles": ["kms-operator"], "exp": exp})).is_ok());
        assert_eq!(
            check(&operator, json!({"role": "admin", "exp": exp})),
            Err(Failure::NotAdmin)
        );
    }

    #[test]
    fn generated_tokens_are_64_hex_characters_and_differ() {
        let (a, b) = (generate_admin_token(), generate_admin_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(*a, *b);
        assert!(AuthConfig::new().admin_token(&a).is_ok());
    }
}
