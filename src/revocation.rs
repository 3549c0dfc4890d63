//! The in-memory set of revoked token ids, checked on every request for the
//! token and each of its ancestors (never cached with the grant).
//!
//! The token service and the store (see DESIGN.md §5) keep it current; the
//! request path only reads it, without waiting on any store.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashSet;

use crate::token::Grant;

#[derive(Debug, Default)]
pub struct Revocations {
    ids: DashSet<Box<str>>,
    /// Lets the common case (nothing revoked) skip the set entirely.
    len: AtomicUsize,
}

impl Revocations {
    pub fn revoke(&self, token_id: &str) {
        if self.ids.insert(token_id.into()) {
            self.len.fetch_add(1, Ordering::Release);
        }
    }

    pub fn is_revoked(&self, token_id: &str) -> bool {
        self.len.load(Ordering::Acquire) != 0 && self.ids.contains(token_id)
    }

    /// Whether the grant or any ancestor has been revoked.
    pub fn rejects(&self, grant: &Grant) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.ids.contains(&*grant.token_id) || grant.lineage.iter().any(|id| self.ids.contains(&**id))
    }
}
