//! The console's sessions: server-side state behind an opaque cookie.
//!
//! A session id is 256 random bits, sent only in an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/console`; the server keeps only
//! its SHA-256, so the table holds nothing a browser could present. A
//! session ends when it has been idle for `idle_timeout`, when it is
//! `max_age` old, at sign-out — and whenever the token it was opened with
//! stops being valid, because every request authenticates that token
//! again under the policy in force (held here, server-side, never sent
//! back). Each session carries its CSRF token for the forms it renders.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use dashmap::DashMap;

/// The cookie's name.
pub const COOKIE: &str = "ng_console";
/// The sign-in form's token, before there is a session.
pub const SIGN_IN_COOKIE: &str = "ng_console_sign_in";
/// At most this many sessions at once; past it, expired ones are swept
/// and a new sign-in is refused if none is.
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
pub struct Session {
    /// The sign-in credential as request headers (`Authorization`).
    pub credential: HeaderMap,
    /// The form token every state-changing request must carry.
    pub csrf: String,
    /// Who signed in, for the page header (a name or subject).
    pub label: String,
    created: u64,
    last_seen: AtomicU64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("label", &self.label).finish_non_exhaustive()
    }
}

/// The table of sessions, keyed by the SHA-256 of their ids.
#[derive(Default)]
pub struct Sessions {
    map: DashMap<[u8; 32], Arc<Session>>,
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("too many console sessions are open")]
    Full,
    #[error("no randomness")]
    Random,
}

fn digest(id: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// 256 random bits, base64url.
pub fn random_token() -> Result<String, OpenError> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| OpenError::Random)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl Sessions {
    /// Open a session; its id (for the cookie) and the session.
    pub fn open(
        &self,
        credential: HeaderMap,
        label: String,
        now: u64,
        limits: &crate::config::ConsoleConfig,
    ) -> Result<(String, Arc<Session>), OpenError> {
        if self.map.len() >= MAX_SESSIONS {
            self.sweep(now, limits);
            if self.map.len() >= MAX_SESSIONS {
                return Err(OpenError::Full);
            }
        }
        let id = random_token()?;
        let session = Arc::new(Session {
            credential,
            csrf: random_token()?,
            label,
            created: now,
            last_seen: AtomicU64::new(now),
        });
        self.map.insert(digest(&id), session.clone());
        Ok((id, session))
    }

    /// The live session with this id, marked used now; an idle or too old
    /// one ends here.
    pub fn get(&self, id: &str, now: u64, limits: &crate::config::ConsoleConfig) -> Option<Arc<Session>> {
        let key = digest(id);
        let session = self.map.get(&key).map(|s| s.clone())?;
        if !alive(&session, now, limits) {
            self.map.remove(&key);
            return None;
        }
        session.last_seen.store(now, Ordering::Relaxed);
        Some(session)
    }

    /// End a session (sign-out, or its token no longer valid).
    pub fn end(&self, id: &str) {
        self.map.remove(&digest(id));
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn sweep(&self, now: u64, limits: &crate::config::ConsoleConfig) {
        self.map.retain(|_, s| alive(s, now, limits));
    }
}

fn alive(s: &Session, now: u64, limits: &crate::config::ConsoleConfig) -> bool {
    let idle = now.saturating_sub(s.last_seen.load(Ordering::Relaxed));
    idle < limits.idle_timeout.as_secs() && now.saturating_sub(s.created) < limits.max_age.as_secs()
}

/// The session id in a request's cookies.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    named_cookie(headers, COOKIE)
}

fn named_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// A `Set-Cookie` value of the console's: `HttpOnly`, `SameSite=Strict`,
/// `Secure` when users reach the console over HTTPS; `clear` removes it.
fn set_cookie_value(name: &str, value: &str, path: &str, secure: bool, clear: bool) -> String {
    format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite=Strict{}{}",
        if clear { "; Max-Age=0" } else { "" },
        if secure { "; Secure" } else { "" }
    )
}

/// `Set-Cookie` for a new session.
pub fn set_cookie(id: &str, secure: bool) -> String {
    set_cookie_value(COOKIE, id, "/console", secure, false)
}

/// `Set-Cookie` that removes it.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie_value(COOKIE, "", "/console", secure, true)
}

/// `Set-Cookie` for the sign-in form's token (its own path, gone when
/// the browser closes).
pub fn sign_in_cookie(token: &str, secure: bool) -> String {
    set_cookie_value(SIGN_IN_COOKIE, token, "/console/sign-in", secure, false)
}

/// `Set-Cookie` that removes the sign-in form's token (signed in).
pub fn clear_sign_in_cookie(secure: bool) -> String {
    set_cookie_value(SIGN_IN_COOKIE, "", "/console/sign-in", secure, true)
}

/// Whether a sign-in form carries the token its page set (double submit:
/// a page on another site can neither read the cookie nor set it).
pub fn sign_in_token_ok(headers: &HeaderMap, submitted: Option<&str>) -> bool {
    match (named_cookie(headers, SIGN_IN_COOKIE), submitted) {
        (Some(c), Some(s)) if !c.is_empty() => {
            aws_lc_rs::constant_time::verify_slices_are_equal(c.as_bytes(), s.as_bytes()).is_ok()
        }
        _ => false,
    }
}

/// Whether a submitted form token is the session's (constant time).
pub fn csrf_ok(session: &Session, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|s| {
        aws_lc_rs::constant_time::verify_slices_are_equal(s.as_bytes(), session.csrf.as_bytes()).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsoleConfig;

    fn limits() -> ConsoleConfig {
        ConsoleConfig {
            idle_timeout: std::time::Duration::from_secs(60),
            max_age: std::time::Duration::from_secs(600),
            ..ConsoleConfig::default()
        }
    }

    #[test]
    fn sessions_end_when_idle_or_old_and_at_sign_out() {
        let s = Sessions::default();
        let (id, session) = s.open(HeaderMap::new(), "admin".into(), 1000, &limits()).expect("open");
        assert_eq!(id.len(), 43, "256 bits, base64url");
        assert_ne!(session.csrf, id);
        assert!(s.get(&id, 1059, &limits()).is_some(), "used within the idle timeout");
        assert!(s.get(&id, 1118, &limits()).is_some(), "idle time counts from the last use");
        assert!(s.get(&id, 1178, &limits()).is_none(), "idle for a minute: ended");
        assert!(s.is_empty());

        let (id, _) = s.open(HeaderMap::new(), "admin".into(), 1000, &limits()).expect("open");
        for t in (1030..1600).step_by(30) {
            assert!(s.get(&id, t, &limits()).is_some());
        }
        assert!(s.get(&id, 1600, &limits()).is_none(), "ten minutes old: ended however busy");

        let (id, _) = s.open(HeaderMap::new(), "admin".into(), 1000, &limits()).expect("open");
        s.end(&id);
        assert!(s.get(&id, 1001, &limits()).is_none());
        assert!(s.get("forged", 1001, &limits()).is_none());
    }

    #[test]
    fn cookies_and_form_tokens() {
        let mut h = HeaderMap::new();
        h.append(axum::http::header::COOKIE, "a=1; ng_console=abc; b=2".parse().expect("header"));
        assert_eq!(cookie(&h), Some("abc"));
        assert!(set_cookie("x", false).contains("HttpOnly; SameSite=Strict"));
        assert!(set_cookie("x", true).ends_with("; Secure"));
        for secure in [false, true] {
            for c in [
                set_cookie("x", secure),
                clear_cookie(secure),
                sign_in_cookie("x", secure),
                clear_sign_in_cookie(secure),
            ] {
                assert_eq!(c.ends_with("; Secure"), secure, "{c}");
            }
        }
        let s = Sessions::default();
        let (_, session) = s.open(HeaderMap::new(), "admin".into(), 0, &limits()).expect("open");
        assert!(csrf_ok(&session, Some(&session.csrf.clone())));
        assert!(!csrf_ok(&session, Some("nope")));
        assert!(!csrf_ok(&session, None));
    }
}
