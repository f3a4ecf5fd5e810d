//! `kms migrate`: copy every version of a key from one provider to another.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kms::migrate::{self, MigrateError, MigrationPlan};
use kms::{Error, KeyId, KeyProvider, KmsBuilder, ProviderKind};
use zeroize::Zeroizing;

/// More versions to copy than this get a progress bar (on a terminal).
const PROGRESS_MIN: usize = 5;

/// The long help of `kms migrate` (`kms migrate --help`).
const HELP: &str = "\
Source and target are each configured with the usual variables
(KMS_PROVIDER, KMS_KEY_ID, ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS,
VAULT_ADDR, VAULT_TOKEN, AWS_REGION, AWS_ACCESS_KEY_ID, KMS_AWS_KMS_KEY_ID,
GOOGLE_CLOUD_PROJECT, KMS_GCP_ENDPOINT, ...), given one of two ways:

PREFIX (letters, digits and '_' only, e.g. SRC_): the variables are read
from the environment with that prefix: SRC_KMS_PROVIDER, SRC_VAULT_ADDR, ...

FILE (a value containing '/' or ending in '.env', e.g. ./source.env): a
dotenv-style file of KEY=VALUE lines; blank lines and '#' comments are
skipped, an `export ` before the name and quotes around the value are
removed. The file is the whole configuration: nothing else is read from
the environment. Values are never printed.

KMS_PROVIDER must be set for both. The SDKs' own credential look-ups
(AWS profiles and instance roles, GOOGLE_APPLICATION_CREDENTIALS) still
read the process environment, unprefixed.

Dry run by default: prints each source version (oldest first) with its
creation time, fingerprint and action (copy, present, skipped), never key
bytes. With --apply the versions to copy are written to the target, oldest
first, so the target's newest version is the source's current key; every
existing ciphertext then decrypts through the target unchanged. Running it
again copies nothing. A target that already holds a different key under
the key id is refused.

An env target cannot store keys: the command names the variables to set
(ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS) and prints their values only
with --reveal-env-keys.";

/// Arguments of `kms migrate`: see [`HELP`].
#[derive(Debug, clap::Args)]
#[command(after_long_help = HELP)]
pub(crate) struct MigrateArgs {
    /// Source configuration: a variable prefix (SRC_) or a .env file.
    #[arg(long, value_name = "PREFIX_OR_FILE")]
    from: String,
    /// Target configuration: a variable prefix (DST_) or a .env file.
    #[arg(long, value_name = "PREFIX_OR_FILE")]
    to: String,
    /// The key to copy (default: the source's KMS_KEY_ID, else "default").
    #[arg(long, value_name = "ID")]
    key_id: Option<String>,
    /// Write to the target (default: a dry run that writes nothing).
    #[arg(long)]
    apply: bool,
    /// Env target only: print ENCRYPTION_KEY and ENCRYPTION_KEY_PREVIOUS
    /// with their values (key bytes) on standard output.
    #[arg(long)]
    reveal_env_keys: bool,
}

/// Where a side's variables come from.
enum Source {
    Prefix(String),
    File(HashMap<String, Zeroizing<String>>),
}

impl Source {
    /// Parses `--from`/`--to`: a file path (contains `/` or ends in `.env`)
    /// or a prefix of variable-name characters.
    fn parse(flag: &str, value: &str) -> Result<Self, Error> {
        if value.contains('/') || value.ends_with(".env") {
            let text = Zeroizing::new(std::fs::read_to_string(Path::new(value)).map_err(|e| {
                Error::config(
                    flag,
                    format!("cannot read the configuration file {value}: {e}"),
                )
            })?);
            return kms::dotenv::parse(&text)
                .map(Source::File)
                .map_err(|e| Error::config(flag, format!("{value}: {e}")));
        }
        if !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Ok(Source::Prefix(value.to_owned()));
        }
        Err(Error::config(
            flag,
            format!(
                "{value:?} is neither a variable prefix (letters, digits and '_', e.g. SRC_) \
                 nor a configuration file (a path containing '/' or ending in '.env')"
            ),
        ))
    }

    fn lookup(&self, name: &str) -> Option<String> {
        match self {
            Source::Prefix(prefix) => std::env::var(format!("{prefix}{name}")).ok(),
            Source::File(vars) => vars.get(name).map(|v| v.as_str().to_owned()),
        }
    }

    /// How the user wrote variable `name` for this side (for messages).
    fn spelled(&self, name: &str) -> String {
        match self {
            Source::Prefix(prefix) => format!("{prefix}{name}"),
            Source::File(_) => name.to_owned(),
        }
    }
}

/// One side, configured: its provider kind and builder.
struct Side {
    kind: ProviderKind,
    builder: KmsBuilder,
}

fn configure(flag: &str, value: &str) -> Result<Side, Error> {
    let source = Source::parse(flag, value)?;
    let variable = source.spelled("KMS_PROVIDER");
    let kind: ProviderKind = source
        .lookup("KMS_PROVIDER")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| {
            Error::config(
                &variable,
                format!("not set: say which provider {flag} is (env, aws, gcp or vault)"),
            )
        })?
        .trim()
        .parse()
        .map_err(|e: Error| Error::config(&variable, e.to_string()))?;
    let builder = KmsBuilder::from_lookup(|name| source.lookup(name))?;
    Ok(Side { kind, builder })
}

/// Runs `kms migrate`.
pub(crate) async fn run(args: MigrateArgs) -> Result<ExitCode, Error> {
    let source = configure("--from", &args.from)?;
    let target = configure("--to", &args.to)?;
    let key_id = match &args.key_id {
        Some(id) => KeyId::new(id)
            .map_err(|_| Error::config("--key-id", "a key id is 1 to 128 of A-Z a-z 0-9 _ -"))?,
        None => source.builder.config().key_id,
    };
    if args.reveal_env_keys && target.kind != ProviderKind::Env {
        return Err(Error::config(
            "--reveal-env-keys",
            "only for an env target (KMS_PROVIDER=env)",
        ));
    }
    let from = source.builder.key_id(key_id.clone()).build().await?;
    let from = from.provider().clone();

    if target.kind == ProviderKind::Env {
        let plan = match migrate::plan_to_empty(from.as_ref(), "env", &key_id).await {
            Ok(plan) => plan,
            Err(e) => return Ok(failed(&e)),
        };
        print_plan(&plan, false)?;
        return env_target(&plan, args.reveal_env_keys);
    }
    let to = target.builder.key_id(key_id.clone()).build().await?;
    // Below the key cache: the plan and the read-back after writing see
    // what the target stores, not the cache's copies.
    let to = to.uncached_provider();
    let plan = match migrate::plan(from.as_ref(), to.as_ref(), &key_id).await {
        Ok(plan) => plan,
        Err(e) => return Ok(failed(&e)),
    };
    print_plan(&plan, args.apply)?;
    apply(&plan, &to, args.apply).await
}

/// Prints a [`MigrateError`] with its causes; exit code 1.
fn failed(e: &MigrateError) -> ExitCode {
    crate::report(e);
    ExitCode::FAILURE
}

fn print_plan(plan: &MigrationPlan, apply: bool) -> Result<(), Error> {
    let mut out = format!(
        "key {}: {} -> {} ({})\n",
        plan.key_id(),
        plan.source(),
        plan.target(),
        if apply { "apply" } else { "dry run" }
    );
    out.push_str(&format!(
        "{:<20} {:<20} {:<16} ACTION\n",
        "VERSION", "CREATED", "FINGERPRINT"
    ));
    for v in plan.versions() {
        let created = v.created_at.map_or_else(
            || "-".to_owned(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
        let fingerprint = v
            .fingerprint
            .map_or_else(|| "-".to_owned(), |f| f.to_string());
        out.push_str(&format!(
            "{:<20} {created:<20} {fingerprint:<16} {}\n",
            v.version.as_str(),
            v.action
        ));
    }
    out.push_str(&format!(
        "plan: copy {}, already present {}, skipped {}\n",
        plan.to_copy(),
        plan.present(),
        plan.skipped()
    ));
    crate::write_stdout(out.as_bytes())
}

async fn apply(
    plan: &MigrationPlan,
    target: &Arc<dyn KeyProvider>,
    apply: bool,
) -> Result<ExitCode, Error> {
    if !apply {
        let next = if plan.is_done() {
            "dry run: nothing written; nothing to copy, the target is up to date\n"
        } else {
            "dry run: nothing written; rerun with --apply\n"
        };
        crate::write_stdout(next.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let bar = progress_bar(plan.to_copy());
    let result = plan
        .apply(target.as_ref(), |v| {
            if let Some(bar) = &bar {
                bar.set_message(format!("version {}", v.version));
                bar.inc(1);
            }
        })
        .await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(report) => {
            crate::write_stdout(
                format!(
                    "copied {}, already present {}, skipped {}\n",
                    report.copied, report.present, report.skipped
                )
                .as_bytes(),
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(failed(&e)),
    }
}

fn progress_bar(total: usize) -> Option<ProgressBar> {
    if total <= PROGRESS_MIN || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    Some(bar)
}

/// An env target: names the variables; values only with --reveal-env-keys.
fn env_target(plan: &MigrationPlan, reveal: bool) -> Result<ExitCode, Error> {
    let vars = plan.env_variables();
    if reveal {
        eprintln!(
            "warning: printing key material on standard output: keep it out of logs, \
             shell history and terminals others can see"
        );
        crate::write_stdout(vars.reveal().as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::from(
        "the env provider cannot store keys: nothing written; set these variables \
         in the target's environment:\n  ENCRYPTION_KEY (the current key)\n",
    );
    if vars.previous_count() > 0 {
        text.push_str(&format!(
            "  ENCRYPTION_KEY_PREVIOUS ({} older keys, comma separated, newest first)\n",
            vars.previous_count()
        ));
    }
    text.push_str("rerun with --reveal-env-keys to print their values (key bytes)\n");
    crate::write_stdout(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_or_file() {
        assert!(matches!(
            Source::parse("--from", "SRC_").unwrap(),
            Source::Prefix(p) if p == "SRC_"
        ));
        let e = Source::parse("--from", "./missing-dir/none.env")
            .err()
            .unwrap();
        assert!(e.to_string().contains("cannot read"), "{e}");
        let e = Source::parse("--to", "not a prefix").err().unwrap();
        assert!(e.to_string().contains("neither a variable prefix"), "{e}");
        assert!(Source::parse("--to", "").is_err());
    }
}
