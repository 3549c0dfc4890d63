//! The upstream side: a lean pool of HTTP/1.1 connections per upstream
//! address, round robin over the addresses, with connect and response-head
//! timeouts.
//!
//! hyper-util's general-purpose client costs a task spawn, a hash map and
//! two lock round trips per request; a proxy with a handful of fixed
//! upstreams needs none of that. Here a request takes an idle connection
//! (or dials one), sends, and the connection goes back to the pool when the
//! response body has been read to its end — never earlier, so no request
//! ever waits behind another's body. The pool's lock is held only to push
//! or pop, never across an await.
//!
//! Each proxy worker (a thread with a runtime of its own) keeps its own
//! idle connections: a connection is driven by the runtime that dialled it,
//! so a worker only ever reuses its own, and no request crosses threads.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::UpstreamConfig;
use crate::metrics::UpstreamError;

type Sender = http1::SendRequest<Incoming>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// One upstream address and its idle connections.
/// Why forwarding failed: its kind (for metrics and the 502/504), which
/// upstream, and the cause (an OS or protocol error) for the log. Never
/// shown to the client.
#[derive(Debug, Clone)]
pub struct UpstreamFailure {
    pub kind: UpstreamError,
    /// `host:port`, or empty when none was chosen.
    pub upstream: String,
    pub cause: String,
}

impl UpstreamFailure {
    pub fn unnamed(kind: UpstreamError, cause: &str) -> Self {
        UpstreamFailure { kind, upstream: String::new(), cause: cause.to_string() }
    }
}

struct Target {
    authority: Authority,
    /// Connections at rest (a pool serves one worker: see `proxy::Pool`).
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Target {
    fn take(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.pop() {
            if entry.since.elapsed() < self.idle_timeout && entry.sender.is_ready() {
                return Some(entry.sender);
            }
            // Expired or closed: dropping it closes the connection.
        }
        None
    }

    fn give_back(&self, sender: Sender) {
        if !sender.is_ready() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(Idle { sender, since: Instant::now() });
        }
    }
}

pub struct Upstream {
    targets: Vec<Arc<Target>>,
    next: AtomicUsize,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<&Authority> = self.targets.iter().map(|t| &t.authority).collect();
        f.debug_struct("Upstream").field("addresses", &addrs).finish_non_exhaustive()
    }
}

/// The upstream's response body; returns its connection to the pool once
/// read to the end. Dropped early, the connection is closed instead.
pub struct UpstreamBody {
    inner: Incoming,
    give_back: Option<(Sender, Arc<Target>)>,
}

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some((sender, target)) = self.give_back.take() {
            target.give_back(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.finish(),
            // An error means the connection is unusable: drop it.
            Poll::Ready(Some(Err(_))) => self.give_back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

thread_local! {
    /// Which pool this thread uses: 0 for the control
    /// runtime (and tests), k for proxy worker k.
    static WORKER_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Mark this thread as proxy worker `k` (1-based), so it uses its own
/// upstream pool.
pub fn set_worker_slot(k: usize) {
    WORKER_SLOT.with(|s| s.set(k));
}

/// This thread's worker slot: 0 for the control runtime, k for worker k.
pub fn worker_slot() -> usize {
    WORKER_SLOT.with(std::cell::Cell::get)
}

impl Upstream {
    /// A pool of connections to `cfg`'s addresses, for one worker.
    pub fn new(cfg: &UpstreamConfig) -> Self {
        let targets = cfg
            .addresses
            .iter()
            .map(|a| {
                Arc::new(Target {
                    authority: a.clone(),
                    idle: Mutex::new(Vec::new()),
                    max_idle: cfg.pool_max_idle,
                    idle_timeout: cfg.pool_idle_timeout,
                })
            })
            .collect();
        Upstream {
            targets,
            next: AtomicUsize::new(0),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
        }
    }

    /// The next upstream, round robin.
    fn pick(&self) -> Option<&Arc<Target>> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        self.targets.get(self.next.fetch_add(1, Ordering::Relaxed) % n)
    }

    /// Send `req` (origin-form URI, Host already set) to the next upstream;
    /// wait at most the read timeout for the response head.
    pub async fn send(&self, req: http::Request<Incoming>) -> Result<http::Response<UpstreamBody>, UpstreamFailure> {
        let target =
            self.pick().ok_or(UpstreamFailure::unnamed(UpstreamError::Connect, "no upstream address"))?.clone();
        let fail = |kind, cause: String| UpstreamFailure { kind, upstream: target.authority.to_string(), cause };
        match tokio::time::timeout(self.read_timeout, self.exchange(&target, req)).await {
            Err(_) => Err(fail(UpstreamError::Timeout, format!("no response within {:?}", self.read_timeout))),
            Ok(Err((kind, cause))) => Err(fail(kind, cause)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    async fn exchange(
        &self,
        target: &Arc<Target>,
        mut req: http::Request<Incoming>,
    ) -> Result<http::Response<UpstreamBody>, (UpstreamError, String)> {
        // A pooled connection may have been closed by the upstream while
        // idle; if the request was not sent on it, try once more on a new one.
        let mut pooled = target.take();
        loop {
            let reused = pooled.is_some();
            let mut sender = match pooled.take() {
                Some(s) => s,
                None => self.connect(target).await?,
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let upgraded = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                    // An upgraded connection belongs to the tunnel now.
                    let give_back = (!upgraded).then(|| (sender, target.clone()));
                    return Ok(resp.map(|inner| UpstreamBody { inner, give_back }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    _ => return Err((UpstreamError::Other, e.into_error().to_string())),
                },
            }
        }
    }

    async fn connect(&self, target: &Target) -> Result<Sender, (UpstreamError, String)> {
        let addr = target.authority.as_str();
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err((UpstreamError::Connect, e.to_string())),
            Err(_) => return Err((UpstreamError::Connect, format!("no connection within {:?}", self.connect_timeout))),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .writev(false)
            .handshake::<_, Incoming>(TokioIo::new(stream))
            .await
            .map_err(|e| (UpstreamError::Connect, e.to_string()))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}
