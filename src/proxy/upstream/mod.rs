//! The upstream side: a lean pool of connections (plain or TLS) per
//! upstream address — HTTP/1.1, one request at a time, or HTTP/2 on the
//! `h2` crate, multiplexed (`h2_client`) — with connect and response-head
//! timeouts; one
//! [`Upstream`] per configured upstream. Addresses are chosen by round
//! robin or the power of two choices among those passive health has not
//! ejected (`health`), and a request is retried only where that is safe,
//! within a budget. An address given by DNS name leads where its latest
//! resolution says (`resolve`).
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use http_body_util::{Either, Empty};
use smallvec::SmallVec;

use crate::config::{Balance, Ejection, Protocol, UpstreamConfig};
use crate::metrics::UpstreamCounters;
use crate::metrics::UpstreamError;

mod h2_client;
mod health;
mod resolve;

use health::{Budget, Health, now_ms};
use resolve::{Lookup, Resolved};

/// What is sent upstream: the client's body, or none (a retry of a
/// bodiless request, rebuilt from its head).
type ReqBody = Either<Sending, Empty<Bytes>>;
type Request = http::Request<ReqBody>;

/// A connection to send on: HTTP/1.1 (one request at a time, pooled when
/// idle) or HTTP/2 (multiplexed: shared while it lasts).
enum Sender {
    H1(http1::SendRequest<ReqBody>),
    H2(h2_client::Sender),
}

impl Sender {
    fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_ready(),
            Sender::H2(s) => s.is_ready(),
        }
    }

    /// Send `req` (origin-form, with its `Host`); over HTTP/2 its target
    /// becomes `scheme://host/path` (`:scheme`, `:authority`, `:path`).
    async fn send(&mut self, req: Request, scheme: &http::uri::Scheme) -> Result<http::Response<Inner>, Unsent> {
        match self {
            Sender::H1(s) => match s.try_send_request(req).await {
                Ok(resp) => Ok(resp.map(Inner::H1)),
                Err(mut e) => Err(Unsent { request: e.take_message(), cause: e.into_error().to_string() }),
            },
            Sender::H2(s) => s.send(absolute(req, scheme)).await.map(|resp| resp.map(Inner::H2)),
        }
    }
}

/// Why a request could not be sent, and the request when none of it went
/// out (either protocol's).
type Unsent = h2_client::Unsent<ReqBody>;

/// A response body as its connection's protocol delivers it.
enum Inner {
    H1(Incoming),
    H2(h2_client::Recv),
}

struct Idle {
    sender: Sender,
    since: Instant,
    to: Dialled,
}

/// Where a connection was made: the address a name gave, at which of the
/// name's generations.
#[derive(Clone, Copy)]
struct Dialled {
    addr: std::net::SocketAddr,
    generation: u64,
}

/// Why forwarding failed: its kind (for metrics and the 502/504), which
/// upstream, and the cause (an OS or protocol error) for the log. Never
/// shown to the client.
#[derive(Debug, Clone)]
pub struct UpstreamFailure {
    pub kind: UpstreamError,
    /// The upstream's name (`default`, or its name under `upstreams`).
    pub name: Box<str>,
    /// `host:port`, or empty when none was chosen.
    pub upstream: String,
    pub cause: String,
}

impl UpstreamFailure {
    /// A failure before any upstream was chosen.
    pub fn unnamed(kind: UpstreamError, cause: &str) -> Self {
        UpstreamFailure { kind, name: "-".into(), upstream: String::new(), cause: cause.to_string() }
    }
}

/// One upstream address (as configured) and its idle connections.
struct Target {
    authority: Authority,
    /// Where it leads now (shared by the workers).
    resolved: Arc<Resolved>,
    /// The name its TLS certificate must have (TLS upstreams only).
    server_name: Option<rustls::pki_types::ServerName<'static>>,
    /// Connections at rest (a pool serves one worker: see `proxy::Pool`).
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
    idle_timeout: Duration,
    health: Health,
}

impl Target {
    /// A connection to send on: an idle HTTP/1.1 one (taken out), or the
    /// HTTP/2 one (shared: it stays, its idle time starting anew).
    fn take(&self) -> Option<(Sender, Dialled)> {
        let mut idle = self.idle.lock().ok()?;
        while let Some(entry) = idle.last_mut() {
            if entry.since.elapsed() < self.idle_timeout
                && entry.sender.is_ready()
                && self.resolved.holds(entry.to.addr, entry.to.generation)
            {
                if let Sender::H2(shared) = &entry.sender {
                    entry.since = Instant::now();
                    return Some((Sender::H2(shared.clone()), entry.to));
                }
                let entry = idle.pop()?;
                return Some((entry.sender, entry.to));
            }
            // Expired, closed, or to an address its name no longer gives:
            // dropping it closes the connection (an HTTP/2 one once its
            // streams in flight end).
            idle.pop();
        }
        None
    }

    /// Keep a connection for the requests to come: an HTTP/1.1 one whose
    /// response was read to its end, or a new HTTP/2 one (to share).
    fn give_back(&self, sender: Sender, to: Dialled) {
        if !sender.is_ready() || !self.resolved.holds(to.addr, to.generation) {
            return;
        }
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(Idle { sender, since: Instant::now(), to });
        }
    }
}

pub struct Upstream {
    name: Box<str>,
    targets: Vec<Arc<Target>>,
    /// `None`: plain HTTP.
    tls: Option<tokio_rustls::TlsConnector>,
    /// `http` or `https` (an HTTP/2 request's `:scheme`).
    scheme: http::uri::Scheme,
    protocol: Protocol,
    next: AtomicUsize,
    connect_timeout: Duration,
    read_timeout: Duration,
    body_faults: Arc<BodyFaults>,
    balance: Balance,
    ejection: Ejection,
    retry_statuses: Vec<u16>,
    /// Retries per request at most.
    attempts: u32,
    budget: Budget,
    /// What ejections are timed by: the gateway's clock.
    clock: Arc<crate::clock::Clock>,
    counters: UpstreamCounters,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<&Authority> = self.targets.iter().map(|t| &t.authority).collect();
        f.debug_struct("Upstream").field("name", &self.name).field("addresses", &addrs).finish_non_exhaustive()
    }
}

/// The upstream's response body; returns its connection to the pool once
/// read to the end. Dropped early, the connection is closed instead.
pub struct UpstreamBody {
    inner: Inner,
    give_back: Option<(Sender, Dialled, Arc<Target>)>,
    /// The request's place in its address's count in flight.
    busy: Option<Outstanding>,
    /// How long the upstream may go quiet, and where a failure is counted.
    watch: Option<BodyWatch>,
}

/// What watches a response body once its head has been relayed.
struct BodyWatch {
    faults: Arc<BodyFaults>,
    /// Armed while the upstream is quiet: when it has been quiet too long.
    /// (Made the first time a read has to wait: a body at hand costs no
    /// timer.)
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A frame came since `stall` was armed.
    moved: bool,
    /// Set while the client's body is still on its way (`None`: it had
    /// none).
    request_open: Option<Arc<AtomicBool>>,
}

/// The client's body on its way upstream, saying when it has ended.
pub struct Sending {
    inner: Incoming,
    open: Option<Arc<AtomicBool>>,
}

impl Body for Sending {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None | Some(Err(_))) => true,
            Poll::Ready(Some(Ok(_))) => self.inner.is_end_stream(),
            Poll::Pending => false,
        };
        if ended && let Some(open) = self.open.take() {
            open.store(false, Ordering::Release);
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

impl Drop for Sending {
    fn drop(&mut self) {
        // Dropped (sent, or given up): nothing more of it will come.
        if let Some(open) = self.open.take() {
            open.store(false, Ordering::Release);
        }
    }
}

/// One upstream's body timeout and the counters of its bodies' failures.
struct BodyFaults {
    name: Box<str>,
    idle: Duration,
    failed: prometheus::IntCounter,
    stalled: prometheus::IntCounter,
}

impl BodyWatch {
    /// Whether the upstream, which has nothing more for now, has been
    /// quiet past the limit (and if not, to be woken when it will have).
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let idle = self.faults.idle;
        let sleep = match &mut self.stall {
            Some(s) => {
                if self.moved {
                    s.as_mut().reset(tokio::time::Instant::now() + idle);
                }
                s
            }
            None => self.stall.insert(Box::pin(tokio::time::sleep(idle))),
        };
        self.moved = false;
        if sleep.as_mut().poll(cx).is_pending() {
            return false;
        }
        if self.request_open.as_ref().is_some_and(|o| o.load(Ordering::Acquire)) {
            // The client is still sending: looked at again a period on.
            sleep.as_mut().reset(tokio::time::Instant::now() + idle);
            return sleep.as_mut().poll(cx).is_ready();
        }
        true
    }
}

/// A response body cut off because its upstream went quiet for longer
/// than `body_idle_timeout`.
#[derive(Debug)]
pub struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream went quiet in the middle of the response body")
    }
}

impl std::error::Error for Stalled {}

impl UpstreamBody {
    fn finish(&mut self) {
        if let Some((sender, to, target)) = self.give_back.take() {
            target.give_back(sender, to);
        }
        self.busy = None;
    }

    /// The body failed after its head was relayed: its connection is not
    /// reused, and the failure is counted and logged (the client's
    /// response is cut off, or a gRPC call ended, by the layers above).
    fn fail(&mut self, kind: UpstreamError, cause: &dyn std::fmt::Display) {
        self.give_back = None;
        let address = self.busy.as_ref().map(|b| b.0.authority.to_string()).unwrap_or_default();
        self.busy = None;
        if let Some(w) = &self.watch {
            let f = &w.faults;
            match kind {
                UpstreamError::BodyTimeout => f.stalled.inc(),
                _ => f.failed.inc(),
            }
            tracing::warn!(upstream = %f.name, address, error = %cause, "the upstream's response failed after its head was relayed");
        }
    }
}

/// What reading an upstream's response body failed with.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled: Poll<Option<Result<Frame<Bytes>, BodyError>>> = match &mut self.inner {
            Inner::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Inner::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        };
        match &polled {
            Poll::Ready(None) => self.finish(),
            Poll::Ready(Some(Ok(_))) => {
                if let Some(w) = &mut self.watch {
                    w.moved = true;
                }
                if self.is_end_stream() {
                    self.finish();
                }
            }
            // An error means the connection is unusable: drop it.
            Poll::Ready(Some(Err(e))) => {
                let cause = e.to_string();
                self.fail(UpstreamError::Body, &cause);
            }
            Poll::Pending => {
                if self.watch.as_mut().is_some_and(|w| w.stalled(cx)) {
                    self.fail(UpstreamError::BodyTimeout, &Stalled);
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::H1(b) => b.is_end_stream(),
            Inner::H2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::H1(b) => b.size_hint(),
            Inner::H2(b) => b.size_hint(),
        }
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

/// Where one upstream's configured addresses lead: shared by the pools of
/// every worker, so each name is resolved once for all of them.
pub struct Addresses(Box<[Arc<Resolved>]>);

impl Addresses {
    pub fn new(cfg: &UpstreamConfig, clock: &Arc<crate::clock::Clock>, counters: &UpstreamCounters) -> Self {
        let lookup = Arc::new(Lookup::new(&cfg.dns));
        Addresses(
            cfg.addresses
                .iter()
                .map(|a| Arc::new(Resolved::new(a, &cfg.name, &cfg.dns, &lookup, clock, counters.clone())))
                .collect(),
        )
    }
}

impl Upstream {
    /// A pool of connections to `cfg`'s addresses (which lead where
    /// `addresses` says), for one worker.
    pub fn new(
        cfg: &UpstreamConfig,
        addresses: &Addresses,
        clock: &Arc<crate::clock::Clock>,
        counters: UpstreamCounters,
    ) -> Self {
        let targets = cfg
            .addresses
            .iter()
            .zip(addresses.0.iter())
            .map(|(a, resolved)| {
                let server_name = cfg.tls.as_ref().map(|t| match &t.server_name {
                    Some(n) => n.clone(),
                    None => server_name_of(a),
                });
                Arc::new(Target {
                    authority: a.clone(),
                    resolved: resolved.clone(),
                    server_name,
                    idle: Mutex::new(Vec::new()),
                    max_idle: cfg.pool_max_idle,
                    idle_timeout: cfg.pool_idle_timeout,
                    health: Health::default(),
                })
            })
            .collect();
        Upstream {
            name: cfg.name.clone(),
            tls: cfg.tls.as_ref().map(|t| {
                let client = match cfg.protocol {
                    Protocol::Http1 => t.client.clone(),
                    // Offered alone: an upstream configured for HTTP/2 is
                    // spoken to in HTTP/2.
                    Protocol::Http2 => {
                        let mut c = (*t.client).clone();
                        c.alpn_protocols = vec![b"h2".to_vec()];
                        Arc::new(c)
                    }
                };
                tokio_rustls::TlsConnector::from(client)
            }),
            scheme: if cfg.tls.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP },
            protocol: cfg.protocol,
            targets,
            next: AtomicUsize::new(0),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            body_faults: Arc::new(BodyFaults {
                name: cfg.name.clone(),
                idle: cfg.body_idle_timeout,
                failed: counters.body_failed.clone(),
                stalled: counters.body_stalled.clone(),
            }),
            balance: cfg.balance,
            ejection: cfg.ejection,
            retry_statuses: cfg.retries.statuses.clone(),
            attempts: cfg.retries.attempts,
            budget: Budget::new(&cfg.retries),
            clock: clock.clone(),
            counters,
        }
    }

    /// Its name: `default`, or its name under `upstreams`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The address for the next attempt: among those not ejected and not
    /// `tried` yet (else those not tried, else any: an upstream whose every
    /// address is ejected is still tried rather than refused outright), by
    /// round robin or the less loaded of two drawn at random.
    fn pick(&self, tried: &[usize], now: u64) -> Option<usize> {
        let n = self.targets.len();
        if n == 0 {
            return None;
        }
        let fresh = |i: &usize| !tried.contains(i);
        let healthy = |i: &usize| fresh(i) && self.targets[*i].health.available(now);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let ring = || (0..n).map(move |k| (start + k) % n);
        let first = ring().find(healthy).or_else(|| ring().find(fresh)).unwrap_or(start % n);
        if self.balance == Balance::RoundRobin || n == 1 {
            return Some(first);
        }
        // The power of two choices: `first` (a random start, as the counter
        // is mixed) against one other candidate of the same kind.
        let mixed = (start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
        let other = (first + 1 + (mixed as usize) % (n - 1)) % n;
        let eligible = if healthy(&first) { healthy(&other) } else { fresh(&other) };
        let load = |i: usize| self.targets[i].health.outstanding.load(Ordering::Relaxed);
        Some(if eligible && load(other) < load(first) { other } else { first })
    }

    /// Send `req` (origin-form URI, Host already set) to one of the
    /// upstream's addresses; wait at most the read timeout (or `wait`, if
    /// shorter: a gRPC call's deadline) for the response head. Retried only where safe (see [`Retries`]): never a
    /// request a byte of which may have gone out, unless it is idempotent,
    /// bodiless, and answered with a status configured for retries.
    pub async fn send(
        &self,
        req: http::Request<Incoming>,
        wait: Option<Duration>,
    ) -> Result<http::Response<UpstreamBody>, UpstreamFailure> {
        let read_timeout = wait.map_or(self.read_timeout, |w| w.min(self.read_timeout));
        self.budget.deposit();
        // Only an idempotent request without a body can be sent again
        // after it went out: it is rebuilt from its head.
        let replay = (!self.retry_statuses.is_empty() && is_idempotent(req.method()) && req.body().is_end_stream())
            .then(|| head_of(&req));
        // Until the client's body has ended, a quiet response is no stall
        // (a client-streaming call, an upload the upstream answers at its
        // end).
        let request_open = (!req.body().is_end_stream()).then(|| Arc::new(AtomicBool::new(true)));
        let open = request_open.clone();
        let mut req = req.map(|inner| Either::Left(Sending { inner, open }));
        let mut tried: SmallVec<[usize; 4]> = SmallVec::new();
        loop {
            // The one reading of the clock on a request's way when all goes well.
            let now = now_ms(&self.clock);
            let i = self
                .pick(&tried, now)
                .ok_or(UpstreamFailure::unnamed(UpstreamError::Connect, "no upstream address"))?;
            let target = self.targets[i].clone();
            target.resolved.refresh_if_due(now);
            let fail = |kind, cause: String| UpstreamFailure {
                kind,
                name: self.name.clone(),
                upstream: target.authority.to_string(),
                cause,
            };
            let may_retry = tried.len() < self.attempts as usize;
            tried.push(i);
            target.health.outstanding.fetch_add(1, Ordering::Relaxed);
            let busy = Outstanding(target.clone());
            let attempt = tokio::time::timeout(read_timeout, self.exchange(&target, req)).await;
            match attempt {
                Err(_) => {
                    self.failed(&target);
                    return Err(fail(UpstreamError::Timeout, format!("no response within {read_timeout:?}")));
                }
                Ok(Err(Failed { kind, cause, unsent })) => {
                    self.failed(&target);
                    match unsent {
                        // Not a byte went out: another address may have it.
                        Some(back) if may_retry && self.budget.withdraw() => {
                            self.counters.retries.inc();
                            tracing::debug!(upstream = %self.name, address = %target.authority, error = %cause, "retrying elsewhere: the request was not sent");
                            req = back;
                        }
                        _ => return Err(fail(kind, cause)),
                    }
                }
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    if status.is_server_error() {
                        self.failed(&target);
                    } else {
                        target.health.succeeded();
                    }
                    match &replay {
                        Some(head)
                            if may_retry
                                && self.retry_statuses.contains(&status.as_u16())
                                && self.budget.withdraw() =>
                        {
                            self.counters.retries.inc();
                            tracing::debug!(upstream = %self.name, address = %target.authority, status = status.as_u16(), "retrying an idempotent request");
                            // Dropped unread: its connection is closed.
                            drop(resp);
                            req = rebuild(head);
                        }
                        _ => {
                            let watch = BodyWatch {
                                faults: self.body_faults.clone(),
                                stall: None,
                                moved: false,
                                request_open: request_open.clone(),
                            };
                            return Ok(resp.map(|r| UpstreamBody { busy: Some(busy), watch: Some(watch), ..r }));
                        }
                    }
                }
            }
        }
    }

    /// A failure of `target`'s: counted, and logged when it ejects it.
    fn failed(&self, target: &Target) {
        if target.health.failed(&self.ejection, now_ms(&self.clock)) {
            self.counters.ejections.inc();
            tracing::warn!(upstream = %self.name, address = %target.authority, "upstream address ejected after failures in a row");
        }
    }

    async fn exchange(&self, target: &Arc<Target>, mut req: Request) -> Result<http::Response<UpstreamBody>, Failed> {
        // A pooled connection may have been closed by the upstream while
        // idle; if the request was not sent on it, try once more on a new one.
        let mut pooled = target.take();
        loop {
            let reused = pooled.is_some();
            let (mut sender, to) = match pooled.take() {
                Some(s) => s,
                // (Boxed: a new connection's TLS and HTTP/2 handshakes are
                // kilobytes of state that every request's future would
                // carry, and move, if they were inline.)
                None => match Box::pin(self.connect(target)).await {
                    Ok((Sender::H2(shared), to)) => {
                        target.give_back(Sender::H2(shared.clone()), to);
                        (Sender::H2(shared), to)
                    }
                    Ok(s) => s,
                    Err((kind, cause)) => return Err(Failed { kind, cause, unsent: Some(req) }),
                },
            };
            match sender.send(req, &self.scheme).await {
                Ok(resp) => {
                    let upgraded = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
                    // An upgraded connection belongs to the tunnel now; an
                    // HTTP/2 one stays shared in the pool.
                    let give_back =
                        (!upgraded && matches!(sender, Sender::H1(_))).then(|| (sender, to, target.clone()));
                    return Ok(resp.map(|inner| UpstreamBody { inner, give_back, busy: None, watch: None }));
                }
                Err(Unsent { cause, request }) => match request {
                    Some(unsent) if reused => req = unsent,
                    // On a new connection: sent or not, it is not sent again
                    // unless it was handed back whole.
                    unsent => return Err(Failed { kind: UpstreamError::Other, cause, unsent }),
                },
            }
        }
    }

    async fn connect(&self, target: &Target) -> Result<(Sender, Dialled), (UpstreamError, String)> {
        let dial = || async {
            tokio::time::timeout(self.connect_timeout, target.resolved.dial())
                .await
                .map_err(|_| (UpstreamError::Connect, format!("no address within {:?}", self.connect_timeout)))?
                .map_err(|e| (UpstreamError::Connect, e))
        };
        let (addr, generation) = dial().await?;
        let failure = match self.connect_to(addr, target).await {
            Ok(sender) => {
                target.resolved.reached(addr);
                return Ok((sender, Dialled { addr, generation }));
            }
            Err(e) => e,
        };
        // The name may lead elsewhere now; and while it has another
        // address, that one is tried at once (nothing was sent).
        target.resolved.failed(addr);
        if let Ok((other, generation)) = dial().await
            && other != addr
        {
            match self.connect_to(other, target).await {
                Ok(sender) => {
                    target.resolved.reached(other);
                    return Ok((sender, Dialled { addr: other, generation }));
                }
                Err(_) => target.resolved.failed(other),
            }
        }
        Err(failure)
    }

    async fn connect_to(&self, addr: std::net::SocketAddr, target: &Target) -> Result<Sender, (UpstreamError, String)> {
        let stream = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err((UpstreamError::Connect, e.to_string())),
            Err(_) => return Err((UpstreamError::Connect, format!("no connection within {:?}", self.connect_timeout))),
        };
        let _ = stream.set_nodelay(true);
        match (&self.tls, &target.server_name) {
            (Some(connector), Some(name)) => {
                // The handshake within the connect timeout too.
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), stream))
                    .await
                    .map_err(|_| (UpstreamError::Tls, format!("no TLS handshake within {:?}", self.connect_timeout)))?
                    .map_err(|e| (UpstreamError::Tls, e.to_string()))?;
                handshake(tls, self.protocol).await
            }
            _ => handshake(stream, self.protocol).await,
        }
    }
}

/// A failed attempt: why, and the request when none of it was sent.
struct Failed {
    kind: UpstreamError,
    cause: String,
    unsent: Option<Request>,
}

/// Counts a request in flight to its address until dropped (with the
/// response's body).
struct Outstanding(Arc<Target>);

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.health.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Safe to send twice (RFC 9110 §9.2.2).
fn is_idempotent(m: &http::Method) -> bool {
    matches!(
        *m,
        http::Method::GET
            | http::Method::HEAD
            | http::Method::OPTIONS
            | http::Method::PUT
            | http::Method::DELETE
            | http::Method::TRACE
    )
}

/// What a bodiless request is rebuilt from.
struct Head {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: http::HeaderMap,
}

fn head_of<B>(req: &http::Request<B>) -> Head {
    Head {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        headers: req.headers().clone(),
    }
}

fn rebuild(head: &Head) -> Request {
    let mut req = http::Request::new(Either::Right(Empty::new()));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    req
}

/// HTTP/1.1 or HTTP/2 over a connection made: the sender, and the
/// connection driven on its own task.
async fn handshake<IO>(io: IO, protocol: Protocol) -> Result<Sender, (UpstreamError, String)>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match protocol {
        Protocol::Http1 => {
            let (sender, conn) = http1::Builder::new()
                .writev(false)
                .handshake::<_, ReqBody>(TokioIo::new(io))
                .await
                .map_err(|e| (UpstreamError::Connect, e.to_string()))?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
            });
            Ok(Sender::H1(sender))
        }
        Protocol::Http2 => {
            h2_client::Sender::handshake(io).await.map(Sender::H2).map_err(|e| (UpstreamError::Connect, e.to_string()))
        }
    }
}

/// An origin-form request as HTTP/2 sends it: `scheme://host/path`, the
/// `Host` becoming `:authority`.
fn absolute(mut req: Request, scheme: &http::uri::Scheme) -> Request {
    if req.uri().scheme().is_some() {
        return req;
    }
    // Connection-specific headers have no place in HTTP/2 (RFC 9113
    // §8.2.2): a WebSocket handshake's are dropped, as hyper's client did.
    for name in [http::header::CONNECTION, http::header::UPGRADE, http::header::TRANSFER_ENCODING] {
        req.headers_mut().remove(name);
    }
    let host = req.headers_mut().remove(http::header::HOST);
    let authority = host.and_then(|h| Authority::try_from(h.as_bytes()).ok());
    let mut parts = std::mem::take(req.uri_mut()).into_parts();
    if let Some(authority) = authority {
        parts.scheme = Some(scheme.clone());
        parts.authority = Some(authority);
    }
    *req.uri_mut() = http::Uri::from_parts(parts).unwrap_or_default();
    *req.version_mut() = http::Version::HTTP_2;
    req
}

/// The name a TLS upstream's certificate must have when none is
/// configured: the address's host (a DNS name or an IP address).
fn server_name_of(a: &Authority) -> rustls::pki_types::ServerName<'static> {
    let host = a.host().trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(host.to_string())
        .unwrap_or_else(|_| rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into()))
}
