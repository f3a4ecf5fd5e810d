//! The Docker engine that the container tests run on.
//!
//! If `docker info` answers, that engine is used as it is. Otherwise, as root
//! on Debian, Debian's engine is installed (`apt-get install docker.io`) when
//! `dockerd` is missing and started in the background, in a session of its
//! own so that it outlives this task and cargo's process group, with no bridge
//! network and no iptables rules: the containers use the host's network and
//! listen on 127.0.0.1 only. Anywhere else the task fails and says what to
//! install.
//!
//! The `docker` CLI may be newer than the engine (here: a version 28 client in
//! /usr/local/bin and Debian 12's 20.10 engine, API 1.41). The client
//! negotiates the API version down by itself, so `DOCKER_API_VERSION` is not
//! needed.

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{self, Error, Result};

/// Where the engine started here writes its log (appended to).
const DOCKERD_LOG: &str = "/var/tmp/kms-dockerd.log";

/// No default bridge, no iptables, no forwarding or masquerading: nothing
/// routes off the machine, and containers run with `--network host`.
const DOCKERD_ARGS: [&str; 4] = [
    "--bridge=none",
    "--iptables=false",
    "--ip-forward=false",
    "--ip-masq=false",
];

/// The pid file `dockerd` writes by default.
const DOCKERD_PID_FILE: &str = "/var/run/docker.pid";

/// How long a freshly started engine may take to answer `docker info`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes sure a Docker engine answers `docker info`, installing and starting
/// one where this task can (root on Debian).
pub(crate) fn ensure_docker() -> Result<()> {
    let started = Instant::now();
    cmd::step("check for a Docker engine: docker info");
    let reason = match docker_info() {
        Ok(()) => {
            report_versions();
            return Ok(());
        }
        Err(reason) => reason,
    };
    cmd::step(format!("no Docker engine answers: {reason}"));

    if let Some(missing) = cannot_manage_packages() {
        return Err(Error::new(format!(
            "Docker is not available: {reason}\n\
             The container tests need a Docker engine. `cargo xtask test` installs and starts \
             one only as root on Debian, and {missing}.\n\
             Install Docker Engine (Debian/Ubuntu: `apt-get install docker.io`; elsewhere see \
             https://docs.docker.com/engine/install/), start it (`systemctl start docker`, or \
             `dockerd &` as root), make sure `docker info` works for this user (for example \
             through the `docker` group), then run `cargo xtask test` again."
        )));
    }

    let dockerd = match (cmd::which("dockerd"), cmd::which("docker")) {
        (Some(dockerd), Some(_)) => dockerd,
        _ => {
            apt_install("Docker is not installed", &["docker.io"])?;
            cmd::which("dockerd").ok_or_else(|| {
                Error::new("`apt-get install docker.io` succeeded but no `dockerd` is on PATH")
            })?
        }
    };
    start_dockerd(&dockerd)?;
    report_versions();
    cmd::step(format!("Docker engine ready in {}", cmd::took(started)));
    Ok(())
}

/// `Ok` when `docker info` succeeds, else the reason it gave.
fn docker_info() -> std::result::Result<(), String> {
    if cmd::which("docker").is_none() {
        return Err("the `docker` command is not installed".into());
    }
    let mut command = Command::new("docker");
    command.arg("info");
    cmd::output_of(&mut command).map(drop).map_err(|stderr| {
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
        format!(
            "`docker info` failed: {}",
            last.unwrap_or("no message").trim()
        )
    })
}

/// Why this task cannot install and start Docker itself, if it cannot.
pub(crate) fn cannot_manage_packages() -> Option<&'static str> {
    let mut id = Command::new("id");
    id.arg("-u");
    let root = cmd::output_of(&mut id).is_ok_and(|uid| uid.trim() == "0");
    if !root {
        Some("it is not running as root")
    } else if !Path::new("/etc/debian_version").exists() {
        Some("this is not Debian (no /etc/debian_version)")
    } else {
        None
    }
}

/// `apt-get update`, then `apt-get install -y PACKAGES`, non-interactively.
pub(crate) fn apt_install(why: &str, packages: &[&str]) -> Result<()> {
    let mut update = Command::new("apt-get");
    update
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-q", "update"]);
    cmd::run_timed(&format!("{why}; update the package lists"), &mut update)?;
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["-q", "install", "-y"])
        .args(packages);
    cmd::run_timed(&format!("install {}", packages.join(" ")), &mut install)
}

/// Starts `dockerd` detached (unless one is already starting) and waits until
/// `docker info` answers.
fn start_dockerd(dockerd: &Path) -> Result<()> {
    let started = Instant::now();
    let mut child = None;
    match running_dockerd() {
        Some(pid) => cmd::step(format!(
            "dockerd is already running (pid {pid} in {DOCKERD_PID_FILE}); wait for it to answer"
        )),
        None => child = Some(spawn_dockerd(dockerd)?),
    }

    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if docker_info().is_ok() {
            cmd::step(format!(
                "the Docker engine answers after {}",
                cmd::took(started)
            ));
            // The engine keeps running after this task exits; its `Child`
            // handle is dropped without waiting on or killing it.
            return Ok(());
        }
        match child.as_mut() {
            Some(ours) => {
                if let Ok(Some(status)) = ours.try_wait() {
                    return Err(Error::new(format!(
                        "dockerd exited with {status} before it answered; the end of \
                         {DOCKERD_LOG}:\n{}",
                        log_tail()
                    )));
                }
            }
            // The engine that was there went away (it was shutting down).
            None if running_dockerd().is_none() => {
                cmd::step("that dockerd has exited");
                child = Some(spawn_dockerd(dockerd)?);
            }
            None => {}
        }
        if Instant::now() >= deadline {
            return Err(Error::new(format!(
                "dockerd did not answer `docker info` within {} s; the end of {DOCKERD_LOG}:\n{}",
                START_TIMEOUT.as_secs(),
                log_tail()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn spawn_dockerd(dockerd: &Path) -> Result<std::process::Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(DOCKERD_LOG)
        .map_err(|e| Error::new(format!("could not open {DOCKERD_LOG}: {e}")))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::new(format!("could not open {DOCKERD_LOG}: {e}")))?;
    // A session of its own (`setsid`), so that neither the terminal's Ctrl-C
    // nor the end of cargo's process group reaches it; without `setsid`, at
    // least a process group of its own.
    let mut command = match cmd::which("setsid") {
        Some(setsid) => {
            let mut command = Command::new(setsid);
            command.arg(dockerd);
            command
        }
        None => {
            let mut command = Command::new(dockerd);
            command.process_group(0);
            command
        }
    };
    command
        .args(DOCKERD_ARGS)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    cmd::step(format!(
        "start the Docker engine in the background: {} >>{DOCKERD_LOG} 2>&1",
        cmd::display(&command)
    ));
    command
        .spawn()
        .map_err(|e| Error::new(format!("could not start dockerd: {e}")))
}

/// The pid of a live `dockerd` named by its pid file, if any (a killed one
/// can linger as a zombie until it is reaped: that one does not count).
fn running_dockerd() -> Option<u32> {
    let pid: u32 = fs::read_to_string(DOCKERD_PID_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // `/proc/PID/stat` is `PID (COMM) STATE ...`.
    let stat = fs::read_to_string(PathBuf::from(format!("/proc/{pid}/stat"))).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1;
    let state = tail.split_whitespace().next()?;
    (comm == "dockerd" && state != "Z" && state != "X").then_some(pid)
}

fn log_tail() -> String {
    let text = fs::read_to_string(DOCKERD_LOG).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(20);
    lines.get(start..).unwrap_or_default().join("\n")
}

/// Prints the client's and the engine's versions (and the API version they
/// agreed on).
fn report_versions() {
    let mut version = Command::new("docker");
    version.args([
        "version",
        "--format",
        "client {{.Client.Version}} (API {{.Client.APIVersion}}), \
         engine {{.Server.Version}} (API {{.Server.APIVersion}})",
    ]);
    if let Ok(versions) = cmd::output_of(&mut version) {
        cmd::step(format!("Docker is running: {}", versions.trim()));
    }
}
