//! Paired, interleaved timing of the issue's three targets, for a shared
//! machine whose load changes while criterion measures one function after
//! the other.
//!
//! ```sh
//! cargo run --release -p kms-benches --example paired            # 301 rounds
//! cargo run --release -p kms-benches --example paired -- 1001    # more rounds
//! ```
//!
//! Each comparison has a baseline and one or more candidates, with the same
//! fixtures as `benches/stack.rs`. A round times one batch of each (about
//! 1 ms of iterations), in an order that rotates from round to round, and
//! divides each candidate's time per iteration by the baseline's of the same
//! round: load that comes and goes hits both sides of a ratio alike. The
//! report gives, per function, the median time per iteration over the rounds
//! and, per candidate, the median ratio with its quartiles. Medians rather
//! than means, so that a round interrupted by another process does not
//! count more than any other. Not a criterion bench: `cargo xtask bench` does
//! not run it.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a measuring program, not library code: a failed set-up is a bug in the program"
)]

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::{Aes256Gcm, KeyInit};
use async_trait::async_trait;
use kms::{DataKey, Envelope, IvLength, KeyId, KeyProvider, Kms};
use kms_benches::interleave::{compare, on_rt, sync};
use kms_benches::{bare_decrypt, bare_encrypt};
use kms_cache::{CacheConfig, CachingProvider};
use kms_circuit::{CircuitState, ResilienceConfig, ResilientProvider};
use kms_core::crypto;
use kms_testing::{Fault, FaultyProvider, MemoryProvider};
use rand::Rng;

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

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(301, |n| n.parse().expect("rounds: a whole number"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let id = KeyId::default();

    // (a) 1 KiB encrypt (and decrypt): bare aes-gcm against the full stack.
    let kms = rt.block_on(async {
        Kms::builder()
            .provider(MemoryProvider::with_key(id.clone()))
            .build()
            .await
            .unwrap()
    });
    let key = rt
        .block_on(kms.provider().current_key(kms.key_id()))
        .unwrap();
    let bare = Aes256Gcm::new(key.material().expose_secret().into());
    let mut pt = vec![0u8; 1024];
    rand::rng().fill_bytes(&mut pt);
    let pt = pt.as_slice();
    let (kms, bare, key) = (&kms, &bare, &key);
    compare(
        "(a) stack-1k: 1 KiB encrypt, warm cache",
        rounds,
        vec![
            ("bare-aes-gcm", sync(|| bare_encrypt(bare, black_box(pt)))),
            (
                "kms-core-seal",
                sync(|| {
                    crypto::seal(black_box(key), IvLength::Twelve, black_box(pt), b"").unwrap()
                }),
            ),
            (
                "kms-full-stack-encrypt",
                on_rt(&rt, || async {
                    kms.encrypt(black_box(pt), black_box(b"")).await.unwrap()
                }),
            ),
        ],
    );
    let (iv, sealed) = bare_encrypt(bare, pt);
    let ct = rt.block_on(kms.encrypt(pt, b"")).unwrap();
    let (iv, sealed, ct) = (&iv, sealed.as_slice(), ct.as_slice());
    compare(
        "stack-1k-decrypt: 1 KiB decrypt, warm cache",
        rounds,
        vec![
            (
                "bare-aes-gcm-decrypt",
                sync(|| bare_decrypt(bare, black_box(iv), black_box(sealed))),
            ),
            (
                "kms-core-open",
                sync(|| {
                    let envelope = Envelope::parse(black_box(ct)).unwrap();
                    crypto::open(black_box(key), &envelope, b"").unwrap()
                }),
            ),
            (
                "kms-full-stack-decrypt",
                on_rt(&rt, || async {
                    kms.decrypt(black_box(ct), black_box(b"")).await.unwrap()
                }),
            ),
        ],
    );

    // (b) Cache hits: bare moka against the cache's async API and hot slot.
    let cache = CachingProvider::new(MemoryProvider::with_key(id.clone()), CacheConfig::default());
    let current = rt.block_on(cache.current_key(&id)).unwrap();
    let future_cache: moka::future::Cache<KeyId, DataKey> =
        moka::future::Cache::builder().max_capacity(10_000).build();
    rt.block_on(future_cache.insert(id.clone(), current.clone()));
    let sync_cache: moka::sync::Cache<KeyId, DataKey> =
        moka::sync::Cache::builder().max_capacity(10_000).build();
    sync_cache.insert(id.clone(), current);
    let provider: &dyn KeyProvider = &cache;
    let (id_ref, future_cache, sync_cache, cache_ref) = (&id, &future_cache, &sync_cache, &cache);
    compare(
        "(b) cache-hit, async: moka future get against CachingProvider::current_key",
        rounds,
        vec![
            (
                "bare-moka-future-get",
                on_rt(&rt, || async {
                    future_cache.get(black_box(id_ref)).await.unwrap()
                }),
            ),
            (
                "kms-cache-current-key",
                on_rt(&rt, || async {
                    black_box(provider)
                        .current_key(black_box(id_ref))
                        .await
                        .unwrap()
                }),
            ),
        ],
    );
    compare(
        "(b) cache-hit, sync: moka sync get against the hot slot",
        rounds,
        vec![
            (
                "moka-sync-get",
                sync(|| sync_cache.get(black_box(id_ref)).unwrap()),
            ),
            (
                "kms-cache-hot-slot",
                sync(|| cache_ref.current_if_fresh(black_box(id_ref)).unwrap()),
            ),
        ],
    );

    // (c) A call refused by an open circuit.
    let faulty = std::sync::Arc::new(FaultyProvider::new(MemoryProvider::with_key(id.clone())));
    faulty.set_fault(Fault::Temporary);
    let resilient = ResilientProvider::from_arc(
        faulty.clone(),
        ResilienceConfig {
            failure_threshold: 1,
            retries: 0,
            open_duration: Duration::from_secs(3600),
            max_open_duration: Duration::from_secs(3600),
            ..ResilienceConfig::default()
        },
    );
    assert!(rt.block_on(resilient.current_key(&id)).is_err());
    assert_eq!(resilient.circuit_state(), CircuitState::Open);
    let ready = Ready(42);
    let probe: &dyn Probe = &ready;
    let guarded: &dyn KeyProvider = &resilient;
    compare(
        "(c) circuit: a trivial boxed async call against a call refused by the open circuit",
        rounds,
        vec![
            (
                "bare-async-call",
                on_rt(&rt, || async { black_box(probe).call().await }),
            ),
            (
                "kms-circuit-rejected",
                on_rt(&rt, || async {
                    black_box(guarded)
                        .current_key(black_box(id_ref))
                        .await
                        .unwrap_err()
                }),
            ),
        ],
    );
    assert_eq!(faulty.calls(), 1, "a rejected call reached the provider");
}
