#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

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
async fn health_reports_cache_figures_and_debug_hides_keys() {
    let c = cached(faulty(), CacheConfig::default());
    let key = c.current_key(&id()).await.unwrap();
    let h = c.health().await;
    assert_eq!(h.cache.unwrap().loads, 1);
    let debug = format!("{c:?}");
    assert!(!debug.contains(&key.material().to_hex()[..16]), "{debug}");
}

#[test]
fn object_safe() {
    let _boxed: Box<dyn KeyProvider> = Box::new(cached(faulty(), CacheConfig::default()));
}
