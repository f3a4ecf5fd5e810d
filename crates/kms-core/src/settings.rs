//! Reading settings from environment-style variables, the same way in every
//! crate: durations with units, booleans. Errors name the variable and never
//! repeat its value.

use std::time::Duration;

use crate::error::{Error, Result};

/// What a bare number (no unit) means in a duration setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BareUnit {
    /// Milliseconds, as in the spec's `KMS_TIMEOUT=10000`.
    Millis,
    /// Seconds, as in the Vault CLI's `VAULT_CLIENT_TIMEOUT`.
    Seconds,
}

/// Parses a whole number with an optional unit `ms`, `s`, `m`, `h` or `d`
/// (days of 24 hours); a bare number is in `bare` units.
///
/// # Errors
/// [`Error::Config`] naming `variable`.
pub fn parse_duration(variable: &str, value: &str, bare: BareUnit) -> Result<Duration> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let bad = || {
        let bare = match bare {
            BareUnit::Millis => "milliseconds",
            BareUnit::Seconds => "seconds",
        };
        Error::config(
            variable,
            format!(
                "must be a whole number of {bare}, or a number with one of the units ms, s, m, h, d"
            ),
        )
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms_per_unit: u64 = match (unit.trim(), bare) {
        ("ms", _) | ("", BareUnit::Millis) => 1,
        ("s", _) | ("", BareUnit::Seconds) => 1_000,
        ("m", _) => 60_000,
        ("h", _) => 3_600_000,
        ("d", _) => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(ms_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(bad)
}

/// A setting's value through `lookup`, trimmed; `None` when unset or blank.
pub fn value(lookup: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A secret setting's value through `lookup`, untouched (no copy is made);
/// `None` when unset or blank. Wrap it in a secret type at once.
pub fn secret_value(lookup: impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

/// Parses a boolean: `true`/`false`, `1`/`0`, `t`/`f`, `yes`/`no`, `on`/`off`
/// (any case).
///
/// # Errors
/// [`Error::Config`] naming `variable`.
pub fn parse_bool(variable: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Ok(true),
        "0" | "f" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::config(variable, "must be true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = |v| parse_duration("X", v, BareUnit::Millis);
        let s = |v| parse_duration("X", v, BareUnit::Seconds);
        assert_eq!(ms("250").unwrap(), Duration::from_millis(250));
        assert_eq!(s("30").unwrap(), Duration::from_secs(30));
        assert_eq!(ms("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(s("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(ms("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(ms("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(ms("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(ms("30d").unwrap(), Duration::from_secs(30 * 86_400));
        for bad in ["", "1.5s", "-5", "5 minutes", "99999999999999999999", "10w"] {
            let e = ms(bad).unwrap_err().to_string();
            assert!(e.contains('X'), "{e}");
        }
    }

    #[test]
    fn booleans() {
        for t in ["1", "t", "TRUE", "Yes", "on"] {
            assert!(parse_bool("X", t).unwrap());
        }
        for f in ["0", "F", "false", "no", "OFF"] {
            assert!(!parse_bool("X", f).unwrap());
        }
        assert!(
            parse_bool("X", "maybe")
                .unwrap_err()
                .to_string()
                .contains('X')
        );
    }

    #[test]
    fn values_are_trimmed_and_blank_is_unset() {
        let lookup = |name: &str| match name {
            "SET" => Some("  vault \n".to_owned()),
            "BLANK" => Some(" \t".to_owned()),
            _ => None,
        };
        assert_eq!(value(lookup, "SET").as_deref(), Some("vault"));
        assert_eq!(value(lookup, "BLANK"), None);
        assert_eq!(value(lookup, "UNSET"), None);
        // Secrets are kept as given (a token may end in a space).
        assert_eq!(secret_value(lookup, "SET").as_deref(), Some("  vault \n"));
        assert_eq!(secret_value(lookup, "BLANK"), None);
        assert_eq!(secret_value(lookup, "UNSET"), None);
    }
}
