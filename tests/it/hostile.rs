//! Hostile inputs: each is refused, and the upstream receives nothing.

use crate::support;

use jsonwebtoken::{Algorithm, EncodingKey};
use narrowgate::token::now_unix;
use narrowgate::token::testkit::{TestKey, payload, rule, sign_raw, unsigned};
use serde_json::{Value, json};
use support::{Harness, build_request};

fn wide_rules() -> Value {
    json!([rule("*", &["*"], &["*:$USER_ID$:*"])])
}

/// May read account a1 (REST) and stream a1 (WebSocket), nothing else.
fn web_rules() -> Value {
    json!([
        rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"]),
        rule("mt-manager-api", &["reader"], &["account:$USER_ID$:a1"]),
    ])
}

fn with(mut p: Value, k: &str, v: Value) -> Value {
    p[k] = v;
    p
}

#[tokio::test]
async fn hostile_tokens_are_refused_before_the_upstream() {
    let h = Harness::start().await;
    let now = now_unix();
    let good = payload("mallory", now, 3600, wide_rules());
    let stranger = TestKey::es256("demo");
    let header = json!({"alg": "ES256", "typ": "JWT", "kid": "demo"});
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("alg none", unsigned(&json!({"alg": "none", "kid": "demo"}), &good), 401, "invalid_token"),
        ("alg None", format!("{}c2ln", unsigned(&json!({"alg": "None", "kid": "demo"}), &good)), 401, "invalid_token"),
        (
            "HS256 signed with the ES256 public key",
            sign_raw(
                &json!({"alg": "HS256", "typ": "JWT", "kid": "demo"}),
                &good,
                &EncodingKey::from_secret(&h.key.public),
                Algorithm::HS256,
            ),
            401,
            "invalid_token",
        ),
        ("signed by an unknown key", stranger.sign(&good), 401, "invalid_token"),
        ("expired", h.sign(&with(good.clone(), "exp", json!(now - 3600))), 401, "expired"),
        ("nbf in the future", h.sign(&with(good.clone(), "nbf", json!(now + 3600))), 401, "not_yet_valid"),
        ("wrong iss", h.sign(&with(good.clone(), "iss", json!("evil"))), 401, "invalid_token"),
        ("aud of the wrong type", h.sign(&with(good.clone(), "aud", json!({"a": 1}))), 401, "invalid_token"),
        (
            "unknown crit",
            sign_raw(&with(header.clone(), "crit", json!(["x-ext"])), &good, &h.key.encoding, Algorithm::ES256),
            401,
            "invalid_token",
        ),
        ("garbage", "not.a.token".to_string(), 401, "invalid_token"),
        // A claims set is a JSON object: an array, validly signed, would
        // otherwise be read into the claims by position (iss, sub, aud, exp,
        // nbf, iat, jti, name, kind, role, master, accessRules, …).
        (
            "claims as a JSON array",
            h.sign(&json!([
                "narrowgate",
                "mallory",
                null,
                now + 3600,
                null,
                now,
                "j-array",
                null,
                "access",
                "admin",
                true,
                wide_rules(),
                [],
                null
            ])),
            401,
            "invalid_token",
        ),
        ("claims as a JSON number", h.sign(&json!(1)), 401, "invalid_token"),
        ("claims as null", h.sign(&Value::Null), 401, "invalid_token"),
        (
            "a header that is a JSON array",
            sign_raw(&json!(["ES256", "demo"]), &good, &h.key.encoding, Algorithm::ES256),
            401,
            "invalid_token",
        ),
        ("issued an hour from now", h.sign(&with(good.clone(), "iat", json!(now + 3600))), 401, "invalid_token"),
        (
            "a token past the size limit",
            format!("{}.{}.sig", "a".repeat(6000), "b".repeat(4000)),
            401,
            "token_too_large",
        ),
    ];
    for (name, token, status, reason) in cases {
        let resp = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await;
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        assert_eq!(resp.reason(), reason, "{name}");
        assert!(
            resp.header("www-authenticate").is_some_and(|v| v.contains(r#"error="invalid_token""#)),
            "{name}: {:?}",
            resp.header("www-authenticate")
        );
        assert!(h.upstream_received().is_empty(), "{name}: upstream received a request");
    }
    // The valid token itself is accepted, so the cases above fail for their
    // own reason.
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {}", h.sign(&good)))]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_megabyte_token_is_refused() {
    let h = Harness::start().await;
    let token = "a".repeat(1024 * 1024);
    let resp = h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {token}"))]).await;
    assert!(resp.status == 431 || resp.status == 400, "status {}", resp.status);
    assert!(h.upstream_received().is_empty());
    // The same megabyte in a query parameter.
    let resp = h.get(&format!("/users/current/accounts/a1?access_token={token}"), &[]).await;
    assert!(matches!(resp.status, 400 | 414 | 431), "status {}", resp.status);
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn conflicting_credentials_are_refused() {
    let h = Harness::start().await;
    let a = h.token("alice", wide_rules());
    let b = h.token("bob", wide_rules());
    let two_auth = h
        .get(
            "/users/current/accounts/a1",
            &[("Authorization", &format!("Bearer {a}")), ("Authorization", &format!("Bearer {a}"))],
        )
        .await;
    assert_eq!((two_auth.status, two_auth.reason().as_str()), (400, "conflicting_credentials"));
    let differ =
        h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {a}")), ("auth-token", &b)]).await;
    assert_eq!((differ.status, differ.reason().as_str()), (400, "conflicting_credentials"));
    assert!(h.upstream_received().is_empty());
    // The same token in both places is one credential.
    let same =
        h.get("/users/current/accounts/a1", &[("Authorization", &format!("Bearer {a}")), ("auth-token", &a)]).await;
    assert_eq!(same.status, 200);
    assert_eq!(h.upstream_received().len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn hostile_paths_are_refused() {
    let h = Harness::start().await;
    let web = format!("Bearer {}", h.token("web", web_rules()));
    // The token may read a1 only; each path tries to reach a2 (or hide it).
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        ("dot-dot", "/users/current/accounts/a1/../a2", 403, "resource_not_allowed"),
        ("encoded dot-dot", "/users/current/accounts/a1/%2e%2e/a2", 403, "resource_not_allowed"),
        ("upper-case encoded dot-dot", "/users/current/accounts/a1/%2E%2E/a2", 403, "resource_not_allowed"),
        ("double slash", "//users//current/accounts//a2", 403, "resource_not_allowed"),
        ("encoded slash", "/users/current/accounts/a1%2F..%2Fa2", 400, "ambiguous_path"),
        ("encoded backslash", "/users/current/accounts/a1%5C..%5Ca2", 400, "ambiguous_path"),
        ("backslash", "/users/current/accounts/a1\\..\\a2", 400, "ambiguous_path"),
        ("semicolon", "/users/current/accounts/a2;a1", 400, "ambiguous_path"),
        ("semicolon dot-dot", "/users/current/accounts/a1;/../a2", 400, "ambiguous_path"),
        ("NUL", "/users/current/accounts/a1%00", 400, "ambiguous_path"),
        ("CRLF", "/users/current/accounts/a1%0d%0aX-Injected:%201", 400, "ambiguous_path"),
        (
            "full-width slash and dots",
            "/users/current/accounts/a1%EF%BC%8F%EF%BC%8E%EF%BC%8E%EF%BC%8Fa2",
            400,
            "ambiguous_path",
        ),
        (
            "raw full-width characters",
            "/users/current/accounts/a1\u{ff0f}\u{ff0e}\u{ff0e}\u{ff0f}a2",
            400,
            "ambiguous_path",
        ),
        ("above the root", "/../users/current/accounts/a1", 400, "ambiguous_path"),
        ("malformed escape", "/users/current/accounts/a%", 400, "ambiguous_path"),
        // The HTTP parser drops a fragment before any code sees it; what is
        // matched is then exactly what would be forwarded, here a2: denied.
        ("fragment", "/users/current/accounts/a2#/../a1", 403, "resource_not_allowed"),
        ("absolute-form target", "http://evil.test/users/current/accounts/a1", 400, "bad_request"),
    ];
    for (name, target, status, reason) in cases {
        let resp = h.raw(build_request("GET", target, &[("Authorization", &web)]).as_bytes()).await;
        assert_eq!(resp.status, status, "{name}: {}", resp.body);
        if !reason.is_empty() {
            assert_eq!(resp.reason(), reason, "{name}");
        }
        assert!(h.upstream_received().is_empty(), "{name}: upstream received a request");
    }
    // A clean path to a1 is allowed, so the refusals above are about the path.
    let ok = h.get("/users/current/accounts/a1", &[("Authorization", &web)]).await;
    assert_eq!(ok.status, 200);
    // And a dot-dot that resolves to a1 is forwarded canonical.
    let ok = h.get("/users/current/accounts/a2/../a1", &[("Authorization", &web)]).await;
    assert_eq!(ok.status, 200);
    let seen = h.upstream_received();
    assert_eq!(seen.iter().map(|r| r.target.as_str()).collect::<Vec<_>>(), ["/users/current/accounts/a1"; 2]);
    h.shutdown().await;
}

#[tokio::test]
async fn request_line_and_header_tricks_are_refused() {
    let h = Harness::start().await;
    let web = format!("Bearer {}", h.token("web", web_rules()));
    let override_resp =
        h.get("/users/current/accounts/a1", &[("Authorization", &web), ("X-HTTP-Method-Override", "DELETE")]).await;
    assert_eq!((override_resp.status, override_resp.reason().as_str()), (400, "method_override_rejected"));
    let underscore =
        h.get("/users/current/accounts/a1", &[("Authorization", &web), ("X_Method_Override", "DELETE")]).await;
    assert_eq!(underscore.status, 400);
    let two_hosts = h
        .raw(
            format!(
                "GET /users/current/accounts/a1 HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\nAuthorization: {web}\r\nConnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
    assert_eq!((two_hosts.status, two_hosts.reason().as_str()), (400, "bad_request"));
    let no_host = h
        .raw(
            format!("GET /users/current/accounts/a1 HTTP/1.1\r\nAuthorization: {web}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    assert_eq!(no_host.status, 400);
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}

#[tokio::test]
async fn upgrades_are_enforced_like_any_request() {
    let h = Harness::start().await;
    let web = format!("Bearer {}", h.token("web", web_rules()));
    let ws =
        [("Upgrade", "websocket"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")];
    // a2 is not the token's: refused before the upstream sees the handshake.
    let mut headers = vec![("Authorization", web.as_str())];
    headers.extend(ws);
    let resp = h.raw(ws_request("/mt-manager/accounts/a2/stream", &headers).as_bytes()).await;
    assert_eq!((resp.status, resp.reason().as_str()), (403, "resource_not_allowed"));
    // An upgrade on a REST route is refused even for an allowed resource.
    let resp = h.raw(ws_request("/users/current/accounts/a1", &headers).as_bytes()).await;
    assert_eq!((resp.status, resp.reason().as_str()), (400, "upgrade_not_allowed"));
    // No token: 401.
    let resp = h.raw(ws_request("/mt-manager/accounts/a1/stream", &ws).as_bytes()).await;
    assert_eq!(resp.status, 401);
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}

fn ws_request(target: &str, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("Host", "gateway.test"), ("Connection", "Upgrade")];
    all.extend_from_slice(headers);
    support::raw_request("GET", target, &all, "")
}

#[tokio::test]
async fn ambiguous_message_framing_never_reaches_the_upstream_desynchronized() {
    let h = Harness::start().await;
    // A writer: the PUT itself is allowed.
    let rules = json!([rule("trading-account-management-api", &["writer"], &["account:$USER_ID$:a1"])]);
    let web = format!("Bearer {}", h.token("writer", rules));
    // Content-Length and chunked together, a request for a2 hidden after the
    // chunked body. RFC 9112 §6.1: Transfer-Encoding wins and an intermediary
    // drops the Content-Length, so the hidden bytes are a second request of
    // the client's, judged on their own (no token: 401).
    let smuggle = format!(
        "PUT /users/current/accounts/a1 HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: {web}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /users/current/accounts/a2 HTTP/1.1\r\nHost: gateway.test\r\nConnection: close\r\n\r\n"
    );
    let _ = h.raw(smuggle.as_bytes()).await;
    let seen = h.upstream_received();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].target.as_str(), seen[0].body.as_str()),
        ("PUT", "/users/current/accounts/a1", "")
    );
    assert_eq!(seen[0].header("content-length"), None, "the stale Content-Length was forwarded");

    let two_lengths = format!(
        "PUT /users/current/accounts/a1 HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: {web}\r\nContent-Length: 3\r\nContent-Length: 40\r\nConnection: close\r\n\r\nabc"
    );
    assert_eq!(h.raw(two_lengths.as_bytes()).await.status, 400);
    assert!(h.upstream_received().is_empty());
    h.shutdown().await;
}

/// The api and admin listeners keep the proxy's connection limits: a
/// client that never finishes its headers is cut off.
#[tokio::test]
async fn every_listener_cuts_off_a_slow_header() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = support::Harness::start_with(
        |d| {
            d.set("server.header_read_timeout", "300ms");
        },
        |_| {},
    )
    .await;
    for (name, addr) in [("proxy", h.proxy), ("api", h.api), ("admin", h.admin)] {
        let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ").await.expect("write");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(3), conn.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "{name}: the connection was held open");
        let text = String::from_utf8_lossy(&buf);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{name}: {text}");
    }
    h.shutdown().await;
}
