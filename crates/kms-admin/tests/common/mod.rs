//! Helpers shared by the admin API test binaries (each uses a part of them).
#![allow(
    dead_code,
    reason = "every test binary compiles this module and uses only some of it"
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kms::Kms;
use kms_admin::{AdminConfig, AuthConfig, Lookup, SharedKms};
use serde_json::Value;
use tower::ServiceExt as _;

pub(crate) const TOKEN: &str = "test-admin-token-0123456789";
pub(crate) const KEY1: &str = "8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334";
pub(crate) const KEY2: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub(crate) const JWT_SECRET: &str = "a-jwt-secret-of-at-least-thirty-two-bytes!";
pub(crate) const RSA_PRIVATE: &str = include_str!("../fixtures/test-rsa-private.pem");
pub(crate) const RSA_PUBLIC: &str = include_str!("../fixtures/test-rsa-public.pem");
pub(crate) const OTHER_RSA_PRIVATE: &str = include_str!("../fixtures/other-rsa-private.pem");
pub(crate) const HEALTH: &str = "/api/admin/kms/health";
pub(crate) const METADATA: &str = "/api/admin/kms/key/metadata";
pub(crate) const ROTATE: &str = "/api/admin/kms/key/rotate";
pub(crate) const CONFIG: &str = "/api/admin/kms/config";
pub(crate) const CONFIG_TEST: &str = "/api/admin/kms/config/test";

/// The server's "environment": fixed variables, never the process's.
pub(crate) fn settings(vars: &[(&'static str, &'static str)]) -> Lookup {
    let vars = vars.to_vec();
    Arc::new(move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
}

pub(crate) fn auth() -> AuthConfig {
    AuthConfig::new()
        .admin_token(TOKEN)
        .unwrap()
        .jwt_hs256_secret(JWT_SECRET.as_bytes())
        .unwrap()
        .jwt_rs256_public_key_pem(RSA_PUBLIC.as_bytes())
        .unwrap()
}

pub(crate) fn config() -> AdminConfig {
    let mut c = AdminConfig::new(auth());
    c.settings = settings(&[("KMS_PROVIDER", "env"), ("ENCRYPTION_KEY", KEY1)]);
    c
}

pub(crate) async fn env_kms(current: &str, previous: Option<&str>) -> Kms {
    let mut b = Kms::builder().env_key(current).retry_attempts(0);
    if let Some(p) = previous {
        b = b.env_previous_key(p);
    }
    b.build().await.unwrap()
}

pub(crate) fn app(kms: Kms, config: AdminConfig) -> (Router, SharedKms) {
    let shared = SharedKms::new(kms);
    (kms_admin::router(shared.clone(), config).unwrap(), shared)
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) json: Value,
    pub(crate) text: String,
}

pub(crate) struct Call<'a> {
    method: Method,
    path: &'a str,
    token: Option<String>,
    body: Option<String>,
    client: IpAddr,
    headers: Vec<(&'static str, String)>,
}

pub(crate) fn call(method: Method, path: &str) -> Call<'_> {
    Call {
        method,
        path,
        token: Some(TOKEN.to_owned()),
        body: None,
        client: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        headers: Vec::new(),
    }
}

impl Call<'_> {
    pub(crate) fn token(mut self, token: Option<&str>) -> Self {
        self.token = token.map(ToOwned::to_owned);
        self
    }
    pub(crate) fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }
    pub(crate) fn client(mut self, last_octet: u8) -> Self {
        self.client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, last_octet));
        self
    }
    pub(crate) fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
    pub(crate) async fn send(self, app: &Router) -> Reply {
        let mut req = Request::builder().method(self.method).uri(self.path);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in &self.headers {
            req = req.header(*k, v);
        }
        let body = match self.body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b)
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(self.client, 40000)));
        let res = app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            json,
            text,
        }
    }
}

pub(crate) fn assert_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    assert_eq!(reply.json["success"], false, "{}", reply.text);
    assert_eq!(reply.json["error"]["code"], code, "{}", reply.text);
    assert!(reply.json["error"]["message"].is_string(), "{}", reply.text);
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn jwt(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

pub(crate) fn hs256(claims: &Value) -> String {
    jwt(
        Algorithm::HS256,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
        claims,
    )
}

pub(crate) fn rs256(pem: &str, claims: &Value) -> String {
    jwt(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        claims,
    )
}
