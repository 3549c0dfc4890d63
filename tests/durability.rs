//! Durability: the real binary, killed with SIGKILL after issuing tokens,
//! comes back with every issued token, revocation and used registration
//! token as it was.

mod support;

use narrowgate::echo::EchoUpstream;
use serde_json::json;
use support::{process_config, serve_process};

#[tokio::test]
async fn a_killed_gateway_restarts_with_every_token_revocation_and_redemption_intact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let config = process_config(
        dir.path(),
        "narrowgate",
        echo.addr,
        "store:\n  sqlite:\n    path: data/narrowgate.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true",
    );

    let mut g = serve_process(&config).await;
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("bootstrap file").trim().to_string();
    let created = |r: support::Response| -> String {
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["token"].as_str().expect("token").to_string()
    };
    let jwt = created(g.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"jwt-1","lifetime":"1h"}"#)).await);
    let doomed =
        created(g.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"doomed","lifetime":"1h"}"#)).await);
    let reference =
        created(g.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"ref-1","form":"reference"}"#)).await);
    let registration = created(
        g.api_call(
            "POST",
            "/v1/registration-tokens",
            Some(&root),
            Some(r#"{"name":"reg-1","role":"User","ttl":"1h"}"#),
        )
        .await,
    );
    let redeemed = created(
        g.api_call("POST", "/v1/registration-tokens/redeem", None, Some(&json!({ "token": registration }).to_string()))
            .await,
    );
    let r = g.api_call("DELETE", "/v1/tokens?name=doomed", Some(&root), None).await;
    assert_eq!(r.status, 204);
    for t in [&jwt, &reference, &redeemed, &root] {
        assert_eq!(g.call("GET", "/users/current/accounts/a1", t).await.status, 200);
    }
    assert_eq!(g.call("GET", "/users/current/accounts/a1", &doomed).await.status, 401);

    // SIGKILL: no shutdown, no flush beyond what each commit already did.
    g.child.kill().expect("kill -9");
    let _ = g.child.wait();

    let g = serve_process(&config).await;
    for (name, t) in [("jwt", &jwt), ("reference", &reference), ("redeemed", &redeemed), ("bootstrap", &root)] {
        assert_eq!(g.call("GET", "/users/current/accounts/a1", t).await.status, 200, "{name} after restart");
    }
    let r = g.call("GET", "/users/current/accounts/a1", &doomed).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "revoked"), "the revocation after restart");
    let again = g
        .api_call("POST", "/v1/registration-tokens/redeem", None, Some(&json!({ "token": registration }).to_string()))
        .await;
    assert_eq!((again.status, again.reason().as_str()), (409, "already_redeemed"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("data/admin-token")).expect("file").trim(),
        root,
        "no second bootstrap"
    );
}
