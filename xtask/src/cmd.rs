//! Running commands: progress lines, failure messages, cargo and the workspace.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// What a failed task reports: one message for a human.
#[derive(Debug)]
pub(crate) struct Error(String);

pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Prints a progress line.
pub(crate) fn step(message: impl fmt::Display) {
    eprintln!("==> {message}");
}

/// The workspace root (the parent of this crate's directory). `cargo run`
/// (the `cargo xtask` alias) tells the running binary where its manifest
/// is; the path compiled in is only a fallback, since a target directory
/// shared by two checkouts may hold a binary built from the other one.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// A `cargo` command that runs in the workspace root, using the same cargo
/// that runs this xtask.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Shows a command the way one would type it: `cargo test --workspace`.
pub(crate) fn display(command: &Command) -> String {
    let mut words = Vec::new();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            words.push(format!(
                "{}={}",
                key.to_string_lossy(),
                quote(&value.to_string_lossy())
            ));
        }
    }
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or_else(|| command.get_program());
    words.push(program.to_string_lossy().into_owned());
    words.extend(command.get_args().map(|arg| quote(&arg.to_string_lossy())));
    words.join(" ")
}

fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c))
    {
        word.to_owned()
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Runs `command` with inherited stdio after printing `==> what: command`,
/// and fails unless it exits successfully.
pub(crate) fn run(what: &str, command: &mut Command) -> Result<()> {
    let shown = display(command);
    step(format!("{what}: {shown}"));
    let status = command
        .status()
        .map_err(|e| Error::new(format!("could not start `{shown}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::new(format!(
            "{what} failed: `{shown}` exited with {status}"
        )))
    }
}

/// Runs `command` like [`run`], then prints how long it took.
pub(crate) fn run_timed(what: &str, command: &mut Command) -> Result<()> {
    let started = Instant::now();
    run(what, command)?;
    step(format!("{what}: done in {}", took(started)));
    Ok(())
}

/// Seconds since `started`, for progress lines: `12.3 s`.
pub(crate) fn took(started: Instant) -> String {
    format!("{:.1} s", started.elapsed().as_secs_f64())
}

/// Runs `command` with no output and tells whether it exited successfully
/// (`false` too when it cannot be started).
pub(crate) fn succeeds(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Runs `command` and returns its stdout, or its stderr as the error (or why
/// it could not be started). Nothing is printed.
pub(crate) fn output_of(command: &mut Command) -> std::result::Result<String, String> {
    let shown = display(command);
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start `{shown}`: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// The path of `program` on `PATH` (root's `sbin` directories are searched
/// too, since `dockerd` lives there and a user's `PATH` may lack them).
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// Runs `command`, feeding it `stdin`, and returns what it printed on stdout.
/// Its stderr goes to ours. Fails unless it exits successfully.
pub(crate) fn capture(command: &mut Command, stdin: &[u8]) -> Result<Vec<u8>> {
    let shown = display(command);
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::new(format!("could not start `{shown}`: {e}")))?;
    // Write stdin from another thread so that a child which prints before it
    // has read all of its input cannot deadlock with us.
    let mut child_stdin = child.stdin.take();
    let output = std::thread::scope(|scope| {
        let writer = scope.spawn(move || match child_stdin.as_mut() {
            Some(pipe) => pipe.write_all(stdin),
            None => Ok(()),
        });
        let output = child.wait_with_output();
        // A child that exits without reading its input breaks the pipe; its
        // exit status is what tells whether it failed.
        let _ = writer.join();
        output
    })
    .map_err(|e| Error::new(format!("could not run `{shown}`: {e}")))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(Error::new(format!(
            "`{shown}` exited with {}",
            output.status
        )))
    }
}

/// The target directory cargo builds into, from
/// `cargo metadata --format-version 1 --no-deps` (which honours
/// `CARGO_TARGET_DIR` and `build.target-dir`).
pub(crate) fn target_dir() -> Result<PathBuf> {
    let mut command = cargo();
    command.args(["metadata", "--format-version", "1", "--no-deps"]);
    let shown = display(&command);
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| Error::new(format!("could not start `{shown}`: {e}")))?;
    if !output.status.success() {
        return Err(Error::new(format!(
            "`{shown}` exited with {}",
            output.status
        )));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| Error::new(format!("`{shown}` printed invalid JSON: {e}")))?;
    metadata
        .get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .ok_or_else(|| Error::new(format!("`{shown}` printed no `target_directory`")))
}

/// Whether the environment variable `name` is set to `1`.
pub(crate) fn env_flag(name: &str) -> bool {
    std::env::var_os(name).as_deref() == Some(OsStr::new("1"))
}

/// Installs the crate `package` (`cargo install --locked`) when `cargo
/// <subcommand> --version` does not answer.
pub(crate) fn ensure_cargo_tool(subcommand: &str, package: &str) -> Result<()> {
    if succeeds(cargo().args([subcommand, "--version"])) {
        return Ok(());
    }
    let mut install = cargo();
    install.args(["install", package, "--locked"]);
    run(
        &format!("{package} is not installed; install it"),
        &mut install,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_shows_env_program_name_and_quoted_args() {
        let mut command = Command::new("/usr/local/bin/cargo");
        command
            .env("RUSTDOCFLAGS", "-D warnings")
            .args(["doc", "--workspace", "a b"]);
        assert_eq!(
            display(&command),
            "RUSTDOCFLAGS=\"-D warnings\" cargo doc --workspace \"a b\""
        );
    }

    #[test]
    fn run_reports_the_failing_command() {
        let mut command = Command::new("false");
        let error = run("a step", &mut command).err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("a step failed: `false` exited with exit status: 1")
        );
    }

    #[test]
    fn which_finds_programs_on_the_path() {
        assert!(which("sh").is_some());
        assert!(which("no-such-program-kms-xtask").is_none());
    }

    #[test]
    fn output_of_returns_stdout_or_stderr() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo out; echo err >&2"]);
        assert_eq!(output_of(&mut ok).as_deref(), Ok("out\n"));
        let mut failing = Command::new("sh");
        failing.args(["-c", "echo out; echo ' err ' >&2; exit 3"]);
        assert_eq!(output_of(&mut failing), Err("err".to_owned()));
    }

    #[test]
    fn capture_feeds_stdin_and_returns_stdout() {
        let mut command = Command::new("cat");
        assert_eq!(
            capture(&mut command, b"round trip\n").ok().as_deref(),
            Some(&b"round trip\n"[..])
        );
    }
}
