//! The AWS provider against LocalStack (KMS and SSM) in a container, keys
//! made the way the spec's set-up makes them (`aws kms create-key ...`,
//! `aws ssm put-parameter ... --type SecureString --key-id ...`, done here
//! with the AWS SDK), used with only the spec's variables plus LocalStack's
//! endpoint and dummy credentials.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use aws_sdk_ssm::config::Credentials;
use aws_sdk_ssm::types::ParameterType;
use kms::aws::AwsProvider;

use kms::{Envelope, Error, KeyId, KeyProvider, KeyVersion, LiveVersions};
use kms_tests::conformance::{self, Expect};
use kms_tests::containers::ServerContainer;
use kms_tests::containers::{self, LocalStackServer};

use crate::scenarios;
use kms_tests::fixtures::{DESCRIPTION, error_chain, kms_cli, kms_from, random_hex, text_version};

const REGION: &str = "us-east-1";

fn parameter(key_id: &str) -> String {
    format!("/boosterbeacon/encryption-keys/{key_id}")
}

/// LocalStack with the spec's set-up done: a KMS key and the parameter of
/// key id `default`.
pub(crate) struct Aws {
    server: LocalStackServer,
    kms: aws_sdk_kms::Client,
    ssm: aws_sdk_ssm::Client,
    /// The KMS key of the spec's step 1.
    pub(crate) key_id: String,
    /// The value of the parameter of `default`.
    key: String,
}

async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .load()
        .await
}

impl Aws {
    pub(crate) async fn start() -> Self {
        let server = containers::localstack().await;
        let config = sdk_config(&server.endpoint).await;
        let kms = aws_sdk_kms::Client::new(&config);
        let ssm = aws_sdk_ssm::Client::new(&config);
        let key_id = create_kms_key(&kms).await;
        let aws = Aws {
            server,
            kms,
            ssm,
            key_id,
            key: random_hex(),
        };
        aws.put("default", &aws.key, &aws.key_id).await;
        aws
    }

    /// The spec's step 2: `aws ssm put-parameter --name <prefix>/<id>
    /// --value <hex> --type SecureString --key-id <kms key>`.
    async fn put(&self, key_id: &str, value: &str, kms_key: &str) -> i64 {
        self.ssm
            .put_parameter()
            .name(parameter(key_id))
            .value(value)
            .r#type(ParameterType::SecureString)
            .key_id(kms_key)
            .overwrite(true)
            .send()
            .await
            .unwrap()
            .version()
    }

    /// The spec's step 3 as a variable lookup, plus LocalStack's endpoint
    /// and dummy credentials, plus `extra`.
    pub(crate) fn env(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = [
            ("KMS_PROVIDER", "aws"),
            ("KMS_KEY_ID", "default"),
            ("AWS_REGION", REGION),
            ("AWS_ENDPOINT_URL", self.server.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        vars
    }

    async fn provider(&self) -> AwsProvider {
        AwsProvider::builder()
            .region(REGION)
            .endpoint_url(&self.server.endpoint)
            .credentials("test", "test", None)
            .build()
            .await
            .unwrap()
    }
}

/// The spec's step 1: `aws kms create-key --description ... --key-usage
/// ENCRYPT_DECRYPT --key-spec SYMMETRIC_DEFAULT`; returns the key id.
async fn create_kms_key(kms: &aws_sdk_kms::Client) -> String {
    let out = kms
        .create_key()
        .description(DESCRIPTION)
        .key_usage(KeyUsageType::EncryptDecrypt)
        .key_spec(KeySpec::SymmetricDefault)
        .send()
        .await
        .unwrap();
    out.key_metadata().unwrap().key_id().to_owned()
}

/// The spec's set-up, end to end: the parameter's key encrypts and
/// decrypts through the library and through the `kms` CLI, in both
/// directions; `kms health` and `kms metadata` report it; a rotation
/// reaches another process at once and keeps old ciphertexts readable.
#[tokio::test]
async fn aws_spec_setup_through_library_and_cli() {
    kms_tests::skip_without_docker!();
    let aws = Aws::start().await;
    let vars = aws.env(&[]);
    let kms = kms_from(&vars).await;
    assert_eq!(kms.config().provider, "aws");

    let current = kms.provider().current_key(&KeyId::default()).await.unwrap();
    assert_eq!(*current.material().to_hex(), aws.key);
    assert_eq!(current.version().as_str(), "1");

    let secret = "sk_live_51H8example";
    let stored = kms.encrypt_str(secret, b"users:42").await.unwrap();
    assert_eq!(kms.decrypt_str(&stored, b"users:42").await.unwrap(), secret);
    assert_eq!(text_version(&stored).as_str(), "1");

    scenarios::cli_round_trip(&vars, &kms, secret, &stored, "aws").await;

    let (code, out, err) = kms_cli(&vars, &["metadata"], b"").await;
    assert_eq!(code, 0, "kms metadata: {err}");
    let meta: serde_json::Value = serde_json::from_str(&out).unwrap();
    let data = &meta["data"];
    assert_eq!(data["keyId"], "default", "{out}");
    // The spec's put-parameter sets no description: the KMS key's is shown.
    assert_eq!(data["description"], DESCRIPTION, "{out}");
    assert_eq!(data["enabled"], true, "{out}");
    assert_eq!(data["keyUsage"], "ENCRYPT_DECRYPT", "{out}");
    assert_eq!(data["keySpec"], "AES-256", "{out}");
    assert_eq!(data["currentVersion"], "1", "{out}");
    assert!(data["createdAt"].is_string(), "{out}");
    assert!(data["lastRotated"].is_null(), "never rotated: {out}");
    assert!(!out.contains(&aws.key), "metadata shows the key: {out}");

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

/// Missing parameter, missing version, malformed value, disabled KMS key:
/// typed, permanent errors with the spec's wording, never retried.
#[tokio::test]
async fn aws_errors_are_typed() {
    kms_tests::skip_without_docker!();
    let aws = Aws::start().await;
    let p = aws.provider().await;
    let id = KeyId::default();

    let kms = kms_from(&aws.env(&[("KMS_KEY_ID", "missing-key")])).await;
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Encryption key not found: missing-key");
    assert!(err.is_permanent());
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

    aws.put("malformed", "nothex", &aws.key_id).await;
    let kms = kms_from(&aws.env(&[("KMS_KEY_ID", "malformed")])).await;
    let err = kms.encrypt(b"x", b"").await.unwrap_err();
    assert_eq!(err.to_string(), "Invalid key length: expected 32 bytes");
    assert!(err.is_permanent());
    assert!(!format!("{err:?}").contains("nothex"));

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
    let aws = Aws::start().await;
    aws.put("second", &random_hex(), &aws.key_id).await;
    let open_for = Duration::from_millis(2000);
    let vars = aws.env(&[
        ("KMS_TIMEOUT", "300"),
        ("KMS_RETRY_ATTEMPTS", "1"),
        ("KMS_CIRCUIT_FAILURE_THRESHOLD", "3"),
        ("KMS_CIRCUIT_OPEN_DURATION", "2000"),
    ]);
    let kms = kms_from(&vars).await;
    let cached_ct = kms.encrypt(b"cached", b"").await.unwrap();

    // Version 2 is written by another instance; this `kms` never fetches it
    // before the outage.
    let other = kms_from(&vars).await;
    other.rotate().await.unwrap();
    let unseen_ct = other.encrypt(b"unseen", b"").await.unwrap();
    assert_eq!(
        Envelope::parse(&unseen_ct)
            .unwrap()
            .key_version()
            .unwrap()
            .as_str(),
        "2"
    );

    let second = kms.with_key_id(KeyId::new("second").unwrap());
    scenarios::outage_fails_fast_and_recovers(
        &kms,
        &second,
        &cached_ct,
        &unseen_ct,
        open_for,
        scenarios::Outage::Hangs,
        aws.server.pause(),
        aws.server.unpause(),
    )
    .await;
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
