//! The AWS provider against LocalStack (KMS and SSM) in a container, keys
//! made the way the spec's set-up makes them (`aws kms create-key ...`,
//! `aws ssm put-parameter ... --type SecureString --key-id ...`, done here
//! with the AWS SDK), used with only the spec's variables plus LocalStack's
//! endpoint and dummy credentials.

use std::sync::Arc;

use aws_sdk_ssm::types::ParameterType;
use kms::aws::AwsProvider;

use kms::{Error, KeyId, KeyProvider, KeyVersion, LiveVersions};
use kms_tests::conformance::{self, Expect};

use crate::scenarios;
use kms_tests::fixtures::aws::{Aws, create_kms_key, parameter};
use kms_tests::fixtures::{DESCRIPTION, error_chain, kms_cli, kms_from, random_hex, text_version};

/// The spec's set-up, end to end: the parameter's key encrypts and
/// decrypts through the library and through the `kms` CLI, in both
/// directions; `kms health` and `kms metadata` report it; a rotation
/// reaches another process at once and keeps old ciphertexts readable.
#[tokio::test]
async fn aws_spec_setup_through_library_and_cli() {
    kms_tests::skip_without_docker!();
    let scenarios::SetUp {
        fixture: aws,
        vars,
        kms,
        stored,
        metadata,
    } = scenarios::spec_setup::<Aws>().await;
    let secret = scenarios::SECRET;
    // The spec's put-parameter sets no description: the KMS key's is shown.
    assert_eq!(metadata["description"], DESCRIPTION);

    // Rotation through the CLI's library, seen by another process at once.
    let other = kms_from(&vars).await;
    assert_eq!(
        other.decrypt_str(&stored, b"users:42").await.unwrap(),
        secret
    );
    let v2 = kms.rotate().await.unwrap();
    assert_eq!(v2.as_str(), "2");
    let new = kms.encrypt_str("after", b"").await.unwrap();
    assert_eq!(text_version(&new), v2);
    assert_eq!(other.decrypt_str(&new, b"").await.unwrap(), "after");
    assert_eq!(kms.decrypt_str(&stored, b"users:42").await.unwrap(), secret);
    // The new version is a SecureString under the same KMS key, found
    // without KMS_AWS_KMS_KEY_ID.
    let history = aws
        .ssm
        .get_parameter_history()
        .name(parameter("default"))
        .send()
        .await
        .unwrap();
    let last = history.parameters().last().unwrap();
    assert_eq!(last.version(), 2);
    assert_eq!(last.r#type(), Some(&ParameterType::SecureString));
    assert!(
        last.key_id().unwrap().contains(&aws.key_id),
        "{:?}",
        last.key_id()
    );
    let meta = kms.metadata().await.unwrap();
    assert_eq!(meta.current_version, Some(KeyVersion::from(2)));
    assert!(meta.last_rotated.is_some());
    let (code, out, err) = kms_cli(&vars, &["rotate"], b"").await;
    assert_eq!(code, 0, "kms rotate: {out} {err}");
    assert!(out.contains('3'), "{out}");

    // KMS automatic rotation of the wrapping key.
    aws.provider()
        .await
        .enable_key_rotation(&KeyId::default())
        .await
        .unwrap();
    let status = aws
        .kms
        .get_key_rotation_status()
        .key_id(&aws.key_id)
        .send()
        .await
        .unwrap();
    assert!(status.key_rotation_enabled());
}

#[tokio::test]
async fn aws_provider_conformance() {
    kms_tests::skip_without_docker!();
    let aws = Aws::start().await;
    let p = aws.provider().await;
    conformance::run(Arc::new(p), &KeyId::default(), Expect { rotates: true }).await;
}

/// SSM has no check-and-set: concurrent rotations each write a version, and
/// every rotation writes one version and returns it (none reports an error
/// after writing). No version is lost; every one stays readable.
#[tokio::test]
async fn aws_concurrent_rotations_lose_nothing() {
    kms_tests::skip_without_docker!();
    let aws = Aws::start().await;
    let (p1, p2) = (aws.provider().await, aws.provider().await);
    let id = KeyId::default();
    let results: Vec<_> = futures_join(&p1, &p2, &id).await;
    // Each request wrote exactly one version and returns it: none reports
    // an error after writing (which would invite a retry, a second write).
    let mut written: Vec<String> = results
        .iter()
        .map(|r| r.as_ref().unwrap().version().to_string())
        .collect();
    written.sort();
    written.dedup();
    assert_eq!(written.len(), results.len(), "{results:?}");
    let versions = p1.versions(&id).await.unwrap();
    assert_eq!(versions.len(), 1 + results.len(), "{versions:?}");
    for v in &versions {
        p2.key_version(&id, &v.version).await.unwrap();
    }
}

/// Four rotations, two through each provider, all started at once.
async fn futures_join(
    p1: &AwsProvider,
    p2: &AwsProvider,
    id: &KeyId,
) -> Vec<kms::Result<kms::DataKey>> {
    let all = LiveVersions::all();
    let (a, b, c, d) = tokio::join!(
        p1.rotate(id, &all),
        p2.rotate(id, &all),
        p1.rotate(id, &all),
        p2.rotate(id, &all)
    );
    vec![a, b, c, d]
}

/// The spec's error wording (the shared scenario; LocalStack takes any
/// credentials, so there is no refusal to check here).
#[tokio::test]
async fn aws_errors_use_the_spec_wording() {
    kms_tests::skip_without_docker!();
    scenarios::errors_use_the_spec_wording::<Aws>().await;
}

/// What the shared scenario cannot ask of every provider: versions that do
/// not exist, rotating a missing key, and a KMS key that was disabled.
#[tokio::test]
async fn aws_errors_are_typed() {
    kms_tests::skip_without_docker!();
    let aws = Aws::start().await;
    let p = aws.provider().await;
    let id = KeyId::default();

    // (The spec's wording of a missing key and a malformed value:
    // aws_errors_use_the_spec_wording.)
    let kms = kms_from(&aws.env(&[("KMS_KEY_ID", "missing-key")])).await;
    let err = kms.rotate().await.unwrap_err();
    assert_eq!(err.to_string(), "Encryption key not found: missing-key");

    for version in ["7", "0", "x"] {
        let err = p
            .key_version(&id, &KeyVersion::new(version).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::KeyNotFound { .. }),
            "{version}: {err:?}"
        );
    }

    // A parameter under its own KMS key, which is then disabled.
    let disabled_key = create_kms_key(&aws.kms).await;
    aws.put("disabled", &random_hex(), &disabled_key).await;
    aws.kms
        .disable_key()
        .key_id(&disabled_key)
        .send()
        .await
        .unwrap();
    let disabled = KeyId::new("disabled").unwrap();
    // (LocalStack's SSM does not enforce the KMS key's state when reading;
    // AWS refuses the decryption, which maps to the same error.)
    let err = p.rotate(&disabled, &LiveVersions::all()).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Access denied to encryption key",
        "{err:?}"
    );
    let chain = error_chain(&err);
    assert!(chain.contains("Disabled"), "{chain}");
    let meta = p.metadata(&disabled).await.unwrap();
    assert!(!meta.enabled, "{meta:?}");
}

/// An outage (LocalStack frozen): cached keys keep working, uncached calls
/// fail within the timeout budget, the circuit opens and then fails fast,
/// and the stack recovers by itself once LocalStack is back.
#[tokio::test]
async fn aws_outage_fails_fast_and_recovers() {
    kms_tests::skip_without_docker!();
    scenarios::outage::<Aws>().await;
}

/// SSM keeps 100 versions of a parameter. 101 rotations from the spec's
/// set-up: the 99 that fit are written, the one that would delete version
/// 1 is refused before writing, and the first value still decrypts. The
/// oldest live version carries the label that makes SSM itself refuse (a
/// writer that skips our check gets `ParameterMaxVersionLimitExceeded`).
/// With version 1 retired, the label moves to version 2 and rotation goes on.
#[tokio::test]
async fn aws_retention_101_rotations_lose_nothing() {
    kms_tests::skip_without_docker!();
    let aws = Aws::start().await;
    let vars = aws.env(&[("KMS_CACHE_TTL", "0")]);
    let kms = kms_from(&vars).await;
    let first = kms.encrypt_str("first", b"").await.unwrap();
    let mut refused = 0;
    for n in 2..=102u64 {
        match kms.rotate().await {
            Ok(v) => {
                assert_eq!(v, KeyVersion::from(n));
                assert!(n <= 100, "version {n} written");
            }
            Err(e) => {
                assert!(n > 100, "rotation to {n} refused: {e}");
                assert_eq!(e.code(), "RETENTION_EXHAUSTED", "{e}");
                assert!(e.to_string().contains("delete version 1"), "{e}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 2);
    let id = KeyId::default();
    let listed = kms.provider().versions(&id).await.unwrap();
    assert_eq!(listed.len(), 100);
    assert_eq!(
        kms_from(&vars)
            .await
            .decrypt_str(&first, b"")
            .await
            .unwrap(),
        "first"
    );
    let meta = kms.metadata().await.unwrap();
    assert_eq!(
        (meta.max_versions, meta.versions_remaining),
        (Some(100), Some(0))
    );

    // SSM's own guard: version 1 is labelled, so a direct write is refused.
    let history = aws
        .ssm
        .get_parameter_history()
        .name(parameter("default"))
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert!(
        history.parameters()[0]
            .labels()
            .iter()
            .any(|l| l == kms::aws::LIVE_LABEL),
        "{history:?}"
    );
    let direct = aws
        .ssm
        .put_parameter()
        .name(parameter("default"))
        .value(random_hex())
        .r#type(ParameterType::SecureString)
        .key_id(&aws.key_id)
        .overwrite(true)
        .send()
        .await
        .unwrap_err();
    let code = direct.as_service_error().and_then(|e| e.meta().code());
    assert_eq!(code, Some("ParameterMaxVersionLimitExceeded"), "{direct:?}");

    // Version 1 retired: the label moves to 2 and one more version fits.
    let retiring =
        kms_from(&aws.env(&[("KMS_CACHE_TTL", "0"), ("KMS_MIN_DECRYPTION_VERSION", "2")])).await;
    assert_eq!(retiring.rotate().await.unwrap().as_str(), "101");
    let listed = retiring.provider().versions(&id).await.unwrap();
    assert_eq!(listed.first().unwrap().version.as_str(), "2");
    assert_eq!(
        retiring.rotate().await.unwrap_err().code(),
        "RETENTION_EXHAUSTED"
    );

    // An operator's label on the oldest (retired) version: our check lets
    // the write through (version 2 is retired), SSM refuses it, and the
    // refusal names that version and its label.
    aws.ssm
        .label_parameter_version()
        .name(parameter("default"))
        .parameter_version(2)
        .labels("ops-keep")
        .send()
        .await
        .unwrap();
    let retiring3 =
        kms_from(&aws.env(&[("KMS_CACHE_TTL", "0"), ("KMS_MIN_DECRYPTION_VERSION", "3")])).await;
    let err = retiring3.rotate().await.unwrap_err();
    assert_eq!(err.code(), "RETENTION_EXHAUSTED", "{err}");
    let text = err.to_string();
    assert!(
        text.contains("delete version 2") && text.contains("ops-keep"),
        "{text}"
    );
    assert_eq!(retiring3.provider().versions(&id).await.unwrap().len(), 100);
}
