//! `LOG_LEVEL` and `KMS_DEBUG`: the filter the CLI and `kms serve` install.
//!
//! The library itself only emits [`tracing`] events; installing a subscriber
//! is the application's choice. This helper turns the spec's two variables
//! into a `tracing_subscriber::EnvFilter` directive.

use kms_core::{Error, Result};

/// The levels `LOG_LEVEL` accepts.
pub const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];

/// The filter directive for `LOG_LEVEL` (default `info`) and `KMS_DEBUG`
/// (`true`/`1`/`yes` turns on debug events of every `kms` crate, whatever
/// `LOG_LEVEL` says).
///
/// # Errors
/// [`Error::Config`] naming `LOG_LEVEL` or `KMS_DEBUG` for an unknown value.
pub fn filter_directive(lookup: impl Fn(&str) -> Option<String>) -> Result<String> {
    let level = lookup("LOG_LEVEL")
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "info".to_owned());
    if !LEVELS.contains(&level.as_str()) {
        return Err(Error::config(
            "LOG_LEVEL",
            "must be one of error, warn, info, debug, trace, off",
        ));
    }
    let debug = match lookup("KMS_DEBUG").filter(|v| !v.trim().is_empty()) {
        None => false,
        Some(v) => kms_core::settings::parse_bool("KMS_DEBUG", &v)?,
    };
    // vaultrs and rustify log failed HTTP calls (and, at trace level, request
    // details) on their own; the provider maps and reports those errors
    // itself, so their events are switched off to keep logs free of noise
    // and of anything a server put in a response body.
    let quiet = "rustify=off,vaultrs=off";
    Ok(if debug {
        format!("{level},{quiet},kms=debug")
    } else {
        format!("{level},{quiet}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives() {
        let none = |_: &str| None;
        assert_eq!(
            filter_directive(none).unwrap(),
            "info,rustify=off,vaultrs=off"
        );
        let l = |n: &str| (n == "LOG_LEVEL").then(|| "WARN".to_owned());
        assert_eq!(filter_directive(l).unwrap(), "warn,rustify=off,vaultrs=off");
        let d = |n: &str| (n == "KMS_DEBUG").then(|| "true".to_owned());
        assert_eq!(
            filter_directive(d).unwrap(),
            "info,rustify=off,vaultrs=off,kms=debug"
        );
        let bad = |n: &str| (n == "KMS_DEBUG").then(|| "maybe".to_owned());
        assert!(
            filter_directive(bad)
                .unwrap_err()
                .to_string()
                .contains("KMS_DEBUG")
        );
    }
}
