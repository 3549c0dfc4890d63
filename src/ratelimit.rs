//! Rate limits (GCRA, `governor`): per client address before the token is
//! even looked at (so a flood of bad tokens is cheap to refuse), then per
//! token, per subject and per application once it is verified.
//!
//! Limits are per replica: N replicas let N times the rate through. A
//! client is its address, an IPv6 client its `/64` (configurable): one
//! host holds a whole IPv6 prefix and would otherwise be a new client at
//! every address. Each keyed limiter tracks at most `max_keys` keys; idle
//! ones are swept, and the keys that still find the table full share one
//! overflow bucket of the same limit — limited together, never unlimited
//! (a flood of new addresses or tokens buys nothing), and the keys already
//! tracked keep their own buckets, so the flood does not lock out everyone
//! else.

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
    /// The prefix length an IPv6 client is counted by (default 64).
    #[serde(default = "default_ipv6_prefix")]
    pub client_ipv6_prefix: Ipv6Prefix,
}

fn default_max_keys() -> usize {
    100_000
}

fn default_ipv6_prefix() -> Ipv6Prefix {
    Ipv6Prefix(64)
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            per_client: None,
            per_token: None,
            per_subject: None,
            max_keys: default_max_keys(),
            client_ipv6_prefix: default_ipv6_prefix(),
        }
    }
}

/// An IPv6 prefix length, 1 to 128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Prefix(u8);

impl<'de> Deserialize<'de> for Ipv6Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ipv6Prefix, D::Error> {
        match u8::deserialize(d) {
            Ok(n @ 1..=128) => Ok(Ipv6Prefix(n)),
            _ => Err(serde::de::Error::custom("an IPv6 prefix length from 1 to 128")),
        }
    }
}

impl Ipv6Prefix {
    /// The key `ip` is counted under: an IPv4 address itself, an IPv6 one
    /// cut to the prefix.
    pub fn client_key(self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.0)).unwrap_or(0);
                IpAddr::V6(std::net::Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
        }
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
/// is forgotten without loss. Keys that find the map full share
/// `overflow`.
struct Keyed<K: std::hash::Hash + Eq + Clone> {
    limit: Limit,
    quota: Quota,
    map: dashmap::DashMap<K, Tracked>,
    /// The one bucket of every key the map has no room for.
    overflow: DefaultDirectRateLimiter,
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
        Keyed { limit, quota, map: dashmap::DashMap::new(), overflow: DefaultDirectRateLimiter::direct(quota), refill }
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
    /// Requests of keys not tracked because a table was full (limited
    /// together by its overflow bucket).
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

    /// The client `ip` is counted as: an IPv4 address itself, an IPv6 one
    /// cut to `client_ipv6_prefix`. Every limit per client keys on it (the
    /// console's failed sign-ins too).
    #[inline]
    pub fn client(&self, ip: IpAddr) -> IpAddr {
        self.config.client_ipv6_prefix.client_key(ip)
    }

    /// The client address's limit, before anything else is looked at.
    #[inline]
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Limited> {
        match &self.client {
            Some(k) => self.check_keyed(k, &self.client(ip), Scope::Client),
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
        // full puts the key in the shared overflow bucket (counted): never
        // unlimited, so more keys buy no more requests.
        if k.map.len() >= self.config.max_keys {
            k.sweep(now);
            if k.map.len() >= self.config.max_keys {
                self.untracked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return k.overflow.check().map_err(over);
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

    /// Requests of keys left untracked because a table was full (limited
    /// by the overflow bucket), since start.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_keys: usize, per_client: &str) -> RateLimits {
        let config: RateLimitConfig = serde_json::from_value(serde_json::json!({
            "per_client": { "rate": per_client },
            "per_token": { "rate": per_client },
            "max_keys": max_keys,
        }))
        .expect("config");
        RateLimits::new(&config, Vec::new())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn an_ipv6_client_is_its_prefix_and_an_ipv4_client_its_address() {
        struct Case {
            prefix: u8,
            ip: &'static str,
            want: &'static str,
        }
        let cases = [
            Case { prefix: 64, ip: "2001:db8:1:2:aaaa:bbbb:cccc:dddd", want: "2001:db8:1:2::" },
            Case { prefix: 64, ip: "2001:db8:1:2::1", want: "2001:db8:1:2::" },
            Case { prefix: 48, ip: "2001:db8:1:2::1", want: "2001:db8:1::" },
            Case { prefix: 128, ip: "2001:db8::7", want: "2001:db8::7" },
            Case { prefix: 1, ip: "ffff::1", want: "8000::" },
            Case { prefix: 64, ip: "192.0.2.7", want: "192.0.2.7" },
        ];
        for c in cases {
            assert_eq!(Ipv6Prefix(c.prefix).client_key(ip(c.ip)), ip(c.want), "/{} of {}", c.prefix, c.ip);
        }
        for bad in [0, 129, 255] {
            assert!(serde_json::from_value::<Ipv6Prefix>(bad.into()).is_err(), "{bad}");
        }
        assert_eq!(RateLimitConfig::default().client_ipv6_prefix, Ipv6Prefix(64));
    }

    #[test]
    fn every_address_of_one_ipv6_prefix_shares_a_bucket() {
        let l = limits(100_000, "2/h");
        for host in 1..=2u16 {
            assert!(l.check_client(ip(&format!("2001:db8:0:7::{host:x}"))).is_ok());
        }
        for host in 3..=50u16 {
            let over = l.check_client(ip(&format!("2001:db8:0:7:{host:x}::1"))).expect_err("the /64 is over");
            assert_eq!(over.scope, Scope::Client);
        }
        assert!(l.check_client(ip("2001:db8:0:8::1")).is_ok(), "the next /64 is another client");
    }

    #[test]
    fn keys_that_find_the_table_full_share_one_overflow_bucket() {
        // Two keys tracked; every key after them shares one more bucket.
        let l = limits(2, "3/h");
        for k in ["10.0.0.1", "10.0.0.2"] {
            for _ in 0..3 {
                assert!(l.check_client(ip(k)).is_ok(), "{k} has a bucket of its own");
            }
            assert!(l.check_client(ip(k)).is_err());
        }
        for n in 3..6 {
            assert!(l.check_client(ip(&format!("10.0.0.{n}"))).is_ok(), "the overflow bucket's burst");
        }
        for n in 6..200 {
            assert!(l.check_client(ip(&format!("10.0.0.{n}"))).is_err(), "10.0.0.{n}: a new key buys nothing");
        }
        assert_eq!(l.untracked(), 197);
        // The same for tokens: new jtis (narrowing mints them freely) share it.
        for jti in ["a", "b"] {
            assert!(l.check_request(Some((jti, "s")), None).is_ok());
        }
        let over = (0..10).filter(|n| l.check_request(Some((&format!("t{n}"), "s")), None).is_err()).count();
        assert_eq!(over, 7, "three from the overflow's burst, then refused");
    }
}
