//! PostgreSQL going away costs seconds of latency, not a revocation window:
//! with a real server stopped and restarted under running `narrowgate
//! serve` processes, token-service calls fail fast (503) and recover on
//! their own, and a revocation made through one replica right after the
//! restart is enforced by another within a second. A replica told to refuse
//! when its revocations go stale does so, and serves again once they are
//! confirmed.

use crate::support;

use std::time::{Duration, Instant};

use narrowgate::echo::EchoUpstream;
use support::{GatewayProcess, PrivatePostgres, process_config, serve_process};

const ACCOUNT: &str = "/users/current/accounts/a1";

/// One sample's value from a process's /metrics.
async fn metric(g: &GatewayProcess, name: &str) -> Option<f64> {
    support::metric(g.admin, name).await
}

/// Poll `f` until it holds (`support::eventually_async`, failing after
/// `deadline`); how long it took. `what` is in the test's output, which a
/// failure shows.
async fn poll<F, Fut>(what: &str, deadline: Duration, mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eprintln!("waiting (at most {deadline:?}) until: {what}");
    let start = Instant::now();
    support::eventually_async(deadline, || {
        let holds = f();
        async move { holds.await.then_some(()) }
    })
    .await;
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test starts one"]
async fn a_postgres_outage_costs_latency_not_a_revocation_window() {
    let pg = PrivatePostgres::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let store = format!(
        "store:\n  postgres:\n    url: {}\n    timeout: 1s\n    bootstrap_token_file: admin-token\n    create_if_missing: true",
        pg.url()
    );
    let a = serve_process(&process_config(dir.path(), "a", echo.addr, &store)).await;
    let b = serve_process(&process_config(dir.path(), "b", echo.addr, &store)).await;
    let refusing = format!("{store}\n\nrevocation:\n  max_staleness: 1s\n  when_stale: refuse");
    let c = serve_process(&process_config(dir.path(), "c", echo.addr, &refusing)).await;
    let root = std::fs::read_to_string(dir.path().join("admin-token")).expect("bootstrap file").trim().to_string();
    let mut tokens = Vec::new();
    for name in ["t1", "t2"] {
        let body = format!(r#"{{"name":"{name}","lifetime":"1h"}}"#);
        let r = a.api_call("POST", "/v1/tokens", Some(&root), Some(&body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        tokens.push(r.json()["token"].as_str().expect("token").to_string());
    }
    for g in [&a, &b, &c] {
        assert_eq!(g.call("GET", ACCOUNT, &tokens[0]).await.status, 200);
        assert_eq!(metric(g, "narrowgate_revocation_feed_up").await, Some(1.0));
    }

    // The database goes away.
    pg.stop();
    let start = Instant::now();
    let r = a.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"during","lifetime":"1h"}"#)).await;
    let failed_after = start.elapsed();
    assert_eq!((r.status, r.reason().as_str()), (503, "store_unavailable"), "{}", r.body);
    assert!(failed_after < Duration::from_secs(3), "a store call took {failed_after:?} to fail");
    eprintln!("token service call while PostgreSQL is down: 503 after {failed_after:?}");
    // Every replica notices its feed is down; those told to serve keep
    // serving from the last known set, the one told to refuse refuses once
    // max_staleness has passed.
    for g in [&a, &b, &c] {
        poll("feed reported down", Duration::from_secs(5), || async {
            metric(g, "narrowgate_revocation_feed_up").await == Some(0.0)
        })
        .await;
    }
    assert_eq!(b.call("GET", ACCOUNT, &tokens[0]).await.status, 200);
    poll("the refusing replica refuses", Duration::from_secs(5), || async {
        let r = c.call("GET", ACCOUNT, &tokens[0]).await;
        r.status == 503 && r.reason() == "revocations_unavailable"
    })
    .await;
    assert!(metric(&c, "narrowgate_revocation_staleness_seconds").await.is_some_and(|s| s >= 1.0));

    // It comes back. A revocation made through a right away is enforced by
    // b within the bound.
    pg.start_again();
    // Retried while the store is still unavailable (and only then).
    support::eventually_async(Duration::from_secs(30), || async {
        let r = a.api_call("DELETE", "/v1/tokens?name=t1", Some(&root), None).await;
        if r.status == 204 {
            return Some(());
        }
        assert_eq!(r.reason(), "store_unavailable", "{}", r.body);
        None
    })
    .await;
    // Polled from the moment the revocation was acknowledged.
    let seen = poll("b refuses the token revoked through a", Duration::from_secs(5), || async {
        let r = b.call("GET", ACCOUNT, &tokens[0]).await;
        r.status == 401 && r.reason() == "revoked"
    })
    .await;
    eprintln!("revocation through one replica enforced by another {seen:?} after PostgreSQL's restart");
    assert!(seen < Duration::from_secs(1), "b still accepted the revoked token {seen:?} after the revocation");
    // The refusing replica serves again, and enforces the revocation too.
    poll("the refusing replica serves again", Duration::from_secs(5), || async {
        c.call("GET", ACCOUNT, &tokens[1]).await.status == 200
    })
    .await;
    assert_eq!(c.call("GET", ACCOUNT, &tokens[0]).await.reason(), "revoked");
    // The token service recovered on its own.
    let r = a.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"after","lifetime":"1h"}"#)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    // Each replica's feed is back (it reconnects on its own schedule).
    for g in [&a, &b, &c] {
        poll("the revocation feed is up again", Duration::from_secs(5), || async {
            metric(g, "narrowgate_revocation_feed_up").await == Some(1.0)
        })
        .await;
        assert!(metric(g, "narrowgate_revocation_feed_connects").await.is_some_and(|n| n >= 2.0));
    }
}
