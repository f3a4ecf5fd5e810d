//! `cargo xtask demo`: the development round trip with the `kms` CLI and the
//! env provider (generate a key, encrypt a sample, decrypt it, check
//! health), then the README's main job, `kms serve --dev`: encrypt a sample
//! in development mode, start the server, call its health endpoint with the
//! token it prints, rotate the key through the spec's rotate endpoint, stop
//! it with SIGTERM, and decrypt the sample from before the rotation.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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
    serve_dev(&kms)
}

/// `kms serve --dev` on a free port with a throw-away keyring directory:
/// a sample encrypted first, then the server's health and rotate endpoints
/// called with the token of its banner, SIGTERM (exit code 0 expected), and
/// the sample decrypted after the rotation.
fn serve_dev(kms: &Path) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("kms-xtask-demo-{}", std::process::id()));
    let dev_dir = dir.to_string_lossy().into_owned();
    let result = serve_dev_in(kms, &dev_dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn serve_dev_in(kms: &Path, dev_dir: &str) -> Result<()> {
    let dev = |args: &[&str]| {
        let mut command = Command::new(kms);
        command.args(["--dev", "--dev-dir", dev_dir]).args(args);
        command
    };
    cmd::step(format!(
        "encrypt {PLAINTEXT:?} in development mode: {CLI_BINARY} --dev encrypt"
    ));
    let before = cmd::capture(&mut dev(&["encrypt"]), PLAINTEXT.as_bytes())?;

    cmd::step(format!(
        "the main job: {CLI_BINARY} serve --dev --dev-dir {dev_dir} --bind 127.0.0.1:0"
    ));
    let mut child = dev(&["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::new(format!("could not start `{CLI_BINARY} serve --dev`: {e}")))?;
    let result = health_and_rotate(&mut child);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait();
    result?;
    match status {
        Ok(s) if s.success() => {
            cmd::step("kms serve --dev answered, rotated, and stopped cleanly on SIGTERM");
        }
        Ok(s) => {
            return Err(Error::new(format!(
                "kms serve --dev exited with {s} after SIGTERM"
            )));
        }
        Err(e) => {
            return Err(Error::new(format!(
                "could not wait for kms serve --dev: {e}"
            )));
        }
    }

    cmd::step(format!(
        "decrypt the sample from before the rotation: {CLI_BINARY} --dev decrypt"
    ));
    let decrypted = cmd::capture(&mut dev(&["decrypt"]), &before)?;
    if decrypted != PLAINTEXT.as_bytes() {
        return Err(Error::new(format!(
            "after the rotation, decrypt returned {:?}, expected {PLAINTEXT:?}",
            String::from_utf8_lossy(&decrypted)
        )));
    }
    let metadata = cmd::capture(&mut dev(&["metadata"]), b"")?;
    let current = serde_json::from_slice::<serde_json::Value>(&metadata)
        .ok()
        .and_then(|v| v.pointer("/data/currentVersion").cloned());
    if current != Some(serde_json::Value::from("2")) {
        return Err(Error::new(format!(
            "after one rotation the current version is {current:?}, not \"2\""
        )));
    }
    cmd::step("data from before the rotation decrypts; new data uses version 2");
    Ok(())
}

/// Reads the banner up to its last line, calls the health endpoint, then
/// the rotate endpoint.
fn health_and_rotate(child: &mut std::process::Child) -> Result<()> {
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::new("kms serve --dev has no stdout"))?;
    let mut banner = String::new();
    let mut lines = BufReader::new(stdout).lines();
    while !banner.contains("Stop with Ctrl-C.") {
        match lines.next() {
            Some(Ok(line)) => {
                println!("  | {line}");
                banner.push_str(&line);
                banner.push('\n');
            }
            _ => {
                return Err(Error::new(format!(
                    "kms serve --dev stopped early:\n{banner}"
                )));
            }
        }
    }
    let addr = banner
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| Error::new("no address in the kms serve banner"))?;
    let token = banner
        .split("(shown once): ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| Error::new("no admin token in the kms serve --dev banner"))?;
    let health = request(addr, token, "GET", "/api/admin/kms/health")?;
    println!("GET /api/admin/kms/health: {health}");
    if health.pointer("/data/healthy") != Some(&serde_json::Value::Bool(true)) {
        return Err(Error::new(format!("unhealthy: {health}")));
    }
    let rotated = request(addr, token, "POST", "/api/admin/kms/key/rotate")?;
    println!("POST /api/admin/kms/key/rotate: {rotated}");
    if rotated.pointer("/data/newKeyVersion") != Some(&serde_json::Value::from("2")) {
        return Err(Error::new(format!(
            "the rotation made no version 2: {rotated}"
        )));
    }
    Ok(())
}

/// One HTTP/1.1 request with the bearer token: the JSON body of a 200.
fn request(addr: &str, token: &str, method: &str, path: &str) -> Result<serde_json::Value> {
    let io = |e: std::io::Error| Error::new(format!("cannot call http://{addr}{path}: {e}"));
    let mut stream = TcpStream::connect(addr).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(io)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    match serde_json::from_str(body) {
        Ok(json) if head.starts_with("HTTP/1.1 200") => Ok(json),
        _ => Err(Error::new(format!(
            "unexpected response to {method} {path}:\n{response}"
        ))),
    }
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
