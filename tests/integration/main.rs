//! The workspace's integration tests, in one binary.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod aws;
mod env;
mod gcp;
mod harness;
mod memory;
mod scenarios;
mod vault;
