#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use kms_core::settings::Setting;
use kms_core::{
    DataKey, Error, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider, KeyVersion,
    LiveVersions, Result, VersionInfo,
};

#[cfg(feature = "capture")]
pub mod capture;

/// A variable lookup over fixed pairs, for the `from_lookup` constructors of
/// the builders (`KmsBuilder`, each provider's builder) in tests: the value
/// of the first pair named `name`, if any.
///
/// ```
/// let vars = kms_testing::lookup(&[("KMS_PROVIDER", "env")]);
/// assert_eq!(vars("KMS_PROVIDER").as_deref(), Some("env"));
/// assert_eq!(vars("KMS_KEY_ID"), None);
/// ```
pub fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

/// Checks a crate's [`Setting`] declarations against its README and its
/// builder: the README's `| variable |` table names exactly the declared
/// variables, and `read` (which calls the builder's `from_lookup` with the
/// lookup it is given) asks for no variable that is not declared.
///
/// # Panics
/// When they differ, naming the variables.
pub fn assert_settings_declared(
    settings: &[Setting],
    readme: &str,
    read: impl FnOnce(&dyn Fn(&str) -> Option<String>),
) {
    let declared: BTreeSet<String> = settings.iter().map(|s| s.variable.to_owned()).collect();
    let documented = kms_core::settings::variables_in_table(readme);
    assert_eq!(
        documented, declared,
        "the README's variable table and the declared settings differ"
    );
    let asked = Mutex::new(BTreeSet::new());
    read(&|name: &str| {
        lock(&asked).insert(name.to_owned());
        None
    });
    let undeclared: Vec<String> = lock(&asked).difference(&declared).cloned().collect();
    assert!(
        undeclared.is_empty(),
        "from_lookup reads variables that are not declared: {undeclared:?}"
    );
}

/// A `#[test]` that calls [`assert_settings_declared`] for the crate it is
/// written in: `$settings`, the crate's `README.md`, and
/// `$builder::from_lookup`.
///
/// In a provider crate (as `kms-vault` does):
///
/// ```text
/// #[cfg(test)]
/// mod tests {
///     kms_testing::settings_declared_test!(crate::SETTINGS, VaultProviderBuilder);
/// }
/// ```
#[macro_export]
macro_rules! settings_declared_test {
    ($settings:expr, $builder:ty) => {
        #[test]
        fn settings_are_declared_once_and_documented() {
            $crate::assert_settings_declared(
                $settings,
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")),
                |lookup| {
                    let _ = <$builder>::from_lookup(lookup);
                },
            );
        }
    };
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An in-memory provider: versions numbered from 1, rotation supported.
///
/// With [`with_max_versions`](Self::with_max_versions) it keeps only the
/// newest N versions of a key, as Vault's KV `max_versions` does, and like
/// every provider of the workspace refuses a write that would evict a live
/// version ([`Error::RetentionExhausted`]).
#[derive(Default)]
pub struct MemoryProvider {
    keys: Mutex<HashMap<KeyId, Vec<DataKey>>>,
    max_versions: Option<u64>,
}

impl fmt::Debug for MemoryProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = lock(&self.keys);
        f.debug_struct("MemoryProvider")
            .field(
                "keys",
                &keys
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.len()))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl MemoryProvider {
    /// An empty provider.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A provider holding one key with one random version.
    #[must_use]
    pub fn with_key(key_id: KeyId) -> Self {
        let p = Self::new();
        p.add_version(&key_id, KeyMaterial::generate());
        p
    }

    /// Keeps only the newest `max` versions of each key (at least 1).
    #[must_use]
    pub fn with_max_versions(mut self, max: u64) -> Self {
        self.max_versions = Some(max.max(1));
        self
    }

    /// Adds `material` as the new current version of `key_id`, evicting
    /// the oldest versions beyond the limit, live or not (this is how a
    /// test sets up a provider that already lost versions); returns it.
    pub fn add_version(&self, key_id: &KeyId, material: KeyMaterial) -> DataKey {
        let mut keys = lock(&self.keys);
        let versions = keys.entry(key_id.clone()).or_default();
        self.push(key_id, versions, material)
    }

    /// Appends a version and evicts beyond `max_versions`.
    fn push(&self, key_id: &KeyId, versions: &mut Vec<DataKey>, material: KeyMaterial) -> DataKey {
        let next = versions
            .last()
            .and_then(|k| k.version().as_str().parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        let key = DataKey::with_created_at(
            key_id.clone(),
            KeyVersion::from(next),
            material,
            Some(Utc::now()),
        );
        versions.push(key.clone());
        if let Some(max) = self.max_versions {
            let max = usize::try_from(max).unwrap_or(usize::MAX);
            if versions.len() > max {
                versions.drain(..versions.len() - max);
            }
        }
        key
    }

    /// A write under the lock: refuses when it would evict a live version.
    fn write(
        &self,
        key_id: &KeyId,
        expected: Option<&KeyVersion>,
        material: KeyMaterial,
        create: bool,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let mut keys = lock(&self.keys);
        if !create && !keys.contains_key(key_id) {
            return Err(Error::key_not_found(key_id, None));
        }
        let versions = keys.entry(key_id.clone()).or_default();
        if let Some(expected) = expected
            && versions.last().map(DataKey::version) != Some(expected)
        {
            return Ok(None);
        }
        if let Some(max) = self.max_versions {
            let listed = list(versions);
            if live.remaining(max, &listed) == 0
                && let Some(oldest) = live.oldest_live(&listed)
            {
                return Err(Error::RetentionExhausted {
                    provider: "memory",
                    key_id: key_id.clone(),
                    oldest_live: Some(oldest.version.clone()),
                    max_versions: Some(max),
                    detail: format!("it keeps {max} versions and cannot keep more"),
                });
            }
        }
        Ok(Some(self.push(key_id, versions, material)))
    }

    fn versions_of(&self, key_id: &KeyId) -> Result<Vec<DataKey>> {
        lock(&self.keys)
            .get(key_id)
            .cloned()
            .ok_or_else(|| Error::key_not_found(key_id, None))
    }
}

#[async_trait]
impl KeyProvider for MemoryProvider {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        self.versions_of(key_id)?
            .pop()
            .ok_or_else(|| Error::key_not_found(key_id, None))
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        self.versions_of(key_id)?
            .into_iter()
            .find(|k| k.version() == version)
            .ok_or_else(|| Error::key_not_found(key_id, Some(version)))
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        Ok(list(&self.versions_of(key_id)?))
    }

    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        self.write(key_id, None, KeyMaterial::generate(), false, live)?
            .ok_or_else(|| Error::Conflict {
                key_id: key_id.clone(),
            })
    }

    /// Atomic: the check and the new version happen under one lock.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        self.write(key_id, Some(expected), KeyMaterial::generate(), false, live)
    }

    /// Creates the key when it does not exist.
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        self.write(key_id, None, material, true, live)?
            .ok_or_else(|| Error::Conflict {
                key_id: key_id.clone(),
            })
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        let versions = self.versions_of(key_id)?;
        let mut m = KeyMetadata::new(key_id.clone(), self.name());
        m.description = Some("in-memory test key".into());
        m.created_at = versions.first().and_then(DataKey::created_at);
        m.last_rotated = versions
            .last()
            .filter(|_| versions.len() > 1)
            .and_then(DataKey::created_at);
        m.current_version = versions.last().map(|k| k.version().clone());
        m.version_count = Some(versions.len() as u64);
        m.max_versions = self.max_versions;
        m.versions_remaining = self
            .max_versions
            .map(|max| LiveVersions::all().remaining(max, &list(&versions)));
        Ok(m)
    }

    async fn health(&self) -> HealthStatus {
        HealthStatus::healthy(self.name(), 0)
    }
}

/// The version list of stored keys, oldest first.
fn list(versions: &[DataKey]) -> Vec<VersionInfo> {
    versions
        .iter()
        .map(|k| VersionInfo::new(k.version().clone(), k.created_at(), true))
        .collect()
}

/// What a [`FaultyProvider`] does to each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Pass the call through.
    #[default]
    None,
    /// Fail with "KMS service unavailable" (temporary).
    Temporary,
    /// Fail with "Access denied to encryption key" (permanent).
    Permanent,
    /// Never answer (the caller's timeout must fire).
    Hang,
}

#[derive(Debug, Default)]
struct Plan {
    fault: Fault,
    /// Apply the fault to this many more calls, then pass (None: every call).
    remaining: Option<u32>,
    latency: Duration,
}

/// Wraps a provider and injects faults and latency. Counts the calls that
/// reach it (every trait method except `name`).
pub struct FaultyProvider {
    inner: Arc<dyn KeyProvider>,
    plan: Mutex<Plan>,
    calls: AtomicU64,
}

impl fmt::Debug for FaultyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyProvider")
            .field("inner", &self.inner)
            .field("plan", &*lock(&self.plan))
            .field("calls", &self.calls())
            .finish()
    }
}

impl FaultyProvider {
    /// Wraps `inner`, passing every call through until told otherwise.
    pub fn new(inner: impl KeyProvider) -> Self {
        FaultyProvider {
            inner: Arc::new(inner),
            plan: Mutex::new(Plan::default()),
            calls: AtomicU64::new(0),
        }
    }

    /// Applies `fault` to every call from now on.
    pub fn set_fault(&self, fault: Fault) {
        let mut plan = lock(&self.plan);
        plan.fault = fault;
        plan.remaining = None;
    }

    /// Applies `fault` to the next `n` calls, then passes calls through.
    pub fn fail_next(&self, n: u32, fault: Fault) {
        let mut plan = lock(&self.plan);
        plan.fault = fault;
        plan.remaining = Some(n);
    }

    /// Adds a delay before every call.
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.plan).latency = latency;
    }

    /// How many calls reached this provider.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Resets the call counter.
    pub fn reset_calls(&self) {
        self.calls.store(0, Ordering::SeqCst);
    }

    /// Counts the call, sleeps, then applies the plan.
    async fn enter(&self) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (fault, latency) = {
            let mut plan = lock(&self.plan);
            let fault = match plan.remaining {
                Some(0) => Fault::None,
                Some(ref mut n) => {
                    *n -= 1;
                    plan.fault
                }
                None => plan.fault,
            };
            (fault, plan.latency)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            Fault::None => Ok(()),
            Fault::Temporary => Err(Error::unavailable("faulty", "injected outage")),
            Fault::Permanent => Err(Error::access_denied("faulty", "injected denial")),
            Fault::Hang => std::future::pending().await,
        }
    }
}

#[async_trait]
impl KeyProvider for FaultyProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        self.enter().await?;
        self.inner.current_key(key_id).await
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        self.enter().await?;
        self.inner.key_version(key_id, version).await
    }

    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        self.enter().await?;
        self.inner.versions(key_id).await
    }

    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        self.enter().await?;
        self.inner.rotate(key_id, live).await
    }

    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        self.enter().await?;
        self.inner.rotate_if_current(key_id, expected, live).await
    }

    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        self.enter().await?;
        self.inner.import(key_id, material, live).await
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        self.enter().await?;
        self.inner.metadata(key_id).await
    }

    async fn health(&self) -> HealthStatus {
        let started = std::time::Instant::now();
        match self.enter().await {
            Ok(()) => self.inner.health().await,
            Err(e) => HealthStatus::unhealthy(
                self.name(),
                u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                e.to_string(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_provider_rotates() {
        let id = KeyId::default();
        let p = MemoryProvider::with_key(id.clone());
        let v1 = p.current_key(&id).await.unwrap();
        let v2 = p.rotate(&id, &LiveVersions::all()).await.unwrap();
        assert_eq!(v1.version().as_str(), "1");
        assert_eq!(v2.version().as_str(), "2");
        assert_eq!(
            p.key_version(&id, v1.version())
                .await
                .unwrap()
                .fingerprint(),
            v1.fingerprint()
        );
        assert_eq!(p.versions(&id).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn fail_next_then_pass() {
        let id = KeyId::default();
        let p = FaultyProvider::new(MemoryProvider::with_key(id.clone()));
        p.fail_next(2, Fault::Permanent);
        assert!(p.current_key(&id).await.unwrap_err().is_permanent());
        assert!(p.current_key(&id).await.is_err());
        assert!(p.current_key(&id).await.is_ok());
        assert_eq!(p.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn hang_never_answers() {
        let id = KeyId::default();
        let p = FaultyProvider::new(MemoryProvider::with_key(id.clone()));
        p.set_fault(Fault::Hang);
        let r = tokio::time::timeout(Duration::from_secs(60), p.current_key(&id)).await;
        assert!(r.is_err());
    }
}
