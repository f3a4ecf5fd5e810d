//! The endpoints.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kms::cache::CacheStats;
use kms::{Error, Fingerprint, HealthStatus, KeyId, KeyVersion, Kms, KmsBuilder, VersionInfo};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::AdminState;
use crate::document::{self, Document, Lookup, MinVersion, Requested};
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

/// The health response: the provider stack's [`HealthStatus`] and the key
/// cache's counters, which the cache layer owns.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthReport {
    /// The provider stack's health, its fields at the top level.
    #[serde(flatten)]
    pub status: HealthStatus,
    /// The key cache's counters, when the stack has a cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheStats>,
}

impl HealthReport {
    /// Checks the health of `kms`'s provider stack and reads its cache counters.
    pub async fn of(kms: &Kms) -> Self {
        HealthReport {
            status: kms.health().await,
            cache: kms.cache_stats(),
        }
    }
}

/// `GET /api/admin/kms/health`: 200 when healthy, 503 with the same data when not.
pub(crate) async fn health(State(state): State<Arc<AdminState>>) -> Response {
    let kms = state.shared.kms();
    let report = HealthReport::of(&kms).await;
    let audit = key_audit(&kms);
    if report.status.healthy {
        ok(None, report, audit)
    } else {
        let data = serde_json::to_value(&report).unwrap_or(Value::Null);
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
/// It is a configuration document, the shape `PUT /config` takes: the
/// facade's settings in effect, then the provider's (`settings`, from
/// [`document::describe`]), so a document read here can be edited and sent
/// back.
fn config_view(kms: &Kms, settings: serde_json::Map<String, Value>) -> Value {
    let config = kms.config();
    let mut view = Map::new();
    for setting in kms::config::SETTINGS {
        let (Some(name), Some(value)) = (setting.fields.first(), config.get(setting.variable))
        else {
            continue;
        };
        let value = match value.parse::<u64>() {
            Ok(n)
                if setting.variable != "KMS_KEY_ID"
                    && setting.variable != "KMS_MIN_DECRYPTION_VERSION" =>
            {
                Value::from(n)
            }
            _ => Value::String(value),
        };
        view.insert((*name).to_owned(), value);
    }
    view.extend(settings);
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
    /// Built without minimum decryption versions or scheduled rotation:
    /// nothing of it runs in the background or writes.
    kms: Kms,
    /// The variables it was built from, to build the one swapped in.
    lookup: Lookup,
    lifecycle: Lifecycle,
    settings: serde_json::Map<String, Value>,
    report: Value,
}

/// The lifecycle settings of a new configuration: the running server's,
/// changed only where the document may change them.
#[derive(Debug, Default)]
struct Lifecycle {
    rotation_period: Option<Duration>,
    min_versions: Vec<(KeyId, KeyVersion)>,
}

impl Lifecycle {
    fn report(&self) -> (Value, Value) {
        let period = self
            .rotation_period
            .map_or(Value::Null, |p| Value::from(millis(p)));
        let mins = self
            .min_versions
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect::<Map<_, _>>();
        (period, Value::Object(mins))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Candidate {
    /// The [`Kms`] to swap in: built again with the lifecycle settings
    /// (scheduled rotation starts here, once every check has passed), or
    /// the tested one when there are none.
    async fn into_active(self) -> Result<(Kms, Map<String, Value>, Value), ApiError> {
        let Candidate {
            kms,
            lookup,
            lifecycle,
            settings,
            report,
        } = self;
        if lifecycle.rotation_period.is_none() && lifecycle.min_versions.is_empty() {
            return Ok((kms, settings, report));
        }
        drop(kms);
        let mut builder = KmsBuilder::from_lookup(&*lookup).map_err(invalid_config)?;
        drop(lookup);
        for (key_id, version) in lifecycle.min_versions {
            builder = builder.min_decryption_version(key_id, version);
        }
        let kms = builder
            .rotation_period(lifecycle.rotation_period)
            .build()
            .await
            .map_err(invalid_config)?;
        Ok((kms, settings, report))
    }
}

/// Builds a [`Kms`] from a posted document, runs its health check and
/// fetches its current key, then settles the lifecycle settings against
/// the running server (see [`resolve_lifecycle`]). Changes nothing: the
/// [`Kms`] built here has no scheduled rotation.
async fn build_and_test(state: &AdminState, body: &[u8]) -> Result<Candidate, ApiError> {
    let doc = Document::parse(body)?;
    let provider = doc.provider().to_owned();
    let requested = doc.requested().clone();
    let lookup: Lookup = doc.lookup(&state.config.settings)?;
    let settings = document::describe(&provider, &lookup);
    let server = state.shared.kms();
    // The lookup hides the lifecycle variables: this builder has neither a
    // minimum decryption version nor a rotation period.
    let builder = KmsBuilder::from_lookup(&*lookup).map_err(invalid_config)?;
    let key_id = builder.config().key_id;
    if requested.min_decryption_version == MinVersion::Remove
        && let Some(minimum) = server.config().min_decryption_versions.get(key_id.as_str())
    {
        return Err(min_version_error(format!(
            "`minDecryptionVersion` cannot be removed: the server refuses versions of key \
             '{key_id}' older than {minimum}, and the admin API may not make retired versions \
             decrypt again (leave it out to keep the server's minimum)"
        )));
    }
    let kms = builder.build().await.map_err(invalid_config)?;
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
            let lifecycle = resolve_lifecycle(&server, &kms, &requested).await?;
            let (period, mins) = lifecycle.report();
            report.insert("rotationPeriod".into(), period);
            report.insert("minDecryptionVersions".into(), mins);
            Ok(Candidate {
                kms,
                lookup,
                lifecycle,
                settings,
                report: Value::Object(report),
            })
        }
        Err(e) => Err(ApiError::from(e).with_data(Value::Object(report))),
    }
}

fn min_version_error(message: String) -> ApiError {
    ApiError::bad_request("INVALID_CONFIG", message)
}

/// A provider failure while comparing versions: its own status, with the reason.
fn comparison_error(e: Error, which: &str) -> ApiError {
    let cause = e.to_string();
    ApiError::from(e).with_data(json!({
        "reason": format!(
            "cannot list or read the key versions on the {which} provider, so the minimum \
             decryption version cannot be checked"
        ),
        "cause": cause,
    }))
}

/// The versions of `key_id` on the candidate, oldest first.
async fn candidate_versions(new: &Kms, key_id: &KeyId) -> Result<Vec<VersionInfo>, ApiError> {
    match new.provider().versions(key_id).await {
        Ok(list) => Ok(list),
        Err(Error::KeyNotFound { .. }) => Err(min_version_error(format!(
            "`minDecryptionVersion`: the new configuration has no key '{key_id}', so the \
             server's minimum decryption version of that key cannot be kept; copy the key's \
             versions first (`kms migrate`)"
        ))),
        Err(e) => Err(comparison_error(e, "new")),
    }
}

/// Where the server's minimum version `minimum` of `key_id` is in the
/// candidate's version list `list`: the version holding the same key
/// material (same fingerprint), by the same name first. Version names are
/// provider-native, so a name alone is not trusted across providers; when
/// the server itself cannot read its minimum any more, the name is all
/// there is.
async fn locate(
    server: &Kms,
    new: &Kms,
    list: &[VersionInfo],
    key_id: &KeyId,
    minimum: &KeyVersion,
) -> Result<Option<usize>, ApiError> {
    let wanted = match server.provider().key_version(key_id, minimum).await {
        Ok(key) => Some(key.fingerprint()),
        Err(Error::KeyNotFound { .. }) => None,
        Err(e) => return Err(comparison_error(e, "current")),
    };
    let same_name = list.iter().position(|v| v.version == *minimum);
    let Some(wanted) = wanted else {
        return Ok(same_name);
    };
    let order = same_name
        .into_iter()
        .chain((0..list.len()).filter(|i| Some(*i) != same_name));
    for i in order {
        let Some(info) = list.get(i) else { continue };
        match new.provider().key_version(key_id, &info.version).await {
            Ok(key) if key.fingerprint() == wanted => return Ok(Some(i)),
            Ok(_) | Err(Error::KeyNotFound { .. }) => {}
            Err(e) => return Err(comparison_error(e, "new")),
        }
    }
    Ok(None)
}

/// The lifecycle settings of the candidate `new`:
/// - the rotation period: the document's (at least an hour, checked when
///   parsed), or the running server's;
/// - every minimum decryption version of the running server, for every key
///   id (a ciphertext names its key id, so the new configuration still
///   decrypts keys other than its own), carried over to the new provider by
///   key material: the new provider's version with the same fingerprint.
///   One that cannot be carried over (the new provider lacks that key or
///   that version) is refused;
/// - for the document's key id, the document's `minDecryptionVersion` when
///   given: it must be listed by the new provider and must not come before
///   the server's minimum in the new provider's version order (oldest
///   first, [`kms::KeyProvider::versions`]). Removing it was refused before
///   the build.
async fn resolve_lifecycle(
    server: &Kms,
    new: &Kms,
    requested: &Requested,
) -> Result<Lifecycle, ApiError> {
    let rotation_period = requested.rotation_period.or_else(|| {
        server
            .config()
            .rotation_period_ms
            .map(Duration::from_millis)
    });
    let own_key = new.key_id();
    let mut min_versions = Vec::new();
    let mut own_key_done = false;
    for (key_id, minimum) in &server.config().min_decryption_versions {
        let (Ok(key_id), Ok(minimum)) = (KeyId::new(key_id), KeyVersion::new(minimum)) else {
            continue; // Checked when the server's configuration was built.
        };
        let list = candidate_versions(new, &key_id).await?;
        let Some(at) = locate(server, new, &list, &key_id, &minimum).await? else {
            return Err(min_version_error(format!(
                "`minDecryptionVersion`: the new configuration has no version of key '{key_id}' \
                 holding the key of the server's minimum decryption version {minimum}, so the \
                 minimum cannot be kept; copy the key's versions first (`kms migrate`)"
            )));
        };
        let mut kept = list
            .get(at)
            .map_or_else(|| minimum.clone(), |v| v.version.clone());
        if key_id == *own_key {
            own_key_done = true;
            if let MinVersion::Set(wanted) = &requested.min_decryption_version {
                let Some(i) = list.iter().position(|v| v.version == *wanted) else {
                    return Err(min_version_error(format!(
                        "`minDecryptionVersion`: key '{key_id}' has no version {wanted}"
                    )));
                };
                if i < at {
                    return Err(min_version_error(format!(
                        "`minDecryptionVersion` cannot be lowered: version {wanted} of key \
                         '{key_id}' is older than the server's minimum {kept}, and the admin API \
                         may not make retired versions decrypt again"
                    )));
                }
                kept = wanted.clone();
            }
        }
        min_versions.push((key_id, kept));
    }
    if !own_key_done && let MinVersion::Set(wanted) = &requested.min_decryption_version {
        let list = match new.provider().versions(own_key).await {
            Ok(list) => list,
            Err(e) => return Err(comparison_error(e, "new")),
        };
        if !list.iter().any(|v| v.version == *wanted) {
            return Err(min_version_error(format!(
                "`minDecryptionVersion`: key '{own_key}' has no version {wanted}"
            )));
        }
        min_versions.push((own_key.clone(), wanted.clone()));
    }
    Ok(Lifecycle {
        rotation_period,
        min_versions,
    })
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

/// What a `PUT /config` without a configuration file says, in its response
/// and its log.
const UNTIL_RESTART: &str = "the new configuration lasts until the server restarts: there is no \
     configuration file to write it to (kms serve --config FILE, or KMS_CONFIG_FILE)";

/// `PUT /api/admin/kms/config`: test, check continuity, then swap
/// atomically; with a configuration file, the document is written to it
/// first.
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
    // Every check passed: only now is the configuration built with its
    // minimum decryption versions and scheduled rotation.
    let (kms, settings, report) = match candidate.into_active().await {
        Ok(active) => active,
        Err(e) => return e.into_response(),
    };
    // Written before the swap: a file that cannot be written leaves the
    // running configuration as it was.
    let persisted = match &state.config.config_file {
        Some(file) => match file.save(&body, &kms) {
            Ok(()) => {
                tracing::info!(
                    target: "kms",
                    file = %file.path().display(),
                    "KMS configuration written to its file"
                );
                json!({ "file": file.path().display().to_string() })
            }
            Err(e) => {
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "CONFIG_NOT_SAVED",
                    format!(
                        "configuration not changed: cannot write the configuration file {}: {e}",
                        file.path().display()
                    ),
                )
                .into_response();
            }
        },
        None => {
            tracing::warn!(target: "kms", "{UNTIL_RESTART}");
            Value::Null
        }
    };
    let audit = key_audit(&kms);
    let view = config_view(&kms, settings.clone());
    let to = kms.config().provider.clone();
    state.shared.replace(kms, settings);
    tracing::info!(
        target: "kms::audit",
        op = "config.replace",
        from = %old.config().provider,
        to = %to,
        key_id = %old.key_id(),
        "KMS configuration replaced"
    );
    let warning = persisted.is_null().then_some(UNTIL_RESTART);
    let mut data = json!({
        "config": view,
        "test": report,
        "continuity": continuity,
        "persisted": persisted,
    });
    if let (Some(warning), Value::Object(map)) = (warning, &mut data) {
        map.insert("warning".into(), Value::String(warning.to_owned()));
    }
    ok(Some("KMS configuration updated"), data, audit)
}

/// `GET /metrics`: Prometheus text format. A scrape first runs a provider
/// health check (at most one every
/// [`crate::metrics::SCRAPE_HEALTH_INTERVAL`], bounded to
/// [`crate::metrics::SCRAPE_HEALTH_TIMEOUT`]), so that `kms_provider_healthy`
/// says how the provider is now even when no one calls the health endpoint
/// (a check that does not answer in time counts as unhealthy).
pub(crate) async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let Some(handle) = &state.config.metrics else {
        return ApiError::not_found().into_response();
    };
    let kms = state.shared.kms();
    crate::metrics::check_health(&kms, &state.scrape_checked).await;
    crate::metrics::record_gauges(&kms);
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
