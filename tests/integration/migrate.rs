//! `kms migrate` and `kms::migrate` between every pair of providers in the
//! harness: sources env, vault (OpenBao), aws (LocalStack), gcp (the
//! in-process emulator), file (a local keyring); targets vault, aws, gcp,
//! file. One server of each (and one keyring) for the whole pairwise test,
//! a key id of its own per pair.

use std::collections::HashMap;
use std::time::Instant;

use kms::migrate::{self, Action, MigrateError};

use kms::{Error, KeyId, KeyMaterial, KeyProvider, Kms, LiveVersions};
use kms_gcp_emulator::{Emulator, EmulatorHandle};
use kms_tests::containers::{self, OpenBaoServer};

use kms_tests::fixtures::aws::Aws;
use kms_tests::fixtures::vault::bao_ok;
use kms_tests::fixtures::{kms_cli, kms_from};

/// Values encrypted under each source key version.
const PER_VERSION: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Env,
    Vault,
    Aws,
    Gcp,
    File,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Env => "env",
            Kind::Vault => "vault",
            Kind::Aws => "aws",
            Kind::Gcp => "gcp",
            Kind::File => "file",
        }
    }
}

/// One server per provider.
struct Servers {
    bao: OpenBaoServer,
    aws: Aws,
    emu: EmulatorHandle,
    /// The private directory of the file provider's keyring.
    keyring: tempfile::TempDir,
}

impl Servers {
    async fn start() -> Self {
        containers::require_docker();
        let (bao, aws, emu) = tokio::join!(containers::openbao(), Aws::start(), Emulator::start());
        Servers {
            bao,
            aws,
            emu: emu.unwrap(),
            keyring: tempfile::tempdir().unwrap(),
        }
    }

    /// The variables that configure `kind` for `key_id` (not env: see [`EnvKeys`]).
    fn vars(&self, kind: Kind, key_id: &str) -> HashMap<String, String> {
        let id = [("KMS_KEY_ID", key_id)];
        match kind {
            Kind::Vault => kms_tests::fixtures::vault::spec_env(&self.bao, &id),
            Kind::Aws => self.aws.env(&[
                ("KMS_KEY_ID", key_id),
                ("KMS_AWS_KMS_KEY_ID", &self.aws.key_id),
            ]),
            Kind::Gcp => kms_tests::fixtures::gcp::spec_env(&self.emu, &id),
            Kind::File => [
                ("KMS_PROVIDER", "file"),
                ("KMS_KEY_ID", key_id),
                (
                    "KMS_KEYRING_FILE",
                    &self
                        .keyring
                        .path()
                        .join("keyring.json")
                        .display()
                        .to_string(),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            Kind::Env => panic!("env variables come from EnvKeys"),
        }
    }
}

/// Env keys, oldest first; the newest is ENCRYPTION_KEY.
struct EnvKeys(Vec<String>);

impl EnvKeys {
    fn vars(&self, key_id: &str, upto: usize) -> HashMap<String, String> {
        let keys = &self.0[..=upto];
        let mut vars: HashMap<String, String> = [
            ("KMS_PROVIDER", "env"),
            ("KMS_KEY_ID", key_id),
            ("ENCRYPTION_KEY", keys[upto].as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if upto > 0 {
            let previous: Vec<&str> = keys[..upto].iter().rev().map(String::as_str).collect();
            vars.insert("ENCRYPTION_KEY_PREVIOUS".into(), previous.join(","));
        }
        vars
    }
}

/// One stored value: ciphertext (text form), its AAD and the plaintext.
struct Row {
    stored: String,
    aad: Vec<u8>,
    plaintext: Vec<u8>,
}

async fn encrypt_chunk(kms: &Kms, label: &str, chunk: usize, corpus: &mut Vec<Row>) {
    for i in 0..PER_VERSION {
        let n = chunk * PER_VERSION + i;
        let mut plaintext = format!("{label} secret #{n}: ").into_bytes();
        plaintext.extend_from_slice(KeyMaterial::generate().expose_secret());
        let aad = format!("users:{n}:api_token").into_bytes();
        let stored = kms.encrypt_text(&plaintext, &aad).await.unwrap();
        corpus.push(Row {
            stored,
            aad,
            plaintext,
        });
    }
}

/// Makes the source key of a pair, with three usable versions (vault and gcp:
/// a first version that is then destroyed or disabled, so version numbers
/// differ at the target) and the corpus encrypted across them. Returns the
/// source's variables and the corpus.
async fn make_source(
    servers: &Servers,
    kind: Kind,
    key_id: &str,
    label: &str,
) -> (HashMap<String, String>, Vec<Row>) {
    let mut corpus = Vec::new();
    if kind == Kind::Env {
        let keys = EnvKeys(
            (0..3)
                .map(|_| KeyMaterial::generate().to_hex().to_string())
                .collect(),
        );
        for chunk in 0..3 {
            let kms = kms_from(&keys.vars(key_id, chunk)).await;
            encrypt_chunk(&kms, label, chunk, &mut corpus).await;
        }
        return (keys.vars(key_id, 2), corpus);
    }
    let vars = servers.vars(kind, key_id);
    let kms = kms_from(&vars).await;
    let id = KeyId::new(key_id).unwrap();
    let provider = kms.provider();
    provider
        .import(&id, KeyMaterial::generate(), &LiveVersions::all())
        .await
        .unwrap();
    match kind {
        Kind::Vault => {
            let path = format!("secret/boosterbeacon/encryption-keys/{key_id}");
            let (code, _, err) = servers
                .bao
                .bao(&["kv", "destroy", "-versions=1", &path])
                .await;
            assert_eq!(code, 0, "bao kv destroy: {err}");
        }
        Kind::Gcp => {
            kms_tests::fixtures::gcp::admin(&servers.emu)
                .await
                .disable_secret_version()
                .set_name(format!(
                    "projects/boosterbeacon-test/secrets/boosterbeacon-encryption-key-{key_id}/versions/1"
                ))
                .send()
                .await
                .unwrap();
        }
        // SSM versions and keyring versions cannot be disabled: the
        // imported first version is used.
        _ => {}
    }
    for chunk in 0..3 {
        if chunk > 0 || !matches!(kind, Kind::Aws | Kind::File) {
            provider.rotate(&id, &LiveVersions::all()).await.unwrap();
        }
        encrypt_chunk(&kms, label, chunk, &mut corpus).await;
    }
    (vars, corpus)
}

/// Decrypts the whole corpus through `kms`: the number of failures.
async fn failures(kms: &Kms, corpus: &[Row]) -> usize {
    let mut failed = 0;
    for row in corpus {
        match kms.decrypt_text(&row.stored, &row.aad).await {
            Ok(p) if p == row.plaintext => {}
            _ => failed += 1,
        }
    }
    failed
}

async fn assert_no_key(provider: &dyn KeyProvider, id: &KeyId, context: &str) {
    match provider.versions(id).await {
        Err(Error::KeyNotFound { .. }) => {}
        other => panic!("{context}: the target has the key: {other:?}"),
    }
}

async fn migrate_pair(servers: &Servers, from: Kind, to: Kind) {
    let started = Instant::now();
    let label = format!("{}-to-{}", from.name(), to.name());
    let key_id = format!("mig-{label}");
    let id = KeyId::new(&key_id).unwrap();
    let (source_vars, corpus) = make_source(servers, from, &key_id, &label).await;
    let source = kms_from(&source_vars).await;
    let target_vars = servers.vars(to, &key_id);
    let target = kms_from(&target_vars).await;
    let (src, dst) = (source.provider().as_ref(), target.provider().as_ref());

    // Dry run: a plan, nothing written.
    let plan = migrate::plan(src, dst, &id).await.unwrap();
    let skipped = usize::from(matches!(from, Kind::Vault | Kind::Gcp));
    assert_eq!(
        (plan.to_copy(), plan.present(), plan.skipped()),
        (3, 0, skipped),
        "{label}: {plan:?}"
    );
    assert_no_key(dst, &id, &format!("{label} after planning")).await;
    if skipped == 1 {
        let first = &plan.versions()[0];
        assert!(
            matches!(first.action, Action::Skipped(_)),
            "{label}: {first:?}"
        );
        assert_eq!(first.fingerprint, None);
    }

    // Apply.
    let report = plan.apply(dst, |_| {}).await.unwrap();
    assert_eq!(report.copied, 3, "{label}");
    let src_current = src.current_key(&id).await.unwrap();
    let dst_current = dst.current_key(&id).await.unwrap();
    assert_eq!(
        dst_current.fingerprint(),
        src_current.fingerprint(),
        "{label}: the target's current key is the source's"
    );

    // Idempotent: nothing to copy the second time.
    let again = migrate::plan(src, dst, &id).await.unwrap();
    assert!(again.is_done(), "{label}: {again:?}");
    assert_eq!(again.present(), 3, "{label}");
    let report = again.apply(dst, |_| {}).await.unwrap();
    assert_eq!((report.copied, report.present), (0, 3), "{label}");
    assert_eq!(dst.versions(&id).await.unwrap().len(), 3, "{label}");

    // Every value decrypts through a fresh client on the target alone.
    let fresh = kms_from(&target_vars).await;
    assert_eq!(failures(&fresh, &corpus).await, 0, "{label}");
    eprintln!(
        "{label}: {} values decrypted through the target, {:.1} s",
        corpus.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Every pair: encrypt a corpus under the source across three key versions,
/// migrate (dry run, apply, apply again), decrypt the whole corpus through
/// the target. Then: a target holding another key is refused, untouched.
#[tokio::test]
async fn migrate_between_every_pair() {
    kms_tests::skip_without_docker!();
    let servers = Servers::start().await;
    for from in [Kind::Env, Kind::Vault, Kind::Aws, Kind::Gcp, Kind::File] {
        for to in [Kind::Vault, Kind::Aws, Kind::Gcp, Kind::File] {
            if from != to {
                migrate_pair(&servers, from, to).await;
            }
        }
    }

    // A different key at the target: refused, nothing written.
    for to in [Kind::Vault, Kind::Aws, Kind::Gcp, Kind::File] {
        let key_id = format!("mig-refuse-{}", to.name());
        let id = KeyId::new(&key_id).unwrap();
        let source_keys = EnvKeys(vec![KeyMaterial::generate().to_hex().to_string()]);
        let source = kms_from(&source_keys.vars(&key_id, 0)).await;
        let target = kms_from(&servers.vars(to, &key_id)).await;
        let other = target
            .provider()
            .import(&id, KeyMaterial::generate(), &LiveVersions::all())
            .await
            .unwrap();
        let err = migrate::plan(source.provider().as_ref(), target.provider().as_ref(), &id)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("the target already holds a different key"),
            "{text}"
        );
        assert!(text.contains(&other.fingerprint().to_string()), "{text}");
        assert!(!text.contains(other.material().to_hex().as_str()));
        assert!(
            matches!(&err, MigrateError::DifferentKey { foreign, .. } if foreign.len() == 1),
            "{err:?}"
        );
        let versions = target.provider().versions(&id).await.unwrap();
        assert_eq!(versions.len(), 1, "{}: the target was written", to.name());
    }
}

/// The CLI end to end: an env source from a .env file to the gcp emulator
/// by prefix. The dry run shows fingerprints and no key bytes and writes
/// nothing; --apply copies; a second --apply copies nothing; the corpus then
/// decrypts through the target. An env target names its variables, and
/// prints them only with --reveal-env-keys.
#[tokio::test]
async fn migrate_cli_end_to_end() {
    let emu = Emulator::start().await.unwrap();
    let key_id = "mig-cli";
    let id = KeyId::new(key_id).unwrap();
    let keys = EnvKeys(
        (0..2)
            .map(|_| KeyMaterial::generate().to_hex().to_string())
            .collect(),
    );
    let mut corpus = Vec::new();
    for chunk in 0..2 {
        let kms = kms_from(&keys.vars(key_id, chunk)).await;
        encrypt_chunk(&kms, "cli", chunk, &mut corpus).await;
    }
    let source = kms_from(&keys.vars(key_id, 1)).await;
    let fingerprints: Vec<String> = source
        .provider()
        .versions(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version.to_string())
        .collect();

    // The source as a .env file (comments, `export`, quotes).
    let dir = std::env::temp_dir().join(format!(
        "kms-migrate-{}-{}",
        std::process::id(),
        KeyMaterial::generate().fingerprint()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("source.env");
    let mut text = String::from("# the old installation\n\n");
    for (k, v) in keys.vars(key_id, 1) {
        text.push_str(&format!("export {k}=\"{v}\"\n"));
    }
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap().to_owned();

    let mut vars: HashMap<String, String> =
        kms_tests::fixtures::gcp::spec_env(&emu, &[("KMS_KEY_ID", key_id)])
            .into_iter()
            .map(|(k, v)| (format!("DST_{k}"), v))
            .collect();
    let no_key_bytes = |out: &str, err: &str| {
        for k in &keys.0 {
            assert!(
                !out.contains(k.as_str()) && !err.contains(k.as_str()),
                "key bytes shown"
            );
        }
    };

    // Dry run.
    let (code, out, err) = kms_cli(&vars, &["migrate", "--from", &file, "--to", "DST_"], b"").await;
    assert_eq!(code, 0, "{out}\n{err}");
    for fp in &fingerprints {
        assert!(out.contains(fp.as_str()), "no fingerprint {fp}: {out}");
    }
    assert!(
        out.contains("plan: copy 2, already present 0, skipped 0"),
        "{out}"
    );
    assert!(
        out.contains("dry run: nothing written; rerun with --apply"),
        "{out}"
    );
    no_key_bytes(&out, &err);
    let gcp = kms_from(&kms_tests::fixtures::gcp::spec_env(
        &emu,
        &[("KMS_KEY_ID", key_id)],
    ))
    .await;
    assert_no_key(gcp.provider().as_ref(), &id, "after the dry run").await;

    // Apply, then again.
    let apply = ["migrate", "--from", &file, "--to", "DST_", "--apply"];
    let (code, out, err) = kms_cli(&vars, &apply, b"").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("copied 2, already present 0, skipped 0"),
        "{out}"
    );
    no_key_bytes(&out, &err);
    let (code, out, err) = kms_cli(&vars, &apply, b"").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("copied 0, already present 2, skipped 0"),
        "{out}"
    );
    assert_eq!(failures(&gcp, &corpus).await, 0);

    // Back to env: the variables are named, their values need --reveal-env-keys.
    let back = ["migrate", "--from", "DST_", "--to", &file];
    let (code, out, err) = kms_cli(&vars, &back, b"").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("ENCRYPTION_KEY_PREVIOUS"), "{out}");
    assert!(out.contains("--reveal-env-keys"), "{out}");
    no_key_bytes(&out, &err);
    let reveal = [
        "migrate",
        "--from",
        "DST_",
        "--to",
        &file,
        "--reveal-env-keys",
    ];
    let (code, out, err) = kms_cli(&vars, &reveal, b"").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains(&format!("ENCRYPTION_KEY={}\n", keys.0[1])),
        "{out}"
    );
    assert!(
        out.contains(&format!("ENCRYPTION_KEY_PREVIOUS={}\n", keys.0[0])),
        "{out}"
    );
    assert!(err.contains("warning"), "{err}");

    // Typed errors, exit code 1: no provider named; a different key at the
    // target (source by prefix this time), which is left untouched.
    let (code, _, err) = kms_cli(&vars, &["migrate", "--from", &file, "--to", "NOPE_"], b"").await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("NOPE_KMS_PROVIDER"), "{err}");
    let refused = KeyId::new("mig-cli-refused").unwrap();
    gcp.provider()
        .import(&refused, KeyMaterial::generate(), &LiveVersions::all())
        .await
        .unwrap();
    let new_key = KeyMaterial::generate().to_hex().to_string();
    for (k, v) in [
        ("SRC_KMS_PROVIDER", "env"),
        ("SRC_KMS_KEY_ID", refused.as_str()),
        ("SRC_ENCRYPTION_KEY", new_key.as_str()),
    ] {
        vars.insert(k.into(), v.into());
    }
    let args = [
        "migrate",
        "--from",
        "SRC_",
        "--to",
        "DST_",
        "--key-id",
        refused.as_str(),
        "--apply",
    ];
    let (code, out, err) = kms_cli(&vars, &args, b"").await;
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("the target already holds a different key"),
        "{err}"
    );
    assert!(!out.contains(&new_key) && !err.contains(&new_key));
    assert_eq!(gcp.provider().versions(&refused).await.unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kms migrate` of an env key with 15 versions (`ENCRYPTION_KEY` and 14
/// previous keys) into OpenBao on its defaults (the mount keeps 10), with
/// the least-privilege token the Vault provider documents: all 15 are
/// copied (the provider raises the secret's `max_versions`), read back,
/// and every value decrypts through the target. The same token without
/// metadata `update` is refused before the 10th version would be evicted,
/// and nothing written is lost.
#[tokio::test]
async fn migrate_15_versions_into_openbao_keeps_all() {
    kms_tests::skip_without_docker!();
    let bao = containers::openbao().await;
    let key_id = "fifteen";
    let keys = EnvKeys(
        (0..15)
            .map(|_| KeyMaterial::generate().to_hex().to_string())
            .collect(),
    );
    let mut corpus = Vec::new();
    for chunk in 0..15 {
        let kms = kms_from(&keys.vars(key_id, chunk)).await;
        encrypt_chunk(&kms, "fifteen", chunk, &mut corpus).await;
    }
    let documented = r#"
path "secret/data/boosterbeacon/encryption-keys/*"     { capabilities = ["read", "create", "update"] }
path "secret/metadata/boosterbeacon/encryption-keys/*" { capabilities = ["read", "update"] }
path "secret/config"                                   { capabilities = ["read"] }
"#;
    let no_update = documented.replace(r#"["read", "update"]"#, r#"["read"]"#);
    let mut tokens = Vec::new();
    for (name, policy) in [
        ("documented", documented.to_owned()),
        ("no-update", no_update),
    ] {
        let acl = format!("sys/policies/acl/{name}");
        bao_ok(&bao, &["write", &acl, &format!("policy={policy}")]).await;
        let policy = format!("-policy={name}");
        tokens.push(bao_ok(&bao, &["token", "create", &policy, "-field=token"]).await);
    }
    let target_vars = |id: &str, token: &str| -> HashMap<String, String> {
        [
            ("KMS_PROVIDER", "vault"),
            ("KMS_KEY_ID", id),
            ("VAULT_ADDR", bao.addr.as_str()),
            ("VAULT_TOKEN", token),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let cli_vars = |id: &str, token: &str| -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = keys
            .vars(id, 14)
            .into_iter()
            .map(|(k, v)| (format!("SRC_{k}"), v))
            .collect();
        vars.extend(
            target_vars(id, token)
                .into_iter()
                .map(|(k, v)| (format!("DST_{k}"), v)),
        );
        vars
    };
    let apply = ["migrate", "--from", "SRC_", "--to", "DST_", "--apply"];

    // The documented policy: all 15 copied and read back.
    let (code, out, err) = kms_cli(&cli_vars(key_id, &tokens[0]), &apply, b"").await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("copied 15, already present 0"), "{out}");
    let target = kms_from(&target_vars(key_id, &tokens[0])).await;
    let id = KeyId::new(key_id).unwrap();
    let listed = target.provider().versions(&id).await.unwrap();
    assert_eq!(listed.len(), 15, "{listed:?}");
    assert!(listed.iter().all(|v| v.enabled));
    assert_eq!(failures(&target, &corpus).await, 0);

    // Without metadata update: refused when the 11th would evict the 1st.
    let other = "fifteen-b";
    let (code, out, err) = kms_cli(&cli_vars(other, &tokens[1]), &apply, b"").await;
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("RETENTION_EXHAUSTED") || err.contains("kms rewrap"),
        "{err}"
    );
    let id_b = KeyId::new(other).unwrap();
    let target_b = kms_from(&target_vars(other, &tokens[1])).await;
    let kept = target_b.provider().versions(&id_b).await.unwrap();
    assert_eq!(kept.len(), 10, "{kept:?}");
    assert_eq!(kept.first().unwrap().version.as_str(), "1");
}
