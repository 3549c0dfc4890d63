//! A grant: what a verified token resolves to — its identity, its kind and
//! role, and its access rules. Everything after verification works on
//! grants only; `token` verifies claims into one.

use std::sync::Arc;

use http::HeaderValue;
use serde::{Deserialize, Serialize};

use super::AccessRule;
use super::tenant::TenantPermission;

/// What a token is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An access token minted by an admin (or bootstrap, or redemption).
    #[default]
    Access,
    /// A child narrowed from another token.
    Narrowed,
    /// A single-use registration token.
    Registration,
}

/// What the holder may do to other tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    #[default]
    User,
    Admin,
}

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
    /// Shared between grants with the same rules (`token::grant::RuleSets`).
    pub rules: Arc<[AccessRule]>,
    /// Crafter-style tenant permissions, if the token carries any.
    pub tenants: Vec<TenantPermission>,
    pub issued_at: Option<u64>,
    pub not_before: Option<u64>,
    /// `None` only for issuers that accept tokens without `exp`.
    pub expires_at: Option<u64>,
    /// Ancestor token ids, root first.
    pub lineage: Vec<Box<str>>,
    /// The SHA-256 thumbprint of the client certificate the token is bound
    /// to (RFC 8705 `cnf.x5t#S256`): honoured only on a connection that
    /// presented that certificate.
    pub bound_to: Option<[u8; 32]>,
    /// Identity header values, built once at verification so a cache hit
    /// injects them without allocating.
    pub headers: IdentityValues,
    /// Whether its issuer may confer management authority (admin, master):
    /// this gateway's own tokens, or an issuer configured `may_manage`.
    pub may_manage: bool,
    /// Whether its issuer is this gateway's own (one whose signing keys it
    /// holds). A lineage names such a token by its id, and any other by
    /// its issuer and id ([`Grant::lineage_id`]).
    pub minted_here: bool,
    /// Claims a compatibility facade wrote for its clients (ProdManager's
    /// `description`, `permissions`, `version`), kept so the facade shows
    /// them without decoding the token a second time.
    pub extra: Vec<(&'static str, serde_json::Value)>,
    /// Its issuer's claim-mapping rules that granted it nothing, and why
    /// (for explain); the ones that did are among `rules`, by their ids.
    pub unmapped: Vec<(Box<str>, Box<str>)>,
}

/// The claims [`Grant::extra`] keeps.
pub const FACADE_CLAIMS: [&str; 3] = ["description", "permissions", "version"];

impl Grant {
    /// How the lineage of a token minted, narrowed or exchanged from this
    /// one names it: its id if this gateway minted it, else `iss#jti`, so
    /// that another issuer's `jti` never stands for a token of this one
    /// (or of a third). Revoking a bare `jti` still reaches `iss#jti`
    /// entries (`RevocationSet::is_revoked`); an issuer holds no `#`.
    pub fn lineage_id(&self) -> std::borrow::Cow<'_, str> {
        if self.minted_here {
            std::borrow::Cow::Borrowed(&self.token_id)
        } else {
            std::borrow::Cow::Owned(format!("{}#{}", self.issuer, self.token_id))
        }
    }

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
pub fn role_values(rules: &[AccessRule]) -> Option<Arc<[HeaderValue]>> {
    rules
        .iter()
        .map(|r| {
            let joined = r.roles.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(",");
            HeaderValue::from_str(&joined).ok()
        })
        .collect()
}
