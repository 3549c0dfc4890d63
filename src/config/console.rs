//! The `console` section: the admin web console on the api listener.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::Errors;
use super::duration::HumanDuration;
use crate::ratelimit::{Limit, Rate};

/// The most sessions `max_sessions_per_token` may allow: the setting
/// bounds what one token holds of a table shared by everyone.
pub const MAX_SESSIONS_PER_TOKEN: usize = 100;
/// The most sessions `max_sessions` may allow (each holds its sign-in
/// token: one to two kilobytes).
pub const MAX_SESSIONS: usize = 1_000_000;

/// The console's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Served under `/console` on the api listener (off by default).
    pub enabled: bool,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    pub max_age: Duration,
    /// Users reach the console over HTTPS (a TLS-terminating proxy in
    /// front): every cookie it sets or clears is `Secure`, and its origin
    /// is `https://` the request's host.
    pub secure_cookie: bool,
    /// Sessions open at once, at most (default 10,000); a sign-in that
    /// finds the table full ends the least recently used session of the
    /// token holding the most (see `api::console::session`), never
    /// refused for room.
    pub max_sessions: usize,
    /// Sessions one sign-in token holds at most; one more ends its least
    /// recently used one (1 to [`MAX_SESSIONS_PER_TOKEN`], default 5).
    pub max_sessions_per_token: usize,
    /// Failed sign-ins one client address (an IPv6 client: its
    /// `rate_limits.client_ipv6_prefix`, /64) may make: `burst` at once,
    /// then one per `rate`'s period; past it, sign-in answers 429 without
    /// looking at the token (default 10/h, burst 5).
    pub failed_sign_ins: Limit,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: false,
            idle_timeout: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(8 * 3600),
            secure_cookie: false,
            max_sessions: 10_000,
            max_sessions_per_token: 5,
            failed_sign_ins: Limit {
                rate: Rate { count: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN), per: Duration::from_secs(3600) },
                burst: Some(NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN)),
            },
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConsoleFile {
    #[serde(default)]
    enabled: bool,
    #[serde(default)]
    idle_timeout: Option<HumanDuration>,
    #[serde(default)]
    max_age: Option<HumanDuration>,
    #[serde(default)]
    secure_cookie: bool,
    #[serde(default)]
    max_sessions: Option<usize>,
    #[serde(default)]
    max_sessions_per_token: Option<usize>,
    #[serde(default)]
    failed_sign_ins: Option<Limit>,
}

pub(super) fn build_console(f: ConsoleFile, has_api: bool, has_store: bool, errs: &mut Errors) -> ConsoleConfig {
    let d = ConsoleConfig::default();
    let c = ConsoleConfig {
        enabled: f.enabled,
        idle_timeout: f.idle_timeout.map_or(d.idle_timeout, Duration::from),
        max_age: f.max_age.map_or(d.max_age, Duration::from),
        secure_cookie: f.secure_cookie,
        max_sessions: f.max_sessions.unwrap_or(d.max_sessions),
        max_sessions_per_token: f.max_sessions_per_token.unwrap_or(d.max_sessions_per_token),
        failed_sign_ins: f.failed_sign_ins.unwrap_or(d.failed_sign_ins),
    };
    if c.enabled && !(has_api && has_store) {
        errs.push("console.enabled", "the console needs the api listener and a store");
    }
    if c.idle_timeout < Duration::from_secs(60) {
        errs.push("console.idle_timeout", "must be at least 1m");
    }
    if c.max_age < c.idle_timeout {
        errs.push("console.max_age", "must not be shorter than idle_timeout");
    }
    if !(1..=MAX_SESSIONS_PER_TOKEN).contains(&c.max_sessions_per_token) {
        errs.push("console.max_sessions_per_token", format!("must be from 1 to {MAX_SESSIONS_PER_TOKEN}"));
    }
    if !(c.max_sessions_per_token..=MAX_SESSIONS).contains(&c.max_sessions) {
        errs.push("console.max_sessions", format!("must be from max_sessions_per_token to {MAX_SESSIONS}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(section: serde_json::Value) -> (ConsoleConfig, Vec<String>) {
        let f: ConsoleFile = serde_json::from_value(section).expect("the section's shape");
        let mut errs = Errors::default();
        let c = build_console(f, true, true, &mut errs);
        (c, errs.errors)
    }

    #[test]
    fn the_console_bounds_have_defaults_and_limits() {
        let (c, errs) = build(serde_json::json!({ "enabled": true }));
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!((c.max_sessions, c.max_sessions_per_token), (10_000, 5));
        assert_eq!(c.failed_sign_ins.rate.count.get(), 10);
        assert_eq!(c.failed_sign_ins.burst.map(NonZeroU32::get), Some(5));

        let (c, errs) = build(serde_json::json!({
            "max_sessions": 50, "max_sessions_per_token": 2, "failed_sign_ins": { "rate": "3/m" },
        }));
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!((c.max_sessions, c.max_sessions_per_token, c.failed_sign_ins.rate.count.get()), (50, 2, 3));

        for (section, want) in [
            (
                serde_json::json!({ "max_sessions_per_token": 0 }),
                "console.max_sessions_per_token: must be from 1 to 100",
            ),
            (
                serde_json::json!({ "max_sessions_per_token": 101 }),
                "console.max_sessions_per_token: must be from 1 to 100",
            ),
            (
                serde_json::json!({ "max_sessions": 4 }),
                "console.max_sessions: must be from max_sessions_per_token to 1000000",
            ),
            (
                serde_json::json!({ "max_sessions": 1_000_001 }),
                "console.max_sessions: must be from max_sessions_per_token to 1000000",
            ),
        ] {
            assert_eq!(build(section.clone()).1, vec![want.to_string()], "{section}");
        }
        assert!(
            serde_json::from_value::<ConsoleFile>(serde_json::json!({ "failed_sign_ins": { "rate": "0/m" } })).is_err()
        );
    }
}
