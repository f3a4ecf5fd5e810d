//! The facade against the best bare AES-256-GCM at every message size,
//! timed interleaved (see `kms_benches::interleave`): for 64 B, 1 KiB,
//! 16 KiB and 1 MiB, encrypt and decrypt through `Kms` (env provider, warm
//! cache, empty AAD) beside bare aws-lc-rs and bare aes-gcm, each bare side
//! drawing a fresh 12-byte IV from `rand` and allocating its output as the
//! facade must.
//!
//! ```sh
//! cargo run --release -p kms-benches --example sizes           # 201 rounds
//! cargo run --release -p kms-benches --example sizes -- 501    # more rounds
//! ```
//!
//! "facade / best bare" is, per round, the time of the faster bare side
//! divided by the facade's (1.0: as fast as the best bare cipher); the
//! table gives its median and quartiles over the rounds. `cargo xtask
//! bench` runs this after the criterion benches.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a measuring program, not library code: a failed set-up is a bug in the program"
)]

use std::hint::black_box;

use aes_gcm::{Aes256Gcm, KeyInit};
use kms::{Envelope, IvLength, Kms};
use kms_benches::interleave::{measure, median, on_rt, quantile, sync};
use kms_benches::{
    aws_lc_key, bare_aws_lc_decrypt, bare_aws_lc_encrypt, bare_decrypt, bare_encrypt,
};
use kms_core::crypto;
use rand::Rng;

const KEY_HEX: &str = "8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334";

const SIZES: [(&str, usize); 4] = [
    ("64 B", 64),
    ("1 KiB", 1024),
    ("16 KiB", 16 * 1024),
    ("1 MiB", 1024 * 1024),
];

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(201, |n| n.parse().expect("rounds: a whole number"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let kms = rt
        .block_on(Kms::builder().env_key(KEY_HEX).build())
        .expect("the env provider");
    let key = rt
        .block_on(kms.provider().current_key(kms.key_id()))
        .unwrap();
    let secret = key.material().expose_secret();
    let (pure, fast) = (Aes256Gcm::new(secret.into()), aws_lc_key(secret));
    let (kms, pure, fast) = (&kms, &pure, &fast);

    println!(
        "\nfacade (`Kms`, env provider, warm cache, empty AAD, 12-byte IVs by {}) \
         against bare AES-256-GCM, interleaved, {rounds} rounds\n",
        kms::core::BACKEND_12
    );
    println!(
        "| size | operation | bare aws-lc-rs | bare aes-gcm | facade | facade / best bare (quartiles) |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (label, size) in SIZES {
        let mut plaintext = vec![0u8; size];
        rand::rng().fill_bytes(&mut plaintext);
        let pt = plaintext.as_slice();
        let encrypt = measure(
            rounds,
            &mut [
                sync(|| bare_aws_lc_encrypt(fast, black_box(pt))),
                sync(|| bare_encrypt(pure, black_box(pt))),
                on_rt(&rt, || async {
                    kms.encrypt(black_box(pt), b"").await.unwrap()
                }),
            ],
        );
        row(label, "encrypt", encrypt);

        let (iv, sealed) = bare_encrypt(pure, pt);
        let ct = rt.block_on(kms.encrypt(pt, b"")).unwrap();
        let (iv, sealed, ct) = (&iv, sealed.as_slice(), ct.as_slice());
        let decrypt = measure(
            rounds,
            &mut [
                sync(|| bare_aws_lc_decrypt(fast, black_box(iv), black_box(sealed))),
                sync(|| bare_decrypt(pure, black_box(iv), black_box(sealed))),
                on_rt(&rt, || async {
                    kms.decrypt(black_box(ct), b"").await.unwrap()
                }),
            ],
        );
        row(label, "decrypt", decrypt);
    }

    // Where the fixed cost of a small encryption goes: each row adds one
    // layer to the one above it.
    let mut plaintext = [0u8; 64];
    rand::rng().fill_bytes(&mut plaintext);
    let (pt, fixed_iv) = (&plaintext[..], [7u8; 12]);
    let mut parts = measure(
        rounds,
        &mut [
            sync(|| bare_aws_lc_encrypt(fast, black_box(pt))),
            sync(|| {
                let mut iv = [0u8; 12];
                kms_core::crypto::fill_iv(&mut iv);
                iv
            }),
            sync(|| crypto::seal_with_iv(black_box(&key), black_box(&fixed_iv), pt, b"").unwrap()),
            sync(|| crypto::seal(black_box(&key), IvLength::Twelve, black_box(pt), b"").unwrap()),
            on_rt(&rt, || async {
                kms.encrypt(black_box(pt), b"").await.unwrap()
            }),
        ],
    );
    println!("\nwhere a 64 B encryption's time goes (medians, {rounds} rounds)\n");
    println!("| step | median time |");
    println!("|---|---:|");
    for (name, times) in [
        "bare aws-lc-rs (rand IV, allocation, seal)",
        "the IV draw alone (`rand` and the fork check)",
        "`crypto::seal_with_iv`: header, allocation, seal, with a fixed IV",
        "`crypto::seal`: the above with a fresh IV",
        "`Kms::encrypt`: the above through the facade (hot slot, audit check, async)",
    ]
    .into_iter()
    .zip(&mut parts)
    {
        println!("| {name} | {} |", format_ns(median(times)));
    }

    // The same for a 64 B decryption.
    let (iv, sealed) = bare_encrypt(pure, pt);
    let ct = rt.block_on(kms.encrypt(pt, b"")).unwrap();
    let (iv, sealed, ct) = (&iv, sealed.as_slice(), ct.as_slice());
    let mut parts = measure(
        rounds,
        &mut [
            sync(|| bare_aws_lc_decrypt(fast, black_box(iv), black_box(sealed))),
            sync(|| Envelope::parse(black_box(ct)).unwrap().fingerprint()),
            sync(|| {
                Envelope::parse_under(black_box(ct), black_box(&key))
                    .unwrap()
                    .fingerprint()
            }),
            sync(|| {
                let envelope = Envelope::parse_under(black_box(ct), black_box(&key)).unwrap();
                crypto::open(black_box(&key), &envelope, b"").unwrap()
            }),
            on_rt(&rt, || async {
                kms.decrypt(black_box(ct), b"").await.unwrap()
            }),
        ],
    );
    println!("\nwhere a 64 B decryption's time goes (medians, {rounds} rounds)\n");
    println!("| step | median time |");
    println!("|---|---:|");
    for (name, times) in [
        "bare aws-lc-rs (allocation, copy, open)",
        "`Envelope::parse` alone (the general parser, field by field)",
        "`Envelope::parse_under` alone (the header compared with the hot key's)",
        "`Envelope::parse_under` and `crypto::open`: header, allocation, open",
        "`Kms::decrypt`: the above through the facade (hot slot, audit check, async)",
    ]
    .into_iter()
    .zip(&mut parts)
    {
        println!("| {name} | {} |", format_ns(median(times)));
    }
}

/// One table row from the per-round times of [aws-lc-rs, aes-gcm, facade].
fn row(size: &str, op: &str, mut times: Vec<Vec<f64>>) {
    let mut ratio: Vec<f64> = (0..times[0].len())
        .map(|r| times[0][r].min(times[1][r]) / times[2][r])
        .collect();
    let (q1, q2, q3) = (
        quantile(&mut ratio, 0.25),
        quantile(&mut ratio, 0.5),
        quantile(&mut ratio, 0.75),
    );
    let [fast, pure, facade] = [0, 1, 2].map(|i| format_ns(median(&mut times[i])));
    println!("| {size} | {op} | {fast} | {pure} | {facade} | **{q2:.2}** ({q1:.2} to {q3:.2}) |");
}

fn format_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}
