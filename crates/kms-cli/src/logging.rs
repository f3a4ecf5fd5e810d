//! `LOG_LEVEL`, `KMS_DEBUG` and `KMS_LOG_FORMAT`: the subscriber the CLI and
//! `kms serve` install. The library only emits `tracing` events; choosing a
//! subscriber is the application's job, so this lives here.

use std::io::IsTerminal;

use kms::{Error, Result};

/// The levels `LOG_LEVEL` accepts.
const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// What the process is, for its default log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    /// `kms serve`: a service, whose audit log and warnings are its record
    /// (default level `info`). Otherwise a one-shot command, which prints
    /// nothing on stderr when it succeeds (default level `error`).
    pub(crate) serve: bool,
    /// `--dev`: the banner already says that the key is a development key,
    /// so the env provider's own warnings (target `kms::env`) are off.
    pub(crate) dev: bool,
}

/// The filter directive for `LOG_LEVEL` (default `info` for `kms serve`,
/// `error` for one-shot commands) and `KMS_DEBUG` (`true`/`1`/`yes` turns
/// on debug events of every `kms` crate, whatever `LOG_LEVEL` says).
///
/// # Errors
/// [`Error::Config`] naming `LOG_LEVEL` or `KMS_DEBUG` for an unknown value.
fn filter_directive(lookup: impl Fn(&str) -> Option<String>, mode: Mode) -> Result<String> {
    let default = if mode.serve { "info" } else { "error" };
    let level = lookup("LOG_LEVEL")
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned());
    if !LEVELS.contains(&level.as_str()) {
        return Err(Error::config(
            "LOG_LEVEL",
            "must be one of error, warn, info, debug, trace, off",
        ));
    }
    let debug = match lookup("KMS_DEBUG").filter(|v| !v.trim().is_empty()) {
        None => false,
        Some(v) => kms::core::settings::parse_bool("KMS_DEBUG", &v)?,
    };
    // Each provider names the log targets of its client libraries to switch off.
    let quiet = kms::vault::QUIET_LOG_TARGETS
        .map(|target| format!("{target}=off"))
        .join(",");
    let mut directive = format!("{level},{quiet}");
    if debug {
        directive.push_str(",kms=debug");
    }
    if mode.dev {
        directive.push_str(",kms::env=off");
    }
    Ok(directive)
}

/// Logs to stderr, filtered by `LOG_LEVEL`/`KMS_DEBUG`; JSON lines when
/// `KMS_LOG_FORMAT=json` (audit events then carry every field as JSON).
///
/// # Errors
/// [`Error::Config`] naming the variable with an unknown value.
pub(crate) fn init(mode: Mode) -> Result<()> {
    let directive = filter_directive(|n| std::env::var(n).ok(), mode)?;
    let filter = tracing_subscriber::EnvFilter::try_new(directive)
        .map_err(|e| Error::config("LOG_LEVEL", e.to_string()))?;
    let json = match std::env::var("KMS_LOG_FORMAT")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        None | Some("" | "text") => false,
        Some("json") => true,
        Some(_) => return Err(Error::config("KMS_LOG_FORMAT", "must be text or json")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
    result.map_err(|e| Error::config("LOG_LEVEL", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVE: Mode = Mode {
        serve: true,
        dev: false,
    };
    const ONE_SHOT: Mode = Mode {
        serve: false,
        dev: false,
    };

    #[test]
    fn directives() {
        let none = |_: &str| None;
        assert_eq!(
            filter_directive(none, SERVE).unwrap(),
            "info,rustify=off,vaultrs=off"
        );
        // One-shot commands are silent on success unless asked.
        assert_eq!(
            filter_directive(none, ONE_SHOT).unwrap(),
            "error,rustify=off,vaultrs=off"
        );
        let dev = Mode {
            serve: false,
            dev: true,
        };
        assert_eq!(
            filter_directive(none, dev).unwrap(),
            "error,rustify=off,vaultrs=off,kms::env=off"
        );
        let l = |n: &str| (n == "LOG_LEVEL").then(|| "WARN".to_owned());
        assert_eq!(
            filter_directive(l, ONE_SHOT).unwrap(),
            "warn,rustify=off,vaultrs=off"
        );
        let d = |n: &str| (n == "KMS_DEBUG").then(|| "true".to_owned());
        assert_eq!(
            filter_directive(d, SERVE).unwrap(),
            "info,rustify=off,vaultrs=off,kms=debug"
        );
        let bad = |n: &str| (n == "KMS_DEBUG").then(|| "maybe".to_owned());
        assert!(
            filter_directive(bad, SERVE)
                .unwrap_err()
                .to_string()
                .contains("KMS_DEBUG")
        );
        let loud = |n: &str| (n == "LOG_LEVEL").then(|| "loud".to_owned());
        assert!(
            filter_directive(loud, ONE_SHOT)
                .unwrap_err()
                .to_string()
                .contains("LOG_LEVEL")
        );
    }
}
