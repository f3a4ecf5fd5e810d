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

/// One setting, declared once by the crate that owns it (each provider
/// crate's `SETTINGS`, the facade's `kms::config::SETTINGS`): its
/// environment variable, its names in the admin API's configuration
/// document, whether it is a secret or an endpoint, and its default. The
/// admin document, its redaction and the README tables are checked against
/// these declarations, so a setting is added in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Setting {
    /// The environment variable.
    pub variable: &'static str,
    /// Its names in the configuration document, the first the one shown
    /// (`credentials.x` is `x` inside `"credentials": {...}`); empty when a
    /// document may not set it (a path on the server, a TLS switch).
    pub fields: &'static [&'static str],
    /// A secret: accepted, never shown, logged or echoed.
    pub secret: bool,
    /// Addresses the provider's server: a document that changes it must
    /// bring its own credentials.
    pub endpoint: bool,
    /// The default, as text, when there is one.
    pub default: Option<&'static str>,
}

impl Setting {
    /// A plain setting with no document name and no default.
    #[must_use]
    pub const fn new(variable: &'static str) -> Self {
        Setting {
            variable,
            fields: &[],
            secret: false,
            endpoint: false,
            default: None,
        }
    }

    /// Its names in the configuration document.
    #[must_use]
    pub const fn fields(mut self, fields: &'static [&'static str]) -> Self {
        self.fields = fields;
        self
    }

    /// Marks it secret.
    #[must_use]
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    /// Marks it as the provider's endpoint.
    #[must_use]
    pub const fn endpoint(mut self) -> Self {
        self.endpoint = true;
        self
    }

    /// Its default, as text.
    #[must_use]
    pub const fn default(mut self, default: &'static str) -> Self {
        self.default = Some(default);
        self
    }
}

/// The variables named in the first column of the Markdown table of
/// `markdown` whose header row starts with `| variable |`: each backticked
/// word in upper case. For tests that keep a README's table and a crate's
/// [`Setting`] declarations the same.
#[must_use]
pub fn variables_in_table(markdown: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let mut in_table = false;
    for line in markdown.lines() {
        let line = line.trim();
        if line.starts_with("| variable |") {
            in_table = true;
            continue;
        }
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        if !in_table {
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or_default();
        for (i, word) in first.split('`').enumerate() {
            let is_variable = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if i % 2 == 1 && is_variable {
                found.insert(word.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_read_from_the_variable_table_only() {
        let md = "| field | meaning |\n| --- | --- |\n| `key` | `NOT_THIS` |\n\n\
                  | variable | meaning |\n| --- | --- |\n| `A_B`, `C2` | x `D` |\n| `lower` | y |\n\ntext `E`\n";
        let found: Vec<String> = variables_in_table(md).into_iter().collect();
        assert_eq!(found, ["A_B", "C2"]);
    }

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
