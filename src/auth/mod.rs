//! Authentication, shared by the proxy and the token service: the
//! credential from the configured sources, verified into a grant through the
//! cache, then checked against the revocation mirror (request phases 3–5).
//! Synchronous and free of I/O.

pub mod credential;

use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

use crate::config::CredentialSource;
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::store::Revocations;
use crate::token::{Grant, GrantCache, KeyRing, Verifier};
use credential::CredentialError;

/// Credential → grant, or the reason there is none.
pub struct Authenticator {
    credentials: Vec<CredentialSource>,
    verifier: Verifier,
    cache: Arc<GrantCache>,
    revocations: Arc<Revocations>,
    references: Arc<crate::store::ReferenceTokens>,
    metrics: Arc<Metrics>,
    clock: Arc<crate::clock::Clock>,
    /// What it was compiled from, to tell what a reload may keep.
    cache_config: crate::config::CacheConfig,
    issuers_hash: String,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("credentials", &self.credentials).finish_non_exhaustive()
    }
}

impl Authenticator {
    /// The authenticator a config describes, reading `revocations` and a
    /// reference-token mirror the store keeps current.
    pub fn from_config(
        config: &crate::config::Config,
        revocations: Arc<Revocations>,
        references: Arc<crate::store::ReferenceTokens>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::compile(config, None, revocations, references, metrics, Arc::default())
    }

    /// The authenticator a (reloaded) config describes. With `prev` (the
    /// one it replaces): when the issuers and their key files are unchanged
    /// the key ring (and its JWKS fetching) carries over, and with it the
    /// grant cache if the cache and the token size limit are unchanged too.
    /// A changed ring always gets a new cache: requests still deciding
    /// under the old snapshot verify with the old keys, and what they cache
    /// must never be served under the new ones. The new ring starts with
    /// the old one's last good JWKS keys for the sources it keeps.
    pub fn compile(
        config: &crate::config::Config,
        prev: Option<&Authenticator>,
        revocations: Arc<Revocations>,
        references: Arc<crate::store::ReferenceTokens>,
        metrics: Arc<Metrics>,
        clock: Arc<crate::clock::Clock>,
    ) -> Self {
        let ring = match prev {
            Some(p) if p.issuers_hash == config.issuers_hash => p.keys().clone(),
            _ => {
                let ring = KeyRing::counting(
                    config.keys.clone(),
                    config.jwks_sources.clone(),
                    Some(metrics.jwks.clone()),
                    clock.clone(),
                );
                if let Some(p) = prev {
                    ring.carry_over(p.keys());
                }
                ring
            }
        };
        let cache = match prev {
            Some(p)
                if Arc::ptr_eq(p.keys(), &ring)
                    && p.cache_config == config.cache
                    && p.verifier.max_token_bytes() == config.max_token_bytes =>
            {
                p.cache.clone()
            }
            _ => Arc::new(
                GrantCache::with_generation(
                    config.cache.capacity,
                    config.cache.max_ttl.as_secs(),
                    ring.generation().clone(),
                )
                .counted(metrics.cache.clone()),
            ),
        };
        Authenticator {
            credentials: config.credentials.clone(),
            verifier: Verifier::with_ring(ring, config.max_token_bytes),
            cache,
            cache_config: config.cache.clone(),
            issuers_hash: config.issuers_hash.clone(),
            revocations,
            references,
            metrics,
            clock,
        }
    }

    /// The time decisions are judged by.
    #[inline]
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// The reference-token mirror the store keeps current.
    pub fn references(&self) -> &Arc<crate::store::ReferenceTokens> {
        &self.references
    }

    pub fn credentials(&self) -> &[CredentialSource] {
        &self.credentials
    }

    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The verification keys in force (fetched ones included).
    pub fn keys(&self) -> &Arc<KeyRing> {
        self.verifier.ring()
    }

    /// [`Authenticator::authenticate`], and when the token names a key this
    /// gateway does not know but an issuer's JWKS might (a key rotated in),
    /// fetch the keys again (rate-limited) and decide once more. The only
    /// path that may wait on I/O, and only for unknown kids.
    ///
    /// `presented`: the thumbprint of the client certificate the caller's
    /// connection presented; a token bound to another (or to one when none
    /// was presented) is refused (see [`check_binding`]).
    pub async fn authenticate_fetching(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        presented: Option<&[u8; 32]>,
    ) -> Result<Arc<Grant>, Reason> {
        let grant = match self.authenticate(headers, query, self.now()) {
            Err(r) if self.wants_refetch(r) => {
                self.keys().refetch().await;
                self.authenticate(headers, query, self.now())
            }
            other => other,
        }?;
        check_binding(&grant, presented)?;
        Ok(grant)
    }

    /// [`Authenticator::authenticate_token`], fetching keys as
    /// [`Authenticator::authenticate_fetching`] does: for a credential a
    /// facade received in its own place (Crafter's `accessTokenId`, any
    /// `Authorization` scheme word ProdManager's clients send).
    pub async fn authenticate_token_fetching(
        &self,
        token: &str,
        presented: Option<&[u8; 32]>,
    ) -> Result<Arc<Grant>, Reason> {
        let grant = match self.authenticate_token(token, self.now()) {
            Err(r) if self.wants_refetch(r) => {
                self.keys().refetch().await;
                self.authenticate_token(token, self.now())
            }
            other => other,
        }?;
        check_binding(&grant, presented)?;
        Ok(grant)
    }

    /// Whether a refusal for `reason` could change with fresher keys.
    pub fn wants_refetch(&self, reason: Reason) -> bool {
        matches!(reason, Reason::UnknownKey | Reason::KeysUnavailable) && self.keys().is_remote()
    }

    /// The grant of the request's credential at `now` (Unix seconds).
    pub fn authenticate(&self, headers: &HeaderMap, query: Option<&str>, now: u64) -> Result<Arc<Grant>, Reason> {
        self.authenticate_noting(headers, query, now, &mut None)
    }

    /// [`Self::authenticate`], noting in `verified` when the token was
    /// verified on a cache miss (the span a trace shows).
    pub fn authenticate_noting(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        now: u64,
        verified: &mut Option<Verification>,
    ) -> Result<Arc<Grant>, Reason> {
        // Phase 3: credential.
        let token = match credential::extract(&self.credentials, headers, query) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(Reason::MissingToken),
            Err(CredentialError::Conflict) => return Err(Reason::ConflictingCredentials),
            Err(CredentialError::Malformed) => return Err(Reason::InvalidToken),
        };
        self.authenticate_token_noting(&token, now, verified)
    }

    /// The grant of a credential (a JWT or a reference token) at `now`:
    /// phases 4 and 5.
    pub fn authenticate_token(&self, token: &str, now: u64) -> Result<Arc<Grant>, Reason> {
        self.authenticate_token_noting(token, now, &mut None)
    }

    fn authenticate_token_noting(
        &self,
        token: &str,
        now: u64,
        verified: &mut Option<Verification>,
    ) -> Result<Arc<Grant>, Reason> {
        // Phase 4: verify. A reference token is looked up by hash in the
        // mirror; its expiry is checked here, as a JWT's is by the verifier.
        // Anything without the dots of a JWT is looked up as a reference
        // token too: `ngr_…` secrets and Crafter's access-token ids.
        if is_reference_form(token) {
            let grant = self.references.get(token).ok_or(Reason::InvalidToken)?;
            if grant.expires_at.is_some_and(|exp| now >= exp) {
                return Err(Reason::Expired);
            }
            if grant.not_before.is_some_and(|nbf| nbf > now) {
                return Err(Reason::NotYetValid);
            }
            if self.revocations.rejects(&grant) {
                return Err(Reason::Revoked);
            }
            if self.revocations.refuses() {
                return Err(Reason::RevocationsUnavailable);
            }
            return Ok(grant);
        }
        let grant = match self.cache.get(token, now) {
            Some(g) => {
                self.metrics.cache_hits.inc();
                g
            }
            None => {
                self.metrics.cache_misses.inc();
                let generation = self.cache.generation();
                let from = Instant::now();
                let checked = self.verifier.verify(token, now);
                *verified = Some(Verification {
                    from,
                    to: Instant::now(),
                    refused: checked.as_ref().err().map(|e| e.reason()),
                });
                match checked {
                    Ok(g) => {
                        let g = Arc::new(g);
                        self.cache.put_verified(token, g.clone(), now, generation);
                        g
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "token refused");
                        // An unknown key while an issuer's JWKS cannot be
                        // fetched: undecidable, not invalid.
                        if e == crate::token::VerifyError::UnknownKey && self.keys().degraded() {
                            return Err(Reason::KeysUnavailable);
                        }
                        return Err(e.reason());
                    }
                }
            }
        };
        // Phase 5: revocation, never cached.
        if self.revocations.rejects(&grant) {
            return Err(Reason::Revoked);
        }
        // A set that could not be confirmed for too long cannot say this
        // token is not revoked; the operator chose to refuse then (503).
        if self.revocations.refuses() {
            return Err(Reason::RevocationsUnavailable);
        }
        Ok(grant)
    }
}

/// A token verified on a cache miss: when, and what it was refused for.
#[derive(Clone, Copy, Debug)]
pub struct Verification {
    pub from: Instant,
    pub to: Instant,
    pub refused: Option<Reason>,
}

/// Whether a credential is looked up as a reference token rather than
/// verified as a JWT: `ngr_…` secrets, and anything without the dots of a
/// JWT (Crafter's access-token ids).
pub fn is_reference_form(token: &str) -> bool {
    crate::token::reference::is_reference(token) || !token.contains('.')
}

/// RFC 8705: a token bound to a client certificate (`cnf.x5t#S256`) is
/// honoured only from a connection that presented that certificate
/// (`presented`, its SHA-256 thumbprint); an unbound token from any.
pub fn check_binding(grant: &Grant, presented: Option<&[u8; 32]>) -> Result<(), Reason> {
    match &grant.bound_to {
        Some(bound) if presented != Some(bound) => Err(Reason::CertificateMismatch),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::token::testkit::{TestKey, payload};

    const CONFIG: &str = r#"
listeners: { proxy: "127.0.0.1:0" }
upstream: { addresses: ["127.0.0.1:3000"] }
issuers:
  - name: ng
    issuer: narrowgate
    algorithms: [ES256]
    keys: [{ kid: demo, algorithm: ES256, public_key_file: key.pem }]
applications: []
"#;

    fn authenticator(config: &Config, prev: Option<&Authenticator>) -> Authenticator {
        let metrics = Arc::new(Metrics::register(&prometheus::Registry::new()).expect("metrics"));
        Authenticator::compile(config, prev, Arc::default(), Arc::default(), metrics, Arc::default())
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, format!("Bearer {token}").parse().expect("header"));
        h
    }

    /// The key a token was verified with is withdrawn by a reload while a
    /// request is still being decided under the old snapshot: what that
    /// request verifies and caches must not be served under the new one.
    #[test]
    fn grants_verified_under_withdrawn_keys_never_outlive_the_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old_key, new_key) = (TestKey::es256("demo"), TestKey::es256("demo"));
        std::fs::write(dir.path().join("key.pem"), &old_key.public).expect("write");
        let old = Config::from_yaml(CONFIG, dir.path()).expect("config");
        let before = authenticator(&old, None);
        std::fs::write(dir.path().join("key.pem"), &new_key.public).expect("write");
        let new = Config::from_yaml(CONFIG, dir.path()).expect("config");
        assert_ne!(old.issuers_hash, new.issuers_hash, "a key file's content is part of the issuers");
        let after = authenticator(&new, Some(&before));

        let now = crate::token::now_unix();
        let token = old_key.sign(&payload("alice", now, 3600, serde_json::json!([])));
        // The old snapshot, still deciding: verified and cached.
        assert!(before.authenticate(&bearer(&token), None, now).is_ok());
        assert!(before.authenticate(&bearer(&token), None, now).is_ok(), "served from its cache");
        // The new snapshot: the old key is gone, cached or not.
        assert_eq!(after.authenticate(&bearer(&token), None, now).err(), Some(Reason::InvalidToken));
        let fresh = new_key.sign(&payload("bob", now, 3600, serde_json::json!([])));
        assert!(after.authenticate(&bearer(&fresh), None, now).is_ok());

        // Unchanged issuers: the ring and the cache carry over.
        let again = authenticator(&new, Some(&after));
        assert!(Arc::ptr_eq(again.keys(), after.keys()) && Arc::ptr_eq(&again.cache, &after.cache));
        // A lower token size limit: the same ring, a new cache.
        let mut smaller = Config::from_yaml(CONFIG, dir.path()).expect("config");
        smaller.max_token_bytes = 64;
        let limited = authenticator(&smaller, Some(&again));
        assert!(Arc::ptr_eq(limited.keys(), again.keys()) && !Arc::ptr_eq(&limited.cache, &again.cache));
        assert_eq!(limited.authenticate(&bearer(&fresh), None, now).err(), Some(Reason::TokenTooLarge));
    }
}
