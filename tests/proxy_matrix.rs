//! The allow/deny matrix over the demo manifest: for every case, what the
//! client got and what the upstream received.

mod support;

use serde_json::{Value, json};
use support::Harness;

use narrowgate::token::testkit::rule;

fn admin_rules() -> Value {
    json!([rule("*", &["*"], &["*:$USER_ID$:*"])])
}

/// A web app's token: read account a1, and mt-manager calls on a1 with the
/// `public` scope only.
fn web_rules() -> Value {
    json!([
        rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"]),
        {
            "id": "mt", "application": "mt-manager-api", "service": "*",
            "methodGroups": [{ "group": "mt-manager", "methods": [{ "method": "*", "scopes": ["public"] }] }],
            "roles": ["reader", "writer"], "resources": ["account:$USER_ID$:a1"]
        }
    ])
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

struct Case {
    name: &'static str,
    method: &'static str,
    target: &'static str,
    token: Option<(&'static str, &'static str)>,
    status: u16,
    /// Reason code for a denial; for an allow, the application header.
    reason: &'static str,
    missing_scopes: &'static [&'static str],
    missing_roles: &'static [&'static str],
    /// Roles header the upstream should get on an allow.
    roles: &'static str,
}

const fn allow(
    name: &'static str,
    method: &'static str,
    target: &'static str,
    token: Option<(&'static str, &'static str)>,
    app: &'static str,
    roles: &'static str,
) -> Case {
    Case { name, method, target, token, status: 200, reason: app, missing_scopes: &[], missing_roles: &[], roles }
}

const fn deny(
    name: &'static str,
    method: &'static str,
    target: &'static str,
    token: Option<(&'static str, &'static str)>,
    status: u16,
    reason: &'static str,
) -> Case {
    Case { name, method, target, token, status, reason, missing_scopes: &[], missing_roles: &[], roles: "" }
}

const BEARER: &str = "authorization";
const AUTH_TOKEN: &str = "auth-token";

#[tokio::test]
async fn allow_deny_matrix_over_the_demo_manifest() {
    let h = Harness::start().await;
    let tokens = [
        ("admin", h.token("admin", admin_rules())),
        ("web", h.token("web", web_rules())),
        ("dealer", h.token("dealer", dealer_rules())),
        ("stats", h.token("stats", stats_rules())),
    ];
    let tama = "trading-account-management-api";
    let cases = [
        allow("public route needs no token", "GET", "/health", None, "", ""),
        allow("admin lists accounts", "GET", "/users/current/accounts", Some(("admin", BEARER)), tama, "*"),
        allow("web reads its account", "GET", "/users/current/accounts/a1", Some(("web", BEARER)), tama, "reader"),
        allow(
            "web via auth-token header",
            "GET",
            "/users/current/accounts/a1",
            Some(("web", AUTH_TOKEN)),
            tama,
            "reader",
        ),
        allow("HEAD falls back to GET", "HEAD", "/users/current/accounts/a1", Some(("web", BEARER)), tama, "reader"),
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
    ];

    for c in &cases {
        let token = c.token.map(|(who, _)| tokens.iter().find(|(n, _)| *n == who).expect("token").1.clone());
        let auth_value = token.as_ref().map(|t| match c.token {
            Some((_, BEARER)) => format!("Bearer {t}"),
            _ => t.clone(),
        });
        let mut headers = vec![];
        if let (Some((_, header)), Some(v)) = (c.token, auth_value.as_deref()) {
            headers.push((header, v));
        }
        let resp = h.request(c.method, c.target, &headers).await;
        let seen = h.upstream_received();
        assert_eq!(resp.status, c.status, "{}: body {}", c.name, resp.body);
        let request_id =
            resp.header("x-request-id").unwrap_or_else(|| panic!("{}: no x-request-id", c.name)).to_string();

        if c.status != 200 {
            assert_eq!(resp.reason(), c.reason, "{}", c.name);
            assert!(seen.is_empty(), "{}: upstream received {seen:?}", c.name);
            assert_eq!(resp.header("content-type"), Some("application/json"), "{}", c.name);
            let body = resp.json();
            let list = |k: &str| -> Vec<String> {
                body[k]
                    .as_array()
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default()
            };
            assert_eq!(list("missing_scopes"), c.missing_scopes, "{}", c.name);
            assert_eq!(list("missing_roles"), c.missing_roles, "{}", c.name);
            if c.status == 401 {
                assert!(resp.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{}", c.name);
            }
            if let Some(t) = &token {
                assert!(!resp.body.contains(t.as_str()), "{}: the token leaked into the body", c.name);
            }
            continue;
        }

        assert_eq!(seen.len(), 1, "{}: upstream should get exactly one request", c.name);
        let got = &seen[0];
        assert_eq!(got.method, c.method, "{}", c.name);
        assert_eq!(got.target, c.target, "{}", c.name);
        assert_eq!(got.header("authorization"), None, "{}: credential forwarded", c.name);
        assert_eq!(got.header("auth-token"), None, "{}: credential forwarded", c.name);
        assert_eq!(got.header("x-request-id"), Some(request_id.as_str()), "{}", c.name);
        assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"), "{}", c.name);
        assert_eq!(got.header("x-forwarded-proto"), Some("http"), "{}", c.name);
        assert_eq!(got.header("x-forwarded-host"), Some("gateway.test"), "{}", c.name);
        assert_eq!(got.header("host"), Some("gateway.test"), "{}", c.name);
        match c.token {
            None => {
                for hdr in
                    ["x-narrowgate-subject", "x-narrowgate-token-id", "x-narrowgate-application", "x-narrowgate-roles"]
                {
                    assert_eq!(got.header(hdr), None, "{}: {hdr} on a public route", c.name);
                }
            }
            Some((who, _)) => {
                assert_eq!(got.header("x-narrowgate-subject"), Some(who), "{}", c.name);
                assert!(
                    got.header("x-narrowgate-token-id").is_some_and(|v| v.starts_with(&format!("jti-{who}-"))),
                    "{}",
                    c.name
                );
                assert_eq!(got.header("x-narrowgate-application"), Some(c.reason), "{}", c.name);
                assert_eq!(got.header("x-narrowgate-roles"), Some(c.roles), "{}", c.name);
            }
        }
    }
    h.shutdown().await;
}
