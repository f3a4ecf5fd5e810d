//! `kms migrate`'s dotenv reader (`--from FILE`, `--to FILE`).
//!
//! Beyond not panicking: every name it returns is a variable name, writing
//! the variables back as `NAME="value"` lines reads back the same variables,
//! and an error names a line that exists.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let text = String::from_utf8_lossy(data);
        match kms::dotenv::parse(&text) {
            Ok(vars) => {
                let mut written = String::new();
                for (name, value) in &vars {
                    assert!(
                        name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                            && !name.starts_with(|c: char| c.is_ascii_digit())
                            && !name.is_empty(),
                        "not a variable name: {name:?}"
                    );
                    assert!(!value.contains('\n'), "a value spans lines");
                    written.push_str(&format!("{name}=\"{}\"\n", value.as_str()));
                }
                let again = kms::dotenv::parse(&written).expect("written variables read back");
                assert_eq!(again.len(), vars.len());
                for (name, value) in &vars {
                    assert_eq!(again[name].as_str(), value.as_str(), "{name}");
                }
            }
            Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count(), "{e}"),
        }
    });
}
