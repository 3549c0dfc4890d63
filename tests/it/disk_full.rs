//! A full disk, on a real (small, tmpfs) file system the test fills: under
//! the store, token-service writes answer 503 and leave nothing half
//! written, the proxy goes on enforcing, and writes work again once there
//! is room, without a restart; under the audit log, events are dropped and
//! counted, requests are never held up, the file keeps whole lines only,
//! and events are written again once there is room.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use narrowgate::echo::EchoUpstream;
use narrowgate::token::now_unix;
use narrowgate::token::testkit::{TestKey, payload};
use serde_json::json;

use crate::support::{self, GatewayProcess, process_config, serve_process, web_rules};

const ACCOUNT: &str = "/users/current/accounts/a1";

/// A tmpfs of its own size on `path`, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mkdir");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .expect("mount runs");
        assert!(out.status.success(), "mounting a tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk { path: path.to_path_buf() }
    }

    /// Fill it, leaving `room` bytes free (about: a page or so), with a
    /// file of its own.
    fn fill(&self, room: u64) {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0x5a; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.flush();
        let len = f.metadata().expect("len").len();
        f.set_len(len.saturating_sub(room)).expect("shrink");
    }

    /// Give the room back.
    fn free(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

async fn echo() -> EchoUpstream {
    EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo")
}

async fn mint(g: &GatewayProcess, root: &str, name: &str) -> support::Response {
    g.api_call("POST", "/v1/tokens", Some(root), Some(&json!({ "name": name, "lifetime": "1h" }).to_string())).await
}

#[tokio::test]
#[ignore = "needs root (mounts a small tmpfs): scripts/test runs it"]
async fn a_full_disk_under_the_store_refuses_writes_loses_nothing_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("data"), "4m");
    let upstream = echo().await;
    let config = process_config(
        dir.path(),
        "ng",
        upstream.addr,
        "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true",
    );
    let mut g = serve_process(&config).await;
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("bootstrap file").trim().to_string();
    let token = |r: support::Response| -> String {
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["token"].as_str().expect("token").to_string()
    };
    let kept = token(mint(&g, &root, "kept").await);
    let doomed = token(mint(&g, &root, "doomed").await);

    disk.fill(0);
    // Writes go on while the database's own files have room, then fail:
    // each one either acknowledged or refused with 503, nothing between.
    let mut acknowledged = Vec::new();
    let refused = loop {
        let name = format!("while-full-{}", acknowledged.len());
        let r = mint(&g, &root, &name).await;
        match r.status {
            201 => acknowledged.push((name, token(r))),
            503 => {
                assert_eq!(r.reason(), "store_unavailable", "{}", r.body);
                break name;
            }
            s => panic!("a mint on a full disk answered {s}: {}", r.body),
        }
        assert!(acknowledged.len() < 2000, "the disk never filled");
    };
    // The proxy goes on enforcing: allowed, refused, revoked as before.
    assert_eq!(g.call("GET", ACCOUNT, &kept).await.status, 200);
    assert_eq!(g.call("GET", ACCOUNT, "not-a-token").await.status, 401);
    // A revocation is done or refused, never half: refused, the token
    // still works (its caller was told); done, it is enforced.
    let r = g.api_call("DELETE", "/v1/tokens?name=doomed", Some(&root), None).await;
    let doomed_revoked = match r.status {
        204 => true,
        503 => false,
        s => panic!("a revocation on a full disk answered {s}: {}", r.body),
    };
    let expect = if doomed_revoked { 401 } else { 200 };
    assert_eq!(g.call("GET", ACCOUNT, &doomed).await.status, expect);

    // Room again: writes work, without a restart.
    disk.free();
    let after = support::eventually_async(Duration::from_secs(10), || async {
        let r = mint(&g, &root, "after").await;
        (r.status == 201).then(|| r.json()["token"].as_str().expect("token").to_string())
    })
    .await;
    assert_eq!(g.call("GET", ACCOUNT, &after).await.status, 200);
    let r = g.api_call("DELETE", "/v1/tokens?name=doomed", Some(&root), None).await;
    assert!(matches!(r.status, 204 | 404), "{} {}", r.status, r.body);
    assert_eq!(g.call("GET", ACCOUNT, &doomed).await.status, 401);

    // Killed and started again: everything acknowledged is there, the
    // refused mint is not (its name is free), and the store opens whole.
    g.child.kill().expect("kill -9");
    let _ = g.child.wait();
    let g = serve_process(&config).await;
    for (name, t) in acknowledged.iter().map(|(n, t)| (n.as_str(), t)).chain([("kept", &kept), ("after", &after)]) {
        assert_eq!(g.call("GET", ACCOUNT, t).await.status, 200, "{name} after the restart");
    }
    assert_eq!(g.call("GET", ACCOUNT, &doomed).await.status, 401);
    assert_eq!(mint(&g, &root, &refused).await.status, 201, "the refused mint left a record behind");
    drop(g);
}

#[tokio::test]
#[ignore = "needs root (mounts a small tmpfs): scripts/test runs it"]
async fn a_full_disk_under_the_audit_log_drops_and_counts_events_and_never_holds_a_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let disk = SmallDisk::mount(&dir.path().join("log"), "1m");
    let upstream = echo().await;
    let config =
        process_config(dir.path(), "ng", upstream.addr, "audit:\n  sink:\n    file:\n      path: log/audit.jsonl");
    let key = TestKey::es256("demo");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write");
    let g = serve_process(&config).await;
    let token = key.sign(&payload("web", now_unix(), 3600, web_rules()));
    let audit = dir.path().join("log/audit.jsonl");
    let dropped = || support::metric(g.admin, "narrowgate_audit_events_dropped_total");

    // Room for some events (each is a few hundred bytes), then none.
    disk.fill(16 * 1024);
    let started = std::time::Instant::now();
    for i in 0..300 {
        let r = g.call("GET", ACCOUNT, &token).await;
        assert_eq!(r.status, 200, "request {i} on a full disk");
    }
    let took = started.elapsed();
    // Only whole lines: a write the disk cut short was taken back.
    let whole_lines = |what: &str| -> usize {
        let text = std::fs::read_to_string(&audit).expect("the audit log");
        assert!(text.is_empty() || text.ends_with('\n'), "{what}: the file ends in half a line");
        for line in text.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"));
        }
        text.lines().count()
    };
    // Every event written or counted as dropped, and most dropped.
    let (written, lost) = support::eventually_async(Duration::from_secs(5), || async {
        let (written, lost) = (whole_lines("full"), dropped().await.unwrap_or(0.0));
        (written as f64 + lost == 300.0).then_some((written, lost))
    })
    .await;
    assert!(lost > 0.0 && written < 300, "{written} events written to a full disk, {lost} dropped");
    eprintln!("300 requests on a full disk in {took:?}: {written} events written, {lost} dropped");

    // Room again: events are written again, and no more are dropped.
    disk.free();
    for _ in 0..5 {
        assert_eq!(g.call("GET", ACCOUNT, &token).await.status, 200);
    }
    support::eventually(Duration::from_secs(5), || (whole_lines("after") >= written + 5).then_some(())).await;
    assert_eq!(dropped().await, Some(lost), "events dropped after the room came back");
}
