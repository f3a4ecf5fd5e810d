//! The workspace's integration tests, in one binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

mod admin;
mod aws;
mod env;
mod gcp;
mod harness;
mod lifecycle;
mod load;
mod memory;
mod migrate;
mod scenarios;
mod vault;
