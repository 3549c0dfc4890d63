//! What the request path reads instead of the store: the revoked ids and
//! the live reference tokens, kept current by the store (its writes, its
//! notifications, a periodic full resync) and, on an enforce-only gateway,
//! by an issuer's revocation feed.

mod references;

use std::sync::Arc;

pub use crate::revocation::{EXPIRY_GRACE, FeedRefusal, Held, Revocations, SetFull, Staleness};
pub use references::{ReferenceTokens, grant_of};

use super::StoreError;
use super::sql::SqlCore;
use crate::time::UnixTime;

/// What the request path reads instead of the store: revoked ids, and the
/// live reference tokens by hash.
#[derive(Debug)]
pub struct Mirror {
    pub revocations: Arc<Revocations>,
    pub references: Arc<ReferenceTokens>,
    /// This gateway's own `iss`: the one its reference tokens' grants
    /// carry.
    pub issuer: String,
}

impl Mirror {
    pub fn new(revocations: Arc<Revocations>) -> Self {
        Mirror { revocations, references: Default::default(), issuer: "narrowgate".into() }
    }

    /// The id a revocation of `issuer`'s `jti` is held by: this gateway's
    /// own issuer's by the bare jti (its tokens' ids, which its children
    /// name in their lineage), any other's as `iss#jti`, so that another
    /// issuer's equal jti is not revoked with it.
    pub fn held_id<'a>(&self, issuer: &str, jti: &'a str) -> std::borrow::Cow<'a, str> {
        if self.is_own(issuer) { jti.into() } else { crate::token::revocation_id(issuer, jti).into() }
    }

    /// Whether `issuer` is this gateway's own.
    pub fn is_own(&self, issuer: &str) -> bool {
        self.issuer == issuer
    }

    /// A revocation as the store announces and lists it (`iss#jti` for a
    /// jti, else a token id), as [`Mirror::held_id`] holds it.
    pub(crate) fn held<'a>(&self, announced: &'a str) -> std::borrow::Cow<'a, str> {
        // No issuer holds a `#` (config refuses it): the first one splits.
        match announced.split_once('#') {
            Some((issuer, jti)) => self.held_id(issuer, jti),
            None => announced.into(),
        }
    }

    /// The mirror of a gateway run on `config`: its reference tokens carry
    /// the config's issuer.
    pub fn of(config: &crate::config::Config, revocations: Arc<Revocations>) -> Self {
        let issuer = config.signing.as_ref().map_or_else(|| "narrowgate".to_string(), |s| s.issuer.clone());
        Mirror { revocations, references: Default::default(), issuer }
    }
}

/// Bring the mirror in line with the store: every revocation (the set only
/// grows) and every live reference token.
pub(crate) async fn resync(store: &SqlCore, mirror: &Mirror) -> Result<usize, StoreError> {
    // Expired ids are left out by the set's own clock, the one it sweeps by.
    let now = UnixTime::clamped(mirror.revocations.now_ms() / 1000);
    let ids = store.revoked_ids(now).await?;
    for (id, expires_at) in &ids {
        mirror.revocations.revoke(&mirror.held(id), *expires_at);
    }
    let snapshot = mirror.references.begin_snapshot();
    let references = store.reference_tokens().await?;
    // A token revoked between the two reads carries its own revocation.
    for r in references.iter().filter(|r| r.revoked_at.is_some()) {
        mirror.revocations.revoke(&r.id, r.expires_at);
    }
    mirror.references.replace_all(&references, &mirror.issuer, snapshot);
    Ok(ids.len() + references.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jti_is_held_bare_as_this_gateways_own_and_qualified_as_anothers() {
        let mirror = Mirror::new(Arc::default());
        assert_eq!(mirror.held_id("narrowgate", "j1"), "j1");
        assert_eq!(mirror.held_id("https://idp.example", "j1"), "https://idp.example#j1");
        // As the store lists and announces them: split at the first `#`
        // (a jti may hold one; an issuer may not).
        assert_eq!(mirror.held("narrowgate#j#1"), "j#1");
        assert_eq!(mirror.held("https://idp.example#j#1"), "https://idp.example#j#1");
        assert_eq!(mirror.held("t1"), "t1");
    }
}
