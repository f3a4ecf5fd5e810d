//! `cargo xtask fuzz [--seconds N] [TARGET...]`: coverage-guided fuzzing of
//! the parsers with AFL++ (afl.rs, which works on stable Rust).
//!
//! Installs `cargo-afl` when missing, builds `fuzz/` (its own workspace, so
//! the instrumentation never reaches the main builds), runs each target for
//! N seconds from its seed corpus in `fuzz/seeds/<target>` (two at a time:
//! the machine has two cores), resuming the corpus kept in
//! `fuzz/out/<target>`, and prints executions, crashes and hangs per target.
//! It fails when any target saved a crash or a hang.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Instant;

use crate::cmd::{self, Error, Result};

/// Every fuzz target (`fuzz/src/bin/<name>.rs`).
pub(crate) const TARGETS: [&str; 5] = ["ciphertext", "decrypt", "admin", "env_key", "dotenv"];

/// Default time per target.
pub(crate) const DEFAULT_SECONDS: u64 = 30;

/// What one target did, from AFL++'s `fuzzer_stats`.
#[derive(Debug, Default)]
struct Stats {
    execs: u64,
    per_sec: f64,
    crashes: u64,
    hangs: u64,
    corpus: u64,
}

pub(crate) fn run(seconds: u64, targets: &[String]) -> Result<()> {
    let targets: Vec<String> = if targets.is_empty() {
        TARGETS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        targets.to_vec()
    };
    for t in &targets {
        if !TARGETS.contains(&t.as_str()) {
            return Err(Error::new(format!(
                "unknown fuzz target `{t}` (targets: {})",
                TARGETS.join(", ")
            )));
        }
    }
    cmd::ensure_cargo_tool("afl", "cargo-afl")?;
    let fuzz = cmd::workspace_root().join("fuzz");
    let target_dir = target_dir(&fuzz);
    let mut build = cmd::cargo();
    build
        .current_dir(&fuzz)
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["afl", "build", "--release"]);
    cmd::run("build the fuzz targets", &mut build)?;

    let started = Instant::now();
    let mut results = Vec::new();
    for pair in targets.chunks(2) {
        let mut children = Vec::new();
        for t in pair {
            match spawn(&fuzz, &target_dir, t, seconds) {
                Ok(child) => children.push((t.clone(), child)),
                Err(e) => {
                    // Do not leave the pair's other fuzzer running.
                    for (_, mut child) in children {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    return Err(e);
                }
            }
        }
        // Wait for both before judging either.
        let mut failed = Vec::new();
        for (t, mut child) in children {
            match child.wait() {
                Ok(status) if status.success() => {
                    results.push((t.clone(), stats(&fuzz.join("out").join(&t))?));
                }
                Ok(status) => failed.push(format!(
                    "afl-fuzz {t} failed ({status}); its log: {}",
                    log_path(&fuzz, &t).display()
                )),
                Err(e) => failed.push(format!("afl-fuzz {t}: {e}")),
            }
        }
        if !failed.is_empty() {
            return Err(Error::new(failed.join("\n")));
        }
    }

    // AFL++ counts executions over every run that resumed the kept corpus.
    println!(
        "| target | executions (all runs on fuzz/out) | per second (last) | corpus | crashes | hangs |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let (mut total, mut bad) = (0, Vec::new());
    for (t, s) in &results {
        println!(
            "| {t} | {} | {:.0} | {} | {} | {} |",
            s.execs, s.per_sec, s.corpus, s.crashes, s.hangs
        );
        total += s.execs;
        if s.crashes > 0 || s.hangs > 0 {
            bad.push(format!(
                "{t}: {} crashes, {} hangs in fuzz/out/{t}/default/",
                s.crashes, s.hangs
            ));
        }
    }
    println!("| total | {total} | | | | |");
    cmd::step(format!(
        "fuzzing: {total} executions in {} ({seconds} s per target)",
        cmd::took(started)
    ));
    if bad.is_empty() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "the fuzzers found failures:\n{}",
            bad.join("\n")
        )))
    }
}

/// Where the instrumented builds go: beside the main builds when
/// `CARGO_TARGET_DIR` is set (so a fresh clone in CI reuses them), in a
/// directory of their own (`afl/`) that the main builds never read; else
/// `fuzz/target`.
fn target_dir(fuzz: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("afl"),
        _ => fuzz.join("target"),
    }
}

fn log_path(fuzz: &Path, target: &str) -> PathBuf {
    fuzz.join("out").join(format!("{target}.log"))
}

/// `cargo afl fuzz` of one target for `seconds`, resuming its corpus.
fn spawn(fuzz: &Path, target_dir: &Path, target: &str, seconds: u64) -> Result<Child> {
    let out = fuzz.join("out");
    std::fs::create_dir_all(&out)
        .map_err(|e| Error::new(format!("create {}: {e}", out.display())))?;
    let log = std::fs::File::create(log_path(fuzz, target))
        .map_err(|e| Error::new(format!("create the log of {target}: {e}")))?;
    let log2 = log
        .try_clone()
        .map_err(|e| Error::new(format!("the log of {target}: {e}")))?;
    let mut command = cmd::cargo();
    command
        .current_dir(fuzz)
        .args(["afl", "fuzz", "-i"])
        .arg(Path::new("seeds").join(target))
        .arg("-o")
        .arg(out.join(target))
        .args(["-V", &seconds.to_string(), "-t", "2000", "--"])
        .arg(target_dir.join("release").join(target))
        // No terminal UI; resume the kept corpus; containers have no
        // core-dump handler or CPU frequency scaling to check; do not bind
        // to a core (it fails when other work holds both).
        .env("AFL_NO_UI", "1")
        .env("AFL_NO_AFFINITY", "1")
        .env("AFL_AUTORESUME", "1")
        .env("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1")
        .env("AFL_SKIP_CPUFREQ", "1")
        .stdout(log)
        .stderr(log2);
    cmd::step(format!("fuzz {target} for {seconds} s"));
    command
        .spawn()
        .map_err(|e| Error::new(format!("start afl-fuzz for {target}: {e}")))
}

/// Reads `fuzzer_stats` of a target's output.
fn stats(out: &Path) -> Result<Stats> {
    let path = out.join("default").join("fuzzer_stats");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::new(format!("read {}: {e}", path.display())))?;
    let mut s = Stats::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "execs_done" => s.execs = v.parse().unwrap_or(0),
            "execs_per_sec" => s.per_sec = v.parse().unwrap_or(0.0),
            "saved_crashes" => s.crashes = v.parse().unwrap_or(0),
            "saved_hangs" => s.hangs = v.parse().unwrap_or(0),
            "corpus_count" => s.corpus = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(s)
}
