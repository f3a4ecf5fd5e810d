//! The Vault provider against a real OpenBao dev server in a container, keys
//! made the way the spec's set-up makes them (`vault kv put ... key=...
//! created_at=... description=...`, run as `bao kv put` inside the container).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kms::vault::{VaultProvider, VaultProviderBuilder};
use kms::{Error, IvLength, KeyId, KeyProvider, KeyVersion, LiveVersions};
use kms_tests::conformance::{self, Expect};

use crate::scenarios;
use kms_tests::containers::ServerContainer;
use kms_tests::containers::{self, OpenBaoServer};
use kms_tests::fixtures::vault::{Vault, bao_ok, key_path, server_with_default_key, spec_env};
use kms_tests::fixtures::{DESCRIPTION, kms_cli, kms_from, random_hex, text_version};

async fn provider(bao: &OpenBaoServer) -> VaultProvider {
    VaultProvider::builder()
        .address(&bao.addr)
        .token(&bao.root_token)
        .build()
        .await
        .unwrap()
}

/// The spec's own set-up, end to end: the key from `bao kv put` encrypts and
/// decrypts through the library and through the `kms` CLI, in both
/// directions; `kms health` and `kms metadata` report it.
#[tokio::test]
async fn vault_spec_setup_through_library_and_cli() {
    kms_tests::skip_without_docker!();
    let set_up = scenarios::spec_setup::<Vault>().await;
    assert_eq!(set_up.metadata["description"], DESCRIPTION);
}

#[tokio::test]
async fn vault_provider_conformance() {
    kms_tests::skip_without_docker!();
    let (bao, _) = server_with_default_key().await;
    let p = provider(&bao).await;
    conformance::run(Arc::new(p), &KeyId::default(), Expect { rotates: true }).await;
}

/// Rotation: old ciphertexts keep decrypting, new ones carry the new KV
/// version, and another process decrypts them at once.
#[tokio::test]
async fn vault_rotation_reaches_other_processes() {
    kms_tests::skip_without_docker!();
    let (bao, first_key) = server_with_default_key().await;
    let vars = spec_env(&bao, &[]);
    let writer = kms_from(&vars).await;
    let other = kms_from(&vars).await;

    let old = writer.encrypt_str("before", b"").await.unwrap();
    assert_eq!(other.decrypt_str(&old, b"").await.unwrap(), "before");

    let v2 = writer.rotate().await.unwrap();
    assert_eq!(v2.as_str(), "2");
    let new = writer.encrypt_str("after", b"").await.unwrap();
    assert_eq!(text_version(&new), v2, "new data must use the new version");
    assert_eq!(writer.decrypt_str(&old, b"").await.unwrap(), "before");
    // The other process has version 1 cached as current, never saw version 2,
    // and decrypts the new ciphertext at once.
    assert_eq!(other.decrypt_str(&new, b"").await.unwrap(), "after");

    // What the rotation wrote, seen by the Vault CLI: a new key, the
    // description kept, created_at in the spec's format.
    let path = key_path("default");
    let (_, new_key, _) = bao.bao(&["kv", "get", "-field=key", &path]).await;
    assert_ne!(new_key.trim(), first_key);
    assert_eq!(new_key.trim().len(), 64);
    let (_, desc, _) = bao.bao(&["kv", "get", "-field=description", &path]).await;
    assert_eq!(desc.trim(), DESCRIPTION);
    let (_, created, _) = bao.bao(&["kv", "get", "-field=created_at", &path]).await;
    let created = created.trim();
    assert_eq!(created.len(), 20, "{created}");
    assert!(
        created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    let (_, old_key, _) = bao
        .bao(&["kv", "get", "-version=1", "-field=key", &path])
        .await;
    assert_eq!(old_key.trim(), first_key, "version 1 must be untouched");

    let m = writer.metadata().await.unwrap();
    assert_eq!(m.current_version, Some(v2.clone()));
    assert_eq!(m.version_count, Some(2));
    assert!(m.last_rotated.is_some() && m.created_at.is_some());
    assert!(m.last_rotated >= m.created_at);
    assert_eq!(m.description.as_deref(), Some(DESCRIPTION));

    // Deleting a version disables it: listed with enabled=false, not readable.
    let (code, _, err) = bao.bao(&["kv", "delete", "-versions=1", &path]).await;
    assert_eq!(code, 0, "{err}");
    let p = provider(&bao).await;
    let versions = p.versions(&KeyId::default()).await.unwrap();
    let enabled: Vec<(String, bool)> = versions
        .iter()
        .map(|v| (v.version.to_string(), v.enabled))
        .collect();
    assert_eq!(enabled, [("1".to_owned(), false), ("2".to_owned(), true)]);
    let err = p
        .key_version(&KeyId::default(), &KeyVersion::from(1))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Encryption key not found: default");
}

/// Two instances rotating at once: check-and-set lets exactly one rotation
/// per version through, the losers get `Error::Conflict`, and no version is
/// lost or overwritten.
#[tokio::test]
async fn vault_concurrent_rotations_lose_nothing() {
    kms_tests::skip_without_docker!();
    let (bao, _) = server_with_default_key().await;
    let id = KeyId::default();
    let p1 = Arc::new(provider(&bao).await);
    let p2 = Arc::new(provider(&bao).await);
    let reader = kms_from(&spec_env(&bao, &[])).await;
    let v1_ct = reader.encrypt(b"version 1", b"").await.unwrap();

    // Round 1 with certain contention: the server is frozen while all ten
    // rotations send their first request, so they all read version 1.
    bao.pause().await;
    let round1 = spawn_rotations(&p1, &p2, &id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    bao.unpause().await;
    let mut results = collect(round1).await;
    let conflicts_in_round1 = results.iter().filter(|r| r.is_err()).count();
    assert!(
        conflicts_in_round1 > 0,
        "ten rotations based on the same version all succeeded: no check-and-set"
    );
    // Round 2 as it comes.
    results.extend(collect(spawn_rotations(&p1, &p2, &id)).await);

    let mut won = Vec::new();
    for r in results {
        match r {
            Ok(key) => won.push(key),
            Err(Error::Conflict { key_id }) => assert_eq!(key_id, "default"),
            Err(e) => panic!("a rotation failed with something other than a conflict: {e:?}"),
        }
    }
    let mut won_versions: Vec<u64> = won
        .iter()
        .map(|k| k.version().as_str().parse().unwrap())
        .collect();
    won_versions.sort_unstable();
    let expected: Vec<u64> = (2..=1 + won.len() as u64).collect();
    assert_eq!(won_versions, expected, "distinct, gap-free versions");

    // Every version exists, is listed and enabled; the last one is current.
    let listed: Vec<(String, bool)> = p1
        .versions(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| (v.version.to_string(), v.enabled))
        .collect();
    let want: Vec<(String, bool)> = (1..=1 + won.len() as u64)
        .map(|n| (n.to_string(), true))
        .collect();
    assert_eq!(listed, want);
    assert_eq!(
        p2.current_key(&id).await.unwrap().version().as_str(),
        (1 + won.len()).to_string()
    );

    // Each winner's key is what Vault holds for its version: data sealed
    // with the key a rotation returned decrypts through a fresh client.
    let fresh = kms_from(&spec_env(&bao, &[])).await;
    for key in &won {
        let msg = format!("written under version {}", key.version());
        let ct = kms::core::crypto::seal(key, IvLength::default(), msg.as_bytes(), b"").unwrap();
        assert_eq!(fresh.decrypt(&ct, b"").await.unwrap(), msg.as_bytes());
    }
    assert_eq!(fresh.decrypt(&v1_ct, b"").await.unwrap(), b"version 1");
}

type Rotation = tokio::task::JoinHandle<kms::Result<kms::DataKey>>;

fn spawn_rotations(p1: &Arc<VaultProvider>, p2: &Arc<VaultProvider>, id: &KeyId) -> Vec<Rotation> {
    (0..10)
        .map(|i| {
            let p = if i % 2 == 0 { p1.clone() } else { p2.clone() };
            let id = id.clone();
            tokio::spawn(async move { p.rotate(&id, &LiveVersions::all()).await })
        })
        .collect()
}

async fn collect(handles: Vec<Rotation>) -> Vec<kms::Result<kms::DataKey>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// The spec's error messages: a wrong token (not retried), a missing key,
/// and a stored value that is not 64 hex characters.
#[tokio::test]
async fn vault_errors_use_the_spec_wording() {
    kms_tests::skip_without_docker!();
    scenarios::errors_use_the_spec_wording::<Vault>().await;
}

/// An outage (the server frozen): cached keys keep working, uncached calls
/// fail within the timeout budget, the circuit opens and then fails fast,
/// and the stack recovers by itself once the server is back.
#[tokio::test]
async fn vault_outage_fails_fast_and_recovers() {
    kms_tests::skip_without_docker!();
    scenarios::outage::<Vault>().await;
}

/// AppRole as the second auth method, set up with the CLI: a policy for the
/// key path, a role, its role-id and a secret-id. A round trip and a
/// rotation work; refused credentials fail the build; an expired token is
/// replaced by logging in again.
#[tokio::test]
async fn vault_approle_login() {
    kms_tests::skip_without_docker!();
    let (bao, _) = server_with_default_key().await;
    let run = |args: Vec<String>| {
        let bao = &bao;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            bao_ok(bao, &args).await
        }
    };
    let s = |v: &[&str]| v.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    run(s(&["auth", "enable", "approle"])).await;
    let policy = r#"
path "secret/data/boosterbeacon/encryption-keys/*" { capabilities = ["read", "create", "update"] }
path "secret/metadata/boosterbeacon/encryption-keys/*" { capabilities = ["read"] }
path "secret/config" { capabilities = ["read"] }
"#;
    run(s(&[
        "write",
        "sys/policies/acl/kms-keys",
        &format!("policy={policy}"),
    ]))
    .await;
    run(s(&[
        "write",
        "auth/approle/role/kms",
        "token_policies=kms-keys",
        "token_ttl=1h",
    ]))
    .await;
    run(s(&[
        "write",
        "auth/approle/role/kms-short",
        "token_policies=kms-keys",
        "token_ttl=2s",
        "token_max_ttl=2s",
    ]))
    .await;
    let creds = |role: &'static str| {
        let run = &run;
        async move {
            let role_id = run(s(&[
                "read",
                "-field=role_id",
                &format!("auth/approle/role/{role}/role-id"),
            ]))
            .await;
            let secret_id = run(s(&[
                "write",
                "-f",
                "-field=secret_id",
                &format!("auth/approle/role/{role}/secret-id"),
            ]))
            .await;
            (role_id, secret_id)
        }
    };

    let (role_id, secret_id) = creds("kms").await;
    let vars: HashMap<String, String> = [
        ("KMS_PROVIDER", "vault"),
        ("VAULT_ADDR", bao.addr.as_str()),
        ("VAULT_ROLE_ID", role_id.as_str()),
        ("VAULT_SECRET_ID", secret_id.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let kms = kms_from(&vars).await;
    let ct = kms.encrypt_str("via approle", b"").await.unwrap();
    assert_eq!(kms.decrypt_str(&ct, b"").await.unwrap(), "via approle");

    // Refusals by policy (a path the role may not read) cause no new
    // login each: the token count of the server does not grow with them.
    let tokens = || async {
        let out = bao_ok(&bao, &["list", "-format=json", "auth/token/accessors"]).await;
        serde_json::from_str::<Vec<String>>(&out).unwrap().len()
    };
    let before = tokens().await;
    let mut denied_vars = vars.clone();
    denied_vars.insert("KMS_VAULT_PATH_PREFIX".into(), "not-allowed".into());
    let denied = kms_from(&denied_vars).await;
    let after_build = tokens().await;
    for _ in 0..20 {
        let err = denied.encrypt_str("x", b"").await.unwrap_err();
        assert_eq!(err.to_string(), "Access denied to encryption key");
    }
    assert_eq!(
        tokens().await,
        after_build,
        "refusals made new logins (before the build: {before})"
    );
    assert_eq!(kms.rotate().await.unwrap().as_str(), "2");
    assert!(kms.health().await.healthy);
    assert!(!format!("{kms:?}").contains(&secret_id));

    // Refused credentials fail the build with the spec's message.
    let err = VaultProviderBuilder::from_lookup(|n| match n {
        "VAULT_SECRET_ID" => Some("00000000-0000-0000-0000-000000000000".to_owned()),
        _ => vars.get(n).cloned(),
    })
    .unwrap()
    .build()
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "Access denied to encryption key");

    // A token that expires after 2 s: the provider logs in again.
    let (role_id, secret_id) = creds("kms-short").await;
    let p = VaultProvider::builder()
        .address(&bao.addr)
        .approle(role_id, secret_id)
        .build()
        .await
        .unwrap();
    let id = KeyId::default();
    let before = p.current_key(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = p.current_key(&id).await.unwrap();
    assert_eq!(before.fingerprint(), after.fingerprint());
}

/// Runs `bao args...` in the container and returns its standard output.
/// The secret's own `max_versions`, from `bao kv metadata get`.
async fn secret_max_versions(bao: &OpenBaoServer, path: &str) -> u64 {
    let out = bao_ok(bao, &["kv", "metadata", "get", "-format=json", path]).await;
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    json["data"]["max_versions"].as_u64().unwrap()
}

/// OpenBao's defaults (the mount keeps 10 versions), the spec's set-up,
/// and 25 rotations by `kms rotate`, one value encrypted under each of the
/// 26 versions: every value still decrypts through a new instance, every
/// version is listed, and the secret's `max_versions` was raised (the root
/// token may) so that the key has room left.
#[tokio::test]
async fn vault_retention_25_cli_rotations_lose_nothing() {
    kms_tests::skip_without_docker!();
    let (bao, _) = server_with_default_key().await;
    let vars = spec_env(&bao, &[("KMS_CACHE_TTL", "0")]);
    let kms = kms_from(&vars).await;
    let mut values = vec![kms.encrypt_str("value 1", b"").await.unwrap()];
    for n in 2..=26u64 {
        let (code, _, err) = kms_cli(&vars, &["rotate"], b"").await;
        assert_eq!(code, 0, "rotation {n}: {err}");
        kms.clear_cache();
        let ct = kms.encrypt_str(&format!("value {n}"), b"").await.unwrap();
        assert_eq!(text_version(&ct), KeyVersion::from(n));
        values.push(ct);
    }
    let fresh = kms_from(&vars).await;
    for (i, ct) in values.iter().enumerate() {
        let got = fresh.decrypt_str(ct, b"").await;
        assert_eq!(got.unwrap(), format!("value {}", i + 1), "value {}", i + 1);
    }
    let id = KeyId::default();
    assert_eq!(fresh.provider().versions(&id).await.unwrap().len(), 26);
    assert!(secret_max_versions(&bao, &key_path("default")).await >= 28);
    let meta = fresh.metadata().await.unwrap();
    assert!(meta.versions_remaining.unwrap() >= 2, "{meta:?}");
    let health = fresh.health().await;
    assert!(health.healthy && health.warning.is_none(), "{health:?}");
    // The CLI's metadata reports the same.
    let (code, out, err) = kms_cli(&vars, &["metadata"], b"").await;
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(json["data"]["maxVersions"].as_u64().unwrap() >= 28, "{out}");
    assert_eq!(
        json["data"]["versionsRemaining"],
        meta.versions_remaining.unwrap()
    );
}

/// A mount that keeps 3 versions and a token that may read the mount's
/// configuration but not write the secret's metadata: the rotation that
/// would delete version 1 is refused (library and CLI) and writes nothing;
/// a token that cannot even read the mount's configuration is refused at
/// once; once version 1 is retired (`KMS_MIN_DECRYPTION_VERSION=2`) the
/// rotation goes through; the root token raises `max_versions` instead.
#[tokio::test]
async fn vault_retention_refuses_without_metadata_write() {
    kms_tests::skip_without_docker!();
    let bao = containers::openbao().await;
    bao_ok(
        &bao,
        &["secrets", "enable", "-path=kv3", "-version=2", "kv"],
    )
    .await;
    bao_ok(&bao, &["write", "kv3/config", "max_versions=3"]).await;
    let path = "kv3/boosterbeacon/encryption-keys/default";
    let key = random_hex();
    bao_ok(&bao, &["kv", "put", path, &format!("key={key}")]).await;
    let no_meta_write = r#"
path "kv3/data/boosterbeacon/encryption-keys/*" { capabilities = ["read", "create", "update"] }
path "kv3/metadata/boosterbeacon/encryption-keys/*" { capabilities = ["read"] }
path "kv3/config" { capabilities = ["read"] }
"#;
    let no_config = r#"
path "kv3/data/boosterbeacon/encryption-keys/*" { capabilities = ["read", "create", "update"] }
path "kv3/metadata/boosterbeacon/encryption-keys/*" { capabilities = ["read"] }
"#;
    let mut tokens = Vec::new();
    for (name, policy) in [("no-meta-write", no_meta_write), ("no-config", no_config)] {
        bao_ok(
            &bao,
            &[
                "write",
                &format!("sys/policies/acl/{name}"),
                &format!("policy={policy}"),
            ],
        )
        .await;
        tokens.push(
            bao_ok(
                &bao,
                &[
                    "token",
                    "create",
                    &format!("-policy={name}"),
                    "-field=token",
                ],
            )
            .await,
        );
    }
    let env = |token: &str, extra: &[(&str, &str)]| {
        let mut vars = spec_env(&bao, &[("KMS_VAULT_MOUNT", "kv3"), ("KMS_CACHE_TTL", "0")]);
        vars.insert("VAULT_TOKEN".into(), token.to_owned());
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        vars
    };

    // Without read on kv3/config the window is unknown: refused at once.
    let blind = kms_from(&env(&tokens[1], &[])).await;
    let err = blind.rotate().await.unwrap_err();
    assert_eq!(err.code(), "RETENTION_EXHAUSTED", "{err}");
    assert!(err.to_string().contains("kv3/config"), "{err}");

    let vars = env(&tokens[0], &[]);
    let kms = kms_from(&vars).await;
    let first = kms.encrypt_str("first", b"").await.unwrap();
    assert_eq!(kms.rotate().await.unwrap().as_str(), "2");
    assert_eq!(kms.rotate().await.unwrap().as_str(), "3");
    let meta = kms.metadata().await.unwrap();
    assert_eq!(
        (meta.max_versions, meta.versions_remaining),
        (Some(3), Some(0))
    );
    assert!(
        kms.health()
            .await
            .warning
            .unwrap()
            .contains("0 more version")
    );
    let (code, out, err) = kms_cli(&vars, &["health"], b"").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 more version"), "{out}");
    let err = kms.rotate().await.unwrap_err();
    assert_eq!(err.code(), "RETENTION_EXHAUSTED", "{err}");
    assert!(!err.is_temporary());
    for part in [
        "delete version 1",
        "nothing was written",
        "kms rewrap",
        "KMS_MIN_DECRYPTION_VERSION",
    ] {
        assert!(err.to_string().contains(part), "{err}");
    }
    let (code, _, stderr) = kms_cli(&vars, &["rotate"], b"").await;
    assert_ne!(code, 0);
    assert!(stderr.contains("kms rewrap"), "{stderr}");
    let id = KeyId::default();
    assert_eq!(kms.provider().versions(&id).await.unwrap().len(), 3);
    assert_eq!(kms.decrypt_str(&first, b"").await.unwrap(), "first");
    assert!(!stderr.contains(&key) && !err.to_string().contains(&key));

    // Version 1 retired: the next rotation may evict it.
    let retiring = kms_from(&env(&tokens[0], &[("KMS_MIN_DECRYPTION_VERSION", "2")])).await;
    assert_eq!(retiring.rotate().await.unwrap().as_str(), "4");
    assert_eq!(
        retiring.rotate().await.unwrap_err().code(),
        "RETENTION_EXHAUSTED"
    );

    // The root token may raise the secret's max_versions: nothing refused.
    let root = kms_from(&env(&bao.root_token, &[])).await;
    assert_eq!(root.rotate().await.unwrap().as_str(), "5");
    assert!(secret_max_versions(&bao, path).await >= 5);
    let listed = root.provider().versions(&id).await.unwrap();
    assert_eq!(listed.first().unwrap().version.as_str(), "2", "{listed:?}");
}

/// Scheduled rotation with a 250 ms period on OpenBao's defaults, for 30
/// periods and more: every version stays (the secret's `max_versions` is
/// raised as it goes) and a value encrypted under each still decrypts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_retention_scheduled_rotation_30_periods() {
    kms_tests::skip_without_docker!();
    let (bao, _) = server_with_default_key().await;
    let plain_vars = spec_env(&bao, &[("KMS_CACHE_TTL", "0")]);
    let plain = kms_from(&plain_vars).await;
    let scheduled = kms_from(&spec_env(
        &bao,
        &[("KMS_ROTATION_PERIOD", "250ms"), ("KMS_CACHE_TTL", "0")],
    ))
    .await;
    let id = KeyId::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut values = Vec::new();
    loop {
        values.push(plain.encrypt_str("periodic", b"").await.unwrap());
        let n = plain.provider().versions(&id).await.unwrap().len();
        if n >= 31 {
            break;
        }
        assert!(Instant::now() < deadline, "only {n} versions after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(scheduled);
    let listed = plain.provider().versions(&id).await.unwrap();
    for (i, v) in listed.iter().enumerate() {
        assert_eq!(v.version, KeyVersion::from(i as u64 + 1));
        assert!(v.enabled);
    }
    let fresh = kms_from(&plain_vars).await;
    let mut seen = std::collections::BTreeSet::new();
    for ct in &values {
        assert_eq!(fresh.decrypt_str(ct, b"").await.unwrap(), "periodic");
        seen.insert(text_version(ct));
    }
    assert!(seen.len() > 10, "values under only {} versions", seen.len());
}

/// A soft-deleted version (`bao kv delete`) cannot be read, but `bao kv
/// undelete` brings it back: it counts as live, so a token that may not
/// raise `max_versions` is refused rather than let Vault evict it. A
/// destroyed version can go.
#[tokio::test]
async fn vault_retention_keeps_soft_deleted_versions() {
    kms_tests::skip_without_docker!();
    let bao = containers::openbao().await;
    bao_ok(
        &bao,
        &["secrets", "enable", "-path=kvd", "-version=2", "kv"],
    )
    .await;
    bao_ok(&bao, &["write", "kvd/config", "max_versions=3"]).await;
    let path = "kvd/boosterbeacon/encryption-keys/default";
    bao_ok(&bao, &["kv", "put", path, &format!("key={}", random_hex())]).await;
    let policy = r#"
path "kvd/data/boosterbeacon/encryption-keys/*" { capabilities = ["read", "create", "update"] }
path "kvd/metadata/boosterbeacon/encryption-keys/*" { capabilities = ["read"] }
path "kvd/config" { capabilities = ["read"] }
"#;
    bao_ok(
        &bao,
        &["write", "sys/policies/acl/kvd", &format!("policy={policy}")],
    )
    .await;
    let token = bao_ok(&bao, &["token", "create", "-policy=kvd", "-field=token"]).await;
    let mut vars = spec_env(&bao, &[("KMS_VAULT_MOUNT", "kvd"), ("KMS_CACHE_TTL", "0")]);
    vars.insert("VAULT_TOKEN".into(), token);
    let kms = kms_from(&vars).await;
    let first = kms.encrypt_str("first", b"").await.unwrap();
    assert_eq!(kms.rotate().await.unwrap().as_str(), "2");
    assert_eq!(kms.rotate().await.unwrap().as_str(), "3");

    bao_ok(&bao, &["kv", "delete", "-versions=1", path]).await;
    let err = kms.rotate().await.unwrap_err();
    assert_eq!(err.code(), "RETENTION_EXHAUSTED", "{err}");
    assert!(err.to_string().contains("delete version 1"), "{err}");
    bao_ok(&bao, &["kv", "undelete", "-versions=1", path]).await;
    assert_eq!(kms.decrypt_str(&first, b"").await.unwrap(), "first");

    bao_ok(&bao, &["kv", "destroy", "-versions=1", path]).await;
    assert_eq!(kms.rotate().await.unwrap().as_str(), "4");
    let id = KeyId::default();
    let listed: Vec<String> = kms
        .provider()
        .versions(&id)
        .await
        .unwrap()
        .iter()
        .map(|v| v.version.to_string())
        .collect();
    assert_eq!(listed, ["2", "3", "4"]);
}
