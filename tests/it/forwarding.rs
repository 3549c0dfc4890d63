//! Forwarding: header hygiene, credentials never reaching the upstream,
//! X-Forwarded-* trust, keep-alive, upgrades, timeouts and upstream failures.

use crate::support;

use std::time::Duration;

use narrowgate::token::testkit::rule;
use serde_json::{Value, json};
use support::{Harness, eventually, parse_response, raw_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn web_rules() -> Value {
    json!([
        rule("trading-account-management-api", &["reader", "writer"], &["account:$USER_ID$:a1"]),
        rule("mt-manager-api", &["reader"], &["account:$USER_ID$:a1"]),
    ])
}

#[tokio::test]
async fn client_headers_cannot_forge_identity_or_survive_hop_by_hop() {
    let h = Harness::start().await;
    let token = h.token("web", web_rules());
    let auth = format!("Bearer {token}");
    let resp = h
        .get(
            "/users/current/accounts/a1",
            &[
                ("Authorization", &auth),
                ("X-Narrowgate-Subject", "root"),
                ("x_narrowgate_roles", "admin"),
                ("X-NARROWGATE-Anything", "1"),
                ("Connection", "keep-alive, x-custom-hop, x-narrowgate-subject, x-forwarded-for, x-request-id"),
                ("X-Custom-Hop", "drop-me"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Proxy-Authorization", "Basic eDp5"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Host", "evil.test"),
                ("Forwarded", "for=6.6.6.6"),
                ("X-Request-Id", "client-chosen"),
                ("X-Keep-Me", "yes"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = h.upstream_received();
    assert_eq!(seen.len(), 1);
    let got = &seen[0];
    // The gateway's identity headers, not the client's, and exactly one each.
    assert_eq!(got.header("x-narrowgate-subject"), Some("web"));
    assert_eq!(got.headers.iter().filter(|(n, _)| n == "x-narrowgate-subject").count(), 1);
    assert_eq!(got.header("x-narrowgate-roles"), Some("reader,writer"));
    for absent in [
        "x_narrowgate_roles",
        "x-narrowgate-anything",
        "x-custom-hop",
        "keep-alive",
        "te",
        "proxy-authorization",
        "forwarded",
        "authorization",
    ] {
        assert_eq!(got.header(absent), None, "{absent} reached the upstream");
    }
    // Connection named x-forwarded-for and x-request-id; the gateway's own
    // values are still there.
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-host"), Some("gateway.test"));
    let rid = got.header("x-request-id").expect("request id");
    assert_ne!(rid, "client-chosen");
    assert_eq!(resp.header("x-request-id"), Some(rid));
    assert_eq!(got.header("x-keep-me"), Some("yes"));
    assert!(!format!("{:?}", got.headers).contains(&token), "the token reached the upstream");
    h.shutdown().await;
}

#[tokio::test]
async fn a_trusted_proxy_keeps_its_forwarded_headers() {
    let h = Harness::start_with(
        |d| {
            d.set("trusted_proxies", serde_json::json!(["127.0.0.0/8"]));
        },
        |_| {},
    )
    .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let resp = h
        .get(
            "/users/current/accounts/a1",
            &[
                ("Authorization", &auth),
                ("X-Forwarded-For", "203.0.113.9"),
                ("X-Forwarded-Host", "api.example"),
                ("X-Forwarded-Proto", "https"),
                ("X-Request-Id", "edge-42"),
                ("X-Narrowgate-Subject", "root"),
            ],
        )
        .await;
    assert_eq!(resp.status, 200);
    let got = &h.upstream_received()[0];
    assert_eq!(got.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(got.header("x-forwarded-host"), Some("api.example"));
    assert_eq!(got.header("x-forwarded-proto"), Some("https"));
    assert_eq!(got.header("x-request-id"), Some("edge-42"));
    // Trust covers forwarding headers, never identity.
    assert_eq!(got.header("x-narrowgate-subject"), Some("web"));
    h.shutdown().await;
}

#[tokio::test]
async fn query_and_cookie_credentials_are_removed_before_forwarding() {
    let h = Harness::start_with(
        |d| {
            let sources = d.at("credentials").as_array_mut().expect("a list");
            sources.push(serde_json::json!({ "source": "query", "name": "access_token" }));
            sources.push(serde_json::json!({ "source": "cookie", "name": "ng_token" }));
        },
        |_| {},
    )
    .await;
    let token = h.token("web", web_rules());
    let resp = h.get(&format!("/users/current/accounts/a1?x=1&access_token={token}&y=2"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = h.get("/users/current/accounts/a1", &[("Cookie", &format!("a=1; ng_token={token}; b=2"))]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    // Every query source is stripped (the demo's accessTokenId comes first),
    // in any spelling an upstream would decode to the name.
    let resp = h.get(&format!("/users/current/accounts/a1?access%5Ftoken={token}&y=3"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let resp = h.get(&format!("/users/current/accounts/a1?accessTokenId={token}"), &[]).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let seen = h.upstream_received();
    assert_eq!(seen[0].target, "/users/current/accounts/a1?x=1&y=2");
    assert_eq!(seen[1].target, "/users/current/accounts/a1");
    assert_eq!(seen[1].header("cookie"), Some("a=1; b=2"));
    assert_eq!(seen[2].target, "/users/current/accounts/a1?y=3");
    assert_eq!(seen[3].target, "/users/current/accounts/a1");
    assert!(!format!("{seen:?}").contains(&token));
    h.shutdown().await;
}

#[tokio::test]
async fn the_credential_is_forwarded_only_when_configured() {
    let h = Harness::start_with(
        |d| {
            d.set("forwarding.forward_credential", true);
        },
        |_| {},
    )
    .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
    assert_eq!(h.upstream_received()[0].header("authorization"), Some(auth.as_str()));
    h.shutdown().await;
}

#[tokio::test]
async fn keep_alive_serves_several_requests_and_bodies_stream_through() {
    let h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let mut stream = TcpStream::connect(h.proxy).await.expect("connect");
    for i in 0..3 {
        let body = format!("{{\"n\":{i}}}");
        let len = body.len().to_string();
        let headers = [
            ("Host", "gateway.test"),
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/json"),
            ("Content-Length", len.as_str()),
        ];
        let req = raw_request("PUT", "/users/current/accounts/a1", &headers, &body);
        stream.write_all(req.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let resp = loop {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed after {i} responses");
            buf.extend_from_slice(&chunk[..n]);
            let r = parse_response(&buf);
            if r.status != 0 && r.header("content-length").and_then(|l| l.parse::<usize>().ok()) == Some(r.body.len()) {
                break r;
            }
        };
        assert_eq!(resp.status, 200, "request {i}");
    }
    let seen = h.upstream_received();
    assert_eq!(seen.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(), [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#]);
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    for _ in 0..5 {
        assert_eq!(h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await.status, 200);
    }
    let seen = h.upstream_received();
    assert_eq!(seen.len(), 5);
    let peers: std::collections::HashSet<&str> = seen.iter().map(|r| r.peer.as_str()).collect();
    assert_eq!(peers.len(), 1, "sequential requests should share one upstream connection: {peers:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let h = Harness::start().await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let mut stream = TcpStream::connect(h.proxy).await.expect("connect");
    let headers = [
        ("Host", "gateway.test"),
        ("Authorization", auth.as_str()),
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    let req = raw_request("GET", "/mt-manager/accounts/a1/stream", &headers, "");
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "closed during handshake");
        buf.extend_from_slice(&chunk[..n]);
    }
    let resp = parse_response(&buf);
    assert_eq!(resp.status, 101, "{}", String::from_utf8_lossy(&buf));
    assert_eq!(resp.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    let seen = h.upstream_received();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("upgrade"), Some("websocket"));
    assert_eq!(seen[0].header("x-narrowgate-subject"), Some("web"));
    assert_eq!(seen[0].header("authorization"), None);
    // Bytes now flow both ways through the tunnel.
    stream.write_all(b"ping through the gateway").await.expect("write");
    let mut echoed = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed)).await.expect("in time").expect("read");
    assert_eq!(&echoed, b"ping through the gateway");
    h.shutdown().await;
}

#[tokio::test]
async fn upstream_failures_get_json_502_and_504() {
    // A port that refuses connections, held until the test ends.
    let (_held, free) = support::refusing_address();
    let h = Harness::start_with(|_| {}, |c| c.upstream.addresses = vec![free.to_string().parse().expect("authority")])
        .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (502, "upstream_connect"));
    assert_eq!(resp.json()["message"], "the upstream could not be reached");
    assert!(!resp.body.contains("refused") && !resp.body.contains("127.0.0.1"), "internal text leaked: {}", resp.body);
    let metrics = h.admin_get("/metrics").await.body;
    assert!(metrics.contains(r#"narrowgate_upstream_errors_total{kind="connect",upstream="default"} 1"#), "{metrics}");
    h.shutdown().await;

    let h = Harness::start_with(
        |d| {
            d.set("upstream.read_timeout", "200ms");
        },
        |_| {},
    )
    .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &auth), ("x-echo-delay-ms", "2000")]).await;
    assert_eq!((resp.status, resp.reason().as_str()), (504, "upstream_timeout"));
    let metrics = h.admin_get("/metrics").await.body;
    assert!(metrics.contains(r#"narrowgate_upstream_errors_total{kind="timeout",upstream="default"} 1"#), "{metrics}");
    h.shutdown().await;
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed() {
    let h = Harness::start_with(
        |d| {
            d.set("server.header_read_timeout", "300ms").set("server.idle_timeout", "300ms");
        },
        |_| {},
    )
    .await;
    // Idle: connect and say nothing.
    let mut idle = TcpStream::connect(h.proxy).await.expect("connect");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "idle connection got {n:?}");
    // Slow headers: half a request head, then silence.
    let mut slow = TcpStream::connect(h.proxy).await.expect("connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.expect("write");
    let mut out = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut out)).await;
    assert!(r.is_ok(), "slow-header connection still open");
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn header_limits_are_enforced() {
    let h = Harness::start().await;
    let many: Vec<(String, String)> = (0..100).map(|i| (format!("x-h{i}"), "v".to_string())).collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let resp = h.get("/health", &refs).await;
    assert!(resp.status == 431 || resp.status == 400, "status {}", resp.status);
    let big = "v".repeat(20_000);
    let resp = h.get("/health", &[("x-big", &big)]).await;
    assert!(resp.status == 431 || resp.status == 400, "status {}", resp.status);
    assert!(h.upstream_received().is_empty());
    // Within the limits the same route works.
    assert_eq!(h.get("/health", &[]).await.status, 200);
    eventually(Duration::from_secs(2), || (h.upstream_received().len() == 1).then_some(())).await;
    h.shutdown().await;
}

type Counter = std::sync::Arc<std::sync::atomic::AtomicUsize>;

/// An upstream that answers one request per connection with keep-alive
/// advertised, then closes the connection, as servers with a short idle
/// timeout do. Counts connections opened and closed.
async fn closing_upstream() -> (std::net::SocketAddr, Counter, Counter) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Counter::new(AtomicUsize::new(0));
    let closed = Counter::new(AtomicUsize::new(0));
    let (opened, done) = (conns.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            opened.fetch_add(1, Ordering::SeqCst);
            let done = done.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok").await;
                drop(s);
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (addr, conns, closed)
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_not_reused() {
    use std::sync::atomic::Ordering;
    let (addr, conns, closed) = closing_upstream().await;
    let h = Harness::start_with(|_| {}, |c| c.upstream.addresses = vec![addr.to_string().parse().expect("authority")])
        .await;
    let auth = format!("Bearer {}", h.token("web", web_rules()));
    for i in 0..3 {
        let resp = h.get("/users/current/accounts/a1", &[("Authorization", &auth)]).await;
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"), "request {i}");
        eventually(Duration::from_secs(5), || (closed.load(Ordering::SeqCst) > i).then_some(())).await;
        // The upstream has closed; the gateway learns it when its connection
        // task reads the FIN, which nothing outside the pool can observe.
        // With nothing to poll, this stays a fixed wait (ample on loopback):
        // the next request must find the connection gone, not race the FIN.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(conns.load(Ordering::SeqCst), 3);
    h.shutdown().await;
}
