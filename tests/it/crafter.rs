//! The Crafter Profile facade, driven with the exact requests Crafter's Java
//! client (`AccessTokenServiceRestClient`) makes: `.json` paths, the caller's
//! `accessTokenId` in the query string, a JSON body for create and a form
//! body for delete. Its tokens work on the proxy through the `accessTokenId`
//! query parameter, with tenant permissions enforced on tenant routes, and
//! a delete takes effect at once. (config/demo.yaml turns the facade on,
//! with the `accessTokenId` credential and a tenant API in its manifest.)

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Harness, send_raw};

async fn call(h: &Harness, method: &str, target: &str, content_type: Option<&str>, body: &str) -> support::Response {
    let len = body.len().to_string();
    let mut headers = vec![("Host", "profile.test"), ("Accept", "application/json")];
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    headers.extend([("Content-Length", len.as_str()), ("Connection", "close")]);
    send_raw(h.api, support::raw_request(method, target, &headers, body).as_bytes()).await
}

/// `POST …/create.json?accessTokenId=` with the token as JSON.
async fn create(h: &Harness, caller: &str, token: &Value) -> support::Response {
    let target = format!("/api/1/access_token/create.json?accessTokenId={caller}");
    call(h, "POST", &target, Some("application/json;charset=UTF-8"), &token.to_string()).await
}

/// `POST …/{id}/delete.json` with `accessTokenId` in a form body.
async fn delete(h: &Harness, caller: &str, id: &str) -> support::Response {
    let target = format!("/api/1/access_token/{id}/delete.json");
    call(h, "POST", &target, Some("application/x-www-form-urlencoded"), &format!("accessTokenId={caller}")).await
}

async fn proxy(h: &Harness, method: &str, path: &str, token: &str) -> support::Response {
    h.request(method, &format!("{path}?accessTokenId={token}"), &[]).await
}

#[tokio::test]
async fn crafter_clients_manage_tokens_that_the_proxy_enforces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("ng.db"))).await;
    let defaults = std::mem::take(&mut h.gateway.as_mut().expect("running").crafter_tokens);
    let apps: Vec<&str> = defaults.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(apps, ["profile-admin", "engine", "social"], "Crafter's default tokens at first start");
    let (admin, engine) = (defaults[0].1.clone(), defaults[1].1.clone());

    // Create with a client-chosen id; Crafter's date form; first-match tenants.
    let perms = json!([{"tenant": "acme", "allowedActions": ["READ_TENANT"]},
                       {"tenant": "*", "allowedActions": ["MANAGE_PROFILES"]}]);
    let body = json!({"id": "sample-app-token", "application": "sample-app", "master": false,
                      "tenantPermissions": perms, "expiresOn": "12/31/2099 23:59:59"});
    let r = create(&h, &admin, &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let expected = json!({"id": "sample-app-token", "application": "sample-app", "master": false,
                          "tenantPermissions": perms, "expiresOn": 4_102_444_799_000u64});
    assert_eq!(r.json(), expected);
    let dup = create(&h, &admin, &body).await;
    assert_eq!((dup.status, dup.json()["errorCode"].as_str()), (409, Some("ACCESS_TOKEN_EXISTS")));
    // A generated id (a UUID), epoch-millis and ISO-8601 expiries.
    let generated = create(
        &h,
        &admin,
        &json!({"application": "other", "master": false, "tenantPermissions": [],
                                              "expiresOn": 4_102_444_799_000u64}),
    )
    .await;
    let generated_id = generated.json()["id"].as_str().expect("generated id").to_string();
    assert_eq!(generated_id.len(), 36);
    let iso = create(&h, &admin, &json!({"id": "iso", "application": "x", "expiresOn": "2099-12-31T23:59:59Z"})).await;
    assert_eq!(iso.json()["expiresOn"], 4_102_444_799_000u64);

    // Get (with and without .json) and all.
    let got =
        call(&h, "GET", &format!("/api/1/access_token/sample-app-token.json?accessTokenId={admin}"), None, "").await;
    assert_eq!((got.status, got.json()), (200, expected.clone()));
    let got = call(&h, "GET", &format!("/api/1/access_token/sample-app-token?accessTokenId={admin}"), None, "").await;
    assert_eq!(got.status, 200);
    let missing = call(&h, "GET", &format!("/api/1/access_token/nope.json?accessTokenId={admin}"), None, "").await;
    assert_eq!((missing.status, missing.json()["errorCode"].as_str()), (404, Some("NO_SUCH_ACCESS_TOKEN_ID")));
    let all = call(&h, "GET", &format!("/api/1/access_token/all.json?accessTokenId={admin}"), None, "").await;
    assert_eq!(all.status, 200);
    let ids: Vec<String> =
        all.json().as_array().expect("array").iter().filter_map(|t| t["id"].as_str().map(String::from)).collect();
    for id in [&admin, &engine, &"sample-app-token".to_string(), &generated_id] {
        assert!(ids.contains(id), "{id} listed");
    }
    let listed = |id: &str| all.json().as_array().and_then(|a| a.iter().find(|t| t["id"] == id).cloned());
    assert_eq!(listed(&admin).map(|t| t["master"].clone()), Some(json!(true)));
    assert_eq!(
        listed(&engine).map(|t| t["tenantPermissions"].clone()),
        Some(json!([{"tenant": "*", "allowedActions": ["READ_TENANT", "MANAGE_PROFILES", "MANAGE_TICKETS"]}]))
    );

    // Master required: ACTION_DENIED for others, ACCESS_DENIED without a valid token.
    let r = call(&h, "GET", &format!("/api/1/access_token/all.json?accessTokenId={engine}"), None, "").await;
    assert_eq!((r.status, r.json()["errorCode"].as_str()), (403, Some("ACTION_DENIED")));
    for target in ["/api/1/access_token/all.json", "/api/1/access_token/all.json?accessTokenId=unknown-id"] {
        let r = call(&h, "GET", target, None, "").await;
        assert_eq!((r.status, r.json()["errorCode"].as_str()), (403, Some("ACCESS_DENIED")), "{target}");
    }
    let soon = (narrowgate::token::now_unix() + 2) * 1000;
    let short =
        create(&h, &admin, &json!({"id": "short-lived", "application": "x", "master": true, "expiresOn": soon})).await;
    assert_eq!(short.status, 200, "{}", short.body);

    // On the proxy, with tenant permissions (first matching entry decides).
    let token = "sample-app-token";
    assert_eq!(proxy(&h, "GET", "/profile/api/1/tenant/acme", token).await.status, 200);
    let r = proxy(&h, "POST", "/profile/api/1/profile/create/acme", token).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "tenant_not_allowed"), "acme's entry allows reading only");
    assert_eq!(proxy(&h, "POST", "/profile/api/1/profile/create/globex", token).await.status, 200);
    let r = proxy(&h, "GET", "/profile/api/1/tenant/globex", token).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "tenant_not_allowed"));
    assert_eq!(proxy(&h, "GET", "/profile/api/1/tenant/acme", &engine).await.status, 200);
    let r = proxy(&h, "GET", "/users/current/accounts/a1", token).await;
    assert_eq!(r.status, 403, "no access rules outside tenant routes: {}", r.body);
    let got = h.upstream_received();
    assert_eq!(
        got.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(),
        ["/profile/api/1/tenant/acme", "/profile/api/1/profile/create/globex", "/profile/api/1/tenant/acme",],
        "the credential never reaches the upstream"
    );

    // Expired callers are refused like unknown ones.
    h.advance(Duration::from_secs(3));
    let r = call(&h, "GET", "/api/1/access_token/all.json?accessTokenId=short-lived", None, "").await;
    assert_eq!((r.status, r.json()["errorCode"].as_str()), (403, Some("ACCESS_DENIED")));

    // Delete takes effect at once; unknown ids are fine; the id can be reused.
    let r = delete(&h, &admin, token).await;
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(proxy(&h, "GET", "/profile/api/1/tenant/acme", token).await.status, 401);
    let gone = call(&h, "GET", &format!("/api/1/access_token/{token}.json?accessTokenId={admin}"), None, "").await;
    assert_eq!(gone.status, 404);
    assert_eq!(delete(&h, &admin, "never-existed").await.status, 200);
    assert_eq!(delete(&h, &engine, &generated_id).await.json()["errorCode"], "ACTION_DENIED");
    let again = json!({"id": token, "application": "sample-app", "master": false,
                       "tenantPermissions": [{"tenant": "acme", "allowedActions": ["*"]}], "expiresOn": null});
    let r = create(&h, &admin, &again).await;
    assert_eq!((r.status, r.json()["expiresOn"].clone()), (200, Value::Null), "{}", r.body);
    assert_eq!(proxy(&h, "POST", "/profile/api/1/profile/create/acme", token).await.status, 200);

    // Malformed tokens are refused with a reason.
    for bad in [
        json!({"id": "a.b", "application": "x"}),
        json!({"id": "ok", "application": ""}),
        json!({"id": "ok", "application": "x", "expiresOn": "next week"}),
        json!({"id": "ok", "application": "x", "tenantPermissions": [{"tenant": "*", "allowedActions": ["FLY"]}]}),
    ] {
        let r = create(&h, &admin, &bad).await;
        assert_eq!((r.status, r.json()["errorCode"].as_str()), (400, Some("BAD_REQUEST")), "{bad}");
    }
    h.shutdown().await;
}
