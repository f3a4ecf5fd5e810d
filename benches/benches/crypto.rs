//! Encryption and decryption cost: bare aes-gcm against kms-core and the kms facade.
//!
//! Groups `encrypt` and `decrypt`; in each, one benchmark per function and
//! plaintext size, with the size (bytes) as the parameter:
//!
//! - `bare-aes-gcm`: aes-gcm 0.11 alone on the same bytes, including what
//!   any caller pays: a fresh IV from `rand::rng()` and a copy of the input
//!   into a new `Vec` (the facade also allocates its output). This is the
//!   baseline `cargo xtask bench` divides by.
//! - `kms-core-seal` / `kms-core-open`: `kms_core::crypto::seal`, and
//!   `Envelope::parse` + `crypto::open`, with a key already in hand: the cost
//!   of the ciphertext format without the provider lookup.
//! - `kms-facade`: `Kms::encrypt` / `Kms::decrypt` as built by
//!   `Kms::builder().env_key(..).build()` (env provider under the facade's
//!   resilience and cache layers), 12-byte IVs, empty AAD, on a
//!   current-thread tokio runtime.
//! - `kms-facade-16b-iv` (encrypt, 1 KiB only): the facade with 16-byte IVs.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark, not library code: a failed set-up is a bug in the bench"
)]

use std::hint::black_box;
use std::time::Duration;

use aes_gcm::{Aes256Gcm, KeyInit};
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, measurement::WallTime};
use kms::{DataKey, Envelope, IvLength, Kms};
use kms_benches::{bare_decrypt, bare_encrypt};
use kms_core::crypto;
use rand::Rng;
use tokio::runtime::Runtime;

/// A fixed development key (64 hex characters), as in `ENCRYPTION_KEY`.
const KEY_HEX: &str = "8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334";

/// Plaintext sizes: a token, a small record, a document, a blob.
const SIZES: [usize; 4] = [64, 1024, 16 * 1024, 1024 * 1024];

/// The size at which the 16-byte-IV variant is measured.
const IV16_SIZE: usize = 1024;

struct Fixture {
    rt: Runtime,
    kms: Kms,
    kms_iv16: Kms,
    /// The facade's current key, for the kms-core benchmarks (same header).
    key: DataKey,
    /// The same key bytes for bare aes-gcm, key schedule expanded once (as in `DataKey`).
    bare: Aes256Gcm,
}

impl Fixture {
    fn new() -> Self {
        // Timers on: the facade's resilience layer times provider calls out.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (kms, kms_iv16, key) = rt.block_on(async {
            let kms = Kms::builder().env_key(KEY_HEX).build().await.unwrap();
            let kms_iv16 = Kms::builder()
                .env_key(KEY_HEX)
                .iv_length(IvLength::Sixteen)
                .build()
                .await
                .unwrap();
            let key = kms.provider().current_key(kms.key_id()).await.unwrap();
            (kms, kms_iv16, key)
        });
        let mut key_bytes = [0u8; 32];
        for (dst, pair) in key_bytes.iter_mut().zip(KEY_HEX.as_bytes().chunks(2)) {
            *dst = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
        assert_eq!(&key_bytes, key.material().expose_secret());
        let bare = Aes256Gcm::new((&key_bytes).into());
        Fixture {
            rt,
            kms,
            kms_iv16,
            key,
            bare,
        }
    }
}

fn plaintext(size: usize) -> Vec<u8> {
    let mut pt = vec![0u8; size];
    rand::rng().fill_bytes(&mut pt);
    pt
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn encrypt(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("encrypt");
    configure(&mut group);
    for size in SIZES {
        let pt = plaintext(size);
        let pt = pt.as_slice();
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(BenchmarkId::new("bare-aes-gcm", size), pt, |b, pt| {
            b.iter(|| bare_encrypt(&f.bare, black_box(pt)));
        });

        group.bench_with_input(BenchmarkId::new("kms-core-seal", size), pt, |b, pt| {
            b.iter(|| {
                crypto::seal(
                    black_box(&f.key),
                    IvLength::Twelve,
                    black_box(pt),
                    black_box(b""),
                )
                .unwrap()
            });
        });

        let kms = &f.kms;
        group.bench_with_input(BenchmarkId::new("kms-facade", size), pt, |b, pt| {
            b.to_async(&f.rt)
                .iter(|| async move { kms.encrypt(black_box(pt), black_box(b"")).await.unwrap() });
        });

        if size == IV16_SIZE {
            let kms = &f.kms_iv16;
            group.bench_with_input(BenchmarkId::new("kms-facade-16b-iv", size), pt, |b, pt| {
                b.to_async(&f.rt).iter(|| async move {
                    kms.encrypt(black_box(pt), black_box(b"")).await.unwrap()
                });
            });
        }
    }
    group.finish();
}

fn decrypt(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("decrypt");
    configure(&mut group);
    for size in SIZES {
        let pt = plaintext(size);
        group.throughput(Throughput::Bytes(size as u64));

        let (iv, sealed) = bare_encrypt(&f.bare, &pt);
        assert_eq!(bare_decrypt(&f.bare, &iv, &sealed), pt);
        group.bench_with_input(
            BenchmarkId::new("bare-aes-gcm", size),
            sealed.as_slice(),
            |b, sealed| {
                b.iter(|| bare_decrypt(&f.bare, black_box(&iv), black_box(sealed)));
            },
        );

        let ct =
            f.rt.block_on(f.kms.encrypt(&pt, b""))
                .expect("facade encrypt");
        let ct = ct.as_slice();
        assert_eq!(f.rt.block_on(f.kms.decrypt(ct, b"")).unwrap(), pt);

        group.bench_with_input(BenchmarkId::new("kms-core-open", size), ct, |b, ct| {
            b.iter(|| {
                let envelope = Envelope::parse(black_box(ct)).unwrap();
                crypto::open(black_box(&f.key), &envelope, black_box(b"")).unwrap()
            });
        });

        let kms = &f.kms;
        group.bench_with_input(BenchmarkId::new("kms-facade", size), ct, |b, ct| {
            b.to_async(&f.rt)
                .iter(|| async move { kms.decrypt(black_box(ct), black_box(b"")).await.unwrap() });
        });
    }
    group.finish();
}

fn main() {
    let fixture = Fixture::new();
    let mut c = Criterion::default().configure_from_args();
    encrypt(&mut c, &fixture);
    decrypt(&mut c, &fixture);
    c.final_summary();
}
