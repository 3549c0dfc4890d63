//! Authentication, shared by the proxy and the token service: the
//! credential from the configured sources, verified into a grant through the
//! cache, then checked against the revocation mirror (request phases 3–5).
//! Synchronous and free of I/O.

pub mod credential;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::CredentialSource;
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::revocation::Revocations;
use crate::token::{Grant, GrantCache, Verifier};
use credential::CredentialError;

/// Credential → grant, or the reason there is none.
pub struct Authenticator {
    credentials: Vec<CredentialSource>,
    verifier: Verifier,
    cache: GrantCache,
    revocations: Arc<Revocations>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("credentials", &self.credentials).finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(
        credentials: Vec<CredentialSource>,
        verifier: Verifier,
        cache: GrantCache,
        revocations: Arc<Revocations>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Authenticator { credentials, verifier, cache, revocations, metrics }
    }

    pub fn credentials(&self) -> &[CredentialSource] {
        &self.credentials
    }

    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// The grant of the request's credential at `now` (Unix seconds).
    pub fn authenticate(&self, headers: &HeaderMap, query: Option<&str>, now: u64) -> Result<Arc<Grant>, Reason> {
        // Phase 3: credential.
        let token = match credential::extract(&self.credentials, headers, query) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(Reason::MissingToken),
            Err(CredentialError::Conflict) => return Err(Reason::ConflictingCredentials),
            Err(CredentialError::Malformed) => return Err(Reason::InvalidToken),
        };
        // Phase 4: verify, through the cache.
        let grant = match self.cache.get(&token, now) {
            Some(g) => {
                self.metrics.cache_hits.inc();
                g
            }
            None => {
                self.metrics.cache_misses.inc();
                match self.verifier.verify(&token, now) {
                    Ok(g) => {
                        let g = Arc::new(g);
                        self.cache.put(&token, g.clone(), now);
                        g
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "token refused");
                        return Err(e.reason());
                    }
                }
            }
        };
        // Phase 5: revocation, never cached.
        if self.revocations.rejects(&grant) {
            return Err(Reason::Revoked);
        }
        Ok(grant)
    }
}
