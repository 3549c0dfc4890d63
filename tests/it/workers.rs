//! Several proxy workers (`server.worker_threads`): each a thread with a
//! runtime and a listening socket of its own on the one port
//! (`SO_REUSEPORT`). Connections are spread over the workers and every
//! request is served as with one; a port another socket holds, even one
//! that allows sharing, is refused rather than shared.

use crate::support;

use std::time::Duration;

use narrowgate::echo::EchoUpstream;
use support::{build_request, is_complete, parse_response, process_config, serve_process};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACCOUNT: &str = "/users/current/accounts/a1";

/// CPU ticks (user + system) of each of the process's threads named
/// `proxy-worker-*`.
fn worker_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let path = task.expect("task").path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim().to_string();
        if !name.starts_with("proxy-worker-") {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the `(comm)`: state is the 3rd, utime the 14th.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
            + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        out.push((name, ticks));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_the_port_and_serve_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let config = process_config(
        dir.path(),
        "ng",
        echo.addr,
        "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true\n\
         server:\n  worker_threads: 2\n  drain_delay: 0s",
    );
    let mut g = serve_process(&config).await;
    let workers = worker_ticks(g.child.id());
    let names: Vec<&str> = workers.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["proxy-worker-1", "proxy-worker-2"]);

    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("bootstrap file").trim().to_string();
    let r = g.api_call("POST", "/v1/tokens", Some(&root), Some(r#"{"name":"load","lifetime":"1h"}"#)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let token = r.json()["token"].as_str().expect("token").to_string();
    let auth = format!("Bearer {token}");
    let allowed = build_request("GET", ACCOUNT, &[("Authorization", &auth)]).replace("Connection: close\r\n", "");
    let denied = build_request("GET", "/nowhere", &[("Authorization", &auth)]).replace("Connection: close\r\n", "");

    // 64 kept-alive connections, 100 requests each, every tenth one denied (a path no route matches).
    let before = echo.received().len();
    let mut clients = Vec::new();
    for _ in 0..64 {
        let (proxy, allowed, denied) = (g.proxy, allowed.clone(), denied.clone());
        clients.push(tokio::spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(proxy).await.expect("connect");
            let mut statuses = Vec::new();
            for i in 0..100 {
                let req = if i % 10 == 9 { &denied } else { &allowed };
                stream.write_all(req.as_bytes()).await.expect("write");
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !is_complete(&buf) {
                    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
                        .await
                        .expect("in time")
                        .expect("read");
                    assert!(n > 0, "closed mid-exchange");
                    buf.extend_from_slice(&chunk[..n]);
                }
                statuses.push(parse_response(&buf).status);
            }
            statuses
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for c in clients {
        for s in c.await.expect("client") {
            *counts.entry(s).or_insert(0) += 1;
        }
    }
    assert_eq!(counts, [(200, 5760), (403, 640)].into_iter().collect());
    let received = echo.received();
    assert_eq!(received.len() - before, 5760, "the upstream got exactly the allowed requests");
    assert!(received[before..].iter().all(|r| r.method == "GET" && r.target == ACCOUNT));
    assert!(received[before..].iter().all(|r| r.header("authorization").is_none()), "never the credential");

    // Both workers did part of the work.
    for (name, ticks) in worker_ticks(g.child.id()) {
        assert!(ticks > 0, "{name} served nothing");
    }

    // And both drain: SIGTERM, exit 0.
    assert!(
        std::process::Command::new("kill").args(["-TERM", &g.child.id().to_string()]).status().expect("kill").success()
    );
    // Exited within 20 s.
    let status = support::eventually(Duration::from_secs(20), || g.child.try_wait().expect("wait")).await;
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn a_port_held_by_another_socket_is_refused_not_shared() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A stranger listening on the port, allowing it to be shared.
    let stranger = tokio::net::TcpSocket::new_v4().expect("socket");
    stranger.set_reuseaddr(true).expect("reuseaddr");
    stranger.set_reuseport(true).expect("reuseport");
    stranger.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let stranger = stranger.listen(16).expect("listen");
    let taken = stranger.local_addr().expect("addr");
    let config = process_config(
        dir.path(),
        "ng",
        "127.0.0.1:9".parse().expect("addr"),
        &format!("listeners:\n  proxy: \"{taken}\"\nserver:\n  worker_threads: 2"),
    );
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_narrowgate"))
            .args(["serve", "--config", config.to_str().expect("utf8")])
            .output(),
    )
    .await
    .expect("exits in time")
    .expect("run");
    assert!(!out.status.success(), "started on a port another socket holds");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the proxy listener cannot listen on"), "{err}");
}
