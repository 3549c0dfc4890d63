//! VK Cloud ML Platform's token semantics through the native API (it has no
//! public wire format): User and Administrator roles, registration tokens
//! with `2h45m30s` TTLs and an optional lifetime, single use, never listed;
//! deletion by name; whoami with name, id, type, issuer and expiry; a 403
//! for a missing scope that lists the missing scopes.

use crate::support;

use std::time::Duration;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::payload;
use serde_json::json;
use support::Harness;

#[tokio::test]
async fn the_vk_token_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("ng.db"))).await;
    let root = h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("bootstrap token");
    let auth = |t: &str| format!("Bearer {t}");

    // An Administrator (not master) manages the tokens from here on.
    let created = h
        .api_post(
            "/v1/tokens",
            &[("Authorization", &auth(&root))],
            r#"{"name":"ml-admin","role":"Administrator","form":"reference","lifetime":"none"}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let admin = auth(created.json()["token"].as_str().expect("token"));

    // A registration token: its own TTL 2h45m30s, the access token's lifetime none.
    let before = now_unix() as i64;
    let reg = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &admin)],
            r#"{"name":"alice-notebook","role":"User","ttl":"2h45m30s"}"#,
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    let reg_expires = reg.json()["expiresAt"].as_i64().expect("expiresAt");
    assert!((reg_expires - (before + 9930)).abs() <= 2, "TTL 2h45m30s");
    let reg = reg.json()["token"].as_str().expect("token").to_string();

    // Redeemed with no other credential, once.
    let redeem = json!({ "token": reg }).to_string();
    let issued = h.api_post("/v1/registration-tokens/redeem", &[], &redeem).await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    let i = issued.json();
    assert_eq!(
        (i["name"].as_str(), i["role"].as_str(), &i["expiresAt"]),
        (Some("alice-notebook"), Some("user"), &json!(null))
    );
    let alice = auth(i["token"].as_str().expect("token"));
    let again = h.api_post("/v1/registration-tokens/redeem", &[], &redeem).await;
    assert_eq!((again.status, again.reason().as_str()), (409, "already_redeemed"));

    // whoami: name, id, type, issuer (who created it), expiry (null: none).
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &alice)]).await.json();
    assert_eq!(who["name"], "alice-notebook");
    assert_eq!(who["id"], i["id"]);
    assert_eq!((who["type"].as_str(), who["issuer"].as_str()), (Some("User"), Some("ml-admin")));
    assert_eq!(who["expiresAt"], json!(null));
    let who_admin = h.api_request("GET", "/v1/whoami", &[("Authorization", &admin)]).await.json();
    assert_eq!(
        (who_admin["type"].as_str(), who_admin["issuer"].as_str()),
        (Some("Administrator"), Some("bootstrap-admin"))
    );

    // Listing shows access tokens only, never a registration token or a secret.
    let list = h.api_request("GET", "/v1/tokens", &[("Authorization", &admin)]).await;
    let mut names: Vec<String> = list.json()["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .filter_map(|t| t["name"].as_str().map(String::from))
        .collect();
    names.sort();
    // A non-master administrator lists itself and what it made (its
    // lineage): not the master that made it.
    assert_eq!(names, ["alice-notebook", "ml-admin"]);
    assert!(list.json()["tokens"].as_array().is_some_and(|t| t.iter().all(|t| t["kind"] == "access")));
    assert!(!list.body.contains("ngreg_") && !list.body.contains("ngr_"));

    // A lifetime, and a TTL that runs out.
    let timed = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &admin)],
            r#"{"name":"bob-job","role":"User","lifetime":"1h","ttl":"1s"}"#,
        )
        .await;
    let timed = json!({ "token": timed.json()["token"] }).to_string();
    let bob = h.api_post("/v1/registration-tokens/redeem", &[], &timed).await;
    assert!((bob.json()["expiresAt"].as_i64().expect("exp") - (now_unix() as i64 + 3600)).abs() <= 2);
    let late = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &admin)],
            r#"{"name":"carol","role":"User","ttl":"1s"}"#,
        )
        .await;
    let late = json!({ "token": late.json()["token"] }).to_string();
    h.advance(Duration::from_secs(2));
    let r = h.api_post("/v1/registration-tokens/redeem", &[], &late).await;
    // Not the proxy's `expired` (a 401 for a token): its own code.
    assert_eq!((r.status, r.reason().as_str()), (410, "registration_expired"));

    // Only administrators manage tokens.
    let denied = h
        .api_post("/v1/registration-tokens", &[("Authorization", &alice)], r#"{"name":"x","role":"User","ttl":"1h"}"#)
        .await;
    assert_eq!((denied.status, denied.reason().as_str()), (403, "admin_required"));
    assert_eq!(h.api_request("GET", "/v1/tokens", &[("Authorization", &alice)]).await.status, 403);

    // Deletion by name; the proxy rejects the token at once.
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &alice)]).await.status, 200);
    assert_eq!(
        h.api_request("DELETE", "/v1/tokens?name=alice-notebook", &[("Authorization", &admin)]).await.status,
        204
    );
    let r = h.get("/users/current/accounts/a1", &[("Authorization", &alice)]).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "revoked"));

    // A missing scope: 403 listing what is missing.
    let scoped = h.sign(&payload(
        "dave",
        now_unix(),
        3600,
        json!([{ "id": "mt", "application": "mt-manager-api", "service": "*",
                 "methodGroups": [{ "group": "*", "methods": [{ "method": "*", "scopes": ["public"] }] }],
                 "roles": ["*"], "resources": ["*:$USER_ID$:*"] }]),
    ));
    let r = h.request("POST", "/mt-manager/accounts/a1/trade", &[("Authorization", &auth(&scoped))]).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "insufficient_scope"));
    assert_eq!(r.json()["missing_scopes"], json!(["dealing"]));
    h.shutdown().await;
}
