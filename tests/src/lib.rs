//! Test support for the `kms` workspace: the provider conformance suite that
//! every provider must pass, so providers cannot drift apart, and the
//! container harness that runs real servers for the provider tests.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support, not library code (and not `#[cfg(test)]` code to clippy): a failure is a failed test"
)]

pub mod conformance;
pub mod containers;
pub mod fixtures;
