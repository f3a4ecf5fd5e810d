//! Criterion benchmarks for the kms workspace; the code is in `benches/`
//! (`crypto`: the ciphertext format and the facade against bare aes-gcm;
//! `stack`: the provider stack, key cache and circuit breaker against bare
//! aes-gcm, moka and a bare async call) and `examples/paired.rs` (the same
//! comparisons timed interleaved, for noisy machines).
//!
//! Run them with `cargo xtask bench` (which also prints a table of ratios
//! against each group's `bare*` baseline) or `cargo bench -p kms-benches`.
//! Results and how to read them: `docs/PERFORMANCE.md`.

#![expect(
    clippy::unwrap_used,
    reason = "benchmark baselines, not library code: a failure is a bug in the bench"
)]

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::array::Array;
use aes_gcm::aead::consts::{U12, U16};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use rand::Rng;

pub mod interleave;

/// Length of the GCM tag.
pub const TAG_LEN: usize = 16;

/// The baseline every `bare-aes-gcm` row measures: a fresh 12-byte IV from
/// `rand::rng()`, the plaintext copied into a new buffer, aes-gcm's
/// `encrypt_inout_detached`, the tag appended.
pub fn bare_encrypt(cipher: &Aes256Gcm, plaintext: &[u8]) -> ([u8; 12], Vec<u8>) {
    let mut iv = [0u8; 12];
    rand::rng().fill_bytes(&mut iv);
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    let nonce: &Array<u8, U12> = iv.as_slice().try_into().unwrap();
    let tag = cipher
        .encrypt_inout_detached(nonce, b"", buf.as_mut_slice().into())
        .unwrap();
    buf.extend_from_slice(&tag);
    (iv, buf)
}

/// The decrypt baseline: `ciphertext || tag` copied into a new buffer and
/// decrypted with `decrypt_inout_detached`.
pub fn bare_decrypt(cipher: &Aes256Gcm, iv: &[u8; 12], sealed: &[u8]) -> Vec<u8> {
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let nonce: &Array<u8, U12> = iv.as_slice().try_into().unwrap();
    let tag: &Array<u8, U16> = tag.try_into().unwrap();
    let mut buf = ciphertext.to_vec();
    cipher
        .decrypt_inout_detached(nonce, b"", buf.as_mut_slice().into(), tag)
        .unwrap();
    buf
}

/// The aws-lc-rs baseline: as [`bare_encrypt`], with aws-lc-rs's
/// `seal_in_place_separate_tag`.
pub fn bare_aws_lc_encrypt(key: &LessSafeKey, plaintext: &[u8]) -> ([u8; 12], Vec<u8>) {
    let mut iv = [0u8; 12];
    rand::rng().fill_bytes(&mut iv);
    let mut buf = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buf.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut buf)
        .unwrap();
    buf.extend_from_slice(tag.as_ref());
    (iv, buf)
}

/// The aws-lc-rs decrypt baseline: as [`bare_decrypt`], with
/// `open_in_place_separate_tag`.
pub fn bare_aws_lc_decrypt(key: &LessSafeKey, iv: &[u8; 12], sealed: &[u8]) -> Vec<u8> {
    let (ciphertext, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut buf = ciphertext.to_vec();
    key.open_in_place_separate_tag(
        Nonce::assume_unique_for_key(*iv),
        Aad::empty(),
        tag,
        &mut buf,
    )
    .unwrap();
    buf
}

/// An aws-lc-rs AES-256-GCM key.
pub fn aws_lc_key(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).unwrap())
}
