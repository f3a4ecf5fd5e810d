//! Criterion benchmarks for the kms workspace; the code is in `benches/`
//! (`crypto`: the ciphertext format and the facade against bare aes-gcm;
//! `stack`: the provider stack, key cache and circuit breaker against bare
//! aes-gcm, moka and a bare async call) and `examples/paired.rs` (the same
//! comparisons timed interleaved, for noisy machines).
//!
//! Run them with `cargo xtask bench` (which also prints a table of ratios
//! against each group's `bare*` baseline) or `cargo bench -p kms-benches`.
//! Results and how to read them: `docs/PERFORMANCE.md`.
