//! Load check of the admin HTTP API: a real HTTP client (reqwest, HTTP/1.1
//! keep-alive) against the router served by axum on a loopback TCP port.
//!
//! ```text
//! cargo run --release -p kms-benches --example admin_load -- [SECONDS] [CONNECTIONS]
//! ```
//!
//! Defaults: 5 s per scenario after 1 s of warm-up, 16 connections. The
//! server and the client share the machine (one process, one Tokio runtime
//! with a worker per core), so the figures are a floor for a dedicated
//! server. Rate limits are off for the run (they would turn the check into
//! a 429 count); authentication, body limits, time limits, audit events and
//! metrics are on; audit events are
//! formatted as JSON lines into a sink. Prints requests per second and latency percentiles per
//! scenario.
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a measuring program, not library code: a failed set-up or request is a bug in the check"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kms_admin::{AdminConfig, AuthConfig, SharedKms};

const TOKEN: &str = "load-check-admin-token-0123456789";
const JWT_SECRET: &str = "load-check-jwt-secret-of-32-bytes-or-more";

struct Scenario {
    name: &'static str,
    path: &'static str,
    bearer: String,
}

async fn run(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    connections: usize,
    duration: Duration,
) -> (u64, u64, Vec<u32>) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, bearer, stop) = (
            client.clone(),
            url.to_owned(),
            format!("Bearer {bearer}"),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let ok = match client
                    .get(&url)
                    .header("authorization", &bearer)
                    .send()
                    .await
                {
                    Ok(r) => {
                        let ok = r.status().is_success();
                        let _ = r.bytes().await;
                        ok
                    }
                    Err(_) => false,
                };
                let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                if ok {
                    latencies.push(micros);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    (all.len() as u64, errors, all)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    f64::from(sorted[rank.min(sorted.len() - 1)]) / 1000.0
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().map_or(5, |s| s.parse().expect("SECONDS"));
    let connections: usize = args.next().map_or(16, |s| s.parse().expect("CONNECTIONS"));

    // Audit events are formatted as JSON (to a sink), as a server logging them would.
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("info")
        .with_writer(std::io::sink)
        .init();
    let kms = kms::Kms::builder()
        .env_key("8f7c2d54a1e0b9a3c6d5e4f30112233445566778899aabbccddeeff001122334")
        .build()
        .await
        .unwrap();
    let auth = AuthConfig::new()
        .admin_token(TOKEN)
        .unwrap()
        .jwt_hs256_secret(JWT_SECRET.as_bytes())
        .unwrap();
    let mut config = AdminConfig::new(auth).metrics(kms_admin::install_prometheus().unwrap());
    config.limits.requests_per_minute = 0;
    config.limits.sensitive_per_minute = 0;
    let app = kms_admin::router(SharedKms::new(kms), config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let jwt = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &serde_json::json!({"sub": "load-check", "role": "admin", "exp": exp}),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let scenarios = [
        Scenario {
            name: "GET health (static token)",
            path: "/api/admin/kms/health",
            bearer: TOKEN.into(),
        },
        Scenario {
            name: "GET key/metadata (static token)",
            path: "/api/admin/kms/key/metadata",
            bearer: TOKEN.into(),
        },
        Scenario {
            name: "GET key/metadata (HS256 JWT)",
            path: "/api/admin/kms/key/metadata",
            bearer: jwt,
        },
    ];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()
        .unwrap();
    println!(
        "admin API load check: {connections} connections, {seconds} s per scenario, {} cores",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    );
    println!("| scenario | requests/s | p50 ms | p99 ms | max ms | errors |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for s in &scenarios {
        let url = format!("http://{addr}{}", s.path);
        // Warm-up: connections open, caches filled.
        run(
            &client,
            &url,
            &s.bearer,
            connections,
            Duration::from_secs(1),
        )
        .await;
        let (ok, errors, sorted) = run(
            &client,
            &url,
            &s.bearer,
            connections,
            Duration::from_secs(seconds),
        )
        .await;
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2} | {errors} |",
            s.name,
            ok as f64 / seconds as f64,
            percentile(&sorted, 50.0),
            percentile(&sorted, 99.0),
            percentile(&sorted, 100.0),
        );
    }
}
