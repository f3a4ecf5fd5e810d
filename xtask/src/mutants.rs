//! `cargo xtask mutants [SCOPE...] [-- <cargo-mutants args>]`: mutation
//! testing of the crates whose logic guards the data and the admin API.
//!
//! Installs `cargo-mutants` when missing and runs it once per scope (the
//! settings are in `.cargo/mutants.toml`: Debug and Display impls are out of
//! scope). Each mutant is a small change of the code (`>` to `>=`, a body
//! replaced by a default); the scope's tests must fail on it ("caught"). A
//! mutant the tests miss must be listed, with the reason it cannot change
//! behaviour, in `.cargo/mutants-equivalent.txt`; any other missed mutant
//! fails the task. Prints the score per scope.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmd::{self, Error, Result};

/// A crate, or part of one, that the task mutates.
pub(crate) struct Scope {
    /// The name given on the command line and used for the output directory.
    pub(crate) name: &'static str,
    /// The package whose tests must catch the mutants.
    package: &'static str,
    /// The files mutated (all of the package when empty).
    files: &'static [&'static str],
}

/// Every scope, in the order the task runs them.
pub(crate) const SCOPES: [Scope; 4] = [
    Scope {
        name: "kms-core",
        package: "kms-core",
        files: &[],
    },
    Scope {
        name: "kms-cache",
        package: "kms-cache",
        files: &[],
    },
    Scope {
        name: "kms-circuit",
        package: "kms-circuit",
        files: &[],
    },
    Scope {
        name: "kms-admin",
        package: "kms-admin",
        files: &[
            "crates/kms-admin/src/auth.rs",
            "crates/kms-admin/src/limit.rs",
        ],
    },
];

/// The mutants listed as equivalent, with their reasons.
const EQUIVALENT: &str = ".cargo/mutants-equivalent.txt";

/// What one scope's run found.
#[derive(Debug, Default)]
struct Outcome {
    caught: usize,
    timeout: usize,
    unviable: usize,
    /// Missed and listed as equivalent.
    equivalent: usize,
    /// Missed and not listed: each fails the task.
    missed: Vec<String>,
}

pub(crate) fn run(scopes: &[String], cargo_mutants_args: &[std::ffi::OsString]) -> Result<()> {
    let selected: Vec<&Scope> = if scopes.is_empty() {
        SCOPES.iter().collect()
    } else {
        scopes
            .iter()
            .map(|name| {
                SCOPES.iter().find(|s| s.name == name).ok_or_else(|| {
                    let names: Vec<&str> = SCOPES.iter().map(|s| s.name).collect();
                    Error::new(format!(
                        "unknown mutants scope `{name}` (scopes: {})",
                        names.join(", ")
                    ))
                })
            })
            .collect::<Result<_>>()?
    };
    cmd::ensure_cargo_tool("mutants", "cargo-mutants")?;
    let root = cmd::workspace_root();
    let equivalent = read_equivalent(&root.join(EQUIVALENT))?;
    let started = Instant::now();
    let mut results = Vec::new();
    for scope in selected {
        let out = root.join("mutants.out").join(scope.name);
        std::fs::create_dir_all(&out)
            .map_err(|e| Error::new(format!("create {}: {e}", out.display())))?;
        let mut command = cargo_mutants(scope, &out);
        command.args(cargo_mutants_args);
        cmd::step(format!(
            "mutants of {}: {}",
            scope.name,
            cmd::display(&command)
        ));
        let status = command
            .status()
            .map_err(|e| Error::new(format!("start cargo mutants: {e}")))?;
        // 0: all caught, 2: some missed, 3: some timed out (caught). Anything
        // else (the unmutated tests failed, a usage error) is a failure.
        if !matches!(status.code(), Some(0 | 2 | 3)) {
            return Err(Error::new(format!(
                "cargo mutants for {} failed ({status}); its logs: {}",
                scope.name,
                out.join("mutants.out").display()
            )));
        }
        results.push((scope.name, outcome(&out.join("mutants.out"), &equivalent)?));
    }

    println!("| scope | caught | timeout | unviable | missed, equivalent | missed | score |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut failures = Vec::new();
    for (name, o) in &results {
        let killed = o.caught + o.timeout;
        let judged = killed + o.missed.len();
        let score = if judged == 0 {
            100.0
        } else {
            #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
            let s = 100.0 * killed as f64 / judged as f64;
            s
        };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {score:.1}% |",
            o.caught,
            o.timeout,
            o.unviable,
            o.equivalent,
            o.missed.len()
        );
        failures.extend(o.missed.iter().cloned());
    }
    cmd::step(format!("mutants: done in {}", cmd::took(started)));
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{} mutants missed by the tests and not listed in {EQUIVALENT}:\n{}",
            failures.len(),
            failures.join("\n")
        )))
    }
}

/// `cargo mutants` for one scope, writing to `out/mutants.out`.
fn cargo_mutants(scope: &Scope, out: &Path) -> Command {
    let mut command = cmd::cargo();
    command
        .args([
            "mutants",
            "--package",
            scope.package,
            "--jobs",
            "2",
            "--output",
        ])
        .arg(out);
    for file in scope.files {
        command.args(["--file", file]);
    }
    // Each job builds its own copy of the tree: with a shared target
    // directory the two jobs would wait for each other's lock.
    command.env_remove("CARGO_TARGET_DIR");
    command
}

/// A mutant's name without its line and column, so that the list of
/// equivalents survives edits above it: `path: description`.
fn without_position(line: &str) -> String {
    let mut parts = line.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(path), Some(l), Some(c), Some(rest))
            if l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{path}:{rest}")
        }
        _ => line.to_owned(),
    }
}

/// The equivalent mutants' names (lines that are not blank or `#` comments).
fn read_equivalent(path: &Path) -> Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("read {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(without_position)
        .collect())
}

/// Counts a run's outcomes from cargo-mutants' `caught.txt`, `missed.txt`,
/// `timeout.txt` and `unviable.txt`.
fn outcome(dir: &Path, equivalent: &BTreeSet<String>) -> Result<Outcome> {
    let lines = |file: &str| -> Result<Vec<String>> {
        let path: PathBuf = dir.join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::new(format!("read {}: {e}", path.display()))),
        }
    };
    let mut o = Outcome {
        caught: lines("caught.txt")?.len(),
        timeout: lines("timeout.txt")?.len(),
        unviable: lines("unviable.txt")?.len(),
        ..Outcome::default()
    };
    for missed in lines("missed.txt")? {
        if equivalent.contains(&without_position(&missed)) {
            o.equivalent += 1;
        } else {
            o.missed.push(missed);
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_compared_without_line_and_column() {
        assert_eq!(
            without_position(
                "crates/kms-core/src/format.rs:139:25: replace > with >= in Envelope::parse"
            ),
            "crates/kms-core/src/format.rs: replace > with >= in Envelope::parse"
        );
        // A description holding colons keeps them.
        assert_eq!(
            without_position("a.rs:1:2: replace <impl X for Y>::f -> Result<()> with Ok(())"),
            "a.rs: replace <impl X for Y>::f -> Result<()> with Ok(())"
        );
        assert_eq!(without_position("no position"), "no position");
    }

    #[test]
    fn listed_missed_mutants_count_as_equivalent_and_others_fail() {
        let dir = std::env::temp_dir().join(format!("xtask-mutants-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |f: &str, t: &str| {
            std::fs::write(dir.join(f), t).unwrap();
        };
        write("caught.txt", "a.rs:1:1: one\na.rs:2:1: two\n");
        write("missed.txt", "a.rs:9:3: listed\na.rs:10:3: not listed\n");
        write("unviable.txt", "a.rs:3:1: three\n");
        let equivalent: BTreeSet<String> = ["a.rs: listed".to_owned()].into();
        let o = outcome(&dir, &equivalent).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            (o.caught, o.timeout, o.unviable, o.equivalent),
            (2, 0, 1, 1)
        );
        assert_eq!(o.missed, ["a.rs:10:3: not listed"]);
    }
}
