//! No key bytes or credentials at any log level, proven.
//!
//! A separate test binary, because it installs a global subscriber: the one
//! an application might install, every target at `trace`, `log` records
//! included, span fields and all. Against OpenBao, LocalStack and the
//! Secret Manager emulator, it imports a known key, rotates, encrypts and
//! decrypts through the facade's full stack, reads metadata and health,
//! then searches everything that was logged for every key version in hex
//! (both cases), base64 and base64url (padded or not), and for the
//! credentials in use.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use kms::{KeyId, KeyMaterial, KeyProvider, Kms, KmsBuilder, LiveVersions};
use kms_tests::containers;

/// Everything the subscriber wrote.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every encoding of `bytes` a log line could carry.
fn encodings(bytes: &[u8]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let hex = hex::encode(bytes);
    let mut all = vec![
        hex.clone(),
        hex.to_uppercase(),
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ];
    // Half a key in hex is already too much.
    all.push(hex[..32].to_owned());
    all.push(hex[32..].to_owned());
    // A Debug-printed byte array.
    all.push(format!("{bytes:?}"));
    all
}

/// Imports a known key, rotates, round-trips through the facade, reads
/// metadata and health; returns every key version's bytes.
async fn exercise(vars: &HashMap<String, String>, key_id: &str) -> Vec<[u8; 32]> {
    let kms: Kms = KmsBuilder::from_lookup(|n| vars.get(n).cloned())
        .unwrap()
        .build()
        .await
        .unwrap();
    let id = KeyId::new(key_id).unwrap();
    let provider = kms.provider().clone();
    provider
        .import(&id, KeyMaterial::generate(), &LiveVersions::all())
        .await
        .unwrap();
    let before = kms.encrypt_str("logged nowhere", b"aad").await.unwrap();
    kms.rotate().await.unwrap();
    kms.clear_cache();
    let after = kms.encrypt_str("logged nowhere", b"aad").await.unwrap();
    let fresh: Kms = KmsBuilder::from_lookup(|n| vars.get(n).cloned())
        .unwrap()
        .build()
        .await
        .unwrap();
    for ct in [&before, &after] {
        assert_eq!(
            fresh.decrypt_str(ct, b"aad").await.unwrap(),
            "logged nowhere"
        );
    }
    // Failures log too: a wrong AAD, a missing key.
    assert!(fresh.decrypt_str(&before, b"other").await.is_err());
    let missing = fresh.with_key_id(KeyId::new("missing-key").unwrap());
    assert!(missing.encrypt_str("x", b"").await.is_err());
    fresh.metadata().await.unwrap();
    assert!(fresh.health().await.healthy);
    let mut keys = Vec::new();
    for v in provider.versions(&id).await.unwrap() {
        if let Ok(k) = provider.key_version(&id, &v.version).await {
            keys.push(*k.material().expose_secret());
        }
    }
    assert!(keys.len() >= 2, "{} key versions", keys.len());
    keys
}

fn assert_clean(logs: &str, secrets: &[(String, String)]) {
    assert!(logs.len() > 1000, "too little was logged: {logs}");
    for (what, secret) in secrets {
        if let Some(at) = logs.find(secret.as_str()) {
            let from = logs[..at].rfind('\n').map_or(0, |i| i + 1);
            let to = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
            panic!("{what} found in the logs: {}", &logs[from..to]);
        }
    }
}

#[test]
fn no_key_or_credential_in_trace_logs() {
    kms_tests::skip_without_docker!();
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
        .try_init()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut secrets: Vec<(String, String)> = Vec::new();
        let add_keys = |secrets: &mut Vec<(String, String)>, label: &str, keys: Vec<[u8; 32]>| {
            for (i, k) in keys.iter().enumerate() {
                for e in encodings(k) {
                    secrets.push((format!("{label} key version {}", i + 1), e));
                }
            }
        };

        // Vault: a token of our own (the dev root token is just "root").
        let bao = containers::openbao().await;
        let token = hex::encode(KeyMaterial::generate().expose_secret());
        let (code, _, err) = bao
            .bao(&["token", "create", &format!("-id={token}"), "-policy=root"])
            .await;
        assert_eq!(code, 0, "{err}");
        let vault: HashMap<String, String> = [
            ("KMS_PROVIDER", "vault"),
            ("KMS_KEY_ID", "logged"),
            ("VAULT_ADDR", bao.addr.as_str()),
            ("VAULT_TOKEN", token.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        add_keys(&mut secrets, "vault", exercise(&vault, "logged").await);
        secrets.push(("the Vault token".into(), token.clone()));

        // AWS (LocalStack accepts any credentials: random ones, to search for).
        let localstack = containers::localstack().await;
        let access = format!(
            "AKIA{}",
            hex::encode_upper(&KeyMaterial::generate().expose_secret()[..8])
        );
        let secret = hex::encode(KeyMaterial::generate().expose_secret());
        let aws: HashMap<String, String> = [
            ("KMS_PROVIDER", "aws"),
            ("KMS_KEY_ID", "logged"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", localstack.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", access.as_str()),
            ("AWS_SECRET_ACCESS_KEY", secret.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        add_keys(&mut secrets, "aws", exercise(&aws, "logged").await);
        secrets.push(("the AWS secret access key".into(), secret.clone()));

        // GCP, against the emulator.
        let emu = kms_gcp_emulator::Emulator::start().await.unwrap();
        let gcp: HashMap<String, String> = [
            ("KMS_PROVIDER", "gcp"),
            ("KMS_KEY_ID", "logged"),
            ("GOOGLE_CLOUD_PROJECT", "logs-test"),
            ("KMS_GCP_ENDPOINT", emu.endpoint.as_str()),
            ("KMS_GCP_ANONYMOUS", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        add_keys(&mut secrets, "gcp", exercise(&gcp, "logged").await);

        // The test harness's own events (it runs `bao token create -id=...`
        // in the container) are not the library's.
        let logs: String = captured
            .text()
            .lines()
            .filter(|l| !l.contains(" testcontainers::") && !l.contains(" bollard"))
            .flat_map(|l| [l, "\n"])
            .collect();
        // The subscriber really saw the SDKs' own trace events.
        for target in ["kms::vault", "kms::aws", "aws_smithy", "hyper", "reqwest"] {
            assert!(logs.contains(target), "no event of {target} was logged");
        }
        assert_clean(&logs, &secrets);
        eprintln!(
            "searched {} bytes of trace logs for {} encodings of keys and credentials",
            logs.len(),
            secrets.len()
        );
    });
}
