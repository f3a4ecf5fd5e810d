//! The container harness itself, against a real OpenBao: it starts and
//! answers, runs the CLI inside the container, goes silent while paused and
//! comes back empty after a restart.

use std::time::Duration;

use kms_tests::containers;
use kms_tests::containers::ServerContainer;

const KEY_PATH: &str = "secret/boosterbeacon/encryption-keys/default";

#[tokio::test]
async fn openbao_answers_runs_the_cli_and_pauses() {
    kms_tests::skip_without_docker!();
    let server = containers::openbao().await;
    assert!(
        server.addr.starts_with("http://127.0.0.1:"),
        "{}",
        server.addr
    );
    assert_eq!(server.root_token, "root");
    assert_eq!(
        server.health(Duration::from_secs(5)).await,
        Some(200),
        "GET {}/v1/sys/health",
        server.addr
    );

    // The spec's set-up step, literally.
    let key = "5f0c2e8a9b1d3f4e6a7c8b9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b";
    let (code, _, stderr) = server
        .bao(&[
            "kv",
            "put",
            KEY_PATH,
            &format!("key={key}"),
            "created_at=2024-01-01T00:00:00Z",
            "description=harness smoke test",
        ])
        .await;
    assert_eq!(code, 0, "bao kv put: {stderr}");
    let (code, stdout, stderr) = server.bao(&["kv", "get", "-field=key", KEY_PATH]).await;
    assert_eq!(code, 0, "bao kv get: {stderr}");
    assert_eq!(stdout.trim(), key);

    // A failing command is reported through its exit code (2: not found).
    let (code, _, _) = server
        .bao(&["kv", "get", "secret/boosterbeacon/encryption-keys/missing"])
        .await;
    assert_eq!(code, 2);

    server.pause().await;
    assert_eq!(
        server.health(Duration::from_secs(1)).await,
        None,
        "a paused OpenBao answered"
    );
    server.unpause().await;
    assert_eq!(server.health(Duration::from_secs(5)).await, Some(200));
    // Pausing keeps the data.
    let (code, stdout, stderr) = server.bao(&["kv", "get", "-field=key", KEY_PATH]).await;
    assert_eq!(code, 0, "bao kv get after unpause: {stderr}");
    assert_eq!(stdout.trim(), key);
}

#[tokio::test]
async fn openbao_stops_and_restarts_empty() {
    kms_tests::skip_without_docker!();
    let server = containers::openbao().await;
    let (code, _, stderr) = server.bao(&["kv", "put", KEY_PATH, "key=k1"]).await;
    assert_eq!(code, 0, "{stderr}");

    server.stop().await;
    assert_eq!(server.health(Duration::from_secs(1)).await, None);
    server.start().await;
    assert_eq!(server.health(Duration::from_secs(5)).await, Some(200));
    // Dev mode keeps nothing across a restart.
    let (code, _, _) = server.bao(&["kv", "get", KEY_PATH]).await;
    assert_eq!(code, 2, "the restarted dev server still had the secret");
}
