#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Largest payload the real API accepts: 64 KiB.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Largest page the emulator returns (and the default when `pageSize` is 0).
pub const MAX_PAGE_SIZE: usize = 25_000;

/// Configures and starts an emulator.
#[derive(Debug, Clone)]
pub struct Emulator {
    listen: SocketAddr,
}

impl Default for Emulator {
    fn default() -> Self {
        Emulator {
            listen: (Ipv4Addr::LOCALHOST, 0).into(),
        }
    }
}

impl Emulator {
    /// An emulator on a free loopback port.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Listens on `addr` instead (port 0: a free port).
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Starts an emulator on a free loopback port, in this Tokio runtime.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start() -> io::Result<EmulatorHandle> {
        Self::new().run().await
    }

    /// Starts serving in the background, in this Tokio runtime.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn run(self) -> io::Result<EmulatorHandle> {
        let listener = TcpListener::bind(self.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Shared::default());
        let server = serve(listener, state.clone());
        Ok(EmulatorHandle {
            endpoint: format!("http://{addr}"),
            addr,
            state,
            server: Mutex::new(Some(server)),
        })
    }
}

/// A running (or stopped) emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct EmulatorHandle {
    /// The base URL for the client's endpoint setting, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    state: Arc<Shared>,
    server: Mutex<Option<Server>>,
}

#[derive(Debug)]
struct Server {
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl EmulatorHandle {
    /// Stops serving: open connections are closed once their request is
    /// answered and new ones are refused, as in an outage. The data is kept.
    pub async fn stop(&self) {
        let server = self
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(Server { shutdown, mut task }) = server {
            let _ = shutdown.send(());
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Serves again on the same port with the same data (stops first if running).
    ///
    /// # Errors
    /// When the port cannot be bound again.
    pub async fn restart(&self) -> io::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await?;
        let server = serve(listener, self.state.clone());
        *self.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(server);
        Ok(())
    }

    /// Whether it is serving.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Requires `Authorization: Bearer <token>` on every request from now on
    /// (`None`: accept anything again). Missing: `401 UNAUTHENTICATED`;
    /// another token: `403 PERMISSION_DENIED`.
    pub fn require_token(&self, token: Option<&str>) {
        *self
            .state
            .token
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = token.map(str::to_owned);
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(server) = self
            .server
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = server.shutdown.send(());
        }
    }
}

fn serve(listener: TcpListener, state: Arc<Shared>) -> Server {
    let (shutdown, rx) = oneshot::channel::<()>();
    let app = Router::new().fallback(handle).with_state(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Server { shutdown, task }
}

#[derive(Debug, Default)]
struct Shared {
    store: Mutex<BTreeMap<String, Secret>>,
    token: Mutex<Option<String>>,
}

#[derive(Debug)]
struct Secret {
    create_time: DateTime<Utc>,
    replication: Value,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    versions: Vec<Version>,
    /// Bumped by every update, so that the etag changes.
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionState {
    Enabled,
    Disabled,
    Destroyed,
}

impl VersionState {
    fn name(self) -> &'static str {
        match self {
            VersionState::Enabled => "ENABLED",
            VersionState::Disabled => "DISABLED",
            VersionState::Destroyed => "DESTROYED",
        }
    }

    fn number(self) -> u8 {
        match self {
            VersionState::Enabled => 1,
            VersionState::Disabled => 2,
            VersionState::Destroyed => 3,
        }
    }
}

#[derive(Debug)]
struct Version {
    create_time: DateTime<Utc>,
    destroy_time: Option<DateTime<Utc>>,
    state: VersionState,
    data: Vec<u8>,
    client_checksum: bool,
    /// `replicationStatus`: which Cloud KMS key version encrypted it, under
    /// customer-managed encryption.
    replication_status: Value,
}

/// An error in Google's JSON shape.
struct ApiError {
    code: StatusCode,
    status: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {
            "code": self.code.as_u16(),
            "message": self.message,
            "status": self.status,
        }});
        (
            self.code,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

fn not_found(message: String) -> ApiError {
    ApiError {
        code: StatusCode::NOT_FOUND,
        status: "NOT_FOUND",
        message,
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError {
        code: StatusCode::BAD_REQUEST,
        status: "INVALID_ARGUMENT",
        message: message.into(),
    }
}

fn precondition(message: String) -> ApiError {
    ApiError {
        code: StatusCode::BAD_REQUEST,
        status: "FAILED_PRECONDITION",
        message,
    }
}

type ApiResult = Result<Value, ApiError>;

/// What a request asked for, parsed from its URL.
struct Request<'a> {
    method: Method,
    segments: Vec<&'a str>,
    verb: Option<&'a str>,
    query: BTreeMap<String, String>,
    ints: bool,
}

async fn handle(
    AxState(state): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = check_token(&state, &headers) {
        return e.into_response();
    }
    let query = parse_query(uri.query().unwrap_or(""));
    let ints = query
        .get("$alt")
        .is_some_and(|alt| alt.contains("enum-encoding=int"));
    let path = uri.path();
    let Some(rest) = path.strip_prefix("/v1/") else {
        return not_found(format!(
            "The requested URL {path} was not found on this server."
        ))
        .into_response();
    };
    let (rest, verb) = match rest.rsplit_once('/') {
        Some((head, last)) => match last.split_once(':') {
            Some((name, verb)) => (&rest[..head.len() + 1 + name.len()], Some(verb)),
            None => (rest, None),
        },
        None => (rest, None),
    };
    let req = Request {
        method,
        segments: rest.split('/').collect(),
        verb,
        query,
        ints,
    };
    match route(&state, &req, &body) {
        Ok(value) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

fn check_token(state: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let required = state
        .token
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(required) = required else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(token) if token == required => Ok(()),
        Some(_) => Err(ApiError {
            code: StatusCode::FORBIDDEN,
            status: "PERMISSION_DENIED",
            message: "Permission 'secretmanager.versions.access' denied for resource (or it may not exist)."
                .to_owned(),
        }),
        None => Err(ApiError {
            code: StatusCode::UNAUTHORIZED,
            status: "UNAUTHENTICATED",
            message: "Request is missing required authentication credential. Expected OAuth 2 access \
                      token, login cookie or other valid authentication credential."
                .to_owned(),
        }),
    }
}

fn route(state: &Shared, req: &Request<'_>, body: &[u8]) -> ApiResult {
    let mut store = state.store.lock().unwrap_or_else(PoisonError::into_inner);
    let m = &req.method;
    match (req.segments.as_slice(), req.verb) {
        (["projects", p, "secrets"], None) if !p.is_empty() => match *m {
            Method::GET => list_secrets(&store, p, req),
            Method::POST => create_secret(&mut store, p, req, body),
            _ => Err(method_not_allowed()),
        },
        (["projects", p, "secrets", s], verb) => {
            let name = format!("projects/{p}/secrets/{s}");
            match (m.clone(), verb) {
                (Method::GET, None) => {
                    let secret = find(&store, &name)?;
                    Ok(secret_json(&name, secret))
                }
                (Method::DELETE, None) => store
                    .remove(&name)
                    .map(|_| json!({}))
                    .ok_or_else(|| not_found(format!("Secret [{name}] not found."))),
                (Method::POST, Some("addVersion")) => add_version(&mut store, &name, req, body),
                (Method::PATCH, None) => update_secret(&mut store, &name, req, body),
                _ => Err(method_not_allowed()),
            }
        }
        (["projects", p, "secrets", s, "versions"], None) if *m == Method::GET => {
            let name = format!("projects/{p}/secrets/{s}");
            let secret = find(&store, &name)?;
            let versions: Vec<Value> = secret
                .versions
                .iter()
                .enumerate()
                .rev()
                .map(|(i, v)| version_json(&name, i + 1, v, req.ints))
                .collect();
            page(versions, "versions", req)
        }
        (["projects", p, "secrets", s, "versions", v], verb) => {
            let secret_name = format!("projects/{p}/secrets/{s}");
            version_route(&mut store, &secret_name, v, verb, req)
        }
        _ => Err(not_found(format!(
            "The requested URL /v1/{} was not found on this server.",
            req.segments.join("/")
        ))),
    }
}

fn method_not_allowed() -> ApiError {
    ApiError {
        code: StatusCode::METHOD_NOT_ALLOWED,
        status: "UNIMPLEMENTED",
        message: "This method is not supported by the emulator.".to_owned(),
    }
}

fn find<'s>(store: &'s BTreeMap<String, Secret>, name: &str) -> Result<&'s Secret, ApiError> {
    store
        .get(name)
        .ok_or_else(|| not_found(format!("Secret [{name}] not found.")))
}

fn find_mut<'s>(
    store: &'s mut BTreeMap<String, Secret>,
    name: &str,
) -> Result<&'s mut Secret, ApiError> {
    store
        .get_mut(name)
        .ok_or_else(|| not_found(format!("Secret [{name}] not found.")))
}

fn valid_secret_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `projects/P/locations/global/keyRings/R/cryptoKeys/K`: automatic
/// replication takes only global keys.
fn is_kms_key_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('/').collect();
    matches!(
        parts.as_slice(),
        ["projects", p, "locations", "global", "keyRings", r, "cryptoKeys", k]
            if [p, r, k].iter().all(|s| !s.is_empty())
    )
}

/// A new version's `replicationStatus` under the secret's `replication`:
/// with customer-managed encryption, the Cloud KMS key version that
/// encrypted it (the emulator's keys have one version).
fn replication_status(replication: &Value) -> Value {
    match replication
        .pointer("/automatic/customerManagedEncryption/kmsKeyName")
        .and_then(Value::as_str)
    {
        Some(key) => json!({
            "automatic": {
                "customerManagedEncryption": {
                    "kmsKeyVersionName": format!("{key}/cryptoKeyVersions/1"),
                },
            },
        }),
        None => json!({"automatic": {}}),
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn secret_json(name: &str, s: &Secret) -> Value {
    let mut v = json!({
        "name": name,
        "replication": s.replication,
        "createTime": time(s.create_time),
        "etag": secret_etag(s),
    });
    if let Some(obj) = v.as_object_mut() {
        if !s.labels.is_empty() {
            obj.insert("labels".into(), Value::Object(s.labels.clone()));
        }
        if !s.annotations.is_empty() {
            obj.insert("annotations".into(), Value::Object(s.annotations.clone()));
        }
    }
    v
}

fn version_json(secret: &str, n: usize, v: &Version, ints: bool) -> Value {
    let state = if ints {
        json!(v.state.number())
    } else {
        json!(v.state.name())
    };
    let mut out = json!({
        "name": format!("{secret}/versions/{n}"),
        "createTime": time(v.create_time),
        "state": state,
        "replicationStatus": v.replication_status,
        "etag": format!("\"{}\"", v.create_time.timestamp_micros()),
        "clientSpecifiedPayloadChecksum": v.client_checksum,
    });
    if let (Some(obj), Some(t)) = (out.as_object_mut(), v.destroy_time) {
        obj.insert("destroyTime".into(), json!(time(t)));
    }
    out
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| invalid(format!("Invalid JSON payload received. {e}")))
}

fn string_map(v: Option<&Value>, field: &str) -> Result<Map<String, Value>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(m.clone()),
        Some(_) => Err(invalid(format!(
            "Secret.{field} must map strings to strings."
        ))),
    }
}

fn create_secret(
    store: &mut BTreeMap<String, Secret>,
    project: &str,
    req: &Request<'_>,
    body: &[u8],
) -> ApiResult {
    let id = req.query.get("secretId").map_or("", String::as_str);
    if !valid_secret_id(id) {
        return Err(invalid(
            "Secret ID must be 1 to 255 characters of letters, digits, underscores and hyphens.",
        ));
    }
    let body = parse_body(body)?;
    let replication = match body.get("replication") {
        Some(r @ Value::Object(m))
            if m.contains_key("automatic") || m.contains_key("userManaged") =>
        {
            r.clone()
        }
        _ => return Err(invalid("Secret.replication must be specified.")),
    };
    if let Some(cmek) = replication.pointer("/automatic/customerManagedEncryption") {
        let key = cmek.get("kmsKeyName").and_then(Value::as_str).unwrap_or("");
        if !is_kms_key_name(key) {
            return Err(invalid(
                "Invalid value at 'secret.replication.automatic.customer_managed_encryption.kms_key_name': \
                 must be projects/*/locations/global/keyRings/*/cryptoKeys/*.",
            ));
        }
    }
    let name = format!("projects/{project}/secrets/{id}");
    if store.contains_key(&name) {
        return Err(ApiError {
            code: StatusCode::CONFLICT,
            status: "ALREADY_EXISTS",
            message: format!("Secret [{name}] already exists."),
        });
    }
    let secret = Secret {
        create_time: Utc::now(),
        replication,
        labels: string_map(body.get("labels"), "labels")?,
        annotations: string_map(body.get("annotations"), "annotations")?,
        versions: Vec::new(),
        generation: 0,
    };
    let out = secret_json(&name, &secret);
    store.insert(name, secret);
    Ok(out)
}

fn secret_etag(s: &Secret) -> String {
    format!("\"{}-{}\"", s.create_time.timestamp_micros(), s.generation)
}

/// `PATCH .../secrets/<s>?updateMask=labels,annotations`: replaces the
/// fields named in the mask. A non-empty `etag` in the body must match the
/// secret's (optimistic concurrency), else `FAILED_PRECONDITION`, as Secret
/// Manager does.
fn update_secret(
    store: &mut BTreeMap<String, Secret>,
    name: &str,
    req: &Request<'_>,
    body: &[u8],
) -> ApiResult {
    let body = parse_body(body)?;
    let secret = find_mut(store, name)?;
    if let Some(etag) = body.get("etag").and_then(Value::as_str)
        && !etag.is_empty()
        && etag != secret_etag(secret)
    {
        return Err(precondition(format!(
            "The etag provided in the request does not match the etag of Secret [{name}]."
        )));
    }
    let mask = req.query.get("updateMask").map_or("", String::as_str);
    if mask.is_empty() {
        return Err(invalid("update_mask must be specified."));
    }
    for path in mask.split(',') {
        match path.trim() {
            "labels" => secret.labels = string_map(body.get("labels"), "labels")?,
            "annotations" => {
                secret.annotations = string_map(body.get("annotations"), "annotations")?;
            }
            other => {
                return Err(invalid(format!(
                    "The emulator cannot update the field {other:?}."
                )));
            }
        }
    }
    secret.generation += 1;
    Ok(secret_json(name, secret))
}

fn list_secrets(store: &BTreeMap<String, Secret>, project: &str, req: &Request<'_>) -> ApiResult {
    let prefix = format!("projects/{project}/secrets/");
    let items: Vec<Value> = store
        .range(prefix.clone()..)
        .take_while(|(name, _)| name.starts_with(&prefix))
        .map(|(name, s)| secret_json(name, s))
        .collect();
    page(items, "secrets", req)
}

/// One page of `items`: `pageToken` is the offset, `pageSize` 0 means the maximum.
fn page(items: Vec<Value>, field: &str, req: &Request<'_>) -> ApiResult {
    let size = match req.query.get("pageSize").map(|s| s.parse::<i64>()) {
        None => MAX_PAGE_SIZE,
        Some(Ok(0)) => MAX_PAGE_SIZE,
        Some(Ok(n)) if n > 0 => usize::try_from(n)
            .unwrap_or(MAX_PAGE_SIZE)
            .min(MAX_PAGE_SIZE),
        Some(_) => return Err(invalid("page_size must be a positive number.")),
    };
    let start = match req.query.get("pageToken").map(String::as_str) {
        None | Some("") => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= items.len())
            .ok_or_else(|| invalid("Invalid page token."))?,
    };
    let total = items.len();
    let end = start.saturating_add(size).min(total);
    let page: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();
    let mut out = Map::new();
    if !page.is_empty() {
        out.insert(field.to_owned(), Value::Array(page));
    }
    if end < total {
        out.insert("nextPageToken".into(), json!(end.to_string()));
    }
    out.insert("totalSize".into(), json!(total));
    Ok(Value::Object(out))
}

fn add_version(
    store: &mut BTreeMap<String, Secret>,
    name: &str,
    req: &Request<'_>,
    body: &[u8],
) -> ApiResult {
    let body = parse_body(body)?;
    let secret = find_mut(store, name)?;
    let payload = body.get("payload").cloned().unwrap_or(Value::Null);
    let data = match payload.get("data") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => B64.decode(s).map_err(|_| {
            invalid("Invalid value at 'payload.data' (TYPE_BYTES): not valid base64.")
        })?,
        Some(_) => return Err(invalid("Invalid value at 'payload.data' (TYPE_BYTES).")),
    };
    if data.len() > MAX_PAYLOAD {
        return Err(invalid("Secret Payload cannot be larger than 64KiB."));
    }
    let crc = match payload.get("dataCrc32c") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.parse::<i64>()
                .map_err(|_| invalid("Invalid value at 'payload.data_crc32c' (TYPE_INT64)."))?,
        ),
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .ok_or_else(|| invalid("Invalid value at 'payload.data_crc32c' (TYPE_INT64)."))?,
        ),
        Some(_) => {
            return Err(invalid(
                "Invalid value at 'payload.data_crc32c' (TYPE_INT64).",
            ));
        }
    };
    if let Some(crc) = crc
        && crc != i64::from(crc32c::crc32c(&data))
    {
        return Err(invalid(
            "Checksum mismatch: the data_crc32c provided does not match the payload data.",
        ));
    }
    let replication_status = replication_status(&secret.replication);
    secret.versions.push(Version {
        create_time: Utc::now(),
        destroy_time: None,
        state: VersionState::Enabled,
        data,
        client_checksum: crc.is_some(),
        replication_status,
    });
    let n = secret.versions.len();
    let v = secret
        .versions
        .last()
        .map(|v| version_json(name, n, v, req.ints));
    v.ok_or_else(|| not_found(format!("Secret [{name}] not found.")))
}

fn version_route(
    store: &mut BTreeMap<String, Secret>,
    secret_name: &str,
    v: &str,
    verb: Option<&str>,
    req: &Request<'_>,
) -> ApiResult {
    let secret = store.get_mut(secret_name).ok_or_else(|| match verb {
        Some("access") => not_found(format!(
            "Secret [{secret_name}] not found or has no versions."
        )),
        _ => not_found(format!("Secret [{secret_name}] not found.")),
    })?;
    let n = if v == "latest" {
        if secret.versions.is_empty() {
            return Err(not_found(format!(
                "Secret [{secret_name}] not found or has no versions."
            )));
        }
        secret.versions.len()
    } else {
        v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
            invalid(format!(
                "Invalid secret version [{v}]: expected a positive number or 'latest'."
            ))
        })?
    };
    let name = format!("{secret_name}/versions/{n}");
    let version = n
        .checked_sub(1)
        .and_then(|i| secret.versions.get_mut(i))
        .ok_or_else(|| not_found(format!("Secret Version [{name}] not found.")))?;
    let in_state = |state: VersionState| {
        precondition(format!(
            "Secret Version [{name}] is in {} state.",
            state.name()
        ))
    };
    match (req.method.clone(), verb) {
        (Method::GET, None) => {}
        (Method::GET, Some("access")) => {
            if version.state != VersionState::Enabled {
                return Err(in_state(version.state));
            }
            return Ok(json!({
                "name": name,
                "payload": {
                    "data": B64.encode(&version.data),
                    "dataCrc32c": crc32c::crc32c(&version.data).to_string(),
                },
            }));
        }
        (Method::POST, Some("enable" | "disable")) => {
            if version.state == VersionState::Destroyed {
                return Err(in_state(version.state));
            }
            version.state = if verb == Some("enable") {
                VersionState::Enabled
            } else {
                VersionState::Disabled
            };
        }
        (Method::POST, Some("destroy")) => {
            if version.state == VersionState::Destroyed {
                return Err(in_state(version.state));
            }
            version.state = VersionState::Destroyed;
            version.destroy_time = Some(Utc::now());
            version.data.clear();
        }
        _ => return Err(method_not_allowed()),
    }
    Ok(version_json(secret_name, n, version, req.ints))
}

/// Query parameters, percent-decoded (`+` is a space).
fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
