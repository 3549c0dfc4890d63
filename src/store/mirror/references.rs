//! The live reference tokens, by the hash of their secret: what the proxy
//! reads instead of the store (the secret's format is `token::reference`'s).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;

use crate::store::TokenRecord;
use crate::token::claims::WireRule;
use crate::token::grant::{Grant, IdentityValues};
use crate::token::reference::hash;

use crate::time::UnixTime;

/// The grant a stored reference token stands for; `None` if its record
/// cannot be read (such a token is refused, never half-honoured).
pub fn grant_of(record: &TokenRecord, issuer: &str) -> Option<Grant> {
    let (wire, tenants) = crate::token::claims::decode_grants(&record.grants)?;
    let rules: std::sync::Arc<[_]> = wire.iter().map(WireRule::compile).collect::<Option<_>>()?;
    let headers = IdentityValues::build(&record.subject, &record.id, &rules)?;
    let bound_to = crate::token::claims::stored_binding(&record.grants).ok()?;
    Some(Grant {
        token_id: record.id.as_str().into(),
        subject: record.subject.as_str().into(),
        issuer: issuer.into(),
        kid: None,
        name: record.name.as_deref().map(Into::into),
        kind: record.kind,
        role: record.role,
        master: record.master,
        rules,
        tenants,
        issued_at: Some(record.created_at.secs()),
        not_before: record.not_before.map(UnixTime::secs),
        expires_at: record.expires_at.map(UnixTime::secs),
        lineage: record.lineage.iter().map(|l| l.as_str().into()).collect(),
        bound_to,
        headers,
        // This gateway's own store: its tokens' roles are its to give.
        may_manage: true,
        minted_here: true,
        extra: Vec::new(),
        unmapped: Vec::new(),
    })
}

/// Hash → grant for every live reference token.
///
/// Entries carry the generation they were added in, so a full resync that
/// read the store before a token was created (here, or heard of by NOTIFY)
/// cannot drop it when it applies its older snapshot.
#[derive(Debug, Default)]
pub struct ReferenceTokens {
    by_hash: DashMap<[u8; 32], (Arc<Grant>, u64)>,
    generation: AtomicU64,
}

impl ReferenceTokens {
    pub fn insert(&self, hash: [u8; 32], grant: Grant) {
        let generation = self.generation.load(Ordering::Acquire);
        self.by_hash.insert(hash, (Arc::new(grant), generation));
    }

    pub fn get(&self, secret: &str) -> Option<Arc<Grant>> {
        self.by_hash.get(&hash(secret)).map(|g| g.0.clone())
    }

    /// Call before reading the store for [`ReferenceTokens::replace_all`]:
    /// what is added from now on survives that snapshot.
    pub fn begin_snapshot(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Bring the mirror in line with the store's live reference tokens:
    /// add and update first, then drop what is gone, so a token that stays
    /// is never missing in between.
    /// `snapshot` is what [`ReferenceTokens::begin_snapshot`] returned
    /// before `records` were read; entries added since are kept.
    pub fn replace_all(&self, records: &[TokenRecord], issuer: &str, snapshot: u64) {
        let mut live = HashSet::with_capacity(records.len());
        for r in records {
            if let Some(h) = self.add(r, issuer) {
                live.insert(h);
            }
        }
        self.by_hash.retain(|h, (_, generation)| live.contains(h) || *generation >= snapshot);
    }

    /// Mirror one reference-token record; its hash if it could. A revoked
    /// record is mirrored too: the caller puts its id in the revocations
    /// first, so it is refused as revoked.
    pub fn add(&self, r: &TokenRecord, issuer: &str) -> Option<[u8; 32]> {
        let h = r.secret_hash.as_deref().and_then(|h| <[u8; 32]>::try_from(h).ok())?;
        match grant_of(r, issuer) {
            Some(g) => {
                self.insert(h, g);
                Some(h)
            }
            None => {
                tracing::warn!(token.jti = %r.id, "unreadable reference token record; refusing it");
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenForm;
    use crate::token::{Role, TokenKind};

    fn record(id: &str, secret: &str) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            name: None,
            description: String::new(),
            kind: TokenKind::Access,
            role: Role::User,
            master: false,
            application: None,
            subject: "s".into(),
            grants: "[]".into(),
            form: TokenForm::Reference,
            secret_hash: Some(hash(secret).to_vec()),
            not_before: None,
            expires_at: None,
            parent_id: None,
            lineage: vec![],
            created_by: None,
            created_at: UnixTime::EPOCH,
            revoked_at: None,
            external_id: None,
        }
    }

    #[test]
    fn a_resync_keeps_tokens_added_after_its_snapshot_and_drops_vanished_ones() {
        let mirror = ReferenceTokens::default();
        let (old, gone, fresh) = (record("old", "ngr_old"), record("gone", "ngr_gone"), record("fresh", "ngr_fresh"));
        for r in [&old, &gone] {
            mirror.add(r, "narrowgate");
        }
        // The resync reads the store (which holds only `old`)...
        let snapshot = mirror.begin_snapshot();
        // ...while a token is created and mirrored...
        mirror.add(&fresh, "narrowgate");
        // ...and applies its snapshot afterwards.
        mirror.replace_all(&[old], "narrowgate", snapshot);
        assert!(mirror.get("ngr_old").is_some());
        assert!(mirror.get("ngr_fresh").is_some(), "created after the snapshot: kept");
        assert!(mirror.get("ngr_gone").is_none(), "gone from the store before the snapshot: dropped");
        // The next resync, whose snapshot includes it, keeps it as live.
        let snapshot = mirror.begin_snapshot();
        mirror.replace_all(&[fresh], "narrowgate", snapshot);
        assert!(mirror.get("ngr_fresh").is_some() && mirror.get("ngr_old").is_none());
    }
}
