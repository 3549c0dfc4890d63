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
    /// The `iss` reference tokens' grants carry.
    pub issuer: String,
}

impl Mirror {
    pub fn new(revocations: Arc<Revocations>) -> Self {
        Mirror { revocations, references: Default::default(), issuer: "narrowgate".into() }
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
        mirror.revocations.revoke(id, *expires_at);
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
