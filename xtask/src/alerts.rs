//! The Prometheus alerting rules of `deploy/prometheus`: Debian's
//! `prometheus` package installed when `promtool` is missing (it ships the
//! server too, which the end-to-end test `tests/integration/prometheus.rs`
//! runs), then `promtool check rules` and `promtool test rules`.

use std::path::Path;
use std::process::Command;

use crate::cmd::{self, Error, Result};
use crate::docker;

/// The rules, from the workspace root.
const RULES: &str = "deploy/prometheus/kms-alerts.yml";

/// Their unit tests, beside them.
const RULE_TESTS: &str = "deploy/prometheus/kms-alerts.test.yml";

/// Installs the `prometheus` package when `promtool` or `prometheus` is
/// missing.
pub(crate) fn ensure_prometheus() -> Result<()> {
    if cmd::which("promtool").is_some() && cmd::which("prometheus").is_some() {
        return Ok(());
    }
    if let Some(why) = docker::cannot_manage_packages() {
        return Err(Error::new(format!(
            "the alerting rules are checked with Prometheus' `promtool`, and the end-to-end \
             test runs the Prometheus server; neither is installed and this task cannot \
             install them ({why}): install Debian's `prometheus` package (or put `promtool` \
             and `prometheus` on PATH) and run again"
        )));
    }
    docker::apt_install(
        "the alerting rules need Prometheus (promtool and the server)",
        &["--no-install-recommends", "prometheus"],
    )?;
    match (cmd::which("promtool"), cmd::which("prometheus")) {
        (Some(_), Some(_)) => Ok(()),
        _ => Err(Error::new(
            "`apt-get install prometheus` succeeded but `promtool` or `prometheus` is not on PATH",
        )),
    }
}

/// `promtool check rules` and `promtool test rules` on the shipped files.
pub(crate) fn check_rules(root: &Path) -> Result<()> {
    let mut check = Command::new("promtool");
    check.current_dir(root).args(["check", "rules", RULES]);
    cmd::run("check the alerting rules", &mut check)?;
    let mut test = Command::new("promtool");
    test.current_dir(root).args(["test", "rules", RULE_TESTS]);
    cmd::run("unit-test the alerting rules", &mut test)
}
