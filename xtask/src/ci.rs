//! `cargo xtask ci`: everything CI checks. If this passes locally, CI is green.

use crate::cmd::{self, Result};
use crate::test;

/// Set to `1` to also check the RustSec advisory database, which needs network
/// access that these machines do not have.
const CHECK_ADVISORIES: &str = "KMS_CHECK_ADVISORIES";

pub(crate) fn run() -> Result<()> {
    check_formatting()?;
    lint()?;
    check_docs()?;
    check_dependencies()?;
    test::run(&[])?;
    cmd::step("ci: all checks passed");
    Ok(())
}

fn check_formatting() -> Result<()> {
    let mut command = cmd::cargo();
    command.args(["fmt", "--all", "--", "--check"]);
    cmd::run("check formatting", &mut command)
}

fn lint() -> Result<()> {
    let mut command = cmd::cargo();
    command.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]);
    cmd::run("lint", &mut command)
}

fn check_docs() -> Result<()> {
    let mut flags = std::env::var_os("RUSTDOCFLAGS").unwrap_or_default();
    if !flags.is_empty() {
        flags.push(" ");
    }
    flags.push("-D warnings");
    let mut command = cmd::cargo();
    command
        .env("RUSTDOCFLAGS", flags)
        .args(["doc", "--workspace", "--no-deps", "--all-features"]);
    cmd::run("build the docs without warnings", &mut command)
}

/// Licenses, banned crates and sources, per `deny.toml`.
fn check_dependencies() -> Result<()> {
    cmd::ensure_cargo_tool("deny", "cargo-deny")?;
    let mut command = cmd::cargo();
    command.args(["deny", "check", "licenses", "bans", "sources"]);
    cmd::run("check dependencies", &mut command)?;

    if cmd::env_flag(CHECK_ADVISORIES) {
        let mut command = cmd::cargo();
        command.args(["deny", "check", "advisories"]);
        cmd::run("check security advisories", &mut command)
    } else {
        cmd::step(format!(
            "note: security advisories are not checked: the RustSec advisory database \
             cannot be fetched on these machines (set {CHECK_ADVISORIES}=1 where it can)"
        ));
        Ok(())
    }
}
