//! The workspace's integration tests, in one binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

// Each provider's tests build with its feature of this crate (all three by
// default); the tests that cross providers need all three.
#[cfg(feature = "vault")]
mod admin;
#[cfg(feature = "aws")]
mod aws;
mod env;
mod file;
#[cfg(feature = "gcp")]
mod gcp;
#[cfg(feature = "vault")]
mod harness;
#[cfg(all(feature = "vault", feature = "aws", feature = "gcp"))]
mod lifecycle;
#[cfg(feature = "vault")]
mod load;
mod memory;
// Uses the `kms serve` runner of `admin`.
#[cfg(all(feature = "vault", feature = "aws", feature = "gcp"))]
mod migrate;
#[cfg(feature = "vault")]
mod prometheus;
#[cfg(any(feature = "vault", feature = "aws", feature = "gcp"))]
mod scenarios;
#[cfg(feature = "vault")]
mod vault;
