//! The claims of narrowgate tokens, as they travel in a JWT payload.
//!
//! `accessRules` is MetaApi's detailed shape, except that resources are
//! strings `entity:owner:id`, so MetaApi's client-side
//! `are_token_resources_narrowed_down` works on narrowgate tokens.
//! `lineage` lists the ids of the token's ancestors, root first, so that
//! revoking any ancestor rejects the token.

use crate::policy::tenant::TenantPermission;
use serde::{Deserialize, Serialize};

use crate::policy::{AccessRule, MethodGroupRule, MethodRule, Pattern, ResourceRule};

pub use crate::policy::grant::{Role, TokenKind};

/// The payload of a narrowgate JWT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub iat: u64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub kind: TokenKind,
    pub role: Role,
    pub master: bool,
    #[serde(rename = "accessRules")]
    pub access_rules: Vec<WireRule>,
    #[serde(default, rename = "tenantPermissions", skip_serializing_if = "Vec::is_empty")]
    pub tenant_permissions: Vec<TenantPermission>,
    #[serde(default)]
    pub lineage: Vec<String>,
    /// The client certificate the token is bound to (RFC 8705), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// Claims a compatibility facade adds for its clients (ProdManager's
    /// `permissions`, say); verification ignores them.
    #[serde(flatten, default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// RFC 7800's confirmation claim, as RFC 8705 binds a token to a client
/// certificate: the SHA-256 thumbprint of its DER, base64url. Nothing else
/// is understood, and a token confirmed by anything else is refused (a
/// binding the gateway cannot check must not be ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256")]
    pub x5t_s256: String,
}

impl Confirmation {
    /// The binding to the certificate of `thumbprint`.
    pub fn of(thumbprint: &[u8; 32]) -> Self {
        Confirmation { x5t_s256: crate::tls::encode_thumbprint(thumbprint) }
    }

    /// The thumbprint; `None` if it is not a SHA-256 in base64url.
    pub fn thumbprint(&self) -> Option<[u8; 32]> {
        crate::tls::decode_thumbprint(&self.x5t_s256)
    }
}

/// What a store record says a token grants (its `grants` column): the rules
/// as a JSON array, or, with tenant permissions or a certificate binding
/// (`cnf`, which narrowing and reference tokens keep), an object holding
/// them.
pub fn encode_grants(rules: &[WireRule], tenants: &[TenantPermission], bound_to: Option<&[u8; 32]>) -> String {
    let v = if tenants.is_empty() && bound_to.is_none() {
        serde_json::to_string(rules)
    } else {
        let mut v = serde_json::json!({ "accessRules": rules, "tenantPermissions": tenants });
        if let Some(t) = bound_to {
            v["cnf"] = serde_json::json!(Confirmation::of(t));
        }
        serde_json::to_string(&v)
    };
    // Plain data always serializes; an empty grant if it somehow did not.
    v.unwrap_or_else(|_| "[]".into())
}

/// A stored certificate binding that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the stored certificate binding cannot be read")]
pub struct UnreadableBinding;

/// The certificate binding a store record's grants carry: `Ok(None)`
/// when there is none, `Err` when there is one that cannot be read (such
/// a token grants nothing).
pub fn stored_binding(stored: &str) -> Result<Option<[u8; 32]>, UnreadableBinding> {
    if !stored.starts_with('{') {
        return Ok(None);
    }
    #[derive(Deserialize)]
    struct Bound {
        #[serde(default)]
        cnf: Option<Confirmation>,
    }
    match serde_json::from_str::<Bound>(stored).map_err(|_| UnreadableBinding)?.cnf {
        None => Ok(None),
        Some(c) => c.thumbprint().map(Some).ok_or(UnreadableBinding),
    }
}

/// The reverse of [`encode_grants`] (the binding aside: see
/// [`stored_binding`]); `None` for anything else.
pub fn decode_grants(stored: &str) -> Option<(Vec<WireRule>, Vec<TenantPermission>)> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Rules(Vec<WireRule>),
        Both {
            #[serde(rename = "accessRules", default)]
            access_rules: Vec<WireRule>,
            #[serde(rename = "tenantPermissions", default)]
            tenant_permissions: Vec<TenantPermission>,
        },
    }
    match serde_json::from_str(stored).ok()? {
        Stored::Rules(r) => Some((r, Vec::new())),
        Stored::Both { access_rules, tenant_permissions } => Some((access_rules, tenant_permissions)),
    }
}

/// An access rule in the payload.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WireRule {
    #[serde(default)]
    pub id: String,
    pub application: String,
    pub service: String,
    pub method_groups: Vec<WireMethodGroup>,
    pub roles: Vec<String>,
    /// `entity:owner:id` strings.
    pub resources: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireMethodGroup {
    pub group: String,
    pub methods: Vec<WireMethod>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WireMethod {
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl WireRule {
    /// Compile into an [`AccessRule`]; `None` if a resource string is
    /// malformed (the token is then rejected, never partly honoured).
    pub fn compile(&self) -> Option<AccessRule> {
        let resources = self.resources.iter().map(|r| ResourceRule::parse(r)).collect::<Option<Vec<_>>>()?;
        let nonempty = |s: &str| !s.is_empty();
        if !nonempty(&self.application) || !nonempty(&self.service) {
            return None;
        }
        Some(AccessRule {
            id: self.id.as_str().into(),
            application: Pattern::parse(&self.application),
            service: Pattern::parse(&self.service),
            method_groups: self
                .method_groups
                .iter()
                .map(|g| MethodGroupRule {
                    group: Pattern::parse(&g.group),
                    methods: g
                        .methods
                        .iter()
                        .map(|m| MethodRule {
                            method: Pattern::parse(&m.method),
                            scopes: m.scopes.as_ref().map(|s| s.iter().map(|x| Pattern::parse(x)).collect()),
                        })
                        .collect(),
                })
                .collect(),
            roles: self.roles.iter().map(|r| Pattern::parse(r)).collect(),
            resources,
        })
    }

    /// The wire form of a compiled rule.
    pub fn from_rule(rule: &AccessRule) -> WireRule {
        WireRule {
            id: rule.id.to_string(),
            application: rule.application.as_str().to_string(),
            service: rule.service.as_str().to_string(),
            method_groups: rule
                .method_groups
                .iter()
                .map(|g| WireMethodGroup {
                    group: g.group.as_str().to_string(),
                    methods: g
                        .methods
                        .iter()
                        .map(|m| WireMethod {
                            method: m.method.as_str().to_string(),
                            scopes: m.scopes.as_ref().map(|s| s.iter().map(|p| p.as_str().to_string()).collect()),
                        })
                        .collect(),
                })
                .collect(),
            roles: rule.roles.iter().map(|r| r.as_str().to_string()).collect(),
            resources: rule.resources.iter().map(|r| r.to_wire()).collect(),
        }
    }
}

/// Whether a token's reach is narrowed down: MetaApi's client-side check
/// on the access rules (`some resource does not match ^\*:\S*:\*$`), and
/// no tenant permission for every tenant (a token that may act on any
/// tenant is not narrowed, whatever its resources say).
pub fn are_resources_narrowed_down(rules: &[WireRule], tenants: &[TenantPermission]) -> bool {
    let resources = rules.iter().flat_map(|r| r.resources.iter()).any(|res| {
        let wide = res.len() >= 4
            && res.starts_with("*:")
            && res.ends_with(":*")
            && !res[2..res.len() - 2].chars().any(char::is_whitespace);
        !wide
    });
    resources && !tenants.iter().any(|t| t.tenant == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrowed_down_check_matches_metaapi() {
        let rule = |res: &[&str]| WireRule {
            id: "x".into(),
            application: "*".into(),
            service: "*".into(),
            method_groups: vec![],
            roles: vec![],
            resources: res.iter().map(|s| s.to_string()).collect(),
        };
        assert!(!are_resources_narrowed_down(&[rule(&["*:$USER_ID$:*"])], &[]));
        assert!(!are_resources_narrowed_down(&[rule(&["*::*"])], &[]));
        assert!(are_resources_narrowed_down(&[rule(&["account:$USER_ID$:a1"])], &[]));
        assert!(are_resources_narrowed_down(&[rule(&["*:$USER_ID$:*"]), rule(&["account:$USER_ID$:*"])], &[]));
        assert!(are_resources_narrowed_down(&[rule(&["*:a b:*"])], &[]));
        // One account, but any tenant: not narrowed down.
        let any_tenant = TenantPermission { tenant: "*".into(), allowed_actions: vec!["MANAGE_PROFILES".into()] };
        assert!(!are_resources_narrowed_down(&[rule(&["account:$USER_ID$:a1"])], &[any_tenant]));
        let one_tenant = TenantPermission { tenant: "acme".into(), allowed_actions: vec!["*".into()] };
        assert!(are_resources_narrowed_down(&[rule(&["account:$USER_ID$:a1"])], &[one_tenant]));
    }

    #[test]
    fn rules_round_trip_through_the_wire_form() {
        let rule = AccessRule::everything();
        let wire = WireRule::from_rule(&rule);
        assert_eq!(wire.compile(), Some(rule));
    }
}
