//! A small echo upstream: the demo's built-in backend and the tests' real
//! upstream. It answers every request with a JSON description of what it
//! received, records each request so tests can assert what the upstream
//! saw, and accepts WebSocket upgrades, echoing bytes back.
//!
//! `x-echo-delay-ms: N` delays the response head, to exercise timeouts.
//! To exercise a gateway's checks of an upgrade's answer, the echo can
//! misbehave when asked: `x-echo-upgrade: P` switches to protocol `P`
//! whatever was asked, and `x-echo-accept: V` answers a WebSocket handshake
//! with `Sec-WebSocket-Accept: V` (omitted when `V` is empty).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the upstream received it.
#[derive(Clone, Debug, Serialize)]
pub struct Received {
    /// The connection's peer address: which pooled connection carried it.
    pub peer: String,
    pub method: String,
    /// The request target exactly as received (path and query).
    pub target: String,
    /// Header names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A running echo upstream.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl EchoUpstream {
    /// Listen on `addr` (port 0 for an ephemeral one).
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else { continue };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, peer.to_string(), rec.clone()));
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).with_upgrades().await;
                });
            }
        });
        Ok(EchoUpstream { addr, received, task })
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Forget what was received.
    pub fn clear(&self) {
        if let Ok(mut v) = self.received.lock() {
            v.clear();
        }
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    mut req: Request<Incoming>,
    peer: String,
    rec: Arc<Mutex<Vec<Received>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let delay = req.headers().get("x-echo-delay-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let (forced, forced_accept) = misbehaviour(req.headers());
    let upgrade = forced.or_else(|| req.headers().get(header::UPGRADE).cloned());
    let ws_key = req.headers().get("sec-websocket-key").cloned();
    let on_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let method = req.method().to_string();
    let target = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let entry = Received { peer, method, target, headers, body };
    let json = serde_json::to_vec(&entry).unwrap_or_default();
    if let Ok(mut v) = rec.lock() {
        v.push(entry);
    }
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let (Some(up), Some(on_upgrade)) = (upgrade, on_upgrade) {
        tokio::spawn(async move {
            if let Ok(upgraded) = on_upgrade.await {
                let mut io = TokioIo::new(upgraded);
                let (mut r, mut w) = tokio::io::split(&mut io);
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut().insert(header::UPGRADE, up);
        resp.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("upgrade"));
        match (forced_accept, ws_key) {
            (Some(v), _) if v.is_empty() => {}
            (Some(v), _) => {
                resp.headers_mut().insert("sec-websocket-accept", v);
            }
            (None, Some(key)) => {
                resp.headers_mut().insert("sec-websocket-accept", websocket_accept(key.as_bytes()));
            }
            (None, None) => {}
        }
        return Ok(resp);
    }
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// What a test asks the echo to get wrong: the protocol it switches to
/// whatever was asked (`x-echo-upgrade`), and the accept value it answers
/// a WebSocket handshake with (`x-echo-accept`). Test builds only: the
/// demo's echo always answers correctly.
#[cfg(any(test, feature = "test-support"))]
fn misbehaviour(h: &header::HeaderMap) -> (Option<header::HeaderValue>, Option<header::HeaderValue>) {
    (h.get("x-echo-upgrade").cloned(), h.get("x-echo-accept").cloned())
}

#[cfg(not(any(test, feature = "test-support")))]
fn misbehaviour(_: &header::HeaderMap) -> (Option<header::HeaderValue>, Option<header::HeaderValue>) {
    (None, None)
}

fn websocket_accept(key: &[u8]) -> header::HeaderValue {
    let v = crate::http_names::websocket_accept(key);
    header::HeaderValue::from_str(&v).unwrap_or(header::HeaderValue::from_static(""))
}
