//! Key lifecycle (issue 8): rewrap of a large corpus with corrupted lines,
//! the minimum decryption version after a rewrap, and scheduled rotation
//! with several instances racing (in memory and against OpenBao's real
//! check-and-set).

use std::sync::Arc;
use std::time::Duration;

use kms::format;

use kms::rewrap::{RewrapOptions, RewrapReport};
use kms::{Envelope, KeyId, KeyMaterial, KeyProvider, KeyVersion, Kms, LiveVersions, VersionInfo};
use kms_testing::MemoryProvider;
use kms_tests::containers;

const AAD: &[u8] = b"users:api_token";

fn version_of(text: &str) -> String {
    let bin = format::from_text(text).unwrap();
    Envelope::parse(&bin)
        .unwrap()
        .key_version()
        .unwrap()
        .to_string()
}

/// `n` ciphertexts of `secret-<i>` under the current version, one per line.
async fn corpus(kms: &Kms, n: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(n);
    for i in 0..n {
        lines.push(kms.encrypt_str(&format!("secret-{i}"), AAD).await.unwrap());
    }
    lines
}

async fn rewrap(kms: &Kms, lines: &[String]) -> (RewrapReport, Vec<String>) {
    let mut input = lines.join("\n");
    input.push('\n');
    let mut out = Vec::with_capacity(input.len());
    let report = kms
        .rewrap_lines(input.as_bytes(), &mut out, AAD, &RewrapOptions::default())
        .await
        .unwrap();
    let out = String::from_utf8(out).unwrap();
    (report, out.lines().map(str::to_owned).collect())
}

/// Flips one bit of the AES-GCM ciphertext body (after the header).
fn flip_a_byte(text: &str) -> String {
    let mut bin = format::from_text(text).unwrap();
    let i = bin.len() - 20;
    bin[i] ^= 0x01;
    format::to_text(&bin)
}

/// 100,000 lines under version 1, rotate, five lines corrupted in
/// different ways and one emptied: every good line is rewrapped under
/// version 2 and decrypts to its plaintext; the bad ones are reported with
/// their line numbers and written back unchanged. Prints the throughput.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_100k_lines_with_corrupted_ones() {
    const N: usize = 100_000;
    let id = KeyId::default();
    let p = Arc::new(MemoryProvider::with_key(id.clone()));
    let kms = Kms::builder()
        .provider_arc(p.clone())
        .build()
        .await
        .unwrap();
    let mut lines = corpus(&kms, N).await;
    p.rotate(&id, &LiveVersions::all()).await.unwrap();
    kms.clear_cache();

    // 1-based line number -> corruption.
    let bad: Vec<(usize, &str)> = vec![
        (1, "truncated"),
        (2_345, "bad base64"),
        (50_000, "flipped byte"),
        (77_777, "wrong prefix"),
        (N, "another key id"),
    ];
    let empty_line = 12_345;
    for (n, how) in &bad {
        let line = &mut lines[n - 1];
        *line = match *how {
            "truncated" => line[..line.len() / 2].to_owned(),
            "bad base64" => {
                let mut s = line.clone();
                s.replace_range(20..21, "!");
                s
            }
            "flipped byte" => flip_a_byte(line),
            "wrong prefix" => line.replacen("kms:v1:", "kms:v2:", 1),
            "another key id" => {
                let other = kms.with_key_id(KeyId::new("missing").unwrap());
                // Encrypting under a key the provider lacks fails; forge a
                // header with an unknown key id instead.
                assert!(other.encrypt_str("x", AAD).await.is_err());
                let key = kms::DataKey::new(
                    KeyId::new("missing").unwrap(),
                    KeyVersion::from(1),
                    KeyMaterial::generate(),
                );
                format::to_text(
                    &kms::core::crypto::seal(&key, kms::IvLength::default(), b"x", AAD).unwrap(),
                )
            }
            _ => unreachable!(),
        };
    }
    lines[empty_line - 1] = String::new();

    let (report, out) = rewrap(&kms, &lines).await;
    eprintln!(
        "rewrap of {N} lines (memory provider, debug={}): {report}",
        cfg!(debug_assertions)
    );
    assert_eq!(report.lines, N as u64);
    assert_eq!(report.rewrapped, (N - bad.len() - 1) as u64);
    assert_eq!(report.failed, bad.len() as u64);
    assert_eq!(report.skipped_empty, 1);
    let reported: Vec<(u64, &str)> = report.failures.iter().map(|f| (f.line, f.code)).collect();
    assert_eq!(
        reported,
        [
            (1, "MALFORMED_CIPHERTEXT"),
            (2_345, "MALFORMED_CIPHERTEXT"),
            (50_000, "DECRYPTION_FAILED"),
            (77_777, "UNSUPPORTED_FORMAT_VERSION"),
            (N as u64, "KEY_NOT_FOUND"),
        ]
    );
    for f in &report.failures {
        assert!(!f.message.contains("secret-"), "{f:?}");
    }
    assert_eq!(out.len(), N);
    for (i, (new, old)) in out.iter().zip(&lines).enumerate() {
        let n = i + 1;
        if n == empty_line || bad.iter().any(|(b, _)| *b == n) {
            assert_eq!(new, old, "line {n} must be unchanged");
            continue;
        }
        assert_eq!(version_of(new), "2", "line {n}");
        assert_eq!(
            kms.decrypt_str(new, AAD).await.unwrap(),
            format!("secret-{i}"),
            "line {n}"
        );
    }
}

/// After a rewrap, raising the minimum decryption version to the new
/// version refuses the old ciphertexts (with a clear error) and keeps the
/// rewrapped corpus readable; rewrapping the old corpus again then fails
/// line by line with the same error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_decryption_version_after_rewrap() {
    let id = KeyId::default();
    let p = Arc::new(MemoryProvider::with_key(id.clone()));
    let kms = Kms::builder()
        .provider_arc(p.clone())
        .build()
        .await
        .unwrap();
    let old = corpus(&kms, 2_000).await;
    p.rotate(&id, &LiveVersions::all()).await.unwrap();
    kms.clear_cache();
    let (report, new) = rewrap(&kms, &old).await;
    assert_eq!(report.rewrapped, 2_000);

    let strict = Kms::builder()
        .provider_arc(p.clone())
        .min_decryption_version(id.clone(), KeyVersion::from(2))
        .build()
        .await
        .unwrap();
    for (i, line) in new.iter().enumerate() {
        assert_eq!(
            strict.decrypt_str(line, AAD).await.unwrap(),
            format!("secret-{i}")
        );
    }
    let e = strict.decrypt_str(&old[0], AAD).await.unwrap_err();
    assert_eq!(e.code(), "KEY_VERSION_RETIRED");
    assert_eq!(
        e.to_string(),
        "key version 1 of key default is retired (minimum decryption version is 2): rewrap the data"
    );
    let (report, out) = rewrap(&strict, &old).await;
    assert_eq!(report.failed, 2_000);
    assert!(
        report
            .failures
            .iter()
            .all(|f| f.code == "KEY_VERSION_RETIRED")
    );
    assert_eq!(out, old);
    // A minimum the provider lacks is refused at build.
    let e = Kms::builder()
        .provider_arc(p.clone())
        .min_decryption_version(id, KeyVersion::from(9))
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("KMS_MIN_DECRYPTION_VERSION"), "{e}");
}

/// Consecutive versions at least `period` apart (allowing the provider's
/// timestamp resolution): one rotation per period, not one per instance.
fn assert_one_per_period(versions: &[VersionInfo], period: Duration, resolution: Duration) {
    for pair in versions.windows(2) {
        let gap = (pair[1].created_at.unwrap() - pair[0].created_at.unwrap())
            .to_std()
            .unwrap();
        assert!(
            gap + resolution >= period,
            "versions {} and {} created {gap:?} apart (period {period:?})",
            pair[0].version,
            pair[1].version
        );
    }
}

/// One instance with scheduled rotation per provider, for `run`; then
/// every instance is dropped (which stops its task).
async fn race(
    providers: Vec<Arc<dyn KeyProvider>>,
    period: Duration,
    check_interval: Duration,
    run: Duration,
) {
    let mut instances = Vec::new();
    for p in providers {
        instances.push(
            Kms::builder()
                .provider_arc(p)
                .rotation_period(period)
                .rotation_check_interval(check_interval)
                .build()
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(run).await;
    drop(instances);
}

/// Five instances with scheduled rotation over one in-memory provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_racing_instances_memory() {
    let id = KeyId::default();
    let p = Arc::new(MemoryProvider::with_key(id.clone()));
    let period = Duration::from_millis(500);
    let providers: Vec<Arc<dyn KeyProvider>> = (0..5).map(|_| p.clone() as _).collect();
    race(
        providers,
        period,
        Duration::from_millis(20),
        Duration::from_millis(2_300),
    )
    .await;
    let versions = p.versions(&id).await.unwrap();
    // Rotations at about 0.5, 1.0, 1.5, 2.0 s (each a little late).
    assert!(
        (4..=5).contains(&versions.len()),
        "{} versions",
        versions.len()
    );
    assert_one_per_period(&versions, period, Duration::ZERO);
}

/// A provider stack for the key `default` built from a variable lookup.
async fn stack_from(vars: &std::collections::HashMap<String, String>) -> Arc<dyn KeyProvider> {
    kms::KmsBuilder::from_lookup(|n| vars.get(n).cloned())
        .unwrap()
        .build()
        .await
        .unwrap()
        .provider()
        .clone()
}

/// Two writers expecting `expected`: exactly one rotates.
async fn one_check_and_set_wins(a: &dyn KeyProvider, b: &dyn KeyProvider, expected: u64) {
    let id = KeyId::default();
    let v = KeyVersion::from(expected);
    let all = LiveVersions::all();
    let (ra, rb) = tokio::join!(
        a.rotate_if_current(&id, &v, &all),
        b.rotate_if_current(&id, &v, &all)
    );
    let wins = [ra.unwrap(), rb.unwrap()]
        .iter()
        .filter(|r| r.is_some())
        .count();
    assert_eq!(wins, 1);
    assert!(
        a.rotate_if_current(&id, &v, &LiveVersions::all())
            .await
            .unwrap()
            .is_none(),
        "a stale expected version must not rotate"
    );
}

/// Over the provider the variables `vars` configure, whose key `default`
/// has one version: two writers race a check-and-set from version 1 (one
/// wins), then five instances, each with its own client, run scheduled
/// rotation for `run`; consecutive versions must be a period apart
/// (`resolution`: the provider's timestamp rounding).
async fn racing_instances(
    vars: &std::collections::HashMap<String, String>,
    period: Duration,
    check_interval: Duration,
    run: Duration,
    resolution: Duration,
) {
    let (a, b) = (stack_from(vars).await, stack_from(vars).await);
    one_check_and_set_wins(&*a, &*b, 1).await;
    let mut providers = Vec::new();
    for _ in 0..5 {
        providers.push(stack_from(vars).await);
    }
    race(providers, period, check_interval, run).await;
    let versions = a.versions(&KeyId::default()).await.unwrap();
    // Version 2 was written before the instances were built (which takes a
    // while), so two or three more rotations fit in a run of 2.5 periods.
    assert!(
        (3..=5).contains(&versions.len()),
        "{} versions: {versions:?}",
        versions.len()
    );
    assert_one_per_period(&versions[1..], period, resolution);
}

fn vars(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Vault KV check-and-set (`cas`), against OpenBao.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_racing_instances_vault() {
    kms_tests::skip_without_docker!();
    let bao = containers::openbao().await;
    let (code, _, stderr) = bao
        .bao(&[
            "kv",
            "put",
            "secret/boosterbeacon/encryption-keys/default",
            &format!("key={}", &*KeyMaterial::generate().to_hex()),
        ])
        .await;
    assert_eq!(code, 0, "bao kv put: {stderr}");
    let vars = vars(&[
        ("KMS_PROVIDER", "vault"),
        ("VAULT_ADDR", &bao.addr),
        ("VAULT_TOKEN", &bao.root_token),
        ("KMS_CACHE_TTL", "0"),
    ]);
    let period = Duration::from_secs(2);
    racing_instances(
        &vars,
        period,
        Duration::from_millis(50),
        Duration::from_secs(5),
        Duration::ZERO,
    )
    .await;
}

/// SSM has no check-and-set: the marker parameter makes one rotation per
/// period (LocalStack).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_racing_instances_aws() {
    kms_tests::skip_without_docker!();
    let aws = kms_tests::fixtures::aws::Aws::start().await;
    let vars = aws.env(&[("KMS_CACHE_TTL", "0")]);
    // SSM's LastModifiedDate may be rounded to the second.
    let period = Duration::from_secs(2);
    racing_instances(
        &vars,
        period,
        Duration::from_millis(50),
        Duration::from_secs(5),
        Duration::from_secs(1),
    )
    .await;
}

/// Secret Manager has no check-and-set on addVersion: the etag-guarded
/// claim annotation makes one rotation per period (in-process emulator).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_rotation_racing_instances_gcp() {
    let emu = kms_gcp_emulator::Emulator::start().await.unwrap();
    let admin = kms_tests::fixtures::gcp::admin(&emu).await;
    kms_tests::fixtures::gcp::create_key(&admin, "default", &KeyMaterial::generate().to_hex())
        .await;
    let vars = kms_tests::fixtures::gcp::spec_env(&emu, &[("KMS_CACHE_TTL", "0")]);
    let period = Duration::from_secs(1);
    racing_instances(
        &vars,
        period,
        Duration::from_millis(25),
        Duration::from_millis(2_500),
        Duration::ZERO,
    )
    .await;
}
