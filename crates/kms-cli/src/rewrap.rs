//! `kms rewrap`: re-encrypt text-form ciphertexts, one per line, under the
//! current key version.

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kms::rewrap::{RewrapOptions, RewrapReport};
use kms::{Error, Kms};

/// Failures listed one by one in the summary; the rest are counted.
const LISTED_FAILURES: usize = 100;

/// Arguments of `kms rewrap`.
#[derive(Debug, clap::Args)]
pub(crate) struct RewrapArgs {
    /// Read ciphertexts from this file (default: standard input).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Write the results to this file (default: standard output). Must not
    /// be the input file.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The associated data every ciphertext was written with (kept).
    #[arg(long, default_value = "")]
    aad: String,
}

fn io_error(what: &str, path: &std::path::Path, e: &std::io::Error) -> Error {
    Error::Provider {
        provider: "cli",
        message: format!("cannot {what} {}: {e}", path.display()),
    }
}

/// A progress bar on standard error when it is a terminal: bytes of the
/// input file, or lines read from standard input.
fn progress_bar(input_len: Option<u64>) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match input_len {
        Some(len) => {
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] [{bar:40}] {bytes}/{total_bytes} {msg} (eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        }
        None => {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        }
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// The summary on standard error: counts, throughput, failed lines.
fn summary(report: &RewrapReport) {
    eprintln!("rewrap: {report}");
    for f in report.failures.iter().take(LISTED_FAILURES) {
        eprintln!("  line {}: {}: {}", f.line, f.code, f.message);
    }
    if report.failures.len() > LISTED_FAILURES {
        eprintln!(
            "  ... and {} more failed lines",
            report.failures.len() - LISTED_FAILURES
        );
    }
}

/// Runs `kms rewrap`. Exit code 0 when every non-empty line was rewrapped,
/// 1 when any line failed (those lines are in the output unchanged).
pub(crate) async fn run(kms: &Kms, args: RewrapArgs) -> Result<ExitCode, Error> {
    if let (Some(i), Some(o)) = (&args.input, &args.output)
        && let (Ok(i), Ok(o)) = (i.canonicalize(), o.canonicalize())
        && i == o
    {
        return Err(Error::config(
            "--output",
            "must not be the input file (write elsewhere, then move it)",
        ));
    }
    let (reader, input_len): (Box<dyn std::io::BufRead>, Option<u64>) = match &args.input {
        Some(path) => {
            let file = File::open(path).map_err(|e| io_error("open", path, &e))?;
            let len = file.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::with_capacity(1 << 16, file)), len)
        }
        None => (Box::new(std::io::stdin().lock()), None),
    };
    let writer: Box<dyn std::io::Write> = match &args.output {
        Some(path) => {
            let file = File::create(path).map_err(|e| io_error("create", path, &e))?;
            Box::new(BufWriter::with_capacity(1 << 16, file))
        }
        None => Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout().lock())),
    };
    let bar = progress_bar(input_len);
    let mut options = RewrapOptions::default();
    if let Some(bar) = &bar {
        let bar = bar.clone();
        let by_bytes = input_len.is_some();
        options.progress = Some(std::sync::Arc::new(move |p| {
            if by_bytes {
                bar.set_position(p.bytes);
            }
            bar.set_message(format!("{} lines, {} failed", p.lines, p.failed));
        }));
    }
    let report = kms
        .rewrap_lines(reader, writer, args.aad.as_bytes(), &options)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let report = report?;
    summary(&report);
    Ok(if report.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rewrites_a_file_and_fails_on_bad_lines() {
        let old = kms::KeyMaterial::generate().to_hex();
        let new = kms::KeyMaterial::generate().to_hex();
        let before = Kms::builder().env_key(old.as_str()).build().await.unwrap();
        let after = Kms::builder()
            .env_key(new.as_str())
            .env_previous_key(old.as_str())
            .build()
            .await
            .unwrap();
        let dir = std::env::temp_dir().join(format!("kms-rewrap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (input, output) = (dir.join("in.txt"), dir.join("out.txt"));
        let good = before.encrypt_str("s", b"a").await.unwrap();
        std::fs::write(&input, format!("{good}\n{good}\n")).unwrap();
        let args = |aad: &str| RewrapArgs {
            input: Some(input.clone()),
            output: Some(output.clone()),
            aad: aad.to_owned(),
        };
        assert_eq!(run(&after, args("a")).await.unwrap(), ExitCode::SUCCESS);
        let out = std::fs::read_to_string(&output).unwrap();
        for line in out.lines() {
            assert_ne!(line, good);
            assert_eq!(after.decrypt_str(line, b"a").await.unwrap(), "s");
        }
        // Wrong AAD: every line fails, is left unchanged, exit code 1.
        assert_eq!(run(&after, args("b")).await.unwrap(), ExitCode::FAILURE);
        assert_eq!(
            std::fs::read_to_string(&output).unwrap(),
            format!("{good}\n{good}\n")
        );
        // The output must not be the input.
        let same = RewrapArgs {
            input: Some(input.clone()),
            output: Some(input.clone()),
            aad: String::new(),
        };
        assert!(run(&after, same).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
