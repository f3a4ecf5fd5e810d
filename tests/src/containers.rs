//! Real servers in Docker for the container tests, through `testcontainers`.
//!
//! Every container shares the host's network namespace (`--network host`) and
//! listens on 127.0.0.1 only, on its own port from [`free_port`]: no bridge, no
//! port publishing, no traffic off the machine.
//!
//! Images are never pulled by the tests. Their names are pinned in
//! `tests/images.env` ([`IMAGES_ENV`]); an environment variable of the same
//! name overrides a line there. `cargo xtask test` starts a Docker engine if
//! none runs and builds the pinned images that are missing, before it runs the
//! suite.
//!
//! A container test starts with [`skip_without_docker!`](crate::skip_without_docker):
//! on a machine without Docker, plain `cargo test` skips it with the reason
//! on stderr; `cargo xtask test` (and so CI) sets [`REQUIRE_DOCKER`], and
//! there a missing engine fails the test instead of skipping it. Helpers
//! that start a server call [`require_docker`], which always fails loudly.
//!
//! ```no_run
//! # async fn example() {
//! use kms_tests::containers;
//!
//! containers::require_docker();
//! let server = containers::openbao().await;
//! let (code, _stdout, stderr) = server
//!     .bao(&["kv", "put", "secret/app/keys/default", "key=..."])
//!     .await;
//! assert_eq!(code, 0, "{stderr}");
//! // `server.addr` is `http://127.0.0.1:PORT`, `server.root_token` is "root".
//!
//! let aws = containers::localstack().await;
//! // `aws.endpoint` is `http://127.0.0.1:PORT` (KMS and SSM; any credentials).
//! # }
//! ```

use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use testcontainers::core::client::docker_client_instance;
use testcontainers::core::{ExecCommand, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, Image, ImageExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `tests/images.env`: the pinned image (`NAME=IMAGE:TAG`) of every container
/// the tests run.
pub const IMAGES_ENV: &str = include_str!("../images.env");

/// The variable, in `tests/images.env` or the environment, that names the
/// OpenBao (Vault API) image.
pub const OPENBAO_IMAGE_VAR: &str = "KMS_TEST_OPENBAO_IMAGE";

/// The variable, in `tests/images.env` or the environment, that names the
/// LocalStack (AWS KMS and SSM) image.
pub const LOCALSTACK_IMAGE_VAR: &str = "KMS_TEST_LOCALSTACK_IMAGE";

/// How long a started (or restarted, or unpaused) server may take until its
/// health check answers as expected.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a container may take from `docker create` to its ready log line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Logged once dev mode has unsealed (OpenBao 2.7.2 logs it on stderr; Vault
/// keeps the same wording).
const OPENBAO_READY_LOG: &str = "vault is unsealed";

/// The health endpoint: 200 once the server is initialized, unsealed and active.
const OPENBAO_HEALTH_PATH: &str = "/v1/sys/health";

/// The dev-mode root token of every OpenBao container.
const OPENBAO_ROOT_TOKEN: &str = "root";

/// Logged by LocalStack once its gateway serves requests.
const LOCALSTACK_READY_LOG: &str = "Ready.";

/// LocalStack's own health endpoint: 200 while the gateway runs.
const LOCALSTACK_HEALTH_PATH: &str = "/_localstack/health";

/// Label put on every container the harness starts, to find strays with
/// `docker ps --filter label=kms-tests`.
const LABEL: &str = "kms-tests";

// ---------------------------------------------------------------------------
// Images

/// The image that `tests/images.env` pins for `var`, if it has a line for it.
pub fn pinned_image(var: &str) -> Option<&'static str> {
    parse_images_env(IMAGES_ENV)
        .find(|(name, _)| *name == var)
        .map(|(_, image)| image)
}

/// The image to run for `var`: the environment variable `var` when it is set
/// (and not empty), else the line of `tests/images.env`.
///
/// # Panics
///
/// When neither names an image.
pub fn image(var: &str) -> String {
    match std::env::var(var) {
        Ok(image) if !image.trim().is_empty() => image.trim().to_owned(),
        _ => pinned_image(var)
            .unwrap_or_else(|| panic!("{var} is neither set nor pinned in tests/images.env"))
            .to_owned(),
    }
}

/// The `NAME=VALUE` lines of an images.env file; blank and `#` lines skipped.
fn parse_images_env(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.trim(), value.trim()))
}

/// Splits `IMAGE:TAG` into `(IMAGE, TAG)`. The tag follows the last `:` after
/// the last `/` (a registry host may carry a port); none means `latest`.
fn split_image(image: &str) -> (&str, &str) {
    let last_part = image.rfind('/').map_or(0, |slash| slash + 1);
    match image[last_part..].rfind(':') {
        Some(colon) => (&image[..last_part + colon], &image[last_part + colon + 1..]),
        None => (image, "latest"),
    }
}

// ---------------------------------------------------------------------------
// Docker

/// Whether a Docker engine answers where `testcontainers` looks for one
/// (`DOCKER_HOST`, else `/var/run/docker.sock`, ...). The answer is computed
/// once per test binary.
pub fn docker_available() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER.get_or_init(ping_docker).clone()
}

/// Set to `1` to make a container test fail, not skip, when no Docker engine
/// answers. `cargo xtask test` sets it, so CI never skips a container test.
pub const REQUIRE_DOCKER: &str = "KMS_REQUIRE_DOCKER";

/// Whether [`REQUIRE_DOCKER`] is set to `1`.
pub fn docker_required() -> bool {
    std::env::var(REQUIRE_DOCKER).is_ok_and(|v| v.trim() == "1")
}

/// The first line of a container test: when no Docker engine answers, the
/// test returns at once with the reason on stderr (object_store's
/// `maybe_skip_integration!`), unless [`REQUIRE_DOCKER`] is set, in which
/// case it fails as [`require_docker`] does.
#[macro_export]
macro_rules! skip_without_docker {
    () => {
        if let Err(reason) = $crate::containers::docker_available() {
            if $crate::containers::docker_required() {
                $crate::containers::require_docker();
            }
            eprintln!(
                "skipped: no Docker engine ({reason}); `cargo xtask test` starts one and runs \
                 the container tests"
            );
            return;
        }
    };
}

/// Panics unless [`docker_available`], with what to do: for helpers that
/// start a server, and for a test run that must not skip.
pub fn require_docker() {
    if let Err(reason) = docker_available() {
        panic!(
            "Docker is not available ({reason}). The container tests need a Docker engine \
             and locally built images: run `cargo xtask test`, which starts one and builds them."
        );
    }
}

fn ping_docker() -> Result<(), String> {
    let host = std::env::var("DOCKER_HOST").unwrap_or_default();
    if host.is_empty() && !std::path::Path::new("/var/run/docker.sock").exists() {
        return Err("DOCKER_HOST is not set and there is no /var/run/docker.sock".into());
    }
    let host = if host.is_empty() {
        "unix:///var/run/docker.sock".to_owned()
    } else {
        host
    };
    // A thread and runtime of its own, so that this works the same inside and
    // outside of an async test.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("could not start a Tokio runtime: {e}"))?;
        runtime.block_on(async {
            let docker = docker_client_instance()
                .await
                .map_err(|e| format!("no Docker client for {host}: {e}"))?;
            match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(format!("the engine at {host} did not answer: {e}")),
                Err(_) => Err(format!("the engine at {host} did not answer within 10 s")),
            }
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the Docker check panicked".into()))
}

/// Panics unless the local engine has `image`: the tests never pull.
async fn require_image(image: &str, var: &str) {
    let docker = docker_client_instance()
        .await
        .unwrap_or_else(|e| panic!("no Docker client: {e}"));
    if let Err(e) = docker.inspect_image(image).await {
        panic!(
            "the image {image} ({var}) is not in the local Docker engine ({e}). The tests \
             never pull images: run `cargo xtask test`, which builds the images pinned in \
             tests/images.env (and pulls one that {var} names in the environment)."
        );
    }
}

/// A free TCP port on 127.0.0.1 (bound to port 0, read, released). Ports are
/// never handed out twice by one test binary.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|e| panic!("could not bind a port on 127.0.0.1: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("could not read a bound port: {e}"))
            .port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
    panic!("no unused free port on 127.0.0.1 after 100 tries");
}

// ---------------------------------------------------------------------------
// HTTP probe

/// The status code of `GET {base_url}{path}` (plain `http://host:port` URLs
/// only), or `None` when no HTTP answer arrives within `timeout`.
pub async fn http_status(base_url: &str, path: &str, timeout: Duration) -> Option<u16> {
    let authority = base_url.strip_prefix("http://")?.trim_end_matches('/');
    let probe = async {
        let mut stream = TcpStream::connect(authority).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // Only the status line is needed: `HTTP/1.x NNN reason`.
        let mut head = Vec::new();
        let mut buf = [0u8; 512];
        while !head.contains(&b'\n') && head.len() < 8192 {
            let n = stream.read(&mut buf).await.ok()?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head);
        let mut words = head.split_whitespace();
        if !words.next()?.starts_with("HTTP/") {
            return None;
        }
        words.next()?.parse().ok()
    };
    tokio::time::timeout(timeout, probe).await.ok().flatten()
}

/// Polls `GET {base_url}{path}` until it answers `expected`.
///
/// # Panics
///
/// When it has not within `timeout`; the message names `what` and the last answer.
pub async fn wait_for_status(
    what: &str,
    base_url: &str,
    path: &str,
    expected: u16,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let status = http_status(base_url, path, Duration::from_secs(2)).await;
        if status == Some(expected) {
            return;
        }
        if Instant::now() >= deadline {
            let last = status.map_or_else(|| "no answer".to_owned(), |s| format!("status {s}"));
            panic!(
                "{what}: GET {base_url}{path} did not return {expected} within {timeout:?} \
                 (last: {last})"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `image` on the host's network with the harness label, and waits
/// for its ready conditions.
async fn start_on_host<I: Image>(image: I, what: &str, addr: &str) -> ContainerAsync<I> {
    let shown = format!("{}:{}", image.name(), image.tag());
    image
        .with_network("host")
        // testcontainers asks to publish all exposed ports unless ports are
        // mapped; with host networking there is nothing to publish.
        .with_host_config_modifier(|host| {
            host.publish_all_ports = Some(false);
            host.port_bindings = None;
        })
        .with_label(LABEL, what.to_ascii_lowercase())
        .with_startup_timeout(STARTUP_TIMEOUT)
        .start()
        .await
        .unwrap_or_else(|e| panic!("could not start {what} ({shown}) at {addr}: {e}"))
}

// ---------------------------------------------------------------------------
// OpenBao

/// The OpenBao dev server as a `testcontainers` image: in-memory storage,
/// unsealed, root token `root`, KV version 2 mounted at `secret/`, listening on
/// `127.0.0.1:PORT` of the host's network.
///
/// The image comes from `KMS_TEST_OPENBAO_IMAGE` (environment, else
/// `tests/images.env`). Run it with [`openbao`], which adds host networking and
/// the readiness check.
#[derive(Debug, Clone)]
pub struct OpenBao {
    name: String,
    tag: String,
    port: u16,
    cmd: Vec<String>,
}

impl OpenBao {
    /// The dev server listening on `127.0.0.1:port`.
    pub fn new(port: u16) -> Self {
        let image = image(OPENBAO_IMAGE_VAR);
        let (name, tag) = split_image(&image);
        Self {
            name: name.to_owned(),
            tag: tag.to_owned(),
            port,
            cmd: vec![
                "server".into(),
                "-dev".into(),
                format!("-dev-root-token-id={OPENBAO_ROOT_TOKEN}"),
                format!("-dev-listen-address=127.0.0.1:{port}"),
            ],
        }
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `IMAGE:TAG`.
    pub fn image(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }

    /// The CLI inside the image: `vault` in a HashiCorp Vault image (when the
    /// environment overrides the image), else `bao`.
    pub fn cli(&self) -> &'static str {
        if self.name.rsplit('/').next().is_some_and(|n| n == "vault") {
            "vault"
        } else {
            "bao"
        }
    }
}

impl Image for OpenBao {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        // Stderr for OpenBao; either stream keeps an overriding image working.
        vec![WaitFor::message_on_either_std(OPENBAO_READY_LOG)]
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<std::borrow::Cow<'_, str>>> {
        &self.cmd
    }
}

/// A running OpenBao dev server; the container is removed when this is dropped.
#[derive(Debug)]
pub struct OpenBaoServer {
    container: ContainerAsync<OpenBao>,
    /// `http://127.0.0.1:PORT`.
    pub addr: String,
    /// The root token: `root`.
    pub root_token: String,
    cli: &'static str,
}

/// Starts an OpenBao dev server in a container on the host's network, on a
/// free port, and returns once `GET /v1/sys/health` answers 200.
///
/// # Panics
///
/// When Docker or the image is missing, or the server does not come up.
pub async fn openbao() -> OpenBaoServer {
    require_docker();
    let bao = OpenBao::new(free_port());
    let image = bao.image();
    require_image(&image, OPENBAO_IMAGE_VAR).await;
    let addr = format!("http://127.0.0.1:{}", bao.port());
    let cli = bao.cli();
    let container = start_on_host(bao, "OpenBao", &addr).await;
    let server = OpenBaoServer {
        container,
        addr,
        root_token: OPENBAO_ROOT_TOKEN.to_owned(),
        cli,
    };
    server.wait_healthy().await;
    server
}

impl OpenBaoServer {
    /// Runs the `bao` CLI inside the container with `VAULT_ADDR` and
    /// `VAULT_TOKEN` set, like the spec's set-up steps:
    /// `server.bao(&["kv", "put", "secret/app/keys/default", "key=..."])`.
    /// Returns the exit code, stdout and stderr.
    ///
    /// # Panics
    ///
    /// When the command cannot be run at all (e.g. the container is stopped or
    /// paused); a failing command is reported through its exit code.
    pub async fn bao(&self, args: &[&str]) -> (i32, String, String) {
        let shown = format!("{} {}", self.cli, args.join(" "));
        let command = ExecCommand::new(std::iter::once(self.cli).chain(args.iter().copied()))
            .with_env_vars([
                ("VAULT_ADDR", self.addr.as_str()),
                ("VAULT_TOKEN", self.root_token.as_str()),
            ]);
        let mut exec =
            self.container.exec(command).await.unwrap_or_else(|e| {
                panic!("could not run `{shown}` in the OpenBao container: {e}")
            });
        let stdout = exec
            .stdout_to_vec()
            .await
            .unwrap_or_else(|e| panic!("could not read the output of `{shown}`: {e}"));
        let stderr = exec
            .stderr_to_vec()
            .await
            .unwrap_or_else(|e| panic!("could not read the errors of `{shown}`: {e}"));
        // The output ends when the process does; its exit code can lag a little.
        let deadline = Instant::now() + Duration::from_secs(10);
        let code = loop {
            match exec.exit_code().await {
                Ok(Some(code)) => break code,
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Ok(None) => panic!("`{shown}` did not exit within 10 s of closing its output"),
                Err(e) => panic!("could not read the exit code of `{shown}`: {e}"),
            }
        };
        (
            i32::try_from(code).unwrap_or(i32::MIN),
            String::from_utf8_lossy(&stdout).into_owned(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.container.image().port()
    }

    /// The status of `GET /v1/sys/health`, or `None` without an answer within
    /// `timeout` (stopped or paused server).
    pub async fn health(&self, timeout: Duration) -> Option<u16> {
        http_status(&self.addr, OPENBAO_HEALTH_PATH, timeout).await
    }

    /// Waits until `GET /v1/sys/health` answers 200, at most [`READY_TIMEOUT`].
    pub async fn wait_healthy(&self) {
        wait_for_status(
            "OpenBao",
            &self.addr,
            OPENBAO_HEALTH_PATH,
            200,
            READY_TIMEOUT,
        )
        .await;
    }
}

// ---------------------------------------------------------------------------
// LocalStack

/// LocalStack with only the KMS and SSM services, its gateway listening on
/// `127.0.0.1:PORT` of the host's network. Any access key id and secret are
/// accepted; the account is `000000000000`. State lives in memory.
///
/// The image comes from `KMS_TEST_LOCALSTACK_IMAGE` (environment, else
/// `tests/images.env`). Run it with [`localstack`].
#[derive(Debug, Clone)]
pub struct LocalStack {
    name: String,
    tag: String,
    port: u16,
    env: Vec<(String, String)>,
}

impl LocalStack {
    /// LocalStack listening on `127.0.0.1:port`.
    pub fn new(port: u16) -> Self {
        let image = image(LOCALSTACK_IMAGE_VAR);
        let (name, tag) = split_image(&image);
        let env = [
            ("GATEWAY_LISTEN", format!("127.0.0.1:{port}")),
            ("SERVICES", "kms,ssm".to_owned()),
            // Offline: no certificate download, no analytics.
            ("SKIP_SSL_CERT_DOWNLOAD", "1".to_owned()),
            ("DISABLE_EVENTS", "1".to_owned()),
        ];
        Self {
            name: name.to_owned(),
            tag: tag.to_owned(),
            port,
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// The port the gateway listens on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Image for LocalStack {
    fn name(&self) -> &str {
        &self.name
    }

    fn tag(&self) -> &str {
        &self.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        vec![WaitFor::message_on_either_std(LOCALSTACK_READY_LOG)]
    }

    fn env_vars(
        &self,
    ) -> impl IntoIterator<
        Item = (
            impl Into<std::borrow::Cow<'_, str>>,
            impl Into<std::borrow::Cow<'_, str>>,
        ),
    > {
        self.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// A running LocalStack; the container is removed when this is dropped.
#[derive(Debug)]
pub struct LocalStackServer {
    container: ContainerAsync<LocalStack>,
    /// `http://127.0.0.1:PORT`: the `AWS_ENDPOINT_URL` of every service.
    pub endpoint: String,
}

/// Starts LocalStack (KMS and SSM) in a container on the host's network, on
/// a free port, and returns once it has logged `Ready.` and its health
/// endpoint answers 200.
///
/// # Panics
///
/// When Docker or the image is missing, or LocalStack does not come up.
pub async fn localstack() -> LocalStackServer {
    require_docker();
    let localstack = LocalStack::new(free_port());
    let image = format!("{}:{}", localstack.name, localstack.tag);
    require_image(&image, LOCALSTACK_IMAGE_VAR).await;
    let endpoint = format!("http://127.0.0.1:{}", localstack.port());
    let container = start_on_host(localstack, "LocalStack", &endpoint).await;
    let server = LocalStackServer {
        container,
        endpoint,
    };
    server.wait_healthy().await;
    server
}

impl LocalStackServer {
    /// The port of the gateway.
    pub fn port(&self) -> u16 {
        self.container.image().port()
    }

    /// Waits until `GET /_localstack/health` answers 200, at most [`READY_TIMEOUT`].
    pub async fn wait_healthy(&self) {
        wait_for_status(
            "LocalStack",
            &self.endpoint,
            LOCALSTACK_HEALTH_PATH,
            200,
            READY_TIMEOUT,
        )
        .await;
    }
}

/// What a test does to a server in a container: stop it, start it again,
/// freeze it (`docker pause`: connections are accepted by the kernel and
/// never answered, the way a hung server behaves, keeping all data) and thaw
/// it. One shape for every container fixture; each gives its container, its
/// name and its readiness check. The methods panic, naming the server, when
/// Docker refuses.
#[expect(
    async_fn_in_trait,
    reason = "test support awaited in the test's own task; no Send bound is needed"
)]
pub trait ServerContainer {
    /// The image the container runs.
    type Image: Image;
    /// The server's name in messages.
    const NAME: &'static str;

    /// The underlying container.
    fn container(&self) -> &ContainerAsync<Self::Image>;

    /// Waits until the server answers its health check.
    async fn ready(&self);

    /// Stops the container (SIGTERM, then SIGKILL after 10 s): the server is
    /// gone and its port refuses connections.
    async fn stop(&self) {
        self.container()
            .stop()
            .await
            .unwrap_or_else(|e| panic!("could not stop {}: {e}", Self::NAME));
    }

    /// Starts the stopped container again, on the same port, and waits until
    /// the server is healthy. The servers here keep nothing across a restart.
    async fn start(&self) {
        self.container()
            .start()
            .await
            .unwrap_or_else(|e| panic!("could not start {} again: {e}", Self::NAME));
        self.ready().await;
    }

    /// Freezes the server process: prefer this to [`stop`](Self::stop) for
    /// outage tests.
    async fn pause(&self) {
        self.container()
            .pause()
            .await
            .unwrap_or_else(|e| panic!("could not pause {}: {e}", Self::NAME));
    }

    /// Thaws a paused server and waits until it is healthy again.
    async fn unpause(&self) {
        self.container()
            .unpause()
            .await
            .unwrap_or_else(|e| panic!("could not unpause {}: {e}", Self::NAME));
        self.ready().await;
    }
}

impl ServerContainer for OpenBaoServer {
    type Image = OpenBao;
    const NAME: &'static str = "OpenBao";

    fn container(&self) -> &ContainerAsync<OpenBao> {
        &self.container
    }

    async fn ready(&self) {
        self.wait_healthy().await;
    }
}

impl ServerContainer for LocalStackServer {
    type Image = LocalStack;
    const NAME: &'static str = "LocalStack";

    fn container(&self) -> &ContainerAsync<LocalStack> {
        &self.container
    }

    async fn ready(&self) {
        self.wait_healthy().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_env_pins_openbao() {
        let image = pinned_image(OPENBAO_IMAGE_VAR).unwrap();
        let (name, tag) = split_image(image);
        assert!(!name.is_empty() && !tag.is_empty(), "{image}");
        assert_eq!(pinned_image("KMS_TEST_NO_SUCH_IMAGE"), None);
    }

    #[test]
    fn images_env_pins_localstack() {
        let image = pinned_image(LOCALSTACK_IMAGE_VAR).unwrap();
        assert_eq!(split_image(image).1, "4.14.0");
        let ls = LocalStack::new(4599);
        assert!(
            ls.env
                .contains(&("GATEWAY_LISTEN".into(), "127.0.0.1:4599".into()))
        );
        assert!(ls.env.contains(&("SERVICES".into(), "kms,ssm".into())));
    }

    #[test]
    fn images_env_lines_are_parsed() {
        let text = "# comment\n\n A = x/y:1 \nB=z\n";
        let lines: Vec<_> = parse_images_env(text).collect();
        assert_eq!(lines, [("A", "x/y:1"), ("B", "z")]);
    }

    #[test]
    fn image_names_split_at_the_tag() {
        assert_eq!(
            split_image("kms-test/openbao:2.7.2"),
            ("kms-test/openbao", "2.7.2")
        );
        assert_eq!(
            split_image("hashicorp/vault"),
            ("hashicorp/vault", "latest")
        );
        assert_eq!(
            split_image("registry:5000/team/vault:1.17"),
            ("registry:5000/team/vault", "1.17")
        );
        assert_eq!(
            split_image("registry:5000/vault"),
            ("registry:5000/vault", "latest")
        );
    }

    #[test]
    fn the_cli_follows_the_image() {
        let mut bao = OpenBao::new(8200);
        bao.name = "kms-test/openbao".into();
        assert_eq!(bao.cli(), "bao");
        bao.name = "hashicorp/vault".into();
        assert_eq!(bao.cli(), "vault");
        assert!(
            bao.cmd
                .contains(&"-dev-listen-address=127.0.0.1:8200".to_owned())
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a, b);
        assert_ne!(a, 0);
    }

    #[tokio::test]
    async fn http_status_is_none_without_a_server() {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        assert_eq!(
            http_status(&base, "/", Duration::from_millis(500)).await,
            None
        );
        assert_eq!(
            http_status("https://x", "/", Duration::from_millis(10)).await,
            None
        );
    }
}
