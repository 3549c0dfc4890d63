//! A grant: what a verified token resolves to. Everything after
//! verification works on grants only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::claims::{Role, TokenKind, WireRule};
use crate::policy::AccessRule;
use crate::policy::tenant::TenantPermission;

/// A verified token's identity and rules.
#[derive(Clone, Debug)]
pub struct Grant {
    pub token_id: Box<str>,
    pub subject: Box<str>,
    /// The `iss` of the token.
    pub issuer: Box<str>,
    /// The id of the key that verified it (`None` for reference tokens).
    pub kid: Option<Box<str>>,
    pub name: Option<Box<str>>,
    pub kind: TokenKind,
    pub role: Role,
    pub master: bool,
    /// Shared between grants with the same rules (see [`RuleSets`]).
    pub rules: Arc<[AccessRule]>,
    /// Crafter-style tenant permissions, if the token carries any.
    pub tenants: Vec<TenantPermission>,
    pub issued_at: Option<u64>,
    pub not_before: Option<u64>,
    /// `None` only for issuers that accept tokens without `exp`.
    pub expires_at: Option<u64>,
    /// Ancestor token ids, root first.
    pub lineage: Vec<Box<str>>,
    /// Identity header values, built once at verification so a cache hit
    /// injects them without allocating.
    pub headers: IdentityValues,
    /// Whether its issuer may confer management authority (admin, master):
    /// this gateway's own tokens, or an issuer configured `may_manage`.
    pub may_manage: bool,
    /// Claims a compatibility facade wrote for its clients (ProdManager's
    /// `description`, `permissions`, `version`), kept so the facade shows
    /// them without decoding the token a second time.
    pub extra: Vec<(&'static str, serde_json::Value)>,
}

/// The claims [`Grant::extra`] keeps.
pub const FACADE_CLAIMS: [&str; 3] = ["description", "permissions", "version"];

impl Grant {
    /// A facade claim, if the token carries it.
    pub fn extra(&self, name: &str) -> Option<&serde_json::Value> {
        self.extra.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Header values derived from the grant.
#[derive(Clone, Debug)]
pub struct IdentityValues {
    pub subject: HeaderValue,
    pub token_id: HeaderValue,
    /// Per rule: its roles, comma-separated (shared with the rules).
    pub rule_roles: Arc<[HeaderValue]>,
}

impl IdentityValues {
    /// `None` when a value cannot be a header (control characters): such a
    /// token is rejected rather than forwarded with a mangled identity.
    pub fn build(subject: &str, token_id: &str, rules: &[AccessRule]) -> Option<Self> {
        Self::with_roles(subject, token_id, role_values(rules)?)
    }

    /// The values, with the rules' role values made already.
    pub fn with_roles(subject: &str, token_id: &str, rule_roles: Arc<[HeaderValue]>) -> Option<Self> {
        Some(IdentityValues {
            subject: HeaderValue::from_str(subject).ok()?,
            token_id: HeaderValue::from_str(token_id).ok()?,
            rule_roles,
        })
    }
}

/// Per rule: its roles as one header value; `None` if one cannot be.
fn role_values(rules: &[AccessRule]) -> Option<Arc<[HeaderValue]>> {
    rules
        .iter()
        .map(|r| {
            let joined = r.roles.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",");
            HeaderValue::from_str(&joined).ok()
        })
        .collect()
}

/// A token's rules, compiled, with their role header values.
pub type RuleSet = (Arc<[AccessRule]>, Arc<[HeaderValue]>);

/// Compiled rule sets shared between grants: the tokens of one
/// application's users mostly carry the same rules (`$USER_ID$` stands for
/// each user's own resources), and the rules are most of a cached grant's
/// memory. Looked up on verification only (a cache miss), never on a hit.
/// Bounded: when it holds [`RuleSets::MAX`] sets it starts again (sets
/// already shared stay shared by the grants holding them).
#[derive(Debug, Default)]
pub struct RuleSets {
    sets: Mutex<HashMap<u64, Vec<RuleSet>>>,
    hasher: ahash::RandomState,
}

impl RuleSets {
    pub const MAX: usize = 4096;

    /// The shared set for `wire`, compiled and kept if new; `None` if a
    /// rule is malformed or a role cannot be a header value.
    pub fn intern(&self, wire: &[WireRule]) -> Option<RuleSet> {
        let rules: Arc<[AccessRule]> = wire.iter().map(WireRule::compile).collect::<Option<_>>()?;
        let hash = self.hasher.hash_one(wire);
        // A poisoned lock only held a cache: start it again.
        let mut sets = self.sets.lock().unwrap_or_else(|e| {
            let mut sets = e.into_inner();
            sets.clear();
            sets
        });
        if let Some(found) = sets.get(&hash).and_then(|same| same.iter().find(|(r, _)| **r == *rules)) {
            return Some(found.clone());
        }
        let set = (rules.clone(), role_values(&rules)?);
        if sets.len() >= Self::MAX {
            sets.clear();
        }
        sets.entry(hash).or_default().push(set.clone());
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(resource: &str) -> Vec<WireRule> {
        serde_json::from_value(serde_json::json!([crate::token::testkit::rule("app", &["reader"], &[resource])]))
            .expect("wire rules")
    }

    #[test]
    fn equal_rules_are_kept_once_and_different_ones_apart() {
        let sets = RuleSets::default();
        let (a, roles_a) = sets.intern(&wire("account:$USER_ID$:a1")).expect("rules");
        let (again, roles_again) = sets.intern(&wire("account:$USER_ID$:a1")).expect("rules");
        assert!(Arc::ptr_eq(&a, &again) && Arc::ptr_eq(&roles_a, &roles_again), "one copy for equal rules");
        let (other, _) = sets.intern(&wire("account:$USER_ID$:a2")).expect("rules");
        assert!(!Arc::ptr_eq(&a, &other));
        assert_ne!(*a, *other, "different rules stay different");
        assert_eq!(&*roles_a, &[HeaderValue::from_static("reader")]);
        assert!(sets.intern(&wire("not-a-resource")).is_none(), "a malformed rule is refused");
        for i in 0..RuleSets::MAX + 10 {
            sets.intern(&wire(&format!("account:$USER_ID$:n{i}"))).expect("rules");
        }
        assert!(sets.sets.lock().expect("lock").len() <= RuleSets::MAX, "bounded");
    }
}
