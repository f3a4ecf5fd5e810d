#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use kms_core::{
    DataKey, Error, Fingerprint, HealthStatus, KeyId, KeyMaterial, KeyMetadata, KeyProvider,
    KeyVersion, LiveVersions, Result, VersionInfo, find_by_fingerprint,
};
use moka::future::Cache;
// Tokio's clock (the system clock unless a test pauses it), so that the
// TTL and rate-limit boundaries can be tested with paused time.
use tokio::time::Instant;

use crate::clock::Deadline;
use crate::hot::{Hot, HotSlot};

mod clock;
mod hot;

/// Default lifetime of a cached current version: 5 minutes, as in the spec.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// Default number of key versions kept.
pub const DEFAULT_MAX_VERSIONS: u64 = 10_000;

/// Default age up to which a key's version list answers `versions` and the
/// search of [`CachingProvider::resolve`]: 1 second.
pub const DEFAULT_LIST_TTL: Duration = Duration::from_secs(1);

/// Default shortest interval between two listings of one key that unknown
/// versions cause, and between two direct reads of unlisted versions: 250 ms.
pub const DEFAULT_LIST_REFRESH: Duration = Duration::from_millis(250);

/// How the cache behaves. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long the current version of a key is cached (`KMS_CACHE_TTL`).
    /// Zero disables caching of the current version (versions are still
    /// cached). Default: [`DEFAULT_TTL`], 5 minutes.
    pub ttl: Duration,
    /// How many key versions are kept at most. Default: [`DEFAULT_MAX_VERSIONS`].
    pub max_versions: u64,
    /// Stale-if-error grace period: `None` (the default) turns it off.
    pub stale_if_error: Option<Duration>,
    /// How long a key's version list (`versions`) is reused. Default:
    /// [`DEFAULT_LIST_TTL`], 1 second.
    pub list_ttl: Duration,
    /// The shortest interval between two listings of one key caused by
    /// versions the cached list lacks, and between two direct reads of such
    /// versions. Default: [`DEFAULT_LIST_REFRESH`], 250 ms.
    pub list_refresh: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: DEFAULT_TTL,
            max_versions: DEFAULT_MAX_VERSIONS,
            stale_if_error: None,
            list_ttl: DEFAULT_LIST_TTL,
            list_refresh: DEFAULT_LIST_REFRESH,
        }
    }
}

impl CacheConfig {
    /// The defaults with another TTL.
    #[must_use]
    pub fn with_ttl(ttl: Duration) -> Self {
        CacheConfig {
            ttl,
            ..CacheConfig::default()
        }
    }
}

/// A current key and when it was loaded.
#[derive(Clone)]
struct Stamped {
    key: DataKey,
    loaded: Instant,
}

/// A key's version list and when it was fetched.
#[derive(Clone)]
struct Listed {
    versions: Arc<Vec<VersionInfo>>,
    loaded: Instant,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    load_failures: AtomicU64,
    stale_served: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counters of a [`CachingProvider`] ([`CachingProvider::stats`]); the
/// admin API's health response shows them as `cache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that had to wait for a load (concurrent misses of one entry share one load).
    pub misses: u64,
    /// Calls made to the provider to fill the cache.
    pub loads: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Lookups answered with an expired current key because the provider was
    /// unavailable (stale-if-error).
    pub stale_served: u64,
}

impl CacheStats {
    /// Counters with the given values.
    #[must_use]
    pub fn new(hits: u64, misses: u64, loads: u64, load_failures: u64, stale_served: u64) -> Self {
        CacheStats {
            hits,
            misses,
            loads,
            load_failures,
            stale_served,
        }
    }
}

/// A caching [`KeyProvider`] wrapper. See the crate documentation.
pub struct CachingProvider {
    inner: Arc<dyn KeyProvider>,
    config: CacheConfig,
    current: Cache<KeyId, Stamped>,
    versions: Cache<(KeyId, KeyVersion), DataKey>,
    hot: HotSlot,
    last_known: Mutex<HashMap<KeyId, Stamped>>,
    /// Version lists, for `versions` and [`CachingProvider::resolve`].
    lists: Mutex<HashMap<KeyId, Listed>>,
    /// One listing at a time: waiters reuse the list the first one fetched.
    listing: tokio::sync::Mutex<()>,
    /// When each key last let an unlisted version through to the provider.
    probed: Mutex<HashMap<KeyId, Instant>>,
    counters: Counters,
}

impl fmt::Debug for CachingProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingProvider")
            .field("inner", &self.inner)
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl CachingProvider {
    /// Wraps `inner`.
    pub fn new(inner: impl KeyProvider, config: CacheConfig) -> Self {
        Self::from_arc(Arc::new(inner), config)
    }

    /// Wraps a provider already in an `Arc`.
    #[must_use]
    pub fn from_arc(inner: Arc<dyn KeyProvider>, config: CacheConfig) -> Self {
        let mut current = Cache::builder().max_capacity(config.max_versions.max(1));
        if !config.ttl.is_zero() {
            current = current.time_to_live(config.ttl);
        }
        CachingProvider {
            inner,
            current: current.build(),
            versions: Cache::builder()
                .max_capacity(config.max_versions.max(1))
                .build(),
            config,
            hot: HotSlot::new(),
            last_known: Mutex::new(HashMap::new()),
            lists: Mutex::new(HashMap::new()),
            listing: tokio::sync::Mutex::new(()),
            probed: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    /// The provider this cache wraps: what it asks on a miss. Reading
    /// through it sees what the provider stores, not the cache's copies.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn KeyProvider> {
        &self.inner
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats::new(
            c.hits.load(Ordering::Relaxed) + self.hot.hits(),
            c.misses.load(Ordering::Relaxed),
            c.loads.load(Ordering::Relaxed),
            c.load_failures.load(Ordering::Relaxed),
            c.stale_served.load(Ordering::Relaxed),
        )
    }

    /// Forgets the cached current version of `key_id`, so the next lookup
    /// asks the provider. Cached versions stay (they never change).
    pub async fn invalidate_current(&self, key_id: &KeyId) {
        self.current.invalidate(key_id).await;
        self.hot.forget(key_id);
    }

    /// Forgets everything cached.
    pub fn clear(&self) {
        self.current.invalidate_all();
        self.versions.invalidate_all();
        self.hot.store(None);
        self.last_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The current key from the hot slot, if it is for `key_id` and fresh.
    #[must_use]
    pub fn current_if_fresh(&self, key_id: &KeyId) -> Option<DataKey> {
        self.with_current_if_fresh(key_id, DataKey::clone)
    }

    /// Runs `f` on the current key from the hot slot, if it is for `key_id`
    /// and fresh. Synchronous, allocation-free and without reference-count
    /// traffic: the facade's encrypt path tries it before the trait method.
    pub fn with_current_if_fresh<R>(
        &self,
        key_id: &KeyId,
        f: impl FnOnce(&DataKey) -> R,
    ) -> Option<R> {
        self.hot
            .with(|hot| (hot.key.key_id() == key_id && !hot.expires.passed()).then(|| f(&hot.key)))
    }

    /// Runs `f` on the hot slot's key, fresh or not (a version never
    /// changes; only which one is current does), and counts a hit when `f`
    /// answers. The facade's decrypt path uses it with
    /// [`kms_core::Envelope::parse_under`] before resolving the version
    /// through the stack.
    pub fn with_hot_key<R>(&self, f: impl FnOnce(&DataKey) -> Option<R>) -> Option<R> {
        self.hot.with(|hot| f(&hot.key))
    }

    fn remember(&self, stamped: &Stamped) {
        // The hot slot keeps its own deadline, on its coarse clock: what
        // is left of the TTL now.
        let remaining = stamped
            .loaded
            .checked_add(self.config.ttl)
            .map(|end| end.saturating_duration_since(Instant::now()));
        if let Some(expires) = remaining.and_then(Deadline::after) {
            self.hot.store(Some(Hot {
                key: stamped.key.clone(),
                expires,
            }));
        }
    }

    async fn load_current(&self, key_id: &KeyId) -> Result<Stamped> {
        bump(&self.counters.loads);
        match self.inner.current_key(key_id).await {
            Ok(key) => {
                let stamped = Stamped {
                    key,
                    loaded: Instant::now(),
                };
                self.store_version(&stamped.key).await;
                self.last_known
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key_id.clone(), stamped.clone());
                Ok(stamped)
            }
            Err(e) => {
                bump(&self.counters.load_failures);
                Err(e)
            }
        }
    }

    async fn store_version(&self, key: &DataKey) {
        self.versions
            .insert((key.key_id().clone(), key.version().clone()), key.clone())
            .await;
    }

    /// The current key when the hot slot cannot answer: the moka cache, then
    /// the provider (concurrent misses share one call).
    async fn current_key_slow(&self, key_id: &KeyId) -> Result<DataKey> {
        if self.config.ttl.is_zero() {
            bump(&self.counters.misses);
            return match self.load_current(key_id).await {
                Ok(s) => Ok(s.key),
                Err(e) => self.stale(key_id, e),
            };
        }
        if let Some(s) = self.current.get(key_id).await {
            bump(&self.counters.hits);
            self.remember(&s);
            return Ok(s.key);
        }
        bump(&self.counters.misses);
        match self
            .current
            .try_get_with(key_id.clone(), self.load_current(key_id))
            .await
        {
            Ok(s) => {
                self.remember(&s);
                Ok(s.key)
            }
            Err(e) => self.stale(key_id, (*e).clone()),
        }
    }

    /// A version when the hot slot cannot answer: the moka cache, then the
    /// provider (concurrent misses share one call).
    async fn key_version_slow(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        let cache_key = (key_id.clone(), version.clone());
        if let Some(key) = self.versions.get(&cache_key).await {
            bump(&self.counters.hits);
            return Ok(key);
        }
        bump(&self.counters.misses);
        self.versions
            .try_get_with(cache_key, async {
                bump(&self.counters.loads);
                self.inner
                    .key_version(key_id, version)
                    .await
                    .inspect_err(|_| bump(&self.counters.load_failures))
            })
            .await
            .map_err(|e| (*e).clone())
    }

    /// The version list of `key_id`, fetched again when older than
    /// `max_age`; concurrent callers share one listing.
    async fn list(&self, key_id: &KeyId, max_age: Duration) -> Result<Listed> {
        let fresh = |lists: &Mutex<HashMap<KeyId, Listed>>| {
            lists
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(key_id)
                .filter(|l| l.loaded.elapsed() < max_age)
                .cloned()
        };
        if let Some(l) = fresh(&self.lists) {
            return Ok(l);
        }
        let _one_at_a_time = self.listing.lock().await;
        if let Some(l) = fresh(&self.lists) {
            return Ok(l);
        }
        // Not a key load: the counters count keys.
        let versions = self.inner.versions(key_id).await?;
        let listed = Listed {
            versions: Arc::new(versions),
            loaded: Instant::now(),
        };
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key_id.clone(), listed.clone());
        Ok(listed)
    }

    /// The key that wrote a ciphertext: the version it names (`hint`) if
    /// that version has the ciphertext's `fingerprint`, else the version of
    /// `key_id` that has it (the key's versions were copied to this
    /// provider, which names them differently). What the facade's decrypt
    /// path uses instead of [`kms_core::resolve_key`] when it built this
    /// cache.
    ///
    /// Forged ciphertexts (a real key id, any version and fingerprint) cost
    /// no provider call per ciphertext: the version list is reused for
    /// [`CacheConfig::list_ttl`]; a fingerprint found in no listed version
    /// makes the cache list the key again, at most once per
    /// [`CacheConfig::list_refresh`] (waiting for that if the list is
    /// younger, so that a version another instance has just written is
    /// found), and reads the named version directly at most once per
    /// `list_refresh` and key (a listing that lags behind a write must not
    /// make real data unreadable). Nothing is cached as missing.
    ///
    /// # Errors
    /// [`Error::KeyNotFound`] when no version has the fingerprint;
    /// temporary provider errors.
    pub async fn resolve(
        &self,
        key_id: &KeyId,
        hint: &KeyVersion,
        fingerprint: Fingerprint,
    ) -> Result<DataKey> {
        let cache_key = (key_id.clone(), hint.clone());
        if let Some(key) = self.versions.get(&cache_key).await
            && key.fingerprint() == fingerprint
        {
            bump(&self.counters.hits);
            return Ok(key);
        }
        let listed = match self.list(key_id, self.config.list_ttl).await {
            Ok(listed) => listed,
            Err(e) if e.is_temporary() => return Err(e),
            // No list to be had (a permission, say): the named version only.
            Err(_) => return self.named(key_id, hint, fingerprint).await,
        };
        if let Some(key) = self.search(key_id, hint, fingerprint, &listed).await? {
            return Ok(key);
        }
        // Wait until the list is `list_refresh` old (no wait when it is).
        let age = listed.loaded.elapsed();
        tokio::time::sleep(self.config.list_refresh.saturating_sub(age)).await;
        let relisted = self.list(key_id, self.config.list_refresh).await?;
        if relisted.loaded != listed.loaded
            && let Some(key) = self.search(key_id, hint, fingerprint, &relisted).await?
        {
            return Ok(key);
        }
        if self.may_probe(key_id) {
            return self.named(key_id, hint, fingerprint).await;
        }
        Err(Error::key_not_found(key_id, Some(hint)))
    }

    /// The named version, if it has the fingerprint.
    async fn named(
        &self,
        key_id: &KeyId,
        hint: &KeyVersion,
        fingerprint: Fingerprint,
    ) -> Result<DataKey> {
        match self.key_version(key_id, hint).await {
            Ok(key) if key.fingerprint() == fingerprint => Ok(key),
            Ok(_) | Err(Error::KeyNotFound { .. }) => Err(Error::key_not_found(key_id, Some(hint))),
            Err(e) => Err(e),
        }
    }

    /// The listed, readable version with the fingerprint: the named one
    /// first, then the others newest first (cached, or loaded once).
    async fn search(
        &self,
        key_id: &KeyId,
        hint: &KeyVersion,
        fingerprint: Fingerprint,
        listed: &Listed,
    ) -> Result<Option<DataKey>> {
        let readable = || listed.versions.iter().filter(|v| v.enabled);
        let candidates: Vec<KeyVersion> = readable()
            .filter(|v| &v.version == hint)
            .chain(readable().rev().filter(|v| &v.version != hint))
            .map(|v| v.version.clone())
            .collect();
        find_by_fingerprint(self, key_id, fingerprint, &candidates).await
    }

    /// Lets one unlisted version per `list_refresh` and key through to the
    /// provider. (Nothing is cached as missing: a version refused now may
    /// be written a moment later, and an attacker who guesses the next
    /// version number must not be able to make fresh data unreadable.)
    fn may_probe(&self, key_id: &KeyId) -> bool {
        let mut probed = self.probed.lock().unwrap_or_else(PoisonError::into_inner);
        match probed.get(key_id) {
            Some(at) if at.elapsed() < self.config.list_refresh => false,
            _ => {
                probed.insert(key_id.clone(), Instant::now());
                true
            }
        }
    }

    /// Forgets the version list of `key_id` (a version was just written).
    fn forget_list(&self, key_id: &KeyId) {
        self.lists
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key_id);
    }

    /// Caches a version this instance just created as the current one.
    async fn rotated(&self, key_id: &KeyId, key: &DataKey) {
        self.forget_list(key_id);
        let stamped = Stamped {
            key: key.clone(),
            loaded: Instant::now(),
        };
        self.store_version(key).await;
        if !self.config.ttl.is_zero() {
            self.current.insert(key_id.clone(), stamped.clone()).await;
            self.remember(&stamped);
        }
        self.last_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key_id.clone(), stamped);
    }

    /// Stale-if-error: the last known current key, if allowed and recent enough.
    fn stale(&self, key_id: &KeyId, err: Error) -> Result<DataKey> {
        let Some(grace) = self.config.stale_if_error else {
            return Err(err);
        };
        if !err.is_temporary() {
            return Err(err);
        }
        let last = self
            .last_known
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key_id)
            .cloned();
        match last {
            Some(s) if s.loaded.elapsed() < self.config.ttl.saturating_add(grace) => {
                bump(&self.counters.stale_served);
                tracing::warn!(
                    target: "kms::cache",
                    key_id = %key_id,
                    version = %s.key.version(),
                    error = %err,
                    "provider unavailable: serving the last known current key version (stale-if-error)"
                );
                Ok(s.key)
            }
            _ => Err(err),
        }
    }
}

#[async_trait]
impl KeyProvider for CachingProvider {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    // The hot-slot checks come first and the rest is a separately boxed
    // future: async_trait boxes the whole method body, and with the moka
    // lookups inline that box is several kilobytes, allocated and copied on
    // every cache hit.
    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        if let Some(key) = self.current_if_fresh(key_id) {
            return Ok(key);
        }
        Box::pin(self.current_key_slow(key_id)).await
    }

    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        let hot = self.hot.with(|hot| {
            (hot.key.key_id() == key_id && hot.key.version() == version).then(|| hot.key.clone())
        });
        if let Some(key) = hot {
            return Ok(key);
        }
        Box::pin(self.key_version_slow(key_id, version)).await
    }

    /// The version list, reused for [`CacheConfig::list_ttl`] (1 s by
    /// default): decrypting a ciphertext whose version is unknown searches
    /// the list by fingerprint, and a stream of forged ciphertexts must not
    /// list the key once each. Callers that need the provider's own answer
    /// (scheduled rotation) ask the layer below the cache.
    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        Ok(self
            .list(key_id, self.config.list_ttl)
            .await?
            .versions
            .as_ref()
            .clone())
    }

    async fn rotate(&self, key_id: &KeyId, live: &LiveVersions) -> Result<DataKey> {
        let key = self.inner.rotate(key_id, live).await?;
        self.rotated(key_id, &key).await;
        Ok(key)
    }

    /// On success the new version becomes the cached current one, as after
    /// `rotate`; when another writer rotated first, the cached current
    /// version is forgotten so the next encryption fetches the new one.
    async fn rotate_if_current(
        &self,
        key_id: &KeyId,
        expected: &KeyVersion,
        live: &LiveVersions,
    ) -> Result<Option<DataKey>> {
        let rotated = self.inner.rotate_if_current(key_id, expected, live).await?;
        match &rotated {
            Some(key) => self.rotated(key_id, key).await,
            None => {
                self.forget_list(key_id);
                self.invalidate_current(key_id).await;
            }
        }
        Ok(rotated)
    }

    /// The imported version becomes the cached current one, as after `rotate`.
    async fn import(
        &self,
        key_id: &KeyId,
        material: KeyMaterial,
        live: &LiveVersions,
    ) -> Result<DataKey> {
        let key = self.inner.import(key_id, material, live).await?;
        self.rotated(key_id, &key).await;
        Ok(key)
    }

    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        self.inner.metadata(key_id).await
    }

    async fn health(&self) -> HealthStatus {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests;
