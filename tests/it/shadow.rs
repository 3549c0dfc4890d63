//! Shadow mode relaxes one thing only: the access-rule evaluation of a
//! verified token on a matched route. Such a request is forwarded without
//! identity headers, marked with the reason it would be denied for, and
//! recorded; no route, a missing or bad credential, expiry, revocation,
//! rate limits and hygiene are refused in every mode, and nothing refused
//! reaches the upstream.

use crate::support;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use serde_json::{Value, json};
use support::{Harness, master, metric, web_rules};

const TAMA: &str = "trading-account-management-api";

fn would_deny(reason: &str, app: &str) -> String {
    format!("narrowgate_would_deny_total{{application=\"{app}\",reason=\"{reason}\"}}")
}

/// The identity headers the gateway sets on an allowed request.
const IDENTITY: [&str; 4] =
    ["x-narrowgate-subject", "x-narrowgate-token-id", "x-narrowgate-application", "x-narrowgate-roles"];

/// A gateway in shadow (the whole gateway, or only the trading API) with a
/// store (for revocations) and an audit file.
async fn shadow(whole_gateway: bool) -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = support::sqlite_store(dir.path().join("ng.db"));
    let h = Harness::start_with(
        |d| {
            if whole_gateway {
                d.set("mode", "shadow");
            } else {
                d.set("applications.0.mode", "shadow");
            }
            d.set("audit", json!({ "sink": { "file": { "path": "audit.jsonl" } } }));
        },
        store,
    )
    .await;
    (dir, h)
}

/// Every request a shadowing gateway must still refuse, with the reason:
/// no route (with and without a credential, plain and through dot
/// segments), no credential, a bad, expired or revoked one, and hygiene.
async fn refused_in_every_mode(h: &Harness, auth: &str, revoked: &str) -> Vec<(String, Vec<(String, String)>, String)> {
    let expired = format!("Bearer {}", h.sign(&payload("old", now_unix() - 7200, 3600, web_rules())));
    let none: Vec<(String, String)> = Vec::new();
    let with = |v: &str| vec![("Authorization".to_string(), v.to_string())];
    let mut cases = Vec::new();
    for path in
        ["/internal/admin", "/v1/tokens", "/metrics", "/users/current/accounts/a1/../../../internal/admin", "/nowhere"]
    {
        cases.push((path.to_string(), none.clone(), "no_matching_route".to_string()));
        cases.push((path.to_string(), with(auth), "no_matching_route".to_string()));
    }
    for (headers, reason) in [
        (none.clone(), "missing_token"),
        (with("Bearer not.a.token"), "invalid_token"),
        (with(&expired), "expired"),
        (with(revoked), "revoked"),
    ] {
        cases.push(("/users/current/accounts/a2".to_string(), headers, reason.to_string()));
    }
    cases.push(("/users/current/accounts%2Fa2".to_string(), with(auth), "ambiguous_path".to_string()));
    let mut override_headers = with(auth);
    override_headers.push(("X-HTTP-Method-Override".into(), "DELETE".into()));
    cases.push(("/users/current/accounts/a2".to_string(), override_headers, "method_override_rejected".to_string()));
    cases
}

#[tokio::test]
async fn shadow_forwards_only_rule_denials_and_without_identity() {
    for whole_gateway in [false, true] {
        let (_dir, mut h) = shadow(whole_gateway).await;
        let token = h.token("web", web_rules());
        let auth = format!("Bearer {token}");

        // Allowed: identified as usual, no marker.
        let r =
            h.get("/users/current/accounts/a1", &[("Authorization", &auth), ("x-narrowgate-would-deny", "no")]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let seen = h.upstream_received();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header("x-narrowgate-subject"), Some("web"));
        assert_eq!(seen[0].header("x-narrowgate-would-deny"), None, "the client's own marker is removed");

        // Denied by the rules (resource, role, scope): forwarded, with no
        // identity an upstream could trust and the reason instead.
        let mut rule_denials = vec![
            ("GET", "/users/current/accounts/a2", "resource_not_allowed", TAMA),
            ("DELETE", "/users/current/accounts/a1", "insufficient_role", TAMA),
        ];
        if whole_gateway {
            rule_denials.push(("POST", "/mt-manager/accounts/a1/trade", "insufficient_scope", "mt-manager-api"));
            rule_denials.push((
                "GET",
                "/metastats/users/current/accounts/a1/metrics",
                "application_not_allowed",
                "metastats-api",
            ));
        }
        for (method, path, reason, app) in &rule_denials {
            let r = h.request(method, path, &[("Authorization", &auth), ("x-narrowgate-subject", "admin")]).await;
            assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
            let seen = h.upstream_received();
            assert_eq!(seen.len(), 1, "{method} {path} reached the upstream once");
            for name in IDENTITY {
                assert_eq!(seen[0].header(name), None, "{method} {path}: {name} on a shadow-denied request");
            }
            assert_eq!(seen[0].header("x-narrowgate-would-deny"), Some(*reason), "{method} {path}");
            assert_eq!(seen[0].header("authorization"), None, "the credential is never forwarded");
            assert_eq!(metric(h.admin, &would_deny(reason, app)).await, Some(1.0), "{method} {path}");
        }

        // Only the trading API in shadow: the others still refuse.
        if !whole_gateway {
            let r = h.get("/metastats/users/current/accounts/a1/metrics", &[("Authorization", &auth)]).await;
            assert_eq!((r.status, r.reason().as_str()), (403, "application_not_allowed"));
        }

        // Everything else is refused in shadow too.
        let mut gone = payload("gone", now_unix(), 3600, web_rules());
        gone["jti"] = json!("gone-jti");
        let revoked_token = h.sign(&gone);
        let jti = "gone-jti";
        let admin = master(&h);
        let body = json!({ "jti": jti, "issuer": "narrowgate" }).to_string();
        assert_eq!(h.api_post("/v1/revocations", &[("Authorization", &admin)], &body).await.status, 201);
        let revoked = format!("Bearer {revoked_token}");
        for (path, headers, want) in refused_in_every_mode(&h, &auth, &revoked).await {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let r = h.get(&path, &hs).await;
            assert_eq!(r.reason(), want, "{path} {:?}: {} {}", headers.first().map(|h| &h.0), r.status, r.body);
            assert!(r.status >= 400, "{path}: {}", r.status);
        }
        assert!(h.upstream_received().is_empty(), "nothing refused reached the upstream");
        let unrouted = would_deny("no_matching_route", "none");
        assert_eq!(metric(h.admin, &unrouted).await, None, "no route is never shadowed");

        // The audit log records each shadowed request with its reason.
        let audit = h.dir().join("audit.jsonl");
        h.gateway.take().expect("running").shutdown().await;
        let events: Vec<Value> = std::fs::read_to_string(audit)
            .expect("audit")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        let shadowed: Vec<_> = events.iter().filter(|e| e["decision"] == "shadow").collect();
        assert_eq!(shadowed.len(), rule_denials.len(), "{events:#?}");
        assert_eq!(shadowed[0]["reason"], "resource_not_allowed");
        assert_eq!(shadowed[1]["missing_roles"], json!(["writer"]));
        assert_eq!(shadowed[0]["upstream_status"], 200);
    }
}

#[tokio::test]
async fn a_websocket_handshake_is_never_shadowed() {
    let (_dir, h) = shadow(true).await;
    let token = h.token("web", json!([rule("mt-manager-api", &["reader"], &["account:$USER_ID$:a1"])]));
    let auth = format!("Bearer {token}");
    // A WebSocket handshake the policy denies (another account's stream) is
    // refused even in shadow: no tunnel nothing enforces.
    let ws = [
        ("Authorization", auth.as_str()),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let r = h.get("/mt-manager/accounts/a2/stream", &ws).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "resource_not_allowed"), "{}", r.body);
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}
