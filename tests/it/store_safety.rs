//! A lost store is never silently replaced: a store is created only when
//! the operator asks (`narrowgate store init`, or `create_if_missing`), its
//! files are the owner's alone, and a store removed or replaced under a
//! running gateway stops it acknowledging writes (503 `store_unavailable`,
//! `/readyz` false) instead of writing into an unlinked file, and stops it
//! starting again on an empty one.

use crate::support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use narrowgate::echo::EchoUpstream;
use narrowgate::store::SqliteStore;
use support::{BIN, Harness, eventually_async, master, process_config, serve_process};

/// Run the binary to its end (at most 30 s; killed then); (success,
/// stdout, stderr). Its output is read while it runs, so a child that
/// writes more than a pipe holds does not stall.
async fn run(args: &[&str]) -> (bool, String, String) {
    let child = tokio::process::Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn narrowgate");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("narrowgate {args:?} did not exit within 30 s"))
        .expect("output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

#[tokio::test]
async fn a_store_is_created_only_when_the_operator_asks_and_only_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token";
    let config = process_config(dir.path(), "ng", echo.addr, store);
    let cfg = config.to_str().expect("utf8");
    let db = dir.path().join("data/ng.db");

    // An ordinary start on a store that never existed: refused, nothing made.
    let (ok, _, err) = run(&["serve", "--config", cfg]).await;
    assert!(!ok, "serve started on a missing store");
    assert!(err.contains("no store at") && err.contains("narrowgate store init"), "{err}");
    assert!(!dir.path().join("data").exists(), "serve created something");
    // A typo in the path: the same.
    let typo_store = "store:\n  sqlite:\n    path: dta/ng.db\n    bootstrap_token_file: data/admin-token";
    let typo = process_config(dir.path(), "typo", echo.addr, typo_store);
    let (ok, _, err) = run(&["serve", "--config", typo.to_str().expect("utf8")]).await;
    assert!(!ok && err.contains("no store at"), "{err}");
    assert!(!dir.path().join("dta").exists());

    // `store init` creates it, owner-only, with the bootstrap token once,
    // in its file (stdout is not a terminal here: it is not printed).
    let (ok, out, err) = run(&["store", "init", "--config", cfg]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("created the store") && out.contains("bootstrap admin token: written to"), "{out}");
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("token file").trim().to_string();
    assert!(!out.contains(&root) && !err.contains(&root), "the token was printed: {out}");
    #[cfg(unix)]
    assert_eq!((mode(&db), mode(&dir.path().join("data"))), (0o600, 0o700));
    // Again: nothing changes, no second admin.
    let (ok, out, _) = run(&["store", "init", "--config", cfg]).await;
    assert!(ok && out.contains("exists already") && !out.contains("bootstrap admin token"), "{out}");

    // Serve on it: no bootstrap at start; the WAL and shared-memory files
    // SQLite makes are the owner's alone too.
    let g = serve_process(&config).await;
    let created = g.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"web","lifetime":"1h"}"#)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    #[cfg(unix)]
    for f in ["data/ng.db", "data/ng.db-wal", "data/ng.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    let listed = g.api_call("GET", "/v1/tokens?name=bootstrap-admin", Some(&root), None).await;
    assert_eq!(listed.json()["tokens"].as_array().map(Vec::len), Some(1));
    assert_eq!(std::fs::read_to_string(dir.path().join("data/admin-token")).expect("file").trim(), root);
}

/// What happens to the store's files under a running gateway.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// `rm ng.db`
    FileRemoved,
    /// `rm -r data/`
    DirectoryRemoved,
    /// `mv data data.old`
    DirectoryRenamed,
    /// Another narrowgate store moved over it.
    ReplacedByAnotherStore,
    /// A stray file written over it.
    ReplacedByGarbage,
}

async fn lose(dir: &Path, loss: Loss) {
    let data = dir.join("data");
    let db = data.join("ng.db");
    match loss {
        Loss::FileRemoved => std::fs::remove_file(&db).expect("rm"),
        Loss::DirectoryRemoved => std::fs::remove_dir_all(&data).expect("rm -r"),
        Loss::DirectoryRenamed => std::fs::rename(&data, dir.join("data.old")).expect("mv"),
        Loss::ReplacedByAnotherStore => {
            let other = dir.join("other.db");
            let (s, _) = SqliteStore::open(&other, true).await.expect("another store");
            s.close().await;
            std::fs::rename(&other, &db).expect("mv");
        }
        Loss::ReplacedByGarbage => {
            let tmp = dir.join("garbage");
            std::fs::write(&tmp, b"not a database").expect("write");
            std::fs::rename(&tmp, &db).expect("mv");
        }
    }
}

#[tokio::test]
async fn a_store_lost_under_a_running_gateway_stops_it_acknowledging_writes() {
    for loss in [
        Loss::FileRemoved,
        Loss::DirectoryRemoved,
        Loss::DirectoryRenamed,
        Loss::ReplacedByAnotherStore,
        Loss::ReplacedByGarbage,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = Harness::start_with(|_| {}, support::sqlite_store(dir.path().join("data/ng.db"))).await;
        let root = master(&h);
        let token_of = |r: support::Response| -> String {
            assert_eq!(r.status, 201, "{loss:?}: {}", r.body);
            r.json()["token"].as_str().expect("token").to_string()
        };
        let kept =
            token_of(h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"kept","lifetime":"1h"}"#).await);
        let doomed = token_of(
            h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"doomed","lifetime":"1h"}"#).await,
        );
        let r = h.api_request("DELETE", "/v1/tokens?name=doomed", &[("Authorization", &root)]).await;
        assert_eq!(r.status, 204, "{loss:?}");
        assert_eq!(h.admin_get("/readyz").await.status, 200);

        lose(dir.path(), loss).await;

        // Not ready, without any write having tried (the watch notices).
        let body = eventually_async(Duration::from_secs(5), || async {
            let r = h.admin_get("/readyz").await;
            (r.status == 503).then_some(r.body)
        })
        .await;
        assert!(body.contains("store"), "{loss:?}: {body}");
        // No write is acknowledged, and none reaches a file.
        let resp = h.api_post("/v1/tokens", &[("Authorization", &root)], r#"{"name":"after","lifetime":"1h"}"#).await;
        assert_eq!((resp.status, resp.reason().as_str()), (503, "store_unavailable"), "{loss:?}: {}", resp.body);
        let resp = h.api_request("DELETE", "/v1/tokens?name=kept", &[("Authorization", &root)]).await;
        assert_eq!((resp.status, resp.reason().as_str()), (503, "store_unavailable"), "{loss:?}");
        assert!(!resp.body.contains(&dir.path().display().to_string()), "a path leaked: {}", resp.body);
        // The proxy keeps enforcing what it knows: the revocation holds.
        let r = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {doomed}"))]).await;
        assert_eq!((r.status, r.reason().as_str()), (401, "revoked"), "{loss:?}");
        let r = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {kept}"))]).await;
        assert_eq!(r.status, 200, "{loss:?}");
        assert_eq!(h.upstream_received().len(), 1, "{loss:?}");
        if matches!(loss, Loss::FileRemoved | Loss::DirectoryRemoved | Loss::DirectoryRenamed) {
            assert!(!dir.path().join("data/ng.db").exists(), "{loss:?}: the store was recreated");
        }
        h.shutdown().await;
    }
}

#[tokio::test]
async fn a_gateway_whose_store_was_deleted_does_not_start_on_an_empty_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let store = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token";
    let config = process_config(dir.path(), "ng", echo.addr, store);
    let cfg = config.to_str().expect("utf8");
    let (ok, out, err) = run(&["store", "init", "--config", cfg]).await;
    assert!(ok, "{out}{err}");
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("file").trim().to_string();
    let mut g = serve_process(&config).await;
    let jwt = g.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"web","lifetime":"1h"}"#)).await;
    assert_eq!(jwt.status, 201);
    assert_eq!(g.api_call("DELETE", "/v1/tokens?name=web", Some(&root), None).await.status, 204);
    std::fs::remove_file(dir.path().join("data/ng.db")).expect("rm");
    let resp = g.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"after","lifetime":"1h"}"#)).await;
    assert_eq!((resp.status, resp.reason().as_str()), (503, "store_unavailable"));
    g.child.kill().expect("kill");
    let _ = g.child.wait();

    // Restarted: it refuses to start rather than accept the revoked JWT
    // again on an empty store, and mints no new admin.
    let (ok, _, err) = run(&["serve", "--config", cfg]).await;
    assert!(!ok && err.contains("no store at"), "{err}");
    assert!(!dir.path().join("data/ng.db").exists());
    assert_eq!(std::fs::read_to_string(dir.path().join("data/admin-token")).expect("file").trim(), root);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test starts one"]
async fn a_postgres_database_gets_a_store_only_through_store_init() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let url = support::fresh_postgres_database().await;
    let store = format!("store:\n  postgres:\n    url: {url}\n    bootstrap_token_file: admin-token");
    let config = process_config(dir.path(), "pg", echo.addr, &store);
    let cfg = config.to_str().expect("utf8");
    let (ok, _, err) = run(&["serve", "--config", cfg]).await;
    assert!(!ok && err.contains("holds no narrowgate store"), "{err}");
    assert!(!err.contains(&url), "the URL (it may hold a password) was printed: {err}");
    let (ok, out, err) = run(&["store", "init", "--config", cfg]).await;
    assert!(ok && out.contains("created the store"), "{out}{err}");
    let root = std::fs::read_to_string(dir.path().join("admin-token")).expect("file").trim().to_string();
    let g = serve_process(&config).await;
    assert_eq!(g.call("GET", "/users/current/accounts/a1", &root).await.status, 200);
}
