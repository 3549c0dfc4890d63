//! Accepting downstream connections: HTTP/1.1 with keep-alive, limits on
//! header size and count, a header-read timeout, an idle timeout between
//! requests, upgrades, and graceful shutdown.

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
use tokio::sync::{mpsc, watch};

use super::{ConnInfo, Gateway};
use crate::config::ServerConfig;

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

/// Serve the proxy listener until `shutdown` resolves, then drain.
pub async fn run(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: ServerConfig,
    shutdown: impl std::future::Future<Output = ()>,
) {
    // Shutdown: a watch tells every connection to finish its current request
    // and close; each holds a sender clone, so `recv` returns `None` once
    // all have closed.
    let (closing_tx, closing_rx) = watch::channel(false);
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true)
        .writev(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let info = Arc::new(ConnInfo::new(peer, gateway.trusted_proxies()));
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Tracked { inner: stream, activity: activity.clone() });
        let gw = gateway.clone();
        let act = activity.clone();
        let svc = service_fn(move |req| {
            let gw = gw.clone();
            let info = info.clone();
            let act = act.clone();
            async move {
                act.in_flight.fetch_add(1, Ordering::Relaxed);
                let resp = gw.handle(req, &info).await;
                act.in_flight.fetch_sub(1, Ordering::Relaxed);
                act.touch();
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = builder.serve_connection(io, svc).with_upgrades();
        let idle = limits.idle_timeout;
        let mut closing = closing_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let _alive = alive;
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
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(Duration::from_secs(10), alive_rx.recv()).await.is_err() {
        tracing::warn!("connections still open after 10s; closing");
    }
}
