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

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::{Aes256Gcm, KeyInit};
use async_trait::async_trait;
use kms::{DataKey, Envelope, IvLength, KeyId, KeyProvider, Kms};
use kms_benches::{bare_decrypt, bare_encrypt};
use kms_cache::{CacheConfig, CachingProvider};
use kms_circuit::{CircuitState, ResilienceConfig, ResilientProvider};
use kms_core::crypto;
use kms_testing::{Fault, FaultyProvider, MemoryProvider};
use rand::Rng;
use tokio::runtime::Runtime;

/// Target duration of one batch.
const BATCH: Duration = Duration::from_millis(1);

/// Runs a function `n` times and returns the elapsed time.
type Timed<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;

fn sync<'a, R>(mut f: impl FnMut() -> R + 'a) -> Timed<'a> {
    Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            black_box(f());
        }
        start.elapsed()
    })
}

/// As criterion's `to_async`: one `block_on` per batch, the routine awaited in a loop.
fn on_rt<'a, R, Fut>(rt: &'a Runtime, mut f: impl FnMut() -> Fut + 'a) -> Timed<'a>
where
    Fut: Future<Output = R>,
{
    Box::new(move |n| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..n {
                black_box(f().await);
            }
            start.elapsed()
        })
    })
}

struct Case<'a> {
    name: &'static str,
    run: Timed<'a>,
    iters: u64,
    per_iter_ns: Vec<f64>,
}

fn median(values: &mut [f64]) -> f64 {
    quantile(values, 0.5)
}

fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let last = values.len().saturating_sub(1);
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let index = ((last as f64) * q).round() as usize;
    values.get(index).copied().unwrap_or(f64::NAN)
}

/// Times `cases` (the first is the baseline) in `rounds` interleaved rounds
/// and prints the medians.
fn compare(title: &str, rounds: usize, cases: Vec<(&'static str, Timed<'_>)>) {
    let mut cases: Vec<Case<'_>> = cases
        .into_iter()
        .map(|(name, run)| Case {
            name,
            run,
            iters: 1,
            per_iter_ns: Vec::with_capacity(rounds),
        })
        .collect();
    // Calibrate (and warm up): iterations for about one batch.
    for case in &mut cases {
        while (case.run)(case.iters) < BATCH {
            case.iters *= 2;
        }
        for _ in 0..20 {
            (case.run)(case.iters);
        }
    }
    let count = cases.len();
    let mut ratios: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); count];
    for round in 0..rounds {
        let mut this_round = vec![0.0; count];
        for k in 0..count {
            let i = (round + k) % count;
            let case = &mut cases[i];
            #[allow(clippy::cast_precision_loss)]
            let ns = (case.run)(case.iters).as_nanos() as f64 / case.iters as f64;
            case.per_iter_ns.push(ns);
            this_round[i] = ns;
        }
        for (i, ratio) in ratios.iter_mut().enumerate() {
            ratio.push(this_round[i] / this_round[0]);
        }
    }
    println!("\n{title} ({rounds} rounds)\n");
    println!("| function | median time | median ratio | ratio quartiles |");
    println!("|---|---:|---:|---:|");
    for (case, ratio) in cases.iter_mut().zip(&mut ratios) {
        let time = median(&mut case.per_iter_ns);
        let (q1, q2, q3) = (
            quantile(ratio, 0.25),
            quantile(ratio, 0.5),
            quantile(ratio, 0.75),
        );
        println!(
            "| `{}` | {time:.1} ns | {q2:.2} | {q1:.2} to {q3:.2} |",
            case.name
        );
    }
}

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
