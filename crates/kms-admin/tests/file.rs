//! The configuration file (`kms serve --config`, `KMS_CONFIG_FILE`): what a
//! `PUT /config` writes, what a restart reads back, and what is never
//! written.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::os::unix::fs::PermissionsExt as _;

use axum::http::{Method, StatusCode};
use kms::Fingerprint;
use kms::KeyMaterial;
use kms_admin::{ConfigFile, REDACTED};
use serde_json::{Value, json};

mod common;
use common::*;

fn fingerprint(hex: &str) -> Fingerprint {
    KeyMaterial::from_hex(hex).unwrap().fingerprint()
}

async fn current_fingerprint(kms: &kms::Kms) -> Fingerprint {
    let ct = kms.encrypt(b"x", b"").await.unwrap();
    kms::Envelope::parse(&ct).unwrap().fingerprint()
}

/// A router on the env provider (key `KEY1`) whose configuration file is
/// `kms.json` in a new directory (not created yet).
struct Served {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    base: kms_admin::Lookup,
    app: axum::Router,
}

async fn served_with_a_file() -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kms.json");
    let mut c = config();
    c.config_file = Some(ConfigFile::new(&path));
    let base = c.settings.clone();
    let (app, _) = app(env_kms(KEY1, None).await, c);
    Served {
        _dir: dir,
        path,
        base,
        app,
    }
}

/// A `PUT` writes its document (mode 0600) before the swap; a restart that
/// reads the file runs the same configuration, with the key the document
/// gave; the server's own key, which the document did not give, is not in
/// the file.
#[tokio::test]
async fn a_put_survives_a_restart() {
    let served = served_with_a_file().await;
    let (path, base, app) = (&served.path, &served.base, &served.app);

    let doc = json!({
        "provider": "env",
        "timeout": 2500,
        "credentials": {"encryptionKey": KEY2, "encryptionKeyPrevious": KEY1},
    });
    let r = call(Method::PUT, CONFIG)
        .body(doc.to_string())
        .send(app)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json["data"]["persisted"]["file"],
        path.display().to_string()
    );
    assert!(r.json["data"].get("warning").is_none(), "{}", r.text);

    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let written: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(written["timeout"], 2500);
    assert_eq!(written["credentials"]["encryptionKey"], KEY2);
    // No temporary file is left beside it.
    let dir = path.parent().unwrap();
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1);

    // The restart.
    let restarted = ConfigFile::new(path).load(base).await.unwrap().unwrap();
    let kms = restarted.kms();
    assert_eq!(kms.config().timeout_ms, 2500);
    assert_eq!(current_fingerprint(&kms).await, fingerprint(KEY2));
    let (app, _) = {
        let mut c = config();
        c.config_file = Some(ConfigFile::new(path));
        (kms_admin::router(restarted, c).unwrap(), ())
    };
    let r = call(Method::GET, CONFIG).send(&app).await;
    assert_eq!(r.json["data"]["timeout"], 2500, "{}", r.text);
    assert_eq!(r.json["data"]["credentials"]["encryptionKey"], REDACTED);
}

/// A document read with `GET` and put back carries its secrets as
/// `"[REDACTED]"`: the file keeps none of them, and the next start takes
/// the server's own key from its environment again.
#[tokio::test]
async fn the_servers_own_secrets_never_reach_the_file() {
    let served = served_with_a_file().await;
    let (path, base, app) = (&served.path, &served.base, &served.app);

    let mut doc = call(Method::GET, CONFIG).send(app).await.json["data"].clone();
    assert_eq!(doc["credentials"]["encryptionKey"], REDACTED);
    doc["timeout"] = json!(4000);
    let r = call(Method::PUT, CONFIG)
        .body(doc.to_string())
        .send(app)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let text = std::fs::read_to_string(path).unwrap();
    assert!(!text.contains(KEY1) && !text.contains(REDACTED), "{text}");
    let written: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(written["timeout"], 4000);

    let kms = ConfigFile::new(path)
        .load(base)
        .await
        .unwrap()
        .unwrap()
        .kms();
    assert_eq!(kms.config().timeout_ms, 4000);
    assert_eq!(current_fingerprint(&kms).await, fingerprint(KEY1));
}

/// Without a file, the response and the log say that the change lasts
/// until restart.
#[tokio::test]
async fn without_a_file_a_change_lasts_until_restart() {
    let (app, _) = app(env_kms(KEY1, None).await, config());
    let r = call(Method::PUT, CONFIG)
        .body(json!({"provider": "env", "timeout": 2500}).to_string())
        .send(&app)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.json["data"]["persisted"].is_null(), "{}", r.text);
    let warning = r.json["data"]["warning"].as_str().unwrap();
    assert!(warning.contains("until the server restarts"), "{warning}");
}

/// A file that cannot be written refuses the change: nothing is swapped.
#[tokio::test]
async fn an_unwritable_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("kms.json");
    let mut c = config();
    c.config_file = Some(ConfigFile::new(&path));
    let (app, shared) = app(env_kms(KEY1, None).await, c);
    let r = call(Method::PUT, CONFIG)
        .body(json!({"provider": "env", "timeout": 2500}).to_string())
        .send(&app)
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(r.json["error"]["code"], "CONFIG_NOT_SAVED");
    assert_eq!(shared.kms().config().timeout_ms, 10_000);
    assert!(!path.exists());
}

/// At start: no file yet is not an error; a file the document rules refuse
/// is, naming the variable and the file, never a value.
#[tokio::test]
async fn a_refused_file_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kms.json");
    let base = config().settings;
    assert!(ConfigFile::new(&path).load(&base).await.unwrap().is_none());
    for (body, why) in [
        (r#"{"keyId":"x"}"#, "`provider` is required"),
        (
            r#"{"provider":"env","colour":"s3cr3t-blue"}"#,
            "unknown field `colour`",
        ),
        ("not json", "malformed JSON"),
    ] {
        std::fs::write(&path, body).unwrap();
        let err = ConfigFile::new(&path).load(&base).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("KMS_CONFIG_FILE") && text.contains(why),
            "{text}"
        );
        assert!(!text.contains("s3cr3t"), "{text}");
    }
}
