//! The token service on the api listener: manifest and whoami, judged by
//! the same authentication as the proxy.

use crate::support;

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
    assert_eq!(apps, ["trading-account-management-api", "mt-manager-api", "metastats-api", "profile-api"]);
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
    h.gateway.as_ref().expect("running").revocations.revoke("carol-1", None);
    let resp = h.api_request("GET", "/v1/whoami", &[("Authorization", &carol)]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "revoked"));
    h.shutdown().await;
}

fn parent_rules() -> serde_json::Value {
    json!([
        rule("trading-account-management-api", &["reader", "writer"], &["*:$USER_ID$:*"]),
        {
            "id": "mt", "application": "mt-manager-api", "service": "*",
            "methodGroups": [{ "group": "mt-manager", "methods": [{ "method": "*", "scopes": ["public"] }] }],
            "roles": ["reader"], "resources": ["account:$USER_ID$:*"]
        }
    ])
}

fn parent(h: &Harness, jti: &str, ttl: u64) -> String {
    let mut p = payload("alice", now_unix(), ttl, parent_rules());
    p["jti"] = json!(jti);
    format!("Bearer {}", h.sign(&p))
}

#[tokio::test]
async fn a_narrowed_token_works_on_the_proxy_within_its_narrower_rules() {
    let h = Harness::start().await;
    let auth = parent(&h, "parent-1", 3600);
    let body = r#"{"applications":["trading-account-management-api"],"roles":["reader"],"resources":[{"entity":"account","id":"a1"}],"validityInHours":0.5}"#;
    let resp = h.api_post("/v1/tokens/narrow", &[("Authorization", &auth)], body).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let child = resp.json()["token"].as_str().expect("token").to_string();
    let exp = resp.json()["expiresAt"].as_u64().expect("exp");
    assert!((exp as i64 - (now_unix() + 1800) as i64).abs() <= 2, "fractional validity");
    let (h64, p64) = (child.split('.').next().expect("h"), child.split('.').nth(1).expect("p"));
    assert!(!h64.contains(['-', '_']) && !p64.contains(['-', '_']), "MetaApi-safe encoding");

    let child_auth = format!("Bearer {child}");
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &child_auth)]).await.json();
    assert_eq!(
        (who["kind"].as_str(), who["role"].as_str(), who["master"].as_bool()),
        (Some("narrowed"), Some("user"), Some(false))
    );
    assert_eq!(who["lineage"], json!(["parent-1"]));
    assert_eq!(who["subject"], "alice");

    // On the proxy: a1 readable, a2 not, writing not, other applications not.
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &child_auth)]).await.status, 200);
    let other = h.get("/users/current/accounts/a2", &[("Authorization", &child_auth)]).await;
    assert_eq!((other.status, other.reason().as_str()), (403, "resource_not_allowed"));
    assert_eq!(h.request("DELETE", "/users/current/accounts/a1", &[("Authorization", &child_auth)]).await.status, 403);
    assert_eq!(h.get("/mt-manager/accounts/a1/users/1", &[("Authorization", &child_auth)]).await.status, 403);
    // The parent could do all of those.
    assert_eq!(h.get("/users/current/accounts/a2", &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 2);

    // Revoking the parent rejects the child.
    h.gateway.as_ref().expect("running").revocations.revoke("parent-1", None);
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &child_auth)]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "revoked"));
    h.shutdown().await;
}

#[tokio::test]
async fn the_detailed_form_and_the_query_validity_are_accepted() {
    let h = Harness::start().await;
    let auth = parent(&h, "parent-2", 3600);
    let body = json!({"accessRules": [{
        "application": "mt-manager-api", "service": "rest",
        "methodGroups": [{"group": "mt-manager", "methods": [{"method": "getUser", "scopes": ["public"]}]}],
        "roles": ["reader"], "resources": [{"entity": "account", "id": "a1"}]
    }]})
    .to_string();
    let resp = h
        .api_post(
            "/v1/tokens/narrow?validity-in-hours=0.25",
            &[("auth-token", auth.trim_start_matches("Bearer "))],
            &body,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let child = format!("Bearer {}", resp.json()["token"].as_str().expect("token"));
    assert_eq!(h.get("/mt-manager/accounts/a1/users/7", &[("Authorization", &child)]).await.status, 200);
    assert_eq!(h.get("/mt-manager/accounts/a2/users/7", &[("Authorization", &child)]).await.status, 403);
    h.shutdown().await;
}

#[tokio::test]
async fn escalation_attempts_are_refused_and_nothing_is_issued() {
    let h = Harness::start().await;
    let auth = parent(&h, "parent-3", 3600);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("add a role", r#"{"roles":["admin"]}"#.into(), 403, "roles[0]"),
        ("an unknown role", r#"{"roles":["superuser"]}"#.into(), 400, "unknown role"),
        (
            "a role the parent lacks",
            r#"{"applications":["mt-manager-api"],"roles":["writer"]}"#.into(),
            403,
            "roles[0]",
        ),
        ("add an application", r#"{"applications":["metastats-api"]}"#.into(), 403, "applications[0]"),
        (
            "a wildcard where the parent is specific",
            json!({"accessRules": [{"application": "mt-manager-api", "service": "*",
                "methodGroups": [{"group": "mt-manager", "methods": [{"method": "*"}]}],
                "roles": ["reader"], "resources": [{"entity": "account", "id": "a1"}]}]})
            .to_string(),
            403,
            "accessRules[0].methodGroups[0].methods[0]",
        ),
        ("a longer validity", r#"{"validityInHours":2}"#.into(), 403, "validityInHours"),
        ("unknown element", r#"{"applications":["no-such-api"]}"#.into(), 400, "unknown application"),
        ("unknown field", r#"{"colour":"red"}"#.into(), 400, "unknown field"),
        ("both forms", r#"{"roles":["reader"],"accessRules":[]}"#.into(), 400, "either accessRules"),
        ("not JSON", "{".into(), 400, "malformed body"),
        ("zero validity", r#"{"validityInHours":0}"#.into(), 400, "positive number"),
    ];
    for (name, body, status, says) in cases {
        let resp = h.api_post("/v1/tokens/narrow", &[("Authorization", &auth)], &body).await;
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        assert!(resp.json()["message"].as_str().is_some_and(|m| m.contains(says)), "{name}: {}", resp.body);
        assert!(resp.json()["token"].is_null(), "{name}: a token was issued");
    }
    // Narrowing a revoked or expired token, or without one.
    h.gateway.as_ref().expect("running").revocations.revoke("parent-3", None);
    assert_eq!(h.api_post("/v1/tokens/narrow", &[("Authorization", &auth)], "{}").await.status, 401);
    let expired = format!("Bearer {}", h.sign(&payload("old", now_unix() - 7200, 3600, parent_rules())));
    assert_eq!(h.api_post("/v1/tokens/narrow", &[("Authorization", &expired)], "{}").await.status, 401);
    assert_eq!(h.api_post("/v1/tokens/narrow", &[], "{}").await.status, 401);
    h.shutdown().await;
}

#[tokio::test]
async fn a_narrowed_token_is_recorded_with_its_parent() {
    let (_dir, h) = with_store().await;
    let auth = parent(&h, "parent-4", 3600);
    let resp = h.api_post("/v1/tokens/narrow", &[("Authorization", &auth)], r#"{"roles":["reader"]}"#).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let id = resp.json()["id"].as_str().expect("id").to_string();
    let store = h.gateway.as_ref().and_then(|g| g.store.clone()).expect("store");
    let record = store.token(&id).await.expect("read").expect("recorded");
    assert_eq!(record.parent_id.as_deref(), Some("parent-4"));
    assert_eq!(record.lineage, ["parent-4"]);
    assert_eq!(record.kind, narrowgate::token::TokenKind::Narrowed);
    assert_eq!(record.expires_at.map(narrowgate::time::UnixTime::secs), resp.json()["expiresAt"].as_u64());
    h.shutdown().await;
}

#[tokio::test]
async fn the_jwks_publishes_the_signing_keys_public_halves_only() {
    let h = Harness::start().await;
    let resp = h.api_request("GET", "/.well-known/jwks.json", &[]).await;
    assert_eq!(resp.status, 200);
    let jwks = resp.json();
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(
        (k["kid"].as_str(), k["kty"].as_str(), k["crv"].as_str(), k["use"].as_str()),
        (Some("signer"), Some("EC"), Some("P-256"), Some("sig"))
    );
    assert!(k["x"].is_string() && k["y"].is_string());
    assert!(k.get("d").is_none(), "a private parameter was published");
    // A verifier that trusts only this JWKS accepts a token the service minted.
    let auth = format!("Bearer {}", h.sign(&payload("alice", now_unix(), 3600, parent_rules())));
    let minted = h.api_post("/v1/tokens/narrow", &[("Authorization", &auth)], "{}").await.json()["token"]
        .as_str()
        .expect("token")
        .to_string();
    let keyset =
        narrowgate::token::keys::keys_from_jwks(&resp.body, &[jsonwebtoken::Algorithm::ES256], 0).expect("jwks parses");
    let mut set = narrowgate::token::KeySet::default();
    set.add_issuer(narrowgate::token::testkit::issuer_policy());
    for k in keyset.keys {
        set.add_key(k).expect("add");
    }
    let verifier = narrowgate::token::Verifier::new(set, 8192);
    assert!(verifier.verify(&minted, now_unix()).is_ok());
    h.shutdown().await;
}

async fn with_store() -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("ng.db"))).await;
    (dir, h)
}

/// [`support::master`] with the jti `master-1`, the creator that the
/// tokens it makes name.
fn master(h: &Harness) -> String {
    support::master_with_jti(h, "master-1")
}

#[tokio::test]
async fn admins_create_list_show_and_revoke_tokens_and_revocation_follows_lineage() {
    let (_dir, h) = with_store().await;
    let root = master(&h);
    let body = json!({
        "name": "reporting", "description": "nightly reports", "application": "metastats-api", "lifetime": "2h45m30s",
        "accessRules": [{"application": "trading-account-management-api", "service": "rest",
            "methodGroups": [{"group": "account-management", "methods": [{"method": "*"}]}],
            "roles": ["reader"], "resources": [{"entity": "*", "id": "*"}]}]
    })
    .to_string();
    let created = h.api_post("/v1/tokens", &[("Authorization", &root)], &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let c = created.json();
    let (id, token) = (c["id"].as_str().expect("id").to_string(), c["token"].as_str().expect("token").to_string());
    assert_eq!(
        (c["name"].as_str(), c["role"].as_str(), c["createdBy"].as_str()),
        (Some("reporting"), Some("user"), Some("master-1"))
    );
    let exp = c["expiresAt"].as_i64().expect("exp");
    assert!((exp - (now_unix() as i64 + 9930)).abs() <= 2, "lifetime 2h45m30s");
    let auth = format!("Bearer {token}");
    assert_eq!(h.get("/users/current/accounts/a9", &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(h.request("DELETE", "/users/current/accounts/a9", &[("Authorization", &auth)]).await.status, 403);

    // Listed and shown without the secret.
    let list = h.api_request("GET", "/v1/tokens?name=reporting", &[("Authorization", &root)]).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["tokens"][0]["id"], json!(id));
    assert!(!list.body.contains(&token));
    let shown = h.api_request("GET", &format!("/v1/tokens/{id}"), &[("Authorization", &root)]).await;
    assert_eq!((shown.status, shown.json()["description"].as_str()), (200, Some("nightly reports")));
    assert!(shown.json()["token"].is_null());
    assert_eq!(h.api_request("GET", "/v1/tokens/nope", &[("Authorization", &root)]).await.status, 404);
    assert_eq!(h.api_post("/v1/tokens", &[("Authorization", &root)], &body).await.status, 409, "duplicate name");

    // A grandchild: narrowed twice from the created token.
    let child = h
        .api_post("/v1/tokens/narrow", &[("Authorization", &auth)], r#"{"resources":[{"entity":"account","id":"a1"}]}"#)
        .await;
    let child = format!("Bearer {}", child.json()["token"].as_str().expect("child"));
    let grandchild = h.api_post("/v1/tokens/narrow", &[("Authorization", &child)], r#"{"validityInHours":1}"#).await;
    let grandchild = format!("Bearer {}", grandchild.json()["token"].as_str().expect("grandchild"));
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &grandchild)]).await.status, 200);

    // Revoking the created token rejects it and its grandchild.
    assert_eq!(h.api_request("DELETE", &format!("/v1/tokens/{id}"), &[("Authorization", &root)]).await.status, 204);
    for (who, t) in [("token", &auth), ("grandchild", &grandchild)] {
        let r = h.get("/users/current/accounts/a1", &[("Authorization", t)]).await;
        assert_eq!((r.status, r.reason().as_str()), (401, "revoked"), "{who}");
    }
    let shown = h.api_request("GET", &format!("/v1/tokens/{id}"), &[("Authorization", &root)]).await;
    assert!(shown.json()["revokedAt"].is_i64());

    // Revocation by name.
    let other = h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"temp","lifetime":"10m"}"#).await;
    let other = format!("Bearer {}", other.json()["token"].as_str().expect("token"));
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &other)]).await.status, 200);
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=temp", &[("Authorization", &root)]).await.status, 204);
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &other)]).await.status, 401);
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=temp2", &[("Authorization", &root)]).await.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn only_admins_manage_tokens_and_nothing_widens() {
    let (_dir, h) = with_store().await;
    let user =
        format!("Bearer {}", h.sign(&payload("u", now_unix(), 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]))));
    // Two hours: what a non-master admin mints may not outlive it.
    let mut p = payload("adm", now_unix(), 7200, json!([rule("metastats-api", &["reader"], &["*:$USER_ID$:*"])]));
    p["role"] = json!("admin");
    let admin = format!("Bearer {}", h.sign(&p));
    let cases: Vec<(&str, &String, &str, u16, &str)> = vec![
        ("a user token creates", &user, r#"{"name":"x","lifetime":"1h"}"#, 403, "admin_required"),
        ("an admin mints an admin", &admin, r#"{"name":"x","lifetime":"1h","role":"admin"}"#, 403, "would_widen"),
        ("an admin mints a master", &admin, r#"{"name":"x","lifetime":"1h","master":true}"#, 403, "would_widen"),
        (
            "an admin grants more than it has",
            &admin,
            r#"{"name":"x","lifetime":"1h","accessRules":[{"application":"*","service":"*","methodGroups":[{"group":"*","methods":[{"method":"*"}]}],"roles":["*"],"resources":[{"entity":"*","id":"*"}]}]}"#,
            403,
            "would_widen",
        ),
        ("a bad lifetime", &admin, r#"{"name":"x","lifetime":"soon"}"#, 400, "bad_request"),
        ("no expiry", &admin, r#"{"name":"x"}"#, 400, "bad_request"),
        ("unknown field", &admin, r#"{"name":"x","lifetime":"1h","colour":"red"}"#, 400, "bad_request"),
        ("an unknown form", &admin, r#"{"name":"x","lifetime":"1h","form":"opaque"}"#, 400, "bad_request"),
    ];
    for (name, auth, body, status, code) in cases {
        let r = h.api_post("/v1/tokens", &[("Authorization", auth)], body).await;
        assert_eq!((r.status, r.reason().as_str()), (status, code), "{name}: {}", r.body);
    }
    // Within its own rules an admin may create.
    let ok = json!({"name": "stats-reader", "lifetime": "1h", "accessRules": [{"application": "metastats-api", "service": "*",
        "methodGroups": [{"group": "*", "methods": [{"method": "*"}]}], "roles": ["reader"], "resources": [{"entity": "*", "id": "*"}]}]});
    assert_eq!(h.api_post("/v1/tokens", &[("Authorization", &admin)], &ok.to_string()).await.status, 201);
    // Without accessRules the new token gets the creator's own rules.
    let same = h.api_post("/v1/tokens", &[("Authorization", &admin)], r#"{"name":"same","lifetime":"1h"}"#).await;
    assert_eq!(same.status, 201, "{}", same.body);
    let same = format!("Bearer {}", same.json()["token"].as_str().expect("token"));
    assert_eq!(h.get("/metastats/users/current/accounts/a1/metrics", &[("Authorization", &same)]).await.status, 200);
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &same)]).await.status, 403);
    assert_eq!(h.api_request("GET", "/v1/tokens", &[("Authorization", &user)]).await.status, 403);
    assert_eq!(h.api_request("DELETE", "/v1/tokens/x", &[("Authorization", &user)]).await.status, 403);
    assert_eq!(h.api_request("GET", "/v1/tokens", &[]).await.status, 401);
    h.shutdown().await;

    // Without a store, management is unavailable rather than half-done.
    let h = Harness::start().await;
    let r = h.api_post("/v1/tokens", &[("Authorization", &master(&h))], r#"{"name":"x","lifetime":"1h"}"#).await;
    assert_eq!((r.status, r.reason().as_str()), (503, "store_unavailable"));
    h.shutdown().await;
}

#[tokio::test]
async fn reference_tokens_never_expire_work_on_the_proxy_survive_a_restart_and_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ng.db");
    let store_at = support::sqlite_store;
    let h = Harness::start_with(|_| {}, store_at(path.clone())).await;
    let root = master(&h);
    let body = json!({"name": "ml-worker", "role": "user", "form": "reference", "accessRules": [{
        "application": "trading-account-management-api", "service": "*",
        "methodGroups": [{"group": "*", "methods": [{"method": "*"}]}],
        "roles": ["reader"], "resources": [{"entity": "account", "id": "a1"}]}]})
    .to_string();
    let created = h.api_post("/v1/tokens", &[("Authorization", &root)], &body).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let secret = created.json()["token"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("ngr_") && secret.len() >= 4 + 43, "prefix and 256 bits");
    assert!(created.json()["expiresAt"].is_null());
    let auth = format!("Bearer {secret}");
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(h.get("/users/current/accounts/a2", &[("Authorization", &auth)]).await.status, 403);
    let seen = h.upstream_received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-narrowgate-subject"), Some("ml-worker"));
    assert_eq!(seen[0].header("authorization"), None);
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &auth)]).await.json();
    assert_eq!((who["name"].as_str(), who["expiresAt"].is_null()), (Some("ml-worker"), true));
    let listed = h.api_request("GET", "/v1/tokens?name=ml-worker", &[("Authorization", &root)]).await;
    assert_eq!(listed.json()["tokens"][0]["form"], "reference");
    assert!(!listed.body.contains(&secret), "the secret was listed");
    let wrong = format!("Bearer ngr_{}", "A".repeat(43));
    let r = h.get("/users/current/accounts/a1", &[("Authorization", &wrong)]).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "invalid_token"));
    h.shutdown().await;

    // A new process on the same store: the token still works, and revoking
    // it there takes effect at once.
    let h = Harness::start_with(|_| {}, store_at(path.clone())).await;
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
    let root = master(&h);
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=ml-worker", &[("Authorization", &root)]).await.status, 204);
    let r = h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "revoked"));
    h.shutdown().await;
}

#[tokio::test]
async fn registration_tokens_are_single_use_even_under_concurrency_and_listed_nowhere() {
    let (_dir, h) = with_store().await;
    let root = master(&h);
    let reg = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &root)],
            r#"{"name":"trainer","role":"User","ttl":"2h45m30s"}"#,
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    let secret = reg.json()["token"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("ngreg_"));
    // Not listed, and not usable as an access token.
    // Sorted: tokens created within one second list in id order.
    let names = |body: serde_json::Value| -> Vec<String> {
        let mut v: Vec<String> = body["tokens"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t["name"].as_str().map(String::from)).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let listed = h.api_request("GET", "/v1/tokens", &[("Authorization", &root)]).await;
    assert_eq!(names(listed.json()), ["bootstrap-admin"], "{}", listed.body);
    let r = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {secret}"))]).await;
    assert_eq!(r.status, 401);

    // Fifty concurrent redeems, no credential: exactly one wins.
    let body = json!({ "token": secret }).to_string();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let req = support::raw_body_request("POST", "/v1/registration-tokens/redeem", None, "application/json", &body);
        let api = h.api;
        tasks.push(tokio::spawn(async move { support::send_raw(api, req.as_bytes()).await }));
    }
    let mut won = Vec::new();
    for t in tasks {
        let r = t.await.expect("join");
        match r.status {
            201 => won.push(r),
            409 => assert_eq!(r.reason(), "already_redeemed"),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!(won.len(), 1, "exactly one redeem may win");
    let issued = won[0].json();
    assert_eq!(
        (issued["name"].as_str(), issued["role"].as_str(), issued["expiresAt"].is_null()),
        (Some("trainer"), Some("user"), true)
    );
    let token = format!("Bearer {}", issued["token"].as_str().expect("token"));
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &token)]).await.status, 200);
    let listed = h.api_request("GET", "/v1/tokens", &[("Authorization", &root)]).await;
    assert_eq!(names(listed.json()), ["bootstrap-admin", "trainer"]);

    // Its lifetime is fixed by the registration token.
    let reg = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &root)],
            r#"{"name":"short","role":"user","lifetime":"2h","ttl":"10m"}"#,
        )
        .await;
    let secret = reg.json()["token"].as_str().expect("secret").to_string();
    let r = h.api_post("/v1/registration-tokens/redeem", &[], &json!({ "token": secret }).to_string()).await;
    let exp = r.json()["expiresAt"].as_i64().expect("exp");
    assert!((exp - (now_unix() as i64 + 7200)).abs() <= 2);
    let again = h.api_post("/v1/registration-tokens/redeem", &[], &json!({ "token": secret }).to_string()).await;
    assert_eq!((again.status, again.reason().as_str()), (409, "already_redeemed"));
    let unknown = h.api_post("/v1/registration-tokens/redeem", &[], r#"{"token":"ngreg_nope"}"#).await;
    assert_eq!(unknown.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn only_admins_hand_out_registration_tokens() {
    let (_dir, h) = with_store().await;
    let user = format!("Bearer {}", h.sign(&payload("u", now_unix(), 3600, json!([]))));
    let mut p = payload("adm", now_unix(), 3600, json!([]));
    p["role"] = json!("admin");
    let admin = format!("Bearer {}", h.sign(&p));
    let body = r#"{"name":"x","role":"user","ttl":"1h"}"#;
    assert_eq!(h.api_post("/v1/registration-tokens", &[("Authorization", &user)], body).await.status, 403);
    assert_eq!(h.api_post("/v1/registration-tokens", &[], body).await.status, 401);
    let r = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &admin)],
            r#"{"name":"x","role":"Administrator","ttl":"1h"}"#,
        )
        .await;
    assert_eq!((r.status, r.reason().as_str()), (403, "would_widen"));
    for bad in [
        r#"{"name":"x","role":"user","ttl":"soon"}"#,
        r#"{"name":"x","role":"root","ttl":"1h"}"#,
        r#"{"name":"x","role":"user"}"#,
    ] {
        assert_eq!(h.api_post("/v1/registration-tokens", &[("Authorization", &admin)], bad).await.status, 400, "{bad}");
    }
    assert_eq!(h.api_post("/v1/registration-tokens", &[("Authorization", &admin)], body).await.status, 201);
    h.shutdown().await;
}

#[tokio::test]
async fn the_first_start_on_an_empty_store_bootstraps_one_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ng.db");
    let file = dir.path().join("secrets/admin-token");
    let start = |db: std::path::PathBuf, file: std::path::PathBuf| {
        Harness::start_with(
            |_| {},
            move |c| {
                support::sqlite_store(db.clone())(c);
                c.bootstrap.token_file = Some(file.clone());
            },
        )
    };
    let mut h = start(db.clone(), file.clone()).await;
    let secret = h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).expect("bootstrapped");
    let written = std::fs::read_to_string(&file).expect("token file");
    assert_eq!(written.trim(), secret);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
    }
    let auth = format!("Bearer {secret}");
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &auth)]).await.json();
    assert_eq!(
        (who["name"].as_str(), who["role"].as_str(), who["master"].as_bool()),
        (Some("bootstrap-admin"), Some("admin"), Some(true))
    );
    assert!(who["expiresAt"].is_null());
    // It can manage tokens and reach the upstream.
    assert_eq!(
        h.api_post("/v1/tokens", &[("Authorization", &auth)], r#"{"name":"first","lifetime":"1h"}"#).await.status,
        201
    );
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
    h.shutdown().await;

    // Later starts do nothing: no new token, the file untouched.
    let mut h = start(db, file.clone()).await;
    assert!(h.gateway.as_mut().and_then(|g| g.bootstrap_token.take()).is_none());
    assert_eq!(std::fs::read_to_string(&file).expect("file").trim(), secret);
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn tokens_carry_crafter_tenant_permissions_and_take_rfc3339_times() {
    let (_dir, h) = with_store().await;
    let root = master(&h);
    let perms = json!([{"tenant": "acme", "allowedActions": ["READ_TENANT"]},
                       {"tenant": "*", "allowedActions": ["READ_TENANT", "MANAGE_PROFILES", "MANAGE_TICKETS"]}]);
    let body = json!({
        "name": "crafter-engine", "form": "reference", "tenantPermissions": perms,
        "notBefore": "2020-01-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00+01:00",
    });
    let created = h.api_post("/v1/tokens", &[("Authorization", &root)], &body.to_string()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let c = created.json();
    assert_eq!(c["tenantPermissions"], perms);
    assert_eq!(c["accessRules"], json!([]), "tenant permissions instead of the caller's rules");
    assert_eq!((c["notBefore"].as_i64(), c["expiresAt"].as_i64()), (Some(1_577_836_800), Some(4_070_905_200)));
    let token = format!("Bearer {}", c["token"].as_str().expect("token"));
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &token)]).await;
    assert_eq!(who.json()["tenantPermissions"], perms);
    let id = c["id"].as_str().expect("id");
    let shown = h.api_request("GET", &format!("/v1/tokens/{id}"), &[("Authorization", &root)]).await;
    assert_eq!(shown.json()["tenantPermissions"], perms);

    // Malformed input is named; nothing is created.
    for (body, named) in [
        (
            json!({"name": "t1", "form": "reference", "tenantPermissions": [{"tenant": "*", "allowedActions": ["FLY"]}]}),
            "tenantPermissions[0].allowedActions[0]",
        ),
        (json!({"name": "t2", "expiresAt": "next tuesday"}), "expiresAt"),
        (json!({"name": "t3", "lifetime": "1h", "notBefore": "2026-13-01T00:00:00Z"}), "notBefore"),
        (json!({"name": "t4", "form": "reference", "tenantPermissions": [{"tenant": "*"}]}), "allowedActions"),
    ] {
        let r = h.api_post("/v1/tokens", &[("Authorization", &root)], &body.to_string()).await;
        assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"), "{body}");
        assert!(r.json()["message"].as_str().is_some_and(|m| m.contains(named)), "{named}: {}", r.body);
    }
    // An admin that is not master grants no tenant permission it lacks.
    let mut p = payload("ops", now_unix(), 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));
    p["role"] = json!("admin");
    let admin = format!("Bearer {}", h.sign(&p));
    let body =
        json!({"name": "t5", "form": "reference", "tenantPermissions": [{"tenant": "acme", "allowedActions": ["*"]}]});
    let r = h.api_post("/v1/tokens", &[("Authorization", &admin)], &body.to_string()).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "would_widen"), "{}", r.body);
    let list = h.api_request("GET", "/v1/tokens", &[("Authorization", &root)]).await.json();
    let mut names: Vec<&str> =
        list["tokens"].as_array().expect("list").iter().filter_map(|t| t["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["bootstrap-admin", "crafter-engine"], "nothing else was created");
    h.shutdown().await;
}

#[tokio::test]
async fn an_issuer_with_an_audience_and_a_max_lifetime_mints_only_what_its_proxy_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = support::sqlite_store(dir.path().join("ng.db"));
    let h = Harness::start_with(
        |_| {},
        |c| {
            store(c);
            // As `audience: [trading]` and `max_lifetime: 2h` on the issuer
            // would set them (config tests cover the loading).
            c.keys.issuers[0].audience = vec!["trading".into()];
            c.keys.issuers[0].max_lifetime_secs = Some(7200);
            let signing = c.signing.as_mut().expect("signing");
            signing.audience = Some("trading".into());
            signing.max_lifetime_secs = Some(7200);
        },
    )
    .await;
    let mut p = payload("root", now_unix(), 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));
    p["role"] = json!("admin");
    p["master"] = json!(true);
    p["aud"] = json!("trading");
    let root = format!("Bearer {}", h.sign(&p));

    let created = h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"web","lifetime":"1h"}"#).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let token = created.json()["token"].as_str().expect("token").to_string();
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!(resp.status, 200, "its own token passes its own audience check: {}", resp.body);
    assert_eq!(h.upstream_received()[0].header("x-narrowgate-subject"), Some("web"));

    // Narrowed without a validity: within the max lifetime, and accepted.
    let narrowed = h
        .api_post("/v1/tokens/narrow", &[("Authorization", &format!("Bearer {token}"))], r#"{"roles":["reader"]}"#)
        .await;
    assert_eq!(narrowed.status, 200, "{}", narrowed.body);
    let child = narrowed.json()["token"].as_str().expect("token").to_string();
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {child}"))]).await.status, 200);

    // Longer than the issuer allows: refused, nothing minted.
    let long = h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"long","lifetime":"3h"}"#).await;
    assert_eq!((long.status, long.reason().as_str()), (400, "bad_request"), "{}", long.body);
    assert!(long.json()["message"].as_str().unwrap_or("").contains("max_lifetime"), "{}", long.body);
    let listed = h.api_request("GET", "/v1/tokens?name=long", &[("Authorization", &root)]).await;
    assert_eq!(listed.json()["tokens"], json!([]));
    h.shutdown().await;
}

#[tokio::test]
async fn an_admin_revokes_another_issuers_token_by_jti_and_its_children_go_with_it() {
    let (_dir, h) = with_store().await;
    let root = master(&h);
    // Tokens the token service never issued (no record): signed by a
    // trusted key, as an external issuer's are.
    let now = now_unix();
    let external = |jti: &str| {
        let mut p = payload("idp-user", now, 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));
        p["jti"] = json!(jti);
        h.sign(&p)
    };
    let (ext, other) = (external("ext-1"), external("ext-2"));
    let child = h
        .api_post("/v1/tokens/narrow", &[("Authorization", &format!("Bearer {ext}"))], r#"{"roles":["reader"]}"#)
        .await;
    assert_eq!(child.status, 200, "{}", child.body);
    let child = child.json()["token"].as_str().expect("token").to_string();
    for t in [&ext, &child, &other] {
        assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {t}"))]).await.status, 200);
    }
    assert_eq!(h.upstream_received().len(), 3);

    // DELETE knows only its own tokens, and says where to go.
    let r = h.api_request("DELETE", "/v1/tokens/ext-1", &[("Authorization", &root)]).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("POST /v1/revocations"), "{}", r.body);
    let body = json!({"jti": "ext-1", "issuer": "narrowgate", "expiresAt": now + 3600}).to_string();
    // Not an admin: refused.
    let r = h.api_post("/v1/revocations", &[("Authorization", &format!("Bearer {other}"))], &body).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "admin_required"));
    // An issuer this gateway does not trust: refused, and not echoed.
    let r = h
        .api_post(
            "/v1/revocations",
            &[("Authorization", &root)],
            r#"{"jti":"ext-1","issuer":"https://evil.example/<x>"}"#,
        )
        .await;
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"));
    assert!(!r.body.contains("evil.example"), "{}", r.body);
    let r = h.api_post("/v1/revocations", &[("Authorization", &root)], &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.json()["jti"].as_str(), r.json()["newlyRevoked"].as_bool()), (Some("ext-1"), Some(true)));
    let again = h.api_post("/v1/revocations", &[("Authorization", &root)], &body).await;
    assert_eq!((again.status, again.json()["newlyRevoked"].as_bool()), (200, Some(false)));

    // The token and what was narrowed from it are refused; the other is not.
    for t in [&ext, &child] {
        let r = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {t}"))]).await;
        assert_eq!((r.status, r.reason().as_str()), (401, "revoked"));
    }
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {other}"))]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn request_bodies_are_json_objects_never_read_by_position() {
    let (_dir, h) = with_store().await;
    let root = master(&h);
    // As an array, serde would read these into the request's fields in order.
    for (target, body) in [
        ("/v1/tokens", r#"["positional", "", null, "admin", true, null, [], null, null, "1h"]"#),
        ("/v1/tokens/narrow", r#"[["trading-account-management-api"], ["reader"]]"#),
        ("/v1/registration-tokens", r#"["device", "admin", null, "1h"]"#),
        ("/v1/revocations", r#"["ext-1", "narrowgate"]"#),
    ] {
        let r = h.api_post(target, &[("Authorization", &root)], body).await;
        assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"), "{target}: {}", r.body);
        assert!(r.json()["message"].as_str().unwrap_or("").contains("not a JSON object"), "{target}: {}", r.body);
    }
    let listed = h.api_request("GET", "/v1/tokens?name=positional", &[("Authorization", &root)]).await;
    assert_eq!(listed.json()["tokens"], json!([]));
    h.shutdown().await;
}

/// A caller whose token is revoked while its request body is still
/// arriving mints nothing: the body is read, then the caller is asked
/// again under the policy in force.
#[tokio::test]
async fn a_token_revoked_while_its_body_trickles_in_mints_nothing() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_dir, h) = with_store().await;
    let root = master(&h);
    let created =
        h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"ops","role":"admin","lifetime":"1h"}"#).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let ops = format!("Bearer {}", created.json()["token"].as_str().expect("token"));
    let ops_id = created.json()["id"].as_str().expect("id").to_string();

    let body = r#"{"name":"late","lifetime":"1h"}"#;
    let mut slow = tokio::net::TcpStream::connect(h.api).await.expect("connect");
    let len = body.len().to_string();
    let headers = [
        ("Host", "t"),
        ("Authorization", ops.as_str()),
        ("Content-Type", "application/json"),
        ("Content-Length", len.as_str()),
        ("Connection", "close"),
    ];
    // The head only: the body follows in two writes.
    let head = support::raw_request("POST", "/v1/tokens", &headers, "");
    // The revocation must come after the first check of the caller (once
    // the head is in) and before the second (once the body is). `ops` was
    // never checked before, so its first check counts a token-cache miss;
    // the rest of that check (verify, revocation) neither yields nor does
    // I/O, so it is over before the revocation, an HTTP call of its own,
    // lands: the service is then reading the body.
    const MISSES: &str = r#"narrowgate_token_cache_total{result="miss"}"#;
    let before = support::metric(h.admin, MISSES).await.unwrap_or(0.0);
    slow.write_all(head.as_bytes()).await.expect("head");
    slow.write_all(&body.as_bytes()[..5]).await.expect("first bytes");
    support::eventually_async(std::time::Duration::from_secs(5), || async {
        (support::metric(h.admin, MISSES).await.unwrap_or(0.0) > before).then_some(())
    })
    .await;
    let revoked = h.api_request("DELETE", &format!("/v1/tokens/{ops_id}"), &[("Authorization", &root)]).await;
    assert_eq!(revoked.status, 204, "{}", revoked.body);
    slow.write_all(&body.as_bytes()[5..]).await.expect("the rest");
    let mut buf = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(5), slow.read_to_end(&mut buf))
        .await
        .expect("answered")
        .expect("read");
    let resp = support::parse_response(&buf);
    assert_eq!((resp.status, resp.reason().as_str()), (401, "revoked"), "{}", resp.body);
    let listed = h.api_request("GET", "/v1/tokens?name=late", &[("Authorization", &root)]).await;
    assert!(!listed.body.contains("\"late\""), "a token was minted: {}", listed.body);
    h.shutdown().await;
}
