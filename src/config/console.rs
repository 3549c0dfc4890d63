//! The `console` section: the admin web console on the api listener.

use std::time::Duration;

use serde::Deserialize;

use super::Errors;
use super::duration::HumanDuration;

/// The console's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Served under `/console` on the api listener (off by default).
    pub enabled: bool,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, used or not.
    pub max_age: Duration,
    /// Mark the session cookie `Secure`: set it when users reach the
    /// console over HTTPS (a TLS-terminating proxy in front).
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: false,
            idle_timeout: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(8 * 3600),
            secure_cookie: false,
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
}

pub(super) fn build_console(f: ConsoleFile, has_api: bool, has_store: bool, errs: &mut Errors) -> ConsoleConfig {
    let d = ConsoleConfig::default();
    let c = ConsoleConfig {
        enabled: f.enabled,
        idle_timeout: f.idle_timeout.map_or(d.idle_timeout, Duration::from),
        max_age: f.max_age.map_or(d.max_age, Duration::from),
        secure_cookie: f.secure_cookie,
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
    c
}
