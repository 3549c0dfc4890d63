//! A grant: what a verified token resolves to. Everything after
//! verification works on grants only.

use http::HeaderValue;

use super::claims::{Role, TokenKind};
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
    pub rules: Vec<AccessRule>,
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
    /// Per rule: its roles, comma-separated.
    pub rule_roles: Vec<HeaderValue>,
}

impl IdentityValues {
    /// `None` when a value cannot be a header (control characters): such a
    /// token is rejected rather than forwarded with a mangled identity.
    pub fn build(subject: &str, token_id: &str, rules: &[AccessRule]) -> Option<Self> {
        let rule_roles = rules
            .iter()
            .map(|r| {
                let joined = r.roles.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",");
                HeaderValue::from_str(&joined).ok()
            })
            .collect::<Option<Vec<_>>>()?;
        Some(IdentityValues {
            subject: HeaderValue::from_str(subject).ok()?,
            token_id: HeaderValue::from_str(token_id).ok()?,
            rule_roles,
        })
    }
}
