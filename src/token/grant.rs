//! A grant: what a verified token resolves to. Everything after
//! verification works on grants only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use super::claims::WireRule;
use crate::policy::AccessRule;
use crate::policy::grant::role_values;
pub use crate::policy::grant::{FACADE_CLAIMS, Grant, IdentityValues};

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
