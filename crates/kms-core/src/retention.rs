//! Version retention: which versions of a key must survive a write, and how
//! many more versions a provider can take before it would evict one of them.
//!
//! Some providers delete old versions by themselves when a new one is
//! written: Vault/OpenBao KV v2 keeps `max_versions` versions of a secret
//! (10 unless configured), SSM Parameter Store keeps 100 versions of a
//! parameter. Google Secret Manager and env variables evict nothing. A
//! version that is deleted takes every ciphertext written under it with it,
//! so every write of this workspace (rotation, scheduled rotation, import,
//! migration) first checks that it evicts no *live* version, and providers
//! refuse with [`Error::RetentionExhausted`](crate::Error::RetentionExhausted)
//! when they cannot make room (see each provider's documentation).

use crate::key::KeyVersion;
use crate::provider::VersionInfo;

/// Which versions of a key are live, that is may still decrypt data:
/// every enabled version at or after the key's minimum decryption version,
/// or every enabled version when the key has none (the default, and the
/// safe choice).
///
/// A write must never make a provider evict a live version.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveVersions {
    minimum: Option<KeyVersion>,
}

impl LiveVersions {
    /// Every version is live (no minimum decryption version).
    #[must_use]
    pub fn all() -> Self {
        LiveVersions { minimum: None }
    }

    /// Versions at or after `minimum` (the key's minimum decryption version)
    /// are live; older ones are retired and may be evicted.
    #[must_use]
    pub fn from_minimum(minimum: KeyVersion) -> Self {
        LiveVersions {
            minimum: Some(minimum),
        }
    }

    /// Live versions from an optional minimum decryption version.
    #[must_use]
    pub fn from_optional(minimum: Option<KeyVersion>) -> Self {
        LiveVersions { minimum }
    }

    /// The minimum decryption version, if there is one.
    #[must_use]
    pub fn minimum(&self) -> Option<&KeyVersion> {
        self.minimum.as_ref()
    }

    /// The position in `versions` (oldest first, as
    /// [`KeyProvider::versions`](crate::KeyProvider::versions) lists them)
    /// of the oldest live version: the first enabled version at or after
    /// the minimum. When the minimum is not listed, every version counts as
    /// live (nothing is assumed retired that cannot be placed). `None` when
    /// no listed version is live.
    #[must_use]
    pub fn oldest_live_index(&self, versions: &[VersionInfo]) -> Option<usize> {
        let from = self
            .minimum
            .as_ref()
            .and_then(|m| versions.iter().position(|v| &v.version == m))
            .unwrap_or(0);
        versions
            .iter()
            .enumerate()
            .skip(from)
            .find(|(_, v)| v.enabled)
            .map(|(i, _)| i)
    }

    /// How many of a provider's version slots the live versions occupy:
    /// the listed versions from the oldest live one to the newest (a
    /// destroyed version in between still takes a slot, as in Vault's
    /// window). 0 when no version is live.
    #[must_use]
    pub fn slots(&self, versions: &[VersionInfo]) -> u64 {
        self.oldest_live_index(versions)
            .map_or(0, |i| (versions.len() - i) as u64)
    }

    /// How many more versions can be written before a provider that keeps
    /// the newest `max_versions` would evict a live version.
    #[must_use]
    pub fn remaining(&self, max_versions: u64, versions: &[VersionInfo]) -> u64 {
        max_versions.saturating_sub(self.slots(versions))
    }

    /// The oldest live version, if any.
    #[must_use]
    pub fn oldest_live<'a>(&self, versions: &'a [VersionInfo]) -> Option<&'a VersionInfo> {
        self.oldest_live_index(versions)
            .and_then(|i| versions.get(i))
    }
}

/// The versions (oldest first) that a provider keeping the newest
/// `max_versions` of `versions` deletes when one more is written; empty
/// when it deletes none. Used to audit what a write lets go.
#[must_use]
pub fn evicted_by_next_write(max_versions: u64, versions: &[VersionInfo]) -> &[VersionInfo] {
    let evicted = (versions.len() as u64 + 1).saturating_sub(max_versions);
    let evicted = usize::try_from(evicted)
        .unwrap_or(usize::MAX)
        .min(versions.len());
    versions.get(..evicted).unwrap_or_default()
}

/// Below this many remaining versions, [`KeyMetadata`](crate::KeyMetadata)
/// consumers (health checks) warn: one more rotation may be refused.
pub const LOW_RETENTION: u64 = 2;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(enabled: &[bool]) -> Vec<VersionInfo> {
        enabled
            .iter()
            .enumerate()
            .map(|(i, e)| VersionInfo::new(KeyVersion::from(i as u64 + 1), None, *e))
            .collect()
    }

    #[test]
    fn all_live_by_default() {
        let l = list(&[true, true, true]);
        assert_eq!(LiveVersions::all().slots(&l), 3);
        assert_eq!(LiveVersions::all().remaining(10, &l), 7);
        assert_eq!(LiveVersions::all().remaining(2, &l), 0);
    }

    #[test]
    fn minimum_retires_older_versions() {
        let l = list(&[true, true, true, true]);
        let live = LiveVersions::from_minimum(KeyVersion::from(3));
        assert_eq!(live.slots(&l), 2);
        assert_eq!(live.remaining(4, &l), 2);
        assert_eq!(live.oldest_live(&l).unwrap().version.as_str(), "3");
    }

    #[test]
    fn destroyed_versions_are_not_live_but_take_slots_after_the_oldest_live() {
        let l = list(&[false, true, false, true]);
        assert_eq!(LiveVersions::all().oldest_live_index(&l), Some(1));
        assert_eq!(LiveVersions::all().slots(&l), 3);
        assert_eq!(LiveVersions::all().slots(&list(&[false, false])), 0);
    }

    #[test]
    fn what_the_next_write_evicts() {
        let l = list(&[true, true, true]);
        assert!(evicted_by_next_write(4, &l).is_empty());
        let gone: Vec<&str> = evicted_by_next_write(2, &l)
            .iter()
            .map(|v| v.version.as_str())
            .collect();
        assert_eq!(gone, ["1", "2"]);
        assert_eq!(evicted_by_next_write(0, &l).len(), 3);
    }

    #[test]
    fn an_unlisted_minimum_retires_nothing() {
        let l = list(&[true, true]);
        let live = LiveVersions::from_minimum(KeyVersion::new("deadbeef").unwrap());
        assert_eq!(live.slots(&l), 2);
    }

    proptest! {
        /// Simulates a provider that keeps the newest `max` versions:
        /// after `remaining` more writes the oldest live version is still
        /// there, and one write more evicts it.
        #[test]
        fn remaining_is_exactly_what_fits(
            enabled in proptest::collection::vec(any::<bool>(), 1..40),
            max in 1u64..50,
            min_at in 0usize..40,
        ) {
            let mut window = list(&enabled);
            let max_len = usize::try_from(max).unwrap();
            if window.len() > max_len {
                window.drain(..window.len() - max_len);
            }
            let live = match window.get(min_at) {
                Some(v) => LiveVersions::from_minimum(v.version.clone()),
                None => LiveVersions::all(),
            };
            let Some(oldest) = live.oldest_live(&window).map(|v| v.version.clone()) else {
                prop_assert_eq!(live.remaining(max, &window), max);
                return Ok(());
            };
            let write = |w: &mut Vec<VersionInfo>| {
                let next = w.len() as u64 + 1000;
                w.push(VersionInfo::new(KeyVersion::from(next), None, true));
                if w.len() > max_len {
                    w.drain(..w.len() - max_len);
                }
            };
            for _ in 0..live.remaining(max, &window) {
                write(&mut window);
            }
            prop_assert!(window.iter().any(|v| v.version == oldest));
            write(&mut window);
            prop_assert!(!window.iter().any(|v| v.version == oldest));
        }
    }

    #[test]
    fn minimum_is_kept() {
        let v3 = KeyVersion::from(3);
        assert_eq!(
            LiveVersions::from_optional(Some(v3.clone())).minimum(),
            Some(&v3)
        );
        assert_eq!(LiveVersions::from_minimum(v3.clone()).minimum(), Some(&v3));
        assert_eq!(LiveVersions::from_optional(None).minimum(), None);
        assert_eq!(LiveVersions::all().minimum(), None);
    }
}
