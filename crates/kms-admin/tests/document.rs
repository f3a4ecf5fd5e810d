//! The configuration document of `PUT /config` and `POST /config/test`
//! cannot weaken the server (issue 13, hole 2): lifecycle settings
//! (rotation period, minimum decryption version), side effects of a test,
//! and the server's ambient credentials at an endpoint of the document's
//! choosing.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "helpers outside `#[test]` functions, which clippy.toml's allow-*-in-tests misses"
)]

#[cfg(feature = "aws")]
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{Method, StatusCode};
use kms::{KeyId, KeyProvider as _, Kms};
use kms_admin::{AdminConfig, AuthConfig, SharedKms};
use serde_json::{Value, json};

mod common;
use common::{CONFIG, CONFIG_TEST, KEY1, KEY2, Reply, TOKEN, app, call, settings};

const KEY0: &str = "0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";
/// `ENCRYPTION_KEY_PREVIOUS` of KEY1 then KEY0 (most recent first).
const PREVIOUS: &str = "8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334,\
                        0f0e0d0c0b0a09080706050403020100f0e0d0c0b0a090807060504030201000";

fn config_with(vars: &[(&'static str, &'static str)]) -> AdminConfig {
    let mut c = AdminConfig::new(AuthConfig::new().admin_token(TOKEN).unwrap());
    c.settings = settings(vars);
    c.limits.requests_per_minute = 0;
    c.limits.sensitive_per_minute = 0;
    c
}

fn config() -> AdminConfig {
    config_with(&[("KMS_PROVIDER", "env"), ("ENCRYPTION_KEY", KEY1)])
}

async fn env_kms(current: &str) -> Kms {
    common::env_kms(current, None).await
}

/// A JSON request with the admin token.
async fn send(app: &Router, method: Method, path: &str, body: &Value) -> Reply {
    let c = call(method, path);
    let c = if body.is_null() {
        c
    } else {
        c.body(body.to_string())
    };
    c.send(app).await
}

/// [`send`], answered 200.
async fn accepted(app: &Router, method: Method, path: &str, body: &Value) -> Reply {
    let r = send(app, method, path, body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r
}

/// Both routes refuse `body` with 400 `INVALID_CONFIG` naming `field`.
async fn refused(app: &Router, body: &Value, field: &str) {
    for (method, path) in [(Method::POST, CONFIG_TEST), (Method::PUT, CONFIG)] {
        let r = send(app, method.clone(), path, body).await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{method} {body}: {}",
            r.text
        );
        assert_eq!(r.json["error"]["code"], "INVALID_CONFIG", "{}", r.text);
        let message = r.json["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{field}`")), "{body}: {message}");
    }
}

async fn active_config(app: &Router) -> Value {
    accepted(app, Method::GET, CONFIG, &Value::Null).await.json["data"].clone()
}

// Rotation period.

/// A region is pasted into the AWS endpoint's host name: one that is not a
/// plain region name would move the endpoint without the document naming
/// one, and the server's ambient credentials would go there.
#[cfg(feature = "aws")]
#[tokio::test]
async fn an_aws_region_that_moves_the_endpoint_is_refused() {
    let (app, _) = app(env_kms(KEY1).await, config());
    for region in ["attacker.example/", "us-east-1.evil.example", "x?y"] {
        let body = json!({"provider": "aws", "region": region});
        for (method, path) in [(Method::POST, CONFIG_TEST), (Method::PUT, CONFIG)] {
            let r = send(&app, method, path, &body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{region}: {}", r.text);
            assert_eq!(r.json["error"]["code"], "INVALID_CONFIG", "{}", r.text);
            assert!(r.text.contains("AWS_REGION"), "{}", r.text);
        }
    }
}

#[tokio::test]
async fn a_rotation_period_under_an_hour_is_refused() {
    let (app, _) = app(env_kms(KEY1).await, config());
    for period in [json!("1ms"), json!(1), json!("59m"), json!("0"), json!("")] {
        refused(
            &app,
            &json!({"provider":"env","rotationPeriod":period}),
            "rotationPeriod",
        )
        .await;
    }
    assert_eq!(active_config(&app).await["rotationPeriod"], Value::Null);
    // An hour or more is accepted (reported by the test, set by the swap).
    let r = accepted(
        &app,
        Method::POST,
        CONFIG_TEST,
        &json!({"provider":"env","rotationPeriod":"1h"}),
    )
    .await;
    assert_eq!(r.json["data"]["rotationPeriod"], 3_600_000);
    assert_eq!(active_config(&app).await["rotationPeriod"], Value::Null);
}

#[tokio::test]
async fn a_rotation_period_left_out_keeps_the_servers() {
    // The running server's period (here set in code, shorter than a
    // document may set), not its environment's (which has none).
    let kms = Kms::builder()
        .env_key(KEY1)
        .rotation_period(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    let (app, _) = app(kms, config());
    accepted(
        &app,
        Method::PUT,
        CONFIG,
        &json!({"provider":"env","timeout":2500}),
    )
    .await;
    let active = active_config(&app).await;
    assert_eq!(active["timeout"], 2500);
    assert_eq!(active["rotationPeriod"], 600_000);
    accepted(
        &app,
        Method::PUT,
        CONFIG,
        &json!({"provider":"env","rotationPeriod":"90d"}),
    )
    .await;
    assert_eq!(
        active_config(&app).await["rotationPeriod"],
        7_776_000_000_u64
    );
    accepted(&app, Method::PUT, CONFIG, &json!({"provider":"env"})).await;
    assert_eq!(
        active_config(&app).await["rotationPeriod"],
        7_776_000_000_u64
    );
}

// Minimum decryption version.

/// A server on the env provider with versions KEY0, KEY1, KEY2 (oldest
/// first), KEY1 the minimum; the versions' names; a ciphertext under KEY0.
async fn retired_setup() -> (Router, SharedKms, [String; 3], Vec<u8>) {
    assert_eq!(PREVIOUS, format!("{KEY1},{KEY0}"));
    let under_key0 = env_kms(KEY0).await.encrypt(b"old", b"").await.unwrap();
    let plain = Kms::builder()
        .env_key(KEY2)
        .env_previous_key(KEY1)
        .env_previous_key(KEY0)
        .build()
        .await
        .unwrap();
    let names: Vec<String> = plain
        .provider()
        .versions(&KeyId::default())
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version.to_string())
        .collect();
    let fingerprints: Vec<String> = [KEY0, KEY1, KEY2]
        .iter()
        .map(|k| {
            kms::KeyMaterial::from_hex(k)
                .unwrap()
                .fingerprint()
                .to_string()
        })
        .collect();
    assert_eq!(
        names, fingerprints,
        "env versions are fingerprints, oldest first"
    );
    let names: [String; 3] = names.try_into().unwrap();
    let kms = Kms::builder()
        .env_key(KEY2)
        .env_previous_key(KEY1)
        .env_previous_key(KEY0)
        .min_decryption_version(KeyId::default(), names[1].parse().unwrap())
        .build()
        .await
        .unwrap();
    let c = config_with(&[
        ("KMS_PROVIDER", "env"),
        ("ENCRYPTION_KEY", KEY2),
        ("ENCRYPTION_KEY_PREVIOUS", PREVIOUS),
    ]);
    let (app, shared) = app(kms, c);
    (app, shared, names, under_key0)
}

async fn assert_retired(shared: &SharedKms, ciphertext: &[u8]) {
    let err = shared.kms().decrypt(ciphertext, b"").await.unwrap_err();
    assert!(
        matches!(err, kms::Error::KeyVersionRetired { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_minimum_decryption_version_cannot_be_removed_or_lowered() {
    let (app, shared, names, under_key0) = retired_setup().await;
    assert_retired(&shared, &under_key0).await;
    for minimum in [json!(""), json!("  "), json!(names[0])] {
        refused(
            &app,
            &json!({"provider":"env","minDecryptionVersion":minimum}),
            "minDecryptionVersion",
        )
        .await;
    }
    // A version the key does not have: refused, naming the field.
    refused(
        &app,
        &json!({"provider":"env","minDecryptionVersion":"no-such-version"}),
        "minDecryptionVersion",
    )
    .await;
    assert_retired(&shared, &under_key0).await;
    assert_eq!(
        active_config(&app).await["minDecryptionVersion"],
        names[1].as_str()
    );
}

#[tokio::test]
async fn a_minimum_decryption_version_left_out_stays_and_may_be_raised() {
    let (app, shared, names, under_key0) = retired_setup().await;
    let under_key1 = env_kms(KEY1).await.encrypt(b"mid", b"").await.unwrap();
    // Left out: the server's minimum stays (its environment has none).
    let r = accepted(
        &app,
        Method::PUT,
        CONFIG,
        &json!({"provider":"env","timeout":2500}),
    )
    .await;
    assert_eq!(
        r.json["data"]["config"]["minDecryptionVersion"],
        names[1].as_str()
    );
    assert_retired(&shared, &under_key0).await;
    assert_eq!(
        shared.kms().decrypt(&under_key1, b"").await.unwrap(),
        b"mid"
    );
    // The same minimum again is not a lowering.
    let same = json!({"provider":"env","minDecryptionVersion":names[1]});
    accepted(&app, Method::POST, CONFIG_TEST, &same).await;
    // Raising it is allowed.
    let raise = json!({"provider":"env","minDecryptionVersion":names[2]});
    accepted(&app, Method::PUT, CONFIG, &raise).await;
    assert_retired(&shared, &under_key1).await;
    // And cannot come back down.
    refused(
        &app,
        &json!({"provider":"env","minDecryptionVersion":names[1]}),
        "minDecryptionVersion",
    )
    .await;
}

#[tokio::test]
async fn another_key_id_cannot_drop_the_servers_minimum() {
    // A ciphertext names its key id, so the new configuration would still
    // decrypt the old key's data if it had it: the server's minimum for
    // that key must come along, and cannot when the new provider lacks
    // the key.
    let (app, shared, names, under_key0) = retired_setup().await;
    refused(
        &app,
        &json!({"provider":"env","keyId":"other"}),
        "minDecryptionVersion",
    )
    .await;
    refused(
        &app,
        &json!({"provider":"env","keyId":"other","minDecryptionVersion":""}),
        "minDecryptionVersion",
    )
    .await;
    assert_retired(&shared, &under_key0).await;
    assert_eq!(
        active_config(&app).await["minDecryptionVersion"],
        names[1].as_str()
    );
}

// A fake provider endpoint: records every request, answers as SSM would
// for one parameter (version 1, written in 2020, so due for rotation under
// any period), and counts everything that is not a read.
#[cfg(any(feature = "aws", feature = "vault", feature = "gcp"))]
#[allow(dead_code, reason = "parts serve only some of the provider features")]
mod fake {
    use std::sync::Mutex;

    use super::*;

    #[derive(Clone, Debug)]
    pub(crate) struct Seen {
        pub(crate) target: String,
        pub(crate) path: String,
        pub(crate) headers: Vec<(String, String)>,
        pub(crate) body: String,
    }

    impl Seen {
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    #[derive(Default)]
    pub(crate) struct FakeState {
        pub(crate) seen: Mutex<Vec<Seen>>,
        pub(crate) key: Mutex<String>,
        /// Delay of GetParameter answers (the key fetch of a test).
        pub(crate) slow_get: Mutex<Duration>,
    }

    #[derive(Clone)]
    pub(crate) struct Fake {
        pub(crate) url: String,
        pub(crate) state: Arc<FakeState>,
    }

    impl Fake {
        pub(crate) async fn start(key: &str) -> Fake {
            let state = Arc::new(FakeState::default());
            *state.key.lock().unwrap() = key.to_owned();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let app = Router::new()
                .fallback(fake_answer)
                .with_state(state.clone());
            tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Fake { url, state }
        }

        pub(crate) fn seen(&self) -> Vec<Seen> {
            self.state.seen.lock().unwrap().clone()
        }

        /// Requests other than reads (`Get*`, `Describe*`, `List*`).
        pub(crate) fn writes(&self) -> Vec<String> {
            self.seen()
                .into_iter()
                .map(|s| s.target)
                .filter(|t| {
                    let action = t.rsplit('.').next().unwrap_or_default();
                    !t.is_empty()
                        && !["Get", "Describe", "List"]
                            .iter()
                            .any(|read| action.starts_with(read))
                })
                .collect()
        }
    }

    async fn fake_answer(
        axum::extract::State(state): axum::extract::State<Arc<FakeState>>,
        uri: axum::http::Uri,
        headers: axum::http::HeaderMap,
        body: axum::body::Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse as _;
        let target = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        state.seen.lock().unwrap().push(Seen {
            target: target.clone(),
            path: uri.path().to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let name = request["Name"]
            .as_str()
            .unwrap_or("/boosterbeacon/encryption-keys/default")
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let key = state.key.lock().unwrap().clone();
        let entry = json!({"Name":name,"Type":"SecureString","KeyId":"alias/aws/ssm","Version":1,
            "LastModifiedDate":1_577_836_800.0,"Labels":[],"DataType":"text"});
        let answer = match target.as_str() {
            "AmazonSSM.DescribeParameters" => json!({"Parameters":[{
                "Name":"/boosterbeacon/encryption-keys/default","Type":"SecureString",
                "KeyId":"alias/aws/ssm","Version":1,"LastModifiedDate":1_577_836_800.0}]}),
            "AmazonSSM.GetParameterHistory" => json!({ "Parameters": [entry] }),
            "AmazonSSM.GetParameter" => {
                let delay = *state.slow_get.lock().unwrap();
                tokio::time::sleep(delay).await;
                let mut p = entry;
                p["Value"] = Value::String(key);
                json!({ "Parameter": p })
            }
            _ => {
                return (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/x-amz-json-1.1")],
                    json!({"__type":"AccessDeniedException","message":"denied by the test",
                        "errors":["permission denied"],"error":{"code":403,"status":"PERMISSION_DENIED"}})
                    .to_string(),
                )
                    .into_response();
            }
        };
        (
            [("content-type", "application/x-amz-json-1.1")],
            answer.to_string(),
        )
            .into_response()
    }
}
#[cfg(any(feature = "aws", feature = "vault", feature = "gcp"))]
use fake::{Fake, Seen};

#[cfg(feature = "aws")]
mod aws {
    use super::*;
    use kms_testing::capture::LogCapture;

    const DOC_KEY_ID: &str = "AKIADOCUMENT00000001";
    const DOC_SECRET: &str = "document-secret-access-key-0000000000000";
    const DOC_SESSION: &str = "document-session-token-0000";

    fn aws_doc(fake: &Fake, extra: &Value) -> Value {
        let mut doc = json!({
            "provider":"aws","region":"us-east-1","endpoint":fake.url,
            "retryAttempts":0,"timeout":5000,
            "credentials":{"accessKeyId":DOC_KEY_ID,"secretAccessKey":DOC_SECRET},
        });
        for (k, v) in extra.as_object().unwrap() {
            doc[k] = v.clone();
        }
        doc
    }

    const SCHEDULER_STARTED: &str = "scheduled rotation enabled";

    #[tokio::test(flavor = "current_thread")]
    async fn a_config_test_starts_no_scheduler_and_writes_nothing() {
        let captured = LogCapture::new();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(captured.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Tests on other threads run without a subscriber: a callsite they
        // register meanwhile may have its interest cached as "never".
        // Recomputed here and before each step; the last step proves the
        // event is captured when it happens.
        tracing::callsite::rebuild_interest_cache();
        let fake = Fake::start(KEY1).await;
        let (app, shared) = app(env_kms(KEY1).await, config());

        // A period the document may set, a key that is due: the test
        // reports the period, starts nothing, writes nothing.
        tracing::callsite::rebuild_interest_cache();
        let doc = aws_doc(&fake, &json!({"rotationPeriod":"1h"}));
        let r = send(&app, Method::POST, CONFIG_TEST, &doc).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !captured.contents().contains(SCHEDULER_STARTED),
            "{}",
            captured.contents()
        );
        assert!(!fake.seen().is_empty());
        assert_eq!(fake.writes(), Vec::<String>::new());
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.json["data"]["keyAvailable"], true, "{}", r.text);
        assert_eq!(r.json["data"]["rotationPeriod"], 3_600_000);

        // A period that would rotate continuously, with a slow key fetch
        // that gives a scheduler all the time it needs: refused, nothing
        // written.
        *fake.state.slow_get.lock().unwrap() = Duration::from_millis(300);
        let doc = aws_doc(&fake, &json!({"rotationPeriod":"1ms"}));
        let r = send(&app, Method::POST, CONFIG_TEST, &doc).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(fake.writes(), Vec::<String>::new());
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
        *fake.state.slow_get.lock().unwrap() = Duration::ZERO;

        // A swap refused by the continuity check starts no scheduler either.
        *fake.state.key.lock().unwrap() = KEY2.to_owned();
        tracing::callsite::rebuild_interest_cache();
        let doc = aws_doc(&fake, &json!({"rotationPeriod":"1h"}));
        let r = send(&app, Method::PUT, CONFIG, &doc).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
        assert!(!captured.contents().contains(SCHEDULER_STARTED));
        assert_eq!(shared.kms().config().provider, "env");

        // A swap that goes through starts it, once, and has written nothing
        // yet (the first check comes minutes later).
        *fake.state.key.lock().unwrap() = KEY1.to_owned();
        tracing::callsite::rebuild_interest_cache();
        let r = accepted(&app, Method::PUT, CONFIG, &doc).await;
        assert_eq!(r.json["data"]["config"]["rotationPeriod"], 3_600_000);
        assert_eq!(shared.kms().config().provider, "aws");
        assert_eq!(captured.contents().matches(SCHEDULER_STARTED).count(), 1);
        assert_eq!(fake.writes(), Vec::<String>::new());
    }

    // The server's ambient AWS credentials (process environment) at an
    // endpoint of the document's choosing. The AWS SDK reads the process
    // environment itself and tests may not change it (`unsafe_code` is
    // forbidden), so the check runs in a child process of this test binary
    // started with fake ambient credentials.

    const AMBIENT_MARKER: &str = "KMS_ADMIN_TEST_AMBIENT_AWS";
    const AMBIENT_KEY_ID: &str = "AKIAFAKEAMBIENT00000";
    const AMBIENT_SECRET: &str = "fake-ambient-secret-access-key-000000000";
    const AMBIENT_SESSION: &str = "FAKEAMBIENTSESSIONTOKEN0000";

    #[test]
    fn the_servers_ambient_aws_credentials_never_go_to_a_moved_endpoint() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "aws::ambient_credentials_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(AMBIENT_MARKER, "1")
            .env("AWS_ACCESS_KEY_ID", AMBIENT_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", AMBIENT_SECRET)
            .env("AWS_SESSION_TOKEN", AMBIENT_SESSION)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/nonexistent/kms-admin-test/config")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/kms-admin-test/credentials",
            )
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ENDPOINT_URL")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
    }

    /// Run by the test above, with the fake ambient credentials.
    #[tokio::test]
    #[ignore = "run in a child process by the_servers_ambient_aws_credentials_never_go_to_a_moved_endpoint"]
    async fn ambient_credentials_child() {
        if std::env::var(AMBIENT_MARKER).is_err() {
            eprintln!("skipped: needs the environment its parent test sets");
            return;
        }
        let fake = Fake::start(KEY1).await;
        // The server as `kms serve` runs it: the env provider active, its
        // settings from the process environment (which holds AWS
        // credentials).
        let mut c = config();
        c.settings = Arc::new(|name: &str| match name {
            "KMS_PROVIDER" => Some("env".to_owned()),
            "ENCRYPTION_KEY" => Some(KEY1.to_owned()),
            other => std::env::var(other).ok(),
        });
        let (app, _) = app(env_kms(KEY1).await, c);
        let ambient = [AMBIENT_KEY_ID, AMBIENT_SECRET, AMBIENT_SESSION];
        let no_ambient = |fake: &Fake| {
            for seen in fake.seen() {
                for (name, value) in &seen.headers {
                    for a in ambient {
                        assert!(!value.contains(a), "{name}: {value}");
                    }
                }
                for a in ambient {
                    assert!(!seen.body.contains(a), "{}", seen.body);
                }
            }
        };

        // The measured request: no credentials in the document. Refused,
        // naming `credentials`; nothing reaches the endpoint.
        let doc = json!({"provider":"aws","region":"us-east-1","endpoint":fake.url});
        let _ = send(&app, Method::POST, CONFIG_TEST, &doc).await;
        no_ambient(&fake);
        refused(&app, &doc, "credentials").await;
        let doc = json!({"provider":"aws","region":"us-east-1","endpoint":fake.url,
            "credentials":{"sessionToken":"only-a-token"}});
        refused(&app, &doc, "credentials").await;
        no_ambient(&fake);
        assert!(fake.seen().is_empty(), "{:?}", fake.seen());

        // The document's credentials, with a session token: those sign.
        let doc = aws_doc(
            &fake,
            &json!({"credentials":{"accessKeyId":DOC_KEY_ID,"secretAccessKey":DOC_SECRET,
                "sessionToken":DOC_SESSION}}),
        );
        accepted(&app, Method::POST, CONFIG_TEST, &doc).await;
        let seen = fake.seen();
        assert!(!seen.is_empty());
        for s in &seen {
            let auth = s.header("authorization").unwrap();
            assert!(
                auth.contains(&format!("Credential={DOC_KEY_ID}/")),
                "{auth}"
            );
            assert_eq!(s.header("x-amz-security-token"), Some(DOC_SESSION));
        }
        no_ambient(&fake);

        // Without a session token in the document: none, not the server's.
        fake.state.seen.lock().unwrap().clear();
        accepted(&app, Method::POST, CONFIG_TEST, &aws_doc(&fake, &json!({}))).await;
        let seen = fake.seen();
        assert!(!seen.is_empty());
        for s in &seen {
            let auth = s.header("authorization").unwrap();
            assert!(
                auth.contains(&format!("Credential={DOC_KEY_ID}/")),
                "{auth}"
            );
            assert_eq!(s.header("x-amz-security-token"), None);
        }
        no_ambient(&fake);
    }
}

#[cfg(feature = "vault")]
mod vault {
    use super::*;

    const SERVER_TOKEN: &str = "hvs.server-ambient-token";
    const SERVER_ROLE: &str = "server-role-id-0000";
    const SERVER_SECRET: &str = "server-secret-id-0000";
    const DOC_TOKEN: &str = "hvs.document-token";

    fn server_values(seen: &[Seen]) -> Vec<String> {
        seen.iter()
            .flat_map(|s| {
                s.headers
                    .iter()
                    .map(|(_, v)| v.clone())
                    .chain([s.body.clone(), s.path.clone()])
            })
            .filter(|v| {
                [SERVER_TOKEN, SERVER_ROLE, SERVER_SECRET]
                    .iter()
                    .any(|a| v.contains(a))
            })
            .collect()
    }

    #[tokio::test]
    async fn the_servers_vault_credentials_stay_with_its_address() {
        let own = Fake::start(KEY1).await;
        let moved = Fake::start(KEY1).await;
        let own_url: &'static str = own.url.clone().leak();
        let c = config_with(&[
            ("KMS_PROVIDER", "env"),
            ("ENCRYPTION_KEY", KEY1),
            ("VAULT_ADDR", own_url),
            ("VAULT_TOKEN", SERVER_TOKEN),
            ("VAULT_ROLE_ID", SERVER_ROLE),
            ("VAULT_SECRET_ID", SERVER_SECRET),
        ]);
        let (app, _) = app(env_kms(KEY1).await, c);

        // At the server's own address, a posted token is used as given: not
        // replaced by the server's AppRole login.
        let doc = json!({"provider":"vault","retryAttempts":0,"credentials":{"token":DOC_TOKEN}});
        let _ = send(&app, Method::POST, CONFIG_TEST, &doc).await;
        let seen = own.seen();
        assert!(!seen.is_empty());
        assert!(
            seen.iter()
                .all(|s| s.header("x-vault-token") == Some(DOC_TOKEN)),
            "{seen:?}"
        );
        assert_eq!(server_values(&seen), Vec::<String>::new());

        // Another address without credentials: refused, nothing sent.
        for address in ["address", "endpoint"] {
            let doc = json!({"provider":"vault", address: moved.url});
            refused(&app, &doc, "credentials").await;
        }
        assert!(moved.seen().is_empty());

        // With the document's token: that token, nothing of the server's.
        let doc = json!({"provider":"vault","address":moved.url,"retryAttempts":0,
            "credentials":{"token":DOC_TOKEN}});
        let _ = send(&app, Method::POST, CONFIG_TEST, &doc).await;
        let seen = moved.seen();
        assert!(!seen.is_empty());
        assert!(
            seen.iter()
                .all(|s| s.header("x-vault-token") == Some(DOC_TOKEN))
        );
        assert_eq!(server_values(&seen), Vec::<String>::new());
    }
}

#[cfg(feature = "gcp")]
mod gcp {
    use super::*;

    #[tokio::test]
    async fn a_moved_google_endpoint_gets_no_credentials() {
        let fake = Fake::start(KEY1).await;
        let (app, _) = app(env_kms(KEY1).await, config());
        let doc = json!({"provider":"gcp","projectId":"p","endpoint":fake.url});
        refused(&app, &doc, "anonymous: true").await;
        assert!(fake.seen().is_empty());
        let doc = json!({"provider":"gcp","projectId":"p","endpoint":fake.url,
            "anonymous":true,"retryAttempts":0});
        let _ = send(&app, Method::POST, CONFIG_TEST, &doc).await;
        let seen = fake.seen();
        assert!(!seen.is_empty());
        assert!(
            seen.iter().all(|s| s.header("authorization").is_none()),
            "{seen:?}"
        );
    }
}

/// What `GET /config` returns is a document `PUT /config` takes: sent back
/// unchanged (secrets still redacted) it is accepted, the server's own
/// secrets apply, and the configuration reads back the same.
#[tokio::test]
async fn a_document_read_with_get_can_be_put_back() {
    let (app, shared, _names, under_key0) = retired_setup().await;
    let before = active_config(&app).await;
    assert_eq!(before["provider"], "env");
    assert_eq!(before["credentials"]["encryptionKey"], kms_admin::REDACTED);
    for read_only in ["settings", "layered", "minDecryptionVersions"] {
        assert!(before.get(read_only).is_none(), "{read_only}: {before}");
    }
    accepted(&app, Method::PUT, CONFIG, &before).await;
    assert_eq!(active_config(&app).await, before);
    // The server's keys and its minimum decryption version still apply.
    assert_retired(&shared, &under_key0).await;
    // Edited in one field, it is put back with that change only.
    let mut edited = before.clone();
    edited["timeout"] = json!(2500);
    accepted(&app, Method::PUT, CONFIG, &edited).await;
    let after = active_config(&app).await;
    assert_eq!(after["timeout"], 2500);
    assert_eq!(
        after["minDecryptionVersion"],
        before["minDecryptionVersion"]
    );
}
