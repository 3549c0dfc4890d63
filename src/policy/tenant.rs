//! Crafter Profile's tenant permissions: per tenant (or `*`), the actions a
//! token may take. For a tenant, the *first* entry whose `tenant` is `*` or
//! the tenant's name decides — entries are not merged — so
//! `[{tenant: "a", allowedActions: [READ_TENANT]}, {tenant: "*", allowedActions: ["*"]}]`
//! reads tenant `a` only, and everything else fully.

use serde::{Deserialize, Serialize};

/// The actions Crafter Profile knows.
pub const ACTIONS: [&str; 6] =
    ["CREATE_TENANT", "READ_TENANT", "UPDATE_TENANT", "DELETE_TENANT", "MANAGE_PROFILES", "MANAGE_TICKETS"];

/// One entry of a token's tenant permissions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantPermission {
    /// A tenant name, or `*` for every tenant.
    pub tenant: String,
    /// Actions from [`ACTIONS`], or `*` for all of them.
    pub allowed_actions: Vec<String>,
}

/// Why a tenant-permission list is refused: the offending entry's place
/// and fixed text (never what the client sent).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {what}")]
pub struct TenantError {
    pub path: String,
    pub what: &'static str,
}

/// Check a list as a client sent it; the error names the offending entry.
pub fn validate(perms: &[TenantPermission]) -> Result<(), TenantError> {
    for (i, p) in perms.iter().enumerate() {
        if p.tenant.is_empty() {
            return Err(TenantError { path: format!("tenantPermissions[{i}].tenant"), what: "must not be empty" });
        }
        for (j, a) in p.allowed_actions.iter().enumerate() {
            if a != "*" && !ACTIONS.contains(&a.as_str()) {
                return Err(TenantError {
                    path: format!("tenantPermissions[{i}].allowedActions[{j}]"),
                    what: "not * or one of CREATE_TENANT, READ_TENANT, UPDATE_TENANT, DELETE_TENANT, MANAGE_PROFILES, MANAGE_TICKETS",
                });
            }
        }
    }
    Ok(())
}

/// The entry that decides for `tenant`: the first naming it or `*`.
pub fn deciding(perms: &[TenantPermission], tenant: &str) -> Option<usize> {
    perms.iter().position(|p| p.tenant == "*" || p.tenant == tenant)
}

/// Whether `perms` let a token take `action` on `tenant`.
pub fn allows(perms: &[TenantPermission], tenant: &str, action: &str) -> bool {
    deciding(perms, tenant).is_some_and(|i| perms[i].allowed_actions.iter().any(|a| a == "*" || a == action))
}

/// Whether `child` allows nothing `parent` does not: for every tenant and
/// action, the child's deciding entry allows it only if the parent's does.
/// Checked over every tenant either list names plus one neither names; the
/// error names the child's entry that allows too much.
pub fn within(child: &[TenantPermission], parent: &[TenantPermission]) -> Result<(), TenantError> {
    let unnamed = "\u{0}any-other-tenant";
    let tenants = child.iter().chain(parent).map(|p| p.tenant.as_str()).filter(|t| *t != "*").chain([unnamed]);
    for tenant in tenants {
        for action in ACTIONS {
            if allows(child, tenant, action) && !allows(parent, tenant, action) {
                let i = child.iter().position(|p| p.tenant == "*" || p.tenant == tenant).unwrap_or(0);
                return Err(TenantError {
                    path: format!("tenantPermissions[{i}]"),
                    what: "allows an action on a tenant that the granting token does not",
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(tenant: &str, actions: &[&str]) -> TenantPermission {
        TenantPermission { tenant: tenant.into(), allowed_actions: actions.iter().map(|a| a.to_string()).collect() }
    }

    #[test]
    fn the_first_matching_entry_decides() {
        let perms = [perm("a", &["READ_TENANT"]), perm("*", &["*"]), perm("a", &["MANAGE_PROFILES"])];
        assert!(allows(&perms, "a", "READ_TENANT"));
        assert!(!allows(&perms, "a", "MANAGE_PROFILES"), "not a union with later entries");
        assert!(allows(&perms, "b", "DELETE_TENANT"));
        let star_first = [perm("*", &["READ_TENANT"]), perm("a", &["*"])];
        assert!(!allows(&star_first, "a", "MANAGE_PROFILES"), "`*` first decides for every tenant");
        assert!(!allows(&[], "a", "READ_TENANT"));
    }

    #[test]
    fn unknown_actions_and_empty_tenants_are_named() {
        assert!(validate(&[perm("*", &["*"]), perm("t", &["MANAGE_TICKETS"])]).is_ok());
        let e = validate(&[perm("t", &["READ_TENANT", "FLY"])]).expect_err("unknown action");
        assert_eq!(e.path, "tenantPermissions[0].allowedActions[1]");
        assert!(!e.to_string().contains("FLY"), "the client's value is not repeated: {e}");
        assert!(validate(&[perm("", &["*"])]).is_err());
    }

    #[test]
    fn a_child_within_its_parent() {
        let parent = [perm("a", &["READ_TENANT"]), perm("*", &["READ_TENANT", "MANAGE_PROFILES"])];
        assert!(within(&[perm("b", &["MANAGE_PROFILES"])], &parent).is_ok());
        assert!(within(&[perm("*", &["READ_TENANT"])], &parent).is_ok());
        let e =
            within(&[perm("b", &["READ_TENANT"]), perm("a", &["MANAGE_PROFILES"])], &parent).expect_err("a reads only");
        assert_eq!(e.path, "tenantPermissions[1]", "names the entry that allows too much");
        assert!(within(&[perm("*", &["MANAGE_PROFILES"])], &parent).is_err(), "covers tenant a too");
        assert!(within(&[perm("c", &["DELETE_TENANT"])], &parent).is_err());
    }
}
