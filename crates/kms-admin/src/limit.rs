//! Per-client rate limits (governor) and the failed-authentication lockout (moka).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::Request;
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use kms::core::settings::{self, BareUnit};

/// Default requests per minute per client on every route (`KMS_ADMIN_RATE_LIMIT`).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 600;
/// Default burst per client on every route (`KMS_ADMIN_RATE_LIMIT_BURST`).
pub const DEFAULT_BURST: u32 = 60;
/// Default requests per minute per client on rotate and config routes
/// (`KMS_ADMIN_SENSITIVE_RATE_LIMIT`); the burst is half of it, at least 1.
pub const DEFAULT_SENSITIVE_PER_MINUTE: u32 = 10;
/// Default failed authentications per client per window before it is locked
/// out (`KMS_ADMIN_AUTH_FAILURE_LIMIT`).
pub const DEFAULT_AUTH_FAILURES: u32 = 10;
/// Default lockout window (`KMS_ADMIN_AUTH_FAILURE_WINDOW`): 5 minutes.
pub const DEFAULT_AUTH_FAILURE_WINDOW: Duration = Duration::from_secs(300);
/// Most clients whose failed authentications are remembered at once.
const MAX_TRACKED_CLIENTS: u64 = 100_000;

/// Rate limits, per client IP address.
///
/// | variable | default | meaning |
/// | --- | --- | --- |
/// | `KMS_ADMIN_RATE_LIMIT` | 600 | requests per minute per client, every route (0: off) |
/// | `KMS_ADMIN_RATE_LIMIT_BURST` | 60 | requests a client may send at once |
/// | `KMS_ADMIN_SENSITIVE_RATE_LIMIT` | 10 | requests per minute per client to rotate and config routes (0: off) |
/// | `KMS_ADMIN_AUTH_FAILURE_LIMIT` | 10 | failed authentications per window before the client gets 429 |
/// | `KMS_ADMIN_AUTH_FAILURE_WINDOW` | 300000 (ms) | the lockout window, from the first failure |
/// | `KMS_ADMIN_TRUST_FORWARDED_FOR` | false | take the client address from the last `X-Forwarded-For` entry (behind a proxy you run) |
///
/// The client is the peer address (serve the router with
/// `into_make_service_with_connect_info::<SocketAddr>()`); without it every
/// request counts against one shared client.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitConfig {
    /// Requests per minute per client (0: no limit).
    pub requests_per_minute: u32,
    /// Burst per client.
    pub burst: u32,
    /// Requests per minute per client to rotate and config routes (0: no limit).
    pub sensitive_per_minute: u32,
    /// Failed authentications per window before lockout.
    pub auth_failures: u32,
    /// Lockout window.
    pub auth_failure_window: Duration,
    /// Trust the last `X-Forwarded-For` entry as the client address.
    pub trust_forwarded_for: bool,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            burst: DEFAULT_BURST,
            sensitive_per_minute: DEFAULT_SENSITIVE_PER_MINUTE,
            auth_failures: DEFAULT_AUTH_FAILURES,
            auth_failure_window: DEFAULT_AUTH_FAILURE_WINDOW,
            trust_forwarded_for: false,
        }
    }
}

impl RateLimitConfig {
    /// Reads the variables in the table above through `lookup`.
    ///
    /// # Errors
    /// [`kms::Error::Config`] naming the variable at fault.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> kms::Result<Self> {
        let number = |name: &str, min: u32| -> kms::Result<Option<u32>> {
            settings::value(&lookup, name)
                .map(|v| {
                    v.trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|n| *n >= min)
                        .ok_or_else(|| {
                            kms::Error::config(
                                name,
                                format!("must be a whole number of at least {min}"),
                            )
                        })
                })
                .transpose()
        };
        let mut c = RateLimitConfig::default();
        if let Some(n) = number("KMS_ADMIN_RATE_LIMIT", 0)? {
            c.requests_per_minute = n;
        }
        if let Some(n) = number("KMS_ADMIN_RATE_LIMIT_BURST", 1)? {
            c.burst = n;
        }
        if let Some(n) = number("KMS_ADMIN_SENSITIVE_RATE_LIMIT", 0)? {
            c.sensitive_per_minute = n;
        }
        if let Some(n) = number("KMS_ADMIN_AUTH_FAILURE_LIMIT", 1)? {
            c.auth_failures = n;
        }
        if let Some(v) = settings::value(&lookup, "KMS_ADMIN_AUTH_FAILURE_WINDOW") {
            c.auth_failure_window =
                settings::parse_duration("KMS_ADMIN_AUTH_FAILURE_WINDOW", &v, BareUnit::Millis)?;
        }
        if let Some(v) = settings::value(&lookup, "KMS_ADMIN_TRUST_FORWARDED_FOR") {
            c.trust_forwarded_for = settings::parse_bool("KMS_ADMIN_TRUST_FORWARDED_FOR", &v)?;
        }
        Ok(c)
    }
}

/// A quota of `per_minute` with `burst`, or none when `per_minute` is 0.
fn quota(per_minute: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_minute)?;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Some(Quota::per_minute(rate).allow_burst(burst))
}

struct FailureWindow {
    started: Instant,
    count: AtomicU32,
}

/// The limiters of one router.
pub(crate) struct Limiters {
    general: Option<DefaultKeyedRateLimiter<IpAddr>>,
    sensitive: Option<DefaultKeyedRateLimiter<IpAddr>>,
    failures: moka::sync::Cache<IpAddr, Arc<FailureWindow>>,
    max_failures: u32,
    window: Duration,
    trust_forwarded_for: bool,
    checks: AtomicU64,
}

impl std::fmt::Debug for Limiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiters").finish_non_exhaustive()
    }
}

impl Limiters {
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        Limiters {
            general: quota(config.requests_per_minute, config.burst)
                .map(DefaultKeyedRateLimiter::keyed),
            sensitive: quota(
                config.sensitive_per_minute,
                (config.sensitive_per_minute / 2).max(1),
            )
            .map(DefaultKeyedRateLimiter::keyed),
            failures: moka::sync::Cache::builder()
                .max_capacity(MAX_TRACKED_CLIENTS)
                .time_to_live(config.auth_failure_window)
                .build(),
            max_failures: config.auth_failures.max(1),
            window: config.auth_failure_window,
            trust_forwarded_for: config.trust_forwarded_for,
            checks: AtomicU64::new(0),
        }
    }

    /// The client's address.
    pub(crate) fn client<B>(&self, request: &Request<B>) -> IpAddr {
        if self.trust_forwarded_for
            && let Some(ip) = request
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .collect::<Vec<_>>()
                .into_iter()
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back()
        {
            return ip;
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
    }

    fn check(
        limiter: Option<&DefaultKeyedRateLimiter<IpAddr>>,
        ip: IpAddr,
    ) -> Result<(), Duration> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Counts a request against the client's general quota.
    pub(crate) fn check_general(&self, ip: IpAddr) -> Result<(), Duration> {
        // Forget idle clients now and then, so memory stays bounded.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            for limiter in [&self.general, &self.sensitive].into_iter().flatten() {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        Self::check(self.general.as_ref(), ip)
    }

    /// Counts a request against the client's rotate/config quota.
    pub(crate) fn check_sensitive(&self, ip: IpAddr) -> Result<(), Duration> {
        Self::check(self.sensitive.as_ref(), ip)
    }

    /// How long the client is still locked out after too many failed
    /// authentications, if it is. Checked before any credential is looked
    /// at, so a locked-out client learns nothing about its guesses.
    pub(crate) fn locked_out(&self, ip: IpAddr) -> Option<Duration> {
        let window = self.failures.get(&ip)?;
        (window.count.load(Ordering::Relaxed) >= self.max_failures)
            .then(|| self.window.saturating_sub(window.started.elapsed()))
    }

    /// Records a failed authentication.
    pub(crate) fn record_failure(&self, ip: IpAddr) {
        let window = self.failures.get_with(ip, || {
            Arc::new(FailureWindow {
                started: Instant::now(),
                count: AtomicU32::new(0),
            })
        });
        window.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> kms::Result<RateLimitConfig> {
        RateLimitConfig::from_lookup(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn variables_are_read_and_minimums_enforced() {
        let c = from(&[
            ("KMS_ADMIN_RATE_LIMIT", "0"),
            ("KMS_ADMIN_RATE_LIMIT_BURST", "1"),
            ("KMS_ADMIN_SENSITIVE_RATE_LIMIT", "7"),
            ("KMS_ADMIN_AUTH_FAILURE_LIMIT", "3"),
            ("KMS_ADMIN_AUTH_FAILURE_WINDOW", "2m"),
            ("KMS_ADMIN_TRUST_FORWARDED_FOR", "true"),
        ])
        .unwrap();
        assert_eq!(c.requests_per_minute, 0);
        assert_eq!(c.burst, 1);
        assert_eq!(c.sensitive_per_minute, 7);
        assert_eq!(c.auth_failures, 3);
        assert_eq!(c.auth_failure_window, Duration::from_secs(120));
        assert!(c.trust_forwarded_for);
        assert_eq!(from(&[]).unwrap(), RateLimitConfig::default());
        for (name, bad) in [
            ("KMS_ADMIN_RATE_LIMIT_BURST", "0"),
            ("KMS_ADMIN_AUTH_FAILURE_LIMIT", "0"),
            ("KMS_ADMIN_RATE_LIMIT", "-1"),
            ("KMS_ADMIN_RATE_LIMIT", "many"),
        ] {
            let e = from(&[(name, bad)]).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn idle_clients_are_forgotten_every_4096_checks() {
        // 60,000 a minute, burst 1: a client is idle again after 1 ms.
        let limiters = Limiters::new(&RateLimitConfig {
            requests_per_minute: 60_000,
            burst: 1,
            ..RateLimitConfig::default()
        });
        let clients = || limiters.general.as_ref().unwrap().len();
        let ip = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        for n in 0..4095 {
            assert!(limiters.check_general(ip(n)).is_ok());
        }
        assert_eq!(clients(), 4095);
        std::thread::sleep(Duration::from_millis(20));
        // The 4096th check forgets the 4095 idle clients, then counts its own.
        assert!(limiters.check_general(ip(5000)).is_ok());
        assert_eq!(clients(), 1);
        // The next ones do not prune.
        std::thread::sleep(Duration::from_millis(20));
        assert!(limiters.check_general(ip(5001)).is_ok());
        assert_eq!(clients(), 2);
    }
}
