//! Every gateway enforces revocations, sidecars included: enforce-only
//! gateways (no store, no database connection) follow the issuers'
//! revocation feed over HTTP. Two issuer replicas on one PostgreSQL and two
//! enforce-only gateways, all separate `narrowgate serve` processes: a
//! parent revoked through an issuer is refused with its narrowed child by
//! both gateways within a second; with that issuer killed, a revocation
//! through the other replica reaches them too.

use crate::support;

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

/// Poll until every gateway refuses every token as revoked (failing
/// after 5 s); how long it took.
async fn all_refuse(gateways: &[&GatewayProcess], tokens: &[&str]) -> Duration {
    let start = Instant::now();
    support::eventually_async(Duration::from_secs(5), || async {
        let mut all = true;
        for g in gateways {
            for t in tokens {
                let r = g.call("GET", ACCOUNT, t).await;
                all &= r.status == 401 && r.reason() == "revoked";
            }
        }
        all.then_some(())
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test starts one"]
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
    // e2 refuses within 5 s (its max_staleness, 1 s, passing in the
    // child process: no clock of ours to advance).
    let r = support::eventually_async(Duration::from_secs(5), || async {
        let r = e2.call("GET", ACCOUNT, &spare).await;
        (r.status == 503).then_some(r)
    })
    .await;
    assert_eq!(r.reason(), "revocations_unavailable");
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
    let (mut child, addrs) = support::spawn_serve(&config).await;
    let admin = addrs.admin.expect("admin");
    // Once the keys are in, what it still waits for is the revocation set
    // (never ready meanwhile).
    support::eventually_async(Duration::from_secs(10), || async {
        let r = send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await;
        assert_ne!(r.status, 200, "ready without the revocation set");
        (r.status == 503 && r.body.contains("revocation set")).then_some(())
    })
    .await;
    // And stays so (a negative check: nothing to wait for).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await.status, 503);
    let _ = child.kill();
    let _ = child.wait();
}

/// A feed that answers every follower with `first` (whatever it is: a
/// snapshot, a line that never ends, junk), then a heartbeat every 200 ms
/// until the follower goes. Real sockets; the HTTP a follower reads.
async fn fake_feed(first: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1/revocations", listener.local_addr().expect("addr"));
    let first = std::sync::Arc::new(first);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let first = first.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head).await;
                let start = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nConnection: close\r\n\r\n";
                if conn.write_all(start).await.is_err() || conn.write_all(&first).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now");
                    let beat =
                        format!("{{\"type\":\"heartbeat\",\"cursor\":\"f:1\",\"confirmedAt\":{}}}\n", now.as_millis());
                    if conn.write_all(beat.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// An enforce-only gateway (in process) following `feed`, its keys from a
/// file, with `extra` merged into its config; the key its tokens are
/// signed with.
async fn follower(
    dir: &std::path::Path,
    echo: std::net::SocketAddr,
    feed: &str,
    extra: &str,
) -> (narrowgate::app::Running, narrowgate::token::testkit::TestKey) {
    let _ = reader(dir);
    let key = narrowgate::token::testkit::TestKey::es256("k1");
    std::fs::write(dir.join("k1.pub.pem"), &key.public).expect("key");
    let config =
        enforcer_config(dir, "follower", echo, "http://unused.invalid/jwks", &[feed.to_string()], "feed.token", extra);
    let mut doc = support::ConfigDoc::parse(&std::fs::read_to_string(&config).expect("config"));
    doc.set(
        "issuers",
        serde_json::json!([{ "name": "narrowgate", "issuer": "narrowgate", "algorithms": ["ES256"],
                              "keys": [{ "kid": "k1", "algorithm": "ES256", "public_key_file": "k1.pub.pem" }] }]),
    );
    doc.write(&config);
    let loaded = narrowgate::config::Config::load(&config).expect("valid");
    (narrowgate::app::start_from(loaded, Some(config)).await.expect("starts"), key)
}

/// A token with this `jti`, valid for an hour.
fn token_with_jti(key: &narrowgate::token::testkit::TestKey, jti: &str) -> String {
    let rules = serde_json::json!([narrowgate::token::testkit::rule("*", &["*"], &["*:$USER_ID$:*"])]);
    let mut p = narrowgate::token::testkit::payload("web", narrowgate::token::now_unix(), 3600, rules);
    p["jti"] = jti.into();
    format!("Bearer {}", key.sign(&p))
}

fn line(kind: &str, ids: &[String], expires: &[Option<u64>]) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("now").as_millis();
    format!(
        "{}\n",
        serde_json::json!({ "type": kind, "cursor": "f:1", "ids": ids, "expiresAt": expires, "confirmedAt": now as u64 })
    )
}

/// A follower takes each id with its token's expiry and forgets it with
/// it; ids no token may carry are skipped and counted, the rest enforced.
#[tokio::test]
async fn a_follower_holds_ids_until_their_tokens_expire_and_skips_impossible_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let now = narrowgate::token::now_unix();
    let ids = ["live", "long-expired", "forever", &"x".repeat(257), ""].map(str::to_string);
    let feed =
        fake_feed(line("snapshot", &ids, &[Some(now + 3600), Some(now - 7200), None, None, None]).into_bytes()).await;
    let (g, key) = follower(dir.path(), echo.addr, &feed, "").await;
    let admin = g.admin_addr.expect("admin");
    support::eventually_async(Duration::from_secs(5), || async {
        (send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await.status == 200).then_some(())
    })
    .await;
    let call = |jti: &str| {
        let (proxy, auth) = (g.proxy_addr, token_with_jti(&key, jti));
        async move { send_raw(proxy, build_request("GET", ACCOUNT, &[("Authorization", &auth)]).as_bytes()).await }
    };
    for jti in ["live", "forever"] {
        assert_eq!(call(jti).await.reason(), "revoked", "{jti}");
    }
    assert_eq!(call("never-revoked").await.status, 200);
    assert_eq!(echo.received().len(), 1, "only the unrevoked token reached the upstream");
    assert_eq!(support::metric(admin, "narrowgate_revocations").await, Some(2.0), "an expired token's id is moot");
    let refused = "narrowgate_revocation_feed_refused{reason=\"id_too_long\"}";
    assert_eq!(support::metric(admin, refused).await, Some(2.0), "the empty id and the 257-byte one");
    g.shutdown().await;
}

/// What a feed sends beyond the follower's bounds — a set past its cap, a
/// line that never ends, a line that is not the feed's — is refused and
/// counted, the set is not confirmed, and the gateway goes stale and does
/// what `when_stale` says: here it refuses token-checked requests, and
/// nothing reaches the upstream.
#[tokio::test]
async fn a_hostile_feed_makes_the_follower_stale_not_unbounded() {
    let now = narrowgate::token::now_unix();
    let many: Vec<String> = (0..50).map(|i| format!("id-{i}")).collect();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("a set past max_ids", line("snapshot", &many, &vec![Some(now + 3600); 50]).into_bytes(), "set_full"),
        ("a line that never ends", vec![b'x'; narrowgate::revocation::feed::MAX_LINE + (1 << 20)], "line_too_long"),
        ("junk", b"{\"type\":\"snapshot\",\"ids\":[\n".to_vec(), "malformed"),
    ];
    for (what, first, reason) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
        let feed = fake_feed(first).await;
        let extra = "revocation:\n  follow:\n    max_ids: 10\n  max_staleness: 1s\n  when_stale: refuse";
        let (g, key) = follower(dir.path(), echo.addr, &feed, extra).await;
        let admin = g.admin_addr.expect("admin");
        let counted = format!("narrowgate_revocation_feed_refused{{reason=\"{reason}\"}}");
        support::eventually_async(Duration::from_secs(10), || async {
            (support::metric(admin, &counted).await >= Some(1.0)).then_some(())
        })
        .await;
        let auth = token_with_jti(&key, "t-1");
        let r = send_raw(g.proxy_addr, build_request("GET", ACCOUNT, &[("Authorization", &auth)]).as_bytes()).await;
        assert_eq!((r.status, r.reason().as_str()), (503, "revocations_unavailable"), "{what}: {}", r.body);
        let ready = send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await;
        assert_eq!(ready.status, 503, "{what}: never confirmed, never ready");
        assert!(support::metric(admin, "narrowgate_revocations").await <= Some(10.0), "{what}: bounded");
        assert!(echo.received().is_empty(), "{what}: nothing reached the upstream");
        g.shutdown().await;
    }
}

/// The issuer's feed carries each revoked id with its token's expiry (a
/// jti revoked without one: `null`), so followers forget what it forgets.
#[tokio::test]
async fn the_feed_sends_each_id_with_its_tokens_expiry() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let h = support::Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("ng.db"))).await;
    let mut p = narrowgate::token::testkit::payload("root", narrowgate::token::now_unix(), 3600, serde_json::json!([]));
    p["role"] = "admin".into();
    p["master"] = true.into();
    let root = format!("Bearer {}", h.sign(&p));
    let made = h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"short","lifetime":"10m"}"#).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let (id, exp) =
        (made.json()["id"].as_str().expect("id").to_string(), made.json()["expiresAt"].as_u64().expect("exp"));
    assert_eq!(h.api_request("DELETE", &format!("/v1/tokens/{id}"), &[("Authorization", &root)]).await.status, 204);
    let forever = serde_json::json!({"jti": "ext-1", "issuer": "narrowgate"}).to_string();
    assert_eq!(h.api_post("/v1/revocations", &[("Authorization", &root)], &forever).await.status, 201);
    let mut feed = tokio::net::TcpStream::connect(h.api).await.expect("connect");
    let req = support::raw_request("GET", "/v1/revocations", &[("Host", "t"), ("Authorization", &root)], "");
    feed.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"snapshot\"") || !got.ends_with(b"\n\r\n") {
        let n =
            tokio::time::timeout(Duration::from_secs(5), feed.read(&mut chunk)).await.expect("in time").expect("read");
        assert!(n > 0, "closed");
        got.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    let snapshot = text.lines().find(|l| l.contains("\"snapshot\"")).expect("a snapshot line");
    let line: serde_json::Value = serde_json::from_str(snapshot).expect("json");
    let pairs: Vec<(String, Option<u64>)> = line["ids"]
        .as_array()
        .expect("ids")
        .iter()
        .zip(line["expiresAt"].as_array().expect("expiresAt"))
        .map(|(i, e)| (i.as_str().expect("id").to_string(), e.as_u64()))
        .collect();
    assert!(pairs.contains(&(id, Some(exp))), "{line}");
    assert!(pairs.contains(&("ext-1".to_string(), None)), "{line}");
    h.shutdown().await;
}
