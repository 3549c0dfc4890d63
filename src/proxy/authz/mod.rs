//! Decisions for the proxies a team already runs: Envoy's and Istio's
//! `ext_authz` over gRPC (`envoy.rs`), and over HTTP, nginx's
//! `auth_request` and Traefik's and Caddy's forward auth (`http.rs`), on
//! the `decision` listener.
//!
//! A described request goes through the proxy's own phases 0–6 — the
//! client's rate, [`decide`](super::decide) under the snapshot in force
//! (canonical path, route, credential, cache, revocation, rules, header
//! hygiene), the token's rates — and phase 8 reports it (metrics, log
//! line, audit event). Only phase 7 differs: instead of forwarding, the
//! answer says what the front proxy should do — the denial the proxy
//! would have sent, or, for an allow, the headers the upstream request
//! gets (the identity, the request id) and the client's it loses (the
//! credential, forged identity headers), computed by the very function
//! the proxy forwards with.
//!
//! What the front proxy cannot carry out is refused rather than relaxed:
//! a path the proxy would forward in its canonical form (dot segments) is
//! `ambiguous_path` here, since the front proxy forwards it as sent. A
//! description is believed only from `decision.peers`; anyone else's gets
//! `untrusted_peer`, whatever it describes.

mod envoy;
mod http;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{Either, Full};

use ::http::header::{HeaderMap, HeaderName, HeaderValue};
use ::http::{Method, Request, Response};

use super::{Body, ConnInfo, Decision, Gateway, Outcome, Verdict, grpc};
use crate::config::CredentialSource;
use crate::reason::Reason;
use crate::runtime::Snapshot;
use crate::{respond, server};

/// The reason code of every denial, for the front proxy's logs (and
/// nginx's `auth_request_set`).
const REASON: HeaderName = HeaderName::from_static("x-narrowgate-reason");

/// A request as a front proxy describes it.
#[derive(Debug)]
pub struct Described {
    /// Method, target (origin-form) and headers (`Host` included) as the
    /// client sent them to the front proxy, without what described them.
    pub request: Request<()>,
    /// The client, as the front proxy saw it.
    pub client: ConnInfo,
}

/// What the front proxy that asks can carry out, and what it answers for.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    /// It drops the query parameters the answer names (Envoy over gRPC);
    /// without that, a credential in the query is refused.
    pub strips_query: bool,
    /// It removes the headers the answer names and replaces the ones it
    /// sets (Envoy); without that, a request the proxy would forward only
    /// after removing a header (other than the credential in its own
    /// name, which the front proxy's config clears) is refused.
    pub removes_headers: bool,
    /// It sets the request id it describes (Envoy's `x-request-id`); any
    /// other's is the client's word, and a new one is made.
    pub sets_request_id: bool,
}

/// What the gateway says of a described request.
#[derive(Debug)]
pub struct Checked {
    pub reason: Reason,
    /// A denial as the proxy would have answered it (status, headers,
    /// body; never 2xx); 200 and empty for an allow.
    pub response: Response<Full<Bytes>>,
    /// Allowed: every identity header the upstream request may carry,
    /// with this request's value, or `None` (the client's copy goes).
    pub identity: Vec<(HeaderName, Option<HeaderValue>)>,
    /// Allowed: the other headers the upstream request gets (replacing
    /// the client's), and the client's it loses.
    pub set: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
    /// Allowed: the query parameters it loses (a credential in the query).
    pub remove_query: Vec<String>,
}

impl Checked {
    /// Whether the front proxy forwards it (allowed, public or shadowed).
    pub fn allowed(&self) -> bool {
        self.reason.is_allow()
    }
}

/// A description that does not hold together: refused for `reason`
/// (`bad_request`, `untrusted_peer`), its method if it was readable.
#[derive(Debug)]
pub struct Undescribed {
    pub reason: Reason,
    pub method: Option<Method>,
}

impl Undescribed {
    fn bad(method: Option<Method>) -> Self {
        Undescribed { reason: Reason::BadRequest, method }
    }
}

impl Gateway {
    /// Serve decisions on `listener` until `stop` resolves: gRPC (Envoy's
    /// `Check`) and HTTP on the same port, HTTP/2 by prior knowledge
    /// whatever `server.http2` says (Envoy's gRPC client speaks nothing
    /// else), plaintext.
    pub async fn serve_decisions(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        drain: server::Drain,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let runtime = self.runtime.clone();
        let limits = move || {
            let mut l = server::Limits::from(&runtime.snapshot().server);
            (l.http2.enabled, l.http2.cleartext) = (true, true);
            l
        };
        let check = envoy::service(self.clone());
        let handler = move |req: Request<hyper::body::Incoming>, info: Arc<ConnInfo>| {
            let (gw, check) = (self.clone(), check.clone());
            Box::pin(async move {
                if envoy::is_check(&req) {
                    envoy::call(&gw, check, req, info).await
                } else {
                    http::answer(&gw, req, &info).await.map(Either::Right)
                }
            })
        };
        server::serve(listener, || None, limits, handler, drain, stop).await;
    }

    /// Decide the request `describe` reads from what `peer` sent — only if
    /// `peer` is one of `decision.peers` — as the proxy would decide it,
    /// and report it like one.
    pub async fn check(
        &self,
        peer: &ConnInfo,
        caller: Caller,
        describe: impl FnOnce(&Snapshot) -> Result<Described, Undescribed>,
    ) -> Checked {
        let snap = self.runtime.snapshot();
        let start = Instant::now();
        let described = if snap.is_decision_peer(peer.peer) {
            describe(&snap)
        } else {
            Err(Undescribed { reason: Reason::UntrustedPeer, method: None })
        };
        let (request, client, mut decision) = match described {
            Err(Undescribed { reason, method }) => {
                let request = Request::builder().method(method.unwrap_or(Method::GET)).body(()).unwrap_or_default();
                (request, peer.clone(), Decision::deny(reason))
            }
            Ok(Described { mut request, client }) => {
                if let Some(cert) = &client.client {
                    request.extensions_mut().insert(cert.clone());
                }
                let mut decision = self.decide_admitted(&snap, &client, &request).await;
                let unforwardable = if !decision.is_allow() {
                    None
                } else if decision.rewritten_path.is_some() {
                    // The proxy would forward the canonical path; the front
                    // proxy forwards the one it was sent.
                    Some(Reason::AmbiguousPath)
                } else if !caller.strips_query
                    && !snap.forwarding.forward_credential
                    && !credential_params(request.uri().query(), &snap.query_credentials).is_empty()
                {
                    // The front proxy would hand the credential on.
                    Some(Reason::CannotRemove)
                } else {
                    None
                };
                if let Some(reason) = unforwardable {
                    decision.verdict = Verdict::Deny { reason, denial: None, status: None };
                }
                (request, client, decision)
            }
        };
        // Envoy sets (or checks) `x-request-id`; under any other name, the
        // id it describes is the client's.
        let envoys = caller.sets_request_id && snap.forwarding.request_id == "x-request-id";
        let request_id = self.request_id(&snap, request.headers(), envoys);
        // What the upstream request gets and loses, if it is forwarded;
        // refused where the front proxy cannot carry it out.
        let names = identity_names(&snap.forwarding.identity);
        let mut edits = None;
        if decision.is_allow() {
            let mut upstream = request.headers().clone();
            // The front proxy answers for its forwarding headers: it is a
            // peer the description is believed from.
            super::forward::upstream_headers(&snap, &mut upstream, &decision, &client, true, &request_id);
            let (set, remove) = changes(request.headers(), &upstream);
            let other = |n: &HeaderName| !names.contains(n) && !super::headers::is_hop_by_hop(n.as_str());
            let set: Vec<_> = set.into_iter().filter(|(n, _)| other(n)).collect();
            let remove: Vec<_> = remove.into_iter().filter(other).collect();
            let own_credential = |n: &HeaderName| {
                *n == ::http::header::AUTHORIZATION
                    || snap.auth.credentials().iter().any(|c| matches!(c, CredentialSource::Header(h) if h == n))
            };
            // A cookie rewritten (the credential among others), or a header
            // removed that is not the credential in its own name (an
            // identity's or a credential's other spelling).
            let unremovable =
                set.iter().any(|(n, _)| *n == ::http::header::COOKIE) || remove.iter().any(|n| !own_credential(n));
            if unremovable && !caller.removes_headers {
                decision.verdict = Verdict::Deny { reason: Reason::CannotRemove, denial: None, status: None };
            } else {
                let identity = names.iter().map(|n| (n.clone(), upstream.get(n).cloned())).collect();
                edits = Some((identity, set, remove));
            }
        }
        // A denial is the REST answer, whatever the request: a gRPC
        // trailers-only refusal is HTTP 200, which every front proxy takes
        // for an allow. (Envoy answers a gRPC client in gRPC's terms
        // itself, from the status.)
        let (reason, mut response) = match &decision.verdict {
            Verdict::Limited(l) => {
                (Reason::RateLimited, crate::ratelimit::response(l, self.runtime.shared().clock.system_time()))
            }
            Verdict::Deny { reason, denial, status } => {
                (*reason, respond::error_response(*reason, denial.as_ref(), *status))
            }
            Verdict::Allow { .. } | Verdict::Shadow { .. } => (decision.reason(), Response::new(Full::default())),
        };
        response.headers_mut().insert(snap.forwarding.request_id.clone(), request_id.clone());
        if !reason.is_allow() {
            response.headers_mut().insert(REASON, HeaderValue::from_static(reason.code()));
        }
        let mut checked = Checked {
            reason,
            response,
            identity: Vec::new(),
            set: Vec::new(),
            remove: Vec::new(),
            remove_query: Vec::new(),
        };
        if let Some((identity, set, remove)) = edits.filter(|_| checked.allowed()) {
            (checked.identity, checked.set, checked.remove) = (identity, set, remove);
            if !snap.forwarding.forward_credential {
                checked.remove_query = credential_params(request.uri().query(), &snap.query_credentials);
            }
        }
        let grpc = grpc::is_grpc(request.headers());
        let outcome = Outcome {
            reason,
            status: checked.response.status(),
            failure: None,
            start,
            request_id,
            method: request.method().clone(),
            // A refusal is counted by the status it answered; an allowed
            // call's status is the upstream's, which the front proxy sees.
            grpc: grpc && !checked.allowed(),
            // The check is a span of a trace of its own, linked to the one
            // the described request names: a front proxy that does not
            // trace passes the client's `traceparent` on, which must not
            // choose the trace or its sampling (`continue_from: any` says
            // otherwise).
            trace: self.runtime.shared().tracing.as_ref().map(|t| t.begin(request.headers(), false)),
            upstream_call: None,
        };
        let mut reported: Response<Body> = checked.response.map(Either::Right);
        self.record(&snap, &decision, &outcome, &client, &mut reported);
        checked.response = reported.map(|b| match b {
            Either::Right(full) => full,
            Either::Left(_) => Full::default(),
        });
        checked
    }
}

/// Every identity header name an upstream request may carry: the token's,
/// the client certificate's, and a shadowed request's would-be denial.
fn identity_names(id: &crate::config::IdentityHeaders) -> [HeaderName; 7] {
    [
        id.subject.clone(),
        id.token_id.clone(),
        id.application.clone(),
        id.roles.clone(),
        id.client_subject.clone(),
        id.client_spiffe.clone(),
        super::headers::WOULD_DENY,
    ]
}

/// What turns `before` into `after`: the names (with every value) that
/// changed or are new, and the names that are gone.
fn changes(before: &HeaderMap, after: &HeaderMap) -> (Vec<(HeaderName, HeaderValue)>, Vec<HeaderName>) {
    let gone = before.keys().filter(|k| !after.contains_key(*k)).cloned().collect();
    let set = after
        .keys()
        .filter(|k| !before.get_all(*k).iter().eq(after.get_all(*k).iter()))
        .flat_map(|k| after.get_all(k).iter().map(move |v| (k.clone(), v.clone())))
        .collect();
    (set, gone)
}

/// The keys of `query` that carry a credential, as spelled there.
fn credential_params(query: Option<&str>, params: &[String]) -> Vec<String> {
    query.map(|q| super::headers::credential_keys(q, params).map(str::to_string).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_name_what_is_new_changed_or_gone() {
        let mut before = HeaderMap::new();
        before.insert("authorization", HeaderValue::from_static("Bearer x"));
        before.insert("x-narrowgate-subject", HeaderValue::from_static("forged"));
        before.insert("accept", HeaderValue::from_static("*/*"));
        before.append("cookie", HeaderValue::from_static("a=1"));
        before.append("cookie", HeaderValue::from_static("t=secret"));
        let mut after = before.clone();
        after.remove("authorization");
        after.insert("x-narrowgate-subject", HeaderValue::from_static("alice"));
        after.insert("cookie", HeaderValue::from_static("a=1"));
        after.insert("x-request-id", HeaderValue::from_static("r1"));
        let (mut set, gone) = changes(&before, &after);
        set.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let set: Vec<_> = set.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap_or("?"))).collect();
        assert_eq!(set, vec![("cookie", "a=1"), ("x-narrowgate-subject", "alice"), ("x-request-id", "r1")]);
        assert_eq!(gone, vec![HeaderName::from_static("authorization")]);
        assert_eq!(changes(&before, &before), (vec![], vec![]), "nothing changed, nothing said");
    }

    #[test]
    fn credential_params_are_named_as_spelled() {
        let params = ["access_token".to_string()];
        assert_eq!(
            credential_params(Some("a=1&access_token=x&%61ccess_token=y"), &params),
            vec!["access_token".to_string(), "%61ccess_token".into()]
        );
        assert!(credential_params(Some("a=1"), &params).is_empty());
        assert!(credential_params(None, &params).is_empty());
        assert!(credential_params(Some("access_token=x"), &[]).is_empty());
    }
}
