//! Every gateway enforces revocations, sidecars included: enforce-only
//! gateways (no store, no database connection) follow the issuers'
//! revocation feed over HTTP. Two issuer replicas on one PostgreSQL and two
//! enforce-only gateways, all separate `narrowgate serve` processes: a
//! parent revoked through an issuer is refused with its narrowed child by
//! both gateways within a second; with that issuer killed, a revocation
//! through the other replica reaches them too.

mod support;

use std::time::{Duration, Instant};

use narrowgate::echo::EchoUpstream;
use support::{GatewayProcess, build_request, enforcer_config, process_config, send_raw, serve_process};

const ACCOUNT: &str = "/users/current/accounts/a1";

/// A feed-reader token and the config line that admits it.
fn reader(dir: &std::path::Path) -> (String, String) {
    let token = format!("feed-{}", narrowgate::token::keys::random_id(24).expect("random"));
    let digest: String = narrowgate::store::hash_secret(&token).iter().map(|b| format!("{b:02x}")).collect();
    let path = dir.join("feed.token");
    std::fs::write(&path, &token).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    (token, format!("revocation:\n  feed_readers_sha256: [\"{digest}\"]"))
}

async fn metric(g: &GatewayProcess, name: &str) -> Option<f64> {
    support::metric(g.admin, name).await
}

/// Poll until every gateway refuses every token as revoked; how long it took.
async fn all_refuse(gateways: &[&GatewayProcess], tokens: &[&str]) -> Duration {
    let start = Instant::now();
    loop {
        let mut all = true;
        for g in gateways {
            for t in tokens {
                let r = g.call("GET", ACCOUNT, t).await;
                all &= r.status == 401 && r.reason() == "revoked";
            }
        }
        if all {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "not every gateway refuses within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_only_gateways_follow_the_issuers_revocations_through_a_replica_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let url = support::fresh_postgres_database().await;
    let (feed_token, readers) = reader(dir.path());
    let store = format!(
        "store:\n  postgres:\n    url: {url}\n    bootstrap_token_file: admin-token\n    create_if_missing: true\n\n{readers}"
    );
    let mut a = serve_process(&process_config(dir.path(), "a", echo.addr, &store)).await;
    let b = serve_process(&process_config(dir.path(), "b", echo.addr, &store)).await;
    let root = std::fs::read_to_string(dir.path().join("admin-token")).expect("bootstrap").trim().to_string();
    let (api_a, api_b) = (a.api.expect("api"), b.api.expect("api"));
    let feeds = [format!("http://{api_a}/v1/revocations"), format!("http://{api_b}/v1/revocations")];
    let jwks = format!("http://{api_a}/.well-known/jwks.json");
    let e1 = serve_process(&enforcer_config(dir.path(), "e1", echo.addr, &jwks, &feeds, "feed.token", "")).await;
    let e2 = serve_process(&enforcer_config(
        dir.path(),
        "e2",
        echo.addr,
        &jwks,
        &feeds,
        "feed.token",
        "revocation:\n  max_staleness: 1s\n  when_stale: refuse",
    ))
    .await;

    // The feed admits only its readers and admins.
    let r = send_raw(api_a, build_request("GET", "/v1/revocations", &[]).as_bytes()).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "missing_token"));
    let wrong = send_raw(
        api_a,
        build_request("GET", "/v1/revocations", &[("Authorization", "Bearer feed-not-the-token")]).as_bytes(),
    )
    .await;
    assert_eq!(wrong.status, 401);

    let token_of = |r: support::Response| -> String {
        assert!(r.status == 200 || r.status == 201, "{} {}", r.status, r.body);
        r.json()["token"].as_str().expect("token").to_string()
    };
    let parent =
        token_of(a.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"parent","lifetime":"1h"}"#)).await);
    let child = token_of(a.api_call("POST", "/v1/tokens/narrow", Some(&parent), Some(r#"{"roles":["reader"]}"#)).await);
    let later =
        token_of(b.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"later","lifetime":"1h"}"#)).await);
    let spare =
        token_of(b.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"spare","lifetime":"1h"}"#)).await);
    for g in [&e1, &e2] {
        for t in [&parent, &child, &later, &spare] {
            assert_eq!(g.call("GET", ACCOUNT, t).await.status, 200);
        }
        assert_eq!(metric(g, "narrowgate_revocation_feed_up").await, Some(1.0));
    }

    // Revoke the parent through issuer a: both gateways refuse it and its
    // child within the bound.
    assert_eq!(a.api_call("DELETE", "/v1/tokens?name=parent", Some(&root), None).await.status, 204);
    let took = all_refuse(&[&e1, &e2], &[&parent, &child]).await;
    eprintln!("a revocation through the issuer reached both enforce-only gateways in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(e1.call("GET", ACCOUNT, &later).await.status, 200);

    // A token with no record here (as an external issuer's would be),
    // revoked by jti through a: b's own proxy hears it through PostgreSQL,
    // the followers through the feed.
    let signer =
        narrowgate::token::SigningKey::from_pem_file(&dir.path().join("keys/signer.pem"), "signer").expect("key");
    let mut claims = narrowgate::token::testkit::payload(
        "idp-user",
        narrowgate::token::now_unix(),
        600,
        serde_json::json!([narrowgate::token::testkit::rule("*", &["*"], &["*:$USER_ID$:*"])]),
    );
    claims["jti"] = serde_json::json!("external-7");
    let external = narrowgate::token::sign::sign(&claims, &signer).expect("sign");
    for g in [&b, &e1, &e2] {
        assert_eq!(g.call("GET", ACCOUNT, &external).await.status, 200);
    }
    let body = r#"{"jti":"external-7","issuer":"narrowgate"}"#;
    assert_eq!(a.api_call("POST", "/v1/revocations", Some(&root), Some(body)).await.status, 201);
    let took = all_refuse(&[&b, &e1, &e2], &[&external]).await;
    eprintln!("a revocation by jti reached the other replica and both followers in {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    // Issuer a dies; a revocation through replica b reaches them too.
    a.child.kill().expect("kill");
    let _ = a.child.wait();
    assert_eq!(b.api_call("DELETE", "/v1/tokens?name=later", Some(&root), None).await.status, 204);
    let took = all_refuse(&[&e1, &e2], &[&later]).await;
    eprintln!("with one issuer replica dead, a revocation through the other reached them in {took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");

    // Every issuer gone: the gateway told to serve keeps serving what it
    // knows; the one told to refuse does so once its set is stale.
    drop(b);
    let start = Instant::now();
    loop {
        let r = e2.call("GET", ACCOUNT, &spare).await;
        if r.status == 503 {
            assert_eq!(r.reason(), "revocations_unavailable");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "e2 never refused while stale: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metric(&e1, "narrowgate_revocation_feed_up").await, Some(0.0));
    let r = e1.call("GET", ACCOUNT, &child).await;
    assert_eq!((r.status, r.reason().as_str()), (401, "revoked"), "e1 still enforces what it knows");
    assert_eq!(e1.call("GET", ACCOUNT, &spare).await.status, 200, "and serves the rest");
    drop(feed_token);
}

#[tokio::test]
async fn an_enforce_only_gateway_is_not_ready_until_it_has_the_revocation_set() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let _ = reader(dir.path());
    // The keys are there; nothing listens at the feed URL.
    let key = narrowgate::token::testkit::TestKey::es256("k1");
    let mut jwk = serde_json::to_value(jsonwebtoken::jwk::Jwk::from_encoding_key(&key.encoding, key.alg).expect("jwk"))
        .expect("json");
    jwk["kid"] = "k1".into();
    let doc = serde_json::json!({ "keys": [jwk] }).to_string();
    let app = axum::Router::new().route("/jwks", axum::routing::get(move || async move { doc }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let jwks = format!("http://{}/jwks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    // A feed URL where connections are closed unanswered.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let nowhere = format!("http://{}/v1/revocations", closed.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((conn, _)) = closed.accept().await {
            drop(conn);
        }
    });
    let config = enforcer_config(dir.path(), "e", echo.addr, &jwks, &[nowhere], "feed.token", "");
    let start = Instant::now();
    let (mut child, addrs) = support::spawn_serve(&config).await;
    let admin = addrs.admin.expect("admin");
    // Once the keys are in, what it still waits for is the revocation set.
    loop {
        let r = send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await;
        assert_ne!(r.status, 200, "ready without the revocation set");
        if r.status == 503 && r.body.contains("revocation set") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "not the expected reason: {} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And stays so.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await.status, 503);
    let _ = child.kill();
    let _ = child.wait();
}
