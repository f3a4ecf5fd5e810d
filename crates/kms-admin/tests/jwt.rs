//! JWT authentication of the admin API, claim by claim (issue 13, hole 1):
//! a configured `aud` or `iss` must be present, `exp` is required, `nbf` is
//! honoured, and neither `alg: none` nor an HS256 token keyed with the RSA
//! public key gets in. Every case goes through the router, and no response
//! carries a secret.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kms::Kms;
use kms_admin::{AdminConfig, AuthConfig, Lookup, SharedKms};
use serde_json::{Value, json};
use tower::ServiceExt as _;

mod common;
use common::{HEALTH, JWT_SECRET, KEY1, RSA_PRIVATE, RSA_PUBLIC};

const ISSUER: &str = "https://issuer.example";
const AUDIENCE: &str = "kms-admin";
/// The clock skew the server allows on `exp` and `nbf` (README).
const LEEWAY: u64 = 30;

/// The server's "environment": fixed variables, never the process's.
fn settings(vars: Vec<(&'static str, String)>) -> Lookup {
    Arc::new(move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
}

/// The router with authentication read from these `KMS_ADMIN_*` variables,
/// the way `kms serve` reads them.
async fn app(auth_vars: &[(&'static str, &str)]) -> Router {
    let vars: Vec<(&'static str, String)> = auth_vars
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect();
    let lookup = settings(vars);
    let auth = AuthConfig::from_lookup(|name| lookup(name)).unwrap();
    let mut config = AdminConfig::new(auth);
    config.settings = settings(vec![
        ("KMS_PROVIDER", "env".into()),
        ("ENCRYPTION_KEY", KEY1.into()),
    ]);
    let kms = Kms::builder()
        .env_key(KEY1)
        .retry_attempts(0)
        .build()
        .await
        .unwrap();
    kms_admin::router(SharedKms::new(kms), config).unwrap()
}

/// HS256 and RS256, issuer and audience required.
const BOTH_KEYS_ISS_AUD: &[(&str, &str)] = &[
    ("KMS_ADMIN_JWT_SECRET", JWT_SECRET),
    ("KMS_ADMIN_JWT_PUBLIC_KEY", RSA_PUBLIC),
    ("KMS_ADMIN_JWT_ISSUER", ISSUER),
    ("KMS_ADMIN_JWT_AUDIENCE", AUDIENCE),
];

struct Reply {
    status: StatusCode,
    json: Value,
    text: String,
}

/// A fresh client address per request, so the failed-authentication
/// lockout of one case never decides the next.
fn next_client() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | n))
}

async fn get(app: &Router, token: &str) -> Reply {
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(HEALTH)
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(next_client(), 40000)));
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, json, text }
}

/// Sends `token` and checks the status; a 401 must be the API's
/// `UNAUTHORIZED` error. No response may carry a secret or the token.
async fn expect(app: &Router, name: &str, token: &str, status: StatusCode) -> Reply {
    let mut wrong = Vec::new();
    let r = check(app, name, token, status, &mut wrong).await;
    assert!(wrong.is_empty(), "{wrong:#?}");
    r
}

/// [`expect`], but a wrong status is added to `wrong` (every case of a
/// table is tried, and all that fail are reported together).
async fn check(
    app: &Router,
    name: &str,
    token: &str,
    status: StatusCode,
    wrong: &mut Vec<String>,
) -> Reply {
    let r = get(app, token).await;
    if r.status != status {
        wrong.push(format!(
            "{name}: expected {status}, got {}: {}",
            r.status, r.text
        ));
    } else if status == StatusCode::UNAUTHORIZED {
        assert_eq!(r.json["success"], false, "{name}: {}", r.text);
        assert_eq!(
            r.json["error"]["code"], "UNAUTHORIZED",
            "{name}: {}",
            r.text
        );
    }
    let private_key_line = RSA_PRIVATE.lines().nth(5).unwrap();
    for secret in [JWT_SECRET, private_key_line, token] {
        assert!(!r.text.contains(secret), "{name}: a secret in {}", r.text);
    }
    for part in token.split('.').filter(|p| p.len() >= 16) {
        assert!(!r.text.contains(part), "{name}: the token in {}", r.text);
    }
    r
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256(claims: &Value) -> String {
    hs256_keyed(JWT_SECRET.as_bytes(), claims)
}

fn hs256_keyed(secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// Unpadded base64url, for hand-made tokens.
fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Admin claims with a valid `exp`, `iss` and `aud`; `edit` changes them
/// (`Value::Null` removes a claim).
fn claims(edit: &[(&str, Value)]) -> Value {
    let mut c = json!({
        "sub": "alice",
        "role": "admin",
        "exp": now() + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
    });
    let map = c.as_object_mut().unwrap();
    for (k, v) in edit {
        if v.is_null() {
            map.remove(*k);
        } else {
            map.insert((*k).to_owned(), v.clone());
        }
    }
    c
}

/// Each claim missing, wrong and right, expiry and `nbf`, for one algorithm.
async fn claims_are_checked(sign: fn(&Value) -> String) {
    let app = app(BOTH_KEYS_ISS_AUD).await;
    let ok = StatusCode::OK;
    let no = StatusCode::UNAUTHORIZED;
    let t = now();
    let leeway = LEEWAY;
    let cases: Vec<(&str, Value, StatusCode)> = vec![
        ("all right", claims(&[]), ok),
        ("aud missing", claims(&[("aud", Value::Null)]), no),
        ("aud wrong", claims(&[("aud", json!("other"))]), no),
        (
            "aud in a list",
            claims(&[("aud", json!(["x", AUDIENCE]))]),
            ok,
        ),
        ("aud list without it", claims(&[("aud", json!(["x"]))]), no),
        ("aud empty list", claims(&[("aud", json!([]))]), no),
        ("aud not a string", claims(&[("aud", json!(7))]), no),
        ("iss missing", claims(&[("iss", Value::Null)]), no),
        (
            "iss wrong",
            claims(&[("iss", json!("https://evil.example"))]),
            no,
        ),
        ("iss not a string", claims(&[("iss", json!(7))]), no),
        (
            "iss and aud missing",
            claims(&[("iss", Value::Null), ("aud", Value::Null)]),
            no,
        ),
        ("exp missing", claims(&[("exp", Value::Null)]), no),
        ("exp expired", claims(&[("exp", json!(t - 3600))]), no),
        ("exp not a number", claims(&[("exp", json!("soon"))]), no),
        (
            "exp just past, within the leeway",
            claims(&[("exp", json!(t - leeway / 3))]),
            ok,
        ),
        ("nbf in the future", claims(&[("nbf", json!(t + 600))]), no),
        (
            "nbf past the leeway",
            claims(&[("nbf", json!(t + 3 * leeway))]),
            no,
        ),
        (
            "nbf within the leeway",
            claims(&[("nbf", json!(t + leeway / 3))]),
            ok,
        ),
        ("nbf in the past", claims(&[("nbf", json!(t - 60))]), ok),
        ("nbf not a number", claims(&[("nbf", json!("later"))]), no),
    ];
    let mut wrong = Vec::new();
    for (name, c, status) in cases {
        check(&app, name, &sign(&c), status, &mut wrong).await;
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn hs256_claims_are_checked() {
    claims_are_checked(hs256).await;
}

#[tokio::test]
async fn rs256_claims_are_checked() {
    claims_are_checked(rs256).await;
}

#[tokio::test]
async fn messages_say_expired_and_not_yet_valid() {
    let app = app(BOTH_KEYS_ISS_AUD).await;
    let r = expect(
        &app,
        "expired",
        &hs256(&claims(&[("exp", json!(now() - 3600))])),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(r.json["error"]["message"], "expired bearer token");
    let r = expect(
        &app,
        "not yet valid",
        &rs256(&claims(&[("nbf", json!(now() + 600))])),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(r.json["error"]["message"], "bearer token not yet valid");
    let r = expect(
        &app,
        "aud missing",
        &hs256(&claims(&[("aud", Value::Null)])),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(r.json["error"]["message"], "invalid bearer token");
}

/// The audience alone, then the issuer alone: the one configured is
/// required, the other is not looked at.
#[tokio::test]
async fn audience_or_issuer_alone_is_required() {
    let mut wrong = Vec::new();
    for (alg, sign) in [("HS256", hs256 as fn(&Value) -> String), ("RS256", rs256)] {
        let keys = [
            ("KMS_ADMIN_JWT_SECRET", JWT_SECRET),
            ("KMS_ADMIN_JWT_PUBLIC_KEY", RSA_PUBLIC),
        ];
        let mut aud_only = keys.to_vec();
        aud_only.push(("KMS_ADMIN_JWT_AUDIENCE", AUDIENCE));
        let app = app(&aud_only).await;
        let cases = [
            (
                "aud only: right",
                claims(&[("iss", Value::Null)]),
                StatusCode::OK,
            ),
            (
                "aud only: any iss",
                claims(&[("iss", json!("https://elsewhere.example"))]),
                StatusCode::OK,
            ),
            (
                "aud only: aud missing",
                claims(&[("aud", Value::Null), ("iss", Value::Null)]),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "aud only: aud wrong",
                claims(&[("aud", json!("other"))]),
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (name, c, status) in cases {
            check(
                &app,
                &format!("{alg} {name}"),
                &sign(&c),
                status,
                &mut wrong,
            )
            .await;
        }

        let mut iss_only = keys.to_vec();
        iss_only.push(("KMS_ADMIN_JWT_ISSUER", ISSUER));
        let app = self::app(&iss_only).await;
        let cases = [
            (
                "iss only: right",
                claims(&[("aud", Value::Null)]),
                StatusCode::OK,
            ),
            (
                "iss only: iss missing",
                claims(&[("iss", Value::Null), ("aud", Value::Null)]),
                StatusCode::UNAUTHORIZED,
            ),
            (
                "iss only: iss wrong",
                claims(&[("iss", json!("https://evil.example")), ("aud", Value::Null)]),
                StatusCode::UNAUTHORIZED,
            ),
        ];
        for (name, c, status) in cases {
            check(
                &app,
                &format!("{alg} {name}"),
                &sign(&c),
                status,
                &mut wrong,
            )
            .await;
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let app = app(BOTH_KEYS_ISS_AUD).await;
    let payload = b64url(claims(&[]).to_string().as_bytes());
    let signed = hs256(&claims(&[]));
    let hs_signature = signed.rsplit('.').next().unwrap();
    for (name, header) in [
        ("none", json!({"alg":"none","typ":"JWT"})),
        ("None", json!({"alg":"None","typ":"JWT"})),
        ("NONE", json!({"alg":"NONE"})),
        ("no alg", json!({"typ":"JWT"})),
    ] {
        let header = b64url(header.to_string().as_bytes());
        for signature in ["", hs_signature] {
            let token = format!("{header}.{payload}.{signature}");
            let name = format!("alg {name}, signature {:?}", signature.len());
            expect(&app, &name, &token, StatusCode::UNAUTHORIZED).await;
        }
    }
    // The hand-made encoding is right: the same payload under a real
    // HS256 header and signature gets in.
    let header = b64url(json!({"alg":"HS256","typ":"JWT"}).to_string().as_bytes());
    let resigned = hs256_keyed_raw(&format!("{header}.{payload}"));
    expect(&app, "control", &resigned, StatusCode::OK).await;
}

/// Signs `header.payload` with HS256 and [`JWT_SECRET`].
fn hs256_keyed_raw(signing_input: &str) -> String {
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap();
    let signature =
        jsonwebtoken::crypto::sign(signing_input.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{signing_input}.{signature}")
}

/// Algorithm confusion: an HS256 token whose HMAC key is the RS256 public
/// key PEM (which an attacker knows).
#[tokio::test]
async fn hs256_keyed_with_the_rsa_public_key_is_refused() {
    let only_rs256 = app(&[
        ("KMS_ADMIN_JWT_PUBLIC_KEY", RSA_PUBLIC),
        ("KMS_ADMIN_JWT_ISSUER", ISSUER),
        ("KMS_ADMIN_JWT_AUDIENCE", AUDIENCE),
    ])
    .await;
    let both = app(BOTH_KEYS_ISS_AUD).await;
    let c = claims(&[]);
    for (label, app) in [("RS256 only", &only_rs256), ("HS256 and RS256", &both)] {
        // The RS256 token itself gets in, so the refusal is the algorithm's.
        expect(app, &format!("{label}: RS256"), &rs256(&c), StatusCode::OK).await;
        for (variant, pem) in [
            ("PEM", RSA_PUBLIC.to_owned()),
            ("PEM trimmed", RSA_PUBLIC.trim().to_owned()),
        ] {
            let token = hs256_keyed(pem.as_bytes(), &c);
            let name = format!("{label}: HS256 keyed with the {variant}");
            expect(app, &name, &token, StatusCode::UNAUTHORIZED).await;
        }
    }
}
