//! The dotenv reader of `kms migrate --from FILE` / `--to FILE`: one side's
//! configuration variables from a file, without touching the process
//! environment.
//!
//! The format is the common subset of dotenv files: one `NAME=VALUE` per
//! line, blank lines and lines starting with `#` ignored, an optional
//! `export ` prefix, whitespace around the name and the value trimmed, and
//! one pair of matching quotes (`"…"` or `'…'`) around the value removed.
//! There is no variable expansion and no escape processing: a value is taken
//! as written, so a file cannot pull in the process environment.
//!
//! Values are secrets (tokens, keys); they are held in [`Zeroizing`] strings
//! and an error names the line number and what is wrong, never the text of
//! the line.

use std::collections::HashMap;
use std::fmt;

use zeroize::Zeroizing;

/// A line that is not a `NAME=VALUE` assignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DotenvError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub kind: DotenvErrorKind,
}

/// What is wrong with a line of a dotenv file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DotenvErrorKind {
    /// No `=` on the line.
    MissingEquals,
    /// The text before `=` is not a variable name (ASCII letters, digits and
    /// `_`, not starting with a digit).
    InvalidName,
}

impl fmt::Display for DotenvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the line's text: a key pasted on a line of its own, or as
        // the "name" of a line such as `<base64 key>==`, would be shown.
        match self.kind {
            DotenvErrorKind::MissingEquals => write!(f, "line {}: expected NAME=VALUE", self.line),
            DotenvErrorKind::InvalidName => write!(
                f,
                "line {}: the text before '=' is not a variable name \
                 (ASCII letters, digits and '_', not starting with a digit)",
                self.line
            ),
        }
    }
}

impl std::error::Error for DotenvError {}

/// The variables of a dotenv file, by name; a name given twice keeps its last
/// value.
///
/// # Errors
/// [`DotenvError`] for the first line that is not a comment, blank, or a
/// `NAME=VALUE` assignment.
pub fn parse(text: &str) -> Result<HashMap<String, Zeroizing<String>>, DotenvError> {
    let mut vars = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let error = |kind| DotenvError { line: n + 1, kind };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line
            .split_once('=')
            .ok_or(error(DotenvErrorKind::MissingEquals))?;
        let name = name.trim();
        if !is_variable_name(name) {
            return Err(error(DotenvErrorKind::InvalidName));
        }
        vars.insert(
            name.to_owned(),
            Zeroizing::new(unquote(value.trim()).to_owned()),
        );
    }
    Ok(vars)
}

/// ASCII letters, digits and `_`, not empty and not starting with a digit.
fn is_variable_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `value` without one pair of matching surrounding quotes.
fn unquote(value: &str) -> &str {
    ['"', '\'']
        .iter()
        .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_comments_quotes_and_export() {
        let vars = parse(
            "# source\n\nKMS_PROVIDER=vault\nexport VAULT_ADDR = \"http://127.0.0.1:8200\"\n\
             VAULT_TOKEN='root'\nEMPTY=\nPASS=a=b#c\n_X1=\" padded \"\nHALF=\"open\r\n\
             ONE=\"\nDUP=first\nDUP=last",
        )
        .unwrap();
        let get = |name: &str| vars[name].as_str();
        assert_eq!(get("KMS_PROVIDER"), "vault");
        assert_eq!(get("VAULT_ADDR"), "http://127.0.0.1:8200");
        assert_eq!(get("VAULT_TOKEN"), "root");
        assert_eq!(get("EMPTY"), "");
        assert_eq!(get("PASS"), "a=b#c");
        assert_eq!(get("_X1"), " padded ");
        assert_eq!(get("HALF"), "\"open");
        assert_eq!(get("ONE"), "\"");
        assert_eq!(get("DUP"), "last");
        assert_eq!(vars.len(), 9);
    }

    #[test]
    fn errors_name_the_line_never_its_text() {
        let e = parse("A=1\nENCRYPTION_KEY 0123abcd\n").unwrap_err();
        assert_eq!(
            e,
            DotenvError {
                line: 2,
                kind: DotenvErrorKind::MissingEquals
            }
        );
        assert_eq!(e.to_string(), "line 2: expected NAME=VALUE");
        // A base64 key on a line of its own splits at its padding: the "name"
        // is key text and is not shown.
        let key = "q83v+jRW/JCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
        let e = parse(&format!("# keys\n{key}=\n")).unwrap_err();
        assert_eq!(
            e,
            DotenvError {
                line: 2,
                kind: DotenvErrorKind::InvalidName
            }
        );
        assert!(!e.to_string().contains("q83v"), "{e}");
        for bad in ["1A=x", "=x", "A B=x", "A-B=x", "É=x", "export =x"] {
            assert_eq!(
                parse(bad).unwrap_err().kind,
                DotenvErrorKind::InvalidName,
                "{bad:?}"
            );
        }
    }
}
