//! The allow/deny matrix over the demo manifest, shared by the tests that
//! run it: the live gateway (`tests/proxy_matrix.rs`) and offline explain
//! against the same config (`tests/explain.rs`). One table, so the two can
//! never drift apart.

use serde_json::{Value, json};

use super::{Harness, web_rules};
use narrowgate::token::testkit::rule;

fn admin_rules() -> Value {
    json!([rule("*", &["*"], &["*:$USER_ID$:*"])])
}

fn dealer_rules() -> Value {
    json!([{
        "id": "mt", "application": "mt-manager-api", "service": "rest",
        "methodGroups": [{ "group": "mt-manager", "methods": [{ "method": "trade", "scopes": ["dealing", "public"] }] }],
        "roles": ["writer"], "resources": ["account:$USER_ID$:*"]
    }])
}

fn stats_rules() -> Value {
    json!([rule("metastats-api", &["reader"], &["*:$USER_ID$:*"])])
}

/// The matrix's tokens by holder, signed with the harness's trusted key.
pub fn tokens(h: &Harness) -> Vec<(&'static str, String)> {
    vec![
        ("admin", h.token("admin", admin_rules())),
        ("web", h.token("web", web_rules())),
        ("dealer", h.token("dealer", dealer_rules())),
        ("stats", h.token("stats", stats_rules())),
    ]
}

/// Where a request carries its credential (config/demo.yaml reads all
/// three).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer …`
    Bearer,
    /// A header holding the token alone (MetaApi's `auth-token`).
    Header(&'static str),
    /// A query parameter, spelled as given (Crafter's `accessTokenId`).
    Query(&'static str),
}

pub const BEARER: Via = Via::Bearer;
pub const AUTH_TOKEN: Via = Via::Header("auth-token");
pub const QUERY: Via = Via::Query("accessTokenId");
/// The same parameter with a percent-encoded key, which an upstream that
/// decodes keys reads as `accessTokenId`: the gateway reads it too.
pub const QUERY_ENCODED: Via = Via::Query("%61ccessTokenId");

pub struct Case {
    pub name: &'static str,
    pub method: &'static str,
    /// The target without the credential (what the upstream must get).
    pub target: &'static str,
    /// Whose token, and where it goes.
    pub token: Option<(&'static str, Via)>,
    pub status: u16,
    /// Reason code for a denial; for an allow, the application header.
    pub reason: &'static str,
    pub missing_scopes: &'static [&'static str],
    pub missing_roles: &'static [&'static str],
    /// Roles header the upstream should get on an allow.
    pub roles: &'static str,
}

impl Case {
    /// The token of this case's holder, if it has one.
    pub fn token<'t>(&self, tokens: &'t [(&'static str, String)]) -> Option<&'t str> {
        let (who, _) = self.token?;
        tokens.iter().find(|(n, _)| *n == who).map(|(_, t)| t.as_str())
    }

    /// The request as sent: its target (with a query credential) and the
    /// headers carrying the credential.
    pub fn request(&self, tokens: &[(&'static str, String)]) -> (String, Vec<(&'static str, String)>) {
        match (self.token, self.token(tokens)) {
            (Some((_, Via::Bearer)), Some(t)) => {
                (self.target.to_string(), vec![("authorization", format!("Bearer {t}"))])
            }
            (Some((_, Via::Header(h))), Some(t)) => (self.target.to_string(), vec![(h, t.to_string())]),
            (Some((_, Via::Query(q))), Some(t)) => {
                let sep = if self.target.contains('?') { '&' } else { '?' };
                (format!("{}{sep}{q}={t}", self.target), vec![])
            }
            _ => (self.target.to_string(), vec![]),
        }
    }
}

const fn allow(
    name: &'static str,
    method: &'static str,
    target: &'static str,
    token: Option<(&'static str, Via)>,
    app: &'static str,
    roles: &'static str,
) -> Case {
    Case { name, method, target, token, status: 200, reason: app, missing_scopes: &[], missing_roles: &[], roles }
}

const fn deny(
    name: &'static str,
    method: &'static str,
    target: &'static str,
    token: Option<(&'static str, Via)>,
    status: u16,
    reason: &'static str,
) -> Case {
    Case { name, method, target, token, status, reason, missing_scopes: &[], missing_roles: &[], roles: "" }
}

const TAMA: &str = "trading-account-management-api";

/// Every case of the matrix.
pub fn cases() -> Vec<Case> {
    vec![
        allow("public route needs no token", "GET", "/health", None, "", ""),
        allow("admin lists accounts", "GET", "/users/current/accounts", Some(("admin", BEARER)), TAMA, "*"),
        allow("web reads its account", "GET", "/users/current/accounts/a1", Some(("web", BEARER)), TAMA, "reader"),
        allow(
            "web via auth-token header",
            "GET",
            "/users/current/accounts/a1",
            Some(("web", AUTH_TOKEN)),
            TAMA,
            "reader",
        ),
        allow(
            "web via the accessTokenId query parameter",
            "GET",
            "/users/current/accounts/a1?view=full",
            Some(("web", QUERY)),
            TAMA,
            "reader",
        ),
        allow(
            "web via a percent-encoded query key",
            "GET",
            "/users/current/accounts/a1",
            Some(("web", QUERY_ENCODED)),
            TAMA,
            "reader",
        ),
        allow("HEAD falls back to GET", "HEAD", "/users/current/accounts/a1", Some(("web", BEARER)), TAMA, "reader"),
        allow(
            "web calls a public-scope method",
            "GET",
            "/mt-manager/accounts/a1/users/42",
            Some(("web", BEARER)),
            "mt-manager-api",
            "reader,writer",
        ),
        allow(
            "dealer trades on any account",
            "POST",
            "/mt-manager/accounts/a7/trade",
            Some(("dealer", BEARER)),
            "mt-manager-api",
            "writer",
        ),
        allow(
            "stats reads metrics",
            "GET",
            "/metastats/users/current/accounts/a1/metrics",
            Some(("stats", BEARER)),
            "metastats-api",
            "reader",
        ),
        deny(
            "web reads another account",
            "GET",
            "/users/current/accounts/a2",
            Some(("web", BEARER)),
            403,
            "resource_not_allowed",
        ),
        deny(
            "web reads another account, token in the query",
            "GET",
            "/users/current/accounts/a2",
            Some(("web", QUERY)),
            403,
            "resource_not_allowed",
        ),
        deny(
            "web lists all accounts",
            "GET",
            "/users/current/accounts",
            Some(("web", BEARER)),
            403,
            "resource_not_allowed",
        ),
        Case {
            missing_roles: &["writer"],
            ..deny(
                "web deletes its account",
                "DELETE",
                "/users/current/accounts/a1",
                Some(("web", BEARER)),
                403,
                "insufficient_role",
            )
        },
        Case {
            missing_scopes: &["dealing"],
            ..deny(
                "web trades",
                "POST",
                "/mt-manager/accounts/a1/trade",
                Some(("web", BEARER)),
                403,
                "insufficient_scope",
            )
        },
        deny(
            "dealer reads accounts",
            "GET",
            "/users/current/accounts/a1",
            Some(("dealer", BEARER)),
            403,
            "application_not_allowed",
        ),
        deny(
            "dealer reads a user",
            "GET",
            "/mt-manager/accounts/a1/users/1",
            Some(("dealer", BEARER)),
            403,
            "method_not_granted",
        ),
        deny(
            "stats deploys",
            "POST",
            "/users/current/accounts/a1/deploy",
            Some(("stats", BEARER)),
            403,
            "application_not_allowed",
        ),
        deny("no token", "GET", "/users/current/accounts/a1", None, 401, "missing_token"),
        deny("unknown route", "GET", "/nowhere", Some(("admin", BEARER)), 403, "no_matching_route"),
        deny(
            "unknown method",
            "PATCH",
            "/users/current/accounts/a1",
            Some(("admin", BEARER)),
            403,
            "no_matching_route",
        ),
    ]
}
