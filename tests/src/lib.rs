//! Test support for the `kms` workspace: the provider conformance suite that
//! every provider must pass, so providers cannot drift apart, and the
//! container harness that runs real servers for the provider tests.
#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod conformance;
pub mod containers;
