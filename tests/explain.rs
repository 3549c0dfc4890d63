//! Why was I denied: the admin listener's `POST /explain` and the offline
//! `narrowgate explain` give the gateway's own decision and what led there,
//! and never repeat the token.

mod support;

use narrowgate::token::testkit::rule;
use serde_json::{Value, json};
use support::{BIN, Harness, send_raw};

async fn explain(h: &Harness, question: Value) -> (u16, Value) {
    let body = question.to_string();
    let req = format!(
        "POST /explain HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let r = send_raw(h.admin, req.as_bytes()).await;
    (r.status, r.json())
}

#[tokio::test]
async fn the_admin_listener_explains_a_denial_dimension_by_dimension() {
    let h = Harness::start().await;
    let token = h.token(
        "web",
        json!([
            rule("mt-manager-api", &["reader"], &["account:$USER_ID$:a1"]),
            rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"]),
        ]),
    );
    let (status, e) =
        explain(&h, json!({ "method": "GET", "path": "/users/current/accounts/a2?x=1", "token": token })).await;
    assert_eq!(status, 200, "{e}");
    assert_eq!(
        (e["decision"].as_str(), e["reason"].as_str(), e["status"].as_u64()),
        (Some("deny"), Some("resource_not_allowed"), Some(403))
    );
    assert_eq!(e["canonical_path"], "/users/current/accounts/a2");
    assert_eq!(e["route"]["template"], "GET /users/current/accounts/{accountId}");
    assert_eq!(e["route"]["resource"], json!(["account", "a2"]));
    assert_eq!(e["credential"], "bearer");
    assert_eq!(
        (e["verification"]["result"].as_str(), e["verification"]["subject"].as_str()),
        (Some("ok"), Some("web"))
    );
    assert_eq!(
        e["rules"],
        json!([
            { "id": "mt-manager-api", "result": "fails on application" },
            { "id": "trading-account-management-api", "result": "fails on resource" },
        ])
    );
    assert!(!e.to_string().contains(&token), "the token is never repeated");
    // The proxy agrees.
    let proxied = h.get("/users/current/accounts/a2?x=1", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert_eq!((proxied.status, proxied.reason()), (403, "resource_not_allowed".to_string()));

    // A role and a scope; a credential in MetaApi's header.
    let (_, e) = explain(
        &h,
        json!({ "method": "POST", "path": "/mt-manager/accounts/a1/trade", "headers": [["auth-token", token]] }),
    )
    .await;
    assert_eq!(e["credential"], "header auth-token");
    assert_eq!(e["reason"], "insufficient_role");
    assert_eq!(e["rules"][0]["result"], "fails on role");
    assert_eq!(e["route"]["scopes"], json!(["dealing"]));

    // No route: the nearest ones; no token: what is missing.
    let (_, e) = explain(&h, json!({ "method": "DELETE", "path": "/users/current/accounts" })).await;
    assert_eq!((e["reason"].as_str(), e["status"].as_u64()), (Some("no_matching_route"), Some(403)));
    let nearest: Vec<&str> =
        e["nearest_routes"].as_array().expect("nearest").iter().filter_map(Value::as_str).collect();
    assert!(
        nearest.contains(&"GET /users/current/accounts") && nearest.contains(&"POST /users/current/accounts"),
        "{nearest:?}"
    );
    let (_, e) = explain(&h, json!({ "method": "GET", "path": "/users/current/accounts/a1" })).await;
    assert_eq!((e["reason"].as_str(), e["credential"].as_str()), (Some("missing_token"), Some("none")));
    let (_, e) = explain(&h, json!({ "method": "GET", "path": "/users/current/%2e%2e/%2fetc" })).await;
    assert_eq!(e["decision"], "deny");
    assert!(e["path_refused"].is_string() && e.get("canonical_path").is_none(), "{e}");
    let (status, _) = explain(&h, json!({ "path": 1 })).await;
    assert_eq!(status, 400);
    h.shutdown().await;
}

#[test]
fn narrowgate_explain_answers_offline_from_a_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = narrowgate::token::testkit::TestKey::es256("demo");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write");
    let config = dir.path().join("demo.yaml");
    support::ConfigDoc::demo().write(&config);
    let now = narrowgate::token::now_unix();
    let token = key.sign(&narrowgate::token::testkit::payload(
        "web",
        now,
        3600,
        json!([rule("trading-account-management-api", &["writer"], &["account:$USER_ID$:*"])]),
    ));
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["explain", "--config", config.to_str().expect("utf8"), "--token", &token])
            .args(extra)
            .output()
            .expect("run explain");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&["DELETE", "/users/current/accounts/a7"]);
    assert!(text.starts_with("DELETE /users/current/accounts/a7 → allow 200 allowed"), "{text}");
    assert!(text.contains("rule trading-account-management-api: allows"), "{text}");
    let text = run(&["GET", "/metastats/users/current/accounts/a7/metrics"]);
    assert!(text.contains("→ deny 403 application_not_allowed"), "{text}");
    assert!(text.contains("fails on application"), "{text}");
    let json: Value = serde_json::from_str(&run(&["--json", "GET", "/health"])).expect("JSON");
    assert_eq!((json["reason"].as_str(), json["route"]["public"].as_bool()), (Some("public"), Some(true)));
    assert!(!text.contains(&token));
}
