//! Load tests against a real OpenBao dev server in a container: rotations
//! made by other processes (`kms serve`'s admin API and the `kms rotate` CLI)
//! while two instances encrypt and decrypt each other's data, and an outage
//! (the server frozen) while cached traffic keeps flowing.
//!
//! Both print their figures on stderr (`docs/PERFORMANCE.md`, "Rotation and
//! outage under load"): run them with
//! `cargo xtask test -- --test integration -- load:: --nocapture --test-threads=1`
//! (or the same arguments after
//! `cargo test -p kms-tests --all-features --test integration` once
//! `cargo xtask test` has started Docker and built the images).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kms::circuit::CircuitState;
use kms::{Envelope, Error, Kms};
use serde_json::Value;

use crate::admin::{Server, curl};
use kms_tests::containers::ServerContainer;
use kms_tests::fixtures::vault::{server_with_default_key, spec_env};
use kms_tests::fixtures::{kms_binary, kms_cli, kms_from};

/// The admin token of the `kms serve` process.
const ADMIN_TOKEN: &str = "load-test-admin-token-0123456789";

/// Concurrent load tasks per `Kms` handle.
const TASKS_PER_HANDLE: usize = 4;

/// Operations between two yields of a load task: the cached paths never
/// await anything, so without a yield a load task would keep its worker
/// thread (and the timers and I/O driven by it) to itself.
const BATCH: u64 = 32;

// ---------------------------------------------------------------------------
// Rotation under load

/// Encrypt + decrypt operations the rotation test must reach, at least.
const ROTATION_MIN_OPS: u64 = 100_000;
/// Count bound: a load task stops after this many operations.
const ROTATION_MAX_OPS_PER_TASK: u64 = 10_000_000;
/// Time bound of the whole rotation test (after the `kms` binary is built).
const ROTATION_TIME_LIMIT: Duration = Duration::from_secs(180);
/// Rotations during the load: version 1 becomes version 1 + this.
const ROTATIONS: u64 = 10;
/// Load before the first rotation; every ciphertext of this first stretch is kept.
const WARM_UP: Duration = Duration::from_secs(1);
/// Time between the starts of two rotations.
const ROTATION_SPACING: Duration = Duration::from_millis(1500);
/// `KMS_CACHE_TTL` of both data-path handles: how soon each picks up a rotation.
const ROTATION_CACHE_TTL_MS: u64 = 300;
/// Slots of each handle's exchange: the ciphertexts the other handle decrypts.
const EXCHANGE_SLOTS: usize = 4096;
/// After the warm-up, every this-many-th ciphertext is kept for the final check.
const KEEP_EVERY: u64 = 10;

/// One encrypted value: the plaintext (its AAD is derived from it) and the
/// binary ciphertext.
struct Sample {
    plaintext: String,
    ciphertext: Vec<u8>,
}

impl Sample {
    fn aad(&self) -> String {
        aad_of(&self.plaintext)
    }
}

fn aad_of(plaintext: &str) -> String {
    format!("row:{plaintext}")
}

/// The key version (a KV version number) recorded in a ciphertext.
fn version_of(ciphertext: &[u8]) -> u64 {
    Envelope::parse(ciphertext)
        .and_then(|e| e.key_version())
        .map(|v| v.as_str().parse().unwrap())
        .unwrap()
}

/// The most recent ciphertexts of one handle, for the other handle to decrypt.
struct Exchange {
    slots: Vec<Mutex<Option<Arc<Sample>>>>,
}

impl Exchange {
    fn new() -> Arc<Self> {
        Arc::new(Exchange {
            slots: (0..EXCHANGE_SLOTS).map(|_| Mutex::new(None)).collect(),
        })
    }

    fn put(&self, index: usize, sample: Arc<Sample>) {
        *self.slots[index % EXCHANGE_SLOTS].lock().unwrap() = Some(sample);
    }

    fn get(&self, index: usize) -> Option<Arc<Sample>> {
        self.slots[index % EXCHANGE_SLOTS].lock().unwrap().clone()
    }
}

/// xorshift64: cheap, deterministic slot picks.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Failures counted by error code, with the first few messages.
#[derive(Default)]
struct Failures {
    by_code: BTreeMap<String, u64>,
    first: Vec<String>,
}

impl Failures {
    fn record(&mut self, what: &str, code: &str, detail: String) {
        *self.by_code.entry(code.to_owned()).or_default() += 1;
        if self.first.len() < 5 {
            self.first.push(format!("{what}: {code}: {detail}"));
        }
    }

    fn record_error(&mut self, what: &str, err: &Error) {
        self.record(what, err.code(), kms_tests::fixtures::error_chain(err));
    }

    fn total(&self) -> u64 {
        self.by_code.values().sum()
    }

    fn merge(&mut self, other: Failures) {
        for (code, n) in other.by_code {
            *self.by_code.entry(code).or_default() += n;
        }
        for line in other.first {
            if self.first.len() < 10 {
                self.first.push(line);
            }
        }
    }
}

/// What one load task of the rotation test did.
#[derive(Default)]
struct RotationTaskReport {
    encrypts: u64,
    decrypts: u64,
    failures: Failures,
    /// Key versions this task encrypted under.
    versions: BTreeSet<u64>,
    /// Ciphertexts kept for the final check.
    kept: Vec<Arc<Sample>>,
    worst: Duration,
}

/// One load task on `kms` (handle `handle`): encrypts a fresh value and
/// publishes it in `own`, then decrypts a value the other handle published
/// in `other`, until `stop` (or its count bound).
#[expect(
    clippy::too_many_arguments,
    reason = "a load task: each argument is one piece of shared state"
)]
async fn rotation_load_task(
    handle: usize,
    task: usize,
    kms: Kms,
    own: Arc<Exchange>,
    other: Arc<Exchange>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    started: Instant,
) -> RotationTaskReport {
    let mut report = RotationTaskReport::default();
    let mut random = 0x9E37_79B9_7F4A_7C15_u64 ^ ((handle as u64) << 32 | task as u64);
    let mut seq = 0_u64;
    let mut counted = 0_u64;
    while !stop.load(Ordering::Relaxed)
        && report.encrypts + report.decrypts < ROTATION_MAX_OPS_PER_TASK
    {
        for _ in 0..BATCH {
            seq += 1;
            let plaintext = format!("h{handle}-t{task}-{seq}");
            let aad = aad_of(&plaintext);
            let t = Instant::now();
            let sealed = kms.encrypt(plaintext.as_bytes(), aad.as_bytes()).await;
            report.worst = report.worst.max(t.elapsed());
            match sealed {
                Ok(ciphertext) => {
                    report.encrypts += 1;
                    report.versions.insert(version_of(&ciphertext));
                    let sample = Arc::new(Sample {
                        plaintext,
                        ciphertext,
                    });
                    if started.elapsed() < WARM_UP || seq.is_multiple_of(KEEP_EVERY) {
                        report.kept.push(sample.clone());
                    }
                    own.put(seq as usize * TASKS_PER_HANDLE + task, sample);
                }
                Err(e) => report.failures.record_error("encrypt", &e),
            }

            let Some(theirs) = other.get(next_random(&mut random) as usize) else {
                continue;
            };
            let t = Instant::now();
            let opened = kms
                .decrypt(&theirs.ciphertext, theirs.aad().as_bytes())
                .await;
            report.worst = report.worst.max(t.elapsed());
            match opened {
                Ok(plain) if plain == theirs.plaintext.as_bytes() => report.decrypts += 1,
                Ok(_) => report.failures.record(
                    "decrypt",
                    "WRONG_PLAINTEXT",
                    format!("for {}", theirs.plaintext),
                ),
                Err(e) => report.failures.record_error("decrypt", &e),
            }
        }
        let done = report.encrypts + report.decrypts;
        ops.fetch_add(done - counted, Ordering::Relaxed);
        counted = done;
        tokio::task::yield_now().await;
    }
    report
}

/// `POST /api/admin/kms/key/rotate` with curl: the new version.
async fn rotate_via_admin(server: &Server) -> u64 {
    let (code, body) = curl(vec![
        "-X".into(),
        "POST".into(),
        "-H".into(),
        format!("Authorization: Bearer {ADMIN_TOKEN}"),
        format!("{}/api/admin/kms/key/rotate", server.base),
    ])
    .await;
    assert_eq!(code, 200, "admin rotate: {body}\n{}", server.logs());
    new_key_version(&body)
}

/// `kms rotate`: the new version.
async fn rotate_via_cli(vars: &HashMap<String, String>) -> u64 {
    let (code, out, err) = kms_cli(vars, &["rotate"], b"").await;
    assert_eq!(code, 0, "kms rotate: {out} {err}");
    new_key_version(&out)
}

/// `data.newKeyVersion` of a rotation response (the admin API's and the CLI's).
fn new_key_version(body: &str) -> u64 {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    assert_eq!(
        json["message"], "Encryption key rotated successfully",
        "{body}"
    );
    json["data"]["newKeyVersion"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no newKeyVersion in {body}"))
}

/// A version whose ciphertexts failed this often in one verification task
/// is not tried any further there (each failure may cost a dozen provider
/// calls): its remaining ciphertexts count as failed, untried.
const GIVE_UP_AFTER: u64 = 20;

/// The outcome of decrypting every kept ciphertext through one instance.
#[derive(Default)]
struct FinalCheck {
    failures: Failures,
    /// Failed ciphertexts (tried or not) by key version.
    failed_by_version: BTreeMap<u64, u64>,
    /// Ciphertexts not tried after [`GIVE_UP_AFTER`] failures of their version.
    untried: u64,
}

/// Decrypts every sample through `kms`, spread over a few tasks.
async fn verify_all(kms: &Kms, samples: &Arc<Vec<Arc<Sample>>>) -> FinalCheck {
    let parts = 4;
    let mut tasks = Vec::new();
    for part in 0..parts {
        let (kms, samples) = (kms.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let mut check = FinalCheck::default();
            for (i, s) in samples.iter().enumerate().skip(part).step_by(parts) {
                let version = version_of(&s.ciphertext);
                let failed = check.failed_by_version.entry(version).or_default();
                if *failed >= GIVE_UP_AFTER {
                    *failed += 1;
                    check.untried += 1;
                    continue;
                }
                match kms.decrypt(&s.ciphertext, s.aad().as_bytes()).await {
                    Ok(plain) if plain == s.plaintext.as_bytes() => {}
                    Ok(_) => {
                        *failed += 1;
                        check.failures.record(
                            "final decrypt",
                            "WRONG_PLAINTEXT",
                            s.plaintext.clone(),
                        );
                    }
                    Err(e) => {
                        *failed += 1;
                        check
                            .failures
                            .record_error(&format!("final decrypt (version {version})"), &e);
                    }
                }
                if i.is_multiple_of(256) {
                    tokio::task::yield_now().await;
                }
            }
            check.failed_by_version.retain(|_, n| *n > 0);
            check
        }));
    }
    let mut check = FinalCheck::default();
    for t in tasks {
        let part = t.await.unwrap();
        check.failures.merge(part.failures);
        check.untried += part.untried;
        for (version, n) in part.failed_by_version {
            *check.failed_by_version.entry(version).or_default() += n;
        }
    }
    check
}

/// Two instances (separate `Kms` handles, separate caches, `KMS_CACHE_TTL`
/// 300 ms) encrypt and decrypt each other's data with four tasks each, while
/// other processes rotate the key ten times (`kms serve`'s admin endpoint and
/// the `kms rotate` CLI, alternately). No operation may fail, both instances
/// must encrypt under every version, and at the end every kept ciphertext
/// (all of the first second, then every tenth) must decrypt through both
/// instances and through a new instance with a cold cache, version 1
/// included (which needs the provider to keep 11 versions).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_load_across_instances() {
    kms_tests::skip_without_docker!();
    // The `kms` binary is built (if needed) before the clock starts.
    tokio::task::spawn_blocking(kms_binary).await.unwrap();
    tokio::time::timeout(ROTATION_TIME_LIMIT, rotation_under_load())
        .await
        .unwrap_or_else(|_| panic!("the rotation load test ran over {ROTATION_TIME_LIMIT:?}"));
}

#[allow(clippy::too_many_lines, reason = "one scenario, start to end")]
async fn rotation_under_load() {
    let (bao, _) = server_with_default_key().await;
    let cli_vars = spec_env(&bao, &[]);
    let server = Server::start(
        &spec_env(
            &bao,
            &[
                ("KMS_ADMIN_TOKEN", ADMIN_TOKEN),
                ("KMS_ADMIN_RATE_LIMIT", "0"),
                ("KMS_ADMIN_SENSITIVE_RATE_LIMIT", "0"),
            ],
        ),
        &[],
    );
    let ttl = ROTATION_CACHE_TTL_MS.to_string();
    let data_vars = spec_env(&bao, &[("KMS_CACHE_TTL", ttl.as_str())]);
    // Two instances: separately built, separate caches and breakers.
    let handles = [kms_from(&data_vars).await, kms_from(&data_vars).await];
    let exchanges = [Exchange::new(), Exchange::new()];

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (handle, kms) in handles.iter().enumerate() {
        for task in 0..TASKS_PER_HANDLE {
            tasks.push((
                handle,
                tokio::spawn(rotation_load_task(
                    handle,
                    task,
                    kms.clone(),
                    exchanges[handle].clone(),
                    exchanges[1 - handle].clone(),
                    stop.clone(),
                    ops.clone(),
                    started,
                )),
            ));
        }
    }

    // Ten rotations by other processes, spaced out over the load.
    let mut rotations = Vec::new();
    for i in 0..ROTATIONS {
        let at = started + WARM_UP + ROTATION_SPACING * u32::try_from(i).unwrap();
        tokio::time::sleep_until(at.into()).await;
        let t = Instant::now();
        let (via, version) = if i % 2 == 0 {
            ("admin", rotate_via_admin(&server).await)
        } else {
            ("cli", rotate_via_cli(&cli_vars).await)
        };
        rotations.push((started.elapsed(), via, version, t.elapsed()));
        assert_eq!(version, i + 2, "rotation {} ({via})", i + 1);
    }
    // Both instances pick up the last version and use it for a while.
    tokio::time::sleep(Duration::from_millis(ROTATION_CACHE_TTL_MS) + ROTATION_SPACING).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_handle: [RotationTaskReport; 2] = Default::default();
    for (handle, task) in tasks {
        let r = task.await.unwrap();
        let into = &mut per_handle[handle];
        into.encrypts += r.encrypts;
        into.decrypts += r.decrypts;
        into.failures.merge(r.failures);
        into.versions.extend(r.versions);
        into.kept.extend(r.kept);
        into.worst = into.worst.max(r.worst);
    }
    let load_time = started.elapsed();
    let total_ops = ops.load(Ordering::Relaxed);
    let per_second = total_ops as f64 / load_time.as_secs_f64();

    // Every kept ciphertext, through both instances and a new one.
    let kept: Arc<Vec<Arc<Sample>>> = Arc::new(
        per_handle
            .iter_mut()
            .flat_map(|r| std::mem::take(&mut r.kept))
            .collect(),
    );
    let mut kept_by_version: BTreeMap<u64, u64> = BTreeMap::new();
    for s in kept.iter() {
        *kept_by_version
            .entry(version_of(&s.ciphertext))
            .or_default() += 1;
    }
    let fresh = kms_from(&data_vars).await;
    let verify_started = Instant::now();
    let mut finals = Vec::new();
    for (name, kms) in [
        ("instance 0", &handles[0]),
        ("instance 1", &handles[1]),
        ("new instance (cold cache)", &fresh),
    ] {
        finals.push((name, verify_all(kms, &kept).await));
    }
    let verify_time = verify_started.elapsed();
    let (_, kv_meta, _) = bao
        .bao(&[
            "kv",
            "metadata",
            "get",
            "-format=json",
            "secret/boosterbeacon/encryption-keys/default",
        ])
        .await;
    let kv_meta: Value = serde_json::from_str(&kv_meta).unwrap_or(Value::Null);
    let kv_versions: Vec<String> = kv_meta["data"]["versions"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();

    eprintln!("== rotation_under_load_across_instances ==");
    eprintln!(
        "load: {total_ops} operations in {:.2} s = {per_second:.0} ops/s \
         ({} tasks on 2 instances, KMS_CACHE_TTL={ROTATION_CACHE_TTL_MS} ms)",
        load_time.as_secs_f64(),
        2 * TASKS_PER_HANDLE,
    );
    for (i, r) in per_handle.iter().enumerate() {
        eprintln!(
            "instance {i}: {} encrypts, {} decrypts of the other's data, {} failures {:?}, \
             versions encrypted under {:?}, worst op latency {:?}",
            r.encrypts,
            r.decrypts,
            r.failures.total(),
            r.failures.by_code,
            r.versions,
            r.worst
        );
        for line in &r.failures.first {
            eprintln!("  {line}");
        }
    }
    for (at, via, version, took) in &rotations {
        eprintln!(
            "rotation to version {version} via {via} at {:.2} s, took {took:?}",
            at.as_secs_f64()
        );
    }
    eprintln!(
        "final check: {} kept ciphertexts {kept_by_version:?} (version: count), {:.2} s for {} decrypts",
        kept.len(),
        verify_time.as_secs_f64(),
        3 * kept.len()
    );
    for (name, check) in &finals {
        eprintln!(
            "  {name}: {} failed {:?} + {} untried after {GIVE_UP_AFTER} failures of their \
             version; failed by version {:?}",
            check.failures.total(),
            check.failures.by_code,
            check.untried,
            check.failed_by_version
        );
        for line in &check.failures.first {
            eprintln!("    {line}");
        }
    }
    eprintln!(
        "OpenBao KV metadata: current_version {}, oldest_version {}, max_versions {}, versions {:?}",
        kv_meta["data"]["current_version"],
        kv_meta["data"]["oldest_version"],
        kv_meta["data"]["max_versions"],
        kv_versions
    );

    for (i, r) in per_handle.iter().enumerate() {
        assert_eq!(
            r.failures.total(),
            0,
            "instance {i} failed under load: {:?}",
            r.failures.first
        );
        let all: BTreeSet<u64> = (1..=1 + ROTATIONS).collect();
        assert_eq!(
            r.versions, all,
            "instance {i} did not encrypt under every version"
        );
    }
    assert!(
        total_ops >= ROTATION_MIN_OPS,
        "only {total_ops} operations (at least {ROTATION_MIN_OPS} wanted)"
    );
    assert!(
        kept_by_version.get(&1).copied().unwrap_or(0) > 0,
        "no version-1 ciphertext kept"
    );
    for (name, check) in &finals {
        assert!(
            !check.failed_by_version.contains_key(&1),
            "{name}: {} of {} version-1 ciphertexts no longer decrypt after {ROTATIONS} \
             rotations (OpenBao versions left: {kv_versions:?}, max_versions {}): {:?}",
            check.failed_by_version[&1],
            kept_by_version[&1],
            kv_meta["data"]["max_versions"],
            check.failures.first
        );
        assert!(
            check.failed_by_version.is_empty(),
            "{name}: final decryption failures by version {:?}: {:?}",
            check.failed_by_version,
            check.failures.first
        );
    }
}

// ---------------------------------------------------------------------------
// Outage under load

/// Time bound of the whole outage test.
const OUTAGE_TIME_LIMIT: Duration = Duration::from_secs(90);
/// Count bound: a load task stops after this many operations.
const OUTAGE_MAX_OPS_PER_TASK: u64 = 10_000_000;
/// Operations the cached-path load must reach, at least.
const OUTAGE_MIN_OPS: u64 = 10_000;
/// `KMS_TIMEOUT`.
const TIMEOUT: Duration = Duration::from_millis(300);
/// `KMS_RETRY_ATTEMPTS`: retries after the first attempt.
const RETRIES: u32 = 2;
/// `KMS_CIRCUIT_FAILURE_THRESHOLD`.
const FAILURE_THRESHOLD: u32 = 2;
/// `KMS_CIRCUIT_OPEN_DURATION`.
const OPEN_DURATION: Duration = Duration::from_millis(2000);
/// The resilience layer's default backoff (not configurable by variables):
/// retry `n` waits at most `min(2 s, 100 ms * 2^n)`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Allowance for scheduling on a loaded 2-core machine.
const SLACK: Duration = Duration::from_millis(500);
/// How long the server stays frozen.
const OUTAGE: Duration = Duration::from_secs(4);
/// Warm ciphertexts (version 1, decrypted once before the load).
const WARM: usize = 256;

/// The documented worst case of one uncached call: every attempt runs into
/// the timeout, plus the longest backoff before each retry.
fn uncached_budget() -> Duration {
    let backoffs: Duration = (0..RETRIES)
        .map(|n| INITIAL_BACKOFF.saturating_mul(1 << n).min(MAX_BACKOFF))
        .sum();
    TIMEOUT * (RETRIES + 1) + backoffs
}

/// What one cached-path load task of the outage test did.
#[derive(Default)]
struct OutageTaskReport {
    ops: u64,
    failures: Failures,
    worst: Duration,
}

/// Encrypts, decrypts a warm ciphertext and decrypts its own fresh one, all
/// on cached key versions, until `stop` (or its count bound).
async fn outage_load_task(
    task: usize,
    kms: Kms,
    warm: Arc<Vec<Sample>>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
) -> OutageTaskReport {
    let mut report = OutageTaskReport::default();
    let mut seq = 0_u64;
    while !stop.load(Ordering::Relaxed) && report.ops < OUTAGE_MAX_OPS_PER_TASK {
        let before = report.ops;
        for _ in 0..BATCH / 4 {
            seq += 1;
            let plaintext = format!("t{task}-{seq}");
            let aad = aad_of(&plaintext);
            let t = Instant::now();
            let sealed = kms.encrypt(plaintext.as_bytes(), aad.as_bytes()).await;
            report.worst = report.worst.max(t.elapsed());
            match sealed {
                Ok(ct) => {
                    report.ops += 1;
                    let t = Instant::now();
                    let opened = kms.decrypt(&ct, aad.as_bytes()).await;
                    report.worst = report.worst.max(t.elapsed());
                    match opened {
                        Ok(p) if p == plaintext.as_bytes() => report.ops += 1,
                        Ok(_) => {
                            report
                                .failures
                                .record("decrypt own", "WRONG_PLAINTEXT", plaintext)
                        }
                        Err(e) => report.failures.record_error("decrypt own", &e),
                    }
                }
                Err(e) => report.failures.record_error("encrypt", &e),
            }
            let s = &warm[(seq as usize * TASKS_PER_HANDLE + task) % warm.len()];
            let t = Instant::now();
            let opened = kms.decrypt(&s.ciphertext, s.aad().as_bytes()).await;
            report.worst = report.worst.max(t.elapsed());
            match opened {
                Ok(p) if p == s.plaintext.as_bytes() => report.ops += 1,
                Ok(_) => {
                    report
                        .failures
                        .record("decrypt warm", "WRONG_PLAINTEXT", s.plaintext.clone())
                }
                Err(e) => report.failures.record_error("decrypt warm", &e),
            }
        }
        ops.fetch_add(report.ops - before, Ordering::Relaxed);
        tokio::task::yield_now().await;
    }
    report
}

/// One uncached call made during the outage.
struct Probe {
    who: &'static str,
    took: Duration,
    /// `None`: it succeeded.
    error: Option<(&'static str, String)>,
    circuit_after: Option<CircuitState>,
}

/// Uncached calls through `call` (on `kms`) during the outage, one after
/// the other, until the circuit has been seen open and has refused three
/// calls, or until `until`. It stops there so that no trial call runs
/// during the outage.
async fn probe_outage<F, Fut>(who: &'static str, kms: &Kms, until: Instant, call: F) -> Vec<Probe>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = kms::Result<()>>,
{
    let mut probes = Vec::new();
    let mut refused_while_open = 0;
    while Instant::now() < until && refused_while_open < 3 {
        let was_open = kms.circuit_state() == Some(CircuitState::Open);
        let t = Instant::now();
        let result = call().await;
        let took = t.elapsed();
        let circuit_after = kms.circuit_state();
        if was_open && result.is_err() {
            refused_while_open += 1;
        }
        probes.push(Probe {
            who,
            took,
            error: result.err().map(|e| (e.code(), e.to_string())),
            circuit_after,
        });
        if was_open {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    probes
}

/// Calls `call` every 50 ms until it succeeds; how long after `from` it did.
async fn time_to_recover<F, Fut>(what: &str, from: Instant, call: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = kms::Result<()>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match call().await {
            Ok(()) => return from.elapsed(),
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.to_string(), "KMS service unavailable", "{what}: {e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{what} did not recover within 20 s: {e:?}"),
        }
    }
}

/// OpenBao frozen for 4 s under a cached load on four tasks (`KMS_TIMEOUT`
/// 300 ms, 2 retries, circuit threshold 2, open for 2 s): the cached path
/// never fails; uncached calls (a version this instance never fetched, and
/// a second instance with a cold cache) fail with "KMS service unavailable"
/// within timeout x attempts + backoff (+ 500 ms slack), both circuits open,
/// and after the resume an uncached call succeeds within the open duration
/// (+ slack).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outage_under_load() {
    kms_tests::skip_without_docker!();
    tokio::time::timeout(OUTAGE_TIME_LIMIT, outage_scenario())
        .await
        .unwrap_or_else(|_| panic!("the outage load test ran over {OUTAGE_TIME_LIMIT:?}"));
}

#[allow(clippy::too_many_lines, reason = "one scenario, start to end")]
async fn outage_scenario() {
    let (bao, _) = server_with_default_key().await;
    let timeout = TIMEOUT.as_millis().to_string();
    let retries = RETRIES.to_string();
    let threshold = FAILURE_THRESHOLD.to_string();
    let open = OPEN_DURATION.as_millis().to_string();
    let vars = spec_env(
        &bao,
        &[
            ("KMS_TIMEOUT", timeout.as_str()),
            ("KMS_RETRY_ATTEMPTS", retries.as_str()),
            ("KMS_CIRCUIT_FAILURE_THRESHOLD", threshold.as_str()),
            ("KMS_CIRCUIT_OPEN_DURATION", open.as_str()),
            // The current version stays cached for the whole test.
            ("KMS_CACHE_TTL", "10m"),
        ],
    );
    let kms = kms_from(&vars).await;
    // A second instance that never makes a call before the outage: cold cache.
    let cold = kms_from(&vars).await;

    // Warm the cache: ciphertexts under version 1, each decrypted once.
    let mut warm = Vec::new();
    for i in 0..WARM {
        let plaintext = format!("warm-{i}");
        let ciphertext = kms
            .encrypt(plaintext.as_bytes(), aad_of(&plaintext).as_bytes())
            .await
            .unwrap();
        let sample = Sample {
            plaintext,
            ciphertext,
        };
        let plain = kms
            .decrypt(&sample.ciphertext, sample.aad().as_bytes())
            .await
            .unwrap();
        assert_eq!(plain, sample.plaintext.as_bytes());
        warm.push(sample);
    }
    let warm = Arc::new(warm);
    // Version 2, written by another instance: `kms` never fetches it before
    // the outage (its current version stays 1 for the cache TTL).
    let other = kms_from(&vars).await;
    assert_eq!(other.rotate().await.unwrap().as_str(), "2");
    let unseen = other.encrypt(b"unseen", b"row:unseen").await.unwrap();
    assert_eq!(version_of(&unseen), 2);
    drop(other);
    assert_eq!(version_of(&warm[0].ciphertext), 1);

    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS_PER_HANDLE)
        .map(|task| {
            tokio::spawn(outage_load_task(
                task,
                kms.clone(),
                warm.clone(),
                stop.clone(),
                ops.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(500)).await;
    let ops_before_pause = ops.load(Ordering::Relaxed);
    bao.pause().await;
    let paused_at = Instant::now();
    let outage_end = paused_at + OUTAGE;

    let unseen_call = || async { kms.decrypt(&unseen, b"row:unseen").await.map(drop) };
    let cold_call = || async { cold.encrypt(b"cold", b"row:cold").await.map(drop) };
    let (unseen_probes, cold_probes) = tokio::join!(
        probe_outage("uncached version", &kms, outage_end, unseen_call),
        probe_outage("cold instance", &cold, outage_end, cold_call),
    );
    let circuits_during = (kms.circuit_state(), cold.circuit_state());
    // The circuits stay open without trial calls until the server is back.
    tokio::time::sleep_until(outage_end.into()).await;
    let ops_at_unpause = ops.load(Ordering::Relaxed);
    let unpause_called = Instant::now();
    bao.unpause().await;
    let resumed = Instant::now();

    let (recovered_unseen, recovered_cold) = tokio::join!(
        time_to_recover("the uncached version", resumed, unseen_call),
        time_to_recover("the cold instance", resumed, cold_call),
    );
    let circuits_after = (kms.circuit_state(), cold.circuit_state());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut cached = OutageTaskReport::default();
    for t in tasks {
        let r = t.await.unwrap();
        cached.ops += r.ops;
        cached.failures.merge(r.failures);
        cached.worst = cached.worst.max(r.worst);
    }
    let load_time = started.elapsed();

    let budget = uncached_budget() + SLACK;
    let probes: Vec<&Probe> = unseen_probes.iter().chain(&cold_probes).collect();
    let mut uncached_by_code: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &probes {
        let code = p.error.as_ref().map_or("OK", |(code, _)| *code);
        *uncached_by_code.entry(code).or_default() += 1;
    }
    let worst_uncached = probes.iter().map(|p| p.took).max().unwrap_or_default();
    let fast: Vec<Duration> = probes
        .iter()
        .filter(|p| p.took < TIMEOUT)
        .map(|p| p.took)
        .collect();

    eprintln!("== outage_under_load ==");
    eprintln!(
        "settings: KMS_TIMEOUT={} ms, KMS_RETRY_ATTEMPTS={RETRIES}, \
         KMS_CIRCUIT_FAILURE_THRESHOLD={FAILURE_THRESHOLD}, KMS_CIRCUIT_OPEN_DURATION={} ms; \
         uncached budget {:?} + slack {SLACK:?}; outage {OUTAGE:?} (docker pause)",
        TIMEOUT.as_millis(),
        OPEN_DURATION.as_millis(),
        uncached_budget()
    );
    eprintln!(
        "cached path: {} operations in {:.2} s = {:.0} ops/s ({} during the outage), \
         {} errors {:?}, worst latency {:?}",
        cached.ops,
        load_time.as_secs_f64(),
        cached.ops as f64 / load_time.as_secs_f64(),
        ops_at_unpause - ops_before_pause,
        cached.failures.total(),
        cached.failures.by_code,
        cached.worst
    );
    for line in &cached.failures.first {
        eprintln!("  {line}");
    }
    eprintln!(
        "uncached calls during the outage: {} {uncached_by_code:?}, worst latency {worst_uncached:?}, \
         {} refused at once (worst {:?})",
        probes.len(),
        fast.len(),
        fast.iter().max().copied().unwrap_or_default()
    );
    for p in &probes {
        eprintln!(
            "  {}: {:?} -> {} (circuit then {:?})",
            p.who,
            p.took,
            p.error
                .as_ref()
                .map_or_else(|| "ok".to_owned(), |(c, m)| format!("{c}: {m}")),
            p.circuit_after
        );
    }
    eprintln!(
        "circuits at the end of the outage (version prober, cold instance): {circuits_during:?}; \
         docker unpause + health check took {:?}",
        resumed - unpause_called
    );
    eprintln!(
        "recovery after the resume: uncached version {recovered_unseen:?}, cold instance \
         {recovered_cold:?}; circuits then {circuits_after:?}"
    );

    // The cached path never failed, also while the server was frozen.
    assert_eq!(
        cached.failures.total(),
        0,
        "cached-path failures: {:?}",
        cached.failures.first
    );
    assert!(
        cached.ops >= OUTAGE_MIN_OPS,
        "only {} cached-path operations (at least {OUTAGE_MIN_OPS} wanted)",
        cached.ops
    );
    assert!(
        ops_at_unpause > ops_before_pause,
        "no cached-path operation completed during the outage"
    );
    // Uncached calls: the exact message, within the budget; the first ones
    // ran into the timeout (a frozen server hangs), and both circuits opened.
    for p in &probes {
        let (_, message) = p
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("{}: an uncached call succeeded during the outage", p.who));
        assert_eq!(message, "KMS service unavailable", "{}", p.who);
        assert!(
            p.took <= budget,
            "{}: an uncached call took {:?} (budget {budget:?})",
            p.who,
            p.took
        );
    }
    for list in [&unseen_probes, &cold_probes] {
        let first = list.first().expect("no uncached call was made");
        assert!(
            first.took >= TIMEOUT,
            "{}: the first call failed in {:?}, before the timeout",
            first.who,
            first.took
        );
        assert!(
            list.iter()
                .any(|p| p.circuit_after == Some(CircuitState::Open)),
            "{}: the circuit never opened",
            first.who
        );
    }
    assert_eq!(
        circuits_during,
        (Some(CircuitState::Open), Some(CircuitState::Open))
    );
    // Recovery within the open duration (+ slack) of the resume.
    for (what, took) in [
        ("uncached version", recovered_unseen),
        ("cold instance", recovered_cold),
    ] {
        assert!(
            took <= OPEN_DURATION + SLACK,
            "{what}: recovered {took:?} after the resume (open duration {OPEN_DURATION:?})"
        );
    }
    assert_eq!(
        circuits_after,
        (Some(CircuitState::Closed), Some(CircuitState::Closed))
    );
}
