//! Durability: the real binary, killed with SIGKILL after issuing tokens,
//! comes back with every issued token, revocation and used registration
//! token as it was.

use crate::support;

use narrowgate::echo::EchoUpstream;
use serde_json::json;
use support::{process_config, serve_process};

/// A gateway config on a SQLite store of its own (with its directory and
/// the echo upstream it forwards to, both kept alive by the caller).
async fn sqlite_gateway() -> (tempfile::TempDir, EchoUpstream, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let config = process_config(
        dir.path(),
        "narrowgate",
        echo.addr,
        "store:\n  sqlite:\n    path: data/narrowgate.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true",
    );
    (dir, echo, config)
}

/// The bootstrap admin token the first start wrote.
fn bootstrap_token(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("data/admin-token")).expect("bootstrap file").trim().to_string()
}

#[tokio::test]
async fn a_killed_gateway_restarts_with_every_token_revocation_and_redemption_intact() {
    let (dir, _echo, config) = sqlite_gateway().await;

    let mut g = serve_process(&config).await;
    let root = bootstrap_token(dir.path());
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

/// One request to the token service over a connection of its own: the
/// response, or `None` when none came whole (the process was killed).
async fn try_api_call(
    api: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Option<support::Response> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(api).await.ok()?;
    let auth = format!("Bearer {token}");
    let req = support::raw_body_request(method, path, Some(&auth), "application/json", body);
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    // Whole when its length says so, or (a 204) when the server closes
    // after its head; a kill cuts it short of both.
    while !support::is_complete(&buf) {
        match tokio::time::timeout(std::time::Duration::from_secs(20), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            Ok(Ok(_)) if buf.starts_with(b"HTTP/1.1 204 ") && buf.ends_with(b"\r\n\r\n") => break,
            _ => return None,
        }
    }
    Some(support::parse_response(&buf))
}

/// Killed in the middle of a burst of concurrent mints and revocations
/// (committed in groups): every one acknowledged before the kill is there
/// after the restart. The tokens are reference tokens, which work only if
/// the store has them; the revoked ones are JWTs, which would work again
/// if their revocation were lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_killed_during_a_burst_keeps_every_acknowledged_mint_and_revocation() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const WORKERS: usize = 48;
    const EACH: usize = 24;
    let (dir, _echo, config) = sqlite_gateway().await;
    let mut g = serve_process(&config).await;
    let root = bootstrap_token(dir.path());
    let mut victims = Vec::new();
    for i in 0..WORKERS {
        let body = format!(r#"{{"name":"victim-{i}","lifetime":"1h"}}"#);
        let r = g.api_call("POST", "/v1/tokens", Some(&root), Some(&body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        victims.push(r.json()["token"].as_str().expect("token").to_string());
    }

    // Each worker revokes its victim, then mints reference tokens, one
    // request after another, until the process is gone.
    let api = g.api.expect("api");
    let acked = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let (root, acked) = (root.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            let mut revoked = false;
            let mut minted = Vec::new();
            let path = format!("/v1/tokens?name=victim-{w}");
            match try_api_call(api, "DELETE", &path, &root, "").await {
                Some(r) if r.status == 204 => {
                    revoked = true;
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Some(r) => panic!("revoke answered {}: {}", r.status, r.body),
                None => return (revoked, minted),
            }
            for i in 0..EACH {
                let body = format!(r#"{{"name":"burst-{w}-{i}","form":"reference"}}"#);
                match try_api_call(api, "POST", "/v1/tokens", &root, &body).await {
                    Some(r) if r.status == 201 => {
                        minted.push(r.json()["token"].as_str().expect("token").to_string());
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Some(r) => panic!("create answered {}: {}", r.status, r.body),
                    None => break,
                }
            }
            (revoked, minted)
        }));
    }
    let total = WORKERS * (EACH + 1);
    // Kill it once a quarter of the burst is acknowledged (within 60 s).
    // Polled every 10 ms, the kill may come a little past the quarter; the
    // assert after the kill checks it still came during the burst.
    support::eventually(std::time::Duration::from_secs(60), || {
        (acked.load(Ordering::SeqCst) >= total / 4).then_some(())
    })
    .await;
    g.child.kill().expect("kill -9");
    let _ = g.child.wait();
    let (mut revoked, mut minted) = (Vec::new(), Vec::new());
    for (w, task) in workers.into_iter().enumerate() {
        let (r, m) = task.await.expect("worker");
        if r {
            revoked.push(&victims[w]);
        }
        minted.extend(m);
    }
    assert!(minted.len() + revoked.len() < total, "the kill came after the burst, not during it");
    assert!(!revoked.is_empty() && !minted.is_empty());

    let g = serve_process(&config).await;
    for t in &minted {
        assert_eq!(g.call("GET", "/users/current/accounts/a1", t).await.status, 200, "an acknowledged mint was lost");
    }
    for t in &revoked {
        let r = g.call("GET", "/users/current/accounts/a1", t).await;
        assert_eq!((r.status, r.reason().as_str()), (401, "revoked"), "an acknowledged revocation was lost");
    }
}
