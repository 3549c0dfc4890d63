//! Upgrades carry only what the route allows: a well-formed WebSocket
//! handshake on a `ws` route, answered by a genuine WebSocket 101. Every
//! other upgrade is refused before the upstream sees it, and a 101 that
//! does not answer the handshake is never relayed (no unenforced tunnel).

use crate::support;

use std::time::Duration;

use narrowgate::token::testkit::rule;
use serde_json::json;
use support::{Harness, parse_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const STREAM: &str = "/mt-manager/accounts/a1/stream";
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

async fn harness() -> (Harness, String) {
    let h = Harness::start().await;
    let token = h.token("web", json!([rule("mt-manager-api", &["reader"], &["account:$USER_ID$:a1"])]));
    (h, format!("Bearer {token}"))
}

/// A request with exactly these headers (besides Host and Authorization).
fn request(method: &str, version: &str, auth: &str, headers: &[(&str, &str)]) -> String {
    let mut req = format!("{method} {STREAM} {version}\r\nHost: gateway.test\r\nAuthorization: {auth}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

fn websocket<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ];
    h.extend_from_slice(extra);
    h
}

#[tokio::test]
async fn upgrades_to_anything_but_websocket_are_refused_before_the_upstream() {
    let (h, auth) = harness().await;
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "h2c",
            vec![
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
        ),
        ("h2c without settings", vec![("Connection", "Upgrade"), ("Upgrade", "h2c")]),
        ("TLS/1.2", vec![("Connection", "Upgrade"), ("Upgrade", "TLS/1.2")]),
        ("HTTP/2.0", vec![("Connection", "Upgrade"), ("Upgrade", "HTTP/2.0")]),
        ("a list offering websocket and h2c", vec![("Connection", "Upgrade"), ("Upgrade", "websocket, h2c")]),
        ("a list offering h2c first", vec![("Connection", "Upgrade"), ("Upgrade", "h2c, websocket")]),
        ("two Upgrade headers", vec![("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Upgrade", "h2c")]),
        ("a lookalike", vec![("Connection", "Upgrade"), ("Upgrade", "websocket2")]),
        ("Connection: upgrade alone", vec![("Connection", "upgrade")]),
        ("HTTP2-Settings alone", vec![("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")]),
        ("websocket beside HTTP2-Settings", websocket(&[("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])),
    ];
    for (name, headers) in cases {
        let resp = h.raw(request("GET", "HTTP/1.1", &auth, &headers).as_bytes()).await;
        assert_eq!(resp.status, 400, "{name}: {}", resp.body);
        assert!(["upgrade_not_allowed", "bad_request"].contains(&resp.reason().as_str()), "{name}: {}", resp.body);
        assert!(h.upstream_received().is_empty(), "{name} reached the upstream");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_malformed_websocket_handshake_is_refused_before_the_upstream() {
    let (h, auth) = harness().await;
    let without = |name: &str| websocket(&[]).into_iter().filter(|(n, _)| *n != name).collect::<Vec<_>>();
    let replace = |name: &'static str, value: &'static str| {
        websocket(&[]).into_iter().map(|(n, v)| if n == name { (n, value) } else { (n, v) }).collect::<Vec<_>>()
    };
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, &str, &str, Headers)> = vec![
        ("no key", "GET", "HTTP/1.1", without("Sec-WebSocket-Key")),
        ("a key that is not base64", "GET", "HTTP/1.1", replace("Sec-WebSocket-Key", "not base64 at all!")),
        ("a key of 15 bytes", "GET", "HTTP/1.1", replace("Sec-WebSocket-Key", "AAAAAAAAAAAAAAAAAAAA")),
        ("two keys", "GET", "HTTP/1.1", websocket(&[("Sec-WebSocket-Key", KEY)])),
        ("no version", "GET", "HTTP/1.1", without("Sec-WebSocket-Version")),
        ("version 8", "GET", "HTTP/1.1", replace("Sec-WebSocket-Version", "8")),
        ("two versions", "GET", "HTTP/1.1", websocket(&[("Sec-WebSocket-Version", "13")])),
        ("Connection without upgrade", "GET", "HTTP/1.1", replace("Connection", "keep-alive")),
        ("POST", "POST", "HTTP/1.1", websocket(&[("Content-Length", "0")])),
        ("HTTP/1.0", "GET", "HTTP/1.0", websocket(&[])),
    ];
    for (name, method, version, headers) in cases {
        let resp = h.raw(request(method, version, &auth, &headers).as_bytes()).await;
        assert!(resp.status == 400 || resp.status == 403, "{name}: {} {}", resp.status, resp.body);
        assert!(h.upstream_received().is_empty(), "{name} reached the upstream");
    }
    h.shutdown().await;
}

/// Send a handshake and read the response head; the stream stays open.
async fn handshake(h: &Harness, auth: &str, headers: &[(&str, &str)]) -> (TcpStream, support::Response) {
    let mut stream = TcpStream::connect(h.proxy).await.expect("connect");
    stream.write_all(request("GET", "HTTP/1.1", auth, headers).as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            let n = stream.read(&mut chunk).await.expect("read");
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("a response in time");
    (stream, parse_response(&buf))
}

#[tokio::test]
async fn a_genuine_websocket_handshake_opens_a_tunnel() {
    let (h, auth) = harness().await;
    for (connection, upgrade) in
        [("Upgrade", "websocket"), ("keep-alive, Upgrade", "WebSocket"), ("upgrade", "websocket")]
    {
        let headers = websocket(&[])
            .into_iter()
            .map(|(n, v)| match n {
                "Connection" => (n, connection),
                "Upgrade" => (n, upgrade),
                _ => (n, v),
            })
            .collect::<Vec<_>>();
        let (mut stream, resp) = handshake(&h, &auth, &headers).await;
        assert_eq!(resp.status, 101, "{}", resp.body);
        assert_eq!(resp.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        let seen = h.upstream_received();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].header("upgrade"), Some("websocket"));
        assert_eq!(seen[0].header("connection"), Some("upgrade"));
        assert_eq!(seen[0].header("http2-settings"), None);
        stream.write_all(b"ping").await.expect("write");
        let mut echoed = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echoed))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&echoed, b"ping");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_101_that_does_not_answer_the_websocket_handshake_is_not_relayed() {
    let (h, auth) = harness().await;
    let cases: [(&str, &[(&str, &str)]); 4] = [
        ("the upstream switches to h2c", &[("x-echo-upgrade", "h2c")]),
        ("the upstream switches to a made-up protocol", &[("x-echo-upgrade", "tunnel")]),
        ("a wrong Sec-WebSocket-Accept", &[("x-echo-accept", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")]),
        ("no Sec-WebSocket-Accept", &[("x-echo-accept", "")]),
    ];
    for (name, extra) in cases {
        let (mut stream, resp) = handshake(&h, &auth, &websocket(extra)).await;
        assert_eq!((resp.status, resp.reason().as_str()), (502, "upstream_unavailable"), "{name}");
        // The upstream was asked (it misbehaved), but nothing is tunnelled:
        // what the client sends next is read as HTTP by the gateway (a
        // request without a token: 401), never relayed to the upstream.
        assert_eq!(h.upstream_received().len(), 1, "{name}");
        let probe = support::build_request("GET", STREAM, &[]);
        stream.write_all(probe.as_bytes()).await.expect("write");
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(parse_response(&rest).status, 401, "{name}: {}", String::from_utf8_lossy(&rest));
        assert!(h.upstream_received().is_empty(), "{name}: bytes reached the upstream after the 101");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_101_nobody_asked_for_is_not_relayed() {
    let (h, auth) = harness().await;
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &auth), ("x-echo-upgrade", "h2c")]).await;
    // The token has no REST rule: refused. A wider token is asked next.
    assert_eq!(resp.status, 403);
    let token = h.token("web", json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]));
    let resp = h
        .get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}")), ("x-echo-upgrade", "h2c")])
        .await;
    assert_eq!((resp.status, resp.reason().as_str()), (502, "upstream_unavailable"));
    h.shutdown().await;
}
