//! What the proxy does for a gRPC call: knows it for one (so a refusal is
//! answered in gRPC's terms), reads its deadline (`grpc-timeout`, which
//! shortens the wait for the upstream's answer, never lengthens it past
//! the upstream's `read_timeout`), and ends its stream when its token is
//! revoked ([`Watched`]).

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

/// An allowed gRPC call's response, relayed as it comes, and ended in
/// gRPC's terms (trailers with `grpc-status` 16, `revoked`) as soon as its
/// token — or a token it was narrowed from — is revoked: an open stream
/// outlives no revocation. The revocation set says when an id is added;
/// only then is the call's grant looked up in it.
pub struct Watched {
    inner: super::upstream::UpstreamBody,
    watch: Option<Box<Watch>>,
}

struct Watch {
    grant: std::sync::Arc<crate::token::Grant>,
    revocations: std::sync::Arc<crate::store::Revocations>,
    /// Resolves when an id is added to the set (`false`: it never will),
    /// handing back the receiver to wait for the next.
    added: Pin<Box<dyn Future<Output = (bool, Receiver)> + Send>>,
    ended: bool,
}

impl Watched {
    /// `inner` as it is (a REST response, or a call without a token).
    pub fn plain(inner: super::upstream::UpstreamBody) -> Self {
        Watched { inner, watch: None }
    }

    /// `inner`, ended once `grant` is revoked.
    pub fn revocable(
        inner: super::upstream::UpstreamBody,
        grant: std::sync::Arc<crate::token::Grant>,
        revocations: std::sync::Arc<crate::store::Revocations>,
    ) -> Self {
        // Looked at once at the start too: a revocation between the
        // decision and the answer is not missed.
        let rx = revocations.subscribe();
        let added: Pin<Box<dyn Future<Output = (bool, Receiver)> + Send>> = Box::pin(async move { (true, rx) });
        Watched { inner, watch: Some(Box::new(Watch { grant, revocations, added, ended: false })) }
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

/// The trailers that end a call whose token was revoked mid-stream.
fn revoked_trailers() -> http::HeaderMap {
    let mut t = http::HeaderMap::new();
    t.insert("grpc-status", http::HeaderValue::from_static("16"));
    t.insert("grpc-message", http::HeaderValue::from_static("revoked"));
    t
}

impl Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(w) = self.watch.as_deref_mut() {
            if w.ended {
                return Poll::Ready(None);
            }
            while let Poll::Ready((more, rx)) = w.added.as_mut().poll(cx) {
                if w.revocations.rejects(&w.grant) {
                    w.ended = true;
                    tracing::info!(token_id = %w.grant.token_id, "ended a gRPC stream: its token was revoked");
                    return Poll::Ready(Some(Ok(Frame::trailers(revoked_trailers()))));
                }
                if !more {
                    // The set is gone: nothing more will be added.
                    w.added = Box::pin(std::future::pending());
                    break;
                }
                w.added = next_addition(rx);
            }
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.watch.as_ref().is_some_and(|w| w.ended) || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
