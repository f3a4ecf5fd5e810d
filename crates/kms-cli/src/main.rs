#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kms::{Error, KeyMaterial, Kms};
use serde::Serialize;

mod dev;
mod logging;
mod migrate;
mod rewrap;
mod serve;

/// Envelope encryption under keys from a key management service.
///
/// Configured by environment variables: KMS_PROVIDER (env|aws|gcp|vault),
/// KMS_KEY_ID (default "default"), KMS_TIMEOUT (ms), KMS_RETRY_ATTEMPTS,
/// KMS_CACHE_TTL, KMS_IV_LENGTH (12|16), LOG_LEVEL, KMS_DEBUG, and the
/// provider's own variables (ENCRYPTION_KEY and ENCRYPTION_KEY_PREVIOUS for env).
#[derive(Debug, Parser)]
#[command(name = "kms", version, about, long_about)]
struct Cli {
    /// Development mode: the local keyring provider with its keyring in
    /// `.kms-dev/keyring.json` (mode 0600, created on first use), so keys
    /// rotate and data encrypted in one run decrypts in the next. No cloud
    /// account needed. A `.kms-dev/key` of earlier versions becomes version 1.
    #[arg(long, global = true)]
    dev: bool,
    /// Directory of the development keyring (with --dev).
    #[arg(long, global = true, value_name = "DIR", default_value = dev::DEFAULT_DIR)]
    dev_dir: std::path::PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a new random 256-bit key as 64 hex characters.
    GenerateKey,
    /// Encrypt standard input; print the text-form ciphertext (kms:v1:...).
    Encrypt {
        /// Associated data bound to the ciphertext (e.g. "users:42"); decryption needs the same.
        #[arg(long, default_value = "")]
        aad: String,
    },
    /// Decrypt a text-form ciphertext from standard input; write the plaintext bytes.
    Decrypt {
        /// The associated data given at encryption.
        #[arg(long, default_value = "")]
        aad: String,
    },
    /// Check the provider; print the spec's health response as JSON (exit 1 if unhealthy).
    Health,
    /// Print the configured key's metadata as JSON.
    Metadata,
    /// Create a new version of the configured key and print it.
    Rotate,
    /// Re-encrypt text-form ciphertexts (one per line) under the current key
    /// version, keeping the order and the AAD. A line that fails is written
    /// back unchanged and listed (line number, error) on stderr; exit code 1
    /// if any line failed. Progress bar and throughput on stderr.
    Rewrap(rewrap::RewrapArgs),
    /// Serve the admin HTTP API (health, metadata, rotation, configuration)
    /// and Prometheus /metrics. Needs KMS_ADMIN_TOKEN (or KMS_ADMIN_JWT_*),
    /// except with --dev, which generates a token and prints it once.
    Serve(serve::ServeArgs),
    /// Copy every version of a key from one provider to another (dry run
    /// unless --apply). Source and target: a variable prefix or a .env file.
    Migrate(migrate::MigrateArgs),
}

/// The spec's response envelope: `{"success":true,"data":...}`.
#[derive(Serialize)]
struct Response<'a, T: Serialize> {
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    data: T,
}

fn print_json<T: Serialize>(message: Option<&str>, data: T) -> Result<(), Error> {
    let body = Response {
        success: true,
        message,
        data,
    };
    let text = serde_json::to_string_pretty(&body)
        .map_err(|e| Error::provider("cli", format!("cannot encode JSON: {e}")))?;
    write_stdout(format!("{text}\n").as_bytes())
}

fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| io_error("stdout", &e))
}

fn read_stdin() -> Result<Vec<u8>, Error> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .map_err(|e| io_error("stdin", &e))?;
    Ok(buf)
}

fn io_error(stream: &str, e: &std::io::Error) -> Error {
    Error::provider("cli", format!("cannot use {stream}: {e}"))
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    if let Command::GenerateKey = cli.command {
        let key = KeyMaterial::generate();
        let mut line = key.to_hex();
        line.push('\n');
        write_stdout(line.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let dev = match cli.dev {
        true => {
            // The key id every command serves (`KMS_KEY_ID`), as the facade reads it.
            let env = |name: &str| std::env::var(name).ok();
            let key_id = kms::KmsBuilder::from_lookup(env)?.config().key_id;
            Some(dev::DevKeyring::load_or_create(&cli.dev_dir, &key_id).await?)
        }
        false => None,
    };
    if let Command::Migrate(args) = cli.command {
        return migrate::run(args).await;
    }
    if let Command::Serve(args) = cli.command {
        return serve::run(args, dev).await;
    }
    let kms = match &dev {
        Some(dev) => dev.builder()?.build().await?,
        None => Kms::from_env().await?,
    };
    match cli.command {
        Command::GenerateKey | Command::Serve(_) | Command::Migrate(_) => {}
        Command::Encrypt { aad } => {
            let plaintext = read_stdin()?;
            let text = kms.encrypt_text(&plaintext, aad.as_bytes()).await?;
            write_stdout(format!("{text}\n").as_bytes())?;
        }
        Command::Decrypt { aad } => {
            let input = read_stdin()?;
            let input = std::str::from_utf8(&input)
                .map_err(|_| Error::malformed("not a kms ciphertext (input is not text)"))?;
            let plaintext = kms.decrypt_text(input, aad.as_bytes()).await?;
            write_stdout(&plaintext)?;
        }
        Command::Health => {
            let health = kms_admin::HealthReport::of(&kms).await;
            let healthy = health.status.healthy;
            print_json(None, health)?;
            if !healthy {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Metadata => print_json(None, kms.metadata().await?)?,
        Command::Rewrap(args) => return rewrap::run(&kms, args).await,
        Command::Rotate => {
            let version = kms.rotate().await?;
            print_json(
                Some("Encryption key rotated successfully"),
                serde_json::json!({ "newKeyVersion": version }),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an error and its causes on stderr.
pub(crate) fn report(err: &dyn std::error::Error) {
    let mut text = format!("Error: {err}");
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        text.push_str(&format!("\n  caused by: {s}"));
        source = s.source();
    }
    eprintln!("{text}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mode = logging::Mode {
        serve: matches!(cli.command, Command::Serve(_)),
        dev: cli.dev,
    };
    if let Err(e) = logging::init(mode) {
        report(&e);
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}
