//! Key lifecycle: the minimum decryption version of a key (retiring old
//! versions after a rewrap) and scheduled rotation.
//!
//! Both are set on the builder ([`crate::KmsBuilder::min_decryption_version`],
//! [`crate::KmsBuilder::rotation_period`]) or by `KMS_MIN_DECRYPTION_VERSION`
//! and `KMS_ROTATION_PERIOD`, and attached to the [`Kms`] by `build()`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::Utc;
use kms_core::{DataKey, Error, KeyId, KeyProvider, KeyVersion, LiveVersions, Result, VersionInfo};

/// Longest wait between two checks of scheduled rotation.
pub(crate) const MAX_ROTATION_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// How soon an unknown version may trigger another listing of a key's versions.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(1);

/// The lifecycle settings a builder collects.
#[derive(Debug, Clone, Default)]
pub(crate) struct LifecycleConfig {
    /// Minimum decryption version per key id (the last setting for a key wins).
    pub(crate) min_versions: Vec<(KeyId, KeyVersion)>,
    /// `KMS_ROTATION_PERIOD`.
    pub(crate) rotation_period: Option<Duration>,
    /// Check interval of scheduled rotation (default: min(period / 10, 1 h)).
    pub(crate) check_interval: Option<Duration>,
}

impl LifecycleConfig {
    /// The check interval in effect for `period`.
    pub(crate) fn interval_for(&self, period: Duration) -> Duration {
        self.check_interval
            .unwrap_or_else(|| (period / 10).min(MAX_ROTATION_CHECK_INTERVAL))
            .max(Duration::from_millis(1))
    }

    /// Validates the minimum versions against `provider` (the top of the
    /// stack) and starts scheduled rotation of `key_id`, which rotates
    /// through `provider` and lists versions through `lister` (the stack
    /// below any cache).
    pub(crate) async fn start(
        self,
        provider: &Arc<dyn KeyProvider>,
        lister: Arc<dyn KeyProvider>,
        key_id: &KeyId,
    ) -> Result<Lifecycle> {
        let retired = if self.min_versions.is_empty() {
            None
        } else {
            Some(Arc::new(
                MinVersions::load(provider, &self.min_versions).await?,
            ))
        };
        let live =
            LiveVersions::from_optional(retired.as_ref().and_then(|r| r.minimum(key_id)).cloned());
        let schedule = match self.rotation_period {
            Some(period) if !period.is_zero() => Some(Arc::new(Schedule::start(
                provider.clone(),
                lister,
                key_id.clone(),
                live,
                period,
                self.interval_for(period),
            ))),
            _ => None,
        };
        Ok(Lifecycle { retired, schedule })
    }
}

/// A started lifecycle, for the client: the minimum decryption versions
/// and the rotation schedule (which stops when the last holder drops it).
#[derive(Debug, Clone, Default)]
pub(crate) struct Lifecycle {
    pub(crate) retired: Option<Arc<MinVersions>>,
    /// Held, never read: the task stops when the last holder drops it.
    #[expect(dead_code, reason = "held for its Drop, which stops the rotation task")]
    pub(crate) schedule: Option<Arc<Schedule>>,
}

/// The order of one key's versions, for the minimum decryption version check.
#[derive(Debug)]
struct Ordering {
    /// Version name to position in `versions()` (oldest first).
    index: HashMap<KeyVersion, usize>,
    /// Position of the minimum version.
    min_index: usize,
    /// When the list was fetched.
    fetched: Instant,
}

/// One key's minimum decryption version and the cached version order.
#[derive(Debug)]
struct MinVersion {
    minimum: KeyVersion,
    order: RwLock<Ordering>,
}

/// What the cached order says about a version.
pub(crate) enum Verdict {
    /// At or after the minimum (or the key has no minimum).
    Allowed,
    /// Older than the minimum.
    Retired(Error),
    /// Not in the cached list: ask the provider.
    Unknown,
}

/// The minimum decryption versions of the keys that have one. Cheap to
/// check on the decrypt path: one hash lookup of the key id, one of the
/// version, under a read lock; the provider is asked for the version list
/// only at build time and when a version shows up that the list lacks (a
/// rotation since), at most once a second per key.
pub(crate) struct MinVersions {
    keys: HashMap<KeyId, MinVersion>,
}

impl fmt::Debug for MinVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.keys
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.minimum.as_str())),
            )
            .finish()
    }
}

fn ordering(key_id: &KeyId, minimum: &KeyVersion, list: &[VersionInfo]) -> Result<Ordering> {
    let index: HashMap<KeyVersion, usize> = list
        .iter()
        .enumerate()
        .map(|(i, v)| (v.version.clone(), i))
        .collect();
    let min_index = *index.get(minimum).ok_or_else(|| {
        Error::config(
            "KMS_MIN_DECRYPTION_VERSION",
            format!("key {key_id} has no version {minimum}"),
        )
    })?;
    Ok(Ordering {
        index,
        min_index,
        fetched: Instant::now(),
    })
}

impl MinVersions {
    /// Lists the versions of every key with a minimum; fails when the
    /// provider does not have the minimum version.
    async fn load(provider: &Arc<dyn KeyProvider>, mins: &[(KeyId, KeyVersion)]) -> Result<Self> {
        let mut keys = HashMap::new();
        for (key_id, minimum) in mins {
            let list = provider.versions(key_id).await?;
            let order = ordering(key_id, minimum, &list)?;
            keys.insert(
                key_id.clone(),
                MinVersion {
                    minimum: minimum.clone(),
                    order: RwLock::new(order),
                },
            );
        }
        Ok(MinVersions { keys })
    }

    /// The minimum decryption version of a key, if it has one.
    pub(crate) fn minimum(&self, key_id: &KeyId) -> Option<&KeyVersion> {
        self.keys.get(key_id).map(|m| &m.minimum)
    }

    /// The verdict from the cached order alone (synchronous: the decrypt
    /// fast path).
    pub(crate) fn verdict(&self, key: &DataKey) -> Verdict {
        let Some(min) = self.keys.get(key.key_id()) else {
            return Verdict::Allowed;
        };
        let order = min.order.read().unwrap_or_else(PoisonError::into_inner);
        match order.index.get(key.version()) {
            Some(i) if *i < order.min_index => Verdict::Retired(retired(key, &min.minimum)),
            Some(_) => Verdict::Allowed,
            None => Verdict::Unknown,
        }
    }

    /// Refuses a key older than its minimum, listing the versions again when
    /// the cached list does not know it.
    pub(crate) async fn check(&self, provider: &dyn KeyProvider, key: &DataKey) -> Result<()> {
        match self.verdict(key) {
            Verdict::Allowed => return Ok(()),
            Verdict::Retired(e) => return Err(e),
            Verdict::Unknown => {}
        }
        let Some(min) = self.keys.get(key.key_id()) else {
            return Ok(());
        };
        let stale = {
            let order = min.order.read().unwrap_or_else(PoisonError::into_inner);
            order.fetched.elapsed() >= REFRESH_AT_MOST_EVERY
        };
        if stale {
            let list = provider.versions(key.key_id()).await?;
            match ordering(key.key_id(), &min.minimum, &list) {
                Ok(order) => {
                    *min.order.write().unwrap_or_else(PoisonError::into_inner) = order;
                }
                Err(_) => {
                    tracing::warn!(
                        target: "kms",
                        key_id = %key.key_id(),
                        minimum = %min.minimum,
                        "the minimum decryption version is no longer listed by the provider: keeping the previous version order"
                    );
                    min.order
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .fetched = Instant::now();
                }
            }
        }
        match self.verdict(key) {
            Verdict::Retired(e) => Err(e),
            // Still unlisted: the provider reads it but does not list it;
            // nothing says it is older than the minimum.
            Verdict::Allowed | Verdict::Unknown => Ok(()),
        }
    }
}

fn retired(key: &DataKey, minimum: &KeyVersion) -> Error {
    Error::KeyVersionRetired {
        key_id: key.key_id().clone(),
        version: key.version().clone(),
        minimum: minimum.clone(),
    }
}

/// The scheduled rotation task; stopped when the last [`Kms`] clone that
/// holds it is dropped.
pub(crate) struct Schedule {
    task: tokio::task::JoinHandle<()>,
    period: Duration,
    interval: Duration,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("period", &self.period)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl Drop for Schedule {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `d` times a random factor in [0.75, 1.25).
fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.75 + rand::random::<f64>() / 2.0)
}

impl Schedule {
    /// Spawns the task on the current Tokio runtime. It holds the provider
    /// stack, not the `Kms`.
    /// `provider` rotates (through the cache, which then holds the new
    /// version); `lister` lists versions as the provider has them, never
    /// from a cache.
    fn start(
        provider: Arc<dyn KeyProvider>,
        lister: Arc<dyn KeyProvider>,
        key_id: KeyId,
        live: LiveVersions,
        period: Duration,
        interval: Duration,
    ) -> Self {
        tracing::info!(
            target: "kms",
            key_id = %key_id,
            period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX),
            check_interval_ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            "scheduled rotation enabled"
        );
        let task = tokio::spawn(async move {
            // The first check soon after start (a key overdue while no
            // instance ran is rotated at once), spread over the interval so
            // instances started together do not ask together.
            let mut wait = jittered(interval / 2);
            loop {
                tokio::time::sleep(wait).await;
                let _ = check_rotation(&*provider, &*lister, &key_id, &live, period).await;
                wait = jittered(interval);
            }
        });
        Schedule {
            task,
            period,
            interval,
        }
    }
}

/// One check of scheduled rotation: rotates `key_id` with check-and-set
/// when its current version is at least `period` old, keeping `live` (a
/// provider that would have to evict a live version refuses, and the
/// refusal is logged at every check until an operator acts). Returns the new key
/// when this call rotated it. Logs every outcome worth knowing; never key
/// bytes.
///
/// # Errors
/// Provider errors (also logged as warnings).
pub(crate) async fn check_rotation(
    provider: &dyn KeyProvider,
    lister: &dyn KeyProvider,
    key_id: &KeyId,
    live: &LiveVersions,
    period: Duration,
) -> Result<Option<DataKey>> {
    let result = check_rotation_inner(provider, lister, key_id, live, period).await;
    if let Err(e) = &result {
        tracing::warn!(
            target: "kms",
            key_id = %key_id,
            error = %e,
            code = e.code(),
            "scheduled rotation check failed"
        );
    }
    result
}

async fn check_rotation_inner(
    provider: &dyn KeyProvider,
    lister: &dyn KeyProvider,
    key_id: &KeyId,
    live: &LiveVersions,
    period: Duration,
) -> Result<Option<DataKey>> {
    // The provider's own list (never cached): the current version is the
    // newest enabled one, with its creation time.
    let list = lister.versions(key_id).await?;
    let Some(current) = list.iter().rev().find(|v| v.enabled) else {
        return Err(Error::key_not_found(key_id, None));
    };
    let Some(created) = current.created_at else {
        return Err(Error::Unsupported {
            provider: provider.name(),
            message: format!(
                "scheduled rotation needs the creation time of key versions, and version {} of key {key_id} has none",
                current.version
            ),
        });
    };
    let age = (Utc::now() - created).to_std().unwrap_or(Duration::ZERO);
    if age < period {
        tracing::trace!(target: "kms", key_id = %key_id, version = %current.version, "current key version not due for rotation");
        return Ok(None);
    }
    let rotated = provider
        .rotate_if_current(key_id, &current.version, live)
        .await?;
    match &rotated {
        Some(key) => tracing::info!(
            target: "kms",
            key_id = %key_id,
            previous_version = %current.version,
            version = %key.version(),
            fingerprint = %key.fingerprint(),
            age_s = age.as_secs(),
            "scheduled rotation: encryption key rotated"
        ),
        None => tracing::info!(
            target: "kms",
            key_id = %key_id,
            previous_version = %current.version,
            "scheduled rotation: another instance rotated the key first"
        ),
    }
    Ok(rotated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kms;
    use kms_testing::MemoryProvider;

    fn id() -> KeyId {
        KeyId::default()
    }

    /// A provider with versions 1..=n, and a Kms over it.
    async fn kms_with_versions(
        n: u64,
        builder: impl FnOnce(crate::KmsBuilder) -> crate::KmsBuilder,
    ) -> Result<(Kms, Arc<MemoryProvider>)> {
        let p = Arc::new(MemoryProvider::with_key(id()));
        for _ in 1..n {
            p.rotate(&id(), &LiveVersions::all()).await.unwrap();
        }
        let kms = builder(Kms::builder().provider_arc(p.clone()))
            .build()
            .await?;
        Ok((kms, p))
    }

    #[tokio::test]
    async fn minimum_refuses_older_versions() {
        let p = Arc::new(MemoryProvider::with_key(id()));
        let plain = Kms::builder()
            .provider_arc(p.clone())
            .build()
            .await
            .unwrap();
        let v1 = plain.encrypt_str("one", b"").await.unwrap();
        p.rotate(&id(), &LiveVersions::all()).await.unwrap();
        plain.clear_cache();
        let v2 = plain.encrypt_str("two", b"").await.unwrap();
        p.rotate(&id(), &LiveVersions::all()).await.unwrap();
        plain.clear_cache();
        let v3 = plain.encrypt_str("three", b"").await.unwrap();

        let kms = Kms::builder()
            .provider_arc(p.clone())
            .min_decryption_version(id(), KeyVersion::from(2))
            .build()
            .await
            .unwrap();
        assert_eq!(
            kms.min_decryption_version(&id()),
            Some(&KeyVersion::from(2))
        );
        assert_eq!(kms.config().min_decryption_versions["default"], "2");
        let e = kms.decrypt_str(&v1, b"").await.unwrap_err();
        assert_eq!(e.code(), "KEY_VERSION_RETIRED");
        assert_eq!(
            e.to_string(),
            "key version 1 of key default is retired (minimum decryption version is 2): rewrap the data"
        );
        assert!(e.is_permanent());
        assert_eq!(kms.decrypt_str(&v2, b"").await.unwrap(), "two");
        assert_eq!(kms.decrypt_str(&v3, b"").await.unwrap(), "three");
        // The hot slot (current key) path, twice.
        let fresh = kms.encrypt_str("four", b"").await.unwrap();
        assert_eq!(kms.decrypt_str(&fresh, b"").await.unwrap(), "four");
        assert_eq!(kms.decrypt_str(&fresh, b"").await.unwrap(), "four");
        // Still refused when the old key is the one in the hot slot.
        assert!(kms.decrypt_str(&v1, b"").await.is_err());
    }

    #[tokio::test]
    async fn versions_after_the_cached_list_are_allowed() {
        let (kms, p) =
            kms_with_versions(2, |b| b.min_decryption_version(id(), KeyVersion::from(2)))
                .await
                .unwrap();
        // Another instance rotates: version 3 is not in the cached list.
        p.rotate(&id(), &LiveVersions::all()).await.unwrap();
        let other = Kms::builder()
            .provider_arc(p.clone())
            .build()
            .await
            .unwrap();
        let v3 = other.encrypt_str("x", b"").await.unwrap();
        tokio::time::sleep(REFRESH_AT_MOST_EVERY).await;
        assert_eq!(kms.decrypt_str(&v3, b"").await.unwrap(), "x");
    }

    #[tokio::test]
    async fn unknown_minimum_is_refused_at_build() {
        let e = kms_with_versions(2, |b| b.min_decryption_version(id(), KeyVersion::from(7)))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "INVALID_CONFIG");
        assert!(e.to_string().contains("KMS_MIN_DECRYPTION_VERSION"), "{e}");
        assert!(e.to_string().contains("no version 7"), "{e}");
    }

    #[tokio::test]
    async fn minimum_from_the_environment() {
        let vars = [
            ("KMS_MIN_DECRYPTION_VERSION", "3"),
            ("KMS_ROTATION_PERIOD", "90d"),
        ];
        let b = crate::KmsBuilder::from_lookup(|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        })
        .unwrap();
        let c = b.config();
        assert_eq!(c.min_decryption_versions["default"], "3");
        assert_eq!(c.rotation_period_ms, Some(90 * 86_400_000));
        for (var, val) in [
            ("KMS_MIN_DECRYPTION_VERSION", "a/b"),
            ("KMS_ROTATION_PERIOD", "soon"),
        ] {
            let e =
                crate::KmsBuilder::from_lookup(|n| (n == var).then(|| val.to_owned())).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
    }

    #[test]
    fn check_interval() {
        let c = LifecycleConfig::default();
        assert_eq!(
            c.interval_for(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(
            c.interval_for(Duration::from_secs(90 * 86_400)),
            MAX_ROTATION_CHECK_INTERVAL
        );
        for _ in 0..100 {
            let j = jittered(Duration::from_secs(100));
            assert!(
                j >= Duration::from_secs(75) && j < Duration::from_secs(125),
                "{j:?}"
            );
        }
    }

    #[tokio::test]
    async fn check_rotates_only_when_due() {
        let p = MemoryProvider::with_key(id());
        assert!(
            check_rotation(
                &p,
                &p,
                &id(),
                &LiveVersions::all(),
                Duration::from_secs(3600)
            )
            .await
            .unwrap()
            .is_none()
        );
        let rotated = check_rotation(&p, &p, &id(), &LiveVersions::all(), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(rotated.unwrap().version().as_str(), "2");
    }

    #[tokio::test]
    async fn check_and_set_gives_one_rotation() {
        let p = MemoryProvider::with_key(id());
        let v1 = KeyVersion::from(1);
        assert!(
            p.rotate_if_current(&id(), &v1, &LiveVersions::all())
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            p.rotate_if_current(&id(), &v1, &LiveVersions::all())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(p.versions(&id()).await.unwrap().len(), 2);
    }

    /// Five instances over one provider, period 400 ms, checking every
    /// 20 ms: consecutive versions are at least a period apart (one
    /// rotation per period, not one per instance).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_instances_rotate_once_per_period() {
        let p = Arc::new(MemoryProvider::with_key(id()));
        let period = Duration::from_millis(400);
        let mut instances = Vec::new();
        for _ in 0..5 {
            instances.push(
                Kms::builder()
                    .provider_arc(p.clone())
                    .rotation_period(period)
                    .rotation_check_interval(Duration::from_millis(20))
                    .build()
                    .await
                    .unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let versions = p.versions(&id()).await.unwrap();
        assert!(
            (3..=5).contains(&versions.len()),
            "{} versions",
            versions.len()
        );
        for pair in versions.windows(2) {
            let gap = (pair[1].created_at.unwrap() - pair[0].created_at.unwrap())
                .to_std()
                .unwrap();
            assert!(gap >= period, "two rotations {gap:?} apart");
        }
        // Dropping every instance stops the tasks.
        drop(instances);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let n = p.versions(&id()).await.unwrap().len();
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(p.versions(&id()).await.unwrap().len(), n);
    }

    #[tokio::test]
    async fn clones_share_the_schedule() {
        let p = Arc::new(MemoryProvider::with_key(id()));
        let kms = Kms::builder()
            .provider_arc(p.clone())
            .rotation_period(Duration::from_millis(100))
            .rotation_check_interval(Duration::from_millis(10))
            .build()
            .await
            .unwrap();
        let clone = kms.with_key_id(id());
        drop(kms);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(p.versions(&id()).await.unwrap().len() >= 2);
        drop(clone);
    }

    /// A provider that keeps 3 versions (as Vault's `max_versions`): the
    /// rotation that would evict the oldest live version is refused before
    /// writing; with a minimum decryption version, retired versions may go.
    #[tokio::test]
    async fn rotation_never_evicts_a_live_version() {
        let p = Arc::new(MemoryProvider::with_key(id()).with_max_versions(3));
        let kms = Kms::builder()
            .provider_arc(p.clone())
            .cache_ttl(Duration::ZERO)
            .build()
            .await
            .unwrap();
        let mut values = vec![kms.encrypt_str("v1", b"").await.unwrap()];
        for n in 2..=3 {
            assert_eq!(kms.rotate().await.unwrap().as_str(), n.to_string());
            values.push(kms.encrypt_str(&format!("v{n}"), b"").await.unwrap());
        }
        let meta = kms.metadata().await.unwrap();
        assert_eq!(
            (meta.max_versions, meta.versions_remaining),
            (Some(3), Some(0))
        );
        let warning = kms.health().await.warning.unwrap();
        assert!(warning.contains("0 more version"), "{warning}");

        for _ in 0..3 {
            let e = kms.rotate().await.unwrap_err();
            assert_eq!(e.code(), "RETENTION_EXHAUSTED", "{e}");
            assert!(e.is_permanent());
            assert!(e.to_string().contains("delete version 1"), "{e}");
        }
        assert_eq!(p.versions(&id()).await.unwrap().len(), 3);
        for (i, v) in values.iter().enumerate() {
            assert_eq!(
                kms.decrypt_str(v, b"").await.unwrap(),
                format!("v{}", i + 1)
            );
        }

        // Version 1 retired: one more rotation may evict it, no more.
        let retiring = Kms::builder()
            .provider_arc(p.clone())
            .cache_ttl(Duration::ZERO)
            .min_decryption_version(id(), KeyVersion::from(2))
            .build()
            .await
            .unwrap();
        assert_eq!(
            retiring.metadata().await.unwrap().versions_remaining,
            Some(1)
        );
        assert!(retiring.health().await.warning.is_some());
        assert_eq!(retiring.rotate().await.unwrap().as_str(), "4");
        assert_eq!(
            retiring.rotate().await.unwrap_err().code(),
            "RETENTION_EXHAUSTED"
        );
        assert_eq!(retiring.decrypt_str(&values[1], b"").await.unwrap(), "v2");
    }

    /// Scheduled rotation over 30 periods against a provider that keeps 3
    /// versions: it stops at the limit, and every value still decrypts.
    #[tokio::test]
    async fn scheduled_rotation_stops_at_the_retention_limit() {
        let p = Arc::new(MemoryProvider::with_key(id()).with_max_versions(3));
        let plain = Kms::builder()
            .provider_arc(p.clone())
            .cache_ttl(Duration::ZERO)
            .build()
            .await
            .unwrap();
        let first = plain.encrypt_str("first", b"").await.unwrap();
        let period = Duration::from_millis(20);
        let scheduled = Kms::builder()
            .provider_arc(p.clone())
            .rotation_period(period)
            .rotation_check_interval(Duration::from_millis(5))
            .build()
            .await
            .unwrap();
        tokio::time::sleep(period * 30).await;
        drop(scheduled);
        let versions = p.versions(&id()).await.unwrap();
        assert_eq!(versions.len(), 3);
        assert_eq!(versions[0].version.as_str(), "1");
        assert_eq!(plain.decrypt_str(&first, b"").await.unwrap(), "first");
    }

    /// With a minimum decryption version, scheduled rotation may let the
    /// provider evict the retired versions, and no live one.
    #[tokio::test]
    async fn scheduled_rotation_evicts_only_retired_versions() {
        let p = Arc::new(MemoryProvider::with_key(id()).with_max_versions(3));
        for _ in 0..2 {
            p.rotate(&id(), &LiveVersions::all()).await.unwrap();
        }
        let scheduled = Kms::builder()
            .provider_arc(p.clone())
            .min_decryption_version(id(), KeyVersion::from(2))
            .rotation_period(Duration::from_millis(20))
            .rotation_check_interval(Duration::from_millis(5))
            .build()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(600)).await;
        drop(scheduled);
        let versions: Vec<String> = p
            .versions(&id())
            .await
            .unwrap()
            .iter()
            .map(|v| v.version.to_string())
            .collect();
        assert_eq!(versions, ["2", "3", "4"]);
    }
}
