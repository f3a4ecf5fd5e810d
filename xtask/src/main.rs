//! Project automation for the kms workspace, run as `cargo xtask <task>`
//! (the alias lives in `.cargo/config.toml`).
//!
//! Every task prints what it is doing as `==> ...` lines on stderr and exits
//! non-zero with an `error: ...` message as soon as a step fails. If
//! `cargo xtask ci` passes locally, CI is green.

mod alerts;
mod bench;
mod ci;
mod cmd;
mod demo;
mod docker;
mod fuzz;
mod images;
mod mutants;
mod test;

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitCode;

use cmd::{Error, Result};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test [-- <cargo test args>]    run the whole test suite (one `cargo test` invocation),
                                 after starting Docker (installing it as root on Debian),
                                 building the missing images of tests/images.env, and
                                 checking and unit-testing the Prometheus alerting rules
                                 with promtool (Debian's prometheus, installed if missing);
                                 without cargo args, then kms-core and kms without aws-lc-rs
                                 (pure-Rust AES-GCM) and a 30 s smoke of every fuzz target
  ci                             fmt, clippy, rustdoc and cargo-deny checks, then `test`
  bench [--out FILE] [-- <criterion args>]
                                 run the criterion benchmarks and print a markdown summary
                                 table (also written to FILE with --out)
  demo                           build the `kms` CLI, run the generate-key / encrypt /
                                 decrypt round trip with the env provider, then start
                                 `kms serve --dev`, call its health endpoint, rotate the
                                 key, stop it, and decrypt data from before the rotation
  fuzz [--seconds N] [TARGET...]  fuzz the parsers with AFL++ (cargo-afl, installed if missing),
                                 N seconds per target (default 30), two at a time; fails on
                                 any crash or hang (targets: ciphertext, decrypt, admin, env_key,
                                 dotenv)
  mutants [SCOPE...] [-- <cargo-mutants args>]
                                 mutation testing (cargo-mutants, installed if missing) of
                                 kms-core, kms-cache, kms-circuit and kms-admin's auth and
                                 limit modules; fails on a missed mutant not listed with its
                                 reason in .cargo/mutants-equivalent.txt; prints the scores
  help                           print this message

environment:
  KMS_TEST_OPENBAO_IMAGE=IMAGE   run the container tests against this image instead of the
                                 one tests/images.env pins (pulled if missing, never built)
  KMS_TEST_LOCALSTACK_IMAGE=IMAGE
                                 the same for the LocalStack image (AWS KMS and SSM)
  KMS_CHECK_ADVISORIES=1         make `ci` also run `cargo deny check advisories`
                                 (needs network access to the RustSec advisory database)";

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A parsed command line.
#[derive(Debug, PartialEq)]
enum Task {
    Test {
        cargo_args: Vec<OsString>,
    },
    Ci,
    Bench {
        out: Option<PathBuf>,
        criterion_args: Vec<OsString>,
    },
    Demo,
    Fuzz {
        seconds: u64,
        targets: Vec<String>,
    },
    Mutants {
        scopes: Vec<String>,
        cargo_mutants_args: Vec<OsString>,
    },
    Help,
}

fn run(args: Vec<OsString>) -> Result<()> {
    match parse(args)? {
        Task::Test { cargo_args } => test::run(&cargo_args),
        Task::Ci => ci::run(),
        Task::Bench {
            out,
            criterion_args,
        } => bench::run(out.as_deref(), &criterion_args),
        Task::Demo => demo::run(),
        Task::Fuzz { seconds, targets } => fuzz::run(seconds, &targets),
        Task::Mutants {
            scopes,
            cargo_mutants_args,
        } => mutants::run(&scopes, &cargo_mutants_args),
        Task::Help => {
            println!("{USAGE}");
            Ok(())
        }
    }
}

fn parse(args: Vec<OsString>) -> Result<Task> {
    let mut args = args.into_iter();
    let Some(task) = args.next() else {
        return Err(Error::new(format!("no task given\n\n{USAGE}")));
    };
    // Options of the task come before `--`; everything after it is passed through.
    let mut own = Vec::new();
    let mut passthrough = Vec::new();
    let mut seen_separator = false;
    for arg in args {
        if seen_separator {
            passthrough.push(arg);
        } else if arg == "--" {
            seen_separator = true;
        } else {
            own.push(arg);
        }
    }

    match task.to_str() {
        Some("test") => {
            reject_options("test", &own)?;
            Ok(Task::Test {
                cargo_args: passthrough,
            })
        }
        Some("ci") => {
            reject_options("ci", &own)?;
            reject_options("ci", &passthrough)?;
            Ok(Task::Ci)
        }
        Some("bench") => {
            let mut out = None;
            let mut own = own.into_iter();
            while let Some(arg) = own.next() {
                if arg == "--out" {
                    let file = own
                        .next()
                        .ok_or_else(|| Error::new("`--out` needs a file name"))?;
                    out = Some(PathBuf::from(file));
                } else if let Some(file) = arg.to_str().and_then(|a| a.strip_prefix("--out=")) {
                    out = Some(PathBuf::from(file));
                } else {
                    return Err(unexpected("bench", &arg));
                }
            }
            Ok(Task::Bench {
                out,
                criterion_args: passthrough,
            })
        }
        Some("fuzz") => {
            reject_options("fuzz", &passthrough)?;
            let mut seconds = fuzz::DEFAULT_SECONDS;
            let mut targets = Vec::new();
            let mut own = own.into_iter();
            while let Some(arg) = own.next() {
                if arg == "--seconds" {
                    let n = own
                        .next()
                        .ok_or_else(|| Error::new("`--seconds` needs a number"))?;
                    seconds = n
                        .to_str()
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| Error::new("`--seconds` needs a whole number"))?;
                } else if let Some(name) = arg.to_str().filter(|a| !a.starts_with('-')) {
                    targets.push(name.to_owned());
                } else {
                    return Err(unexpected("fuzz", &arg));
                }
            }
            Ok(Task::Fuzz { seconds, targets })
        }
        Some("mutants") => {
            let scopes = own
                .into_iter()
                .map(|arg| match arg.to_str() {
                    Some(name) if !name.starts_with('-') => Ok(name.to_owned()),
                    _ => Err(unexpected("mutants", &arg)),
                })
                .collect::<Result<_>>()?;
            Ok(Task::Mutants {
                scopes,
                cargo_mutants_args: passthrough,
            })
        }
        Some("demo") => {
            reject_options("demo", &own)?;
            reject_options("demo", &passthrough)?;
            Ok(Task::Demo)
        }
        Some("help" | "--help" | "-h") => Ok(Task::Help),
        _ => Err(Error::new(format!(
            "unknown task `{}`\n\n{USAGE}",
            task.to_string_lossy()
        ))),
    }
}

fn reject_options(task: &str, args: &[OsString]) -> Result<()> {
    match args.first() {
        Some(arg) => Err(unexpected(task, arg)),
        None => Ok(()),
    }
}

fn unexpected(task: &str, arg: &OsStr) -> Error {
    Error::new(format!(
        "unexpected argument `{}` for `cargo xtask {task}` (see `cargo xtask help`)",
        arg.to_string_lossy()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn test_passes_everything_after_the_separator_to_cargo() {
        assert_eq!(
            parse(args(&["test", "--", "-p", "kms-core", "--", "--nocapture"])).unwrap(),
            Task::Test {
                cargo_args: args(&["-p", "kms-core", "--", "--nocapture"])
            }
        );
        assert_eq!(
            parse(args(&["test"])).unwrap(),
            Task::Test { cargo_args: vec![] }
        );
    }

    #[test]
    fn bench_takes_an_output_file_and_criterion_args() {
        assert_eq!(
            parse(args(&["bench", "--out", "t.md", "--", "encrypt"])).unwrap(),
            Task::Bench {
                out: Some(PathBuf::from("t.md")),
                criterion_args: args(&["encrypt"]),
            }
        );
        assert_eq!(
            parse(args(&["bench", "--out=t.md"])).unwrap(),
            Task::Bench {
                out: Some(PathBuf::from("t.md")),
                criterion_args: vec![],
            }
        );
        assert!(parse(args(&["bench", "--out"])).is_err());
    }

    #[test]
    fn unknown_tasks_and_stray_arguments_are_errors() {
        assert!(parse(args(&[])).is_err());
        assert!(parse(args(&["deploy"])).is_err());
        assert!(parse(args(&["test", "--release"])).is_err());
        assert!(parse(args(&["ci", "--", "x"])).is_err());
        assert!(parse(args(&["demo", "x"])).is_err());
        assert_eq!(parse(args(&["ci"])).unwrap(), Task::Ci);
        assert_eq!(parse(args(&["demo"])).unwrap(), Task::Demo);
    }
}
