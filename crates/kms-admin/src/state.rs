//! The swappable [`Kms`] and the admin router's configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use kms::Kms;
use kms::core::settings::{self, BareUnit};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::{Map, Value};

use crate::auth::AuthConfig;
use crate::document::Lookup;
use crate::file::{CONFIG_FILE_VARIABLE, ConfigFile};
use crate::limit::RateLimitConfig;

/// Default largest request body (`KMS_ADMIN_BODY_LIMIT`): 64 KiB.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Default time limit of a request (`KMS_ADMIN_REQUEST_TIMEOUT`): 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The [`Kms`] a service uses, replaceable at run time by `PUT /config`.
///
/// Cheap to clone; clones share it. Take [`SharedKms::kms`] once per unit of
/// work: a request that holds a `Kms` finishes on it even if the
/// configuration is swapped meanwhile.
#[derive(Clone)]
pub struct SharedKms {
    inner: Arc<ArcSwap<Active>>,
}

pub(crate) struct Active {
    pub(crate) kms: Kms,
    /// Provider settings for `GET /config` (secrets already redacted), or
    /// `None` to describe the router's settings lookup.
    pub(crate) settings: Option<Map<String, Value>>,
}

impl fmt::Debug for SharedKms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedKms")
            .field(&self.inner.load().kms)
            .finish()
    }
}

impl SharedKms {
    /// Shares `kms`.
    #[must_use]
    pub fn new(kms: Kms) -> Self {
        SharedKms {
            inner: Arc::new(ArcSwap::from_pointee(Active {
                kms,
                settings: None,
            })),
        }
    }

    /// The current [`Kms`].
    #[must_use]
    pub fn kms(&self) -> Kms {
        self.inner.load().kms.clone()
    }

    pub(crate) fn active(&self) -> Arc<Active> {
        self.inner.load_full()
    }

    /// Sets what `GET /config` shows of the provider's settings.
    pub(crate) fn describe(&self, settings: Map<String, Value>) {
        let kms = self.kms();
        self.replace(kms, settings);
    }

    pub(crate) fn replace(&self, kms: Kms, settings: Map<String, Value>) {
        self.inner.store(Arc::new(Active {
            kms,
            settings: Some(settings),
        }));
    }
}

/// The admin router's settings.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `KMS_ADMIN_TOKEN`, `KMS_ADMIN_JWT_*` | none | see [`AuthConfig`]; one method is required |
/// | `KMS_ADMIN_RATE_LIMIT`, ... | see [`RateLimitConfig`] | per-client limits |
/// | `KMS_ADMIN_BODY_LIMIT` | 65536 | largest request body, bytes (413 above) |
/// | `KMS_ADMIN_REQUEST_TIMEOUT` | 30000 (ms) | time limit of every request (503 after it) |
/// | `KMS_METRICS_PUBLIC` | false | serve `/metrics` without authentication |
/// | `KMS_CONFIG_FILE` | none | the configuration file: read at start by `kms serve`, written by every successful `PUT /config` (see [`ConfigFile`]); without it a change lasts until restart |
#[derive(Clone)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Authentication.
    pub auth: AuthConfig,
    /// Rate limits.
    pub limits: RateLimitConfig,
    /// Largest request body in bytes.
    pub body_limit: usize,
    /// Time limit of every request.
    pub request_timeout: Duration,
    /// Serves `/metrics` from this Prometheus recorder, when set.
    pub metrics: Option<PrometheusHandle>,
    /// `/metrics` without authentication.
    pub metrics_public: bool,
    /// Where variables not given in a `PUT /config` document come from
    /// (the process environment by default), and what `GET /config` shows
    /// for the initial configuration.
    pub settings: Lookup,
    /// Where a successful `PUT /config` writes its document
    /// (`KMS_CONFIG_FILE`); `None`: a change lasts until restart.
    pub config_file: Option<ConfigFile>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("auth", &self.auth)
            .field("limits", &self.limits)
            .field("body_limit", &self.body_limit)
            .field("request_timeout", &self.request_timeout)
            .field("metrics", &self.metrics.is_some())
            .field("metrics_public", &self.metrics_public)
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

impl AdminConfig {
    /// Defaults, with `auth`.
    #[must_use]
    pub fn new(auth: AuthConfig) -> Self {
        AdminConfig {
            auth,
            limits: RateLimitConfig::default(),
            body_limit: DEFAULT_BODY_LIMIT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            metrics: None,
            metrics_public: false,
            settings: Arc::new(|name| std::env::var(name).ok()),
            config_file: None,
        }
    }

    /// Reads every variable in the table above from the process environment.
    ///
    /// # Errors
    /// [`kms::Error::Config`] naming the variable at fault.
    pub fn from_env() -> kms::Result<Self> {
        Self::from_lookup(Arc::new(|name| std::env::var(name).ok()))
    }

    /// Like [`AdminConfig::from_env`], through `lookup`, which also becomes
    /// [`AdminConfig::settings`].
    ///
    /// # Errors
    /// [`kms::Error::Config`] naming the variable at fault.
    pub fn from_lookup(lookup: Lookup) -> kms::Result<Self> {
        let mut c = AdminConfig::new(AuthConfig::from_lookup(&*lookup)?);
        c.limits = RateLimitConfig::from_lookup(&*lookup)?;
        if let Some(v) = settings::value(&*lookup, "KMS_ADMIN_BODY_LIMIT") {
            c.body_limit = v
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1024)
                .ok_or_else(|| {
                    kms::Error::config(
                        "KMS_ADMIN_BODY_LIMIT",
                        "must be a number of bytes, at least 1024",
                    )
                })?;
        }
        if let Some(v) = settings::value(&*lookup, "KMS_ADMIN_REQUEST_TIMEOUT") {
            c.request_timeout =
                settings::parse_duration("KMS_ADMIN_REQUEST_TIMEOUT", &v, BareUnit::Millis)?;
            if c.request_timeout.is_zero() {
                return Err(kms::Error::config(
                    "KMS_ADMIN_REQUEST_TIMEOUT",
                    "must be greater than 0",
                ));
            }
        }
        if let Some(v) = settings::value(&*lookup, "KMS_METRICS_PUBLIC") {
            c.metrics_public = settings::parse_bool("KMS_METRICS_PUBLIC", &v)?;
        }
        c.config_file = settings::value(&*lookup, CONFIG_FILE_VARIABLE).map(ConfigFile::new);
        c.settings = lookup;
        Ok(c)
    }

    /// Serves `/metrics` from this Prometheus recorder.
    #[must_use]
    pub fn metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }
}
