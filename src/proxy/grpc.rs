//! What the proxy does for a gRPC call: knows it for one (so a refusal is
//! answered in gRPC's terms), reads its deadline (`grpc-timeout`, which
//! shortens the wait for the upstream's answer, never lengthens it past
//! the upstream's `read_timeout`), ends its stream when its token is
//! revoked ([`Watched`]), and reports the `grpc-status` it ended with
//! ([`Call`]: metrics and the audit event, when the call ends).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use http::HeaderMap;
use http::header::{CONTENT_TYPE, HeaderName};

type Receiver = tokio::sync::watch::Receiver<usize>;

pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// Whether a request is a gRPC call (`content-type: application/grpc`,
/// with or without a `+codec`; not gRPC-Web, whose framing differs).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

/// A call's `grpc-timeout`: at most eight digits and a unit (`H`, `M`,
/// `S`, `m`, `u`, `n`). `None` when absent or malformed (a malformed one
/// is no deadline, as gRPC servers read it).
pub fn timeout(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(GRPC_TIMEOUT)?.as_bytes();
    let (digits, unit) = v.split_last().map(|(u, d)| (d, *u))?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The `grpc-status` a response head already tells: its own header (a
/// trailers-only answer), or, for an HTTP status other than 200, what a
/// gRPC client makes of that status. `None`: it comes in the trailers.
pub fn status_of_head(status: http::StatusCode, headers: &HeaderMap) -> Option<u8> {
    if let Some(v) = headers.get(GRPC_STATUS) {
        return Some(parse_status(v.as_bytes()));
    }
    (status != http::StatusCode::OK).then(|| match status.as_u16() {
        // As gRPC's HTTP-to-gRPC status mapping has it.
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    })
}

/// A `grpc-status` value; anything but a code in gRPC's set is UNKNOWN.
fn parse_status(v: &[u8]) -> u8 {
    match v {
        [d @ b'0'..=b'9'] => d - b'0',
        [b'1', d @ b'0'..=b'6'] => 10 + (d - b'0'),
        _ => 2,
    }
}

pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What is reported of a forwarded gRPC call once it ends, with the
/// status it ended with: its count by `grpc-status`, and its audit event.
#[derive(Debug, Default)]
pub struct Call {
    pub counters: Option<crate::metrics::GrpcCounters>,
    pub audit: Option<(std::sync::Arc<crate::audit::Audit>, Box<crate::audit::DecisionEvent>)>,
}

impl Call {
    /// Report the call as ended with `code`.
    pub fn end(self, code: u8) {
        if let Some(c) = &self.counters {
            c.inc(code);
        }
        if let Some((log, mut event)) = self.audit {
            event.grpc_status = Some(code);
            log.record(crate::audit::Event::Decision(event));
        }
    }
}

/// gRPC's codes the gateway ends a call with itself.
const CANCELLED: u8 = 1;
pub const INTERNAL: u8 = 13;
const UNAVAILABLE: u8 = 14;
const UNAUTHENTICATED: u8 = 16;

/// An allowed gRPC call's response, relayed as it comes, and ended in
/// gRPC's terms (trailers with `grpc-status` 16, `revoked`) as soon as its
/// token — or a token it was narrowed from — is revoked: an open stream
/// outlives no revocation. The revocation set says when an id is added;
/// only then is the call's grant looked up in it.
pub struct Watched {
    inner: super::upstream::UpstreamBody,
    watch: Option<Box<Watch>>,
    /// Reported when the call ends: with its trailers' `grpc-status`,
    /// INTERNAL when it ends without one, UNAVAILABLE when the upstream's
    /// stream breaks, CANCELLED when it is dropped first (the client went
    /// away), UNAUTHENTICATED when its token is revoked.
    call: Option<Box<Call>>,
    /// A gRPC call's response to an HTTP/2 client, which trailers reach:
    /// a revocation or a failure of the upstream's ends it with them (else
    /// the response is cut off).
    trailers: bool,
    /// Ended by the gateway (revoked, or its upstream failed): nothing
    /// more is read.
    ended: bool,
}

struct Watch {
    grant: std::sync::Arc<crate::token::Grant>,
    revocations: std::sync::Arc<crate::store::Revocations>,
    /// Resolves when an id is added to the set (`false`: it never will),
    /// handing back the receiver to wait for the next.
    added: Pin<Box<dyn Future<Output = (bool, Receiver)> + Send>>,
}

impl Watched {
    /// `inner` as it is (a REST response, or a call without a token).
    pub fn plain(inner: super::upstream::UpstreamBody, trailers: bool) -> Self {
        Watched { inner, watch: None, call: None, trailers, ended: false }
    }

    /// Report `call` when this response ends.
    pub fn report(&mut self, call: Call) {
        self.call = Some(Box::new(call));
    }

    fn end(&mut self, code: u8) {
        if let Some(call) = self.call.take() {
            call.end(code);
        }
    }

    /// `inner`, ended once `grant` is revoked.
    pub fn revocable(
        inner: super::upstream::UpstreamBody,
        grant: std::sync::Arc<crate::token::Grant>,
        revocations: std::sync::Arc<crate::store::Revocations>,
        trailers: bool,
    ) -> Self {
        // Looked at once at the start too: a revocation between the
        // decision and the answer is not missed.
        let rx = revocations.subscribe();
        let added: Pin<Box<dyn Future<Output = (bool, Receiver)> + Send>> = Box::pin(async move { (true, rx) });
        let watch = Some(Box::new(Watch { grant, revocations, added }));
        Watched { inner, watch, call: None, trailers, ended: false }
    }
}

/// Resolves when the revocation set's log grows past what `rx` has seen
/// (an id added since it last looked).
fn next_addition(mut rx: Receiver) -> Pin<Box<dyn Future<Output = (bool, Receiver)> + Send>> {
    Box::pin(async move {
        let more = rx.changed().await.is_ok();
        (more, rx)
    })
}

impl Watch {
    /// Whether the call's token (or an ancestor) has been revoked since it
    /// last looked; once it has, the call is ended.
    fn revoked(&mut self, cx: &mut Context<'_>) -> bool {
        while let Poll::Ready((more, rx)) = self.added.as_mut().poll(cx) {
            if self.revocations.rejects(&self.grant) {
                tracing::info!(token_id = %self.grant.token_id, "ended a gRPC stream: its token was revoked");
                return true;
            }
            if !more {
                // The set is gone: nothing more will be added.
                self.added = Box::pin(std::future::pending());
                break;
            }
            self.added = next_addition(rx);
        }
        false
    }
}

/// The trailers that end a call whose upstream failed mid-stream.
fn failed_trailers(reason: crate::reason::Reason) -> http::HeaderMap {
    let mut t = http::HeaderMap::new();
    t.insert(GRPC_STATUS, http::HeaderValue::from_static("14"));
    t.insert("grpc-message", http::HeaderValue::from_static(reason.code()));
    t
}

/// The trailers that end a call whose token was revoked mid-stream.
fn revoked_trailers() -> http::HeaderMap {
    let mut t = http::HeaderMap::new();
    t.insert(GRPC_STATUS, http::HeaderValue::from_static("16"));
    t.insert("grpc-message", http::HeaderValue::from_static("revoked"));
    t
}

impl Body for Watched {
    type Data = Bytes;
    type Error = super::upstream::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, super::upstream::BodyError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.watch.as_deref_mut().is_some_and(|w| w.revoked(cx)) {
            self.ended = true;
            self.end(UNAUTHENTICATED);
            if !self.trailers {
                // Trailers would not reach this client: cut it off.
                return Poll::Ready(Some(Err("the call's token was revoked".into())));
            }
            return Poll::Ready(Some(Ok(Frame::trailers(revoked_trailers()))));
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if self.call.is_some() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        self.end(trailers.get(GRPC_STATUS).map_or(INTERNAL, |v| parse_status(v.as_bytes())));
                    }
                }
                Poll::Ready(Some(Err(_))) => self.end(UNAVAILABLE),
                Poll::Ready(None) => self.end(INTERNAL),
                Poll::Pending => {}
            }
        }
        match polled {
            // A call whose upstream failed mid-stream is ended in gRPC's
            // terms, with the reason, as a refusal would be: a reset
            // stream tells its client nothing.
            Poll::Ready(Some(Err(e))) if self.trailers => {
                self.ended = true;
                let reason = if e.is::<super::upstream::Stalled>() {
                    crate::reason::Reason::UpstreamTimeout
                } else {
                    crate::reason::Reason::UpstreamUnavailable
                };
                Poll::Ready(Some(Ok(Frame::trailers(failed_trailers(reason)))))
            }
            polled => polled,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Dropped before it ended: the client is gone (or its connection).
        self.end(CANCELLED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn a_grpc_call_is_known_by_its_content_type() {
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/grpc-web+proto", false),
            ("application/grpcx", false),
            ("application/json", false),
            ("", false),
        ] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
            assert_eq!(is_grpc(&h), grpc, "{ct:?}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn a_status_is_read_from_the_head_when_it_is_there() {
        use http::StatusCode;
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(GRPC_STATUS, HeaderValue::from_static(v));
            h
        };
        for (v, code) in [("0", 0), ("7", 7), ("16", 16), ("17", 2), ("99", 2), ("", 2), ("07", 2), ("x", 2)] {
            assert_eq!(status_of_head(StatusCode::OK, &with(v)), Some(code), "{v:?}");
        }
        // The header wins over the HTTP status.
        assert_eq!(status_of_head(StatusCode::NOT_FOUND, &with("5")), Some(5));
        // A 200 without one: the status comes in the trailers.
        assert_eq!(status_of_head(StatusCode::OK, &HeaderMap::new()), None);
        for (http, code) in
            [(400, 13), (401, 16), (403, 7), (404, 12), (429, 14), (502, 14), (503, 14), (504, 14), (500, 2)]
        {
            let s = StatusCode::from_u16(http).expect("status");
            assert_eq!(status_of_head(s, &HeaderMap::new()), Some(code), "{http}");
        }
    }

    #[test]
    fn grpc_timeout_is_read_as_the_protocol_writes_it_and_nothing_else() {
        for (v, want) in [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("30S", Some(Duration::from_secs(30))),
            ("250m", Some(Duration::from_millis(250))),
            ("99999999u", Some(Duration::from_micros(99_999_999))),
            ("5n", Some(Duration::from_nanos(5))),
            ("123456789m", None),
            ("m", None),
            ("10", None),
            ("10x", None),
            ("-1S", None),
            ("1.5S", None),
            (" 1S", None),
        ] {
            let mut h = HeaderMap::new();
            h.insert(GRPC_TIMEOUT, HeaderValue::from_static(v));
            assert_eq!(timeout(&h), want, "{v:?}");
        }
    }
}
