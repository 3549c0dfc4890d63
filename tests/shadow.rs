//! Shadow mode: what the policy denies for an authorization reason is
//! forwarded and recorded; credential, signature, expiry, revocation and
//! hygiene failures are refused in every mode.

mod support;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use serde_json::json;
use support::{Harness, metric};

fn would_deny(reason: &str, app: &str) -> String {
    format!("narrowgate_would_deny_total{{application=\"{app}\",reason=\"{reason}\"}}")
}

#[tokio::test]
async fn shadow_forwards_authorization_denials_and_enforces_the_rest() {
    // The trading API in shadow, everything else enforced.
    let mut h = Harness::start_with(
        |d| {
            d.set("applications.0.mode", "shadow");
            d.set("audit", json!({ "sink": { "file": { "path": "audit.jsonl" } } }));
        },
        |_| {},
    )
    .await;
    let token = h.token("web", json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]));
    let auth = format!("Bearer {token}");

    // Another account (resource) and a writer's route (role): forwarded.
    for (method, path, reason) in [
        ("GET", "/users/current/accounts/a2", "resource_not_allowed"),
        ("DELETE", "/users/current/accounts/a1", "insufficient_role"),
    ] {
        let r = h.request(method, path, &[("Authorization", &auth)]).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        let seen = h.upstream_received();
        assert_eq!(seen.len(), 1, "{method} {path} reached the upstream");
        assert_eq!(seen[0].header("x-narrowgate-subject"), Some("web"), "identified as usual");
        assert_eq!(metric(h.admin, &would_deny(reason, "trading-account-management-api")).await, Some(1.0));
    }
    // The enforced application still refuses.
    let r = h.get("/metastats/users/current/accounts/a1/metrics", &[("Authorization", &auth)]).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "application_not_allowed"));
    // No route, with the gateway enforcing: refused.
    assert_eq!(h.get("/nowhere", &[("Authorization", &auth)]).await.status, 403);
    // Credentials and hygiene are enforced in shadow too.
    let expired = h.sign(&payload("old", now_unix() - 7200, 3600, json!([])));
    for (headers, path, want) in [
        (vec![], "/users/current/accounts/a2", "missing_token"),
        (vec![("Authorization", "Bearer not.a.token".to_string())], "/users/current/accounts/a2", "invalid_token"),
        (vec![("Authorization", format!("Bearer {expired}"))], "/users/current/accounts/a2", "expired"),
        (vec![("Authorization", auth.clone())], "/users/current/accounts%2Fa2", "ambiguous_path"),
    ] {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = h.get(path, &hs).await;
        assert_eq!(r.reason(), want, "{path}: {} {}", r.status, r.body);
    }
    assert!(h.upstream_received().is_empty(), "nothing else reached the upstream");
    for route in ["GET /users/current/accounts/{accountId}", "DELETE /users/current/accounts/{accountId}"] {
        let allowed = format!(
            "narrowgate_requests_total{{application=\"trading-account-management-api\",decision=\"allow\",reason=\"shadow\",route=\"{route}\"}}"
        );
        assert_eq!(metric(h.admin, &allowed).await, Some(1.0), "{route}");
    }
    let audit = h.dir().join("audit.jsonl");
    h.gateway.take().expect("running").shutdown().await;
    let events: Vec<serde_json::Value> = std::fs::read_to_string(audit)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let shadowed: Vec<_> = events.iter().filter(|e| e["decision"] == "shadow").collect();
    assert_eq!(shadowed.len(), 2, "{events:#?}");
    assert_eq!(shadowed[0]["reason"], "resource_not_allowed");
    assert_eq!(shadowed[1]["missing_roles"], json!(["writer"]));
    assert_eq!(shadowed[0]["upstream_status"], 200);
}

#[tokio::test]
async fn a_gateway_in_shadow_forwards_unrouted_requests_but_never_an_upgrade() {
    let h = Harness::start_with(
        |d| {
            d.set("mode", "shadow");
        },
        |_| {},
    )
    .await;
    let token = h.token("web", json!([rule("mt-manager-api", &["reader"], &["account:$USER_ID$:a1"])]));
    let auth = format!("Bearer {token}");
    let r = h.get("/nowhere/at/all", &[("Authorization", &auth)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.upstream_received().len(), 1);
    assert_eq!(metric(h.admin, &would_deny("no_matching_route", "none")).await, Some(1.0));
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
