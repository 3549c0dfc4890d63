//! Stopping without dropping a request: on SIGTERM (or `POST /shutdown`)
//! `narrowgate serve` turns unready at once, keeps accepting for the drain
//! delay, then stops accepting, closes kept-alive connections after their
//! current request, lets requests and WebSocket tunnels finish within the
//! grace period, and exits 0. A second SIGTERM exits at once.

use crate::support;

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use narrowgate::echo::EchoUpstream;
use support::{
    GatewayProcess, Response, build_request, eventually, eventually_async, is_complete, parse_response, process_config,
    raw_request, send_raw,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const ACCOUNT: &str = "/users/current/accounts/a1";
const STREAM: &str = "/mt-manager/accounts/a1/stream";

/// A gateway process with the given drain delay and grace period; its
/// bootstrap admin token.
async fn gateway(dir: &std::path::Path, echo: SocketAddr, delay: &str, grace: &str) -> (GatewayProcess, String) {
    let extra = format!(
        "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true\n\
         server:\n  drain_delay: {delay}\n  shutdown_grace: {grace}"
    );
    let g = support::serve_process(&process_config(dir, "ng", echo, &extra)).await;
    let root = std::fs::read_to_string(dir.join("data/admin-token")).expect("bootstrap file").trim().to_string();
    (g, root)
}

fn signal(child: &Child, name: &str) {
    let ok = std::process::Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
    assert!(ok.expect("kill").success());
}

/// Wait for the process to exit (failing if it still runs after
/// `within`); its exit code and when.
async fn exited(child: &mut Child, within: Duration) -> (Option<i32>, Instant) {
    eventually(within, || child.try_wait().expect("wait").map(|status| (status.code(), Instant::now()))).await
}

/// One request on an open connection, and its response.
async fn exchange(stream: &mut TcpStream, request: &str) -> Response {
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !is_complete(&buf) {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "closed before the response: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_response(&buf)
}

/// A kept-alive request (no `Connection: close`).
fn keep_alive(path: &str, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("Host", "gateway.test")];
    all.extend_from_slice(headers);
    raw_request("GET", path, &all, "")
}

/// An open WebSocket tunnel through the gateway to the echo upstream.
async fn websocket(proxy: SocketAddr, root: &str) -> TcpStream {
    let mut ws = TcpStream::connect(proxy).await.expect("connect");
    let auth = format!("Bearer {root}");
    let head = exchange(
        &mut ws,
        &keep_alive(
            STREAM,
            &[
                ("Authorization", &auth),
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
        ),
    )
    .await;
    assert_eq!(head.status, 101, "{}", head.body);
    ws
}

async fn echoes(ws: &mut TcpStream, bytes: &[u8]) {
    ws.write_all(bytes).await.expect("write through the tunnel");
    let mut got = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut got)).await.expect("echo in time").expect("read");
    assert_eq!(got, bytes);
}

async fn readyz(admin: SocketAddr) -> u16 {
    send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_requests_and_tunnels_then_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let (mut g, root) = gateway(dir.path(), echo.addr, "1s", "5s").await;
    let auth = format!("Bearer {root}");

    // In flight at SIGTERM: a slow request, a WebSocket tunnel, and a
    // kept-alive connection that has served one request.
    let slow = {
        let req = build_request("GET", ACCOUNT, &[("Authorization", &auth), ("x-echo-delay-ms", "2500")]);
        let proxy = g.proxy;
        tokio::spawn(async move { send_raw(proxy, req.as_bytes()).await })
    };
    let mut ws = websocket(g.proxy, &root).await;
    echoes(&mut ws, b"before").await;
    let mut kept = TcpStream::connect(g.proxy).await.expect("connect");
    let first = exchange(&mut kept, &keep_alive(ACCOUNT, &[("Authorization", &auth)])).await;
    assert_eq!((first.status, first.header("connection")), (200, None));
    // The slow request is in flight: the echo records a request before it
    // waits out its delay.
    eventually(Duration::from_secs(5), || {
        echo.received().iter().any(|r| r.header("x-echo-delay-ms") == Some("2500")).then_some(())
    })
    .await;

    signal(&g.child, "TERM");
    let term = Instant::now();
    // Unready first (within 500 ms), while still accepting.
    eventually_async(Duration::from_secs(5), || async { (readyz(g.admin).await == 503).then_some(()) }).await;
    assert!(term.elapsed() < Duration::from_millis(500), "readyz still 200 after SIGTERM: {:?}", term.elapsed());
    let fresh = send_raw(g.proxy, build_request("GET", "/health", &[]).as_bytes()).await;
    assert_eq!(fresh.status, 200, "new connections are served during the drain delay");
    assert!(term.elapsed() < Duration::from_secs(1));
    // A request on the kept-alive connection that outlasts the delay: it
    // completes, told to close, and the connection is closed after it.
    let last =
        exchange(&mut kept, &keep_alive(ACCOUNT, &[("Authorization", &auth), ("x-echo-delay-ms", "1000")])).await;
    assert!(term.elapsed() > Duration::from_secs(1));
    assert_eq!((last.status, last.header("connection")), (200, Some("close")), "{:?}", last.headers);
    let mut rest = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(2), kept.read(&mut rest)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "the kept-alive connection stays open");

    // Past the delay: no new connections; the tunnel still carries bytes.
    assert!(TcpStream::connect(g.proxy).await.is_err(), "a new connection was accepted after the drain delay");
    echoes(&mut ws, b"after the listener closed").await;
    let slow = slow.await.expect("slow request");
    assert_eq!(slow.status, 200, "the slow request completes: {}", slow.body);
    drop(ws);

    let (code, at) = exited(&mut g.child, Duration::from_secs(7)).await;
    assert_eq!(code, Some(0));
    let took = at - term;
    assert!(took < Duration::from_secs(1 + 5), "exited {took:?} after SIGTERM, past delay + grace");
}

/// An HTTP/2 connection is drained as an HTTP/1.1 one is: past the drain
/// delay it is told GOAWAY (NO_ERROR), its open stream still completes,
/// and then it is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the Python environment (h2): scripts/test makes it"]
async fn an_http2_connection_is_told_goaway_and_its_open_stream_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let extra = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true\n\
         server:\n  drain_delay: 500ms\n  shutdown_grace: 10s\n  http2: { cleartext: true }";
    let mut g = support::serve_process(&process_config(dir.path(), "ng", echo.addr, extra)).await;
    let root = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("bootstrap file");
    let python = std::env::var("NARROWGATE_TEST_PYTHON")
        .expect("NARROWGATE_TEST_PYTHON is not set: scripts/test makes the Python environment and sets it");
    let client = tokio::process::Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/h2_hostile.py"))
        .args(["127.0.0.1", &g.proxy.port().to_string(), "slow-through-drain", root.trim()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python");
    // Its stream (the upstream takes 2.5 s) is at the upstream.
    eventually(Duration::from_secs(10), || {
        echo.received().iter().any(|r| r.header("x-echo-delay-ms") == Some("2500")).then_some(())
    })
    .await;
    signal(&g.child, "TERM");
    let term = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), client.wait_with_output())
        .await
        .expect("the client ends")
        .expect("output");
    let out = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {out}"));
    // GOAWAY with NO_ERROR, before the stream's answer; the stream
    // completes; then the connection is closed.
    let goaways = result["goaways"].as_array().expect("goaways");
    assert!(!goaways.is_empty() && goaways.iter().all(|g| g["error_code"] == 0), "{result}");
    let last = goaways.last().expect("one");
    assert!(last["last_stream_id"].as_u64() >= Some(1), "its stream is among those it will finish: {result}");
    assert_eq!(result["status"], 200, "{result}");
    let (told, ended) = (goaways[0]["at"].as_f64().unwrap_or(99.0), result["ended_at"].as_f64().unwrap_or(0.0));
    assert!(told < ended, "told before its stream ended: {result}");
    assert_eq!(result["closed"], true, "the connection is closed once its stream is done: {result}");
    assert_eq!(echo.received().len(), 1, "nothing else reached the upstream");
    let (code, at) = exited(&mut g.child, Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert!(at - term < Duration::from_secs(5), "exited {:?} after SIGTERM", at - term);
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let (mut g, root) = gateway(dir.path(), echo.addr, "2s", "20s").await;
    // A tunnel that would hold the drain for the whole grace period.
    let _ws = websocket(g.proxy, &root).await;
    signal(&g.child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(g.child.try_wait().expect("wait").is_none(), "the first SIGTERM drains, it does not exit");
    signal(&g.child, "TERM");
    let second = Instant::now();
    let (code, at) = exited(&mut g.child, Duration::from_secs(2)).await;
    assert!(at - second < Duration::from_secs(1));
    assert_ne!(code, Some(0), "a drain cut short is not a clean exit");
}

#[tokio::test]
async fn post_shutdown_drains_and_the_grace_period_bounds_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let (mut g, root) = gateway(dir.path(), echo.addr, "300ms", "1s").await;
    // A tunnel its client never closes.
    let mut ws = websocket(g.proxy, &root).await;
    let asked = Instant::now();
    let r = send_raw(g.admin, build_request("POST", "/shutdown", &[("Content-Length", "0")]).as_bytes()).await;
    assert_eq!((r.status, r.json()["result"].as_str()), (202, Some("draining")), "{}", r.body);
    assert_eq!(readyz(g.admin).await, 503);
    let (code, at) = exited(&mut g.child, Duration::from_secs(5)).await;
    assert_eq!(code, Some(0));
    let took = at - asked;
    assert!(took >= Duration::from_millis(1300), "it waited for the tunnel, up to the grace period: {took:?}");
    assert!(took < Duration::from_millis(2500), "the grace period bounds the drain: {took:?}");
    // The tunnel was closed when the process exited.
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(2), ws.read(&mut buf)).await.expect("closed");
    assert!(matches!(n, Ok(0) | Err(_)));
}

/// A revocation feed streams until its reader leaves; a drain ends it
/// instead of waiting out the grace period for it.
#[tokio::test]
async fn a_drain_ends_revocation_feed_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let (mut g, root) = gateway(dir.path(), echo.addr, "200ms", "20s").await;
    let api = g.api.expect("api listener");
    let mut feed = TcpStream::connect(api).await.expect("connect");
    let auth = format!("Bearer {root}");
    let req = raw_request("GET", "/v1/revocations", &[("Host", "t"), ("Authorization", &auth)], "");
    feed.write_all(req.as_bytes()).await.expect("write");
    let mut first = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), feed.read(&mut first)).await.expect("streams").expect("read");
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    signal(&g.child, "TERM");
    let term = Instant::now();
    let (code, at) = exited(&mut g.child, Duration::from_secs(10)).await;
    assert_eq!(code, Some(0));
    assert!(at - term < Duration::from_secs(3), "the feed held the drain for {:?}", at - term);
}

/// The listener combinations a config may ask for: (api, admin) beside
/// the proxy, which is always there.
const COMBINATIONS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// A config with the proxy and the listeners asked for, a drain delay of
/// zero (a gateway that stopped on its own would be gone at once).
fn listeners_config(dir: &std::path::Path, echo: SocketAddr, api: bool, admin: bool) -> std::path::PathBuf {
    let extra = "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    \
                 create_if_missing: true\nserver:\n  drain_delay: 0s\n  shutdown_grace: 2s";
    let path = process_config(dir, &format!("api-{api}-admin-{admin}"), echo, extra);
    let mut doc = support::ConfigDoc::parse(&std::fs::read_to_string(&path).expect("config"));
    if !api {
        // The facades are served on the api listener.
        doc.remove("listeners.api");
        doc.remove("facades");
    }
    if !admin {
        doc.remove("listeners.admin");
    }
    doc.write(&path);
    path
}

/// Nobody asked to stop, whatever listeners there are: without an admin
/// listener there is no one to ask, and that is no request to stop.
#[tokio::test]
async fn no_listener_combination_asks_itself_to_stop() {
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    for (api, admin) in COMBINATIONS {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = listeners_config(dir.path(), echo.addr, api, admin);
        let config = narrowgate::config::Config::load(&path).expect("config");
        let running = narrowgate::app::start_from(config, Some(path)).await.expect("starts");
        assert_eq!((running.api_addr.is_some(), running.admin_addr.is_some()), (api, admin));
        let asked = tokio::time::timeout(Duration::from_millis(300), running.shutdown_requested()).await;
        assert!(asked.is_err(), "api {api}, admin {admin}: a stop was requested by nobody");
        running.shutdown().await;
    }
}

/// The smallest config (`listeners: {proxy: …}` only) runs until SIGTERM,
/// serving all along, and then drains and exits 0; so does every other
/// combination of listeners.
#[tokio::test]
async fn every_listener_combination_serves_until_sigterm() {
    let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let dir = tempfile::tempdir().expect("tempdir");
    let minimal = dir.path().join("minimal.yaml");
    let mut doc = support::ConfigDoc::parse(include_str!("../../config/minimal.yaml"));
    doc.set("listeners.proxy", "127.0.0.1:0").set("upstream.addresses", serde_json::json!([echo.addr.to_string()]));
    doc.merge_yaml("server:\n  drain_delay: 0s\n  shutdown_grace: 2s");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), narrowgate::token::testkit::TestKey::es256("demo").public)
        .expect("key");
    doc.write(&minimal);
    let mut configs = vec![("proxy only, config/minimal.yaml", minimal)];
    for (api, admin) in COMBINATIONS {
        configs.push(("demo listeners", listeners_config(dir.path(), echo.addr, api, admin)));
    }
    for (what, config) in configs {
        let (mut child, addrs) = support::spawn_serve(&config).await;
        let start = Instant::now();
        // Served, and still served well past the moment a gateway that
        // stopped itself would have exited (its drain delay is zero).
        while start.elapsed() < Duration::from_millis(1500) {
            let r = send_raw(addrs.proxy, build_request("GET", "/nowhere", &[]).as_bytes()).await;
            assert_eq!(r.status, 403, "{what} ({}): {}", config.display(), r.body);
            assert!(child.try_wait().expect("wait").is_none(), "{what}: exited on its own");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        signal(&child, "TERM");
        let (code, _) = exited(&mut child, Duration::from_secs(5)).await;
        assert_eq!(code, Some(0), "{what}: a drain on SIGTERM exits 0");
    }
}
