use std::sync::Arc;
use std::time::Duration;

use kms_core::{Error, KeyId, KeyProvider, KeyVersion, LiveVersions};
use kms_testing::{Fault, FaultyProvider, MemoryProvider};

use super::*;

fn id() -> KeyId {
    KeyId::default()
}

fn faulty() -> Arc<FaultyProvider> {
    Arc::new(FaultyProvider::new(MemoryProvider::with_key(id())))
}

fn cached(inner: Arc<dyn KeyProvider>, config: CacheConfig) -> CachingProvider {
    CachingProvider::from_arc(inner, config)
}

#[tokio::test]
async fn second_lookup_is_a_hit() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::default());
    let a = c.current_key(&id()).await.unwrap();
    let b = c.current_key(&id()).await.unwrap();
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(p.calls(), 1);
    // The version fetched as current is also cached as a version.
    c.key_version(&id(), a.version()).await.unwrap();
    assert_eq!(p.calls(), 1);
    let s = c.stats();
    assert_eq!((s.hits, s.misses, s.loads, s.load_failures), (2, 1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_misses_make_one_provider_call() {
    let p = faulty();
    p.set_latency(Duration::from_millis(50));
    let c = Arc::new(cached(p.clone(), CacheConfig::default()));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.current_key(&KeyId::default()).await })
        })
        .collect();
    let mut fingerprints = std::collections::HashSet::new();
    for t in tasks {
        fingerprints.insert(t.await.unwrap().unwrap().fingerprint());
    }
    assert_eq!(fingerprints.len(), 1);
    assert_eq!(
        p.calls(),
        1,
        "concurrent misses must share one provider call"
    );
    assert_eq!(c.stats().loads, 1);

    // The same for a specific version.
    let v1 = KeyVersion::from(1);
    let c2 = Arc::new(cached(p.clone(), CacheConfig::default()));
    p.reset_calls();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (c2, v1) = (c2.clone(), v1.clone());
            tokio::spawn(async move { c2.key_version(&KeyId::default(), &v1).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(p.calls(), 1);
}

#[tokio::test]
async fn rotation_through_the_cache_is_seen_at_once() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::default());
    let before = c.current_key(&id()).await.unwrap();
    let rotated = c.rotate(&id(), &LiveVersions::all()).await.unwrap();
    let after = c.current_key(&id()).await.unwrap();
    assert_ne!(before.fingerprint(), rotated.fingerprint());
    assert_eq!(after.fingerprint(), rotated.fingerprint());
    assert_eq!(after.version(), rotated.version());
    // The new version was cached by the rotation: no provider call to read it.
    let calls = p.calls();
    c.key_version(&id(), rotated.version()).await.unwrap();
    assert_eq!(p.calls(), calls);
}

#[tokio::test]
async fn another_instance_sees_a_rotation_after_its_ttl_and_decrypts_at_once() {
    let shared = Arc::new(MemoryProvider::with_key(id()));
    let ttl = Duration::from_millis(300);
    let a = cached(shared.clone(), CacheConfig::with_ttl(ttl));
    let b = cached(shared.clone(), CacheConfig::with_ttl(ttl));
    let old = b.current_key(&id()).await.unwrap();

    let new = a.rotate(&id(), &LiveVersions::all()).await.unwrap();
    // B still encrypts with the version it knows (correct until its TTL ends)...
    assert_eq!(b.current_key(&id()).await.unwrap().version(), old.version());
    // ...but reads A's new version at once, as a miss that fetches it.
    let misses = b.stats().misses;
    let fetched = b.key_version(&id(), new.version()).await.unwrap();
    assert_eq!(fetched.fingerprint(), new.fingerprint());
    assert_eq!(b.stats().misses, misses + 1);

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert_eq!(b.current_key(&id()).await.unwrap().version(), new.version());
}

#[tokio::test]
async fn cached_keys_keep_serving_while_the_provider_is_down() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::default());
    let cur = c.current_key(&id()).await.unwrap();
    p.set_fault(Fault::Temporary);
    assert_eq!(
        c.current_key(&id()).await.unwrap().fingerprint(),
        cur.fingerprint()
    );
    assert_eq!(
        c.key_version(&id(), cur.version())
            .await
            .unwrap()
            .fingerprint(),
        cur.fingerprint()
    );
    // Something never cached fails with the spec's message.
    let err = c
        .key_version(&id(), &KeyVersion::from(7))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "KMS service unavailable");
    assert_eq!(c.stats().load_failures, 1);
}

#[tokio::test]
async fn after_the_ttl_an_outage_is_an_error_without_stale_if_error() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::with_ttl(Duration::from_millis(100)));
    c.current_key(&id()).await.unwrap();
    p.set_fault(Fault::Temporary);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let err = c.current_key(&id()).await.unwrap_err();
    assert!(err.is_temporary());
    assert_eq!(c.stats().stale_served, 0);
}

#[tokio::test]
async fn stale_if_error_serves_the_last_key_within_the_grace_period() {
    let p = faulty();
    let config = CacheConfig {
        ttl: Duration::from_millis(100),
        stale_if_error: Some(Duration::from_millis(300)),
        ..CacheConfig::default()
    };
    let c = cached(p.clone(), config);
    let cur = c.current_key(&id()).await.unwrap();
    p.set_fault(Fault::Temporary);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        c.current_key(&id()).await.unwrap().fingerprint(),
        cur.fingerprint()
    );
    assert_eq!(c.stats().stale_served, 1);

    // Permanent errors are never papered over.
    p.set_fault(Fault::Permanent);
    assert!(matches!(
        c.current_key(&id()).await,
        Err(Error::AccessDenied { .. })
    ));

    // Past TTL + grace, the outage shows.
    p.set_fault(Fault::Temporary);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(c.current_key(&id()).await.unwrap_err().is_temporary());
    assert_eq!(c.stats().stale_served, 1);
}

#[tokio::test]
async fn failures_are_not_cached() {
    let mem = Arc::new(MemoryProvider::with_key(id()));
    let c = cached(mem.clone(), CacheConfig::default());
    let v2 = KeyVersion::from(2);
    assert!(matches!(
        c.key_version(&id(), &v2).await,
        Err(Error::KeyNotFound { .. })
    ));
    mem.rotate(&id(), &LiveVersions::all()).await.unwrap(); // another instance rotates
    assert!(c.key_version(&id(), &v2).await.is_ok());
}

#[tokio::test]
async fn zero_ttl_always_asks_the_provider_for_the_current_version() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::with_ttl(Duration::ZERO));
    c.current_key(&id()).await.unwrap();
    c.current_key(&id()).await.unwrap();
    assert_eq!(p.calls(), 2);
}

#[tokio::test]
async fn invalidate_and_clear() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::default());
    c.current_key(&id()).await.unwrap();
    c.invalidate_current(&id()).await;
    c.current_key(&id()).await.unwrap();
    assert_eq!(p.calls(), 2);
    c.clear();
    c.current_key(&id()).await.unwrap();
    assert_eq!(p.calls(), 3);
}

#[tokio::test]
async fn capacity_bounds_the_version_cache() {
    let mem = Arc::new(MemoryProvider::with_key(id()));
    for _ in 0..40 {
        mem.rotate(&id(), &LiveVersions::all()).await.unwrap();
    }
    let c = cached(
        mem.clone(),
        CacheConfig {
            max_versions: 8,
            ..CacheConfig::default()
        },
    );
    for v in 1..=41u64 {
        c.key_version(&id(), &KeyVersion::from(v)).await.unwrap();
    }
    c.versions.run_pending_tasks().await;
    assert!(
        c.versions.entry_count() <= 8,
        "{}",
        c.versions.entry_count()
    );
}

#[tokio::test]
async fn stats_count_loads_and_debug_hides_keys() {
    let c = cached(faulty(), CacheConfig::default());
    let key = c.current_key(&id()).await.unwrap();
    assert!(c.health().await.healthy);
    assert_eq!(c.stats().loads, 1);
    let debug = format!("{c:?}");
    assert!(!debug.contains(&key.material().to_hex()[..16]), "{debug}");
}

#[test]
fn object_safe() {
    let _boxed: Box<dyn KeyProvider> = Box::new(cached(faulty(), CacheConfig::default()));
}

// What the mutation tests asked for: the hot slot, the version and list
// caches, and `resolve`'s rate limits, at their boundaries (paused time).

fn other() -> KeyId {
    KeyId::new("other").unwrap()
}

/// A fingerprint no stored version has (a forged ciphertext's).
fn forged() -> Fingerprint {
    DataKey::new(id(), KeyVersion::from(1), KeyMaterial::generate()).fingerprint()
}

const MS: Duration = Duration::from_millis(1);

/// A provider whose version list lags behind its writes (an eventually
/// consistent listing): after `freeze`, it lists only the versions that
/// existed then.
#[derive(Debug, Default)]
struct Lagging {
    mem: MemoryProvider,
    frozen: std::sync::Mutex<Option<Vec<VersionInfo>>>,
}

impl Lagging {
    async fn freeze(&self) {
        let listed = self.mem.versions(&id()).await.unwrap();
        *self.frozen.lock().unwrap() = Some(listed);
    }
}

#[async_trait]
impl KeyProvider for Lagging {
    fn name(&self) -> &'static str {
        "lagging"
    }
    async fn current_key(&self, key_id: &KeyId) -> Result<DataKey> {
        self.mem.current_key(key_id).await
    }
    async fn key_version(&self, key_id: &KeyId, version: &KeyVersion) -> Result<DataKey> {
        self.mem.key_version(key_id, version).await
    }
    async fn versions(&self, key_id: &KeyId) -> Result<Vec<VersionInfo>> {
        let frozen = self.frozen.lock().unwrap().clone();
        match frozen {
            Some(listed) => Ok(listed),
            None => self.mem.versions(key_id).await,
        }
    }
    async fn metadata(&self, key_id: &KeyId) -> Result<KeyMetadata> {
        self.mem.metadata(key_id).await
    }
    async fn health(&self) -> HealthStatus {
        self.mem.health().await
    }
}

#[test]
fn config_and_name_are_those_given() {
    let config = CacheConfig {
        ttl: Duration::from_secs(7),
        max_versions: 3,
        stale_if_error: Some(Duration::from_secs(9)),
        list_ttl: Duration::from_secs(2),
        list_refresh: Duration::from_millis(20),
    };
    let c = cached(faulty(), config.clone());
    assert_eq!(c.config(), &config);
    assert_eq!(c.name(), "memory");
}

#[tokio::test(start_paused = true)]
async fn hot_slot_serves_the_fresh_current_key_of_its_key_id_until_the_ttl_ends() {
    let mem = MemoryProvider::with_key(id());
    mem.add_version(&other(), KeyMaterial::generate());
    let p = Arc::new(FaultyProvider::new(mem));
    let ttl = Duration::from_secs(10);
    let c = cached(p.clone(), CacheConfig::with_ttl(ttl));
    assert!(c.current_if_fresh(&id()).is_none());

    let cur = c.current_key(&id()).await.unwrap();
    assert_eq!(
        c.current_if_fresh(&id()).unwrap().fingerprint(),
        cur.fingerprint()
    );
    assert_eq!(
        c.with_current_if_fresh(&id(), |k| k.version().clone()),
        Some(cur.version().clone())
    );
    assert!(c.current_if_fresh(&other()).is_none());
    assert_eq!(p.calls(), 1);
    assert_eq!(c.stats().hits, 2);

    // Fresh up to the end of the TTL, not at it.
    tokio::time::advance(ttl - MS).await;
    assert!(c.current_if_fresh(&id()).is_some());
    tokio::time::advance(MS).await;
    assert!(c.current_if_fresh(&id()).is_none());
}

#[tokio::test(start_paused = true)]
async fn hot_slot_lends_its_key_fresh_or_not_and_counts_only_answers() {
    let c = cached(faulty(), CacheConfig::with_ttl(Duration::from_secs(10)));
    assert!(c.with_hot_key(|_| Some(())).is_none());
    let cur = c.current_key(&id()).await.unwrap();
    tokio::time::advance(Duration::from_secs(60)).await;
    assert!(c.current_if_fresh(&id()).is_none());
    let hits = c.stats().hits;
    assert_eq!(
        c.with_hot_key(|k| Some(k.fingerprint())),
        Some(cur.fingerprint())
    );
    assert_eq!(c.stats().hits, hits + 1);
    assert!(c.with_hot_key(|_| None::<()>).is_none());
    assert_eq!(c.stats().hits, hits + 1);
    c.invalidate_current(&id()).await;
    assert!(c.with_hot_key(|_| Some(())).is_none());
}

#[tokio::test]
async fn current_and_rotated_keys_stay_cached_as_versions_after_invalidation() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::default());
    let cur = c.current_key(&id()).await.unwrap();
    c.invalidate_current(&id()).await;
    let read = c.key_version(&id(), cur.version()).await.unwrap();
    assert_eq!(read.fingerprint(), cur.fingerprint());
    assert_eq!(p.calls(), 1);

    let rotated = c.rotate(&id(), &LiveVersions::all()).await.unwrap();
    c.invalidate_current(&id()).await;
    let read = c.key_version(&id(), rotated.version()).await.unwrap();
    assert_eq!(read.fingerprint(), rotated.fingerprint());
    assert_eq!(p.calls(), 2);
}

#[tokio::test]
async fn the_hot_slot_never_answers_for_another_key_id() {
    let mem = MemoryProvider::with_key(id());
    mem.add_version(&other(), KeyMaterial::generate());
    let c = cached(Arc::new(mem), CacheConfig::default());
    let a = c.current_key(&id()).await.unwrap();
    // Same version number, other key: not the hot slot's key.
    let b = c.key_version(&other(), a.version()).await.unwrap();
    assert_eq!(b.key_id(), &other());
    assert_ne!(b.fingerprint(), a.fingerprint());
}

#[tokio::test(start_paused = true)]
async fn version_list_is_reused_for_list_ttl_and_forgotten_after_a_rotation() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::default());
    let listed = c.versions(&id()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version, KeyVersion::from(1));

    tokio::time::advance(DEFAULT_LIST_TTL - MS).await;
    assert_eq!(c.versions(&id()).await.unwrap(), listed);
    assert_eq!(p.calls(), 1);
    tokio::time::advance(MS).await;
    assert_eq!(c.versions(&id()).await.unwrap(), listed);
    assert_eq!(p.calls(), 2);

    // A rotation through the cache shows in the list at once.
    let rotated = c.rotate(&id(), &LiveVersions::all()).await.unwrap();
    let listed = c.versions(&id()).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(&listed[1].version, rotated.version());
}

#[tokio::test]
async fn rotate_if_current_forwards_and_updates_the_cached_current_key() {
    let mem = Arc::new(MemoryProvider::with_key(id()));
    let p = Arc::new(FaultyProvider::new(mem.clone()));
    let c = cached(p.clone(), CacheConfig::default());
    let all = LiveVersions::all();
    let v1 = c.current_key(&id()).await.unwrap();

    let v2 = c
        .rotate_if_current(&id(), v1.version(), &all)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v2.version(), &KeyVersion::from(2));
    let calls = p.calls();
    assert_eq!(
        c.current_key(&id()).await.unwrap().fingerprint(),
        v2.fingerprint()
    );
    assert_eq!(p.calls(), calls);

    // Another writer rotated first: nothing written here, and the cached
    // current key is forgotten so the next lookup sees the other's.
    let v3 = mem.rotate(&id(), &all).await.unwrap();
    assert!(
        c.rotate_if_current(&id(), v2.version(), &all)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        c.current_key(&id()).await.unwrap().fingerprint(),
        v3.fingerprint()
    );
    assert_eq!(c.versions(&id()).await.unwrap().len(), 3);
}

#[tokio::test]
async fn resolve_answers_a_cached_version_without_a_provider_call() {
    let p = faulty();
    let c = cached(p.clone(), CacheConfig::default());
    let cur = c.current_key(&id()).await.unwrap();
    let key = c
        .resolve(&id(), cur.version(), cur.fingerprint())
        .await
        .unwrap();
    assert_eq!(key.fingerprint(), cur.fingerprint());
    assert_eq!(p.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn resolve_tries_the_named_version_first_then_the_others_newest_first() {
    let mem = MemoryProvider::with_key(id());
    let v2 = mem.add_version(&id(), KeyMaterial::generate());
    mem.add_version(&id(), KeyMaterial::generate());
    let v1 = mem.key_version(&id(), &KeyVersion::from(1)).await.unwrap();
    let p = Arc::new(FaultyProvider::new(mem));
    let start = Instant::now();

    // Named right: one listing and one read.
    let c = cached(p.clone(), CacheConfig::default());
    let key = c
        .resolve(&id(), v2.version(), v2.fingerprint())
        .await
        .unwrap();
    assert_eq!(key.fingerprint(), v2.fingerprint());
    assert_eq!(p.calls(), 2);

    // Named otherwise (copied from another provider): found in the list,
    // reading 3, then 2, then 1.
    p.reset_calls();
    let c = cached(p.clone(), CacheConfig::default());
    let key = c
        .resolve(&id(), &KeyVersion::from(99), v1.fingerprint())
        .await
        .unwrap();
    assert_eq!(key.version(), v1.version());
    assert_eq!(p.calls(), 4);
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn resolve_without_a_list_reads_the_named_version_unless_the_error_is_temporary() {
    let p = faulty();
    let v1 = p.key_version(&id(), &KeyVersion::from(1)).await.unwrap();
    p.reset_calls();

    // Listing denied: the named version, if it has the fingerprint.
    p.fail_next(1, Fault::Permanent);
    let c = cached(p.clone(), CacheConfig::default());
    let key = c
        .resolve(&id(), v1.version(), v1.fingerprint())
        .await
        .unwrap();
    assert_eq!(key.fingerprint(), v1.fingerprint());
    assert_eq!(p.calls(), 2);

    p.fail_next(1, Fault::Permanent);
    let c = cached(p.clone(), CacheConfig::default());
    assert!(matches!(
        c.resolve(&id(), v1.version(), forged()).await,
        Err(Error::KeyNotFound { .. })
    ));

    // Provider unavailable: the error, and no further call.
    p.reset_calls();
    p.fail_next(1, Fault::Temporary);
    let c = cached(p.clone(), CacheConfig::default());
    let err = c
        .resolve(&id(), v1.version(), v1.fingerprint())
        .await
        .unwrap_err();
    assert!(err.is_temporary());
    assert_eq!(p.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn resolve_lists_again_once_the_list_is_list_refresh_old_and_finds_a_new_version() {
    let mem = Arc::new(MemoryProvider::with_key(id()));
    let c = cached(mem.clone(), CacheConfig::default());
    c.versions(&id()).await.unwrap();
    tokio::time::advance(100 * MS).await;
    // Another instance writes a version, which a ciphertext names otherwise.
    let v2 = mem.rotate(&id(), &LiveVersions::all()).await.unwrap();
    let start = Instant::now();
    let key = c
        .resolve(&id(), &KeyVersion::from(99), v2.fingerprint())
        .await
        .unwrap();
    assert_eq!(key.version(), v2.version());
    // It waited until the list was `list_refresh` old, no longer.
    assert_eq!(start.elapsed(), DEFAULT_LIST_REFRESH - 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn unlisted_versions_are_read_directly_once_per_list_refresh_and_key() {
    let lag = Arc::new(Lagging::default());
    lag.mem.add_version(&id(), KeyMaterial::generate());
    lag.freeze().await;
    let p = Arc::new(FaultyProvider::new(lag.clone()));
    let c = cached(p.clone(), CacheConfig::default());
    let all = LiveVersions::all();

    // The listing lags behind a write: the named version is read directly.
    let v2 = lag.mem.rotate(&id(), &all).await.unwrap();
    let start = Instant::now();
    let key = c
        .resolve(&id(), v2.version(), v2.fingerprint())
        .await
        .unwrap();
    assert_eq!(key.fingerprint(), v2.fingerprint());
    assert_eq!(start.elapsed(), DEFAULT_LIST_REFRESH);
    // list, read 1, list again, read 2
    assert_eq!(p.calls(), 4);

    // Exactly `list_refresh` later, the next unlisted version may be read.
    let v3 = lag.mem.rotate(&id(), &all).await.unwrap();
    let key = c
        .resolve(&id(), v3.version(), v3.fingerprint())
        .await
        .unwrap();
    assert_eq!(key.fingerprint(), v3.fingerprint());
    assert_eq!(start.elapsed(), 2 * DEFAULT_LIST_REFRESH);

    // Two forged ciphertexts at once: one listing and one direct read.
    p.reset_calls();
    let (key_id, v7, v8) = (id(), KeyVersion::from(7), KeyVersion::from(8));
    let (a, b) = tokio::join!(
        c.resolve(&key_id, &v7, forged()),
        c.resolve(&key_id, &v8, forged()),
    );
    assert!(matches!(a, Err(Error::KeyNotFound { .. })), "{a:?}");
    assert!(matches!(b, Err(Error::KeyNotFound { .. })), "{b:?}");
    assert_eq!(p.calls(), 2);
    assert_eq!(start.elapsed(), 3 * DEFAULT_LIST_REFRESH);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_ends_exactly_at_ttl_plus_grace() {
    let p = faulty();
    let grace = Duration::from_secs(1);
    let c = cached(
        p.clone(),
        CacheConfig {
            ttl: Duration::ZERO,
            stale_if_error: Some(grace),
            ..CacheConfig::default()
        },
    );
    let cur = c.current_key(&id()).await.unwrap();
    p.set_fault(Fault::Temporary);
    tokio::time::advance(grace - MS).await;
    assert_eq!(
        c.current_key(&id()).await.unwrap().fingerprint(),
        cur.fingerprint()
    );
    tokio::time::advance(MS).await;
    assert!(c.current_key(&id()).await.unwrap_err().is_temporary());
    assert_eq!(c.stats().stale_served, 1);
}
