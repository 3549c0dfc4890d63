//! Faults of the upstream's, injected by real upstreams that misbehave on
//! cue (a raw TCP server speaking HTTP/1.1 by hand, and an HTTP/2 server on
//! the `h2` crate): a reset, a half-close, a stall, a malformed response, a
//! body longer or shorter than declared — before the response head and
//! after it. Before the head the client gets a clear 502 or 504 with its
//! reason; after it, the response it was getting is cut off (its
//! connection closed, its HTTP/2 stream reset, a gRPC call ended with
//! status 14 and the reason), and the failure is counted. Either way the
//! pool serves the next request, and no descriptor is left behind. And the
//! system clock stepped forward and back by an hour lengthens no token.

use std::net::SocketAddr;
use std::time::Duration;

use narrowgate::token::now_unix;
use narrowgate::token::testkit::{TestKey, payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, GatewayProcess, build_request, web_rules};

const ROUTE: &str = "/users/current/accounts/a1";

/// A response head declaring 100 bytes, and the first 10 of them.
const PART: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";

/// An HTTP/1.1 upstream answering each request as its `x-fault` header
/// says (keep-alive, `ok`, without one).
async fn faulty_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

async fn serve(mut s: TcpStream) {
    let mut buf = Vec::new();
    loop {
        // One request head (these requests have no body).
        let head = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                buf.drain(..end + 4);
                break head;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let fault = head.lines().find_map(|l| l.strip_prefix("x-fault:")).map(str::trim).unwrap_or("ok").to_string();
        let answer: &[u8] = match fault.as_str() {
            "reset-before-head" => return reset(s),
            "reset-mid-body" => {
                let _ = s.write_all(PART).await;
                // (A reset can discard what the gateway has not read yet:
                // time enough to read the head first.)
                tokio::time::sleep(Duration::from_millis(200)).await;
                return reset(s);
            }
            "close-mid-body" => {
                let _ = s.write_all(PART).await;
                return;
            }
            "half-close-before-head" => {
                let _ = s.shutdown().await;
                return hold(s).await;
            }
            "half-close-mid-body" => {
                let _ = s.write_all(PART).await;
                let _ = s.shutdown().await;
                return hold(s).await;
            }
            "stall-before-head" => return hold(s).await,
            "stall-after-head" => {
                let _ = s.write_all(PART).await;
                return hold(s).await;
            }
            "stall-chunked" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n").await;
                return hold(s).await;
            }
            "malformed-status" => b"HTTP/1.1 2x0 OK\r\nContent-Length: 2\r\n\r\nok",
            "malformed-header" => b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 2\r\n\r\nok",
            "malformed-chunk" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\nzz\r\n",
            // A body longer than declared, the rest shaped as a response
            // to the next request on the connection.
            "longer" => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle"
            }
            "late-longer" => {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
                tokio::time::sleep(Duration::from_millis(100)).await;
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsmuggle"
            }
            _ => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        };
        if s.write_all(answer).await.is_err() {
            return;
        }
    }
}

/// Close with a TCP reset.
fn reset(s: TcpStream) {
    let _ = s.set_zero_linger();
    drop(s);
}

/// Say nothing more until the gateway closes the connection (10 s at most).
async fn hold(mut s: TcpStream) {
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while matches!(s.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// What a client got: the bytes until the gateway closed the connection,
/// and whether it did within 5 s.
async fn fetch(proxy: SocketAddr, token: &str, fault: &str) -> (Vec<u8>, bool) {
    let auth = format!("Bearer {token}");
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    let req = build_request("GET", ROUTE, &[("Authorization", &auth), ("x-fault", fault)]);
    s.write_all(req.as_bytes()).await.expect("write");
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    (got, matches!(closed, Ok(Ok(_)) | Ok(Err(_))))
}

/// The status, the declared length (if any) and the body, of what came.
fn parse(got: &[u8]) -> (u16, Option<usize>, Vec<u8>) {
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").map_or(got.len(), |e| e + 4);
    let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok());
    (status, length, got[end..].to_vec())
}

/// The gateway's open descriptors: what each is.
fn descriptors(g: &GatewayProcess) -> Vec<String> {
    let dir = std::fs::read_dir(format!("/proc/{}/fd", g.child.id())).expect("/proc/<pid>/fd");
    let mut open: Vec<String> =
        dir.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|l| l.display().to_string()).collect();
    open.sort();
    open
}

/// The sockets among `open`, by their inode: TCP's, with their local and
/// remote addresses and state (from /proc/net/tcp).
fn sockets(open: &[String]) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    open.iter()
        .filter_map(|l| l.strip_prefix("socket:[")?.strip_suffix(']'))
        .map(|inode| {
            table.lines().find(|row| row.split_whitespace().nth(9) == Some(inode)).map_or_else(
                || format!("socket {inode}"),
                |row| row.split_whitespace().take(4).collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

async fn errors(g: &GatewayProcess, kind: &str) -> f64 {
    let series = format!(r#"narrowgate_upstream_errors_total{{kind="{kind}",upstream="default"}}"#);
    support::metric(g.admin, &series).await.unwrap_or(0.0)
}

async fn ok_after(g: &GatewayProcess, token: &str, after: &str) {
    let (got, _) = fetch(g.proxy, token, "ok").await;
    let (status, _, body) = parse(&got);
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]), "the request after {after}");
}

#[tokio::test]
async fn an_upstream_failing_before_or_after_its_head_gets_a_clear_answer_and_leaves_nothing_behind() {
    let upstream = faulty_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = support::process_config(
        dir.path(),
        "faults",
        upstream,
        "upstream:\n  read_timeout: 1s\n  body_idle_timeout: 1s\nserver:\n  http2:\n    cleartext: true",
    );
    // The gateway trusts a key of this test's.
    let key = TestKey::es256("demo");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write");
    let g = support::serve_process(&config).await;
    let token = key.sign(&payload("web", now_unix(), 3600, web_rules()));
    ok_after(&g, &token, "nothing").await;
    let baseline = descriptors(&g);

    // Before the head: a clear answer, with its reason.
    for (fault, status, reason) in [
        ("reset-before-head", 502, "upstream_unavailable"),
        ("half-close-before-head", 502, "upstream_unavailable"),
        ("malformed-status", 502, "upstream_unavailable"),
        ("malformed-header", 502, "upstream_unavailable"),
        ("stall-before-head", 504, "upstream_timeout"),
    ] {
        let (got, closed) = fetch(g.proxy, &token, fault).await;
        assert!(closed, "{fault}: the client's connection was left open");
        let resp = support::parse_response(&got);
        assert_eq!((resp.status, resp.reason().as_str()), (status, reason), "{fault}: {}", resp.body);
        ok_after(&g, &token, fault).await;
    }
    assert_eq!(errors(&g, "other").await, 4.0);
    assert_eq!(errors(&g, "timeout").await, 1.0);

    // After the head: the response is cut off — never completed as if the
    // body were whole — and the failure counted.
    for (fault, kind) in [
        ("reset-mid-body", "body"),
        ("close-mid-body", "body"),
        ("half-close-mid-body", "body"),
        ("malformed-chunk", "body"),
        ("stall-after-head", "body_timeout"),
        ("stall-chunked", "body_timeout"),
    ] {
        let before = errors(&g, kind).await;
        let (got, closed) = fetch(g.proxy, &token, fault).await;
        assert!(closed, "{fault}: the client's connection was left open");
        let (status, length, body) = parse(&got);
        assert_eq!(status, 200, "{fault}");
        // (Relayed as it came: whole, or as a chunk.)
        assert!(body.windows(10).any(|w| w == b"0123456789"), "{fault}: {:?}", String::from_utf8_lossy(&body));
        match length {
            Some(n) => assert!(body.len() < n, "{fault}: a whole body of {n}"),
            // Chunked: the last chunk never came.
            None => assert!(!body.ends_with(b"0\r\n\r\n"), "{fault}: a chunked body ended"),
        }
        assert_eq!(errors(&g, kind).await, before + 1.0, "{fault}: not counted as {kind}");
        ok_after(&g, &token, fault).await;
    }

    // Longer than declared: the client gets what was declared, and what
    // came after it is never taken for the next response.
    for fault in ["longer", "late-longer"] {
        let (got, _) = fetch(g.proxy, &token, fault).await;
        let (status, length, body) = parse(&got);
        assert_eq!((status, length, body.as_slice()), (200, Some(5), &b"hello"[..]), "{fault}");
        // (After the late bytes came: the pooled connection has seen them.)
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..3 {
            ok_after(&g, &token, fault).await;
        }
    }

    // Over HTTP/2 a response cut off after its head is a reset stream.
    let tcp = TcpStream::connect(g.proxy).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut client = client.ready().await.expect("ready");
    let request = http::Request::get(format!("http://{}{ROUTE}", g.proxy))
        .header("authorization", format!("Bearer {token}"))
        .header("x-fault", "reset-mid-body")
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("sent");
    let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("in time").expect("head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut read = Vec::new();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), body.data()).await.expect("in time") {
            Some(Ok(chunk)) => read.extend_from_slice(&chunk),
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    assert!(end.is_some_and(|e| e.is_reset()), "a cut-off response ended cleanly after {} bytes", read.len());
    drop((body, client));

    // Every connection of the faults' is closed: the gateway holds what it
    // held before them (its listeners, its pool's one idle connection).
    ok_after(&g, &token, "everything").await;
    let started = std::time::Instant::now();
    loop {
        let now = descriptors(&g);
        if now.len() <= baseline.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "descriptors left open: {} before the faults, {} after\nbefore: {:?}\nafter: {:?}",
            baseline.len(),
            now.len(),
            sockets(&baseline),
            sockets(&now)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gRPC call whose HTTP/2 upstream fails after the response head: the
/// client gets trailers with status 14 and the reason, not a reset it
/// cannot read, and the failure is counted for that upstream.
#[tokio::test]
async fn a_grpc_call_whose_upstream_fails_mid_stream_ends_with_unavailable_and_the_reason() {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = upstream.accept().await {
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else { return };
                while let Some(Ok((request, mut respond))) = conn.accept().await {
                    let fault = request.headers().get("x-fault").map(|v| v.as_bytes().to_vec()).unwrap_or_default();
                    let head = http::Response::builder()
                        .header("content-type", "application/grpc")
                        .body(())
                        .expect("response");
                    let Ok(mut send) = respond.send_response(head, false) else { continue };
                    // A message declaring 10 bytes, and 2 of them.
                    let _ = send.send_data(bytes::Bytes::from_static(b"\x00\x00\x00\x00\x0a01"), false);
                    if fault == b"slow-upload" {
                        // Silent while the client sends, then the answer.
                        tokio::spawn(async move {
                            let mut body = request.into_body();
                            while let Some(Ok(chunk)) = body.data().await {
                                let _ = body.flow_control().release_capacity(chunk.len());
                            }
                            let _ = send.send_data(bytes::Bytes::from_static(b"23456789"), false);
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            let _ = send.send_trailers(trailers);
                        });
                        continue;
                    }
                    if fault == b"reset" {
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            send.send_reset(h2::Reason::INTERNAL_ERROR);
                        });
                    } else {
                        // Stalls: held open, silent.
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(10)).await;
                            drop(send);
                        });
                    }
                }
            });
        }
    });
    let h = support::Harness::start_with(
        |d| {
            crate::grpc::grpc_app(port)(d);
            d.set("upstreams.grpc.body_idle_timeout", "300ms");
        },
        |_| {},
    )
    .await;
    let token = crate::grpc::token(&h, &crate::grpc::METHODS);
    let tcp = TcpStream::connect(h.proxy).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    // A client still sending keeps a quiet response alive (a
    // client-streaming call the server answers at its end).
    let mut sender = client.clone().ready().await.expect("ready");
    let request = http::Request::post(format!("http://{}/narrowgate.test.Echo/ClientStream", h.proxy))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"))
        .header("x-fault", "slow-upload")
        .body(())
        .expect("request");
    let (response, mut sending) = sender.send_request(request, false).expect("sent");
    let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("in time").expect("head");
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        sending.send_data(bytes::Bytes::from_static(b"\x00\x00\x00\x00\x01a"), false).expect("a message");
    }
    sending.send_data(bytes::Bytes::new(), true).expect("the end");
    let mut body = response.into_body();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.data()).await.expect("in time") {
        chunk.expect("a quiet response to a client still sending was cut off");
    }
    let trailers = body.trailers().await.expect("trailers").expect("trailers");
    assert_eq!(trailers.get("grpc-status").map(|v| v.as_bytes()), Some(&b"0"[..]), "{trailers:?}");

    for (fault, reason, kind) in
        [("reset", "upstream_unavailable", "body"), ("stall", "upstream_timeout", "body_timeout")]
    {
        let mut client = client.clone().ready().await.expect("ready");
        let request = http::Request::post(format!("http://{}/narrowgate.test.Echo/Unary", h.proxy))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {token}"))
            .header("x-fault", fault)
            .body(())
            .expect("request");
        let (response, mut sending) = client.send_request(request, false).expect("sent");
        sending.send_data(bytes::Bytes::from_static(b"\x00\x00\x00\x00\x01a"), true).expect("the message");
        let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("in time").expect("head");
        assert_eq!(response.status(), 200, "{fault}");
        let mut body = response.into_body();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), body.data()).await.expect("in time") {
            chunk.unwrap_or_else(|e| panic!("{fault}: the stream was reset ({e}), not ended in gRPC's terms"));
        }
        let trailers = tokio::time::timeout(Duration::from_secs(5), body.trailers())
            .await
            .expect("in time")
            .expect("trailers")
            .expect("trailers");
        let get = |k: &str| trailers.get(k).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        assert_eq!(
            (get("grpc-status").as_deref(), get("grpc-message").as_deref()),
            (Some("14"), Some(reason)),
            "{fault}"
        );
        let series = format!(r#"narrowgate_upstream_errors_total{{kind="{kind}",upstream="grpc"}}"#);
        assert_eq!(support::metric(h.admin, &series).await, Some(1.0), "{fault}");
    }

    // Over HTTP/1.1 trailers would be dropped and the body end cleanly: the
    // response is cut off instead.
    let mut tcp = TcpStream::connect(h.proxy).await.expect("connect");
    let head = format!(
        "POST /narrowgate.test.Echo/Unary HTTP/1.1\r\nHost: x\r\nContent-Type: application/grpc\r\nTE: trailers\r\n\
         Authorization: Bearer {token}\r\nx-fault: reset\r\nContent-Length: 6\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    tcp.write_all(b"\x00\x00\x00\x00\x01a").await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut got)).await.expect("closed in time");
    let (status, _, body) = parse(&got);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&got));
    assert!(!body.ends_with(b"0\r\n\r\n"), "a failed call ended cleanly over HTTP/1.1");
    h.shutdown().await;
}

/// The system clock stepped forward an hour, then back: a token that
/// expired meanwhile stays expired — served neither from the grant cache
/// nor by the time going back — and one with time left is unaffected.
#[tokio::test]
async fn the_system_clock_stepped_forward_and_back_an_hour_lengthens_no_token() {
    let h = support::Harness::start().await;
    let now = h.now();
    let short = h.sign(&payload("short", now, 1800, web_rules()));
    let long = h.sign(&payload("long", now, 3 * 3600, web_rules()));
    let status = |token: &str| {
        let auth = format!("Bearer {token}");
        let h = &h;
        async move {
            let r = h.get(ROUTE, &[("Authorization", &auth)]).await;
            (r.status, r.reason())
        }
    };
    // Both verified, and cached.
    for t in [&short, &long, &short, &long] {
        assert_eq!(status(t).await.0, 200);
    }
    h.step_clock(3_600_000);
    assert_eq!(status(&short).await, (401, "expired".to_string()), "served past its exp (from the cache?)");
    assert_eq!(status(&long).await.0, 200);
    h.step_clock(-3_600_000);
    assert_eq!(status(&short).await, (401, "expired".to_string()), "alive again when the clock went back");
    assert_eq!(status(&long).await.0, 200);
    let held = support::metric(h.admin, "narrowgate_clock_held_ahead_seconds").await.expect("the gauge");
    assert!((3590.0..=3600.5).contains(&held), "held ahead by {held}");
    h.shutdown().await;
}
