//! `cargo xtask demo`: the development round trip with the `kms` CLI and the
//! env provider: generate a key, encrypt a sample, decrypt it, check health.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cmd::{self, Error, Result};

const CLI_PACKAGE: &str = "kms-cli";
const CLI_BINARY: &str = "kms";
const PLAINTEXT: &str = "Hello from kms: an API token to protect";

pub(crate) fn run() -> Result<()> {
    let kms = build_cli()?;

    cmd::step(format!("generate a key: {CLI_BINARY} generate-key"));
    let key = output_line(cmd::capture(Command::new(&kms).arg("generate-key"), b"")?)?;
    if key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::new(format!(
            "`{CLI_BINARY} generate-key` printed {} characters, not a 64-digit hex key",
            key.chars().count()
        )));
    }
    cmd::step(
        "got a 256-bit key (64 hex digits); using it as ENCRYPTION_KEY with KMS_PROVIDER=env",
    );
    let with_key = |args: &[&str]| {
        let mut command = Command::new(&kms);
        command
            .args(args)
            .env("KMS_PROVIDER", "env")
            .env("ENCRYPTION_KEY", &key);
        command
    };

    cmd::step(format!("encrypt {PLAINTEXT:?}: {CLI_BINARY} encrypt"));
    // What encrypt prints (with its newline) is fed to decrypt as is, like a
    // shell pipe `kms encrypt | kms decrypt` would.
    let ciphertext = cmd::capture(&mut with_key(&["encrypt"]), PLAINTEXT.as_bytes())?;
    println!("ciphertext: {}", output_line(ciphertext.clone())?);

    cmd::step(format!("decrypt: {CLI_BINARY} decrypt"));
    let decrypted = cmd::capture(&mut with_key(&["decrypt"]), &ciphertext)?;
    println!("plaintext:  {}", String::from_utf8_lossy(&decrypted));
    if decrypted != PLAINTEXT.as_bytes() {
        return Err(Error::new(format!(
            "round trip failed: decrypt returned {:?}, expected {PLAINTEXT:?}",
            String::from_utf8_lossy(&decrypted)
        )));
    }
    cmd::step("round trip OK: the decrypted text equals the input");

    cmd::step(format!("check health: {CLI_BINARY} health"));
    let health = cmd::capture(&mut with_key(&["health"]), b"")?;
    println!("health: {}", String::from_utf8_lossy(&health).trim_end());
    Ok(())
}

/// Builds the CLI and returns the path of its binary.
fn build_cli() -> Result<PathBuf> {
    let mut command = cmd::cargo();
    command.args(["build", "-q", "-p", CLI_PACKAGE]);
    cmd::run("build the CLI", &mut command)?;
    let binary = cli_binary(&cmd::target_dir()?);
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(Error::new(format!(
            "built {CLI_PACKAGE} but found no binary at {}",
            binary.display()
        )))
    }
}

fn cli_binary(target_dir: &Path) -> PathBuf {
    target_dir
        .join("debug")
        .join(format!("{CLI_BINARY}{}", std::env::consts::EXE_SUFFIX))
}

/// A command's output as one line of UTF-8 text, without its line ending.
fn output_line(stdout: Vec<u8>) -> Result<String> {
    let text = String::from_utf8(stdout)
        .map_err(|_| Error::new("the CLI printed something that is not UTF-8 text"))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_line_strips_the_line_ending_only() {
        assert_eq!(
            output_line(b" ab12\r\n".to_vec()).ok().as_deref(),
            Some(" ab12")
        );
        assert!(output_line(vec![0xff, b'\n']).is_err());
    }

    #[test]
    fn the_cli_binary_lives_in_the_debug_directory() {
        assert_eq!(
            cli_binary(Path::new("/t")),
            PathBuf::from(format!("/t/debug/kms{}", std::env::consts::EXE_SUFFIX))
        );
    }
}
