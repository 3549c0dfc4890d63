//! The authority model, through the HTTP API and the facades: management
//! authority only from this gateway's issuer (or one configured
//! `may_manage`), only a master acts on a master, a non-master admin's
//! tokens die with it, registration tokens are bounded and revocable,
//! narrowing narrows tenant permissions, nothing is issued the proxy would
//! refuse as too large, and a revoked token's name is free again.

use crate::support;

use narrowgate::token::testkit::{TestKey, payload, rule};
use narrowgate::token::{IssuerPolicy, now_unix};
use serde_json::{Value, json};
use support::Harness;

const ACCOUNT: &str = "/users/current/accounts/a1";

fn everything() -> Value {
    json!([rule("*", &["*"], &["*:$USER_ID$:*"])])
}

/// A token of the harness's own issuer with this role and master flag.
fn own(h: &Harness, sub: &str, role: &str, master: bool, ttl: u64) -> String {
    let mut p = payload(sub, now_unix(), ttl, everything());
    p["role"] = json!(role);
    p["master"] = json!(master);
    p["jti"] = json!(format!("{sub}-jti"));
    format!("Bearer {}", h.sign(&p))
}

async fn with_store() -> (tempfile::TempDir, Harness) {
    with_store_and(|_| {}).await
}

async fn with_store_and(edit: impl Fn(&mut narrowgate::config::Config)) -> (tempfile::TempDir, Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = support::sqlite_store(dir.path().join("ng.db"));
    let h = Harness::start_with(
        |_| {},
        |c| {
            store(c);
            edit(c)
        },
    )
    .await;
    (dir, h)
}

fn created(r: &support::Response) -> (String, String) {
    assert_eq!(r.status, 201, "{}", r.body);
    let j = r.json();
    (j["token"].as_str().expect("token").to_string(), j["id"].as_str().expect("id").to_string())
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// An external issuer (`https://idp.example`) trusted for its users' tokens,
/// with `may_manage` as given; its key.
fn external_issuer(may_manage: bool) -> (TestKey, impl Fn(&mut narrowgate::config::Config)) {
    let key = TestKey::es256("idp-1");
    let vk = key.verification_key(0);
    let edit = move |c: &mut narrowgate::config::Config| {
        let issuer = c.keys.add_issuer(IssuerPolicy {
            name: "idp".into(),
            issuer: "https://idp.example".into(),
            audience: vec![],
            clock_skew_secs: 30,
            allow_missing_exp: false,
            max_lifetime_secs: None,
            may_manage,
            minted_here: false,
            mapping: None,
            exchange: None,
        });
        let mut k = vk.clone();
        k.issuer = issuer;
        c.keys.add_key(k).expect("kid");
    };
    (key, edit)
}

fn idp_token(key: &TestKey, role: &str, master: bool) -> String {
    let mut p = payload("idp-admin", now_unix(), 3600, everything());
    p["iss"] = json!("https://idp.example");
    p["role"] = json!(role);
    p["master"] = json!(master);
    bearer(&key.sign(&p))
}

#[tokio::test]
async fn management_authority_comes_only_from_this_gateways_issuer() {
    let (key, trust_users) = external_issuer(false);
    let (_dir, h) = with_store_and(&trust_users).await;
    let ext = idp_token(&key, "admin", true);
    // As a user it works on the proxy: the issuer is trusted for access.
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &ext)]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    // Its `role: admin, master: true` confer nothing here.
    for (method, target, body, code) in [
        ("POST", "/v1/tokens", r#"{"name":"x","lifetime":"1h","master":true,"role":"admin"}"#, "admin_required"),
        ("POST", "/v1/registration-tokens", r#"{"name":"x","role":"Administrator","ttl":"1h"}"#, "admin_required"),
        ("POST", "/v1/revocations", r#"{"jti":"x","issuer":"narrowgate"}"#, "admin_required"),
        ("GET", "/v1/tokens", "", "admin_required"),
        ("GET", "/v1/revocations", "", "feed_reader_required"),
    ] {
        let r = if method == "POST" {
            h.api_post(target, &[("Authorization", &ext)], body).await
        } else {
            h.api_request(method, target, &[("Authorization", &ext)]).await
        };
        assert_eq!((r.status, r.reason().as_str()), (403, code), "{method} {target}: {}", r.body);
    }
    // Crafter's facade: a master JWT from elsewhere is no master here.
    let jwt = ext.trim_start_matches("Bearer ");
    let r = h
        .api_post(
            &format!("/api/1/access_token/create?accessTokenId={jwt}"),
            &[],
            r#"{"application":"x","master":true}"#,
        )
        .await;
    assert_eq!((r.status, r.json()["errorCode"].as_str()), (403, Some("ACTION_DENIED")), "{}", r.body);
    h.shutdown().await;

    // An issuer the config trusts to manage: its admins may.
    let (key, trust_admins) = external_issuer(true);
    let (_dir, h) = with_store_and(&trust_admins).await;
    let ext_admin = idp_token(&key, "admin", false);
    let (made, made_id) = created(
        &h.api_post("/v1/tokens", &[("Authorization", &ext_admin)], r#"{"name":"made","lifetime":"30m"}"#).await,
    );
    // What it mints names it by its issuer and jti, and it sees and acts on that.
    let ext_jti =
        narrowgate::token::mapping::payload_of(ext_admin.trim_start_matches("Bearer ")).expect("a JWT")["jti"]
            .as_str()
            .expect("jti")
            .to_string();
    let hr = &h;
    let whoami = move |t: String| async move { hr.api_request("GET", "/v1/whoami", &[("Authorization", &t)]).await };
    let made = bearer(&made);
    assert_eq!(whoami(made.clone()).await.json()["lineage"], json!([format!("https://idp.example#{ext_jti}")]));
    let listed = h.api_request("GET", "/v1/tokens", &[("Authorization", &ext_admin)]).await;
    assert!(listed.body.contains(&made_id), "{}", listed.body);

    // Another of its admins whose jti spells an admin of this gateway
    // reaches nothing of that admin's.
    let master = own(&h, "root", "admin", true, 3600);
    let (ops, ops_id) = created(
        &h.api_post("/v1/tokens", &[("Authorization", &master)], r#"{"name":"ops","role":"admin","lifetime":"1h"}"#)
            .await,
    );
    let (_, minted_id) = created(
        &h.api_post("/v1/tokens", &[("Authorization", &bearer(&ops))], r#"{"name":"opsc","lifetime":"30m"}"#).await,
    );
    let mut p = payload("idp-admin", now_unix(), 3600, everything());
    (p["iss"], p["role"], p["jti"]) = (json!("https://idp.example"), json!("admin"), json!(ops_id));
    let impostor = bearer(&key.sign(&p));
    for id in [&ops_id, &minted_id] {
        let r = h.api_request("DELETE", &format!("/v1/tokens/{id}"), &[("Authorization", &impostor)]).await;
        assert_eq!((r.status, r.reason().as_str()), (404, "not_found"), "{id}: {}", r.body);
    }
    let listed = h.api_request("GET", "/v1/tokens", &[("Authorization", &impostor)]).await;
    assert!(!listed.body.contains(&minted_id) && !listed.body.contains(&ops_id), "{}", listed.body);
    assert_eq!(whoami(bearer(&ops)).await.status, 200);

    // Revoking its admin's jti (the issuer's token) kills what it minted.
    let revoke = json!({ "jti": ext_jti, "issuer": "https://idp.example" }).to_string();
    assert_eq!(h.api_post("/v1/revocations", &[("Authorization", &master)], &revoke).await.status, 201);
    assert_eq!(whoami(made).await.reason(), "revoked");
    h.shutdown().await;
}

#[tokio::test]
async fn only_a_master_acts_on_a_master_token() {
    let (_dir, h) = with_store().await;
    let master = own(&h, "root", "admin", true, 3600);
    let admin = own(&h, "ops", "admin", false, 3600);
    let body = r#"{"name":"second-master","role":"admin","master":true,"form":"reference","lifetime":"none"}"#;
    let (m2, m2_id) = created(&h.api_post("/v1/tokens", &[("Authorization", &master)], body).await);
    for (method, target) in
        [("DELETE", format!("/v1/tokens/{m2_id}")), ("DELETE", "/v1/tokens?name=second-master".into())]
    {
        let r = h.api_request(method, &target, &[("Authorization", &admin)]).await;
        assert_eq!((r.status, r.reason().as_str()), (403, "master_required"), "{target}: {}", r.body);
    }
    let by_jti = json!({"jti": m2_id, "issuer": "narrowgate"}).to_string();
    let r = h.api_post("/v1/revocations", &[("Authorization", &admin)], &by_jti).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "master_required"), "{}", r.body);
    // Still in force; a master may.
    assert_eq!(h.api_request("GET", "/v1/whoami", &[("Authorization", &bearer(&m2))]).await.status, 200);
    let r = h.api_request("DELETE", &format!("/v1/tokens/{m2_id}"), &[("Authorization", &master)]).await;
    assert_eq!(r.status, 204);
    assert_eq!(h.api_request("GET", "/v1/whoami", &[("Authorization", &bearer(&m2))]).await.reason(), "revoked");
    h.shutdown().await;
}

#[tokio::test]
async fn what_a_non_master_admin_mints_dies_with_it() {
    let (_dir, h) = with_store().await;
    let master = own(&h, "root", "admin", true, 3600);
    // An admin (not master) for an hour, made by the master.
    let (admin, admin_id) = created(
        &h.api_post("/v1/tokens", &[("Authorization", &master)], r#"{"name":"ops","role":"admin","lifetime":"1h"}"#)
            .await,
    );
    let admin = bearer(&admin);
    let admin_exp = h.api_request("GET", "/v1/whoami", &[("Authorization", &admin)]).await.json()["expiresAt"]
        .as_i64()
        .expect("exp");

    // Nothing it makes outlives it.
    for body in [r#"{"name":"long","lifetime":"2h"}"#, r#"{"name":"forever","form":"reference","lifetime":"none"}"#] {
        let r = h.api_post("/v1/tokens", &[("Authorization", &admin)], body).await;
        assert_eq!((r.status, r.reason().as_str()), (403, "would_widen"), "{body}: {}", r.body);
        assert!(r.json()["message"].as_str().unwrap_or("").starts_with("expiresAt"), "{}", r.body);
    }
    let r = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &admin)],
            r#"{"name":"late","role":"User","ttl":"2h"}"#,
        )
        .await;
    assert_eq!((r.status, r.reason().as_str()), (403, "would_widen"), "{}", r.body);

    // What it makes carries it in its lineage.
    let (child, _) =
        created(&h.api_post("/v1/tokens", &[("Authorization", &admin)], r#"{"name":"web","lifetime":"30m"}"#).await);
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &bearer(&child))]).await.json();
    assert_eq!(who["lineage"], json!([admin_id]));
    // A registration token: its yielded token never expires, asked; it is
    // capped at the admin's expiry.
    let reg = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &admin)],
            r#"{"name":"device","role":"User","ttl":"10m"}"#,
        )
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    let reg_id = reg.json()["id"].as_str().expect("id").to_string();
    assert!(!reg_id.is_empty());
    let redeemed =
        h.api_post("/v1/registration-tokens/redeem", &[], &json!({"token": reg.json()["token"]}).to_string()).await;
    let (device, _) = created(&redeemed);
    assert_eq!(redeemed.json()["expiresAt"].as_i64(), Some(admin_exp), "capped at its creator's expiry");
    let pending = h
        .api_post(
            "/v1/registration-tokens",
            &[("Authorization", &admin)],
            r#"{"name":"later","role":"User","ttl":"10m"}"#,
        )
        .await;
    assert_eq!(pending.status, 201);
    for t in [&child, &device] {
        assert_eq!(h.get(ACCOUNT, &[("Authorization", &bearer(t))]).await.status, 200);
    }

    // Revoking the admin revokes everything it made.
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=ops", &[("Authorization", &master)]).await.status, 204);
    for t in [&child, &device] {
        let r = h.get(ACCOUNT, &[("Authorization", &bearer(t))]).await;
        assert_eq!((r.status, r.reason().as_str()), (401, "revoked"));
    }
    let r =
        h.api_post("/v1/registration-tokens/redeem", &[], &json!({"token": pending.json()["token"]}).to_string()).await;
    assert_eq!((r.status, r.reason().as_str()), (410, "registration_revoked"), "{}", r.body);
    assert_eq!(h.upstream_received().len(), 2);

    // A master's tokens may outlive it: that is what master means.
    let r = h.api_post("/v1/tokens", &[("Authorization", &master)], r#"{"name":"long-lived","lifetime":"720h"}"#).await;
    let (long, _) = created(&r);
    assert_eq!(
        h.api_request("GET", "/v1/whoami", &[("Authorization", &bearer(&long))]).await.json()["lineage"],
        json!([])
    );
    h.shutdown().await;
}

#[tokio::test]
async fn registration_tokens_are_bounded_and_revocable_by_id() {
    let (_dir, h) = with_store_and(|c| c.registration.max_ttl = 3600).await;
    let master = own(&h, "root", "admin", true, 3600);
    let r = h
        .api_post("/v1/registration-tokens", &[("Authorization", &master)], r#"{"name":"a","role":"User","ttl":"2h"}"#)
        .await;
    assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"), "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap_or("").starts_with("ttl"), "{}", r.body);
    let reg = h
        .api_post("/v1/registration-tokens", &[("Authorization", &master)], r#"{"name":"b","role":"User","ttl":"30m"}"#)
        .await;
    assert_eq!(reg.status, 201, "{}", reg.body);
    let id = reg.json()["id"].as_str().expect("id").to_string();
    let admin = own(&h, "ops", "admin", false, 3600);
    let user = own(&h, "u", "user", false, 3600);
    let r = h.api_request("DELETE", &format!("/v1/registration-tokens/{id}"), &[("Authorization", &user)]).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "admin_required"));
    // A non-master admin's reach is its own lineage: the master's
    // registration token is not in it.
    let r = h.api_request("DELETE", &format!("/v1/registration-tokens/{id}"), &[("Authorization", &admin)]).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = h.api_request("DELETE", &format!("/v1/registration-tokens/{id}"), &[("Authorization", &master)]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = h.api_request("DELETE", &format!("/v1/registration-tokens/{id}"), &[("Authorization", &master)]).await;
    assert_eq!(r.status, 404);
    let r = h.api_post("/v1/registration-tokens/redeem", &[], &json!({"token": reg.json()["token"]}).to_string()).await;
    assert_eq!((r.status, r.reason().as_str()), (410, "registration_revoked"));
    h.shutdown().await;

    // A configured bound on the yielded token's lifetime.
    let (_dir, h) = with_store_and(|c| c.registration.max_lifetime = Some(86_400)).await;
    let master = own(&h, "root", "admin", true, 3600);
    for (body, field) in [
        (r#"{"name":"c","role":"User","ttl":"1h","lifetime":"48h"}"#, "lifetime"),
        (r#"{"name":"d","role":"User","ttl":"1h"}"#, "lifetime"),
    ] {
        let r = h.api_post("/v1/registration-tokens", &[("Authorization", &master)], body).await;
        assert_eq!((r.status, r.reason().as_str()), (400, "bad_request"), "{body}");
        assert!(r.json()["message"].as_str().unwrap_or("").starts_with(field), "{}", r.body);
    }
    h.shutdown().await;
}

#[tokio::test]
async fn narrowing_narrows_tenant_permissions_too() {
    let (_dir, h) = with_store().await;
    let master = own(&h, "root", "admin", true, 3600);
    let body = json!({
        "name": "crm", "lifetime": "1h",
        "accessRules": [{"application": "trading-account-management-api", "service": "*",
            "methodGroups": [{"group": "*", "methods": [{"method": "*"}]}], "roles": ["*"],
            "resources": [{"entity": "*", "id": "*"}]}],
        "tenantPermissions": [{"tenant": "*", "allowedActions": ["*"]}],
    });
    let (parent, _) = created(&h.api_post("/v1/tokens", &[("Authorization", &master)], &body.to_string()).await);
    let parent = bearer(&parent);
    let tenant = "/profile/api/1/tenant/acme";
    assert_eq!(h.get(tenant, &[("Authorization", &parent)]).await.status, 200, "the parent may act on any tenant");

    // Narrowed to one account: the tenant permissions are gone.
    let r = h
        .api_post(
            "/v1/tokens/narrow",
            &[("Authorization", &parent)],
            r#"{"resources":[{"entity":"account","id":"a1"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let child = bearer(r.json()["token"].as_str().expect("token"));
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &child)]).await.json();
    assert!(who.get("tenantPermissions").is_none(), "{who}");
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &child)]).await.status, 200);
    assert_eq!(h.get(tenant, &[("Authorization", &child)]).await.status, 403);

    // Through MetaApi's facade alike.
    let r = h
        .api_post(
            "/users/current/narrow-down-auth-token",
            &[("auth-token", parent.trim_start_matches("Bearer "))],
            r#"{"resources":[{"entity":"account","id":"a1"}]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let via_metaapi = bearer(r.json()["token"].as_str().expect("token"));
    assert_eq!(h.get(tenant, &[("Authorization", &via_metaapi)]).await.status, 403);

    // Kept when asked for, within the parent's; never wider.
    let keep = json!({"resources": [{"entity": "account", "id": "a1"}],
                      "tenantPermissions": [{"tenant": "acme", "allowedActions": ["READ_TENANT"]}]});
    let r = h.api_post("/v1/tokens/narrow", &[("Authorization", &parent)], &keep.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let kept = bearer(r.json()["token"].as_str().expect("token"));
    assert_eq!(h.get(tenant, &[("Authorization", &kept)]).await.status, 200);
    assert_eq!(h.get("/profile/api/1/tenant/globex", &[("Authorization", &kept)]).await.status, 403);
    let wider = json!({"tenantPermissions": [{"tenant": "*", "allowedActions": ["*"]}]});
    let r = h.api_post("/v1/tokens/narrow", &[("Authorization", &kept)], &wider.to_string()).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "would_widen"), "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap_or("").starts_with("tenantPermissions[0]"), "{}", r.body);
    h.shutdown().await;
}

#[tokio::test]
async fn a_token_the_proxy_would_refuse_as_too_large_is_never_issued() {
    let (_dir, h) = with_store_and(|c| c.max_token_bytes = 2048).await;
    let master = own(&h, "root", "admin", true, 3600);
    // Thirty rules: far more than 2 KiB once signed.
    let rules: Vec<Value> = (0..30)
        .map(|i| {
            json!({"id": format!("rule-{i}"), "application": "trading-account-management-api", "service": "rest",
                   "methodGroups": [{"group": "account-management", "methods": [{"method": "getAccount"}]}],
                   "roles": ["reader"], "resources": [{"entity": "account", "id": format!("account-{i}")}]})
        })
        .collect();
    let body = json!({"name": "huge", "lifetime": "1h", "accessRules": rules}).to_string();
    let r = h.api_post("/v1/tokens", &[("Authorization", &master)], &body).await;
    assert_eq!((r.status, r.reason().as_str()), (400, "token_too_large"), "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap_or("").contains("2048"), "names the limit: {}", r.body);
    let narrow = json!({"accessRules": rules}).to_string();
    let r = h.api_post("/v1/tokens/narrow", &[("Authorization", &master)], &narrow).await;
    assert_eq!((r.status, r.reason().as_str()), (400, "token_too_large"), "{}", r.body);
    let listed = h.api_request("GET", "/v1/tokens", &[("Authorization", &master)]).await.json();
    assert!(
        listed["tokens"].as_array().expect("list").iter().all(|t| t["name"] != "huge" && t["kind"] != "narrowed"),
        "nothing was recorded: {listed}"
    );
    // The same as a reference token fits: its secret is short.
    let body = json!({"name": "huge", "form": "reference", "lifetime": "1h", "accessRules": rules}).to_string();
    let (secret, _) = created(&h.api_post("/v1/tokens", &[("Authorization", &master)], &body).await);
    assert_eq!(
        h.get(ACCOUNT, &[("Authorization", &bearer(&secret))]).await.status,
        403,
        "a1 is not among its accounts"
    );
    assert_eq!(h.get("/users/current/accounts/account-7", &[("Authorization", &bearer(&secret))]).await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn a_revoked_tokens_name_is_free_again() {
    let (_dir, h) = with_store().await;
    let master = own(&h, "root", "admin", true, 3600);
    let (first, _) = created(
        &h.api_post("/v1/tokens", &[("Authorization", &master)], r#"{"name":"reports","lifetime":"1h"}"#).await,
    );
    let dup = h.api_post("/v1/tokens", &[("Authorization", &master)], r#"{"name":"reports","lifetime":"1h"}"#).await;
    assert_eq!((dup.status, dup.reason().as_str()), (409, "conflict"));
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=reports", &[("Authorization", &master)]).await.status, 204);
    let (second, _) = created(
        &h.api_post("/v1/tokens", &[("Authorization", &master)], r#"{"name":"reports","lifetime":"1h"}"#).await,
    );
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &bearer(&first))]).await.reason(), "revoked");
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &bearer(&second))]).await.status, 200);
    // By name now means the live one.
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=reports", &[("Authorization", &master)]).await.status, 204);
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &bearer(&second))]).await.reason(), "revoked");
    h.shutdown().await;
}

/// The tokens the master lists: (id, name, state).
async fn all_tokens(h: &Harness, master: &str) -> Vec<Value> {
    let r = h.api_request("GET", "/v1/tokens?limit=1000", &[("Authorization", master)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["tokens"].as_array().expect("list").clone()
}

/// Two non-master admins made by a master, each with a family of its own:
/// each sees, revokes and narrows only itself and its lineage — never the
/// other's tokens, never the master's; the master all of them. Both sides:
/// what the caller got, and what the store and the proxy then hold.
#[tokio::test]
async fn a_non_master_admin_sees_and_acts_only_within_its_lineage() {
    let (_dir, h) = with_store().await;
    let master = own(&h, "root", "admin", true, 3600);
    let admin = |name: &'static str| {
        let h = &h;
        let master = master.clone();
        async move {
            let body = json!({"name": name, "role": "admin", "lifetime": "1h"}).to_string();
            let (secret, id) = created(&h.api_post("/v1/tokens", &[("Authorization", &master)], &body).await);
            (bearer(&secret), id)
        }
    };
    let ((a, a_id), (b, b_id)) = (admin("ops-a").await, admin("ops-b").await);
    let make = |by: &str, name: &str| {
        let body = json!({"name": name, "lifetime": "30m", "form": "reference"}).to_string();
        let h = &h;
        let by = by.to_string();
        async move { created(&h.api_post("/v1/tokens", &[("Authorization", &by)], &body).await) }
    };
    let (a_user, a_user_id) = make(&a, "a-user").await;
    let child =
        h.api_post("/v1/tokens/narrow", &[("Authorization", &bearer(&a_user))], r#"{"roles":["reader"]}"#).await;
    assert_eq!(child.status, 200, "{}", child.body);
    let a_child_id = child.json()["id"].as_str().expect("id").to_string();
    let (b_user, b_user_id) = make(&b, "b-user").await;
    let (_, m_user_id) = make(&master, "m-user").await;
    let (_, m2_id) = created(
        &h.api_post(
            "/v1/tokens",
            &[("Authorization", &master)],
            r#"{"name":"second-master","role":"admin","master":true,"form":"reference","lifetime":"none"}"#,
        )
        .await,
    );
    let reg = |by: &str, name: &str| {
        let body = json!({"name": name, "role": "User", "ttl": "10m"}).to_string();
        let h = &h;
        let by = by.to_string();
        async move {
            let r = h.api_post("/v1/registration-tokens", &[("Authorization", &by)], &body).await;
            assert_eq!(r.status, 201, "{}", r.body);
            (r.json()["token"].as_str().expect("secret").to_string(), r.json()["id"].as_str().expect("id").to_string())
        }
    };
    let (_, a_reg_id) = reg(&a, "a-device").await;
    let (b_reg, b_reg_id) = reg(&b, "b-device").await;
    let before = all_tokens(&h, &master).await.len();

    // Listing: itself and its lineage, nothing else.
    let mut seen: Vec<String> = all_ids(&h, &a).await;
    seen.sort();
    let mut want = vec![a_id.clone(), a_user_id.clone(), a_child_id.clone()];
    want.sort();
    assert_eq!(seen, want, "ops-a lists itself and its lineage");
    assert_eq!(all_ids(&h, &b).await.len(), 2, "ops-b: itself and b-user");
    assert_eq!(all_tokens(&h, &master).await.len(), before, "the master lists every token");
    for name in ["b-user", "m-user", "ops-b", "second-master"] {
        let r = h.api_request("GET", &format!("/v1/tokens?name={name}"), &[("Authorization", &a)]).await;
        assert_eq!(r.json()["tokens"], json!([]), "{name} is not listed to ops-a");
    }

    // Viewing, revoking, narrowing what is out of reach: as if it did not
    // exist (a master: master_required to revoke).
    for (what, id) in [("a peer's token", &b_user_id), ("a peer", &b_id), ("a master's token", &m_user_id)] {
        let r = h.api_request("GET", &format!("/v1/tokens/{id}"), &[("Authorization", &a)]).await;
        assert_eq!((r.status, r.reason().as_str()), (404, "not_found"), "view {what}: {}", r.body);
        let r = h.api_request("DELETE", &format!("/v1/tokens/{id}"), &[("Authorization", &a)]).await;
        assert_eq!((r.status, r.reason().as_str()), (404, "not_found"), "revoke {what}: {}", r.body);
        let r =
            h.api_post(&format!("/v1/tokens/{id}/narrow"), &[("Authorization", &a)], r#"{"roles":["reader"]}"#).await;
        assert_eq!((r.status, r.reason().as_str()), (404, "not_found"), "narrow {what}: {}", r.body);
        let by_jti = json!({"jti": id, "issuer": "narrowgate"}).to_string();
        let r = h.api_post("/v1/revocations", &[("Authorization", &a)], &by_jti).await;
        assert_eq!((r.status, r.reason().as_str()), (404, "not_found"), "revoke {what} by jti: {}", r.body);
    }
    let r = h.api_request("DELETE", "/v1/tokens?name=b-user", &[("Authorization", &a)]).await;
    assert_eq!((r.status, r.reason().as_str()), (404, "not_found"), "by name: {}", r.body);
    let r = h.api_request("GET", &format!("/v1/tokens/{m2_id}"), &[("Authorization", &a)]).await;
    assert_eq!(r.status, 404, "a master is not shown: {}", r.body);
    let r = h.api_request("DELETE", &format!("/v1/tokens/{m2_id}"), &[("Authorization", &a)]).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "master_required"));
    let r = h.api_request("DELETE", &format!("/v1/registration-tokens/{b_reg_id}"), &[("Authorization", &a)]).await;
    assert_eq!(r.status, 404, "a peer's registration token: {}", r.body);
    // A jti with no record here is in no one's lineage: a master's.
    let foreign = json!({"jti": "from-elsewhere", "issuer": "narrowgate"}).to_string();
    let r = h.api_post("/v1/revocations", &[("Authorization", &a)], &foreign).await;
    assert_eq!((r.status, r.reason().as_str()), (403, "master_required"), "{}", r.body);

    // Nothing happened: the store holds what it held, the peer's tokens
    // still work, its registration token still redeems.
    assert_eq!(all_tokens(&h, &master).await.len(), before, "nothing was minted");
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &bearer(&b_user))]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    let redeemed = h.api_post("/v1/registration-tokens/redeem", &[], &json!({"token": b_reg}).to_string()).await;
    assert_eq!(redeemed.status, 201, "{}", redeemed.body);

    // Within its lineage it may: narrow a token it minted (the child is
    // that token's, in its lineage and the admin's), revoke one, and its
    // own registration tokens.
    let r = h
        .api_post(&format!("/v1/tokens/{a_user_id}/narrow"), &[("Authorization", &a)], r#"{"roles":["reader"]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let grandchild = bearer(r.json()["token"].as_str().expect("token"));
    let who = h.api_request("GET", "/v1/whoami", &[("Authorization", &grandchild)]).await.json();
    assert_eq!(who["lineage"], json!([a_id, a_user_id]), "{who}");
    assert_eq!(who["subject"], "a-user", "{who}");
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &grandchild)]).await.status, 200);
    let r = h.api_request("DELETE", &format!("/v1/registration-tokens/{a_reg_id}"), &[("Authorization", &a)]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = h.api_request("DELETE", &format!("/v1/tokens/{a_child_id}"), &[("Authorization", &a)]).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // The master narrows anyone's token.
    let r = h
        .api_post(&format!("/v1/tokens/{b_user_id}/narrow"), &[("Authorization", &master)], r#"{"roles":["reader"]}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Revoking ops-a revokes its lineage; every view says so, with the
    // ancestor, and nothing more is narrowed from it.
    assert_eq!(h.api_request("DELETE", "/v1/tokens?name=ops-a", &[("Authorization", &master)]).await.status, 204);
    assert_eq!(h.get(ACCOUNT, &[("Authorization", &grandchild)]).await.reason(), "revoked");
    let shown = h.api_request("GET", &format!("/v1/tokens/{a_user_id}"), &[("Authorization", &master)]).await.json();
    assert_eq!(
        (shown["state"].as_str(), shown["revokedBy"].as_str()),
        (Some("revoked"), Some(a_id.as_str())),
        "{shown}"
    );
    assert!(shown["revokedAt"].is_i64(), "the ancestor's revocation time: {shown}");
    let listed = all_tokens(&h, &master).await;
    let state = |id: &str| listed.iter().find(|t| t["id"] == id).map(|t| t["state"].clone());
    assert_eq!(state(&a_user_id), Some(json!("revoked")));
    assert_eq!(state(&a_id), Some(json!("revoked")));
    assert_eq!(state(&b_user_id), Some(json!("live")));
    let r = h
        .api_post(&format!("/v1/tokens/{a_user_id}/narrow"), &[("Authorization", &master)], r#"{"roles":["reader"]}"#)
        .await;
    assert_eq!((r.status, r.reason().as_str()), (410, "not_live"), "{}", r.body);
    h.shutdown().await;
}

/// The ids of every token `by` may list.
async fn all_ids(h: &Harness, by: &str) -> Vec<String> {
    all_tokens(h, by).await.iter().map(|t| t["id"].as_str().expect("id").to_string()).collect()
}
