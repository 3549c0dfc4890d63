//! The `console` section: the admin web console on the api listener.

use std::time::Duration;

use serde::Deserialize;

use super::Errors;
use super::duration::HumanDuration;

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

        let (c, errs) = build(serde_json::json!({
            "max_sessions": 50, "max_sessions_per_token": 2,
        }));
        assert_eq!(errs, Vec::<String>::new());
        assert_eq!((c.max_sessions, c.max_sessions_per_token), (50, 2));

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
    }
}
