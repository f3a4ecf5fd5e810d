//! The layered provider stack: cache hits against bare moka, the full facade
//! stack against bare aes-gcm, and a call refused by an open circuit.
//!
//! Every benchmark awaiting a future runs on a current-thread tokio runtime
//! with its drivers enabled (`b.to_async(&rt)`: criterion awaits the routine
//! in a loop inside one `block_on`, so no runtime entry is timed per
//! iteration). `cargo xtask bench` divides each row by the `bare*` row of the
//! same group and parameter, so each group has exactly one `bare*` function.
//!
//! - `cache-hit` (parameter `hit`), a warm lookup of one key:
//!   - `bare-moka-future-get`: `moka::future::Cache<KeyId, DataKey>::get`,
//!     awaited. The baseline.
//!   - `moka-sync-get`: `moka::sync::Cache<KeyId, DataKey>::get`. Not named
//!     `bare-*` so that the table has one baseline; its ratio is sync vs future.
//!   - `kms-cache-current-key`: `CachingProvider::current_key`, awaited,
//!     through the `KeyProvider` trait (a boxed `async_trait` future).
//!   - `kms-cache-key-version`: `CachingProvider::key_version` of version 1
//!     while version 2 is current (the hot slot holds version 2, so this is
//!     the moka path of the cache).
//!   - `kms-cache-hot-slot`: `CachingProvider::current_if_fresh`, the
//!     synchronous hot-slot lookup (returns a `DataKey` clone).
//!   - `kms-cache-hot-slot-borrow`: `with_current_if_fresh` reading the
//!     fingerprint: the hot slot without the `DataKey` clone, as the
//!     facade's encrypt path uses it.
//!   - `sketch-hot-slot-first`: not library code, a sketch of a fix for
//!     `kms-cache-current-key` (see docs/PERFORMANCE.md): an `#[async_trait]`
//!     method that tries the hot slot and only then awaits the cache's
//!     boxed `current_key` future, so a hit boxes a future of a few dozen
//!     bytes instead of the cache's (about 3.8 KB, copied into the box).
//! - `stack-1k` (parameter 1024): `bare-aes-gcm` (fresh 12-byte IV from
//!   `rand::rng()`, copy into a new `Vec`, `encrypt_inout_detached`, tag
//!   appended, as in `crypto.rs`) against `kms-full-stack-encrypt`
//!   (`Kms::encrypt`, binary form, over `MemoryProvider` under the default
//!   layers: provider, `ResilientProvider`, `CachingProvider`; warm cache).
//! - `stack-1k-decrypt` (parameter 1024): `bare-aes-gcm-decrypt` against
//!   `kms-full-stack-decrypt`, the same stack.
//! - `circuit` (parameter `call`):
//!   - `bare-async-call`: a trivial `#[async_trait]` method called through
//!     `&dyn`, awaited: the boxed future alone. The baseline.
//!   - `kms-circuit-rejected`: `ResilientProvider::current_key` (through the
//!     trait) over `FaultyProvider(MemoryProvider)` failing with
//!     `Fault::Temporary`, failure threshold 1, no retries, open for an hour,
//!     opened by one failed call before measuring: every measured call is
//!     refused by the open circuit (and never reaches the provider).

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark, not library code: a failed set-up is a bug in the bench"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::{Aes256Gcm, KeyInit};
use async_trait::async_trait;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use kms::core::LiveVersions;
use kms::{DataKey, KeyId, KeyProvider, KeyVersion, Kms};
use kms_benches::{bare_decrypt, bare_encrypt};
use kms_cache::{CacheConfig, CachingProvider};
use kms_circuit::{CircuitState, ResilienceConfig, ResilientProvider};
use kms_testing::{Fault, FaultyProvider, MemoryProvider};
use rand::Rng;
use tokio::runtime::Runtime;

/// The plaintext size of the `stack-1k` groups.
const SIZE: usize = 1024;

/// The parameter of every `cache-hit` benchmark.
const HIT: &str = "hit";

/// The parameter of every `circuit` benchmark.
const CALL: &str = "call";

fn runtime() -> Runtime {
    // Timers on: the resilience layer times provider calls out.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

/// `KeyProvider::current_key` alone, for the sketch below.
#[async_trait]
trait CurrentKey: Send + Sync {
    async fn current_key(&self, key_id: &KeyId) -> kms::Result<DataKey>;
}

/// Sketch of a smaller `CachingProvider::current_key` future: the hot slot
/// first, the cache's own (large) future only on a miss, behind its box.
struct HotSlotFirst<'a>(&'a CachingProvider);

#[async_trait]
impl CurrentKey for HotSlotFirst<'_> {
    async fn current_key(&self, key_id: &KeyId) -> kms::Result<DataKey> {
        if let Some(key) = self.0.current_if_fresh(key_id) {
            return Ok(key);
        }
        KeyProvider::current_key(self.0, key_id).await
    }
}

fn cache_hit(c: &mut Criterion, rt: &Runtime) {
    let id = KeyId::default();

    // One key id with two versions: version 2 is current.
    let memory = MemoryProvider::with_key(id.clone());
    let v1 = rt.block_on(memory.current_key(&id)).unwrap();
    let v2 = rt
        .block_on(memory.rotate(&id, &LiveVersions::all()))
        .unwrap();
    let version1: KeyVersion = v1.version().clone();
    let cache = CachingProvider::new(memory, CacheConfig::default());
    // Warm: the current version (moka and the hot slot), and version 1 (moka).
    rt.block_on(async {
        let current = cache.current_key(&id).await.unwrap();
        assert_eq!(current.fingerprint(), v2.fingerprint());
        let old = cache.key_version(&id, &version1).await.unwrap();
        assert_eq!(old.fingerprint(), v1.fingerprint());
    });
    let loads = cache.stats().loads;

    let future_cache: moka::future::Cache<KeyId, DataKey> =
        moka::future::Cache::builder().max_capacity(10_000).build();
    rt.block_on(future_cache.insert(id.clone(), v2.clone()));
    let sync_cache: moka::sync::Cache<KeyId, DataKey> =
        moka::sync::Cache::builder().max_capacity(10_000).build();
    sync_cache.insert(id.clone(), v2.clone());

    let mut group = c.benchmark_group("cache-hit");
    configure(&mut group);
    let (id, version1) = (&id, &version1);

    group.bench_function(BenchmarkId::new("bare-moka-future-get", HIT), |b| {
        let cache = &future_cache;
        b.to_async(rt)
            .iter(|| async move { cache.get(black_box(id)).await.unwrap() });
    });

    group.bench_function(BenchmarkId::new("moka-sync-get", HIT), |b| {
        b.iter(|| sync_cache.get(black_box(id)).unwrap());
    });

    // Through the trait object, as the facade's slow path calls it.
    let provider: &dyn KeyProvider = &cache;
    group.bench_function(BenchmarkId::new("kms-cache-current-key", HIT), |b| {
        b.to_async(rt).iter(|| async move {
            black_box(provider)
                .current_key(black_box(id))
                .await
                .unwrap()
        });
    });

    group.bench_function(BenchmarkId::new("kms-cache-key-version", HIT), |b| {
        b.to_async(rt).iter(|| async move {
            black_box(provider)
                .key_version(black_box(id), black_box(version1))
                .await
                .unwrap()
        });
    });

    group.bench_function(BenchmarkId::new("kms-cache-hot-slot", HIT), |b| {
        b.iter(|| cache.current_if_fresh(black_box(id)).unwrap());
    });

    group.bench_function(BenchmarkId::new("kms-cache-hot-slot-borrow", HIT), |b| {
        b.iter(|| {
            cache
                .with_current_if_fresh(black_box(id), DataKey::fingerprint)
                .unwrap()
        });
    });
    let sketch = HotSlotFirst(&cache);
    let sketch: &dyn CurrentKey = &sketch;
    group.bench_function(BenchmarkId::new("sketch-hot-slot-first", HIT), |b| {
        b.to_async(rt)
            .iter(|| async move { black_box(sketch).current_key(black_box(id)).await.unwrap() });
    });
    group.finish();

    // Every measured lookup was a hit.
    assert_eq!(cache.stats().loads, loads, "a cache-hit benchmark missed");
}

/// The full default stack over `MemoryProvider`, warm, and bare aes-gcm with
/// the same key.
struct Stack {
    kms: Kms,
    bare: Aes256Gcm,
}

impl Stack {
    fn new(rt: &Runtime) -> Self {
        let kms = rt.block_on(async {
            Kms::builder()
                .provider(MemoryProvider::with_key(KeyId::default()))
                .build()
                .await
                .unwrap()
        });
        // Warm the cache (and its hot slot) with one encryption.
        let warm = rt.block_on(kms.encrypt(b"warm", b"")).unwrap();
        assert_eq!(rt.block_on(kms.decrypt(&warm, b"")).unwrap(), b"warm");
        let key = rt
            .block_on(kms.provider().current_key(kms.key_id()))
            .unwrap();
        let bare = Aes256Gcm::new(key.material().expose_secret().into());
        Stack { kms, bare }
    }
}

fn plaintext(size: usize) -> Vec<u8> {
    let mut pt = vec![0u8; size];
    rand::rng().fill_bytes(&mut pt);
    pt
}

fn stack_1k(c: &mut Criterion, rt: &Runtime, stack: &Stack) {
    let pt = plaintext(SIZE);
    let pt = pt.as_slice();
    let kms = &stack.kms;

    let mut group = c.benchmark_group("stack-1k");
    configure(&mut group);
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_with_input(BenchmarkId::new("bare-aes-gcm", SIZE), pt, |b, pt| {
        b.iter(|| bare_encrypt(&stack.bare, black_box(pt)));
    });
    group.bench_with_input(
        BenchmarkId::new("kms-full-stack-encrypt", SIZE),
        pt,
        |b, pt| {
            b.to_async(rt)
                .iter(|| async move { kms.encrypt(black_box(pt), black_box(b"")).await.unwrap() });
        },
    );
    group.finish();

    let (iv, sealed) = bare_encrypt(&stack.bare, pt);
    assert_eq!(bare_decrypt(&stack.bare, &iv, &sealed), pt);
    let ct = rt.block_on(kms.encrypt(pt, b"")).unwrap();
    assert_eq!(rt.block_on(kms.decrypt(&ct, b"")).unwrap(), pt);

    let mut group = c.benchmark_group("stack-1k-decrypt");
    configure(&mut group);
    group.throughput(Throughput::Bytes(SIZE as u64));
    group.bench_with_input(
        BenchmarkId::new("bare-aes-gcm-decrypt", SIZE),
        sealed.as_slice(),
        |b, sealed| {
            b.iter(|| bare_decrypt(&stack.bare, black_box(&iv), black_box(sealed)));
        },
    );
    group.bench_with_input(
        BenchmarkId::new("kms-full-stack-decrypt", SIZE),
        ct.as_slice(),
        |b, ct| {
            b.to_async(rt)
                .iter(|| async move { kms.decrypt(black_box(ct), black_box(b"")).await.unwrap() });
        },
    );
    group.finish();
}

/// The cheapest boxed async-trait call: what `#[async_trait]` costs alone.
#[async_trait]
trait Probe: Send + Sync {
    async fn call(&self) -> u64;
}

struct Ready(u64);

#[async_trait]
impl Probe for Ready {
    async fn call(&self) -> u64 {
        self.0
    }
}

fn circuit(c: &mut Criterion, rt: &Runtime) {
    let id = KeyId::default();
    let faulty = Arc::new(FaultyProvider::new(MemoryProvider::with_key(id.clone())));
    faulty.set_fault(Fault::Temporary);
    let config = ResilienceConfig {
        failure_threshold: 1,
        retries: 0,
        open_duration: Duration::from_secs(3600),
        max_open_duration: Duration::from_secs(3600),
        ..ResilienceConfig::default()
    };
    let resilient = ResilientProvider::from_arc(faulty.clone(), config);
    // Open the circuit: one failed call.
    assert_eq!(resilient.circuit_state(), CircuitState::Closed);
    let err = rt.block_on(resilient.current_key(&id)).unwrap_err();
    assert!(err.is_temporary(), "{err}");
    assert_eq!(resilient.circuit_state(), CircuitState::Open);
    assert_eq!(faulty.calls(), 1);

    let mut group = c.benchmark_group("circuit");
    configure(&mut group);

    let ready = Ready(42);
    let probe: &dyn Probe = &ready;
    group.bench_function(BenchmarkId::new("bare-async-call", CALL), |b| {
        b.to_async(rt)
            .iter(|| async move { black_box(probe).call().await });
    });

    let provider: &dyn KeyProvider = &resilient;
    let id = &id;
    group.bench_function(BenchmarkId::new("kms-circuit-rejected", CALL), |b| {
        b.to_async(rt).iter(|| async move {
            black_box(provider)
                .current_key(black_box(id))
                .await
                .unwrap_err()
        });
    });
    group.finish();

    // Every measured call was refused without reaching the provider.
    assert_eq!(faulty.calls(), 1, "a rejected call reached the provider");
    assert_eq!(resilient.circuit_state(), CircuitState::Open);
}

fn main() {
    let rt = runtime();
    let stack = Stack::new(&rt);
    let mut c = Criterion::default().configure_from_args();
    cache_hit(&mut c, &rt);
    stack_1k(&mut c, &rt, &stack);
    circuit(&mut c, &rt);
    c.final_summary();
}
