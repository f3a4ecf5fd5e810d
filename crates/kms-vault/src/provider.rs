//! [`VaultProvider`]: the `KeyProvider` over a KV version 2 secret per key id.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use kms_core::retention::{LOW_RETENTION, evicted_by_next_write};
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider, KeyVersion,
    LiveVersions, Result, VersionInfo,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;
use url::Url;
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::{
    ReadSecretMetadataResponse, ReadSecretResponse, SecretMetadata,
};
use vaultrs::client::VaultClient;
use zeroize::Zeroizing;

use crate::PROVIDER;
use crate::builder::VaultProviderBuilder;
use kms_core::provider_support::{CallError, Failure, describe_chain};

use crate::call;
use crate::endpoints;

/// AppRole credentials, kept to log in again when the token expires.
pub(crate) struct AppRole {
    pub(crate) mount: String,
    pub(crate) role_id: SecretString,
    pub(crate) secret_id: SecretString,
}

/// The client in use and how many times the provider has logged in.
struct Session {
    client: Arc<VaultClient>,
    generation: u64,
}

/// Data keys in HashiCorp Vault or OpenBao: one KV version 2 secret per key
/// id, one KV version per key version. See the crate documentation.
pub struct VaultProvider {
    address: Url,
    namespace: Option<String>,
    mount: String,
    path_prefix: String,
    approle: Option<AppRole>,
    session: RwLock<Session>,
    /// Serializes AppRole logins, so concurrent 403s cause one login.
    login: tokio::sync::Mutex<()>,
    /// The mount's `max_versions` as last read, for `metadata` (health
    /// checks call it often); writes always read it afresh.
    mount_max: RwLock<Option<(Instant, Option<u64>)>>,
    /// When a token was last found valid after a refusal, and the login
    /// generation it belongs to.
    token_checked: std::sync::Mutex<Option<(Instant, u64)>>,
}

impl fmt::Debug for VaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultProvider")
            .field("address", &self.address.as_str())
            .field("namespace", &self.namespace)
            .field("mount", &self.mount)
            .field("path_prefix", &self.path_prefix)
            .field(
                "auth",
                &match &self.approle {
                    Some(a) => format!("approle (auth/{})", a.mount),
                    None => "token".to_owned(),
                },
            )
            .finish_non_exhaustive()
    }
}

/// The fields the spec's `vault kv put` writes, as written by `rotate`.
#[derive(Serialize)]
struct KeySecret<'a> {
    key: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

impl VaultProvider {
    /// A builder with the documented defaults.
    #[must_use]
    pub fn builder() -> VaultProviderBuilder {
        VaultProviderBuilder::new()
    }

    /// Builds from the process environment (see the crate documentation for
    /// the variables).
    ///
    /// # Errors
    /// As [`VaultProviderBuilder::build`].
    pub async fn from_env() -> Result<Self> {
        VaultProviderBuilder::from_lookup(|name| std::env::var(name).ok())?
            .build()
            .await
    }

    pub(crate) async fn connect(
        client: VaultClient,
        address: Url,
        namespace: Option<String>,
        mount: String,
        path_prefix: String,
        approle: Option<AppRole>,
    ) -> Result<Self> {
        let provider = VaultProvider {
            address,
            namespace,
            mount,
            path_prefix,
            approle,
            session: RwLock::new(Session {
                client: Arc::new(client),
                generation: 0,
            }),
            login: tokio::sync::Mutex::new(()),
            mount_max: RwLock::new(None),
            token_checked: std::sync::Mutex::new(None),
        };
        if provider.approle.is_some() {
            provider.log_in(0).await.map_err(|e| {
                if e.status() == Some(404) {
                    Error::config("VAULT_APPROLE_MOUNT", e.to_string())
                } else {
                    e.into_error(&KeyId::default(), None)
                }
            })?;
        }
        Ok(provider)
    }

    /// The Vault path (under the mount) of a key id's secret.
    pub(crate) fn secret_path(&self, key_id: &KeyId) -> String {
        if self.path_prefix.is_empty() {
            key_id.as_str().to_owned()
        } else {
            format!("{}/{}", self.path_prefix, key_id)
        }
    }

    fn session(&self) -> (Arc<VaultClient>, u64) {
        let s = self.session.read().unwrap_or_else(PoisonError::into_inner);
        (s.client.clone(), s.generation)
    }

    /// Logs in with AppRole unless another task already did since
    /// `seen_generation`, and installs the new token.
    async fn log_in(&self, seen_generation: u64) -> Result<(), CallError> {
        let Some(approle) = &self.approle else {
            return Ok(());
        };
        let _one_at_a_time = self.login.lock().await;
        let (client, generation) = self.session();
        if generation != seen_generation {
            return Ok(());
        }
        // Log in without sending the old (perhaps expired) token.
        let anonymous = with_token(&client, "");
        let what = format!("log in with AppRole at auth/{}", approle.mount);
        let auth = vaultrs::auth::approle::login(
            &anonymous,
            &approle.mount,
            approle.role_id.expose_secret().trim(),
            approle.secret_id.expose_secret().trim(),
        )
        .await
        .map_err(|e| {
            let e = call::classify(what, e);
            match e.status() {
                // Vault answers 400 "invalid role or secret ID" to bad credentials.
                Some(400) => {
                    let detail = format!("the AppRole credentials were refused ({})", e.detail());
                    e.reclassify(Failure::Denied, detail)
                }
                Some(404) => e.reclassify(
                    Failure::Unexpected,
                    "no AppRole auth method is mounted there (HTTP 404)",
                ),
                _ => e,
            }
        })?;
        let token = Zeroizing::new(auth.client_token);
        let mut session = self.session.write().unwrap_or_else(PoisonError::into_inner);
        session.client = Arc::new(with_token(&client, &token));
        session.generation = generation + 1;
        tracing::debug!(
            target: "kms::vault",
            mount = %approle.mount,
            ttl_seconds = auth.lease_duration,
            "logged in to Vault with AppRole"
        );
        Ok(())
    }

    /// Runs `op` once with the current client, without logging in again
    /// on a 403: for calls whose 403 means "this token may not", not "this
    /// token expired" (the mount's configuration, the secret's
    /// `max_versions`), made right after a call that would have refreshed
    /// an expired token. A new AppRole login per refusal would leave tokens
    /// behind and use up a secret-id with `secret_id_num_uses`.
    async fn call_once<T, F, Fut>(&self, op: F) -> Result<T, CallError>
    where
        F: FnOnce(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        op(self.session().0).await
    }

    /// Runs `op` with the current client; with AppRole, a 403 (expired
    /// token) causes one new login and one more try.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, CallError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let (client, generation) = self.session();
        match op(client.clone()).await {
            Err(e) if e.kind() == Failure::Denied && self.approle.is_some() => {
                if self.token_still_valid(&client, generation).await {
                    // A policy refusal, not an expired token: a new login
                    // would not help and would leave a token behind.
                    return Err(e);
                }
                tracing::debug!(
                    target: "kms::vault",
                    "Vault refused the AppRole token (expired?): logging in again"
                );
                self.log_in(generation).await?;
                op(self.session().0).await
            }
            result => result,
        }
    }

    /// Whether Vault still accepts the token of `client`
    /// (`auth/token/lookup-self`), remembered for [`TOKEN_CHECK_TTL`] so
    /// that a stream of refusals costs one lookup per interval, and no
    /// login.
    async fn token_still_valid(&self, client: &VaultClient, generation: u64) -> bool {
        let checked = *self
            .token_checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, checked_generation)) = checked
            && checked_generation == generation
            && at.elapsed() < TOKEN_CHECK_TTL
        {
            return true;
        }
        let valid = vaultrs::api::exec_with_result(client, endpoints::LookupSelf)
            .await
            .is_ok();
        if valid {
            *self
                .token_checked
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), generation));
        }
        valid
    }

    /// Reads one version (or the latest) of a key's secret, data and metadata.
    async fn read(
        &self,
        key_id: &KeyId,
        version: Option<u64>,
    ) -> Result<ReadSecretResponse, CallError> {
        let path = self.secret_path(key_id);
        let what = match version {
            Some(v) => format!("read {}/{path} version {v}", self.mount),
            None => format!("read {}/{path}", self.mount),
        };
        self.call(|client| {
            let (path, what) = (path.clone(), what.clone());
            async move {
                let endpoint = ReadSecretRequest::builder()
                    .mount(self.mount.as_str())
                    .path(path)
                    .version(version)
                    .build()
                    .map_err(|e| {
                        CallError::new(PROVIDER, Failure::Unexpected, what.clone(), e.to_string())
                    })?;
                vaultrs::api::exec_with_result(&*client, endpoint)
                    .await
                    .map_err(|e| call::classify(what, e))
            }
        })
        .await
    }

    /// Reads a key's KV metadata (every version's state).
    async fn read_metadata(&self, key_id: &KeyId) -> Result<ReadSecretMetadataResponse, CallError> {
        let path = self.secret_path(key_id);
        let what = format!("read metadata of {}/{path}", self.mount);
        self.call(|client| {
            let (path, what) = (path.clone(), what.clone());
            async move {
                vaultrs::kv2::read_metadata(&*client, &self.mount, &path)
                    .await
                    .map_err(|e| call::classify(what, e))
            }
        })
        .await
    }

    /// A loaded key from a read response.
    fn data_key(&self, key_id: &KeyId, read: ReadSecretResponse) -> Result<DataKey> {
        let version = KeyVersion::from(read.metadata.version);
        if !is_live(read.metadata.destroyed, &read.metadata.deletion_time) {
            return Err(Error::key_not_found(key_id, Some(&version)));
        }
        let hex = match read.data {
            Value::Object(mut fields) => match fields.remove("key") {
                Some(Value::String(s)) => Zeroizing::new(s),
                _ => return Err(self.no_key_field(key_id, &version)),
            },
            _ => return Err(self.no_key_field(key_id, &version)),
        };
        let material = KeyMaterial::from_hex(&hex)?;
        Ok(DataKey::with_created_at(
            key_id.clone(),
            version,
            material,
            parse_time(&read.metadata.created_time),
        ))
    }

    fn no_key_field(&self, key_id: &KeyId, version: &KeyVersion) -> Error {
        Error::provider(
            PROVIDER,
            format!(
                "the secret {}/{} (version {version}) has no string field `key` \
                 (it must hold the key as 64 hex characters)",
                self.mount,
                self.secret_path(key_id)
            ),
        )
    }

    /// The mount's `max_versions` (`GET <mount>/config`); `None` when the
    /// token may not read it.
    async fn mount_max_versions(&self) -> Result<Option<u64>, CallError> {
        let what = format!("read {}/config", self.mount);
        let read = self
            .call_once(|client| async move {
                vaultrs::kv2::config::read(&*client, &self.mount)
                    .await
                    .map_err(|e| call::classify(what, e))
            })
            .await;
        let read = match read {
            Ok(config) => Ok(Some(config.max_versions)),
            Err(e) if matches!(e.kind(), Failure::Denied | Failure::NotFound) => {
                tracing::debug!(
                    target: "kms::vault",
                    mount = %self.mount,
                    error = %e,
                    "cannot read the mount's max_versions"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        };
        if let Ok(max) = read {
            *self
                .mount_max
                .write()
                .unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), max));
        }
        read
    }

    /// [`mount_max_versions`](Self::mount_max_versions), answered from the
    /// last read when it is younger than [`MOUNT_CONFIG_TTL`].
    async fn mount_max_versions_cached(&self) -> Result<Option<u64>, CallError> {
        let cached = *self
            .mount_max
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match cached {
            Some((at, max)) if at.elapsed() < MOUNT_CONFIG_TTL => Ok(max),
            _ => self.mount_max_versions().await,
        }
    }

    /// A lower bound of how many versions the secret keeps (see
    /// [`effective_max_versions`]), the mount's configuration read afresh.
    async fn max_versions(
        &self,
        meta: &ReadSecretMetadataResponse,
    ) -> Result<Option<u64>, CallError> {
        let mount = self.mount_max_versions().await?;
        Ok(effective_max_versions(meta.max_versions, mount))
    }

    /// Makes sure that writing one more version evicts no live version
    /// (see [`room_for_one_more`]): raises the secret's `max_versions`
    /// when the window is too small or unknown; when the token may not,
    /// refuses with [`Error::RetentionExhausted`] unless the write fits as
    /// it is. Logs a warning on `kms::audit` when the write will evict a
    /// retired version (one before the minimum decryption version).
    async fn make_room(
        &self,
        key_id: &KeyId,
        meta: &ReadSecretMetadataResponse,
        live: &LiveVersions,
    ) -> Result<()> {
        let listed = retention_list(meta);
        let max = self
            .max_versions(meta)
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        let (target, fits) = match room_for_one_more(&listed, live, max) {
            Room::Fits => {
                self.audit_eviction(key_id, &listed, live, max);
                return Ok(());
            }
            Room::Raise { target, fits } => (target, fits),
        };
        let path = self.secret_path(key_id);
        let what = format!(
            "raise max_versions of {}/metadata/{path} to {target}",
            self.mount
        );
        let raised = self
            .call_once(|client| async move {
                vaultrs::api::exec_with_empty(
                    &*client,
                    endpoints::SetMaxVersions {
                        mount: self.mount.clone(),
                        path,
                        max_versions: target,
                    },
                )
                .await
                .map_err(|e| call::classify(what, e))
            })
            .await;
        match raised {
            Ok(()) => {
                tracing::info!(
                    target: "kms::vault",
                    key_id = %key_id,
                    max_versions = target,
                    previous = ?max,
                    "raised the secret's max_versions so that no live key version is deleted"
                );
                Ok(())
            }
            Err(e) if e.kind() == Failure::Denied && fits => {
                tracing::warn!(
                    target: "kms::vault",
                    key_id = %key_id,
                    max_versions = ?max,
                    "the key has little room left before a live version would be deleted, and the token may not raise max_versions: rewrap old data and set KMS_MIN_DECRYPTION_VERSION"
                );
                self.audit_eviction(key_id, &listed, live, max);
                Ok(())
            }
            Err(e) if e.kind() == Failure::Denied => {
                let keeps = match max {
                    Some(m) => format!("it keeps {m} versions"),
                    None => format!(
                        "the token may not read {}/config, so how many versions the mount keeps is unknown",
                        self.mount
                    ),
                };
                let oldest_live = live.oldest_live(&listed).map(|v| v.version.clone());
                Err(Error::RetentionExhausted {
                    provider: PROVIDER,
                    key_id: key_id.clone(),
                    oldest_live,
                    max_versions: max,
                    detail: format!(
                        "{keeps}; the token may not update {}/metadata/{} to raise max_versions",
                        self.mount,
                        self.secret_path(key_id)
                    ),
                })
            }
            Err(e) => Err(e.into_error(key_id, None)),
        }
    }

    /// An audit record when the write about to happen makes Vault delete
    /// versions: only retired ones can be (the check made sure), and an
    /// operator should be able to tell when and why they went.
    fn audit_eviction(
        &self,
        key_id: &KeyId,
        listed: &[VersionInfo],
        live: &LiveVersions,
        max: Option<u64>,
    ) {
        let Some(max) = max else { return };
        let Some(last) = evicted_by_next_write(max, listed).last() else {
            return;
        };
        tracing::warn!(
            target: "kms::audit",
            key_id = %key_id,
            provider = PROVIDER,
            evicted_through = %last.version,
            minimum_decryption_version = ?live.minimum().map(ToString::to_string),
            max_versions = max,
            "the new key version makes Vault delete retired key versions"
        );
    }

    /// Writes a new KV version with check-and-set on the current one.
    /// With `expected`, returns `None` when the current version is another
    /// one or the check-and-set fails (another writer rotated first);
    /// without, a lost race is `Error::Conflict`.
    ///
    /// With `material` (an import), the new version holds it and a missing
    /// secret is created (check-and-set 0: "must not exist yet"); without,
    /// it holds a new random key (a rotation).
    async fn rotate_cas(
        &self,
        key_id: &KeyId,
        expected: Option<u64>,
        material: Option<KeyMaterial>,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let meta = match self.read_metadata(key_id).await {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == Failure::NotFound && material.is_some() => None,
            Err(e) => return Err(e.into_error(key_id, None)),
        };
        let current = meta.as_ref().map_or(0, |m| m.current_version);
        if expected.is_some_and(|e| e != current) {
            return Ok(None);
        }
        if let Some(meta) = &meta {
            // The check-and-set below fails if another version is written
            // in between, so this check holds for the write it guards.
            self.make_room(key_id, meta, live).await?;
        }
        let description = match current {
            0 => None,
            _ => match self.read(key_id, Some(current)).await {
                Ok(read) => description_of(&read),
                Err(e) if e.kind() == Failure::NotFound => None,
                Err(e) => return Err(e.into_error(key_id, None)),
            },
        };
        let cas = u32::try_from(current).map_err(|_| {
            Error::provider(
                PROVIDER,
                format!("version {current} is beyond what check-and-set can express"),
            )
        })?;

        let (material, done) = match material {
            Some(m) => (m, "imported a key version"),
            None => (KeyMaterial::generate(), "rotated encryption key"),
        };
        let hex = material.to_hex();
        let created_at = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let secret = KeySecret {
            key: &hex,
            created_at: &created_at,
            description: description.as_deref(),
        };
        let path = self.secret_path(key_id);
        let what = format!("write {}/{path} (check-and-set {cas})", self.mount);
        // Not retried after a new AppRole login: a write that Vault refused
        // did not happen, so trying once more is safe.
        let written = match self
            .call(|client| {
                let (path, what) = (path.clone(), what.clone());
                let secret = &secret;
                async move {
                    vaultrs::kv2::set_with_options(
                        &*client,
                        &self.mount,
                        &path,
                        secret,
                        SetSecretRequestOptions { cas },
                    )
                    .await
                    .map_err(|e| call::classify(what, e))
                }
            })
            .await
        {
            Ok(written) => written,
            Err(e) if e.kind() == Failure::Conflict => {
                tracing::info!(
                    target: "kms::vault",
                    key_id = %key_id,
                    expected_version = current,
                    "rotation lost a check-and-set race: another writer rotated the key first"
                );
                if expected.is_some() {
                    return Ok(None);
                }
                return Err(e.into_error(key_id, None));
            }
            Err(e) => return Err(e.into_error(key_id, None)),
        };
        tracing::info!(
            target: "kms::vault",
            key_id = %key_id,
            version = written.version,
            previous_version = current,
            "{done}"
        );
        Ok(Some(DataKey::with_created_at(
            key_id.clone(),
            KeyVersion::from(written.version),
            material,
            parse_time(&written.created_time).or_else(|| Some(Utc::now())),
        )))
    }

    async fn check_health(&self) -> Result<(), String> {
        let (client, _) = self.session();
        let health: endpoints::HealthResponse =
            vaultrs::api::exec_with_no_result(&*client, endpoints::Health)
                .await
                .map_err(|e| {
                    let e = call::classify("GET sys/health", e);
                    match e.status() {
                        Some(503) => "Vault is sealed (sys/health: HTTP 503)".to_owned(),
                        Some(501) => "Vault is not initialized (sys/health: HTTP 501)".to_owned(),
                        _ => describe_chain(&e),
                    }
                })?;
        if health.sealed {
            return Err("Vault is sealed".to_owned());
        }
        if !health.initialized {
            return Err("Vault is not initialized".to_owned());
        }
        tracing::trace!(target: "kms::vault", version = ?health.version, "sys/health answered");
        self.call(|client| async move {
            vaultrs::api::exec_with_result(&*client, endpoints::LookupSelf)
                .await
                .map(|_| ())
                .map_err(|e| call::classify("GET auth/token/lookup-self", e))
        })
        .await
        .map_err(|e| match e.kind() {
            Failure::Denied => format!(
                "Vault refused the token (Access denied to encryption key): {}",
                describe_chain(&e)
            ),
            _ => describe_chain(&e),
        })
    }
}

/// A copy of `client` that sends `token` (none when empty), sharing its
/// HTTP connection pool.
fn with_token(client: &VaultClient, token: &str) -> VaultClient {
    let mut settings = client.settings.clone();
    token.clone_into(&mut settings.token);
    let mut middle = client.middle.clone();
    token.clone_into(&mut middle.token);
    VaultClient {
        http: rustify::clients::reqwest::Client::new(&client.http.base, client.http.http.clone()),
        middle,
        settings,
    }
}

/// How long a token found valid after a refusal is trusted to be valid
/// (refusals in that time are policy refusals: no new login).
const TOKEN_CHECK_TTL: Duration = Duration::from_secs(5);

/// How long `metadata` trusts the mount's `max_versions` as last read.
const MOUNT_CONFIG_TTL: Duration = Duration::from_secs(60);

/// How many versions KV v2 keeps when neither the secret nor the mount sets it.
const DEFAULT_MAX_VERSIONS: u64 = 10;

/// How many versions beyond the live ones a raised `max_versions` leaves
/// room for, so that it is raised once per this many rotations.
const HEADROOM: u64 = 10;

/// How many versions a KV v2 secret keeps, as a lower bound that holds
/// under both rules Vault has had: today's (OpenBao, Vault 1.x since the
/// KV plugin's `max` change), the larger of the secret's and the mount's
/// `max_versions`; and the older one, the secret's own when set. So: the
/// secret's own when set, else the mount's, else [`DEFAULT_MAX_VERSIONS`].
/// With the secret's unset and the mount's unknown, `None`. Raising the
/// secret's own `max_versions` raises the limit under both rules.
fn effective_max_versions(secret: u64, mount: Option<u64>) -> Option<u64> {
    match (secret, mount) {
        (0, None) => None,
        (0, Some(0)) => Some(DEFAULT_MAX_VERSIONS),
        (0, Some(m)) => Some(m),
        (s, _) => Some(s),
    }
}

/// The versions of a secret as retention sees them, oldest first: every
/// version not destroyed counts as live-capable. A deleted (soft-deleted)
/// version cannot be read, but `vault kv undelete` brings it back, and
/// once Vault evicts it, it is gone for good.
fn retention_list(meta: &ReadSecretMetadataResponse) -> Vec<VersionInfo> {
    versions_where(meta, |m| !m.destroyed)
        .into_iter()
        .map(|(_, v)| v)
        .collect()
}

/// What one more KV version needs, given the listed versions (oldest
/// first, a contiguous window), the live ones and the limit in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// The write keeps every live version with [`LOW_RETENTION`] to spare.
    Fits,
    /// Raise `max_versions` to `target` first; when that is not allowed,
    /// the write keeps every live version only if `fits`.
    Raise { target: u64, fits: bool },
}

/// The retention decision before a write. Vault keeps versions
/// `[current - max + 1, current]`, so after the write the live versions
/// take `slots + 1` places, which must be at most `max`.
fn room_for_one_more(listed: &[VersionInfo], live: &LiveVersions, max: Option<u64>) -> Room {
    let slots = live.slots(listed);
    if slots == 0 {
        return Room::Fits; // Nothing live: nothing to protect.
    }
    let needed = slots + 1;
    match max {
        Some(m) if m >= needed + LOW_RETENTION => Room::Fits,
        _ => Room::Raise {
            target: (needed + HEADROOM).max(max.unwrap_or(0)),
            fits: max.is_some_and(|m| m >= needed),
        },
    }
}

/// Vault's timestamps: RFC 3339 with nanoseconds.
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a KV version can be read: not destroyed, and not deleted (a
/// deletion time in the future, from `delete_version_after`, is not yet a deletion).
fn is_live(destroyed: bool, deletion_time: &str) -> bool {
    !destroyed
        && (deletion_time.is_empty() || parse_time(deletion_time).is_some_and(|t| t > Utc::now()))
}

/// A KV version number from a key version name; `None` for names Vault
/// cannot have (those of other providers, `0`).
fn kv_version(version: &KeyVersion) -> Option<u64> {
    version.as_str().parse().ok().filter(|v| *v > 0)
}

/// Versions from KV metadata, oldest first.
fn list_versions(meta: &ReadSecretMetadataResponse) -> Vec<(u64, VersionInfo)> {
    versions_where(meta, |m| is_live(m.destroyed, &m.deletion_time))
}

/// Versions from KV metadata, oldest first, `enabled` as `readable` says.
fn versions_where(
    meta: &ReadSecretMetadataResponse,
    readable: impl Fn(&SecretMetadata) -> bool,
) -> Vec<(u64, VersionInfo)> {
    let mut list: Vec<(u64, VersionInfo)> = meta
        .versions
        .iter()
        .filter_map(|(v, m)| {
            let n: u64 = v.parse().ok()?;
            Some((
                n,
                VersionInfo::new(
                    KeyVersion::from(n),
                    parse_time(&m.created_time),
                    readable(m),
                ),
            ))
        })
        .collect();
    list.sort_by_key(|(n, _)| *n);
    list
}

fn description_of(read: &ReadSecretResponse) -> Option<String> {
    read.data
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

#[async_trait]
impl KeyProvider for VaultProvider {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        let read = self
            .read(key_id, None)
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        self.data_key(key_id, read)
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        let n = kv_version(version).ok_or_else(|| Error::key_not_found(key_id, Some(version)))?;
        let read = self
            .read(key_id, Some(n))
            .await
            .map_err(|e| e.into_error(key_id, Some(version)))?;
        if read.metadata.version != n {
            return Err(Error::provider(
                PROVIDER,
                format!(
                    "asked for version {n} of {}/{}, got version {}",
                    self.mount,
                    self.secret_path(key_id),
                    read.metadata.version
                ),
            ));
        }
        self.data_key(key_id, read)
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        let meta = self
            .read_metadata(key_id)
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        Ok(list_versions(&meta).into_iter().map(|(_, v)| v).collect())
    }

    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        self.rotate_cas(key_id, None, None, live)
            .await?
            .ok_or_else(|| Error::Conflict {
                key_id: key_id.clone(),
            })
    }

    /// A KV write with check-and-set on the current version (0 when the
    /// secret does not exist yet: it is created), with the same fields as
    /// `rotate`; a lost race is `Error::Conflict`.
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        self.rotate_cas(key_id, None, Some(material), live)
            .await?
            .ok_or_else(|| Error::Conflict {
                key_id: key_id.clone(),
            })
    }

    /// A real check-and-set: the KV write carries `cas` = `expected`.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        match kv_version(expected) {
            Some(n) => self.rotate_cas(key_id, Some(n), None, live).await,
            // Not a KV version number: it cannot be the current version.
            None => Ok(None),
        }
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        let (meta, latest) = tokio::join!(self.read_metadata(key_id), self.read(key_id, None));
        let meta = meta.map_err(|e| e.into_error(key_id, None))?;
        let description = match latest {
            Ok(read) => description_of(&read),
            // The current version is deleted: the metadata says so below.
            Err(e) if e.kind() == Failure::NotFound => None,
            Err(e) => return Err(e.into_error(key_id, None)),
        };
        let versions = list_versions(&meta);
        let current = versions.iter().find(|(n, _)| *n == meta.current_version);
        let mut m = KeyMetadata::new(key_id.clone(), PROVIDER);
        m.description = description;
        m.created_at = versions
            .iter()
            .find(|(_, v)| v.enabled)
            .or(versions.first())
            .and_then(|(_, v)| v.created_at);
        m.last_rotated = if versions.len() > 1 {
            current.and_then(|(_, v)| v.created_at)
        } else {
            None
        };
        m.enabled = current.is_some_and(|(_, v)| v.enabled);
        m.current_version = Some(KeyVersion::from(meta.current_version));
        m.version_count = Some(versions.len() as u64);
        let mount_max = self
            .mount_max_versions_cached()
            .await
            .map_err(|e| e.into_error(key_id, None))?;
        m.max_versions = effective_max_versions(meta.max_versions, mount_max);
        m.versions_remaining = m
            .max_versions
            .map(|max| LiveVersions::all().remaining(max, &retention_list(&meta)));
        if m.max_versions.is_none() {
            m.retention_note = Some(format!(
                "how many versions Vault keeps is unknown (the token may not read {mount}/config and the secret sets no max_versions): rotation is refused unless the token may update {mount}/metadata/{path}; grant read on {mount}/config, or set the secret's max_versions once",
                mount = self.mount,
                path = self.secret_path(key_id),
            ));
        }
        Ok(m)
    }

    async fn health(&self) -> HealthStatus {
        HealthStatus::timed(PROVIDER, self.check_health()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn liveness() {
        assert!(is_live(false, ""));
        assert!(!is_live(true, ""));
        assert!(!is_live(false, "2024-01-01T00:00:00.123456789Z"));
        assert!(is_live(false, "2999-01-01T00:00:00Z"));
    }

    #[test]
    fn effective_max_versions_follows_kv_v2() {
        assert_eq!(effective_max_versions(0, Some(0)), Some(10));
        assert_eq!(effective_max_versions(0, Some(3)), Some(3));
        assert_eq!(effective_max_versions(20, Some(3)), Some(20));
        // The older rule (the secret's own when set) is the lower bound.
        assert_eq!(effective_max_versions(5, Some(30)), Some(5));
        assert_eq!(effective_max_versions(0, None), None);
        assert_eq!(effective_max_versions(7, None), Some(7));
    }

    #[test]
    fn versions_are_numbers() {
        assert_eq!(kv_version(&KeyVersion::from(3)), Some(3));
        assert_eq!(kv_version(&KeyVersion::new("0").unwrap()), None);
        assert_eq!(
            kv_version(&KeyVersion::new("a1b2c3d4e5f60718").unwrap()),
            None
        );
    }

    #[test]
    fn metadata_versions_sort_numerically() {
        let meta: ReadSecretMetadataResponse = serde_json::from_value(serde_json::json!({
            "cas_required": false,
            "created_time": "2025-01-01T00:00:00.1Z",
            "current_version": 10,
            "delete_version_after": "0s",
            "max_versions": 0,
            "oldest_version": 0,
            "updated_time": "2025-01-10T00:00:00Z",
            "custom_metadata": null,
            "versions": {
                "10": {"created_time": "2025-01-10T00:00:00Z", "deletion_time": "", "destroyed": false},
                "2": {"created_time": "2025-01-02T00:00:00Z", "deletion_time": "2025-01-03T00:00:00Z", "destroyed": false},
                "9": {"created_time": "2025-01-09T00:00:00Z", "deletion_time": "", "destroyed": true},
                "1": {"created_time": "2025-01-01T00:00:00.123Z", "deletion_time": "", "destroyed": false}
            }
        }))
        .unwrap();
        let list = list_versions(&meta);
        let numbers: Vec<u64> = list.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 9, 10]);
        let enabled: Vec<bool> = list.iter().map(|(_, v)| v.enabled).collect();
        assert_eq!(enabled, [true, false, false, true]);
        assert_eq!(
            list[0].1.created_at.unwrap().to_rfc3339(),
            "2025-01-01T00:00:00.123+00:00"
        );
    }

    /// OpenBao's KV v2 write (`AddVersion`), under the current rule (the
    /// larger of the secret's and the mount's `max_versions`) or the older
    /// one (the secret's own when set).
    #[derive(Debug, Clone)]
    struct Kv {
        /// Version number to destroyed.
        versions: std::collections::BTreeMap<u64, bool>,
        current: u64,
        oldest: u64,
        secret_max: u64,
        mount_max: u64,
        older_rule: bool,
    }

    impl Kv {
        fn limit(&self) -> u64 {
            let (s, m) = (self.secret_max, self.mount_max);
            let limit = if self.older_rule {
                if s > 0 { s } else { m }
            } else {
                s.max(m)
            };
            if limit == 0 {
                DEFAULT_MAX_VERSIONS
            } else {
                limit
            }
        }

        fn add_version(&mut self) {
            self.current += 1;
            self.versions.insert(self.current, false);
            let max = self.limit();
            if self.current - self.oldest >= max {
                let delete_through = self.current - max;
                self.versions.retain(|v, _| *v > delete_through);
                self.oldest = delete_through + 1;
            }
        }

        fn listed(&self) -> Vec<VersionInfo> {
            self.versions
                .iter()
                .map(|(v, destroyed)| VersionInfo::new(KeyVersion::from(*v), None, !destroyed))
                .collect()
        }

        /// The versions that may still decrypt data under `minimum`.
        fn live(&self, minimum: Option<u64>) -> Vec<u64> {
            let from = minimum
                .filter(|m| self.versions.contains_key(m))
                .unwrap_or(0);
            self.versions
                .iter()
                .filter(|(v, destroyed)| **v >= from && !**destroyed)
                .map(|(v, _)| *v)
                .collect()
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A rotation; whether the token may raise `max_versions` and read the mount's.
        Write {
            may_raise: bool,
            mount_readable: bool,
        },
        /// The minimum decryption version moves to the n-th listed version.
        Minimum(usize),
        /// `vault kv destroy` of the n-th listed version.
        Destroy(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (any::<bool>(), any::<bool>())
                .prop_map(|(may_raise, mount_readable)| Step::Write { may_raise, mount_readable }),
            1 => (0usize..40).prop_map(Step::Minimum),
            1 => (0usize..40).prop_map(Step::Destroy),
        ]
    }

    proptest! {
        /// Against a model of OpenBao's own write, under either retention
        /// rule, whatever the token may do: a write that the decision lets
        /// through never evicts a live version.
        #[test]
        fn no_write_evicts_a_live_version(
            secret_max in prop_oneof![Just(0u64), 1u64..15],
            mount_max in prop_oneof![Just(0u64), 1u64..15],
            older_rule in any::<bool>(),
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let mut kv = Kv {
                versions: std::collections::BTreeMap::new(),
                current: 0,
                oldest: 0,
                secret_max,
                mount_max,
                older_rule,
            };
            kv.add_version();
            let mut minimum: Option<u64> = None;
            let mut written = 0;
            for step in steps {
                match step {
                    Step::Minimum(i) => minimum = kv.versions.keys().nth(i).copied().or(minimum),
                    Step::Destroy(i) => {
                        if let Some(d) = kv.versions.values_mut().nth(i) {
                            *d = true;
                        }
                    }
                    Step::Write { may_raise, mount_readable } => {
                        let live = LiveVersions::from_optional(minimum.map(KeyVersion::from));
                        let max = effective_max_versions(
                            kv.secret_max,
                            mount_readable.then_some(kv.mount_max),
                        );
                        let go = match room_for_one_more(&kv.listed(), &live, max) {
                            Room::Fits => true,
                            Room::Raise { target, fits } => {
                                if may_raise {
                                    prop_assert!(target >= kv.secret_max);
                                    kv.secret_max = target;
                                    true
                                } else {
                                    fits
                                }
                            }
                        };
                        if go {
                            let before = kv.live(minimum);
                            kv.add_version();
                            written += 1;
                            for v in before {
                                prop_assert!(
                                    kv.versions.contains_key(&v),
                                    "version {} evicted: {:?}", v, kv
                                );
                            }
                        }
                    }
                }
            }
            let _ = written;
        }
    }

    /// Twelve rotations on OpenBao's defaults with a token that may raise:
    /// each write goes through and the limit is raised once, before the
    /// window is full.
    #[test]
    fn defaults_raise_before_the_window_is_full() {
        let mut kv = Kv {
            versions: std::collections::BTreeMap::new(),
            current: 0,
            oldest: 0,
            secret_max: 0,
            mount_max: 0,
            older_rule: false,
        };
        kv.add_version();
        let mut raised_at = Vec::new();
        for _ in 0..12 {
            let max = effective_max_versions(kv.secret_max, Some(kv.mount_max));
            if let Room::Raise { target, .. } =
                room_for_one_more(&kv.listed(), &LiveVersions::all(), max)
            {
                raised_at.push((kv.current, target));
                kv.secret_max = target;
            }
            kv.add_version();
        }
        assert_eq!(raised_at, [(8, 19)]);
        assert_eq!(kv.versions.len(), 13);
    }
}
