//! Rate limits (GCRA, `governor`): per client address before the token is
//! even looked at (so a flood of bad tokens is cheap to refuse), then per
//! token, per subject and per application once it is verified.
//!
//! Limits are per replica: N replicas let N times the rate through. Each
//! keyed limiter tracks at most `max_keys` keys; idle ones are swept, and
//! a key that finds the table full is not limited (counted) rather than
//! refused — a flood of new addresses must not lock out everyone else.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use serde::{Deserialize, Deserializer};

/// A rate as the config writes it: `100/s`, `600/m`, `10000/h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        let s = String::deserialize(d)?;
        let bad = || serde::de::Error::custom("a rate like 100/s, 600/m or 10000/h");
        let (n, unit) = s.split_once('/').ok_or_else(bad)?;
        let count = n.trim().parse::<NonZeroU32>().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { count, per })
    }
}

/// One limit: a sustained rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    pub rate: Rate,
    /// Requests allowed at once; default: one period's worth (the rate's
    /// count).
    #[serde(default)]
    pub burst: Option<NonZeroU32>,
}

impl Limit {
    fn quota(&self) -> Quota {
        let burst = self.burst.unwrap_or(self.rate.count);
        // One cell every per/count; never zero.
        let period = (self.rate.per / self.rate.count.get()).max(Duration::from_nanos(1));
        Quota::with_period(period).unwrap_or_else(|| Quota::per_second(self.rate.count)).allow_burst(burst)
    }
}

/// The `rate_limits` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Per client address, before authentication.
    #[serde(default)]
    pub per_client: Option<Limit>,
    /// Per token (`jti`).
    #[serde(default)]
    pub per_token: Option<Limit>,
    /// Per subject (`sub`), across its tokens.
    #[serde(default)]
    pub per_subject: Option<Limit>,
    /// Keys each limiter tracks at most.
    #[serde(default = "default_max_keys")]
    pub max_keys: usize,
}

fn default_max_keys() -> usize {
    100_000
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig { per_client: None, per_token: None, per_subject: None, max_keys: default_max_keys() }
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumIter)]
#[strum(serialize_all = "snake_case")]
pub enum Scope {
    Client,
    Token,
    Subject,
    Application,
}

/// A request over its limit: which, its quota, and how long until one
/// more would pass.
#[derive(Clone, Copy, Debug)]
pub struct Limited {
    pub scope: Scope,
    pub limit: Limit,
    pub wait: Duration,
}

/// A limiter per key: governor's GCRA state for each, in a map this
/// module bounds. A key idle for as long as its bucket takes to fill again
/// is forgotten without loss.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limit: Limit,
    quota: Quota,
    map: dashmap::DashMap<K, Tracked>,
    /// How long a bucket takes to fill from empty.
    refill: Duration,
}

struct Tracked {
    limiter: DefaultDirectRateLimiter,
    /// When it was last used, in ms since the limits were made.
    last: std::sync::atomic::AtomicU64,
}

impl<K: std::hash::Hash + Eq + Clone> Keyed<K> {
    fn new(limit: Limit) -> Self {
        let quota = limit.quota();
        let refill = quota.burst_size_replenished_in();
        Keyed { limit, quota, map: dashmap::DashMap::new(), refill }
    }

    /// Forget the keys idle for longer than a refill.
    fn sweep(&self, now_ms: u64) {
        let idle = u64::try_from(self.refill.as_millis()).unwrap_or(u64::MAX);
        self.map.retain(|_, t| now_ms.saturating_sub(t.last.load(std::sync::atomic::Ordering::Relaxed)) <= idle);
        self.map.shrink_to_fit();
    }
}

/// Every limit of a policy, with its state. Kept across reloads that do
/// not change the limits.
pub struct RateLimits {
    config: RateLimitConfig,
    /// Per application index: its limit, as configured.
    app_limits: Vec<Option<Limit>>,
    client: Option<Keyed<IpAddr>>,
    token: Option<Keyed<u64>>,
    subject: Option<Keyed<u64>>,
    apps: Vec<Option<(Limit, DefaultDirectRateLimiter)>>,
    hasher: ahash::RandomState,
    /// Keys not tracked because a table was full.
    untracked: std::sync::atomic::AtomicU64,
    /// The time keys' last use is measured from.
    epoch: std::time::Instant,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig, app_limits: Vec<Option<Limit>>) -> RateLimits {
        fn keyed<K: std::hash::Hash + Eq + Clone>(l: &Option<Limit>) -> Option<Keyed<K>> {
            l.map(Keyed::new)
        }
        RateLimits {
            client: keyed(&config.per_client),
            token: keyed(&config.per_token),
            subject: keyed(&config.per_subject),
            apps: app_limits.iter().map(|l| l.map(|l| (l, DefaultDirectRateLimiter::direct(l.quota())))).collect(),
            config: config.clone(),
            app_limits,
            hasher: ahash::RandomState::new(),
            untracked: std::sync::atomic::AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Whether these limits are the ones `config` and `app_limits` describe
    /// (a reload keeps their state then).
    pub fn same(&self, config: &RateLimitConfig, app_limits: &[Option<Limit>]) -> bool {
        self.config == *config && self.app_limits == app_limits
    }

    /// Whether any limit is configured.
    pub fn any(&self) -> bool {
        self.client.is_some() || self.token.is_some() || self.subject.is_some() || self.apps.iter().any(Option::is_some)
    }

    /// The client address's limit, before anything else is looked at.
    #[inline]
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Limited> {
        match &self.client {
            Some(k) => self.check_keyed(k, &ip, Scope::Client),
            None => Ok(()),
        }
    }

    /// The limits of a routed request: its token's and its subject's when
    /// one was verified (`token`: jti and subject), its application's (`app`:
    /// the route's).
    pub fn check_request(&self, token: Option<(&str, &str)>, app: Option<usize>) -> Result<(), Limited> {
        if let Some((jti, subject)) = token {
            if let Some(k) = &self.token {
                self.check_keyed(k, &self.hasher.hash_one(jti), Scope::Token)?;
            }
            if let Some(k) = &self.subject {
                self.check_keyed(k, &self.hasher.hash_one(subject), Scope::Subject)?;
            }
        }
        if let Some((limit, limiter)) = app.and_then(|a| self.apps.get(a)).and_then(Option::as_ref) {
            limiter.check().map_err(|not| Limited {
                scope: Scope::Application,
                limit: *limit,
                wait: not.wait_time_from(DefaultClock::default().now()),
            })?;
        }
        Ok(())
    }

    fn check_keyed<K: std::hash::Hash + Eq + Clone>(&self, k: &Keyed<K>, key: &K, scope: Scope) -> Result<(), Limited> {
        let now = self.now_ms();
        let over = |not: governor::NotUntil<_>| Limited {
            scope,
            limit: k.limit,
            wait: not.wait_time_from(DefaultClock::default().now()),
        };
        if let Some(t) = k.map.get(key) {
            t.last.store(now, std::sync::atomic::Ordering::Relaxed);
            return t.limiter.check().map_err(over);
        }
        // A new key: room is made by forgetting idle ones; a table still
        // full leaves the key unlimited (counted) rather than refused.
        if k.map.len() >= self.config.max_keys {
            k.sweep(now);
            if k.map.len() >= self.config.max_keys {
                self.untracked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(());
            }
        }
        let t = k.map.entry(key.clone()).or_insert_with(|| Tracked {
            limiter: DefaultDirectRateLimiter::direct(k.quota),
            last: std::sync::atomic::AtomicU64::new(now),
        });
        t.limiter.check().map_err(over)
    }

    /// Forget keys whose buckets are full again (called periodically).
    pub fn sweep(&self) {
        let now = self.now_ms();
        for k in [&self.token, &self.subject].into_iter().flatten() {
            k.sweep(now);
        }
        if let Some(k) = &self.client {
            k.sweep(now);
        }
    }

    /// Keys left untracked because a table was full, since start.
    pub fn untracked(&self) -> u64 {
        self.untracked.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The 429 a limited request gets: `Retry-After`, the IETF `RateLimit-Policy`
/// and `RateLimit` fields, and a JSON body that also carries MetaApi's
/// `metadata.recommendedRetryTime`.
pub fn response(l: &Limited, now: std::time::SystemTime) -> http::Response<http_body_util::Full<bytes::Bytes>> {
    let scope: &'static str = l.scope.into();
    let retry = l.wait.as_secs() + u64::from(l.wait.subsec_nanos() > 0);
    let quota = l.limit.burst.unwrap_or(l.limit.rate.count).get();
    let window = l.limit.rate.per.as_secs().max(1);
    let at = now + Duration::from_secs(retry);
    let iso = jiff::Timestamp::try_from(at).map(|t| t.to_string()).unwrap_or_default();
    let body = serde_json::json!({
        "error": crate::reason::Reason::RateLimited.code(),
        "message": "too many requests; retry after the time given",
        "limit": scope,
        "retryAfterSeconds": retry,
        "metadata": { "recommendedRetryTime": iso },
    });
    let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::from(body.to_string())));
    *resp.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    h.insert(http::header::RETRY_AFTER, http::HeaderValue::from(retry));
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{scope}\";q={quota};w={window}")) {
        h.insert("ratelimit-policy", v);
    }
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{scope}\";r=0;t={retry}")) {
        h.insert("ratelimit", v);
    }
    resp
}
