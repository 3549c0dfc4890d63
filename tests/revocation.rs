//! Revocation is checked on every request, after the cache: revoking a
//! token, or any of its ancestors, rejects it at once.

mod support;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use serde_json::json;
use support::Harness;

#[tokio::test]
async fn revoking_a_token_or_an_ancestor_rejects_it_even_when_cached() {
    let h = Harness::start().await;
    let rules = json!([rule("*", &["*"], &["*:$USER_ID$:*"])]);
    let mut child = payload("child", now_unix(), 3600, rules.clone());
    child["jti"] = json!("child-1");
    child["kind"] = json!("narrowed");
    child["lineage"] = json!(["root-1", "parent-1"]);
    let child = format!("Bearer {}", h.sign(&child));
    let mut other = payload("other", now_unix(), 3600, rules);
    other["jti"] = json!("other-1");
    let other = format!("Bearer {}", h.sign(&other));

    // Cached by the first request.
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &child)]).await.status, 200);
    assert_eq!(h.upstream_received().len(), 1);

    let revocations = h.gateway.as_ref().expect("running").revocations.clone();
    revocations.revoke("root-1");
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &child)]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (401, "revoked"));
    assert!(resp.header("www-authenticate").is_some_and(|v| v.contains("invalid_token")));
    assert!(h.upstream_received().is_empty());

    // Unrelated tokens are untouched; revoking one by its own id works too.
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &other)]).await.status, 200);
    revocations.revoke("other-1");
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &other)]).await.status, 401);
    assert_eq!(h.upstream_received().len(), 1);
    h.shutdown().await;
}
