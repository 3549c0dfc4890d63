//! The console's sessions: server-side state behind an opaque cookie.
//!
//! A session id is 256 random bits, sent only in an `HttpOnly`,
//! `SameSite=Strict` cookie scoped to `/console`; the server keeps only
//! its SHA-256, so the table holds nothing a browser could present. A
//! session ends when it has been idle for `idle_timeout`, when it is
//! `max_age` old, when its sign-in token expires, at sign-out — and
//! whenever the token it was opened with stops being valid, because every
//! request authenticates that token again under the policy in force (held
//! here, server-side, never sent back). Each session carries its CSRF
//! token for the forms it renders.
//!
//! The table is bounded, and no token fills it for others:
//! - A sign-in token holds at most `console.max_sessions_per_token`
//!   sessions; one more ends its least recently used one. A token that
//!   signs in again and again ends only its own sessions (refusing it
//!   instead would let whoever holds a copy of a token lock its owner
//!   out).
//! - The table holds at most `console.max_sessions`. A sign-in that finds
//!   it full first drops the sessions that have ended (idle, too old, their
//!   token expired or revoked); if it is still full, the least recently
//!   used session of the token holding the most sessions ends — the
//!   newcomer's own when it will be one of the largest. A sign-in is never
//!   refused for room. Only a master mints admin tokens, so a non-master
//!   admin holds at most its own bound however it floods, and filling the
//!   table takes `max_sessions / max_sessions_per_token` admin tokens (a
//!   master's doing, or an external issuer's trusted to manage); even then
//!   a token holding fewer sessions than the largest keeps them, so a
//!   master still signs in and stays signed in.
//! - A revoked token's sessions, and those of every token in its lineage,
//!   end as soon as this replica's revocation set holds the revocation
//!   (the token service's own revoke, another replica's notification, an
//!   issuer's feed): [`follow_revocations`] applies each addition, and the
//!   table applies any it has not seen whenever it is used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::http::HeaderMap;

use crate::config::ConsoleConfig;
use crate::store::Revocations;
use crate::token::Grant;

/// The cookie's name.
pub const COOKIE: &str = "ng_console";
/// The sign-in form's token, before there is a session.
pub const SIGN_IN_COOKIE: &str = "ng_console_sign_in";

/// One signed-in browser.
pub struct Session {
    /// The sign-in credential as request headers (`Authorization`).
    pub credential: HeaderMap,
    /// The form token every state-changing request must carry.
    pub csrf: String,
    /// Who signed in, for the page header (a name or subject).
    pub label: String,
    /// The sign-in token's id (`jti`).
    token: Box<str>,
    /// Its ancestors, root first: revoking any of them ends the session.
    lineage: Vec<Box<str>>,
    /// When the sign-in token expires (Unix seconds; `None`: never).
    expires_at: Option<u64>,
    created: u64,
    last_seen: AtomicU64,
    /// Its place in the order sessions were opened (the clock counts
    /// whole seconds: among sessions used in the same one, the first
    /// opened is the least recently used).
    opened: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("label", &self.label).field("token", &self.token).finish_non_exhaustive()
    }
}

impl Session {
    /// A new session for `grant`'s token, presented as `credential`.
    fn new(credential: HeaderMap, grant: &Grant, now: u64) -> Result<Session, OpenError> {
        Ok(Session {
            credential,
            csrf: random_token()?,
            label: grant.name.as_deref().unwrap_or(&grant.subject).to_string(),
            token: grant.token_id.clone(),
            lineage: grant.lineage.clone(),
            expires_at: grant.expires_at,
            created: now,
            last_seen: AtomicU64::new(now),
            opened: 0,
        })
    }

    /// Whether its sign-in token or an ancestor has been revoked.
    fn revoked(&self, revocations: &Revocations) -> bool {
        revocations.is_revoked(&self.token) || self.lineage.iter().any(|id| revocations.is_revoked(id))
    }

    /// Whether it is still open at `now`.
    fn alive(&self, now: u64, limits: &ConsoleConfig) -> bool {
        let idle = now.saturating_sub(self.last_seen.load(Ordering::Relaxed));
        idle < limits.idle_timeout.as_secs()
            && now.saturating_sub(self.created) < limits.max_age.as_secs()
            && self.expires_at.is_none_or(|exp| now < exp)
    }

    /// What orders sessions from least to most recently used.
    fn recency(&self) -> (u64, u64) {
        (self.last_seen.load(Ordering::Relaxed), self.opened)
    }
}

type Key = [u8; 32];

/// The table of sessions, keyed by the SHA-256 of their ids.
pub struct Sessions {
    table: Mutex<Table>,
    revocations: Arc<Revocations>,
}

/// The sessions and each sign-in token's, changed together (only through
/// [`Table::insert`] and [`Table::remove`]).
#[derive(Default)]
struct Table {
    map: HashMap<Key, Arc<Session>>,
    /// Each sign-in token's sessions (at most the per-token bound).
    by_token: HashMap<Box<str>, Vec<Key>>,
    /// The size of the revocation set when it was last applied (the set
    /// only grows).
    revocations_seen: usize,
    /// Sessions opened so far.
    opened: u64,
}

impl Table {
    fn insert(&mut self, key: Key, session: Arc<Session>) {
        self.by_token.entry(session.token.clone()).or_default().push(key);
        self.map.insert(key, session);
    }

    fn remove(&mut self, key: &Key) {
        let Some(session) = self.map.remove(key) else { return };
        if let Some(keys) = self.by_token.get_mut(&*session.token) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_token.remove(&*session.token);
            }
        }
    }

    /// End every session `ended` says has ended.
    fn remove_where(&mut self, ended: impl Fn(&Session) -> bool) {
        let keys: Vec<Key> = self.map.iter().filter(|(_, s)| ended(s)).map(|(k, _)| *k).collect();
        for key in &keys {
            self.remove(key);
        }
    }

    /// The least recently used of `keys`.
    fn least_recently_used<'k>(&self, keys: impl Iterator<Item = &'k Key>) -> Option<Key> {
        keys.filter_map(|k| self.map.get(k).map(|s| (s.recency(), *k))).min().map(|(_, k)| k)
    }

    /// The session a sign-in of `token` ends in a full table: the least
    /// recently used of the token that will hold the most sessions — its
    /// own when it will be one of the largest (ties end its own).
    fn displaced_by(&self, token: &str) -> Option<Key> {
        let own = self.by_token.get(token).map_or(&[][..], Vec::as_slice);
        let largest_other = self.by_token.iter().filter(|(t, _)| &***t != token).max_by_key(|(_, keys)| keys.len());
        let victim = match largest_other {
            Some((_, keys)) if own.is_empty() || keys.len() > own.len() + 1 => keys.as_slice(),
            _ => own,
        };
        self.least_recently_used(victim.iter())
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no randomness")]
    Random,
    #[error("the session could not be sealed")]
    Seal,
    #[error("the store could not keep the session")]
    Store(#[source] crate::store::StoreError),
}

fn digest(id: &str) -> Key {
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
    /// An empty table whose sessions end with their tokens' revocation in
    /// `revocations`.
    pub fn new(revocations: Arc<Revocations>) -> Self {
        Sessions { table: Mutex::default(), revocations }
    }

    /// The table, with every revocation it has not seen applied.
    fn table(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while holding the lock; were it poisoned, the
        // table is still whole (each change is one insert or remove).
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        // An id is in the set before the set's size counts it: every id
        // counted here is seen by `revoked`.
        let revoked = self.revocations.len();
        if revoked != table.revocations_seen {
            table.revocations_seen = revoked;
            table.remove_where(|s| s.revoked(&self.revocations));
        }
        table
    }

    /// Open a session for `grant`'s token, presented as `credential`; its
    /// id (for the cookie) and the session. Room is made as the module
    /// says: never refused for it.
    pub fn open(
        &self,
        credential: HeaderMap,
        grant: &Grant,
        now: u64,
        limits: &ConsoleConfig,
    ) -> Result<(String, Arc<Session>), OpenError> {
        let id = random_token()?;
        let session = Session::new(credential, grant, now)?;
        Ok((id.clone(), self.admit(&id, session, limits)))
    }

    /// Take `session` into the table under `id`, making room as the module
    /// says (never refused for it).
    fn admit(&self, id: &str, session: Session, limits: &ConsoleConfig) -> Arc<Session> {
        let now = session.last_seen.load(Ordering::Relaxed);
        let mut table = self.table();
        table.opened += 1;
        let session = Arc::new(Session { opened: table.opened, ..session });
        // The token's own bound: its least recently used sessions end.
        while let Some(oldest) = table
            .by_token
            .get(&*session.token)
            .filter(|keys| keys.len() >= limits.max_sessions_per_token)
            .and_then(|keys| table.least_recently_used(keys.iter()))
        {
            table.remove(&oldest);
        }
        // The table's bound: what has ended goes first, then the least
        // recently used sessions of the token holding the most.
        if table.map.len() >= limits.max_sessions {
            table.remove_where(|s| !s.alive(now, limits));
        }
        while table.map.len() >= limits.max_sessions {
            let Some(victim) = table.displaced_by(&session.token) else { break };
            table.remove(&victim);
        }
        table.insert(digest(id), session.clone());
        session
    }

    /// The live session with this id, marked used now; an idle or too old
    /// one ends here.
    pub fn get(&self, id: &str, now: u64, limits: &ConsoleConfig) -> Option<Arc<Session>> {
        let key = digest(id);
        let mut table = self.table();
        let session = table.map.get(&key)?.clone();
        if !session.alive(now, limits) {
            table.remove(&key);
            return None;
        }
        session.last_seen.store(now, Ordering::Relaxed);
        Some(session)
    }

    /// End a session (sign-out, or its token no longer valid).
    pub fn end(&self, id: &str) {
        self.table().remove(&digest(id));
    }

    /// How many sessions are open at `now` (those that ended are dropped).
    pub fn open_count(&self, now: u64, limits: &ConsoleConfig) -> usize {
        let mut table = self.table();
        table.remove_where(|s| !s.alive(now, limits));
        table.map.len()
    }
}

/// The console's sessions across replicas and restarts: this replica's
/// table (above) in front of the store's (`console_sessions`).
///
/// A session opened here is written to the store; one this table does not
/// hold — opened on another replica, or before a restart — is read from
/// the store when its cookie comes, and taken into the table under the
/// same bounds. The store finds a session by the SHA-256 of its cookie and
/// holds what it needs sealed (AES-256-GCM) under a key derived from the
/// cookie by another hash: without the cookie, a row opens nothing and
/// shows no token. Its use is written back (`last_seen`), so an operator
/// busy on one replica is not idle on another; sign-out ends it everywhere.
/// A revoked sign-in token's sessions end on every replica as its
/// revocation reaches that replica's set: each request authenticates the
/// token again, and a session read from the store is judged by the set
/// before it is used.
pub struct SharedSessions {
    pub local: Sessions,
    store: Option<crate::store::Store>,
    /// Held from making room to the insert, so this replica's sign-ins
    /// keep the bounds among themselves (sign-ins are rare; the proxy
    /// never takes it).
    opening: tokio::sync::Mutex<()>,
}

/// What a stored session holds, sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    authorization: String,
    csrf: String,
    label: String,
    lineage: Vec<String>,
    expires_at: Option<u64>,
}

/// What the sealing of every session is bound to (AES-GCM's associated
/// data), with the row's columns in the clear: a row whose token id or
/// opening time was changed opens nothing.
const SEALED_FOR: &[u8] = b"narrowgate console session v1";

fn associated(token_id: &str, created: u64) -> Vec<u8> {
    let mut aad = SEALED_FOR.to_vec();
    aad.extend_from_slice(&created.to_be_bytes());
    aad.extend_from_slice(token_id.as_bytes());
    aad
}

/// The key a session's contents are sealed under: from its cookie, by a
/// hash other than the one the store finds it by.
fn sealing_key(id: &str) -> Option<aws_lc_rs::aead::LessSafeKey> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(b"narrowgate console session key\0");
    ctx.update(id.as_bytes());
    let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, ctx.finish().as_ref()).ok()?;
    Some(aws_lc_rs::aead::LessSafeKey::new(key))
}

fn seal(id: &str, session: &Session) -> Result<Vec<u8>, OpenError> {
    use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
    use aws_lc_rs::rand::SecureRandom;
    let authorization = session.credential.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let sealed = Sealed {
        authorization: authorization.unwrap_or_default().to_string(),
        csrf: session.csrf.clone(),
        label: session.label.clone(),
        lineage: session.lineage.iter().map(|l| l.to_string()).collect(),
        expires_at: session.expires_at,
    };
    let mut data = serde_json::to_vec(&sealed).map_err(|_| OpenError::Seal)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut nonce).map_err(|_| OpenError::Random)?;
    let key = sealing_key(id).ok_or(OpenError::Seal)?;
    let aad = associated(&session.token, session.created);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad[..]), &mut data)
        .map_err(|_| OpenError::Seal)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(out)
}

fn unseal(id: &str, bytes: &[u8], token_id: &str, created: u64) -> Option<Sealed> {
    use aws_lc_rs::aead::{Aad, NONCE_LEN, Nonce};
    let (nonce, data) = bytes.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut data = data.to_vec();
    let aad = associated(token_id, created);
    let plain = sealing_key(id)?.open_in_place(nonce, Aad::from(&aad[..]), &mut data).ok()?;
    serde_json::from_slice(plain).ok()
}

impl SharedSessions {
    /// Sessions kept in `store` (`None`: this replica's table alone).
    pub fn new(revocations: Arc<Revocations>, store: Option<crate::store::Store>) -> Self {
        SharedSessions { local: Sessions::new(revocations), store, opening: tokio::sync::Mutex::default() }
    }

    fn bounds(now: u64, limits: &ConsoleConfig) -> crate::store::SessionBounds {
        let before = |d: std::time::Duration| {
            crate::time::UnixTime::from_i64(i64::try_from(now.saturating_sub(d.as_secs())).unwrap_or(0))
                .unwrap_or_default()
        };
        crate::store::SessionBounds {
            per_token: limits.max_sessions_per_token,
            total: limits.max_sessions,
            idle_before: before(limits.idle_timeout),
            opened_before: before(limits.max_age),
        }
    }

    fn time(t: u64) -> crate::time::UnixTime {
        crate::time::UnixTime::from_i64(i64::try_from(t).unwrap_or(i64::MAX)).unwrap_or_default()
    }

    /// Open a session (as [`Sessions::open`]), in the store first: a
    /// session the store did not take is not opened.
    pub async fn open(
        &self,
        credential: HeaderMap,
        grant: &Grant,
        now: u64,
        limits: &ConsoleConfig,
    ) -> Result<(String, Arc<Session>), OpenError> {
        let Some(store) = &self.store else { return self.local.open(credential, grant, now, limits) };
        let id = random_token()?;
        let session = Session::new(credential, grant, now)?;
        let record = crate::store::SessionRecord {
            key: digest(&id).to_vec(),
            token_id: grant.token_id.to_string(),
            sealed: seal(&id, &session)?,
            created_at: Self::time(now),
            last_seen: Self::time(now),
        };
        let bounds = Self::bounds(now, limits);
        let _one_at_a_time = self.opening.lock().await;
        // A full table first loses the sessions of tokens revoked since
        // (their rows stay until presented otherwise).
        let live = store.live_session_tokens(bounds).await.map_err(OpenError::Store)?;
        if live.len() >= bounds.total {
            let mut revoked: Vec<&String> = live.iter().filter(|t| self.local.revocations.is_revoked(t)).collect();
            revoked.dedup();
            for token in revoked {
                store.delete_token_sessions(token).await.map_err(OpenError::Store)?;
            }
        }
        store.make_session_room(&grant.token_id, bounds).await.map_err(OpenError::Store)?;
        store.insert_session(&record).await.map_err(OpenError::Store)?;
        Ok((id.clone(), self.local.admit(&id, session, limits)))
    }

    /// The live session with this id, here or in the store, marked used
    /// now (there too).
    pub async fn get(&self, id: &str, now: u64, limits: &ConsoleConfig) -> Option<Arc<Session>> {
        let local = self.local.get(id, now, limits);
        let Some(store) = &self.store else { return local };
        let key = digest(id);
        if let Some(session) = local {
            return match store.touch_session(&key, Self::time(now)).await {
                Ok(true) => Some(session),
                // Ended elsewhere: signed out on another replica, or
                // displaced there to make room.
                Ok(false) => {
                    self.local.end(id);
                    None
                }
                // The store is away: whether the session was ended on
                // another replica cannot be known, so it is not used now
                // (fail closed; it is kept for when the store is back).
                Err(e) => {
                    tracing::warn!(error = %e, "console: a session's use could not be written to the store");
                    None
                }
            };
        }
        let row = match store.session(&key).await {
            Ok(row) => row?,
            Err(e) => {
                tracing::warn!(error = %e, "console: the store could not be asked for a session");
                return None;
            }
        };
        let bounds = Self::bounds(now, limits);
        let created = u64::try_from(row.created_at.as_i64()).unwrap_or(0);
        let sealed = (row.last_seen > bounds.idle_before && row.created_at > bounds.opened_before)
            .then(|| unseal(id, &row.sealed, &row.token_id, created))
            .flatten();
        let session = sealed.and_then(|s| {
            let mut credential = HeaderMap::new();
            credential.insert(axum::http::header::AUTHORIZATION, s.authorization.parse().ok()?);
            Some(Session {
                credential,
                csrf: s.csrf,
                label: s.label,
                token: row.token_id.as_str().into(),
                lineage: s.lineage.into_iter().map(Into::into).collect(),
                expires_at: s.expires_at,
                created,
                last_seen: AtomicU64::new(now),
                opened: 0,
            })
        });
        let live = session.filter(|s| s.alive(now, limits) && !s.revoked(&self.local.revocations));
        let Some(live) = live else {
            // Ended: idle, too old, its token expired or revoked, or not
            // what its cookie opens.
            if let Err(e) = store.delete_session(&key).await {
                tracing::warn!(error = %e, "console: an ended session could not be deleted from the store");
            }
            return None;
        };
        // Adopted only if it is still there (not ended meanwhile).
        match store.touch_session(&key, Self::time(now)).await {
            Ok(true) => Some(self.local.admit(id, live, limits)),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(error = %e, "console: a session's use could not be written to the store");
                None
            }
        }
    }

    /// End a session on this replica only: its token was refused here for
    /// what another replica may not refuse it for (yet), such as a key or
    /// a reference token this replica has not caught up with.
    pub fn end_here(&self, id: &str) {
        self.local.end(id);
    }

    /// End a session here and in the store (sign-out, or its token no
    /// longer valid). `Err` when the store could not delete it: it may
    /// still be taken up on another replica, or here once the store is
    /// back, so a sign-out must say it did not happen.
    pub async fn end(&self, id: &str) -> Result<(), crate::store::StoreError> {
        self.local.end(id);
        let Some(store) = &self.store else { return Ok(()) };
        store.delete_session(&digest(id)).await.inspect_err(|e| {
            tracing::warn!(error = %e, "console: an ended session could not be deleted from the store");
        })
    }

    /// How many sessions are open at `now`, across replicas when they are
    /// in the store.
    pub async fn open_count(&self, now: u64, limits: &ConsoleConfig) -> usize {
        let local = self.local.open_count(now, limits);
        match &self.store {
            // (A revoked token's rows stay until its session is next
            // presented; they are not counted.)
            Some(store) => match store.live_session_tokens(Self::bounds(now, limits)).await {
                Ok(tokens) => tokens.iter().filter(|t| !self.local.revocations.is_revoked(t)).count(),
                Err(e) => {
                    tracing::warn!(error = %e, "console: the store could not count the sessions; this replica's shown");
                    local
                }
            },
            None => local,
        }
    }
}

/// End the sessions of every token revoked from now on as soon as the
/// revocation set holds it, not at their next page: the task a server
/// runs beside the console (it ends when the table is gone).
pub fn follow_revocations(sessions: &Arc<SharedSessions>) -> impl Future<Output = ()> + Send + 'static {
    let table = Arc::downgrade(sessions);
    let mut added = sessions.local.revocations.subscribe();
    async move {
        while added.changed().await.is_ok() {
            let Some(sessions) = table.upgrade() else { return };
            drop(sessions.local.table());
        }
    }
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

    /// A sign-in token: `id`, under `lineage` (root first), expiring at `exp`.
    fn grant(id: &str, lineage: &[&str], exp: Option<u64>) -> Grant {
        Grant { role: crate::token::Role::Admin, expires_at: exp, ..crate::token::testkit::grant(id, lineage) }
    }

    fn table() -> Sessions {
        Sessions::new(Arc::default())
    }

    #[test]
    fn sessions_end_when_idle_or_old_and_at_sign_out() {
        let s = table();
        let admin = grant("admin", &[], None);
        let (id, session) = s.open(HeaderMap::new(), &admin, 1000, &limits()).expect("open");
        assert_eq!(id.len(), 43, "256 bits, base64url");
        assert_ne!(session.csrf, id);
        assert!(s.get(&id, 1059, &limits()).is_some(), "used within the idle timeout");
        assert!(s.get(&id, 1118, &limits()).is_some(), "idle time counts from the last use");
        assert!(s.get(&id, 1178, &limits()).is_none(), "idle for a minute: ended");
        assert_eq!(s.open_count(1178, &limits()), 0);

        let (id, _) = s.open(HeaderMap::new(), &admin, 1000, &limits()).expect("open");
        for t in (1030..1600).step_by(30) {
            assert!(s.get(&id, t, &limits()).is_some());
        }
        assert!(s.get(&id, 1600, &limits()).is_none(), "ten minutes old: ended however busy");

        let (id, _) = s.open(HeaderMap::new(), &admin, 1000, &limits()).expect("open");
        s.end(&id);
        assert!(s.get(&id, 1001, &limits()).is_none());
        assert!(s.get("forged", 1001, &limits()).is_none());

        let brief = grant("brief", &[], Some(1030));
        let (id, _) = s.open(HeaderMap::new(), &brief, 1000, &limits()).expect("open");
        assert!(s.get(&id, 1029, &limits()).is_some());
        assert!(s.get(&id, 1030, &limits()).is_none(), "its token expired: ended");
    }

    #[test]
    fn a_token_holds_its_bound_and_one_more_ends_its_least_recently_used() {
        let s = table();
        let limits =
            ConsoleConfig { max_sessions_per_token: 3, idle_timeout: std::time::Duration::from_secs(3600), ..limits() };
        let (flood, other) = (grant("flood", &[], None), grant("other", &[], None));
        let (kept, _) = s.open(HeaderMap::new(), &other, 1000, &limits).expect("open");
        let ids: Vec<String> =
            (0..3).map(|i| s.open(HeaderMap::new(), &flood, 1000 + i, &limits).expect("open").0).collect();
        // The first is used again: the second is now the least recently used.
        assert!(s.get(&ids[0], 1010, &limits).is_some());
        for t in 1011..1111 {
            s.open(HeaderMap::new(), &flood, t, &limits).expect("open");
        }
        assert_eq!(s.open_count(1111, &limits), 4, "three of the flooding token's, one of the other's");
        assert!(s.get(&ids[1], 1111, &limits).is_none() && s.get(&ids[2], 1111, &limits).is_none());
        assert!(s.get(&kept, 1111, &limits).is_some(), "another token's session is untouched");
        // A lower bound after a reload: the next sign-in brings the token down to it.
        let lower = ConsoleConfig { max_sessions_per_token: 1, ..limits.clone() };
        s.open(HeaderMap::new(), &flood, 1112, &lower).expect("open");
        assert_eq!(s.open_count(1112, &lower), 2);
    }

    #[test]
    fn a_full_table_makes_room_from_the_token_holding_the_most_never_refusing() {
        let s = table();
        let limits = ConsoleConfig {
            max_sessions: 10,
            max_sessions_per_token: 3,
            idle_timeout: std::time::Duration::from_secs(3600),
            ..limits()
        };
        // Admin tokens a master minted, each signing in to its bound.
        let flood: Vec<Grant> = (0..5).map(|i| grant(&format!("flood-{i}"), &[], None)).collect();
        let clock = std::cell::Cell::new(1000);
        let sign_in = |g: &Grant| {
            clock.set(clock.get() + 1);
            s.open(HeaderMap::new(), g, clock.get(), &limits).expect("never refused for room").0
        };
        for g in &flood {
            for _ in 0..3 {
                sign_in(g);
            }
        }
        // A master signs in to a full table, and a peer; the flood goes on.
        let master = sign_in(&grant("master", &[], None));
        let peer = sign_in(&grant("peer", &[], None));
        for _ in 0..3 {
            for g in &flood {
                sign_in(g);
            }
        }
        let now = clock.get();
        assert_eq!(s.open_count(now, &limits), 10);
        for kept in [&master, &peer] {
            assert!(s.get(kept, now, &limits).is_some(), "a token holding fewer sessions keeps them");
        }
        // A master that would hold as many as the largest (two) ends its
        // own least recently used session to sign in again.
        assert_eq!(s.table().by_token.values().map(Vec::len).max(), Some(2));
        let again = sign_in(&grant("master", &[], None));
        let now = clock.get();
        assert!(s.get(&again, now, &limits).is_some());
        assert!(s.get(&master, now, &limits).is_none(), "its own least recently used made room");
        assert!(s.get(&peer, now, &limits).is_some());

        // Sessions that ended go before anyone's live ones.
        let doomed = sign_in(&grant("expiring", &[], Some(now + 10)));
        let late = s.open(HeaderMap::new(), &grant("late", &[], None), now + 10, &limits).expect("open").0;
        assert!(s.get(&doomed, now + 10, &limits).is_none());
        for kept in [&again, &peer, &late] {
            assert!(s.get(kept, now + 10, &limits).is_some());
        }
        assert_eq!(s.open_count(now + 10, &limits), 10, "the expired session made room: no live one ended");
    }

    #[test]
    fn revoking_a_token_or_an_ancestor_ends_its_sessions() {
        let revocations = Arc::new(Revocations::default());
        let s = Sessions::new(revocations.clone());
        let (ops, child, other) = (grant("ops", &[], None), grant("child", &["ops"], None), grant("other", &[], None));
        let (a, _) = s.open(HeaderMap::new(), &ops, 1000, &limits()).expect("open");
        let (b, _) = s.open(HeaderMap::new(), &child, 1000, &limits()).expect("open");
        let (c, _) = s.open(HeaderMap::new(), &other, 1000, &limits()).expect("open");
        assert_eq!(s.open_count(1001, &limits()), 3);
        revocations.revoke("ops", None);
        assert_eq!(s.open_count(1001, &limits()), 1, "the token and the one in its lineage");
        assert!(s.get(&a, 1001, &limits()).is_none() && s.get(&b, 1001, &limits()).is_none());
        assert!(s.get(&c, 1001, &limits()).is_some());
    }

    #[tokio::test]
    async fn a_revocation_frees_the_table_without_waiting_for_a_page() {
        let revocations = Arc::new(Revocations::default());
        let s = Arc::new(SharedSessions::new(revocations.clone(), None));
        tokio::spawn(follow_revocations(&s));
        s.open(HeaderMap::new(), &grant("ops", &[], None), 1000, &limits()).await.expect("open");
        revocations.revoke("ops", None);
        let start = std::time::Instant::now();
        // The table itself, not a count that would apply the revocation.
        while !s.local.table.lock().expect("lock").map.is_empty() {
            assert!(start.elapsed() < std::time::Duration::from_secs(5), "the follower ended the session");
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn a_sealed_session_opens_only_with_its_own_cookie() {
        let mut credential = HeaderMap::new();
        credential.insert(axum::http::header::AUTHORIZATION, "Bearer secret.token.here".parse().expect("value"));
        let session = Session::new(credential, &grant("ops", &["root"], Some(5000)), 1000).expect("session");
        let id = random_token().expect("id");
        let sealed = seal(&id, &session).expect("sealed");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "the credential is not in the clear");
        let opened = unseal(&id, &sealed, "ops", 1000).expect("opens with its cookie");
        assert_eq!(opened.authorization, "Bearer secret.token.here");
        assert_eq!(
            (opened.csrf, opened.lineage, opened.expires_at),
            (session.csrf.clone(), vec!["root".to_string()], Some(5000))
        );
        let other = random_token().expect("id");
        assert!(unseal(&other, &sealed, "ops", 1000).is_none(), "another cookie opens nothing");
        assert!(unseal(&id, &sealed, "other", 1000).is_none(), "a row whose token id was changed opens nothing");
        assert!(unseal(&id, &sealed, "ops", 2000).is_none(), "nor one whose opening time was");
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(unseal(&id, &flipped, "ops", 1000).is_none(), "a changed row opens nothing");
        assert!(unseal(&id, &sealed[..5], "ops", 1000).is_none(), "nor a cut one");
        // Sealed twice, never alike (a fresh nonce each time).
        assert_ne!(seal(&id, &session).expect("sealed"), sealed);
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
        let s = table();
        let (_, session) = s.open(HeaderMap::new(), &grant("admin", &[], None), 0, &limits()).expect("open");
        assert!(csrf_ok(&session, Some(&session.csrf.clone())));
        assert!(!csrf_ok(&session, Some("nope")));
        assert!(!csrf_ok(&session, None));
    }
}
