use std::os::unix::fs::PermissionsExt as _;

use chrono::SubsecRound as _;

use super::*;

kms_testing::settings_declared_test!(crate::SETTINGS, FileProviderBuilder);

fn id() -> KeyId {
    KeyId::default()
}

/// A provider on `keyring.json` in a new private directory.
fn provider() -> (tempfile::TempDir, FileProvider) {
    let tmp = tempfile::tempdir().unwrap();
    let p = FileProvider::builder()
        .path(tmp.path().join("keyring.json"))
        .build()
        .unwrap();
    (tmp, p)
}

#[tokio::test]
async fn a_missing_keyring_has_no_key_and_the_first_import_creates_it_private() {
    let (_tmp, p) = provider();
    assert!(!p.exists());
    let e = p.current_key(&id()).await.unwrap_err();
    assert_eq!(e.to_string(), "Encryption key not found: default");
    let health = p.health().await;
    assert!(!health.healthy);
    assert!(health.error.unwrap().contains("does not exist"));

    let material = KeyMaterial::generate();
    let fingerprint = material.fingerprint();
    let v1 = p
        .import(&id(), material, &LiveVersions::all())
        .await
        .unwrap();
    assert_eq!(v1.version().as_str(), "1");
    assert_eq!(v1.fingerprint(), fingerprint);
    let mode = std::fs::metadata(p.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(p.health().await.healthy);
    assert_eq!(
        p.current_key(&id()).await.unwrap().fingerprint(),
        fingerprint
    );
}

#[tokio::test]
async fn rotation_keeps_every_version_with_real_times() {
    let (_tmp, p) = provider();
    let before = chrono::Utc::now().trunc_subsecs(0);
    let v1 = p.rotate(&id(), &LiveVersions::all()).await.unwrap();
    let m = p.metadata(&id()).await.unwrap();
    assert_eq!(m.last_rotated, None, "one version: never rotated");
    assert!(m.created_at.unwrap() >= before);
    // Past the horizon of a short test: 120 versions, all readable.
    let mut keys = vec![v1];
    for _ in 0..119 {
        keys.push(p.rotate(&id(), &LiveVersions::all()).await.unwrap());
    }
    for (n, key) in keys.iter().enumerate() {
        let version = KeyVersion::from(n as u64 + 1);
        assert_eq!(key.version(), &version);
        let read = p.key_version(&id(), &version).await.unwrap();
        assert_eq!(read.fingerprint(), key.fingerprint(), "version {version}");
    }
    let m = p.metadata(&id()).await.unwrap();
    assert_eq!(m.version_count, Some(120));
    assert_eq!(m.current_version.unwrap().as_str(), "120");
    assert_eq!(m.created_at, keys[0].created_at());
    assert_eq!(m.last_rotated, keys[119].created_at());
    assert_eq!(m.max_versions, None, "nothing is ever evicted");
    assert_eq!(m.provider, "file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rotations_through_separate_handles_lose_no_version() {
    let (_tmp, p) = provider();
    p.rotate(&id(), &LiveVersions::all()).await.unwrap();
    // Each handle opens the lock file itself, as another process would.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = FileProvider::builder().path(p.path()).build().unwrap();
        tasks.push(tokio::spawn(async move {
            let mut made = Vec::new();
            for _ in 0..10 {
                made.push(q.rotate(&id(), &LiveVersions::all()).await.unwrap());
            }
            made
        }));
    }
    let mut fingerprints = Vec::new();
    for t in tasks {
        for key in t.await.unwrap() {
            fingerprints.push((key.version().clone(), key.fingerprint()));
        }
    }
    let listed = p.versions(&id()).await.unwrap();
    assert_eq!(listed.len(), 81);
    for (version, fingerprint) in fingerprints {
        assert_eq!(
            p.key_version(&id(), &version).await.unwrap().fingerprint(),
            fingerprint,
            "version {version} was overwritten"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_and_set_rotation_makes_one_version_among_many_callers() {
    let (_tmp, p) = provider();
    let v1 = p.rotate(&id(), &LiveVersions::all()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = FileProvider::builder().path(p.path()).build().unwrap();
        let expected = v1.version().clone();
        tasks.push(tokio::spawn(async move {
            q.rotate_if_current(&id(), &expected, &LiveVersions::all())
                .await
                .unwrap()
        }));
    }
    let mut made = 0;
    for t in tasks {
        made += usize::from(t.await.unwrap().is_some());
    }
    assert_eq!(made, 1);
    assert_eq!(p.versions(&id()).await.unwrap().len(), 2);
    // Of a key id that does not exist: not found, nothing written.
    let other = KeyId::new("other").unwrap();
    let e = p
        .rotate_if_current(&other, v1.version(), &LiveVersions::all())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "Encryption key not found: other");
    assert!(p.current_key(&other).await.is_err());
}

#[tokio::test]
async fn an_unreadable_keyring_is_never_replaced() {
    let (_tmp, p) = provider();
    p.rotate(&id(), &LiveVersions::all()).await.unwrap();
    let good = std::fs::read(p.path()).unwrap();
    // Cut short, as a disk full or a bad edit would leave it.
    let cut = &good[..good.len() / 2];
    std::fs::write(p.path(), cut).unwrap();
    for result in [
        p.rotate(&id(), &LiveVersions::all()).await,
        p.import(&id(), KeyMaterial::generate(), &LiveVersions::all())
            .await,
    ] {
        let e = result.unwrap_err();
        assert!(e.to_string().contains("is not valid"), "{e}");
    }
    assert_eq!(
        std::fs::read(p.path()).unwrap(),
        cut,
        "the file was replaced"
    );
    assert!(!p.health().await.healthy);

    // Open to others: refused with the command that mends it, also unchanged.
    std::fs::write(p.path(), &good).unwrap();
    std::fs::set_permissions(p.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = p.rotate(&id(), &LiveVersions::all()).await.unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    assert!(e.to_string().contains("chmod 600"), "{e}");
    assert_eq!(std::fs::read(p.path()).unwrap(), good);
}

#[test]
fn building_needs_a_path_in_a_private_directory() {
    let e = FileProvider::builder().build().unwrap_err();
    assert!(e.to_string().contains(KEYRING_FILE), "{e}");
    let tmp = tempfile::tempdir().unwrap();
    let e = FileProvider::builder()
        .path(tmp.path().join("missing").join("keyring.json"))
        .build()
        .unwrap_err();
    assert!(
        e.to_string().contains("cannot read the keyring directory"),
        "{e}"
    );
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = FileProvider::builder()
        .path(tmp.path().join("keyring.json"))
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("chmod 700"), "{e}");
    let built = FileProviderBuilder::from_lookup(|name| {
        (name == KEYRING_FILE).then(|| " /tmp/k.json ".to_owned())
    })
    .unwrap();
    assert_eq!(built.path, Some(PathBuf::from("/tmp/k.json")));
}

#[tokio::test]
async fn no_key_byte_shows_in_debug_or_in_the_file_listing() {
    let (_tmp, p) = provider();
    let key = p.rotate(&id(), &LiveVersions::all()).await.unwrap();
    let hex = key.material().to_hex();
    let shown = format!("{p:?} {:?}", p.metadata(&id()).await.unwrap());
    assert!(!shown.contains(&hex[..16]), "{shown}");
    // The key is in the file, as it must be, and only there.
    let text = std::fs::read_to_string(p.path()).unwrap();
    assert!(text.contains(hex.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_many_starting_at_once_one_creates_the_key() {
    let (_tmp, p) = provider();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let q = FileProvider::builder().path(p.path()).build().unwrap();
        tasks.push(tokio::spawn(async move {
            q.import_if_empty(&id(), || Ok(KeyMaterial::generate()))
                .await
                .unwrap()
        }));
    }
    let mut created = Vec::new();
    for t in tasks {
        created.extend(t.await.unwrap());
    }
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].version().as_str(), "1");
    assert_eq!(p.versions(&id()).await.unwrap().len(), 1);
    let e = p
        .import_if_empty(&KeyId::new("other").unwrap(), || {
            Err(Error::config("X", "no key to give"))
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no key to give"), "{e}");
    assert!(p.current_key(&KeyId::new("other").unwrap()).await.is_err());
}
