//! Every error of the token service is one `ApiError` rendering: a code
//! from one closed set (the service's own, or the proxy's reasons for a
//! refused credential) and a message that never repeats what the client
//! sent — not in the native API, not in any facade.

use crate::support;

use narrowgate::api::ApiCode;
use narrowgate::reason::Reason;
use narrowgate::token::testkit::rule;
use serde_json::json;
use support::{Harness, master, send_raw};

/// Sent in every field below; never to be seen in a reply.
const MARK: &str = "zqx7731mark";

async fn post(
    h: &Harness,
    target: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &str,
) -> support::Response {
    let len = body.len().to_string();
    let mut all = vec![("Host", "t"), ("Content-Type", content_type)];
    all.extend_from_slice(headers);
    all.extend([("Content-Length", len.as_str()), ("Connection", "close")]);
    send_raw(h.api, support::raw_request("POST", target, &all, body).as_bytes()).await
}

#[tokio::test]
async fn no_error_repeats_the_request_and_every_code_is_from_the_closed_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut h = Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("ng.db"))).await;
    let crafter = std::mem::take(&mut h.gateway.as_mut().expect("running").crafter_tokens);
    let crafter_admin = crafter[0].1.clone();
    let root = master(&h);
    let auth = [("Authorization", root.as_str())];
    let m = MARK;
    let native_posts = [
        ("/v1/tokens", format!(r#"{{"name":"x","lifetime":"1h","role":"{m}"}}"#)),
        ("/v1/tokens", format!(r#"{{"name":"x","lifetime":"1h","form":"{m}"}}"#)),
        ("/v1/tokens", format!(r#"{{"name":"x","lifetime":"{m}"}}"#)),
        ("/v1/tokens", format!(r#"{{"name":"x","expiresAt":"{m}"}}"#)),
        ("/v1/tokens", format!(r#"{{"name":"x","lifetime":"1h","{m}":1}}"#)),
        ("/v1/tokens", format!(r#"{{"name":{{"{m}":1}},"lifetime":"1h"}}"#)),
        ("/v1/tokens", format!(r#"["{m}"]"#)),
        ("/v1/tokens", format!(r#"{{"name":"{m}"#)),
        (
            "/v1/tokens",
            format!(
                r#"{{"name":"x","form":"reference","tenantPermissions":[{{"tenant":"t","allowedActions":["{m}"]}}]}}"#
            ),
        ),
        (
            "/v1/tokens",
            format!(
                r#"{{"name":"x","lifetime":"1h","accessRules":[{{"application":"{m}","service":"*","methodGroups":[{{"group":"*","methods":[{{"method":"*"}}]}}],"roles":["*"],"resources":[{{"entity":"*","id":"*"}}]}}]}}"#
            ),
        ),
        ("/v1/tokens/narrow", format!(r#"{{"applications":["{m}"]}}"#)),
        ("/v1/tokens/narrow", format!(r#"{{"roles":["{m}"]}}"#)),
        ("/v1/tokens/narrow", format!(r#"{{"resources":[{{"entity":"{m}","id":"x"}}]}}"#)),
        ("/v1/tokens/narrow", format!(r#"{{"validityInHours":"{m}"}}"#)),
        (&format!("/v1/tokens/narrow?validity-in-hours={m}") as &str, "{}".into()),
        ("/v1/registration-tokens", format!(r#"{{"name":"x","role":"{m}","ttl":"1h"}}"#)),
        ("/v1/registration-tokens", format!(r#"{{"name":"x","role":"User","ttl":"{m}"}}"#)),
        ("/v1/registration-tokens/redeem", format!(r#"{{"token":"{m}"}}"#)),
        ("/v1/registration-tokens/redeem", format!(r#"{{"token":"ngreg_{m}"}}"#)),
        ("/v1/revocations", format!(r#"{{"jti":"x","issuer":"{m}"}}"#)),
        ("/v1/revocations", format!(r#"{{"jti":"x","issuer":"narrowgate","expiresAt":"{m}"}}"#)),
    ];
    let mut seen = Vec::new();
    for (target, body) in &native_posts {
        seen.push((target.to_string(), post(&h, target, &auth, "application/json", body).await));
    }
    for target in
        [format!("/v1/tokens?kind={m}"), format!("/v1/tokens?limit={m}"), format!("/v1/tokens/{m}"), format!("/v1/{m}")]
    {
        seen.push((target.clone(), h.api_request("GET", &target, &auth).await));
    }
    seen.push((
        format!("DELETE /v1/tokens?name={m}"),
        h.api_request("DELETE", &format!("/v1/tokens?name={m}"), &auth).await,
    ));
    seen.push((
        format!("DELETE /v1/registration-tokens/{m}"),
        h.api_request("DELETE", &format!("/v1/registration-tokens/{m}"), &auth).await,
    ));
    // A bad credential, in every place one goes.
    seen.push((
        "whoami".into(),
        h.api_request("GET", "/v1/whoami", &[("Authorization", &format!("Bearer {m}.{m}.{m}"))]).await,
    ));
    seen.push(("whoami ref".into(), h.api_request("GET", "/v1/whoami", &[("auth-token", m)]).await));

    let codes: Vec<&str> = ApiCode::ALL.iter().map(|c| c.code()).chain(Reason::iter().map(|r| r.code())).collect();
    for (what, r) in &seen {
        assert!((400..600).contains(&r.status), "{what}: {} {}", r.status, r.body);
        assert!(!r.body.contains(MARK), "{what}: the reply repeats the request: {}", r.body);
        let code = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(codes.contains(&code.as_str()), "{what}: {code:?} is not a code of the closed set: {}", r.body);
        assert!(r.json()["message"].as_str().is_some_and(|s| !s.is_empty()), "{what}: {}", r.body);
    }

    // The facades, each in its own shape.
    let crafter_bad = [
        format!(r#"{{"id":"{m}!","application":"x"}}"#),
        format!(r#"{{"application":"x","expiresOn":"{m}"}}"#),
        format!(r#"{{"application":"x","tenantPermissions":[{{"tenant":"t","allowedActions":["{m}"]}}]}}"#),
        format!(r#"{{"application":"x","{m}":1,"master":"{m}"}}"#),
    ];
    for body in &crafter_bad {
        let r = post(
            &h,
            &format!("/api/1/access_token/create?accessTokenId={crafter_admin}"),
            &[],
            "application/json",
            body,
        )
        .await;
        assert_eq!((r.status, r.json()["errorCode"].as_str()), (400, Some("BAD_REQUEST")), "{body}: {}", r.body);
        assert!(!r.body.contains(MARK), "Crafter repeats the request: {}", r.body);
    }
    let r = send_raw(
        h.api,
        support::build_request("GET", &format!("/api/1/access_token/{m}?accessTokenId={m}"), &[]).as_bytes(),
    )
    .await;
    assert!(r.status == 403 && !r.body.contains(MARK), "{}", r.body);
    let user = h.token("bob", json!([rule("metastats-api", &["reader"], &["*:$USER_ID$:*"])]));
    for body in [format!(r#"{{"applications":["{m}"]}}"#), format!(r#"{{"roles":["{m}"]}}"#), format!(r#"{{"{m}":1}}"#)]
    {
        let r = post(&h, "/users/current/narrow-down-auth-token", &[("auth-token", &user)], "application/json", &body)
            .await;
        assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("ValidationError")), "{body}: {}", r.body);
        assert!(!r.body.contains(MARK), "MetaApi repeats the request: {}", r.body);
    }
    let form = format!("secret={m}&name={m}&description={m}&permission={m}&expiration_date={m}");
    let r = post(&h, "/api/token/create", &[], "application/x-www-form-urlencoded", &form).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(!r.body.contains(MARK), "ProdManager repeats the request: {}", r.body);
    let r = send_raw(
        h.api,
        support::build_request("GET", "/api/token/whoami", &[("Authorization", &format!("Token {m}"))]).as_bytes(),
    )
    .await;
    assert!(r.status == 401 && !r.body.contains(MARK), "{}", r.body);
    h.shutdown().await;
}
