//! The token service on the api listener: manifest and whoami, judged by
//! the same authentication as the proxy.

mod support;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use serde_json::json;
use support::Harness;

#[tokio::test]
async fn the_manifest_is_published_in_metaapi_shape() {
    let h = Harness::start().await;
    let resp = h.api_request("GET", "/v1/manifest", &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let m = resp.json();
    let apps: Vec<&str> = m.as_array().expect("array").iter().filter_map(|a| a["application"].as_str()).collect();
    assert_eq!(apps, ["trading-account-management-api", "mt-manager-api", "metastats-api"]);
    let mt = &m[1];
    assert_eq!(mt["id"], "mt-manager-api");
    assert_eq!(
        mt["services"],
        json!([{"description": "REST API", "service": "rest"}, {"description": "streaming over WebSocket", "service": "ws"}])
    );
    let trade = &mt["methodGroups"][0]["methods"][1];
    assert_eq!((trade["method"].as_str(), &trade["scopes"]), (Some("trade"), &json!(["dealing", "public"])));
    assert_eq!(m[0]["roles"][0]["roles"], json!(["reader", "writer"]));
    assert_eq!(
        m[0]["entities"][0],
        json!({"entity": "account", "description": "a trading account", "idDescription": "the account id"})
    );
    assert_eq!(h.api_request("GET", "/v1/nothing", &[]).await.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn whoami_shows_the_calling_tokens_grant() {
    let h = Harness::start().await;
    let now = now_unix();
    let mut p = payload("alice", now, 3600, json!([rule("metastats-api", &["reader"], &["account:$USER_ID$:a1"])]));
    p["name"] = json!("web-app");
    p["kind"] = json!("narrowed");
    p["lineage"] = json!(["root-1"]);
    let token = h.sign(&p);
    for (header, value) in [("Authorization", format!("Bearer {token}")), ("auth-token", token.clone())] {
        let resp = h.api_request("GET", "/v1/whoami", &[(header, &value)]).await;
        assert_eq!(resp.status, 200, "{}", resp.body);
        let w = resp.json();
        assert_eq!(w["id"], format!("jti-alice-{now}"));
        assert_eq!(
            (w["name"].as_str(), w["kind"].as_str(), w["role"].as_str()),
            (Some("web-app"), Some("narrowed"), Some("user"))
        );
        assert_eq!((w["subject"].as_str(), w["issuer"].as_str()), (Some("alice"), Some("narrowgate")));
        assert_eq!(w["expiresAt"], json!(now + 3600));
        assert_eq!(w["lineage"], json!(["root-1"]));
        assert_eq!(w["accessRules"][0]["resources"], json!([{"entity": "account", "id": "a1"}]));
        assert!(!resp.body.contains(&token), "the token itself is never returned");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn whoami_refuses_like_the_proxy() {
    let h = Harness::start().await;
    let none = h.api_request("GET", "/v1/whoami", &[]).await;
    assert_eq!((none.status, none.reason().as_str()), (401, "missing_token"));
    assert_eq!(none.header("www-authenticate"), Some(r#"Bearer realm="narrowgate""#));
    let expired = h.sign(&payload("bob", now_unix() - 7200, 3600, json!([])));
    let resp = h.api_request("GET", "/v1/whoami", &[("Authorization", &format!("Bearer {expired}"))]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "expired"));
    let mut p = payload("carol", now_unix(), 3600, json!([]));
    p["jti"] = json!("carol-1");
    let carol = format!("Bearer {}", h.sign(&p));
    assert_eq!(h.api_request("GET", "/v1/whoami", &[("Authorization", &carol)]).await.status, 200);
    h.gateway.as_ref().expect("running").revocations.revoke("carol-1");
    let resp = h.api_request("GET", "/v1/whoami", &[("Authorization", &carol)]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "revoked"));
    h.shutdown().await;
}
