//! `kms serve`: the admin HTTP API and /metrics.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use kms::{Error, Kms};
use kms_admin::{AdminConfig, AuthConfig, SharedKms};

use crate::dev::{DevKeyring, Origin};

/// Default listen address: loopback only.
pub(crate) const DEFAULT_BIND: &str = "127.0.0.1:3000";

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_BIND)]
    bind: SocketAddr,
    /// The configuration file (also KMS_CONFIG_FILE): its document is read
    /// at start, and every successful PUT /config writes the new one to it
    /// (atomically, mode 0600). Without it, a change lasts until restart.
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

fn io_error(what: &str, e: &std::io::Error) -> Error {
    Error::provider("cli", format!("cannot {what}: {e}"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!(target: "kms", "shutting down: finishing requests in flight");
}

pub(crate) async fn run(args: ServeArgs, dev: Option<DevKeyring>) -> Result<ExitCode, Error> {
    let lookup: kms_admin::Lookup = match &dev {
        Some(dev) => dev.lookup(),
        None => Arc::new(|name: &str| std::env::var(name).ok()),
    };
    let mut config = AdminConfig::from_lookup(Arc::clone(&lookup))?;
    if let Some(path) = args.config {
        config.config_file = Some(kms_admin::ConfigFile::new(path));
    }
    // The configuration file's document, when there is one; else the
    // environment.
    let loaded = match &config.config_file {
        Some(file) => file.load(&lookup).await?,
        None => None,
    };
    let from_file = loaded.is_some();
    let shared = match loaded {
        Some(shared) => shared,
        None => SharedKms::new(kms::KmsBuilder::from_lookup(&*lookup)?.build().await?),
    };
    let kms = shared.kms();
    if let Some(file) = &config.config_file {
        tracing::info!(
            target: "kms",
            file = %file.path().display(),
            read = from_file,
            "configuration file: PUT /config writes to it"
        );
    }
    // In development mode without a configured method, a token for this run.
    let generated = if dev.is_some() && !config.auth.is_configured() {
        let token = kms_admin::generate_admin_token();
        config.auth = AuthConfig::new().admin_token(&token)?;
        Some(token)
    } else {
        None
    };
    let handle = kms_admin::install_prometheus()
        .map_err(|e| Error::provider("cli", format!("cannot install the metrics recorder: {e}")))?;
    let config = config.metrics(handle);
    let app = kms_admin::router(shared, config)?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| io_error(&format!("listen on {}", args.bind), &e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| io_error("read the listening address", &e))?;
    announce(
        &kms,
        addr,
        dev.as_ref(),
        generated.as_deref().map(String::as_str),
    );
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .map_err(|e| io_error("serve", &e))?;
    Ok(ExitCode::SUCCESS)
}

/// What is being served, on stdout; the generated token is printed here once.
fn announce(kms: &Kms, addr: SocketAddr, dev: Option<&DevKeyring>, token: Option<&str>) {
    let base = format!("http://{addr}");
    let mut out = format!(
        "kms admin API listening on {base} (provider {}, key {})\n",
        kms.config().provider,
        kms.key_id()
    );
    if let Some(dev) = dev {
        out.push_str(&format!(
            "development mode: keyring {} ({}, mode 0600); not for production\n",
            dev.path().display(),
            match dev.origin() {
                Origin::Reused => "reused",
                Origin::Created => "created now",
                Origin::TookOver => "created now, with the key of the old key file as version 1",
            },
        ));
    }
    let bearer = match token {
        Some(token) => {
            out.push_str(&format!("admin token for this run (shown once): {token}\n"));
            token.to_owned()
        }
        None => "$ADMIN_TOKEN".to_owned(),
    };
    out.push_str(&format!(
        "\nCheck KMS health:\n  curl -H \"Authorization: Bearer {bearer}\" \\\n       {base}/api/admin/kms/health\n"
    ));
    out.push_str(&format!(
        "Rotate the key (older data keeps decrypting):\n  curl -X POST -H \"Authorization: Bearer {bearer}\" \\\n       {base}/api/admin/kms/key/rotate\n"
    ));
    out.push_str(&format!(
        "Metrics: {base}/metrics (same bearer token)\nStop with Ctrl-C.\n"
    ));
    print!("{out}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
}
