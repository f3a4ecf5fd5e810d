//! The shipped alerting rules and dashboard against real servers: `kms
//! serve` (file provider) scraped by the Prometheus server of Debian's
//! `prometheus` package, with a bearer token from a file. The provider is
//! made unavailable (its keyring moved away): `KmsUnavailable` reaches the
//! firing state in Prometheus' own API, and resolves after recovery. Every
//! metric the Grafana dashboard queries is in what the server exports.
//!
//! Skipped (with the reason) when there is no `prometheus` on `PATH`;
//! `cargo xtask test` installs the package and sets
//! `KMS_REQUIRE_PROMETHEUS=1`, which turns the skip into a failure.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kms::file::FileProvider;
use kms::{KeyId, KeyProvider, LiveVersions};
use kms_tests::containers;
use serde_json::Value;

use crate::admin::{Server, curl};

const TOKEN: &str = "prometheus-e2e-admin-token-0123456789";

/// The repository's `deploy/` directory.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A Prometheus server, killed on drop.
struct Prometheus {
    child: Child,
    base: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Scrapes `target` every second with the token in `token_file`, and
    /// evaluates the shipped rules every second.
    fn start(dir: &Path, target: &str, token_file: &Path) -> Prometheus {
        let rules = deploy().join("prometheus/kms-alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: kms\n    scrape_timeout: 1s\n    metrics_path: /metrics\n\
             \x20   authorization:\n      type: Bearer\n      credentials_file: {token}\n\
             \x20   static_configs:\n      - targets: ['{target}']\n",
            rules = rules.display(),
            token = token_file.display(),
        );
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = containers::free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn get(&self, path: &str) -> Value {
        let (code, body) = curl(vec![format!("{}{path}", self.base)]).await;
        if code != 200 {
            return Value::Null;
        }
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// Waits until `check` holds of `path`'s answer, or panics after `limit`.
    async fn wait_for(
        &self,
        path: &str,
        limit: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) {
        let deadline = Instant::now() + limit;
        loop {
            let answer = self.get(path).await;
            if check(&answer) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?}; last answer of {path}: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The state of the `KmsUnavailable` alert of the `file` provider, if any.
fn unavailable(alerts: &Value) -> Option<String> {
    alerts["data"]["alerts"].as_array()?.iter().find_map(|a| {
        (a["labels"]["alertname"] == "KmsUnavailable" && a["labels"]["provider"] == "file")
            .then(|| a["state"].as_str().unwrap_or_default().to_owned())
    })
}

/// Every metric name a dashboard query uses (histogram series by their
/// base name).
fn dashboard_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(deploy().join("grafana/kms-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut names = BTreeSet::new();
    let mut exprs: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for list in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(q) = list["query"].as_str() {
            exprs.push(q.to_owned());
        }
    }
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("kms_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let base = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_count"))
                .or_else(|| name.strip_suffix("_sum"))
                .unwrap_or(name);
            names.insert(base.to_owned());
            rest = &tail[end..];
        }
    }
    names
}

#[tokio::test]
async fn prometheus_fires_and_resolves_kms_unavailable_and_the_dashboard_queries_real_metrics() {
    if which("prometheus").is_none() {
        assert!(
            std::env::var_os("KMS_REQUIRE_PROMETHEUS").is_none(),
            "KMS_REQUIRE_PROMETHEUS is set but there is no `prometheus` on PATH"
        );
        eprintln!("skipped: no `prometheus` on PATH (cargo xtask test installs Debian's package)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let keyring = tmp.path().join("keyring.json");
    let provider = FileProvider::builder().path(&keyring).build().unwrap();
    provider
        .rotate(&KeyId::default(), &LiveVersions::all())
        .await
        .unwrap();
    let vars: HashMap<String, String> = [
        ("KMS_PROVIDER", "file"),
        ("KMS_KEYRING_FILE", keyring.to_str().unwrap()),
        ("KMS_ADMIN_TOKEN", TOKEN),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let server = Server::start(&vars, &[]);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let call = |method: &str, path: &str, auth: &str| {
        vec![
            "-X".to_owned(),
            method.to_owned(),
            "-H".to_owned(),
            auth.to_owned(),
            format!("{}{path}", server.base),
        ]
    };

    // Exercise what the dashboard shows: health, metadata, a rotation, a
    // refused token.
    for (method, path) in [
        ("GET", "/api/admin/kms/health"),
        ("GET", "/api/admin/kms/key/metadata"),
        ("POST", "/api/admin/kms/key/rotate"),
    ] {
        let (code, body) = curl(call(method, path, &auth)).await;
        assert_eq!(code, 200, "{method} {path}: {body}");
    }
    let (code, _) = curl(call(
        "GET",
        "/api/admin/kms/health",
        "Authorization: Bearer wrong",
    ))
    .await;
    assert_eq!(code, 401);
    // Prometheus scrapes it with the token from a file.
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let target = server.base.trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start(tmp.path(), &target, &token_file);
    prometheus
        .wait_for(
            "/api/v1/targets",
            Duration::from_secs(60),
            "the kms target is up",
            |v| {
                v["data"]["activeTargets"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t["health"] == "up"))
            },
        )
        .await;
    prometheus
        .wait_for(
            "/api/v1/rules",
            Duration::from_secs(30),
            "the rules are loaded",
            |v| {
                v["data"]["groups"][0]["rules"]
                    .as_array()
                    .is_some_and(|r| r.len() == 4)
            },
        )
        .await;
    assert_eq!(unavailable(&prometheus.get("/api/v1/alerts").await), None);

    // The provider becomes unavailable: the keyring is moved away.
    let away = tmp.path().join("keyring.away");
    std::fs::rename(&keyring, &away).unwrap();
    let started = Instant::now();
    // A key operation fails meanwhile (a provider error, for the dashboard).
    let (code, body) = curl(call("GET", "/api/admin/kms/key/metadata", &auth)).await;
    assert_ne!(code, 200, "{body}");
    prometheus
        .wait_for(
            "/api/v1/alerts",
            Duration::from_secs(30),
            "KmsUnavailable is pending",
            |v| unavailable(v).is_some(),
        )
        .await;
    // The rule's own `for: 1m`, then firing.
    prometheus
        .wait_for(
            "/api/v1/alerts",
            Duration::from_secs(120),
            "KmsUnavailable fires",
            |v| unavailable(v).as_deref() == Some("firing"),
        )
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(55),
        "fired before its `for: 1m`: {:?}",
        started.elapsed()
    );

    // Recovery: the keyring is back, the alert resolves.
    std::fs::rename(&away, &keyring).unwrap();
    prometheus
        .wait_for(
            "/api/v1/alerts",
            Duration::from_secs(60),
            "KmsUnavailable resolves",
            |v| v["status"] == "success" && unavailable(v).is_none(),
        )
        .await;

    // Every metric the dashboard queries was exported along the way.
    let (code, exported) = curl(call("GET", "/metrics", &auth)).await;
    assert_eq!(code, 200, "{exported}");
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|name| {
            !exported
                .lines()
                .any(|l| l.starts_with(name.as_str()) && !l.starts_with('#'))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics the server does not export: {missing:?}\n{exported}"
    );
    for name in dashboard_metrics() {
        assert!(
            kms::telemetry::names::ALL.contains(&name.as_str()),
            "{name} is not one of kms_telemetry::names"
        );
    }

    drop(prometheus);
    drop(server);
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
