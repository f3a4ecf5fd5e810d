//! The admin API's untrusted inputs through its router: the configuration
//! document (`POST /config/test`) and the `Authorization`
//! header (static token, HS256 and RS256 JWTs). The first byte picks.
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use kms_admin::{AdminConfig, AuthConfig, SharedKms};
use tower::ServiceExt as _;

const TOKEN: &str = "fuzz-admin-token-0123456789";
const KEY: &str = "8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334";
const RSA_PUBLIC: &str =
    include_str!("../../../crates/kms-admin/tests/fixtures/test-rsa-public.pem");

fn main() {
    let rt = kms_fuzz::runtime();
    let app = rt.block_on(async {
        let kms = kms::Kms::builder()
            .env_key(KEY)
            .build()
            .await
            .expect("env kms");
        let auth = AuthConfig::new()
            .admin_token(TOKEN)
            .and_then(|a| a.jwt_hs256_secret(b"a-jwt-secret-of-at-least-thirty-two-bytes!"))
            .and_then(|a| a.jwt_rs256_public_key_pem(RSA_PUBLIC.as_bytes()))
            .expect("auth config");
        let mut config = AdminConfig::new(auth);
        config.settings = Arc::new(|name| match name {
            "KMS_PROVIDER" => Some("env".to_owned()),
            "ENCRYPTION_KEY" => Some(KEY.to_owned()),
            _ => None,
        });
        config.limits.requests_per_minute = 0;
        config.limits.sensitive_per_minute = 0;
        config.limits.auth_failures = u32::MAX;
        kms_admin::router(SharedKms::new(kms), config).expect("router")
    });
    // The closure must be unwind-safe; panics abort here anyway.
    let (rt, app) = (AssertUnwindSafe(rt), AssertUnwindSafe(app));
    afl::fuzz!(|data: &[u8]| {
        let Some((&pick, rest)) = data.split_first() else {
            return;
        };
        let mut req = Request::builder();
        // Only `POST /config/test` for documents: `PUT /config` would swap
        // the shared state, and a finding would depend on earlier inputs.
        req = match pick % 2 {
            0 => req
                .method(Method::POST)
                .uri("/api/admin/kms/config/test")
                .header("authorization", format!("Bearer {TOKEN}")),
            _ => {
                let r = req.method(Method::GET).uri("/api/admin/kms/health");
                match axum::http::HeaderValue::from_bytes(rest) {
                    Ok(v) => r.header("authorization", v),
                    Err(_) => return,
                }
            }
        };
        let body = if pick % 2 == 1 {
            Body::empty()
        } else {
            Body::from(rest.to_vec())
        };
        let Ok(mut req) = req.header("content-type", "application/json").body(body) else {
            return;
        };
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
        let _ = rt.block_on(app.clone().oneshot(req));
    });
}
