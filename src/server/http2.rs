//! HTTP/2 on a connection — chosen by ALPN over TLS, or by its preface
//! on a plaintext listener that speaks h2c — served by hyper's HTTP/2
//! server within the listener's bounds. Each stream goes to the same
//! handler as an HTTP/1.1 request, put in the same shape first (an
//! origin-form target and one `Host`), so it is decided exactly like one.
//!
//! What a hostile client can make it do is bounded: the h2 crate refuses
//! connection-specific headers, malformed pseudo-headers and header lists
//! over the limit, and answers a CONTINUATION flood or a burst of streams
//! reset before they were accepted with GOAWAY; here, a connection whose
//! client cancels most of its streams before their answer (the rapid-reset
//! attack, CVE-2023-44487) is closed once it has cancelled
//! `max_cancelled_streams`, so each new batch costs it a new connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Request, Uri};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{Activity, Busy, ConnInfo, Connection, Counted, Handler, idle_watch};

/// The client preface that opens prior-knowledge HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long a closing connection's streams may take to end after GOAWAY.
const CLOSING: Duration = Duration::from_secs(1);

/// Whether the client on `stream` opens with the HTTP/2 preface: peeked,
/// not read, so HTTP/1.1 reads the same bytes when it does not. A client
/// that has not decided within `timeout` is left to HTTP/1.1 (and its
/// header-read timeout).
pub(super) async fn opens_with_preface(stream: &TcpStream, timeout: Duration) -> bool {
    let peek = async {
        let mut buf = [0u8; PREFACE.len()];
        loop {
            let n = match stream.peek(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            if buf[..n] != PREFACE[..n] {
                return false;
            }
            if n == PREFACE.len() {
                return true;
            }
            // Part of it so far (rare: clients send it in one segment).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(timeout, peek).await.unwrap_or(false)
}

/// An HTTP/2 request in an HTTP/1.1 request's shape: the target in origin
/// form, and `:authority` as the `Host`. A `Host` that names another
/// authority is kept beside it: two `Host`s, which the proxy refuses as
/// ambiguous (RFC 9113 §8.3.1).
fn origin_form<B>(req: &mut Request<B>) {
    let parts = std::mem::take(req.uri_mut()).into_parts();
    if let Some(authority) = &parts.authority {
        let same =
            req.headers().get(header::HOST).map(|h| h.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes()));
        if same != Some(true)
            && let Ok(v) = HeaderValue::from_str(authority.as_str())
        {
            req.headers_mut().append(header::HOST, v);
        }
    }
    let mut origin = http::uri::Parts::default();
    origin.path_and_query = parts.path_and_query;
    *req.uri_mut() = Uri::from_parts(origin).unwrap_or_default();
}

/// A connection's streams, and those its client cancelled before their
/// answer; `over` fires once the cancelled are `limit` or more and at
/// least half the streams.
struct Cancels {
    streams: AtomicU32,
    cancelled: AtomicU32,
    limit: u32,
    over: tokio::sync::Notify,
}

/// One stream, counted as cancelled if it ends before its answer's head.
struct Stream {
    cancels: Arc<Cancels>,
    answered: bool,
}

impl Stream {
    fn open(cancels: &Arc<Cancels>) -> Self {
        cancels.streams.fetch_add(1, Ordering::Relaxed);
        Stream { cancels: cancels.clone(), answered: false }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let c = &self.cancels;
        let cancelled = c.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        if cancelled >= c.limit && u64::from(cancelled) * 2 >= u64::from(c.streams.load(Ordering::Relaxed)) {
            c.over.notify_one();
        }
    }
}

impl Connection {
    /// Serve HTTP/2 on `io` until the client goes, the connection idles,
    /// the drain asks it to close (GOAWAY, then its streams may finish), or
    /// its client cancels too many streams (GOAWAY, and it is closed).
    pub(super) async fn http2<IO>(self, io: IO, info: Arc<ConnInfo>, activity: Arc<Activity>, handler: impl Handler)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.limits;
        let cancels = Arc::new(Cancels {
            streams: AtomicU32::new(0),
            cancelled: AtomicU32::new(0),
            limit: limits.http2.max_cancelled_streams,
            over: tokio::sync::Notify::new(),
        });
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2.max_concurrent_streams)
            .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
            // Streams reset before the server accepted them, and streams
            // the server had to reset for a protocol error: past these,
            // GOAWAY (ENHANCE_YOUR_CALM).
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(64);
        let (act, c) = (activity.clone(), cancels.clone());
        let svc = service_fn(move |mut req: Request<Incoming>| {
            let (handler, info) = (handler.clone(), info.clone());
            let (stream, busy) = (Stream::open(&c), Busy::enter(&act));
            async move {
                // Moved in whole: it ends (and counts) with this future.
                let mut stream = stream;
                origin_form(&mut req);
                let resp = handler.call(req, info).await;
                stream.answered = true;
                Ok::<_, Infallible>(resp.map(|body| Counted { inner: body, _busy: busy }))
            }
        });
        let conn = builder.serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        let closing = self.closing.clone();
        let too_many_cancelled = tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                }
                return;
            }
            _ = idle_watch(activity, limits.idle_timeout) => {
                tracing::debug!("idle HTTP/2 connection closed");
                return;
            }
            _ = cancels.over.notified() => true,
            _ = async move {
                let mut closing = closing;
                let _ = closing.wait_for(|c| *c).await;
            } => false,
        };
        conn.as_mut().graceful_shutdown();
        if too_many_cancelled {
            tracing::info!(peer = %self.peer, cancelled = cancels.cancelled.load(Ordering::Relaxed),
                "closed an HTTP/2 connection whose client cancels most of its streams");
            let _ = tokio::time::timeout(CLOSING, conn).await;
            return;
        }
        let _ = conn.await;
    }
}

#[cfg(test)]
mod tests {
    use super::origin_form;

    fn shaped(uri: &str, hosts: &[&str]) -> (String, Vec<String>) {
        let mut b = Request::builder().uri(uri).version(http::Version::HTTP_2);
        for h in hosts {
            b = b.header("host", *h);
        }
        let mut req = b.body(()).expect("request");
        origin_form(&mut req);
        let hosts = req.headers().get_all("host").iter().map(|v| v.to_str().unwrap_or("?").to_string()).collect();
        (req.uri().to_string(), hosts)
    }

    use http::Request;

    #[test]
    fn a_stream_takes_an_http1_requests_shape() {
        // :authority becomes the Host.
        assert_eq!(shaped("https://api.test/a/b?c=d", &[]), ("/a/b?c=d".into(), vec!["api.test".into()]));
        // The same authority in Host too (in any case): one Host.
        assert_eq!(shaped("https://api.test:8443/a", &["API.test:8443"]), ("/a".into(), vec!["API.test:8443".into()]));
        // Another one: both, which the decision refuses as ambiguous.
        assert_eq!(
            shaped("https://api.test/a", &["other.test"]),
            ("/a".into(), vec!["other.test".into(), "api.test".into()])
        );
        // No :authority: the Host, as over HTTP/1.1.
        assert_eq!(shaped("/a", &["api.test"]), ("/a".into(), vec!["api.test".into()]));
    }
}
