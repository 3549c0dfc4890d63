//! gRPC through the gateway, between a real gRPC client and server
//! (Python's grpcio; tests/python/grpc_peer.py): unary, server-streaming,
//! client-streaming and bidi calls over prior-knowledge HTTP/2 on both
//! sides, each allowed with the right token and refused in gRPC's own
//! terms otherwise — UNAUTHENTICATED without a credential,
//! PERMISSION_DENIED (naming what was missing) for a token lacking the
//! method — and a refused call never reaches the server.

use crate::support::python;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::support::Harness;
use crate::tls::run;

pub(crate) const METHODS: [&str; 4] = ["Unary", "ServerStream", "ClientStream", "Bidi"];
const REFLECTION: &str = "grpc.reflection.v1alpha.ServerReflection";

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/grpc_peer.py");

/// The gRPC server, and the calls it has received (one JSON line each).
struct Server {
    port: u16,
    calls: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _child: tokio::process::Child,
}

impl Server {
    async fn start() -> Server {
        Server::start_with(&[]).await
    }

    /// A server with `tls`: its certificate and key files.
    async fn start_with(tls: &[&str]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let mut child = tokio::process::Command::new(python())
            .args([PEER, "serve", &port.to_string()])
            .args(tls)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the gRPC server starts");
        let mut calls = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), calls.next_line()).await;
        assert!(matches!(ready, Ok(Ok(Some(ref l))) if l == "ready"), "{ready:?}");
        Server { port, calls, _child: child }
    }

    /// The next call the server saw, if one comes within a second.
    async fn next_call(&mut self) -> Option<Value> {
        let line = tokio::time::timeout(Duration::from_secs(1), self.calls.next_line()).await.ok()?.ok()??;
        serde_json::from_str(&line).ok()
    }
}

/// `method` through the gateway with `token`: the status's name, its
/// details, the responses.
async fn call(h: &Harness, method: &str, token: &str) -> Value {
    let out =
        run(tokio::process::Command::new(python()).args([PEER, "call", &h.proxy.to_string(), method, token])).await;
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{method}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// The demo config, with h2c on the proxy and an application whose gRPC
/// service's methods are routed to `port` (an HTTP/2 upstream).
pub(crate) fn grpc_app(port: u16) -> impl FnOnce(&mut crate::support::ConfigDoc) {
    move |doc| {
        doc.set("server.http2", json!({ "cleartext": true }));
        doc.set("upstreams", json!({ "grpc": { "addresses": [format!("127.0.0.1:{port}")], "protocol": "http2" } }));
        let mut routes: Vec<Value> = METHODS
            .iter()
            .map(
                |m| json!({ "route": format!("GRPC /narrowgate.test.Echo/{m}"), "group": "echo", "roles": ["caller"] }),
            )
            .collect();
        // The standard services: health open to all, reflection to
        // operators.
        routes.push(json!({ "route": "GRPC /grpc.health.v1.Health/Check", "public": true }));
        routes.push(json!({ "route": format!("GRPC /{REFLECTION}/ServerReflectionInfo"),
            "group": "introspection", "roles": ["operator"] }));
        let app = json!({
            "id": "echo-api", "application": "echo-api", "description": "gRPC echo",
            "upstream": "grpc",
            "services": [
                { "service": "narrowgate.test.Echo", "description": "the echo service" },
                { "service": "grpc.health.v1.Health", "description": "health checking" },
                { "service": REFLECTION, "description": "server reflection" },
            ],
            "method_groups": [
                { "group": "echo", "description": "echoing",
                  "methods": METHODS.iter().map(|m| json!({ "method": m, "description": m })).collect::<Vec<_>>() },
                { "group": "introspection", "description": "what the server serves",
                  "methods": [{ "method": "ServerReflectionInfo", "description": "reflection" }] },
            ],
            "roles": [{ "roles": ["caller", "operator"], "description": "may call, may look" }],
            "routes": routes,
        });
        if let Some(apps) = doc.at("applications").as_array_mut() {
            apps.push(app);
        }
    }
}

/// A token allowed `methods` of the echo service.
pub(crate) fn token(h: &Harness, methods: &[&str]) -> String {
    h.token("grpc-user", json!([echo_rule(methods)]))
}

fn echo_rule(methods: &[&str]) -> Value {
    json!({
        "id": "echo", "application": "echo-api", "service": "narrowgate.test.Echo",
        "methodGroups": [{ "group": "echo", "methods": methods.iter().map(|m| json!({ "method": m })).collect::<Vec<_>>() }],
        "roles": ["caller"], "resources": ["*:*:*"],
    })
}

#[tokio::test]
#[ignore = "needs the Python environment (grpcio): scripts/test makes it"]
async fn every_kind_of_call_is_enforced_and_refused_in_grpc_terms() {
    let mut server = Server::start().await;
    let h = Harness::start_with(grpc_app(server.port), |_| {}).await;
    let all = token(&h, &METHODS);
    let unary_only = token(&h, &["Unary"]);

    for method in METHODS {
        // Allowed: the call goes through whole, streams and all, and the
        // server sees the caller's identity, never the credential.
        let out = call(&h, method, &all).await;
        assert_eq!(out["code"], "OK", "{method}: {out}");
        let expected = match method {
            "Unary" => json!(["echo:one"]),
            "ServerStream" => json!(["0:one", "1:one", "2:one"]),
            "ClientStream" => json!(["a+b+c"]),
            _ => json!(["re:x", "re:y"]),
        };
        assert_eq!(out["responses"], expected, "{method}");
        let seen = server.next_call().await.unwrap_or_else(|| panic!("{method}: the server saw no call"));
        assert_eq!(seen, json!({ "method": method, "subject": "grpc-user", "authorization": false }));

        // No credential: UNAUTHENTICATED, with the REST body's reason code.
        let out = call(&h, method, "").await;
        assert_eq!((out["code"].as_str(), out["details"].as_str()), (Some("UNAUTHENTICATED"), Some("missing_token")));
        // A bad one.
        let out = call(&h, method, "not.a.token").await;
        assert_eq!(out["code"], "UNAUTHENTICATED", "{out}");
        assert_eq!(server.next_call().await, None, "{method}: a refused call reached the server");
    }

    // A token allowed one method: the others are PERMISSION_DENIED, and
    // the message says why.
    assert_eq!(call(&h, "Unary", &unary_only).await["code"], "OK");
    assert!(server.next_call().await.is_some());
    for method in &METHODS[1..] {
        let out = call(&h, method, &unary_only).await;
        assert_eq!(out["code"], "PERMISSION_DENIED", "{method}: {out}");
        assert!(out["details"].as_str().is_some_and(|d| d.starts_with("method_not_granted")), "{out}");
    }
    assert_eq!(server.next_call().await, None);

    // A method no route names: refused, sent nowhere.
    let out = call(&h, "Missing", &all).await;
    assert_eq!((out["code"].as_str(), out["details"].as_str()), (Some("PERMISSION_DENIED"), Some("no_matching_route")));
    assert_eq!(server.next_call().await, None);
    h.shutdown().await;
}

/// A call's deadline shortens the gateway's wait for the answer (the
/// upstream's read_timeout is 30 s): past it, the gateway answers 4
/// DEADLINE_EXCEEDED itself. The upstream takes the connection and the
/// call and never answers (a gRPC server would enforce the deadline too,
/// and race the gateway to answer). The client is curl, which does not
/// cancel the call at its deadline as a gRPC client would, so the
/// gateway's answer is seen.
#[tokio::test]
async fn a_calls_deadline_bounds_the_wait_for_an_upstream_that_never_answers() {
    use tokio::io::AsyncReadExt;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let (forwarded, was_forwarded) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut conn, _) = silent.accept().await.expect("accept");
        let (mut buf, mut got, mut forwarded) = (vec![0u8; 65536], Vec::new(), Some(forwarded));
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            got.extend_from_slice(&buf[..n]);
            // The message's bytes: the call itself came, not only the
            // connection's preface.
            if got.windows(4).any(|w| w == b"slow")
                && let Some(tx) = forwarded.take()
            {
                let _ = tx.send(());
            }
        }
    });
    let h = Harness::start_with(grpc_app(port), |_| {}).await;
    let all = token(&h, &METHODS);
    let dir = tempfile::tempdir().expect("tempdir");
    let message = dir.path().join("slow.bin");
    std::fs::write(&message, b"\x00\x00\x00\x00\x04slow").expect("message");
    let started = std::time::Instant::now();
    let out = run(tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "-H",
            "grpc-timeout: 500m",
            "-H",
            &format!("authorization: Bearer {all}"),
            "--data-binary",
        ])
        .arg(format!("@{}", message.display()))
        .arg(format!("http://{}/narrowgate.test.Echo/Unary", h.proxy)))
    .await;
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(head.contains("grpc-status: 4") && head.contains("grpc-message: upstream_timeout"), "{head}");
    assert!(started.elapsed() < Duration::from_secs(2), "answered at the deadline, not the upstream's 30 s");
    let forwarded = tokio::time::timeout(Duration::from_secs(1), was_forwarded).await;
    assert!(matches!(forwarded, Ok(Ok(()))), "the call was forwarded: {forwarded:?}");
    h.shutdown().await;
}

/// A call the gateway gives up on while its client is still sending (here
/// at its deadline, with no answer from the upstream) has its upstream
/// stream reset, not left open and fed. The client and the upstream speak
/// HTTP/2 through the `h2` crate, so the test sees the frames: the
/// client's stream stays open, and the upstream's request body ends in
/// RST_STREAM(CANCEL).
#[tokio::test]
async fn an_abandoned_call_with_its_body_still_coming_is_reset_upstream() {
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = upstream.local_addr().expect("addr").port();
    let (ended, how_ended) = tokio::sync::oneshot::channel::<Option<h2::Reason>>();
    tokio::spawn(async move {
        let (tcp, _) = upstream.accept().await.expect("accept");
        let mut conn = h2::server::handshake(tcp).await.expect("h2 handshake");
        let Some(Ok((request, _respond))) = conn.accept().await else { return };
        // Drive the connection while the call's body is read; never answer.
        tokio::spawn(async move { while conn.accept().await.is_some() {} });
        let mut body = request.into_body();
        let outcome = loop {
            match body.data().await {
                Some(Ok(chunk)) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                Some(Err(e)) => break e.reason(),
                None => break None,
            }
        };
        let _ = ended.send(outcome);
    });
    let h = Harness::start_with(grpc_app(port), |_| {}).await;
    let all = token(&h, &METHODS);

    let tcp = tokio::net::TcpStream::connect(h.proxy).await.expect("connect");
    let (client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(conn);
    let request = http::Request::post(format!("http://{}/narrowgate.test.Echo/ClientStream", h.proxy))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "300m")
        .header("authorization", format!("Bearer {all}"))
        .body(())
        .expect("request");
    let mut client = client.ready().await.expect("ready");
    let (response, mut sending) = client.send_request(request, false).expect("sent");
    sending.send_data(bytes::Bytes::from_static(b"\x00\x00\x00\x00\x01a"), false).expect("a message");
    // The gateway answers at the deadline, its own DEADLINE_EXCEEDED…
    let response = tokio::time::timeout(Duration::from_secs(5), response).await.expect("answered").expect("head");
    let status = response.headers().get("grpc-status").map(|v| v.as_bytes().to_vec());
    assert_eq!(status.as_deref(), Some(&b"4"[..]), "{:?}", response.headers());
    // …and the upstream's stream is cancelled, though the client's is
    // still open.
    let outcome = tokio::time::timeout(Duration::from_secs(2), how_ended).await;
    assert!(matches!(outcome, Ok(Ok(Some(h2::Reason::CANCEL)))), "{outcome:?}");
    drop(sending);
    h.shutdown().await;
}

/// Messages larger than every flow-control window on the way (the
/// client's, the gateway's, the server's) cross whole, one way and the
/// other: the gateway's upstream stream waits for the server's window
/// before sending more, and gives back its own as it reads.
#[tokio::test]
#[ignore = "needs the Python environment (grpcio): scripts/test makes it"]
async fn messages_larger_than_every_window_cross_whole_both_ways() {
    let mut server = Server::start().await;
    let h = Harness::start_with(grpc_app(server.port), |_| {}).await;
    let all = token(&h, &METHODS);
    let proxy = h.proxy.to_string();
    for (method, echoed) in [("Unary", 3 * 1024 * 1024 + 5), ("ClientStream", 3 * 1024 * 1024 + 30)] {
        let out = run(tokio::process::Command::new(python()).args([PEER, "call", &proxy, method, &all, "big"])).await;
        let out: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(out["code"], "OK", "{method}: {out}");
        assert_eq!(out["responses"], json!([format!("big:{echoed}:intact")]), "{method}");
        assert!(server.next_call().await.is_some(), "{method}: the server saw no call");
    }
    h.shutdown().await;
}

#[test]
fn a_grpc_route_takes_its_service_and_method_from_its_path_and_anything_else_is_a_config_error() {
    let with_route = |route: Value| {
        move |doc: &mut crate::support::ConfigDoc| {
            grpc_app(1)(doc);
            doc.set("applications.4.routes", json!([route.clone()]));
        }
    };
    let errors = |route: Value| crate::support::config_errors(&with_route(route));
    assert_eq!(
        errors(json!({ "route": "GRPC /narrowgate.test.Echo/Unary", "group": "echo", "roles": ["caller"] })),
        ""
    );
    // Naming them again the same is fine; naming others is not.
    assert_eq!(
        errors(json!({ "route": "GRPC /narrowgate.test.Echo/Unary", "service": "narrowgate.test.Echo",
            "method": "Unary", "group": "echo", "roles": ["caller"] })),
        ""
    );
    let e = errors(
        json!({ "route": "GRPC /narrowgate.test.Echo/Unary", "method": "Bidi", "group": "echo", "roles": ["caller"] }),
    );
    assert!(e.contains("applications[4].routes[0].method: a gRPC route's method is its path's"), "{e}");
    // Not `/package.Service/Method`.
    for path in
        ["/narrowgate.test.Echo", "/narrowgate.test.Echo/Unary/x", "/narrowgate.test.Echo/{m}", "Echo/Unary", "/a b/C"]
    {
        let e = errors(json!({ "route": format!("GRPC {path}"), "group": "echo", "roles": ["caller"] }));
        assert!(
            e.contains("applications[4].routes[0].route: a gRPC route is `GRPC /package.Service/Method`"),
            "{path}: {e}"
        );
    }
    // A service the application does not declare, a method its group lacks.
    let e = errors(json!({ "route": "GRPC /narrowgate.test.Other/Unary", "group": "echo", "roles": ["caller"] }));
    assert!(e.contains("applications[4].routes[0].service: unknown service \"narrowgate.test.Other\""), "{e}");
    let e = errors(json!({ "route": "GRPC /narrowgate.test.Echo/Missing", "group": "echo", "roles": ["caller"] }));
    assert!(e.contains("applications[4].routes[0].method: unknown method \"Missing\""), "{e}");
    // An upstream's protocol is http1 or http2.
    let e = crate::support::config_errors(&|doc| {
        doc.set("upstream.protocol", "h3");
    });
    assert!(e.contains("upstream"), "{e}");
}

#[tokio::test]
#[ignore = "needs the Python environment (grpcio): scripts/test makes it"]
async fn an_open_stream_ends_when_its_token_or_an_ancestor_is_revoked() {
    let mut server = Server::start().await;
    let h = Harness::start_with(grpc_app(server.port), |_| {}).await;
    let rule = json!({
        "id": "echo", "application": "echo-api", "service": "narrowgate.test.Echo",
        "methodGroups": [{ "group": "echo", "methods": [{ "method": "ServerStream" }] }],
        "roles": ["caller"], "resources": ["*:*:*"],
    });
    let mut child = narrowgate::token::testkit::payload("watcher", narrowgate::token::now_unix(), 3600, json!([rule]));
    child["jti"] = json!("stream-child");
    child["kind"] = json!("narrowed");
    child["lineage"] = json!(["stream-root"]);
    let token = h.sign(&child);

    // A server stream that would go on for 30 s.
    let started = std::time::Instant::now();
    let watch = tokio::process::Command::new(python())
        .args([PEER, "call", &h.proxy.to_string(), "ServerStream", &token, "forever", "60"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let revoke = async {
        // (The client may take a few seconds to start on a busy machine.)
        let mut began = false;
        for _ in 0..20 {
            if server.next_call().await.is_some() {
                began = true;
                break;
            }
        }
        assert!(began, "the stream began");
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Its parent is revoked (as a store or the feed would add it).
        h.gateway.as_ref().expect("running").revocations.revoke("stream-root", None);
    };
    let (out, ()) = tokio::join!(watch, revoke);
    let out: Value = serde_json::from_slice(&out.expect("the client runs").stdout).expect("JSON");
    assert_eq!((out["code"].as_str(), out["details"].as_str()), (Some("UNAUTHENTICATED"), Some("revoked")), "{out}");
    assert!(out["responses"].as_array().is_some_and(|r| !r.is_empty()), "messages flowed before: {out}");
    assert!(started.elapsed() < Duration::from_secs(10), "ended at the revocation, not the stream's end");
    h.shutdown().await;
}

#[tokio::test]
#[ignore = "needs the Python environment (grpcio): scripts/test makes it"]
async fn a_quiet_stream_keeps_its_connection_past_the_idle_timeout() {
    let server = Server::start().await;
    let h = Harness::start_with(
        |doc| {
            grpc_app(server.port)(doc);
            // An open call counts as activity however quiet it is.
            doc.set("server.idle_timeout", "1s");
        },
        |_| {},
    )
    .await;
    let all = token(&h, &METHODS);
    let out = run(tokio::process::Command::new(python()).args([
        PEER,
        "call",
        &h.proxy.to_string(),
        "ServerStream",
        &all,
        "pause",
    ]))
    .await;
    let out: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!((&out["code"], &out["responses"]), (&json!("OK"), &json!(["0", "1"])), "{out}");
    h.shutdown().await;
}

/// `narrowgate_grpc_calls_total` of a method of the echo application.
async fn calls(h: &Harness, service: &str, method: &str, code: &str) -> f64 {
    let series = format!(
        "narrowgate_grpc_calls_total{{application=\"echo-api\",grpc_code=\"{code}\",method=\"{method}\",service=\"{service}\"}}"
    );
    crate::support::metric(h.admin, &series).await.unwrap_or(0.0)
}

#[tokio::test]
#[ignore = "needs the Python environment (grpcio): scripts/test makes it"]
async fn calls_are_counted_and_audited_by_the_status_they_end_with_and_the_standard_services_pass() {
    let mut server = Server::start().await;
    let h = Harness::start_with(
        |doc| {
            grpc_app(server.port)(doc);
            doc.set("audit", json!({ "sink": { "file": { "path": "audit.jsonl" } } }));
        },
        |_| {},
    )
    .await;
    let echo = "narrowgate.test.Echo";
    let unary_and_stream = token(&h, &["Unary", "ServerStream"]);
    let call_with = |method: &'static str, token: String, payload: &'static str| {
        let proxy = h.proxy.to_string();
        async move {
            let out =
                run(tokio::process::Command::new(python()).args([PEER, "call", &proxy, method, &token, payload])).await;
            let out: Value = serde_json::from_slice(&out.stdout).expect("JSON");
            out
        }
    };

    // The upstream's own statuses, wherever they come: OK in the trailers,
    // NOT_FOUND in a trailers-only answer, ABORTED after a message; and a
    // stream the client cancels.
    let ok = call_with("Unary", unary_and_stream.clone(), "one").await;
    let not_found = call_with("Unary", unary_and_stream.clone(), "fail").await;
    let aborted = call_with("ServerStream", unary_and_stream.clone(), "fail-late").await;
    let cancelled = call_with("ServerStream", unary_and_stream.clone(), "cancel").await;
    for (out, code) in [(&ok, "OK"), (&not_found, "NOT_FOUND"), (&aborted, "ABORTED"), (&cancelled, "CANCELLED")] {
        assert_eq!(out["code"], code, "{out}");
    }
    for _ in 0..4 {
        assert!(server.next_call().await.is_some(), "each reached the server");
    }
    // The gateway's own refusals.
    let denied = call_with("Bidi", unary_and_stream.clone(), "one").await;
    let unauthenticated = call_with("Unary", String::new(), "one").await;
    assert_eq!((&denied["code"], &unauthenticated["code"]), (&json!("PERMISSION_DENIED"), &json!("UNAUTHENTICATED")));

    // The standard services: health checking open to all; reflection to a
    // token allowed it, refused to one that is not.
    let health = call_with("Health", String::new(), "").await;
    assert_eq!((&health["code"], &health["responses"]), (&json!("OK"), &json!(["SERVING"])), "{health}");
    let refused = call_with("Reflection", unary_and_stream.clone(), "").await;
    assert_eq!(refused["code"], "PERMISSION_DENIED", "{refused}");
    let operator = json!({
        "id": "look", "application": "echo-api", "service": REFLECTION,
        "methodGroups": [{ "group": "introspection", "methods": [{ "method": "ServerReflectionInfo" }] }],
        "roles": ["operator"], "resources": ["*:*:*"],
    });
    let operator = h.token("operator", json!([echo_rule(&["Unary"]), operator]));
    let listed = call_with("Reflection", operator, "").await;
    assert_eq!(listed["code"], "OK", "{listed}");
    assert!(listed["responses"].as_array().is_some_and(|s| s.contains(&json!(echo))), "{listed}");
    assert_eq!(server.next_call().await, None, "refused calls and the standard services are not echo calls");

    // Counted by service, method and the status each ended with (the
    // cancelled stream counts when the gateway sees the reset).
    crate::support::eventually_async(Duration::from_secs(5), || async {
        (calls(&h, echo, "ServerStream", "CANCELLED").await == 1.0).then_some(())
    })
    .await;
    for (service, method, code) in [
        (echo, "Unary", "OK"),
        (echo, "Unary", "NOT_FOUND"),
        (echo, "ServerStream", "ABORTED"),
        (echo, "Bidi", "PERMISSION_DENIED"),
        (echo, "Unary", "UNAUTHENTICATED"),
        ("grpc.health.v1.Health", "Check", "OK"),
        (REFLECTION, "ServerReflectionInfo", "PERMISSION_DENIED"),
        (REFLECTION, "ServerReflectionInfo", "OK"),
    ] {
        assert_eq!(calls(&h, service, method, code).await, 1.0, "{service}/{method} {code}");
    }
    assert_eq!(calls(&h, echo, "Unary", "CANCELLED").await, 0.0);

    // Audited with the same status, each once, in the order they ended.
    let audit = h.dir().join("audit.jsonl");
    let mut h = h;
    h.gateway.take().expect("running").shutdown().await;
    let events: Vec<Value> = std::fs::read_to_string(audit)
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|e: &Value| e["event"] == "decision")
        .collect();
    let seen: Vec<(String, u64)> = events
        .iter()
        .map(|e| {
            let route = e["route"].as_str().unwrap_or("-").to_string();
            (route, e["grpc_status"].as_u64().unwrap_or(99))
        })
        .collect();
    let route = |m: &str| format!("GRPC /{echo}/{m}");
    let reflection = format!("GRPC /{REFLECTION}/ServerReflectionInfo");
    assert_eq!(
        seen,
        vec![
            (route("Unary"), 0),
            (route("Unary"), 5),
            (route("ServerStream"), 10),
            (route("ServerStream"), 1),
            (route("Bidi"), 7),
            (route("Unary"), 16),
            ("GRPC /grpc.health.v1.Health/Check".to_string(), 0),
            (reflection.clone(), 7),
            (reflection, 0),
        ],
        "{events:#?}"
    );
    assert_eq!(events[0]["service"], echo);
    assert_eq!(events[0]["api_method"], "Unary");
    assert_eq!(events[0]["upstream_status"], 200);
}

#[tokio::test]
#[ignore = "needs the Python environment (grpcio): scripts/test makes it"]
async fn calls_reach_an_upstream_over_tls_by_alpn_h2_and_its_certificate_is_checked() {
    use crate::tls::{Pki, write_pair};
    let pki = Pki::new();
    let (cert, key) = write_pair(pki.dir.path(), "grpc", &pki.ca.server(&["grpc.test"]));
    let (cert, key) = (cert.to_str().expect("utf-8").to_string(), key.to_str().expect("utf-8").to_string());
    let mut server = Server::start_with(&[&cert, &key]).await;
    let port = server.port;
    let tls = |ca: String| {
        move |doc: &mut crate::support::ConfigDoc| {
            grpc_app(port)(doc);
            doc.set("upstreams.grpc.tls", json!({ "ca": ca, "server_name": "grpc.test" }));
        }
    };
    // grpcio speaks TLS only to a client that offers h2 in ALPN: a call
    // that goes through is one the gateway made over h2 by ALPN.
    let h = Harness::start_with(tls(pki.s("ca.pem")), |_| {}).await;
    let out = call(&h, "Bidi", &token(&h, &METHODS)).await;
    assert_eq!((&out["code"], &out["responses"]), (&json!("OK"), &json!(["re:x", "re:y"])), "{out}");
    let seen = server.next_call().await.expect("the server saw the call");
    assert_eq!(seen, json!({ "method": "Bidi", "subject": "grpc-user", "authorization": false }));
    h.shutdown().await;

    // A certificate from a CA the upstream's `ca` does not name: refused
    // before any byte of the call is sent, UNAVAILABLE to the caller.
    let other = crate::tls::Ca::new("someone else");
    let stranger = pki.dir.path().join("stranger-ca.pem");
    std::fs::write(&stranger, other.pem.as_bytes()).expect("write");
    let h = Harness::start_with(tls(stranger.to_str().expect("utf-8").to_string()), |_| {}).await;
    let out = call(&h, "Unary", &token(&h, &METHODS)).await;
    assert_eq!((out["code"].as_str(), out["details"].as_str()), (Some("UNAVAILABLE"), Some("upstream_tls")), "{out}");
    assert_eq!(server.next_call().await, None);
    h.shutdown().await;
}
