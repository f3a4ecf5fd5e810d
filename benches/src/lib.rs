//! Criterion benchmarks for the kms workspace; the code is in `benches/`.
//!
//! Run them with `cargo xtask bench` (which also prints a table of ratios
//! against the bare aes-gcm baseline) or `cargo bench -p kms-benches`.
//! Results and how to read them: `docs/PERFORMANCE.md`.
