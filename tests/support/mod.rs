//! Test harness: a real echo upstream and the real gateway on loopback with
//! ephemeral ports, a raw HTTP/1.1 client (so tests control every byte of
//! the request), and token minting with a test key.
#![allow(dead_code)]

pub mod matrix;

use std::net::SocketAddr;
use std::time::Duration;

use narrowgate::app::{self, Running};
use narrowgate::config::Config;
use narrowgate::echo::{EchoUpstream, Received};
use narrowgate::token::now_unix;
use narrowgate::token::testkit::{TestKey, payload, rule};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const DEMO_YAML: &str = include_str!("../../config/demo.yaml");

pub struct Harness {
    pub echo: EchoUpstream,
    pub gateway: Option<Running>,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub api: SocketAddr,
    pub key: TestKey,
    /// The config file the gateway was started from (and reloads).
    pub config_path: std::path::PathBuf,
    /// Its document, to edit and write again for a reload.
    pub doc: ConfigDoc,
    _dir: tempfile::TempDir,
}

impl Harness {
    /// The gateway on config/demo.yaml.
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}, |_| {}).await
    }

    /// The gateway on config/demo.yaml after `edit_doc` (written to the
    /// config file it reloads from), with `edit_config` applied to the
    /// loaded config (in memory only: a reload reads the file).
    pub async fn start_with(edit_doc: impl FnOnce(&mut ConfigDoc), edit_config: impl FnOnce(&mut Config)) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = TestKey::es256("demo");
        std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
        std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write key");
        // The token service signs with a key of its own.
        let signer = TestKey::es256("signer");
        std::fs::write(dir.path().join("keys/signer.pem"), &signer.private_pem).expect("write signing key");
        let echo = EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo upstream");
        let mut doc = ConfigDoc::demo();
        doc.set("listeners.proxy", "127.0.0.1:0")
            .set("listeners.admin", "127.0.0.1:0")
            .set("listeners.api", "127.0.0.1:0")
            .set("upstream.addresses", json!([echo.addr.to_string()]))
            .set("issuers.0.signing_keys", json!([{ "kid": "signer", "private_key_file": "keys/signer.pem" }]));
        edit_doc(&mut doc);
        let config_path = dir.path().join("narrowgate.yaml");
        doc.write(&config_path);
        let mut config = Config::load(&config_path).expect("the test config is valid");
        edit_config(&mut config);
        let running = app::start_from(config, Some(config_path.clone())).await.expect("gateway starts");
        let proxy = running.proxy_addr;
        let admin = running.admin_addr.expect("admin listener");
        let api = running.api_addr.expect("api listener");
        Harness { echo, gateway: Some(running), proxy, admin, api, key, config_path, doc, _dir: dir }
    }

    /// The directory the config file (and its keys) live in.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// The running gateway.
    pub fn running(&self) -> &Running {
        self.gateway.as_ref().expect("the gateway is running")
    }

    /// Move the gateway's clock forward: what expires within `by` has
    /// expired, for the proxy and the token service alike.
    pub fn advance(&self, by: Duration) {
        self.running().runtime.shared().clock.advance(by);
    }

    /// Step the system's time as the gateway reads it, forward or back
    /// (time itself passes no faster).
    pub fn step_clock(&self, by_ms: i64) {
        self.running().runtime.shared().clock.step_system(by_ms);
    }

    /// The gateway's time.
    pub fn now(&self) -> u64 {
        self.running().runtime.shared().clock.now()
    }

    /// Edit the config document and write it to the config file (the
    /// gateway sees it at its next reload).
    pub fn rewrite(&mut self, edit: impl FnOnce(&mut ConfigDoc)) {
        edit(&mut self.doc);
        self.doc.write(&self.config_path);
    }

    /// A token for `sub` with these access rules, valid for an hour.
    pub fn token(&self, sub: &str, rules: Value) -> String {
        self.key.sign(&payload(sub, now_unix(), 3600, rules))
    }

    /// Sign an arbitrary payload with the gateway's trusted key.
    pub fn sign(&self, payload: &Value) -> String {
        self.key.sign(payload)
    }

    /// Send raw request bytes to the proxy and read the whole response.
    pub async fn raw(&self, request: &[u8]) -> Response {
        send_raw(self.proxy, request).await
    }

    /// `METHOD target` with headers; adds Host and `Connection: close`.
    pub async fn request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        self.raw(build_request(method, target, headers).as_bytes()).await
    }

    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Response {
        self.request("GET", target, headers).await
    }

    /// What the upstream received since the last call, clearing it.
    pub fn upstream_received(&self) -> Vec<Received> {
        let r = self.echo.received();
        self.echo.clear();
        r
    }

    /// A request to the token service (api listener).
    pub async fn api_request(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        send_raw(self.api, build_request(method, target, headers).as_bytes()).await
    }

    /// POST a JSON body to the token service.
    pub async fn api_post(&self, target: &str, headers: &[(&str, &str)], body: &str) -> Response {
        let len = body.len().to_string();
        let mut all = vec![("Host", "gateway.test"), ("Content-Type", "application/json")];
        all.extend_from_slice(headers);
        all.extend([("Content-Length", len.as_str()), ("Connection", "close")]);
        send_raw(self.api, raw_request("POST", target, &all, body).as_bytes()).await
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        send_raw(self.admin, build_request("GET", path, &[]).as_bytes()).await
    }

    pub async fn shutdown(mut self) {
        if let Some(g) = self.gateway.take() {
            g.shutdown().await;
        }
    }
}

/// A config as a document: config/demo.yaml parsed into a tree and edited
/// by path, so an edit that misses (a renamed key, a typo) fails the test
/// instead of silently changing nothing, as a string replacement would.
/// Written out as JSON, which is YAML.
#[derive(Clone, Debug)]
pub struct ConfigDoc(pub Value);

impl ConfigDoc {
    pub fn demo() -> ConfigDoc {
        ConfigDoc::parse(DEMO_YAML)
    }

    pub fn parse(yaml: &str) -> ConfigDoc {
        ConfigDoc(serde_saphyr::from_str(yaml).expect("valid YAML"))
    }

    /// The value at a dotted path (`issuers.0.keys`); fails the test when
    /// there is none.
    pub fn at(&mut self, path: &str) -> &mut Value {
        let mut v = &mut self.0;
        for step in path.split('.') {
            v = match step.parse::<usize>() {
                Ok(i) if v.is_array() => v.get_mut(i),
                _ => v.get_mut(step),
            }
            .unwrap_or_else(|| panic!("the config has no {path}"));
        }
        v
    }

    /// Set the value at `path`; its parent must exist.
    pub fn set(&mut self, path: &str, value: impl Into<Value>) -> &mut Self {
        let (parent, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
        let parent = if parent.is_empty() { &mut self.0 } else { self.at(parent) };
        match parent {
            Value::Object(map) => {
                map.insert(key.to_string(), value.into());
            }
            Value::Array(list) => {
                let i: usize = key.parse().unwrap_or_else(|_| panic!("{path}: not an index"));
                *list.get_mut(i).unwrap_or_else(|| panic!("the config has no {path}")) = value.into();
            }
            _ => panic!("{path}: the parent is not a mapping or a list"),
        }
        self
    }

    /// Remove the key at `path`, which must be there.
    pub fn remove(&mut self, path: &str) -> Value {
        let (parent, key) = path.rsplit_once('.').map_or(("", path), |(p, k)| (p, k));
        let parent = if parent.is_empty() { &mut self.0 } else { self.at(parent) };
        parent.as_object_mut().and_then(|m| m.remove(key)).unwrap_or_else(|| panic!("the config has no {path}"))
    }

    /// Merge a YAML fragment's mappings into the document (deeply).
    pub fn merge_yaml(&mut self, yaml: &str) -> &mut Self {
        if yaml.trim().is_empty() {
            return self;
        }
        fn merge(into: &mut Value, from: Value) {
            match (into, from) {
                (Value::Object(a), Value::Object(b)) => {
                    for (k, v) in b {
                        merge(a.entry(k).or_insert(Value::Null), v);
                    }
                }
                (slot, v) => *slot = v,
            }
        }
        merge(&mut self.0, serde_saphyr::from_str(yaml).expect("a valid YAML fragment"));
        self
    }

    pub fn write(&self, file: &std::path::Path) {
        let text = serde_json::to_string_pretty(&self.0).expect("json");
        // Whole or not at all: a watcher never reads half a file.
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write config");
        std::fs::rename(&tmp, file).expect("rename config");
    }
}

/// `METHOD target` with `Host: gateway.test`, `headers`, and
/// `Connection: close`; no body.
pub fn build_request(method: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut all = vec![("Host", "gateway.test")];
    all.extend_from_slice(headers);
    all.push(("Connection", "close"));
    raw_request(method, target, &all, "")
}

/// A request as HTTP/1.1 text, exactly as given: the request line
/// `METHOD target HTTP/1.1`, each header as `name: value` in the order
/// given, a blank line, then `body`. Nothing is added (no Host,
/// Content-Length or Connection unless listed) and nothing is checked.
/// Deliberately malformed requests (two Hosts, smuggling, a head cut
/// short) are written out by hand in their tests instead, byte by byte.
pub fn raw_request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut req = format!("{method} {target} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req
}

/// An address that refuses connections, without a race: a socket bound
/// (so nothing else can take the port) but not listening, held as long as
/// the returned socket lives. Never a port bound, released and hoped free.
pub fn refusing_address() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let held = tokio::net::TcpSocket::new_v4().expect("socket");
    held.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = held.local_addr().expect("addr");
    (held, addr)
}

/// A complete request with `body` of `content_type`, on a connection the
/// client closes after it: `Host: t`, the bearer `authorization` if any,
/// the body's type and length, `Connection: close`.
pub fn raw_body_request(
    method: &str,
    target: &str,
    authorization: Option<&str>,
    content_type: &str,
    body: &str,
) -> String {
    let len = body.len().to_string();
    let mut headers = vec![("Host", "t")];
    headers.extend(authorization.map(|a| ("Authorization", a)));
    headers.extend([("Content-Type", content_type), ("Content-Length", len.as_str()), ("Connection", "close")]);
    raw_request(method, target, &headers, body)
}

/// A web app's token rules: read account a1 of the trading API, and the
/// `public` scope of the MT manager's methods (any service) on a1.
pub fn web_rules() -> Value {
    json!([
        rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"]),
        {
            "id": "mt", "application": "mt-manager-api", "service": "*",
            "methodGroups": [{ "group": "mt-manager", "methods": [{ "method": "*", "scopes": ["public"] }] }],
            "roles": ["reader", "writer"], "resources": ["account:$USER_ID$:a1"]
        }
    ])
}

/// The claims of a master admin token: subject `root`, every access rule,
/// valid for an hour.
fn master_claims() -> Value {
    let mut p = payload("root", now_unix(), 3600, json!([rule("*", &["*"], &["*:$USER_ID$:*"])]));
    p["role"] = json!("admin");
    p["master"] = json!(true);
    p
}

/// A master admin token (subject `root`, every access rule, an hour)
/// signed by the harness's trusted key, as an `Authorization` value
/// (`Bearer …`).
pub fn master(h: &Harness) -> String {
    format!("Bearer {}", h.sign(&master_claims()))
}

/// [`master`] with this `jti`, for a test that checks what names its
/// creator.
pub fn master_with_jti(h: &Harness, jti: &str) -> String {
    let mut p = master_claims();
    p["jti"] = json!(jti);
    format!("Bearer {}", h.sign(&p))
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The `error` code of a JSON error body.
    pub fn reason(&self) -> String {
        self.json()["error"].as_str().unwrap_or("").to_string()
    }
}

/// Send `request` and read one response. The request is written while the
/// response is read, so a server that answers early (431 for a huge
/// header) is heard. A connection closed with no response gives status 0,
/// which a test must expect by name; no response within 10 s fails the
/// test.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Response {
    exchange_on(TcpStream::connect(addr).await.expect("connect"), addr, request).await
}

/// [`send_raw`] from the local address `from` (any of 127.0.0.0/8 on
/// loopback): another client, as the gateway sees it.
pub async fn send_raw_from(from: std::net::IpAddr, addr: SocketAddr, request: &[u8]) -> Response {
    let socket = if from.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
    let socket = socket.expect("socket");
    socket.bind(SocketAddr::new(from, 0)).expect("bind the client's address");
    exchange_on(socket.connect(addr).await.expect("connect"), addr, request).await
}

async fn exchange_on(stream: TcpStream, addr: SocketAddr, request: &[u8]) -> Response {
    let (mut reader, mut writer) = stream.into_split();
    let request = request.to_vec();
    // The server may close before the whole request is written: the
    // write error is expected then, and the response is still read.
    let write = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if is_complete(&buf) {
                break;
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), read).await.is_err() {
        panic!("no complete response from {addr} within 10 s; got {} bytes", buf.len());
    }
    write.abort();
    parse_response(&buf)
}

/// Whether `buf` holds a whole response (so keep-alive peers need not close).
pub fn is_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    if head.starts_with("http/1.1 101") {
        return true;
    }
    if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length:")) {
        return len.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

/// Parse one HTTP/1.1 response (content-length, chunked, or to EOF).
pub fn parse_response(buf: &[u8]) -> Response {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Response { status: 0, headers: vec![], body: String::from_utf8_lossy(buf).into_owned() };
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &buf[end + 4..];
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..pos]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = pos + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// The value of one series on an admin listener's `/metrics`: `name` is
/// the whole series as exposed, labels included.
pub async fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let body = send_raw(admin, build_request("GET", "/metrics", &[]).as_bytes()).await.body;
    body.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of `label` on the first series of `name` on an admin
/// listener's `/metrics`.
pub async fn metric_label(admin: SocketAddr, name: &str, label: &str) -> Option<String> {
    let body = send_raw(admin, build_request("GET", "/metrics", &[]).as_bytes()).await.body;
    let line = body.lines().find(|l| l.starts_with(&format!("{name}{{")))?;
    let at = line.find(&format!("{label}=\""))? + label.len() + 2;
    Some(line[at..].split('"').next()?.to_string())
}

/// The errors `Config::from_yaml` reports for the demo config after
/// `edit` (its keys in a directory of their own), one a line; empty when
/// it loads.
pub fn config_errors(edit: &dyn Fn(&mut ConfigDoc)) -> String {
    let mut doc = ConfigDoc::demo();
    edit(&mut doc);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
    std::fs::write(dir.path().join("keys/demo.pub.pem"), TestKey::es256("d").public).expect("key");
    let text = serde_json::to_string(&doc.0).expect("json");
    match Config::from_yaml(&text, dir.path()) {
        Ok(_) => String::new(),
        Err(e) => e.0.join("\n"),
    }
}

/// Poll `f` until it returns `Some`, failing after `deadline`.
pub async fn eventually<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < deadline, "condition not met within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A fresh, empty database on the test PostgreSQL server that `.ci/pg.sh`
/// starts; its URL. Fails loudly when the server is not configured.
pub async fn fresh_postgres_database() -> String {
    let url = std::env::var("NARROWGATE_TEST_PG_URL")
        .expect("NARROWGATE_TEST_PG_URL is not set: scripts/test starts PostgreSQL and sets it");
    let db = format!("ng_test_{}", narrowgate::token::keys::random_id(6).expect("id"));
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&url).await.expect("connect to the test PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.expect("create database");
    admin.close().await;
    // `postgres://user@host:port/database?host=<socket directory>`: the
    // database is the last segment before the query.
    let (path, query) = url.split_once('?').map_or((url.as_str(), None), |(p, q)| (p, Some(q)));
    let base = path.rsplit_once('/').map(|(b, _)| b).expect("url with a database");
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// Poll an async check until it returns `Some`, failing after `deadline`.
pub async fn eventually_async<T, F, Fut>(deadline: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < deadline, "condition not met within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The config edit that puts the gateway on a SQLite store at `path`.
pub fn sqlite_store(path: std::path::PathBuf) -> impl Fn(&mut Config) {
    move |c: &mut Config| {
        c.store = Some(narrowgate::config::StoreConfig {
            backend: narrowgate::config::StoreBackend::Sqlite { path: path.clone() },
            resync_interval: Duration::from_secs(30),
            create_if_missing: true,
        })
    }
}

// ---- The real binary as a separate process ----

pub const BIN: &str = env!("CARGO_BIN_EXE_narrowgate");

/// A `narrowgate serve` process; killed when dropped, so a failing test
/// leaves nothing running.
pub struct GatewayProcess {
    pub child: std::process::Child,
    pub proxy: SocketAddr,
    /// `None` for an enforce-only gateway.
    pub api: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub config: std::path::PathBuf,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write a config for a gateway process into `dir`: config/demo.yaml with
/// every listener on port 0, forwarding to `upstream`, signing with a key of
/// its own (the same key for every process sharing `dir`), with `extra` (a
/// YAML fragment: `store:`, `revocation:` …) merged in.
pub fn process_config(dir: &std::path::Path, name: &str, upstream: SocketAddr, extra: &str) -> std::path::PathBuf {
    let keys = dir.join("keys");
    if !keys.join("signer.pem").exists() {
        std::fs::create_dir_all(&keys).expect("mkdir");
        std::fs::write(keys.join("demo.pub.pem"), &TestKey::es256("demo").public).expect("write");
        std::fs::write(keys.join("signer.pem"), &TestKey::es256("signer").private_pem).expect("write");
    }
    let mut doc = ConfigDoc::demo();
    doc.set("listeners.proxy", "127.0.0.1:0")
        .set("listeners.admin", "127.0.0.1:0")
        .set("listeners.api", "127.0.0.1:0")
        .set("upstream.addresses", json!([upstream.to_string()]))
        .set("issuers.0.signing_keys", json!([{ "kid": "signer", "private_key_file": "keys/signer.pem" }]))
        .merge_yaml(extra);
    let path = dir.join(format!("{name}.yaml"));
    doc.write(&path);
    path
}

/// Start `narrowgate serve` on `config` (listeners on port 0; the process
/// reports the bound addresses) and wait until it reports ready.
pub async fn serve_process(config: &std::path::Path) -> GatewayProcess {
    let (child, addrs) = spawn_serve(config).await;
    let admin = addrs.admin.expect("admin listener");
    eventually_async(Duration::from_secs(20), || async move {
        (send_raw(admin, build_request("GET", "/readyz", &[]).as_bytes()).await.status == 200).then_some(())
    })
    .await;
    GatewayProcess { child, proxy: addrs.proxy, api: addrs.api, admin, config: config.to_path_buf() }
}

/// The addresses a `serve` process listens on.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub proxy: SocketAddr,
    pub api: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
}

/// Spawn `narrowgate serve` on `config` with `--addresses-file` and wait
/// for the addresses it bound (not for readiness). Its stdout and stderr
/// go to `<config>.out` and `<config>.err`.
pub async fn spawn_serve(config: &std::path::Path) -> (std::process::Child, Addresses) {
    let file = config.with_extension("addresses.json");
    let _ = std::fs::remove_file(&file);
    let out = std::fs::File::create(config.with_extension("out")).expect("stdout file");
    let err = std::fs::File::create(config.with_extension("err")).expect("stderr file");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config", config.to_str().expect("utf8"), "--addresses-file", file.to_str().expect("utf8")])
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn narrowgate serve");
    // Listening within 20 s, or failing at once if it exits first.
    let text = eventually(Duration::from_secs(20), || {
        if let Ok(t) = std::fs::read_to_string(&file) {
            return Some(t);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(config.with_extension("err")).unwrap_or_default();
            panic!("narrowgate serve exited ({status}) before listening: {err}");
        }
        None
    })
    .await;
    let v: Value = serde_json::from_str(&text).expect("addresses JSON");
    let addr = |k: &str| v[k].as_str().map(|a| a.parse().expect("an address"));
    (child, Addresses { proxy: addr("proxy").expect("proxy"), api: addr("api"), admin: addr("admin") })
}

impl GatewayProcess {
    /// A request with a bearer token to this process's proxy.
    pub async fn call(&self, method: &str, path: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        send_raw(self.proxy, build_request(method, path, &[("Authorization", &auth)]).as_bytes()).await
    }

    /// A request to this process's token service, with an optional token
    /// and JSON body.
    pub async fn api_call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Response {
        let body = body.unwrap_or("");
        let (auth, len) = (token.map(|t| format!("Bearer {t}")), body.len().to_string());
        let mut headers = vec![("Host", "t")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth.as_str()));
        }
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        headers.extend([("Content-Length", len.as_str()), ("Connection", "close")]);
        send_raw(self.api.expect("an api listener"), raw_request(method, path, &headers, body).as_bytes()).await
    }
}

// ---- A PostgreSQL server of the test's own, to stop and restart ----

/// A private PostgreSQL server (its own data directory and port), for tests
/// that take the database away; stopped when dropped.
pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    pub port: u16,
    /// More server settings (`-c name=value …`), at every start.
    settings: String,
}

fn running_as_root() -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    false
}

impl PrivatePostgres {
    /// initdb and start a server on a free port.
    pub fn start() -> PrivatePostgres {
        PrivatePostgres::start_with("")
    }

    /// [`PrivatePostgres::start`], with more server settings (`-c name=value …`).
    pub fn start_with(settings: &str) -> PrivatePostgres {
        let pg = PrivatePostgres::empty(settings);
        let data = pg.data();
        pg.run("initdb", &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        pg.start_again();
        pg
    }

    /// A streaming standby of `primary` (a base backup of it, following its
    /// WAL), started on a socket of its own.
    pub fn standby_of(primary: &PrivatePostgres) -> PrivatePostgres {
        let pg = PrivatePostgres::empty("");
        let data = pg.data();
        let from = primary.dir.path().to_str().expect("utf8").to_string();
        pg.run("pg_basebackup", &["-D", &data, "-h", &from, "-p", "5432", "-U", "postgres", "-R", "-X", "stream"]);
        pg.start_again();
        pg
    }

    /// Make this standby the primary; returns once it is.
    pub fn promote(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-w", "promote"]);
    }

    /// Stop it as a crash would (immediate: no checkpoint, sessions cut).
    pub fn crash(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }

    /// One SQL query's result, as psql prints it unaligned (`-At`).
    pub fn query(&self, sql: &str) -> String {
        let socket_dir = self.dir.path().to_str().expect("utf8").to_string();
        let out = self
            .command("psql")
            .args(["-h", &socket_dir, "-p", &self.port.to_string(), "-U", "postgres", "-At", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The directory its Unix socket is in.
    pub fn socket_dir(&self) -> std::path::PathBuf {
        self.dir.path().to_path_buf()
    }

    fn empty(settings: &str) -> PrivatePostgres {
        let bin = std::path::PathBuf::from(
            std::env::var("NARROWGATE_TEST_PG_BIN")
                .expect("NARROWGATE_TEST_PG_BIN is not set: scripts/test finds PostgreSQL and sets it"),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        if running_as_root() {
            // The server refuses to run as root: it runs as postgres.
            let ok = std::process::Command::new("chown")
                .args(["-R", "postgres:", dir.path().to_str().expect("utf8")])
                .status()
                .expect("chown");
            assert!(ok.success());
        }
        // Its own socket directory and no TCP: nothing to collide with.
        PrivatePostgres { dir, bin, port: 5432, settings: settings.to_string() }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().expect("utf8").to_string()
    }

    /// A PostgreSQL tool, run as the postgres user when we are root.
    fn command(&self, tool: &str) -> std::process::Command {
        let tool = self.bin.join(tool);
        if running_as_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(tool);
            c
        } else {
            std::process::Command::new(tool)
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let out = self.command(tool).args(args).output().expect("run a PostgreSQL tool");
        assert!(out.status.success(), "{tool} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The URL of its `postgres` database (through its Unix socket).
    pub fn url(&self) -> String {
        format!("postgres://postgres@localhost:{}/postgres?host={}", self.port, self.dir.path().display())
    }

    /// Stop it (fast shutdown: sessions are closed).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Start it (again) on its port; returns once it accepts connections.
    pub fn start_again(&self) {
        let socket_dir = self.dir.path().to_str().expect("utf8").to_string();
        let log = self.dir.path().join("server.log");
        let opts = format!(
            "-p {} -k {socket_dir} -c listen_addresses= -c fsync=off -c max_connections=100 {}",
            self.port, self.settings
        );
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", log.to_str().expect("utf8"), "-w", "-t", "60", "-o", &opts, "start"],
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.command("pg_ctl").args(["-D", &data, "-m", "immediate", "-w", "stop"]).output();
    }
}

/// Write the config of an enforce-only gateway process into `dir`: no
/// store and no api listener; the issuer's keys from `jwks_url`; revocations
/// followed from the issuers' feeds at `feed_urls` with the reader token in
/// `token_file`; `extra` (a YAML fragment) merged in. The manifest is the
/// demo's.
pub fn enforcer_config(
    dir: &std::path::Path,
    name: &str,
    upstream: SocketAddr,
    jwks_url: &str,
    feed_urls: &[String],
    token_file: &str,
    extra: &str,
) -> std::path::PathBuf {
    let mut doc = ConfigDoc::demo();
    let demo = doc.0.as_object_mut().expect("a mapping");
    demo.retain(|k, _| k == "applications");
    doc.merge_yaml(&format!(
        "listeners: {{ proxy: \"127.0.0.1:0\", admin: \"127.0.0.1:0\" }}\n\
         credentials: [ {{ source: bearer }} ]\n\
         revocation: {{ follow: {{ token_file: {token_file} }} }}"
    ))
    .set("upstream", json!({ "addresses": [upstream.to_string()] }))
    .set(
        "issuers",
        json!([{
            "name": "narrowgate", "issuer": "narrowgate", "algorithms": ["ES256"],
            "jwks_url": jwks_url, "jwks_min_refetch": "200ms",
        }]),
    )
    .set("revocation.follow.urls", json!(feed_urls))
    .merge_yaml(extra);
    let path = dir.join(format!("{name}.yaml"));
    doc.write(&path);
    path
}

/// The interpreter of the test environment (the real Python clients and
/// servers); fails loudly without it.
pub fn python() -> String {
    std::env::var("NARROWGATE_TEST_PYTHON")
        .expect("NARROWGATE_TEST_PYTHON is not set: scripts/test makes the Python environment and sets it")
}
