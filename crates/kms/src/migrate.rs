//! Copying every version of a key from one provider to another (`kms migrate`).
//!
//! [`plan`] reads the source's versions oldest first, loads each readable one
//! and computes its [fingerprint](crate::Fingerprint); it reads the target's
//! versions the same way (a key missing at the target is an empty target).
//! Each source version is then [`Action::Copy`] (its fingerprint is not at
//! the target), [`Action::Present`], or [`Action::Skipped`] (disabled or
//! destroyed at the source: it cannot be read). A target holding a key
//! version the source does not have is refused
//! ([`MigrateError::DifferentKey`]): that is another key, and copying would
//! mix two keys under one id.
//!
//! [`MigrationPlan::apply`] imports the versions to copy in source order,
//! oldest first, so that the target's newest version is the source's current
//! one. Running it again finds every fingerprint present and copies nothing.
//!
//! Every ciphertext written under the source decrypts through the target
//! unchanged: its header records the key's fingerprint, and decryption falls
//! back to a search by fingerprint when the native version number differs
//! (see [`crate::core::resolve_key`] and `docs/FORMAT.md`).
//!
//! Nothing here ever shows key bytes: plans, reports and errors carry
//! versions and fingerprints only, and `Debug` of a loaded key is redacted.
//! [`EnvVariables`], for a target that cannot store keys (the env
//! provider), holds the hex values, behind explicit accessors.

use std::fmt;

use chrono::{DateTime, Utc};
use kms_core::{
    DataKey, Error, Fingerprint, KeyId, KeyMaterial, KeyProvider, KeyVersion, LiveVersions,
};
use zeroize::Zeroizing;

/// What a migration does with one source version.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Not at the target: it will be imported.
    Copy,
    /// Already at the target (same fingerprint): nothing to do.
    Present,
    /// Not read (disabled, destroyed, or another version of the source with
    /// the same key bytes that is copied instead); the reason says which.
    Skipped(String),
}

impl Action {
    /// `copy`, `present` or `skipped`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Copy => "copy",
            Action::Present => "present",
            Action::Skipped(_) => "skipped",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Skipped(reason) => write!(f, "skipped ({reason})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// One version of the source key in a [`MigrationPlan`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PlannedVersion {
    /// The source's native version.
    pub version: KeyVersion,
    /// When the source created it, if it says.
    pub created_at: Option<DateTime<Utc>>,
    /// The key's fingerprint; `None` for a version that was not read.
    pub fingerprint: Option<Fingerprint>,
    /// What [`MigrationPlan::apply`] does with it.
    pub action: Action,
    /// The loaded key (redacted in `Debug`); `None` when skipped.
    key: Option<DataKey>,
}

/// What [`plan`] found: the source's versions, oldest first, each with its action.
#[derive(Debug, Clone)]
pub struct MigrationPlan {
    key_id: KeyId,
    source: &'static str,
    target: &'static str,
    versions: Vec<PlannedVersion>,
    target_versions: usize,
}

/// What [`MigrationPlan::apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// Versions imported into the target.
    pub copied: usize,
    /// Versions the target already held.
    pub present: usize,
    /// Source versions that were not read.
    pub skipped: usize,
    /// For each copied version: its source version and the version the target gave it.
    pub written: Vec<(KeyVersion, KeyVersion)>,
}

/// Why a migration could not be planned or applied. Never holds key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// Reading the source failed.
    #[error("cannot read key {key_id} from the source ({provider})")]
    Source {
        /// The source provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
        /// What the provider said.
        #[source]
        source: Error,
    },
    /// Reading the target failed.
    #[error("cannot read key {key_id} from the target ({provider})")]
    Target {
        /// The target provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
        /// What the provider said.
        #[source]
        source: Error,
    },
    /// The source has no version that can be read.
    #[error("the source ({provider}) has no readable version of key {key_id}: nothing to migrate")]
    EmptySource {
        /// The source provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
    },
    /// The target holds key versions that are not versions of the source key.
    #[error(
        "the target already holds a different key under {key_id}: {} of the target ({provider}) \
         not among the source's readable versions; refusing to write (migrate to another key id, \
         or remove that key from the target first)",
        describe_foreign(foreign)
    )]
    DifferentKey {
        /// The target provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
        /// The target's versions that the source does not have, with their fingerprints.
        foreign: Vec<(KeyVersion, Fingerprint)>,
    },
    /// Writing a version to the target failed; the versions before it were copied.
    #[error(
        "copying version {version} of key {key_id} to the target ({provider}) failed after \
         {copied} of {total} copies; run the migration again to copy the rest"
    )]
    Import {
        /// The target provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
        /// The source version that was being copied.
        version: KeyVersion,
        /// Versions copied before the failure.
        copied: usize,
        /// Versions the plan had to copy.
        total: usize,
        /// What the provider said.
        #[source]
        source: Error,
    },
    /// A version written to the target cannot be read back (for example:
    /// a later write made the target evict it).
    #[error(
        "version {version} of key {key_id} was written to the target ({provider}) but cannot be \
         read back"
    )]
    Verify {
        /// The target provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
        /// The target's version that was written.
        version: KeyVersion,
        /// What the provider said.
        #[source]
        source: Error,
    },
    /// The target stored other key bytes than it was given.
    #[error(
        "the target ({provider}) stored version {version} of key {key_id} with fingerprint \
         {found}, not the copied key's {expected}"
    )]
    Mismatch {
        /// The target provider.
        provider: &'static str,
        /// The key id.
        key_id: KeyId,
        /// The version the target reported.
        version: KeyVersion,
        /// The fingerprint of the copied key.
        expected: Fingerprint,
        /// The fingerprint the target reported.
        found: Fingerprint,
    },
}

fn describe_foreign(foreign: &[(KeyVersion, Fingerprint)]) -> String {
    let list: Vec<String> = foreign
        .iter()
        .map(|(v, fp)| format!("{v} (fingerprint {fp})"))
        .collect();
    let noun = if foreign.len() == 1 {
        "version"
    } else {
        "versions"
    };
    let verb = if foreign.len() == 1 { "is" } else { "are" };
    format!("{noun} {} {verb}", list.join(", "))
}

impl From<MigrateError> for Error {
    /// The provider error behind a read or write failure; the others as
    /// [`Error::Provider`] with the message (no key bytes either way).
    fn from(e: MigrateError) -> Self {
        match e {
            MigrateError::Source { source, .. }
            | MigrateError::Target { source, .. }
            | MigrateError::Import { source, .. } => source,
            other => Error::provider("migrate", other.to_string()),
        }
    }
}

/// The readable versions of a key, oldest first, each loaded, plus the
/// listed versions that could not be read. A missing key is `Ok(None)`.
async fn load(
    provider: &dyn KeyProvider,
    key_id: &KeyId,
) -> Result<Option<Vec<(kms_core::VersionInfo, Option<DataKey>)>>, Error> {
    let listed = match provider.versions(key_id).await {
        Ok(listed) => listed,
        Err(Error::KeyNotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::with_capacity(listed.len());
    for info in listed {
        let key = if info.enabled {
            match provider.key_version(key_id, &info.version).await {
                Ok(key) => Some(key),
                // Deleted between the listing and the read.
                Err(Error::KeyNotFound { .. }) => None,
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        out.push((info, key));
    }
    Ok(Some(out))
}

/// Plans copying every version of `key_id` from `source` to `target`.
///
/// # Errors
/// [`MigrateError::Source`] / [`MigrateError::Target`] when a provider
/// fails, [`MigrateError::EmptySource`] when the source has no readable
/// version, [`MigrateError::DifferentKey`] when the target holds a version
/// the source does not have.
pub async fn plan(
    source: &dyn KeyProvider,
    target: &dyn KeyProvider,
    key_id: &KeyId,
) -> Result<MigrationPlan, MigrateError> {
    let target_loaded = load(target, key_id)
        .await
        .map_err(|source| MigrateError::Target {
            provider: target.name(),
            key_id: key_id.clone(),
            source,
        })?
        .unwrap_or_default();
    let target_keys: Vec<DataKey> = target_loaded.into_iter().filter_map(|(_, k)| k).collect();
    plan_with(source, target.name(), &target_keys, key_id).await
}

/// Plans copying `key_id` from `source` to a target that holds nothing yet
/// and cannot be read (the env provider: see [`MigrationPlan::env_variables`]):
/// every readable version is to copy.
///
/// # Errors
/// As [`plan`], without the target's errors.
pub async fn plan_to_empty(
    source: &dyn KeyProvider,
    target_name: &'static str,
    key_id: &KeyId,
) -> Result<MigrationPlan, MigrateError> {
    plan_with(source, target_name, &[], key_id).await
}

async fn plan_with(
    source: &dyn KeyProvider,
    target_name: &'static str,
    target_keys: &[DataKey],
    key_id: &KeyId,
) -> Result<MigrationPlan, MigrateError> {
    let source_err = |source_error| MigrateError::Source {
        provider: source.name(),
        key_id: key_id.clone(),
        source: source_error,
    };
    let loaded = load(source, key_id)
        .await
        .map_err(source_err)?
        .ok_or_else(|| source_err(Error::key_not_found(key_id, None)))?;
    if loaded.iter().all(|(_, k)| k.is_none()) {
        return Err(MigrateError::EmptySource {
            provider: source.name(),
            key_id: key_id.clone(),
        });
    }

    let source_fps: Vec<Fingerprint> = loaded
        .iter()
        .filter_map(|(_, k)| k.as_ref().map(DataKey::fingerprint))
        .collect();
    let foreign: Vec<(KeyVersion, Fingerprint)> = target_keys
        .iter()
        .filter(|k| !source_fps.contains(&k.fingerprint()))
        .map(|k| (k.version().clone(), k.fingerprint()))
        .collect();
    if !foreign.is_empty() {
        return Err(MigrateError::DifferentKey {
            provider: target_name,
            key_id: key_id.clone(),
            foreign,
        });
    }

    let at_target = |fp: Fingerprint| target_keys.iter().any(|k| k.fingerprint() == fp);
    let last_readable = loaded.iter().rposition(|(_, k)| k.is_some());
    let mut versions: Vec<PlannedVersion> = Vec::with_capacity(loaded.len());
    for (i, (info, key)) in loaded.iter().enumerate() {
        let fingerprint = key.as_ref().map(DataKey::fingerprint);
        let action = match fingerprint {
            None => Action::Skipped("disabled or destroyed at the source".into()),
            // The same key bytes again later: copied there, in its place.
            Some(fp)
                if loaded
                    .iter()
                    .skip(i + 1)
                    .any(|(_, k)| k.as_ref().is_some_and(|k| k.fingerprint() == fp)) =>
            {
                Action::Skipped("the same key as a later version".into())
            }
            Some(fp) if at_target(fp) => Action::Present,
            Some(_) => Action::Copy,
        };
        versions.push(PlannedVersion {
            version: info.version.clone(),
            created_at: info
                .created_at
                .or_else(|| key.as_ref().and_then(DataKey::created_at)),
            fingerprint,
            action,
            key: key.clone(),
        });
    }
    // The source's current key must end up the target's newest version: if
    // it is present but older versions are to be copied after it, or the
    // target's newest is another key, it is copied again, last.
    let others_copied = versions.iter().any(|v| v.action == Action::Copy);
    let target_newest = target_keys.last().map(DataKey::fingerprint);
    if let Some(current) = last_readable.and_then(|i| versions.get_mut(i))
        && current.action == Action::Present
        && (others_copied || target_newest != current.fingerprint)
    {
        current.action = Action::Copy;
    }
    Ok(MigrationPlan {
        key_id: key_id.clone(),
        source: source.name(),
        target: target_name,
        versions,
        target_versions: target_keys.len(),
    })
}

impl MigrationPlan {
    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The source provider's name.
    #[must_use]
    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The target provider's name.
    #[must_use]
    pub fn target(&self) -> &'static str {
        self.target
    }

    /// The source's versions, oldest first, with their actions.
    #[must_use]
    pub fn versions(&self) -> &[PlannedVersion] {
        &self.versions
    }

    /// How many readable versions the target held when planned.
    #[must_use]
    pub fn target_versions(&self) -> usize {
        self.target_versions
    }

    /// Versions to copy.
    #[must_use]
    pub fn to_copy(&self) -> usize {
        self.count(|a| *a == Action::Copy)
    }

    /// Versions already at the target.
    #[must_use]
    pub fn present(&self) -> usize {
        self.count(|a| *a == Action::Present)
    }

    /// Versions not read.
    #[must_use]
    pub fn skipped(&self) -> usize {
        self.count(|a| matches!(a, Action::Skipped(_)))
    }

    /// Whether there is nothing to copy.
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.to_copy() == 0
    }

    fn count(&self, f: impl Fn(&Action) -> bool) -> usize {
        self.versions.iter().filter(|v| f(&v.action)).count()
    }

    /// Imports the versions to copy into `target`, oldest first, calling
    /// `progress` after each one, then reads every written version back
    /// from `target` and compares fingerprints. `target` must be the target
    /// of [`plan`], and should not answer from a key cache (the CLI passes
    /// [`Kms::uncached_provider`](crate::Kms::uncached_provider)), so that
    /// the read-back sees what the provider stores.
    ///
    /// Each import keeps every version of the target live
    /// ([`LiveVersions::all`]): a target that would evict one refuses
    /// before writing ([`Error::RetentionExhausted`]).
    ///
    /// # Errors
    /// [`MigrateError::Import`] when a write fails (the versions before it
    /// are copied; planning and applying again copies the rest);
    /// [`MigrateError::Verify`] when a written version cannot be read
    /// back; [`MigrateError::Mismatch`] when the target holds other key
    /// bytes than it was given (both fingerprints are reported).
    pub async fn apply(
        &self,
        target: &dyn KeyProvider,
        mut progress: impl FnMut(&PlannedVersion),
    ) -> Result<MigrationReport, MigrateError> {
        let total = self.to_copy();
        let mut report = MigrationReport {
            present: self.present(),
            skipped: self.skipped(),
            ..MigrationReport::default()
        };
        let mut expected = Vec::with_capacity(total);
        let mut failed = None;
        for planned in &self.versions {
            let (Action::Copy, Some(key)) = (&planned.action, &planned.key) else {
                continue;
            };
            let material = KeyMaterial::from_bytes(*key.material().expose_secret());
            match target
                .import(&self.key_id, material, &LiveVersions::all())
                .await
            {
                Ok(written) => {
                    report.copied += 1;
                    report
                        .written
                        .push((planned.version.clone(), written.version().clone()));
                    expected.push(key.fingerprint());
                    progress(planned);
                }
                Err(source) => {
                    failed = Some(MigrateError::Import {
                        provider: target.name(),
                        key_id: self.key_id.clone(),
                        version: planned.version.clone(),
                        copied: report.copied,
                        total,
                        source,
                    });
                    break;
                }
            }
        }
        // After every write (also when one failed: what was written must
        // be there): a later write may have evicted an earlier one.
        for ((_, version), expected) in report.written.iter().zip(expected) {
            let stored = target
                .key_version(&self.key_id, version)
                .await
                .map_err(|source| MigrateError::Verify {
                    provider: target.name(),
                    key_id: self.key_id.clone(),
                    version: version.clone(),
                    source,
                })?;
            if stored.fingerprint() != expected {
                return Err(MigrateError::Mismatch {
                    provider: target.name(),
                    key_id: self.key_id.clone(),
                    version: version.clone(),
                    expected,
                    found: stored.fingerprint(),
                });
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        Ok(report)
    }

    /// The env provider's variables that hold every readable source
    /// version: `ENCRYPTION_KEY` the current key, `ENCRYPTION_KEY_PREVIOUS`
    /// the older ones, newest first. Holds key bytes: print them only when
    /// the user asked.
    #[must_use]
    pub fn env_variables(&self) -> EnvVariables {
        let mut keys = self
            .versions
            .iter()
            .filter(|v| matches!(v.action, Action::Copy | Action::Present))
            .filter_map(|v| v.key.as_ref())
            .rev();
        let current = keys.next().map(|k| k.material().to_hex());
        let previous: Vec<Zeroizing<String>> = keys.map(|k| k.material().to_hex()).collect();
        EnvVariables { current, previous }
    }
}

/// `ENCRYPTION_KEY` and `ENCRYPTION_KEY_PREVIOUS` for an env target.
/// `Debug` shows counts only; the values are zeroized on drop.
pub struct EnvVariables {
    current: Option<Zeroizing<String>>,
    previous: Vec<Zeroizing<String>>,
}

impl fmt::Debug for EnvVariables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvVariables")
            .field("current", &self.current.as_ref().map(|_| "[REDACTED]"))
            .field("previous", &self.previous.len())
            .finish()
    }
}

impl EnvVariables {
    /// The names of the variables to set: `ENCRYPTION_KEY`, and
    /// `ENCRYPTION_KEY_PREVIOUS` when there are older versions.
    #[must_use]
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = vec!["ENCRYPTION_KEY"];
        if !self.previous.is_empty() {
            names.push("ENCRYPTION_KEY_PREVIOUS");
        }
        names
    }

    /// How many older versions `ENCRYPTION_KEY_PREVIOUS` holds.
    #[must_use]
    pub fn previous_count(&self) -> usize {
        self.previous.len()
    }

    /// `ENCRYPTION_KEY=<hex>` and `ENCRYPTION_KEY_PREVIOUS=<hex>,<hex>...`
    /// lines. **Key bytes**: for a user who asked to see them.
    #[must_use]
    pub fn reveal(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        if let Some(current) = &self.current {
            out.push_str("ENCRYPTION_KEY=");
            out.push_str(current);
            out.push('\n');
        }
        if !self.previous.is_empty() {
            out.push_str("ENCRYPTION_KEY_PREVIOUS=");
            for (i, p) in self.previous.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(p);
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kms_testing::MemoryProvider;

    fn id() -> KeyId {
        KeyId::new("mig").unwrap()
    }

    fn source_with(n: usize) -> MemoryProvider {
        let p = MemoryProvider::new();
        for _ in 0..n {
            p.add_version(&id(), KeyMaterial::generate());
        }
        p
    }

    #[tokio::test]
    async fn copies_in_order_and_is_idempotent() {
        let source = source_with(4);
        let target = MemoryProvider::new();
        let plan1 = plan(&source, &target, &id()).await.unwrap();
        assert_eq!(
            (plan1.to_copy(), plan1.present(), plan1.skipped()),
            (4, 0, 0)
        );
        assert!(target.versions(&id()).await.is_err(), "planning wrote");
        let mut seen = 0;
        let report = plan1.apply(&target, |_| seen += 1).await.unwrap();
        assert_eq!((report.copied, seen), (4, 4));
        assert_eq!(
            target.current_key(&id()).await.unwrap().fingerprint(),
            source.current_key(&id()).await.unwrap().fingerprint()
        );
        let plan2 = plan(&source, &target, &id()).await.unwrap();
        assert!(plan2.is_done());
        assert_eq!(plan2.present(), 4);
        let report = plan2.apply(&target, |_| {}).await.unwrap();
        assert_eq!((report.copied, report.present), (0, 4));
        // A new source version: only it is copied.
        source.rotate(&id(), &LiveVersions::all()).await.unwrap();
        let plan3 = plan(&source, &target, &id()).await.unwrap();
        assert_eq!((plan3.to_copy(), plan3.present()), (1, 4));
    }

    #[tokio::test]
    async fn refuses_a_different_key_at_the_target() {
        let source = source_with(2);
        let target = source_with(1);
        let err = plan(&source, &target, &id()).await.unwrap_err();
        let text = err.to_string();
        assert!(text.contains("already holds a different key"), "{text}");
        assert!(
            matches!(err, MigrateError::DifferentKey { ref foreign, .. } if foreign.len() == 1)
        );
        assert_eq!(target.versions(&id()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn current_is_copied_again_when_it_would_not_be_newest() {
        let source = source_with(3);
        let target = MemoryProvider::new();
        let current = source.current_key(&id()).await.unwrap();
        target.add_version(
            &id(),
            KeyMaterial::from_bytes(*current.material().expose_secret()),
        );
        let p = plan(&source, &target, &id()).await.unwrap();
        let actions: Vec<&str> = p.versions().iter().map(|v| v.action.as_str()).collect();
        assert_eq!(actions, ["copy", "copy", "copy"]);
        p.apply(&target, |_| {}).await.unwrap();
        assert_eq!(
            target.current_key(&id()).await.unwrap().fingerprint(),
            current.fingerprint()
        );
        assert!(plan(&source, &target, &id()).await.unwrap().is_done());
    }

    /// A target that stores other bytes than it is given, and says it
    /// stored them: only the read-back can tell.
    #[derive(Debug)]
    struct Lying(MemoryProvider);

    #[kms_core::async_trait]
    impl KeyProvider for Lying {
        fn name(&self) -> &'static str {
            "lying"
        }
        async fn current_key(&self, key_id: &KeyId) -> kms_core::Result<DataKey> {
            self.0.current_key(key_id).await
        }
        async fn key_version(
            &self,
            key_id: &KeyId,
            version: &KeyVersion,
        ) -> kms_core::Result<DataKey> {
            self.0.key_version(key_id, version).await
        }
        async fn versions(&self, key_id: &KeyId) -> kms_core::Result<Vec<kms_core::VersionInfo>> {
            self.0.versions(key_id).await
        }
        async fn import(
            &self,
            key_id: &KeyId,
            material: KeyMaterial,
            live: &LiveVersions,
        ) -> kms_core::Result<DataKey> {
            let stored = self.0.import(key_id, KeyMaterial::generate(), live).await?;
            Ok(DataKey::new(
                key_id.clone(),
                stored.version().clone(),
                material,
            ))
        }
        async fn metadata(&self, key_id: &KeyId) -> kms_core::Result<kms_core::KeyMetadata> {
            self.0.metadata(key_id).await
        }
        async fn health(&self) -> kms_core::HealthStatus {
            self.0.health().await
        }
    }

    #[tokio::test]
    async fn read_back_reports_both_fingerprints_of_a_mismatch() {
        let source = source_with(2);
        let target = Lying(MemoryProvider::new());
        let p = plan(&source, &target, &id()).await.unwrap();
        let err = p.apply(&target, |_| {}).await.unwrap_err();
        let MigrateError::Mismatch {
            expected, found, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_ne!(expected, found);
        let text = err.to_string();
        assert!(
            text.contains(&expected.to_string()) && text.contains(&found.to_string()),
            "{text}"
        );
    }

    /// A target that keeps 2 versions cannot take 3 live ones: the third
    /// import is refused before writing and nothing is evicted.
    #[tokio::test]
    async fn a_target_without_room_refuses_and_keeps_what_it_has() {
        let source = source_with(3);
        let target = MemoryProvider::new().with_max_versions(2);
        let p = plan(&source, &target, &id()).await.unwrap();
        let err = p.apply(&target, |_| {}).await.unwrap_err();
        let MigrateError::Import { copied, source, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*copied, 2);
        assert_eq!(source.code(), "RETENTION_EXHAUSTED");
        let kept = target.versions(&id()).await.unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].version.as_str(), "1");
    }

    #[tokio::test]
    async fn nothing_shows_key_bytes() {
        let source = source_with(2);
        let target = MemoryProvider::new();
        let p = plan(&source, &target, &id()).await.unwrap();
        let env = p.env_variables();
        let debug = format!("{p:?} {env:?}");
        for v in source.versions(&id()).await.unwrap() {
            let key = source.key_version(&id(), &v.version).await.unwrap();
            let hex = key.material().to_hex();
            assert!(!debug.contains(hex.as_str()));
            assert!(env.reveal().contains(hex.as_str()));
        }
        assert_eq!(env.names(), ["ENCRYPTION_KEY", "ENCRYPTION_KEY_PREVIOUS"]);
    }
}
