//! `kms serve`: the admin API as a real process on loopback, called with
//! `curl` exactly as the spec's health check script does; against OpenBao,
//! and in development mode.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kms::KeyMaterial;
use kms_tests::containers;
use serde_json::Value;

use kms_tests::fixtures::kms_cli;
use kms_tests::fixtures::vault::spec_env;

const ADMIN_TOKEN: &str = "integration-admin-token-0123456789";

/// A `kms serve` child process; killed if still running when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
    /// Everything it printed on stdout up to "Stop with Ctrl-C.".
    banner: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `kms <args> serve --bind 127.0.0.1:<free port>` with only
    /// `PATH` and `vars` in its environment; returns once it has printed its banner.
    pub(crate) fn start(vars: &HashMap<String, String>, global_args: &[&str]) -> Server {
        let port = containers::free_port();
        let bin = kms_tests::fixtures::kms_binary();
        let mut child = Command::new(bin)
            .args(global_args)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut banner = String::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !banner.contains("Stop with Ctrl-C.") {
            assert!(Instant::now() < deadline, "no banner: {banner}");
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 {
                panic!("kms serve exited: {banner}\n{}", stderr.lock().unwrap());
            }
            banner.push_str(&line);
        }
        // Keep draining stdout so that the process never blocks on it.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            banner,
            stderr,
        }
    }

    /// Sends SIGTERM and returns the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "kms serve ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

/// `curl -s -w '\n%{http_code}' args...`: (status, body as JSON or text).
pub(crate) async fn curl(args: Vec<String>) -> (u16, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}"])
            .args(&args)
            .output()
            .expect("curl")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

async fn admin(
    server: &Server,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value, String) {
    let mut args = vec![
        "-X".to_owned(),
        method.to_owned(),
        "-H".to_owned(),
        format!("Authorization: Bearer {token}"),
    ];
    if let Some(b) = body {
        args.extend([
            "-H".into(),
            "Content-Type: application/json".into(),
            "-d".into(),
            b.to_owned(),
        ]);
    }
    args.push(format!("{}{path}", server.base));
    let (code, text) = curl(args).await;
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// The spec's health check script, with its `$ADMIN_TOKEN`, run by `sh`.
async fn spec_health_script(base: &str, token: &str) -> (i32, String) {
    let script = format!(
        "curl -H \"Authorization: Bearer $ADMIN_TOKEN\" \\\n     {base}/api/admin/kms/health"
    );
    let token = token.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .args(["-c", &script])
            .env("ADMIN_TOKEN", token)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn serve_against_openbao_with_the_spec_health_check() {
    kms_tests::skip_without_docker!();
    let bao = containers::openbao().await;
    let key = KeyMaterial::generate().to_hex().to_string();
    let (code, _, err) = bao
        .bao(&[
            "kv",
            "put",
            "secret/boosterbeacon/encryption-keys/default",
            &format!("key={key}"),
            "created_at=2025-01-01T00:00:00Z",
            "description=BoosterBeacon encryption key",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    // Rate limits off: the swap below runs under a load of keep-alive
    // requests from one address (the limits have their own tests).
    let mut vars = spec_env(
        &bao,
        &[
            ("KMS_ADMIN_TOKEN", ADMIN_TOKEN),
            ("KMS_ADMIN_RATE_LIMIT", "0"),
            ("KMS_ADMIN_SENSITIVE_RATE_LIMIT", "0"),
        ],
    );
    // Data written before the server runs.
    let (code, stored, err) = kms_cli(&vars, &["encrypt"], b"api token").await;
    assert_eq!(code, 0, "{err}");
    vars.insert("LOG_LEVEL".into(), "info".into());
    let mut server = Server::start(&vars, &[]);

    let (code, out) = spec_health_script(&server.base, ADMIN_TOKEN).await;
    assert_eq!(code, 0);
    let health: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(health["success"], true, "{out}");
    assert_eq!(health["data"]["provider"], "vault");
    assert_eq!(health["data"]["healthy"], true);
    assert!(health["data"]["responseTime"].is_u64());
    assert!(health["data"]["lastChecked"].is_string());

    let (code, meta, text) = admin(
        &server,
        ADMIN_TOKEN,
        "GET",
        "/api/admin/kms/key/metadata",
        None,
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(meta["data"]["keyId"], "default");
    assert_eq!(meta["data"]["description"], "BoosterBeacon encryption key");
    // KV's own creation time of the first version (authoritative, unlike the field).
    assert!(
        meta["data"]["createdAt"].as_str().unwrap().ends_with('Z'),
        "{text}"
    );

    let (code, rotated, text) = admin(
        &server,
        ADMIN_TOKEN,
        "POST",
        "/api/admin/kms/key/rotate",
        None,
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(rotated["message"], "Encryption key rotated successfully");
    assert_eq!(rotated["data"]["newKeyVersion"], "2");
    // The new version is in Vault, and the old data still decrypts.
    let (code, out, _) = bao
        .bao(&[
            "kv",
            "metadata",
            "get",
            "-format=json",
            "secret/boosterbeacon/encryption-keys/default",
        ])
        .await;
    assert_eq!(code, 0);
    let kv: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(kv["data"]["current_version"], 2, "{out}");
    let (code, plain, err) = kms_cli(&vars, &["decrypt"], stored.trim().as_bytes()).await;
    assert_eq!((code, plain.as_str()), (0, "api token"), "{err}");

    let (code, config, text) =
        admin(&server, ADMIN_TOKEN, "GET", "/api/admin/kms/config", None).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(config["data"]["provider"], "vault");
    assert_eq!(config["data"]["address"], bao.addr.as_str());
    assert_eq!(config["data"]["credentials"]["token"], "[REDACTED]");
    assert!(!text.contains(&format!("\"{}\"", bao.root_token)), "{text}");

    // Switching to an env key that is not the Vault key's: refused, nothing changes.
    let other = KeyMaterial::generate().to_hex().to_string();
    let body = format!(r#"{{"provider":"env","credentials":{{"encryptionKey":"{other}"}}}}"#);
    let (code, refused, text) = admin(
        &server,
        ADMIN_TOKEN,
        "PUT",
        "/api/admin/kms/config",
        Some(&body),
    )
    .await;
    assert_eq!(code, 409, "{text}");
    assert_eq!(refused["error"]["code"], "KEYS_NOT_MIGRATED");
    assert_eq!(
        refused["data"]["missingVersions"].as_array().unwrap().len(),
        2,
        "{text}"
    );
    assert!(!text.contains(&other));
    // The same Vault with other client settings: every version is there, so
    // it swaps; five swaps under a steady load of metadata calls, none failing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, url) = (
                stop.clone(),
                format!("{}/api/admin/kms/key/metadata", server.base),
            );
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // 25 requests over one keep-alive connection per curl run.
                    let out = Command::new("curl")
                        .args(["-s", "-w", "%{http_code}\n", "-H"])
                        .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
                        // One `-o /dev/null` per URL: curl pairs them in order.
                        .args((0..25).flat_map(|_| ["-o", "/dev/null", url.as_str()]))
                        .output()
                        .unwrap();
                    codes.extend(
                        String::from_utf8_lossy(&out.stdout)
                            .lines()
                            .map(str::to_owned),
                    );
                }
                codes
            })
        })
        .collect();
    let mut swapped = Value::Null;
    for timeout in [5000, 4000, 5000, 4000, 5000] {
        let body = format!(
            r#"{{"provider":"vault","address":"{}","timeout":{timeout},"credentials":{{"token":"{}"}}}}"#,
            bao.addr, bao.root_token
        );
        let (code, json, text) = admin(
            &server,
            ADMIN_TOKEN,
            "PUT",
            "/api/admin/kms/config",
            Some(&body),
        )
        .await;
        assert_eq!(code, 200, "{text}");
        swapped = json;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let codes: Vec<String> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(codes.len() >= 75, "{}", codes.len());
    assert!(codes.iter().all(|c| c == "200"), "{codes:?}");
    assert_eq!(swapped["data"]["config"]["timeout"], 5000);
    assert_eq!(swapped["data"]["continuity"]["versionsChecked"], 2);

    // Wrong and missing tokens.
    let (code, body, _) = admin(
        &server,
        "not-the-admin-token-000",
        "GET",
        "/api/admin/kms/health",
        None,
    )
    .await;
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (401, Some("UNAUTHORIZED"))
    );

    // Prometheus metrics with the provider's retrieval latency.
    let (code, metrics) = curl(vec![
        "-H".into(),
        format!("Authorization: Bearer {ADMIN_TOKEN}"),
        format!("{}/metrics", server.base),
    ])
    .await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("kms_key_retrieval_duration_seconds_bucket{provider=\"vault\""),
        "{metrics}"
    );
    assert!(metrics.contains("kms_admin_requests_total"), "{metrics}");

    assert_eq!(server.terminate(), Some(0), "{}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("kms::audit"), "{logs}");
    for secret in [
        ADMIN_TOKEN,
        key.as_str(),
        other.as_str(),
        "not-the-admin-token-000",
    ] {
        assert!(!logs.contains(secret), "secret in logs: {logs}");
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `kms serve --dev` as the README shows it: data encrypted by one run
/// decrypts in the next; the banner's health and rotate calls work as
/// pasted; after the rotation, data from before it still decrypts and new
/// data is under version 2; a keyring that others can read is refused.
#[tokio::test]
async fn serve_dev_rotates_and_keeps_its_keys_between_runs() {
    let dir = std::env::temp_dir().join(format!("kms-dev-{}", containers::free_port()));
    let dev_dir = dir.to_str().unwrap().to_owned();
    let vars = HashMap::new();
    let dev = ["--dev", "--dev-dir", dev_dir.as_str()];

    // Run 1 encrypts (creating the keyring), run 2 serves and rotates,
    // run 3 decrypts.
    let (code, stored, err) = kms_cli(
        &vars,
        &[&dev[..], &["encrypt", "--aad", "users:1"]].concat(),
        b"hello",
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let keyring = dir.join("keyring.json");
    assert_eq!(mode(&keyring), 0o600);
    assert_eq!(mode(&dir), 0o700);

    let mut server = Server::start(&vars, &dev);
    let token = server
        .banner
        .lines()
        .find_map(|l| l.split("(shown once): ").nth(1))
        .unwrap()
        .trim()
        .to_owned();
    assert!(server.banner.contains("reused"), "{}", server.banner);
    // The printed curl lines work as pasted.
    let pasted = |after: &str| -> Value {
        let line: String = server
            .banner
            .split(after)
            .nth(1)
            .unwrap()
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        let out = Command::new("sh").args(["-c", &line]).output().unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let health = pasted("Check KMS health:\n");
    assert_eq!(health["data"]["provider"], "file");
    assert_eq!(health["data"]["healthy"], true);
    let rotated = pasted("Rotate the key (older data keeps decrypting):\n");
    assert_eq!(rotated["success"], true, "{rotated}");
    assert_eq!(rotated["data"]["newKeyVersion"], "2", "{rotated}");
    let (code, _) = spec_health_script(&server.base, &token).await;
    assert_eq!(code, 0);
    assert_eq!(server.terminate(), Some(0));
    let ring = std::fs::read_to_string(&keyring).unwrap();
    let ring: Value = serde_json::from_str(&ring).unwrap();
    for version in ring["keys"]["default"]["versions"].as_array().unwrap() {
        let key = version["key"].as_str().unwrap();
        assert!(!server.logs().contains(key));
        assert!(!server.banner.contains(key));
    }

    let (code, plain, err) = kms_cli(
        &vars,
        &[&dev[..], &["decrypt", "--aad", "users:1"]].concat(),
        stored.trim().as_bytes(),
    )
    .await;
    assert_eq!((code, plain.as_str()), (0, "hello"), "{err}");
    let (code, meta, err) = kms_cli(&vars, &[&dev[..], &["metadata"]].concat(), b"").await;
    assert_eq!(code, 0, "{err}");
    let meta: Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["data"]["currentVersion"], "2", "{meta}");
    assert_eq!(meta["data"]["versionCount"], 2, "{meta}");
    assert!(meta["data"]["lastRotated"].is_string(), "{meta}");

    // A keyring others can read is refused.
    std::fs::set_permissions(&keyring, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = kms_cli(&vars, &[&dev[..], &["health"]].concat(), b"").await;
    assert_eq!(code, 1);
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A `.kms-dev/key` of the earlier development mode (the env provider with
/// that key) is taken over as version 1: what was encrypted under it
/// decrypts with `--dev`, before and after a rotation.
#[tokio::test]
async fn dev_takes_an_old_key_file_over_as_version_1() {
    let dir = std::env::temp_dir().join(format!("kms-dev-old-{}", containers::free_port()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    let key = KeyMaterial::generate().to_hex().to_string();
    std::fs::write(dir.join("key"), format!("{key}\n")).unwrap();
    std::fs::set_permissions(dir.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let old_vars: HashMap<String, String> =
        [("KMS_PROVIDER", "env"), ("ENCRYPTION_KEY", key.as_str())]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let (code, stored, err) = kms_cli(&old_vars, &["encrypt", "--aad", "a"], b"from before").await;
    assert_eq!(code, 0, "{err}");

    let dev_dir = dir.to_str().unwrap().to_owned();
    let dev = ["--dev", "--dev-dir", dev_dir.as_str()];
    let vars = HashMap::new();
    for step in ["decrypt", "rotate", "decrypt"] {
        let (code, out, err) = match step {
            "decrypt" => {
                kms_cli(
                    &vars,
                    &[&dev[..], &["decrypt", "--aad", "a"]].concat(),
                    stored.trim().as_bytes(),
                )
                .await
            }
            _ => kms_cli(&vars, &[&dev[..], &["rotate"]].concat(), b"").await,
        };
        assert_eq!(code, 0, "{step}: {err}");
        if step == "decrypt" {
            assert_eq!(out, "from before");
        }
    }
    let ring: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("keyring.json")).unwrap()).unwrap();
    assert_eq!(ring["keys"]["default"]["versions"][0]["key"], key.as_str());
    assert_eq!(
        ring["keys"]["default"]["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `kms serve` with a configuration file (`KMS_CONFIG_FILE`): a
/// `PUT /config` is written to it, and the next start of the server runs
/// that configuration, not the environment's; so does the start after
/// that, with the change the restarted server took.
#[tokio::test]
async fn a_put_config_survives_a_restart_of_kms_serve() {
    let dir = std::env::temp_dir().join(format!("kms-config-{}", containers::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kms.json");
    let key = kms_tests::fixtures::random_hex();
    let vars: HashMap<String, String> = [
        ("ENCRYPTION_KEY", key.as_str()),
        ("KMS_ADMIN_TOKEN", ADMIN_TOKEN),
        ("KMS_CONFIG_FILE", file.to_str().unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    let mut server = Server::start(&vars, &[]);
    let (code, body, text) = admin(
        &server,
        ADMIN_TOKEN,
        "PUT",
        "/api/admin/kms/config",
        Some(r#"{"provider":"env","timeout":2500}"#),
    )
    .await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(body["data"]["persisted"]["file"], file.to_str().unwrap());
    assert_eq!(server.terminate(), Some(0));
    assert!(!std::fs::read_to_string(&file).unwrap().contains(&key));

    // The restarted server runs the file's configuration, and a change it
    // takes survives the next restart too.
    let mut server = Server::start(&vars, &[]);
    let (code, body, text) =
        admin(&server, ADMIN_TOKEN, "GET", "/api/admin/kms/config", None).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(body["data"]["timeout"], 2500, "{text}");
    let put = Some(r#"{"provider":"env","timeout":3000}"#);
    let (code, _, text) = admin(&server, ADMIN_TOKEN, "PUT", "/api/admin/kms/config", put).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(server.terminate(), Some(0));

    let mut server = Server::start(&vars, &[]);
    let (code, body, text) =
        admin(&server, ADMIN_TOKEN, "GET", "/api/admin/kms/config", None).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(body["data"]["timeout"], 3000, "{text}");
    assert_eq!(server.terminate(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}
