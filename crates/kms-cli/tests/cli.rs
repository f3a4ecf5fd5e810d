//! The `kms` binary, run as a user would, with the env provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const KEY: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";
const OLD_KEY: &str = "0badf00d0badf00d0badf00d0badf00d0badf00d0badf00d0badf00d0badf00d";

fn kms(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn kms");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn generate_key_prints_64_hex() {
    let a = kms(&["generate-key"], &[], b"");
    let b = kms(&["generate-key"], &[], b"");
    assert!(a.status.success());
    let ka = text(&a.stdout);
    assert_eq!(ka.len(), 65, "{ka:?}");
    assert!(ka.trim_end().bytes().all(|c| c.is_ascii_hexdigit()));
    assert!(ka.ends_with('\n'));
    assert_ne!(ka, text(&b.stdout));
}

#[test]
fn encrypt_decrypt_round_trip_with_aad() {
    let env = [("ENCRYPTION_KEY", KEY)];
    let plaintext = b"line one\nline two \xff\x00 binary too\n";
    let enc = kms(&["encrypt", "--aad", "users:42"], &env, plaintext);
    assert!(enc.status.success(), "{}", text(&enc.stderr));
    let ct = text(&enc.stdout);
    assert!(ct.starts_with("kms:v1:") && ct.ends_with('\n'), "{ct}");

    let dec = kms(&["decrypt", "--aad", "users:42"], &env, ct.as_bytes());
    assert!(dec.status.success(), "{}", text(&dec.stderr));
    assert_eq!(dec.stdout, plaintext);

    let wrong = kms(&["decrypt", "--aad", "users:43"], &env, ct.as_bytes());
    assert!(!wrong.status.success());
    assert!(wrong.stdout.is_empty());
    assert!(
        text(&wrong.stderr).contains("not authentic"),
        "{}",
        text(&wrong.stderr)
    );
}

#[test]
fn old_ciphertexts_decrypt_after_an_env_rotation() {
    let before = kms(&["encrypt"], &[("ENCRYPTION_KEY", OLD_KEY)], b"old secret");
    assert!(before.status.success());
    let rotated = [
        ("ENCRYPTION_KEY", KEY),
        ("ENCRYPTION_KEY_PREVIOUS", OLD_KEY),
    ];
    let dec = kms(&["decrypt"], &rotated, &before.stdout);
    assert!(dec.status.success(), "{}", text(&dec.stderr));
    assert_eq!(dec.stdout, b"old secret");
    // Without the previous key it is refused with the spec's message.
    let dec = kms(&["decrypt"], &[("ENCRYPTION_KEY", KEY)], &before.stdout);
    assert!(!dec.status.success());
    assert!(
        text(&dec.stderr).contains("Encryption key not found: default"),
        "{}",
        text(&dec.stderr)
    );
}

#[test]
fn garbage_input_is_a_clear_error() {
    let env = [("ENCRYPTION_KEY", KEY)];
    for input in [&b"hello"[..], b"kms:v1:!!!", b"kms:v9:AAAA", b"\xff\xfe"] {
        let out = kms(&["decrypt"], &env, input);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.lines().any(|l| l.starts_with("Error: ")), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn configuration_errors_name_the_variable() {
    let out = kms(&["encrypt"], &[], b"x");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ENCRYPTION_KEY"),
        "{}",
        text(&out.stderr)
    );

    let out = kms(&["encrypt"], &[("ENCRYPTION_KEY", "short")], b"x");
    let err = text(&out.stderr);
    assert!(
        err.contains("ENCRYPTION_KEY") && !err.contains("short\n"),
        "{err}"
    );

    let out = kms(
        &["health"],
        &[("ENCRYPTION_KEY", KEY), ("KMS_PROVIDER", "azure")],
        b"",
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("KMS_PROVIDER") && err.contains("env, aws, gcp, vault, file"),
        "{err}"
    );

    // The CLI has every provider compiled in: a cloud provider without its
    // settings is a configuration error naming what is missing, not a panic.
    let out = kms(
        &["health"],
        &[("KMS_PROVIDER", "vault"), ("VAULT_TOKEN", "x")],
        b"",
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("VAULT_ADDR"),
        "{}",
        text(&out.stderr)
    );

    let out = kms(
        &["health"],
        &[("ENCRYPTION_KEY", KEY), ("KMS_TIMEOUT", "soon")],
        b"",
    );
    assert!(
        text(&out.stderr).contains("KMS_TIMEOUT"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rotate_on_env_explains_how() {
    let out = kms(&["rotate"], &[("ENCRYPTION_KEY", KEY)], b"");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("ENCRYPTION_KEY_PREVIOUS"), "{err}");
    assert!(err.contains("kms generate-key"), "{err}");
}

#[test]
fn health_and_metadata_are_spec_shaped_json() {
    let env = [("ENCRYPTION_KEY", KEY)];
    let out = kms(&["health"], &env, b"");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["success"], true);
    assert_eq!(v["data"]["provider"], "env");
    assert_eq!(v["data"]["healthy"], true);
    assert!(v["data"]["lastChecked"].as_str().unwrap().ends_with('Z'));
    assert!(v["data"]["responseTime"].is_u64());

    let out = kms(&["metadata"], &env, b"");
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &v["data"];
    assert_eq!(d["keyId"], "default");
    assert_eq!(d["enabled"], true);
    assert_eq!(d["keyUsage"], "ENCRYPT_DECRYPT");
    assert_eq!(d["keySpec"], "AES-256");
    for field in ["description", "createdAt", "lastRotated"] {
        assert!(d.get(field).is_some(), "{field} missing");
    }
}

#[test]
fn no_key_material_in_any_output_even_with_debug_logging() {
    let env = [
        ("ENCRYPTION_KEY", KEY),
        ("ENCRYPTION_KEY_PREVIOUS", OLD_KEY),
        ("LOG_LEVEL", "trace"),
        ("KMS_DEBUG", "true"),
    ];
    let enc = kms(&["encrypt"], &env, b"secret");
    let dec = kms(&["decrypt"], &env, &enc.stdout);
    let meta = kms(&["metadata"], &env, b"");
    let rot = kms(&["rotate"], &env, b"");
    for out in [&enc, &dec, &meta, &rot] {
        for stream in [&out.stdout, &out.stderr] {
            let s = text(stream).to_lowercase();
            assert!(!s.contains("c0ffee00c0ffee00"), "{s}");
            assert!(!s.contains("0badf00d0badf00d"), "{s}");
        }
    }
    assert!(
        text(&enc.stderr).contains("development"),
        "the dev-only warning is logged"
    );
}

/// The environment of a rewrap after a rotation: `KEY` current, `OLD_KEY`
/// previous.
const ROTATED: [(&str, &str); 2] = [
    ("ENCRYPTION_KEY", KEY),
    ("ENCRYPTION_KEY_PREVIOUS", OLD_KEY),
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The plaintext of line `i` of a corpus (all the same length).
fn plaintext(i: usize) -> String {
    format!("secret number {i:07}")
}

/// `n` ciphertexts of [`plaintext`] under `OLD_KEY`, one per line,
/// encrypted with the library on every core.
fn corpus(rt: &tokio::runtime::Runtime, n: usize) -> Vec<u8> {
    rt.block_on(async {
        let kms = kms::Kms::builder().env_key(OLD_KEY).build().await.unwrap();
        let tasks = std::thread::available_parallelism().map_or(2, usize::from);
        let chunk = n.div_ceil(tasks);
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let kms = kms.clone();
                tokio::spawn(async move {
                    let mut out = Vec::new();
                    for i in t * chunk..((t + 1) * chunk).min(n) {
                        out.extend_from_slice(
                            kms.encrypt_str(&plaintext(i), b"")
                                .await
                                .unwrap()
                                .as_bytes(),
                        );
                        out.push(b'\n');
                    }
                    out
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    })
}

/// Checks that `output` has one line per input line, each decrypting under
/// `KEY` alone (so it was really rewrapped) to [`plaintext`] of its number.
fn assert_complete(rt: &tokio::runtime::Runtime, output: &[u8], lines: usize) {
    let text = std::str::from_utf8(output).unwrap();
    assert!(text.ends_with('\n'));
    let got: Vec<String> = text.lines().map(str::to_owned).collect();
    assert_eq!(got.len(), lines);
    let got = std::sync::Arc::new(got);
    rt.block_on(async {
        let kms = kms::Kms::builder().env_key(KEY).build().await.unwrap();
        let tasks = std::thread::available_parallelism().map_or(2, usize::from);
        let chunk = lines.div_ceil(tasks);
        let handles: Vec<_> = (0..tasks)
            .map(|t| {
                let (kms, got) = (kms.clone(), got.clone());
                tokio::spawn(async move {
                    for i in t * chunk..((t + 1) * chunk).min(got.len()) {
                        let plain = kms.decrypt_str(&got[i], b"").await;
                        assert_eq!(
                            plain.as_deref().ok(),
                            Some(plaintext(i).as_str()),
                            "line {}",
                            i + 1
                        );
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
}

/// Names in `dir` of temporary files left by a rewrap.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".kms-rewrap-"))
        .collect()
}

#[test]
fn rewrap_refuses_an_output_that_is_a_link_to_the_input() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let content = corpus(&rt, 3);
    std::fs::write(&input, &content).unwrap();
    let hard = dir.path().join("hard.txt");
    std::fs::hard_link(&input, &hard).unwrap();
    let soft = dir.path().join("soft.txt");
    std::os::unix::fs::symlink(&input, &soft).unwrap();
    for output in [&hard, &soft] {
        let out = kms(
            &[
                "rewrap",
                "--input",
                input.to_str().unwrap(),
                "--output",
                output.to_str().unwrap(),
            ],
            &ROTATED,
            b"",
        );
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("--output") && err.contains("same device and inode"),
            "{err}"
        );
        assert_eq!(std::fs::read(&input).unwrap(), content);
        assert!(leftovers(dir.path()).is_empty());
    }
    // Standard input redirected from a link of the output is the input too.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms"));
    let status = cmd
        .args(["rewrap", "--output", hard.to_str().unwrap()])
        .env_clear()
        .envs(ROTATED)
        .stdin(std::fs::File::open(&input).unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    assert_eq!(std::fs::read(&input).unwrap(), content);
    // So is standard output appended to the input (it would grow under the
    // reader).
    let status = Command::new(env!("CARGO_BIN_EXE_kms"))
        .args(["rewrap", "--input", input.to_str().unwrap()])
        .env_clear()
        .envs(ROTATED)
        .stdin(Stdio::null())
        .stdout(
            std::fs::OpenOptions::new()
                .append(true)
                .open(&input)
                .unwrap(),
        )
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
    assert_eq!(std::fs::read(&input).unwrap(), content);
}

#[test]
fn rewrap_output_to_dev_stdout_on_a_pipe_still_streams() {
    let rt = runtime();
    let content = corpus(&rt, 5);
    let out = kms(&["rewrap", "--output", "/dev/stdout"], &ROTATED, &content);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_complete(&rt, &out.stdout, 5);
}

#[test]
fn rewrap_killed_half_way_leaves_the_input_and_no_partial_output() {
    use std::os::unix::process::ExitStatusExt;
    const LINES: usize = 200_000;
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    let output = dir.path().join("out.txt");
    let started = std::time::Instant::now();
    let content = corpus(&rt, LINES);
    std::fs::write(&input, &content).unwrap();
    eprintln!("corpus: {} bytes in {:?}", content.len(), started.elapsed());
    let rewrap = || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms"));
        cmd.args([
            "rewrap",
            "--input",
            input.to_str().unwrap(),
            "--output",
            output.to_str().unwrap(),
        ])
        .env_clear()
        .envs(ROTATED)
        .stdin(Stdio::null());
        cmd
    };

    // Kill it once anything but the input (the temporary file; the output
    // itself if it were written in place) holds half of the output.
    let started = std::time::Instant::now();
    let mut child = rewrap()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let half = content.len() as u64 / 2;
    let seen = loop {
        if child.try_wait().unwrap().is_some() {
            break None;
        }
        let big = std::fs::read_dir(dir.path()).unwrap().find_map(|e| {
            let e = e.unwrap();
            let len = e.metadata().map_or(0, |m| m.len());
            (e.file_name() != "in.txt" && len >= half).then(|| e.file_name())
        });
        if big.is_some() {
            child.kill().unwrap();
            break big;
        }
        assert!(started.elapsed().as_secs() < 60, "rewrap too slow");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let status = child.wait().unwrap();
    eprintln!(
        "killed at {seen:?} after {:?}: {status:?}",
        started.elapsed()
    );
    assert_eq!(std::fs::read(&input).unwrap(), content, "input changed");
    if status.signal() == Some(9) {
        // Killed before the rename: no output, the temporary file is left,
        // recognisably named. (Killed just after it: a complete output.)
        match std::fs::read(&output) {
            Ok(out) => assert_complete(&rt, &out, LINES),
            Err(e) => {
                assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
                let left = leftovers(dir.path());
                assert_eq!(left.len(), 1, "{left:?}");
                assert!(
                    left[0].starts_with(".out.txt.kms-rewrap-") && left[0].ends_with(".tmp"),
                    "{left:?}"
                );
            }
        }
    } else {
        // It finished before it could be killed: then it is complete.
        eprintln!("rewrap finished before the kill");
        assert!(status.success());
        assert_complete(&rt, &std::fs::read(&output).unwrap(), LINES);
    }

    // Run to completion: every line rewrapped, in order.
    let started = std::time::Instant::now();
    let out = rewrap().output().unwrap();
    eprintln!("full run: {:?}", started.elapsed());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains(&format!("{LINES} lines: {LINES} rewrapped, 0 failed")),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(&input).unwrap(), content, "input changed");
    assert_complete(&rt, &std::fs::read(&output).unwrap(), LINES);
}

/// One-shot commands print nothing on stderr when they succeed, unless
/// `LOG_LEVEL` or `KMS_DEBUG` ask for more; the env provider's warning then
/// appears once per process, and never with `--dev`, whose key is
/// announced as a development key already.
#[test]
fn one_shot_commands_are_quiet_on_success() {
    let env = [("ENCRYPTION_KEY", KEY)];
    for args in [&["encrypt"][..], &["health"], &["metadata"]] {
        let out = kms(args, &env, b"secret");
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "{args:?}");
    }
    let warning = "using the env key provider";
    let loud = kms(&["encrypt"], &[env[0], ("LOG_LEVEL", "info")], b"secret");
    assert!(loud.status.success());
    assert_eq!(
        text(&loud.stderr).matches(warning).count(),
        1,
        "{}",
        text(&loud.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let dev_dir = dir.path().join("dev");
    let dev_dir = dev_dir.to_str().unwrap();
    let dev = kms(
        &["--dev", "--dev-dir", dev_dir, "encrypt"],
        &[("LOG_LEVEL", "info")],
        b"secret",
    );
    assert!(dev.status.success(), "{}", text(&dev.stderr));
    assert!(
        !text(&dev.stderr).contains(warning),
        "{}",
        text(&dev.stderr)
    );
    let quiet_dev = kms(&["--dev", "--dev-dir", dev_dir, "encrypt"], &[], b"secret");
    assert!(quiet_dev.status.success());
    assert_eq!(text(&quiet_dev.stderr), "");
}
