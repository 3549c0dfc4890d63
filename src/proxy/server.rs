//! Accepting downstream connections: HTTP/1.1 with keep-alive, limits on
//! header size and count, a header-read timeout, an idle timeout between
//! requests, upgrades (and the tunnels they open), and the drain: stop
//! accepting, close keep-alive connections after their current request,
//! let requests and tunnels finish within a grace period.

use std::convert::Infallible;
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

use http::{Request, Response};
use hyper::body::Incoming;

use super::{ConnInfo, Gateway};

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
/// and wait — at most the snapshot's `shutdown_grace` — for requests and
/// `drain`'s tunnels to finish, then close what is left. Each connection
/// takes its limits (header size, count and read timeout, idle timeout)
/// from the snapshot in force when it is accepted. Every listener — proxy,
/// api, admin — is served so.
pub async fn serve<H, F, B>(
    listener: TcpListener,
    runtime: Arc<crate::runtime::Runtime>,
    handler: H,
    drain: Drain,
    stop: impl std::future::Future<Output = ()>,
) where
    H: Fn(Request<Incoming>, Arc<ConnInfo>) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
        let limits = runtime.snapshot().server.clone();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes)
            .max_headers(limits.max_headers)
            .keep_alive(true)
            .writev(false);
        let info = Arc::new(ConnInfo::new(peer));
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
        let act = activity.clone();
        let handler = handler.clone();
        let svc = service_fn(move |req| {
            let (handler, info, act) = (handler.clone(), info.clone(), act.clone());
            async move {
                act.in_flight.fetch_add(1, Ordering::Relaxed);
                let resp = handler(req, info).await;
                act.in_flight.fetch_sub(1, Ordering::Relaxed);
                act.touch();
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = builder.serve_connection(io, svc).with_upgrades();
        let idle = limits.idle_timeout;
        let mut closing = closing_rx.clone();
        let alive = connections.enter();
        let cut = drain.on_cut();
        tokio::spawn(async move {
            let _alive = alive;
            let served = async move {
                tokio::pin!(conn);
                tokio::select! {
                    res = conn.as_mut() => {
                        if let Err(e) = res {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    _ = idle_watch(activity, idle) => {
                        tracing::debug!("idle connection closed");
                        return;
                    }
                    _ = closing.wait_for(|c| *c) => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            };
            // Past the grace period the connection is dropped, closing it.
            tokio::select! {
                _ = served => {}
                _ = cut => {}
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let grace = runtime.snapshot().server.shutdown_grace;
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

/// Serve the proxy listener with `gateway` until `stop` resolves, then drain.
pub async fn run(listener: TcpListener, gateway: Arc<Gateway>, stop: impl std::future::Future<Output = ()>) {
    let (runtime, drain) = (gateway.runtime().clone(), gateway.drain().clone());
    let handler = move |req, info: Arc<ConnInfo>| {
        let gw = gateway.clone();
        async move { gw.handle(req, &info).await }
    };
    serve(listener, runtime, handler, drain, stop).await;
}
