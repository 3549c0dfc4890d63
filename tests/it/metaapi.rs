//! The MetaApi facade, driven by the real `metaapi-cloud-sdk` (from the
//! virtual environment `.ci/pyenv.sh` makes): the manifest, narrowing in
//! every form the SDK offers, each narrowed token used on the proxy, the
//! SDK's own `are_token_resources_narrowed_down`, and a widening attempt
//! that raises ForbiddenException at once instead of a retry loop.

use crate::support;
use crate::support::python;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{payload, rule};
use serde_json::{Value, json};
use support::Harness;

#[tokio::test]
#[ignore = "needs the real Python clients: scripts/test makes their environment"]
async fn the_real_metaapi_sdk_narrows_tokens_that_work_on_the_proxy() {
    let h = Harness::start().await;
    let mut p = payload(
        "alice",
        now_unix(),
        48 * 3600,
        json!([
            rule("trading-account-management-api", &["reader", "writer"], &["*:$USER_ID$:*"]),
            rule("metastats-api", &["reader"], &["*:$USER_ID$:*"]),
        ]),
    );
    p["jti"] = json!("metaapi-parent");
    let parent = h.sign(&p);

    let started = now_unix();
    let out = tokio::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/metaapi_sdk.py"))
        .arg(format!("http://{}", h.api))
        .arg(format!("http://{}", h.proxy))
        .env("NG_PARENT_TOKEN", &parent)
        .output()
        .await
        .expect("run the SDK script");
    assert!(out.status.success(), "the SDK script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");

    assert_eq!(
        r["manifest"],
        json!(["trading-account-management-api", "mt-manager-api", "metastats-api", "profile-api"])
    );
    assert_eq!(r["manifest_first"]["entities"][0]["idDescription"], "the account id");

    // (case, resources narrowed per the SDK, validity in seconds)
    let expected = [
        ("applications", false, 24 * 3600),
        ("roles", false, 24 * 3600),
        ("resources", true, 1800),
        ("simplified", true, 2 * 3600),
        ("simplified_default_validity", false, 24 * 3600),
        ("detailed", true, 5400),
        ("detailed_default_validity", true, 24 * 3600),
    ];
    let mut children = Vec::new();
    for (name, narrowed, validity) in expected {
        let c = &r["narrowed"][name];
        assert_eq!((c["allowed"].as_u64(), c["denied"].as_u64()), (Some(200), Some(403)), "{name} on the proxy");
        assert_eq!(c["resources_narrowed"], json!(narrowed), "{name}: are_token_resources_narrowed_down");
        let claims = &c["payload"];
        assert_eq!((claims["kind"].as_str(), claims["lineage"].clone()), (Some("narrowed"), json!(["metaapi-parent"])));
        let exp = claims["exp"].as_u64().expect("exp");
        assert!(exp.abs_diff(started + validity) <= 5, "{name}: exp {exp}, wanted about {}", started + validity);
        children.push(claims["jti"].as_str().expect("jti").to_string());
    }
    assert_eq!(r["parent_resources_narrowed"], json!(false));

    // What the upstream received: exactly the allowed probes, each as the
    // narrowed token that made it, without the credential.
    let received = h.upstream_received();
    assert_eq!(received.len(), children.len());
    for (got, jti) in received.iter().zip(&children) {
        assert_eq!(got.header("x-narrowgate-token-id"), Some(jti.as_str()));
        assert_eq!(got.header("auth-token"), None, "the credential is not forwarded");
    }

    assert_eq!(r["widen"]["raised"], "ForbiddenException", "{}", r["widen"]);
    assert!(r["widen"]["seconds"].as_f64().is_some_and(|s| s < 5.0), "no retry loop: {}", r["widen"]);
    assert!(r["widen"]["message"].as_str().is_some_and(|m| m.contains("resources[0]")), "{}", r["widen"]);
    assert_eq!(r["unknown"]["raised"], "ValidationException", "{}", r["unknown"]);
    assert_eq!(r["unknown"]["details"][0]["parameter"], "applications[0]", "{}", r["unknown"]);
    h.shutdown().await;
}

#[tokio::test]
async fn facade_errors_have_metaapis_shape_and_statuses_the_sdk_does_not_retry() {
    let h = Harness::start().await;
    let path = "/users/current/narrow-down-auth-token";
    let no_token = h.api_post(path, &[], r#"{"roles":["reader"]}"#).await;
    assert_eq!(no_token.status, 401);
    let body = no_token.json();
    assert_eq!((body["id"].as_i64(), body["error"].as_str()), (Some(1), Some("UnauthorizedError")));
    assert!(body["message"].is_string());

    let token = h.token("bob", json!([rule("metastats-api", &["reader"], &["*:$USER_ID$:*"])]));
    let bad = h.api_post(&format!("{path}?validity-in-hours=soon"), &[("auth-token", &token)], "{}").await;
    assert_eq!((bad.status, bad.json()["error"].as_str()), (400, Some("ValidationError")));
    let malformed = h.api_post(path, &[("auth-token", &token)], "{").await;
    assert_eq!((malformed.status, malformed.json()["error"].as_str()), (400, Some("ValidationError")));
    let widen = h.api_post(path, &[("auth-token", &token)], r#"{"applications":["mt-manager-api"]}"#).await;
    assert_eq!((widen.status, widen.json()["error"].as_str()), (403, Some("ForbiddenError")));
    let ok = h.api_post(&format!("{path}?validity-in-hours=0.5"), &[("auth-token", &token)], "{}").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json().as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["token".to_string()]));
    h.shutdown().await;

    // Off unless enabled.
    let off = Harness::start_with(
        |d| {
            d.set("facades.metaapi", false);
        },
        |_| {},
    )
    .await;
    assert_eq!(off.api_post(path, &[("auth-token", &token)], "{}").await.status, 404);
    assert_eq!(off.api_request("GET", "/access-rule-manifest", &[]).await.status, 404);
    off.shutdown().await;
}
