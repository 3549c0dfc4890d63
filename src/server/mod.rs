//! The one HTTP server loop every listener runs — proxy, api, admin and
//! the admission webhook: accept (optionally TLS), HTTP/1.1 with
//! keep-alive or HTTP/2 (`http2`: by ALPN, or by its preface where h2c is
//! on), limits on header size and count, a header-read timeout (which
//! also bounds a TLS handshake), an idle timeout between requests,
//! upgrades (and the tunnels they open), and the drain: stop accepting,
//! close keep-alive connections after their current request, let requests
//! and tunnels finish within a grace period.

mod http2;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use http::header::HeaderValue;
use http::{Request, Response};
use hyper::body::Incoming;
use std::net::{IpAddr, SocketAddr};
use tokio_rustls::TlsAcceptor;

use crate::tls::PeerIdentity;

use crate::config::ServerConfig;

/// Per-connection facts, computed once per connection (after the TLS
/// handshake, when there is one).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: IpAddr,
    peer_value: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate the handshake verified, if any.
    pub client: Option<Arc<PeerIdentity>>,
}

impl ConnInfo {
    /// A plaintext connection from `peer`.
    pub fn new(peer: SocketAddr) -> Self {
        let ip = peer.ip().to_canonical();
        let peer_value = HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo { peer: ip, peer_value, tls: false, client: None }
    }

    /// A TLS connection from `peer`, with the client certificate it
    /// presented (verified by the handshake).
    pub fn over_tls(peer: SocketAddr, client: Option<PeerIdentity>) -> Self {
        ConnInfo { tls: true, client: client.map(Arc::new), ..ConnInfo::new(peer) }
    }

    /// The peer's address as a header value (`X-Forwarded-For`).
    pub fn peer_value(&self) -> &HeaderValue {
        &self.peer_value
    }

    /// `X-Forwarded-Proto`'s value.
    pub fn proto_value(&self) -> HeaderValue {
        HeaderValue::from_static(if self.tls { "https" } else { "http" })
    }
}

/// A listener's limits, read when a connection is accepted (so a reload
/// applies to the connections that follow it) and when the drain begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Bounds the TLS handshake and each request's header section.
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// How long the drain waits for requests and tunnels in flight.
    pub shutdown_grace: Duration,
    pub http2: crate::config::Http2,
}

impl From<&ServerConfig> for Limits {
    fn from(c: &ServerConfig) -> Self {
        Limits {
            header_read_timeout: c.header_read_timeout,
            idle_timeout: c.idle_timeout,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
            shutdown_grace: c.shutdown_grace,
            http2: c.http2,
        }
    }
}

/// Whether a connection moved bytes, and how many requests are in flight.
/// A counter, not a clock: reading the time on every read and write costs
/// more than the whole idle check.
#[derive(Default)]
struct Activity {
    ticks: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        // One writer (the connection's task): a plain load and store.
        self.ticks.store(self.ticks.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// A request in flight on a connection, from its head until its
/// response's body has ended (or it is dropped): the idle timer leaves a
/// connection with one open, however quiet a long response is.
struct Busy(Arc<Activity>);

impl Busy {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request [`Busy`] until it ends.
struct Counted<B> {
    inner: B,
    _busy: Busy,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A stream that records activity on every read and write.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl Tracked {
    fn touch(&self) {
        self.activity.touch();
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Resolves when the connection has had no request in flight and moved no
/// bytes for `idle` (checked in quarters, so it closes within 1.25 × idle).
async fn idle_watch(activity: Arc<Activity>, idle: Duration) {
    const SLICES: u32 = 4;
    let slice = (idle / SLICES).max(Duration::from_millis(5));
    let mut quiet = 0;
    let mut seen = activity.ticks.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(slice).await;
        let now = activity.ticks.load(Ordering::Relaxed);
        if now == seen && activity.in_flight.load(Ordering::Relaxed) == 0 {
            quiet += 1;
            if quiet >= SLICES {
                return;
            }
        } else {
            quiet = 0;
            seen = now;
        }
    }
}

/// Work in flight that a drain waits for: a count, and a wake-up when it
/// reaches zero. Cloned into every connection and tunnel.
#[derive(Clone, Debug, Default)]
pub struct InFlight {
    count: Arc<AtomicUsize>,
    idle: Arc<tokio::sync::Notify>,
}

/// One unit of work in flight, until dropped.
#[derive(Debug)]
pub struct InFlightGuard(InFlight);

impl InFlight {
    pub fn enter(&self) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::AcqRel);
        InFlightGuard(self.clone())
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once nothing is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Relay bytes between the two upgraded connections until either closes
/// or `cut` resolves; counted in flight (for the drain) until then.
pub async fn tunnel(
    down: hyper::upgrade::OnUpgrade,
    up: hyper::upgrade::OnUpgrade,
    _in_flight: InFlightGuard,
    cut: impl std::future::Future<Output = ()>,
) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut down, &mut up) => {
            if let Err(e) = copied {
                tracing::debug!(error = %e, "tunnel closed");
            }
        }
        _ = cut => tracing::debug!("tunnel closed at the end of the shutdown grace period"),
    }
}

/// What a drain waits for besides connections, and how it ends them: the
/// WebSocket tunnels a listener opened, and the signal that closes every
/// connection and tunnel still open when the grace period is over.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    /// The listener's open connections.
    pub connections: InFlight,
    pub tunnels: InFlight,
    /// TLS handshakes that failed or timed out on the listener, ever.
    pub handshake_failures: Arc<AtomicU64>,
    cut: Arc<watch::Sender<bool>>,
}

impl Drain {
    /// Close every connection and tunnel still open.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Resolves once [`Drain::cut`] is called.
    pub fn on_cut(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.cut.subscribe();
        async move {
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}

/// Serve HTTP/1.1 on `listener` with `handler` until `stop` resolves;
/// then stop accepting, ask every connection to close after its current
/// request (`Connection: close` on that response; idle ones close at once),
/// and wait — at most `limits().shutdown_grace` — for requests and
/// `drain`'s tunnels to finish, then close what is left. With `tls`, each
/// connection first completes a TLS handshake within the header-read
/// timeout. Each connection takes its limits from `limits()` and its TLS
/// settings from `tls()` (`None`: plaintext) when it is accepted, so a
/// reload (a new certificate) applies to the connections that follow it
/// and never ends one already open.
pub async fn serve(
    listener: TcpListener,
    tls: impl Fn() -> Option<Arc<rustls::ServerConfig>>,
    limits: impl Fn() -> Limits,
    handler: impl Handler,
    drain: Drain,
    stop: impl std::future::Future<Output = ()>,
) {
    let (closing_tx, closing_rx) = watch::channel(false);
    let connections = drain.connections.clone();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            limits: limits(),
            peer,
            closing: closing_rx.clone(),
            _alive: connections.enter(),
            handshake_failures: drain.handshake_failures.clone(),
        };
        let (handler, cut, tls) = (handler.clone(), drain.on_cut(), tls().map(TlsAcceptor::from));
        tokio::spawn(async move {
            // Past the grace period the connection is dropped, closing it.
            tokio::select! {
                _ = connection.run(stream, tls, handler) => {}
                _ = cut => {}
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let grace = limits().shutdown_grace;
    let drained = async {
        connections.idle().await;
        drain.tunnels.idle().await;
    };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            connections = connections.len(),
            tunnels = drain.tunnels.len(),
            "requests still in flight after the shutdown grace period; closing them"
        );
        drain.cut();
    }
}

/// Serve an axum app (the api, admin or webhook listener) like the proxy:
/// the same limits, timeouts and drain. Handlers find the client's address
/// as `ConnectInfo<IpAddr>`.
pub async fn serve_router(
    listener: TcpListener,
    tls: impl Fn() -> Option<Arc<rustls::ServerConfig>>,
    limits: impl Fn() -> Limits,
    app: axum::Router,
    drain: Drain,
    stop: impl std::future::Future<Output = ()>,
) {
    let service = hyper_util::service::TowerToHyperService::new(app);
    let handler = move |mut req: Request<Incoming>, conn: Arc<ConnInfo>| {
        req.extensions_mut().insert(axum::extract::ConnectInfo(conn.peer));
        if let Some(client) = &conn.client {
            req.extensions_mut().insert(client.clone());
        }
        let call = hyper::service::Service::call(&service, req);
        async move {
            match call.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            }
        }
    };
    serve(listener, tls, limits, handler, drain, stop).await;
}

/// What a listener hands each request to (with its connection's facts):
/// any `Fn(Request, Arc<ConnInfo>) -> impl Future<Output = Response>`
/// that can be shared across connections and tasks.
pub trait Handler: Clone + Send + Sync + 'static {
    type Body: hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>>
        + Send
        + Unpin
        + 'static;
    fn call(
        &self,
        req: Request<Incoming>,
        conn: Arc<ConnInfo>,
    ) -> impl Future<Output = Response<Self::Body>> + Send + 'static;
}

impl<H, F, B> Handler for H
where
    H: Fn(Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body<Data: Send, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + Unpin + 'static,
{
    type Body = B;
    fn call(&self, req: Request<Incoming>, conn: Arc<ConnInfo>) -> impl Future<Output = Response<B>> + Send + 'static {
        self(req, conn)
    }
}

/// One accepted connection: its limits, its peer, the signal to close
/// after the current request, and its place in the drain's count.
struct Connection {
    limits: Limits,
    peer: SocketAddr,
    closing: watch::Receiver<bool>,
    _alive: InFlightGuard,
    handshake_failures: Arc<AtomicU64>,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<TlsAcceptor>, handler: impl Handler) {
        let activity = Arc::new(Activity::default());
        match tls {
            None => {
                let h2 = self.limits.http2.cleartext
                    && http2::opens_with_preface(&stream, self.limits.header_read_timeout).await;
                let info = Arc::new(ConnInfo::new(self.peer));
                let tracked = Tracked { inner: stream, activity: activity.clone() };
                if h2 {
                    self.http2(tracked, info, activity, handler).await
                } else {
                    self.http1(tracked, info, activity, handler).await
                }
            }
            Some(acceptor) => {
                let tracked = Tracked { inner: stream, activity: activity.clone() };
                match tokio::time::timeout(self.limits.header_read_timeout, acceptor.accept(tracked)).await {
                    Ok(Ok(tls)) => {
                        // The verifier has checked the chain; only the leaf is read.
                        let client =
                            tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| PeerIdentity::of(c));
                        let info = Arc::new(ConnInfo::over_tls(self.peer, client));
                        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
                            self.http2(tls, info, activity, handler).await
                        } else {
                            self.http1(tls, info, activity, handler).await
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "TLS handshake failed");
                        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    async fn http1<IO>(mut self, io: IO, info: Arc<ConnInfo>, activity: Arc<Activity>, handler: impl Handler)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.limits;
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .max_headers(limits.max_headers)
            .keep_alive(true)
            .writev(false);
        let act = activity.clone();
        let svc = service_fn(move |req| {
            let (handler, info, act) = (handler.clone(), info.clone(), act.clone());
            async move {
                let busy = Busy::enter(&act);
                let resp = handler.call(req, info).await;
                Ok::<_, Infallible>(resp.map(|body| Counted { inner: body, _busy: busy }))
            }
        });
        let conn = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = idle_watch(activity, limits.idle_timeout) => {
                tracing::debug!("idle connection closed");
                return;
            }
            _ = self.closing.wait_for(|c| *c) => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}
