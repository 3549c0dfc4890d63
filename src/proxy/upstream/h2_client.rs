//! HTTP/2 to an upstream, on the `h2` crate directly.
//!
//! hyper's HTTP/2 client pipes every request body from a task of its own,
//! and that task waits until the new stream has been opened, with send
//! capacity, before it sends a byte. So a unary gRPC call — a HEADERS
//! frame and one DATA frame, both at hand — went out in two writes, each
//! waking the upstream, and cost a task spawn. Here the body's frames
//! already at hand are queued with the head, so h2 writes them together
//! as the stream opens; a task pipes the rest only when more is to come,
//! waiting for send capacity before each further chunk as hyper does (so a
//! slow upstream holds back the client's body, never buffers it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// hyper's HTTP/2 client's windows and buffer, kept so this client
/// transfers as fast as the one it replaces.
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const CONNECTION_WINDOW: u32 = 5 * 1024 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// The largest response header list accepted (hyper's default).
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Streams opened before the upstream's SETTINGS say how many it takes
/// (hyper's default, the number RFC 9113 recommends as the least).
const INITIAL_MAX_STREAMS: usize = 100;

/// A multiplexed connection's handle: cloned for each request.
#[derive(Clone)]
pub struct Sender {
    send: SendRequest<Bytes>,
    /// Set when the connection has ended (closed, GOAWAY'd and drained, or
    /// broken): no request is sent on it again.
    closed: Arc<AtomicBool>,
}

/// Why a request could not be sent, and the request itself when none of it
/// went out.
pub struct Unsent<B> {
    pub cause: String,
    pub request: Option<http::Request<B>>,
}

impl Sender {
    /// An HTTP/2 connection over `io`, driven on a task of its own.
    pub async fn handshake<IO>(io: IO) -> Result<Self, h2::Error>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (send, connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_header_list_size(MAX_HEADER_LIST)
            .initial_max_send_streams(INITIAL_MAX_STREAMS)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await?;
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
            ended.store(true, Ordering::Release);
        });
        Ok(Sender { send, closed })
    }

    /// Whether new requests may go out on it.
    pub fn is_ready(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Send `req` (absolute-form, without connection-specific headers) and
    /// wait for the response head.
    pub async fn send<B>(&self, req: http::Request<B>) -> Result<http::Response<Recv>, Unsent<B>>
    where
        B: Body<Data = Bytes> + Unpin + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let mut send = match self.send.clone().ready().await {
            Ok(s) => s,
            // The connection is gone (closed, or going away): nothing was
            // sent, and nothing more will be on it.
            Err(e) => {
                self.closed.store(true, Ordering::Release);
                return Err(Unsent { cause: e.to_string(), request: Some(req) });
            }
        };
        let (head, body) = req.into_parts();
        let end = body.is_end_stream();
        let (response, stream) = send
            .send_request(http::Request::from_parts(head, ()), end)
            .map_err(|e| Unsent { cause: e.to_string(), request: None })?;
        let mut abandon = None;
        if !end {
            let mut pipe = Pipe { body, stream, held: None, sent_any: false, abandoned: None };
            // What the body has at hand goes out with the head; the rest
            // from a task of its own, which resets the stream if the
            // request is abandoned (the wait for the answer given up, or the
            // answer dropped before its end: a timeout, a deadline, a
            // client gone, a revocation) rather than keep feeding it.
            if std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut pipe).poll(cx))).await.is_pending() {
                let (tx, rx) = oneshot::channel();
                pipe.abandoned = Some(rx);
                abandon = Some(Abandon(Some(tx)));
                tokio::spawn(pipe);
            }
        }
        let response = response.await.map_err(|e| Unsent { cause: e.to_string(), request: None })?;
        let length = content_length(response.headers());
        Ok(response.map(|stream| Recv { stream, length, data_done: false, done: false, abandon }))
    }
}

/// The declared length of a response body, for its size hint.
fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers.get(http::header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Tells a request's pipe, when dropped armed, that the request was
/// abandoned; disarmed once its response has ended.
struct Abandon(Option<oneshot::Sender<()>>);

impl Abandon {
    fn disarm(mut self) {
        // Dropped unsent: the pipe hears the channel close, not a cancel.
        self.0.take();
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// A request body on its way to an upstream stream.
struct Pipe<B> {
    body: B,
    stream: SendStream<Bytes>,
    /// A chunk waiting for send capacity.
    held: Option<(Bytes, bool)>,
    /// Whether a chunk went out already: the first does at once (h2 holds
    /// it until the stream opens); each later one waits for capacity.
    sent_any: bool,
    /// Resolves with `Ok` if the request was abandoned (see [`Abandon`]).
    abandoned: Option<oneshot::Receiver<()>>,
}

impl<B> Future for Pipe<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let me = &mut *self;
        if let Some(rx) = me.abandoned.as_mut()
            && let Poll::Ready(abandoned) = Pin::new(rx).poll(cx)
        {
            me.abandoned = None;
            if abandoned.is_ok() {
                me.stream.send_reset(h2::Reason::CANCEL);
                return Poll::Ready(());
            }
        }
        loop {
            // The upstream reset the stream: nothing more is wanted.
            if me.stream.poll_reset(cx).is_ready() {
                return Poll::Ready(());
            }
            if let Some((chunk, end)) = me.held.take() {
                while me.stream.capacity() == 0 {
                    match me.stream.poll_capacity(cx) {
                        Poll::Pending => {
                            me.held = Some((chunk, end));
                            return Poll::Pending;
                        }
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(None | Some(Err(_))) => return Poll::Ready(()),
                    }
                }
                if me.stream.send_data(chunk, end).is_err() || end {
                    return Poll::Ready(());
                }
                continue;
            }
            match ready!(Pin::new(&mut me.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(chunk) => {
                        let end = me.body.is_end_stream();
                        if !me.sent_any || chunk.remaining() == 0 {
                            me.sent_any = true;
                            if me.stream.send_data(chunk, end).is_err() || end {
                                return Poll::Ready(());
                            }
                        } else {
                            // A claim on the window only once a chunk is in
                            // hand (hyper's #4003: a speculative one can
                            // starve other streams).
                            me.stream.reserve_capacity(1);
                            me.held = Some((chunk, end));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            me.stream.reserve_capacity(0);
                            let _ = me.stream.send_trailers(trailers);
                            return Poll::Ready(());
                        }
                    }
                },
                Some(Err(e)) => {
                    // The client's body broke (it went away): the upstream is
                    // told the request was cancelled, never that it ended.
                    tracing::debug!(error = %e, "the request body broke; resetting the upstream stream");
                    me.stream.send_reset(h2::Reason::CANCEL);
                    return Poll::Ready(());
                }
                None => {
                    let _ = me.stream.send_data(Bytes::new(), true);
                    return Poll::Ready(());
                }
            }
        }
    }
}

/// An upstream's HTTP/2 response body: its data (each chunk's window given
/// back as it is taken), then its trailers.
pub struct Recv {
    stream: RecvStream,
    /// What is left of its declared length.
    length: Option<u64>,
    data_done: bool,
    done: bool,
    /// The request's pipe's cancel, while it is still piping.
    abandon: Option<Abandon>,
}

impl Recv {
    fn end(&mut self) {
        self.done = true;
        if let Some(a) = self.abandon.take() {
            a.disarm();
        }
    }
}

impl Body for Recv {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if !self.data_done {
            match ready!(self.stream.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    let _ = self.stream.flow_control().release_capacity(chunk.len());
                    self.length = self.length.map(|n| n.saturating_sub(chunk.len() as u64));
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                Some(Err(e)) => {
                    self.end();
                    return Poll::Ready(Some(Err(e)));
                }
                None => self.data_done = true,
            }
        }
        let trailers = ready!(self.stream.poll_trailers(cx));
        self.end();
        match trailers {
            Ok(Some(t)) => Poll::Ready(Some(Ok(Frame::trailers(t)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.stream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
