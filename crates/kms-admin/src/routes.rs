//! The endpoints.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kms::{Error, Fingerprint, Kms, KmsBuilder};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::AdminState;
use crate::document::{self, Document, Lookup};
use crate::error::ApiError;

/// What a handler did, for the audit event of the request.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditInfo {
    pub(crate) key_id: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) provider: Option<String>,
}

/// `{"success":true,"data":...}`, with `message` when given.
fn ok(message: Option<&str>, data: impl Serialize, audit: AuditInfo) -> Response {
    let mut body = Map::new();
    body.insert("success".into(), Value::Bool(true));
    if let Some(m) = message {
        body.insert("message".into(), Value::String(m.to_owned()));
    }
    body.insert(
        "data".into(),
        serde_json::to_value(data).unwrap_or(Value::Null),
    );
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    response.extensions_mut().insert(audit);
    response
}

fn with_audit(mut response: Response, audit: AuditInfo) -> Response {
    response.extensions_mut().insert(audit);
    response
}

fn key_audit(kms: &Kms) -> AuditInfo {
    AuditInfo {
        key_id: Some(kms.key_id().to_string()),
        version: None,
        provider: Some(kms.config().provider.clone()),
    }
}

/// A request body, as bytes within the body limit (413 above it).
pub(crate) struct Body(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<crate::BodyLimit>()
            .map_or(crate::DEFAULT_BODY_LIMIT, |l| l.0);
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large(limit)
                } else {
                    ApiError::bad_request("INVALID_BODY", "cannot read the request body")
                }
            })
    }
}

/// `GET /api/admin/kms/health`: 200 when healthy, 503 with the same data when not.
pub(crate) async fn health(State(state): State<Arc<AdminState>>) -> Response {
    let kms = state.shared.kms();
    let status = kms.health().await;
    let audit = key_audit(&kms);
    if status.healthy {
        ok(None, status, audit)
    } else {
        let data = serde_json::to_value(&status).unwrap_or(Value::Null);
        with_audit(
            ApiError::from(Error::Unavailable {
                provider: "kms",
                source: None,
            })
            .with_data(data)
            .into_response(),
            audit,
        )
    }
}

/// `GET /api/admin/kms/key/metadata`.
pub(crate) async fn metadata(State(state): State<Arc<AdminState>>) -> Response {
    let kms = state.shared.kms();
    let mut audit = key_audit(&kms);
    match kms.metadata().await {
        Ok(meta) => {
            audit.version = meta.current_version.as_ref().map(ToString::to_string);
            ok(None, meta, audit)
        }
        Err(e) => with_audit(ApiError::from(e).into_response(), audit),
    }
}

/// `POST /api/admin/kms/key/rotate`: a new key version; the cache is cleared.
pub(crate) async fn rotate(State(state): State<Arc<AdminState>>) -> Response {
    let kms = state.shared.kms();
    let mut audit = key_audit(&kms);
    match kms.rotate().await {
        Ok(version) => {
            kms.clear_cache();
            audit.version = Some(version.to_string());
            ok(
                Some("Encryption key rotated successfully"),
                json!({ "newKeyVersion": version, "keyId": kms.key_id() }),
                audit,
            )
        }
        Err(e) => with_audit(ApiError::from(e).into_response(), audit),
    }
}

/// The active configuration, with provider settings (secrets redacted).
fn config_view(kms: &Kms, settings: serde_json::Map<String, Value>) -> Value {
    let mut view = match serde_json::to_value(kms.config()) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    view.insert("settings".into(), Value::Object(settings));
    Value::Object(view)
}

/// `GET /api/admin/kms/config`.
pub(crate) async fn get_config(State(state): State<Arc<AdminState>>) -> Response {
    let active = state.shared.active();
    let settings = active.settings.clone().unwrap_or_else(|| {
        document::describe(&active.kms.config().provider, &state.config.settings)
    });
    ok(
        None,
        config_view(&active.kms, settings),
        key_audit(&active.kms),
    )
}

/// A candidate configuration, built and checked.
struct Candidate {
    kms: Kms,
    settings: serde_json::Map<String, Value>,
    report: Value,
}

/// Builds a [`Kms`] from a posted document, runs its health check and
/// fetches its current key. Changes nothing.
async fn build_and_test(state: &AdminState, body: &[u8]) -> Result<Candidate, ApiError> {
    let doc = Document::parse(body)?;
    let provider = doc.provider().to_owned();
    let lookup: Lookup = doc.lookup(&state.config.settings)?;
    let settings = document::describe(&provider, &lookup);
    let kms = KmsBuilder::from_lookup(&*lookup)
        .map_err(invalid_config)?
        .build()
        .await
        .map_err(invalid_config)?;
    drop(lookup);
    let health = kms.health().await;
    let key = kms.provider().current_key(kms.key_id()).await;
    let mut report = Map::new();
    report.insert("provider".into(), Value::String(provider));
    report.insert("keyId".into(), Value::String(kms.key_id().to_string()));
    report.insert("healthy".into(), Value::Bool(health.healthy));
    report.insert("responseTime".into(), Value::from(health.response_time));
    if let Some(e) = &health.error {
        report.insert("healthError".into(), Value::String(e.clone()));
    }
    report.insert("keyAvailable".into(), Value::Bool(key.is_ok()));
    match key {
        Ok(key) => {
            report.insert(
                "keyVersion".into(),
                Value::String(key.version().to_string()),
            );
            report.insert(
                "fingerprint".into(),
                Value::String(key.fingerprint().to_string()),
            );
            Ok(Candidate {
                kms,
                settings,
                report: Value::Object(report),
            })
        }
        Err(e) => Err(ApiError::from(e).with_data(Value::Object(report))),
    }
}

/// Provider errors while building are configuration errors (400), except
/// an unreachable provider (503).
fn invalid_config(e: Error) -> ApiError {
    match e {
        Error::Unavailable { .. } | Error::AccessDenied { .. } => ApiError::from(e),
        other => ApiError::bad_request("INVALID_CONFIG", other.to_string()),
    }
}

/// `POST /api/admin/kms/config/test`.
pub(crate) async fn test_config(
    State(state): State<Arc<AdminState>>,
    Body(body): Body,
) -> Response {
    match build_and_test(&state, &body).await {
        Ok(c) => {
            let audit = key_audit(&c.kms);
            ok(Some("Configuration test passed"), c.report, audit)
        }
        Err(e) => e.into_response(),
    }
}

/// Every enabled version of the active key, by fingerprint.
async fn fingerprints(kms: &Kms, key_id: &kms::KeyId) -> kms::Result<Vec<(String, Fingerprint)>> {
    let provider = kms.provider();
    let mut out = Vec::new();
    for info in provider.versions(key_id).await? {
        if !info.enabled {
            continue;
        }
        match provider.key_version(key_id, &info.version).await {
            Ok(key) => out.push((info.version.to_string(), key.fingerprint())),
            Err(Error::KeyNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Refuses a swap after which ciphertexts of the active key would not decrypt.
async fn check_continuity(old: &Kms, new: &Kms) -> Result<Value, ApiError> {
    let key_id = old.key_id().clone();
    let before = fingerprints(old, &key_id).await.map_err(|e| {
        ApiError::from(e.clone()).with_data(json!({
            "reason": "cannot list the versions of the active key on the current provider, \
                       so the swap cannot be checked",
            "cause": e.to_string(),
        }))
    })?;
    let after: BTreeSet<Fingerprint> = match fingerprints(new, &key_id).await {
        Ok(v) => v.into_iter().map(|(_, f)| f).collect(),
        Err(Error::KeyNotFound { .. }) => BTreeSet::new(),
        Err(e) => return Err(ApiError::from(e)),
    };
    let missing: Vec<Value> = before
        .iter()
        .filter(|(_, f)| !after.contains(f))
        .map(|(v, f)| json!({ "version": v, "fingerprint": f.to_string() }))
        .collect();
    if missing.is_empty() {
        return Ok(json!({ "keyId": key_id, "versionsChecked": before.len() }));
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "KEYS_NOT_MIGRATED",
        format!(
            "configuration not changed: the new provider lacks {} of the {} versions of key \
             '{key_id}' that data may be encrypted under, so that data would no longer decrypt; \
             copy the key's versions to the new provider first (`kms migrate`), then retry",
            missing.len(),
            before.len()
        ),
    )
    .with_data(json!({ "keyId": key_id, "missingVersions": missing })))
}

/// `PUT /api/admin/kms/config`: test, check continuity, then swap atomically.
pub(crate) async fn put_config(State(state): State<Arc<AdminState>>, Body(body): Body) -> Response {
    // One swap at a time: two concurrent PUTs must not both pass their
    // continuity check against the same old configuration.
    let _guard = state.swap_lock.lock().await;
    let candidate = match build_and_test(&state, &body).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let old = state.shared.kms();
    let continuity = match check_continuity(&old, &candidate.kms).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let audit = key_audit(&candidate.kms);
    let view = config_view(&candidate.kms, candidate.settings.clone());
    let to = candidate.kms.config().provider.clone();
    state.shared.replace(candidate.kms, candidate.settings);
    tracing::info!(
        target: "kms::audit",
        op = "config.replace",
        from = %old.config().provider,
        to = %to,
        key_id = %old.key_id(),
        "KMS configuration replaced"
    );
    ok(
        Some("KMS configuration updated"),
        json!({ "config": view, "test": candidate.report, "continuity": continuity }),
        audit,
    )
}

/// `GET /metrics`: Prometheus text format.
pub(crate) async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let Some(handle) = &state.config.metrics else {
        return ApiError::not_found().into_response();
    };
    crate::metrics::record_gauges(&state.shared.kms());
    let mut response = handle.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Unknown routes.
pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found()
}

/// Known routes, wrong method.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
