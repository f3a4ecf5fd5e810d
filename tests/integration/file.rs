//! The file provider: conformance, several processes rotating one keyring at
//! once, and the facade's minimum decryption version on its versions.

use std::collections::HashMap;
use std::sync::Arc;

use kms::file::FileProvider;
use kms::{Error, KeyId, KeyProvider, LiveVersions};
use kms_tests::conformance::{self, Expect};
use kms_tests::fixtures::{kms_cli, kms_from};

/// A keyring in a new private directory, holding version 1 of `default`.
async fn keyring() -> (tempfile::TempDir, FileProvider) {
    let tmp = tempfile::tempdir().unwrap();
    let p = FileProvider::builder()
        .path(tmp.path().join("keyring.json"))
        .build()
        .unwrap();
    p.rotate(&KeyId::default(), &LiveVersions::all())
        .await
        .unwrap();
    (tmp, p)
}

fn vars(p: &FileProvider, more: &[(&str, &str)]) -> HashMap<String, String> {
    [
        ("KMS_PROVIDER", "file"),
        ("KMS_KEYRING_FILE", p.path().to_str().unwrap()),
    ]
    .iter()
    .chain(more)
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

#[tokio::test]
async fn file_provider_conformance() {
    let (_tmp, p) = keyring().await;
    conformance::run(Arc::new(p), &KeyId::default(), Expect { rotates: true }).await;
}

/// Four `kms rotate` processes, five rotations each, all at once on one
/// keyring: every rotation made its own version, and data written before
/// any of them still decrypts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_rotating_at_once_lose_no_version() {
    let (_tmp, p) = keyring().await;
    let vars = vars(&p, &[]);
    let (code, stored, err) = kms_cli(&vars, &["encrypt", "--aad", "users:1"], b"before").await;
    assert_eq!(code, 0, "{err}");
    let mut runs = Vec::new();
    for _ in 0..4 {
        let vars = vars.clone();
        runs.push(tokio::spawn(async move {
            let mut outputs = Vec::new();
            for _ in 0..5 {
                let (code, out, err) = kms_cli(&vars, &["rotate"], b"").await;
                assert_eq!(code, 0, "{err}");
                outputs.push(out);
            }
            outputs
        }));
    }
    let mut reported = Vec::new();
    for run in runs {
        reported.extend(run.await.unwrap());
    }
    let versions = p.versions(&KeyId::default()).await.unwrap();
    assert_eq!(
        versions.len(),
        21,
        "one version per rotation, plus the first"
    );
    // Each process reported a version of its own.
    let mut new_versions: Vec<String> = reported
        .iter()
        .map(|out| {
            let v: serde_json::Value = serde_json::from_str(out).unwrap();
            v["data"]["newKeyVersion"].as_str().unwrap().to_owned()
        })
        .collect();
    new_versions.sort_by_key(|v| v.parse::<u64>().unwrap());
    let expected: Vec<String> = (2..=21).map(|n| n.to_string()).collect();
    assert_eq!(new_versions, expected);
    let (code, plain, err) = kms_cli(
        &vars,
        &["decrypt", "--aad", "users:1"],
        stored.trim().as_bytes(),
    )
    .await;
    assert_eq!((code, plain.as_str()), (0, "before"), "{err}");
}

/// `KMS_MIN_DECRYPTION_VERSION` retires the keyring's older versions: data
/// under them is refused with a typed error, newer data decrypts.
#[tokio::test]
async fn the_minimum_decryption_version_retires_older_keyring_versions() {
    let (_tmp, p) = keyring().await;
    let kms = kms_from(&vars(&p, &[])).await;
    let old = kms.encrypt(b"v1 data", b"").await.unwrap();
    kms.rotate().await.unwrap();
    kms.rotate().await.unwrap();
    let kms = kms_from(&vars(&p, &[])).await;
    let new = kms.encrypt(b"v3 data", b"").await.unwrap();
    let strict = kms_from(&vars(&p, &[("KMS_MIN_DECRYPTION_VERSION", "3")])).await;
    assert_eq!(strict.decrypt(&new, b"").await.unwrap(), b"v3 data");
    let e = strict.decrypt(&old, b"").await.unwrap_err();
    assert!(matches!(e, Error::KeyVersionRetired { .. }), "{e:?}");
    assert_eq!(kms.decrypt(&old, b"").await.unwrap(), b"v1 data");
}

/// `kms rotate` processes killed with SIGKILL at moments spread over their
/// whole run (start-up, lock, read, temporary file, rename): after every
/// kill the keyring still loads, keeps every version it had with the same
/// key, and the next change sweeps what a killed writer left behind.
#[tokio::test]
async fn writers_killed_at_any_moment_lose_no_version() {
    let (tmp, p) = keyring().await;
    let vars = vars(&p, &[]);
    let bin = kms_tests::fixtures::kms_binary();
    let mut known: Vec<(kms::KeyVersion, kms::core::Fingerprint)> = Vec::new();
    let mut completed = 0;
    const ROUNDS: u64 = 48;
    for round in 0..ROUNDS {
        let mut child = std::process::Command::new(&bin)
            .arg("rotate")
            .env_clear()
            .envs(&vars)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // 0 to 12 ms in steps of 250 µs: a debug `kms rotate` takes about
        // 10 ms in all here. (A thread sleep: Tokio's timer counts whole
        // milliseconds.)
        std::thread::sleep(std::time::Duration::from_micros(round * 250));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            completed += 1;
        }
        let listed = p.versions(&KeyId::default()).await.unwrap();
        assert!(listed.len() >= known.len(), "round {round}: versions lost");
        for (version, fingerprint) in &known {
            let key = p.key_version(&KeyId::default(), version).await.unwrap();
            assert_eq!(
                &key.fingerprint(),
                fingerprint,
                "round {round}: {version} changed"
            );
        }
        known.clear();
        for v in &listed {
            let key = p.key_version(&KeyId::default(), &v.version).await.unwrap();
            known.push((v.version.clone(), key.fingerprint()));
        }
    }
    eprintln!(
        "{completed} of {ROUNDS} killed writers had finished; {} versions",
        known.len()
    );
    // The next change sweeps the temporary files of the killed writers.
    p.rotate(&KeyId::default(), &LiveVersions::all())
        .await
        .unwrap();
    let left: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
