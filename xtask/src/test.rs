//! `cargo xtask test`: the whole test suite.

use std::ffi::OsString;
use std::process::Command;
use std::time::Instant;

use crate::cmd::{self, Result};
use crate::{alerts, docker, fuzz, images};

/// Runs the whole test suite.
///
/// Anything the tests need from outside cargo is prepared here, before the
/// single `cargo test` invocation, so that `cargo xtask test` stays the one
/// command that a fresh machine and CI run: a Docker engine (installed and
/// started if need be), the container images pinned in `tests/images.env`
/// (built if missing, reused otherwise), and Prometheus (Debian's package,
/// installed if missing), whose `promtool` checks and unit-tests the
/// alerting rules before the suite runs.
///
/// The whole suite (no cargo arguments) then tests `kms-core` and the facade
/// again without the `aws-lc-aes-gcm` feature (the pure-Rust backend), and
/// ends with a fuzz smoke: every fuzz target for its default time,
/// [`fuzz::DEFAULT_SECONDS`] (see `cargo xtask fuzz`). A run narrowed by
/// cargo arguments (`cargo xtask test -- -p kms-core`) skips both.
pub(crate) fn run(cargo_args: &[OsString]) -> Result<()> {
    docker::ensure_docker()?;
    images::ensure_images()?;
    alerts::ensure_prometheus()?;
    alerts::check_rules(&cmd::workspace_root())?;
    let started = Instant::now();
    cmd::run("run the test suite", &mut cargo_test(cargo_args))?;
    cmd::step(format!("test suite passed in {}", cmd::took(started)));
    if cargo_args.is_empty() {
        let started = Instant::now();
        cmd::run(
            "test the pure-Rust AES-GCM backend (kms-core and the facade without aws-lc-rs)",
            &mut cargo_test_pure_rust(),
        )?;
        cmd::step(format!(
            "pure-Rust backend passed in {}",
            cmd::took(started)
        ));
        fuzz::run(fuzz::DEFAULT_SECONDS, &[])?;
    }
    Ok(())
}

/// One `cargo test` over every workspace member (the `default-members` leave
/// out the test-support `kms-gcp-emulator`, whose own tests run here, the
/// benches and this crate) and every feature, so the workspace is built once.
fn cargo_test(cargo_args: &[OsString]) -> Command {
    let mut command = cmd::cargo();
    command
        // The Docker engine was started above: a container test that finds
        // none fails instead of skipping (tests/src/containers.rs).
        .env("KMS_REQUIRE_DOCKER", "1")
        // Prometheus was installed above: the end-to-end alerting test
        // fails instead of skipping (tests/integration/prometheus.rs).
        .env("KMS_REQUIRE_PROMETHEUS", "1")
        .args(["test", "--workspace", "--all-features"])
        .args(cargo_args);
    command
}

/// `kms-core` and `kms` with default features off: the env provider and
/// the pure-Rust aes-gcm backend (see `kms-core/src/aead.rs`).
fn cargo_test_pure_rust() -> Command {
    let mut command = cmd::cargo();
    command.args([
        "test",
        "--package",
        "kms-core",
        "--package",
        "kms",
        "--no-default-features",
        "--features",
        "kms/env",
    ]);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_arguments_go_after_the_fixed_ones() {
        let command = cargo_test(&["--".into(), "--nocapture".into()]);
        let shown = cmd::display(&command);
        assert!(
            shown.ends_with("cargo test --workspace --all-features -- --nocapture"),
            "{shown}"
        );
    }
}
