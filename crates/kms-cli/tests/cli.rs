//! The `kms` binary, run as a user would, with the env provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

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
        err.contains("KMS_PROVIDER") && err.contains("env, aws, gcp, vault"),
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
