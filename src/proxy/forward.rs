//! Phase 7: forward an allowed (or shadowed) request with header hygiene
//! — the client's headers stripped by the header policy, `Forwarded`
//! facts set, the identity (or, shadowed, the would-be denial) added —
//! and relay the response, or the WebSocket tunnel a handshake opens.

use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::Either;
use hyper::body::Incoming;

use super::grpc::Watched;
use super::upstream::UpstreamFailure;
use super::{Body, ConnInfo, Decision, Facts, Gateway, Verdict, headers};
use crate::metrics::UpstreamError;
use crate::policy::Allowed;
use crate::runtime::Snapshot;
use crate::server;

impl Gateway {
    /// Forward an allowed request and relay the response.
    pub(super) async fn forward(
        &self,
        snap: &Snapshot,
        mut req: Request<Incoming>,
        decision: &Decision,
        conn: &ConnInfo,
        facts: &mut Facts,
    ) -> Result<Response<Body>, UpstreamFailure> {
        let Facts { trusted, ref request_id, grpc, .. } = *facts;
        // Only an HTTP/2 client can be sent trailers that end a failed call
        // (HTTP/1.1 would drop them and end the body cleanly).
        let trailers_reach = grpc && req.version() == http::Version::HTTP_2;
        *req.uri_mut() = upstream_uri(snap, req.uri(), decision)
            .map_err(|_| UpstreamFailure::unnamed(UpstreamError::Other, "the upstream URI could not be built"))?;
        let host = req.headers().get(header::HOST).cloned();
        // `TE: trailers` (gRPC's) is hop-by-hop, stripped below; an HTTP/2
        // upstream is told it again.
        let te_trailers = req.headers().get(header::TE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        let h = req.headers_mut();
        upstream_headers(snap, h, decision, conn, trusted, request_id);
        set_forwarded(h, conn, trusted, host);
        // Its trace goes on below the gateway's span of the upstream call.
        let call_span = facts.trace.as_ref().map(|t| {
            let span = t.next_span();
            h.insert(crate::trace::TRACEPARENT, t.traceparent(span));
            match &t.state {
                Some(state) => h.insert(crate::trace::TRACESTATE, state.clone()),
                None => h.remove(crate::trace::TRACESTATE),
            };
            span
        });
        // What a genuine answer to this WebSocket handshake carries.
        let expected_accept = decision
            .upgrade
            .then(|| req.headers().get("sec-websocket-key").map(|k| headers::websocket_accept(k.as_bytes())));
        let downstream_upgrade = decision.upgrade.then(|| hyper::upgrade::on(&mut req));

        // The route's upstream (a forwarded request always has a route),
        // by name: the pools may be a newer reload's, in another order.
        let which = decision.route.and_then(|r| snap.route_upstream.get(r)).copied().unwrap_or(0);
        let wanted = snap.upstreams.get(which).map_or(crate::config::DEFAULT_UPSTREAM, |u| &*u.name);
        let pools = self.upstreams(snap);
        let pool = match pools.get(which).filter(|p| p.name() == wanted) {
            Some(p) => p,
            None => pools.iter().find(|p| p.name() == wanted).ok_or_else(|| {
                UpstreamFailure::unnamed(UpstreamError::Other, "the route's upstream was removed by a reload")
            })?,
        };
        if te_trailers && pool.protocol() == crate::config::Protocol::Http2 {
            req.headers_mut().insert(header::TE, HeaderValue::from_static("trailers"));
        }
        // A gRPC call's deadline shortens the wait for the answer's head.
        let wait = if grpc { super::grpc::timeout(req.headers()) } else { None };
        let from = std::time::Instant::now();
        let sent = pool.send(req, wait).await;
        if let Some(span) = call_span.filter(|_| facts.trace.as_ref().is_some_and(|t| t.sampled)) {
            let to = std::time::Instant::now();
            facts.upstream_call = Some(super::UpstreamCall { span, from, to, upstream: wanted.into() });
        }
        let mut resp = sent?;
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            // Only a 101 that answers the client's WebSocket handshake is
            // relayed; an upstream switching to anything else (or unasked)
            // would open a tunnel nothing enforces. Dropping the response
            // closes that upstream connection.
            let answers =
                matches!(&expected_accept, Some(Some(accept)) if headers::answers_websocket(resp.headers(), accept));
            let Some(down) = downstream_upgrade.filter(|_| answers) else {
                return Err(UpstreamFailure::unnamed(
                    UpstreamError::Other,
                    "the upstream switched protocols without answering the WebSocket handshake",
                ));
            };
            headers::strip_response(resp.headers_mut(), true);
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(server::tunnel(down, up, self.drain.tunnels.enter(), self.drain.on_cut()));
        } else {
            headers::strip_response(resp.headers_mut(), false);
        }
        // A gRPC call made with a token is ended when the token is revoked.
        let grant = decision.grant.as_ref().filter(|_| grpc);
        Ok(resp.map(|body| {
            Either::Left(match grant {
                Some(g) => Watched::revocable(body, g.clone(), snap.auth.revocations().clone(), trailers_reach),
                None => Watched::plain(body, trailers_reach),
            })
        }))
    }
}

/// The request's headers as its upstream gets them: the client's stripped
/// by the header policy (`trusted`: the peer's forwarding headers kept),
/// the request id, and the identity — the client certificate's and the
/// token's — or, shadowed, only the reason it would be denied for. (The
/// `Forwarded` facts are the proxy's own: `set_forwarded`.)
pub(super) fn upstream_headers(
    snap: &Snapshot,
    h: &mut http::HeaderMap,
    decision: &Decision,
    conn: &ConnInfo,
    trusted: bool,
    request_id: &HeaderValue,
) {
    snap.headers.strip_inbound(
        h,
        &decision.headers,
        &snap.forwarding,
        snap.auth.credentials(),
        trusted,
        decision.upgrade,
    );
    h.insert(snap.forwarding.request_id.clone(), request_id.clone());
    if let Some(client) = conn.client.as_deref().filter(|_| decision.would_deny().is_none()) {
        // The verified client certificate (mTLS), whatever the token.
        let id = &snap.forwarding.identity;
        if let Some(v) = &client.subject_header {
            h.insert(id.client_subject.clone(), v.clone());
        }
        if let Some(v) = &client.spiffe_header {
            h.insert(id.client_spiffe.clone(), v.clone());
        }
    }
    if let Some(would) = decision.would_deny() {
        // Shadowed: the rules deny it, so it carries no identity an
        // upstream could take for an authenticated caller, only the
        // reason it would have been refused for.
        h.insert(headers::WOULD_DENY, HeaderValue::from_static(would.code()));
    } else if let Some(grant) = &decision.grant {
        let id = &snap.forwarding.identity;
        h.insert(id.subject.clone(), grant.headers.subject.clone());
        h.insert(id.token_id.clone(), grant.headers.token_id.clone());
        // The roles of the rule that allowed it (none when tenant
        // permissions did).
        if let Verdict::Allow { by: Some(Allowed::Rule(i)), .. } = decision.verdict
            && let Some(v) = grant.headers.rule_roles.get(i)
        {
            h.insert(id.roles.clone(), v.clone());
        }
        if let Some(app) = decision.app.and_then(|a| snap.apps.get(a)) {
            h.insert(id.application.clone(), app.header.clone());
        }
    }
}

/// `<canonical path>?<query without the credential>`.
fn upstream_uri(snap: &Snapshot, uri: &Uri, decision: &Decision) -> Result<Uri, http::Error> {
    let query = uri.query();
    let stripped_query = match query {
        Some(q) if !snap.query_credentials.is_empty() && !snap.forwarding.forward_credential => {
            headers::strip_query_param(q, &snap.query_credentials)
        }
        _ => None,
    };
    let pq = if decision.rewritten_path.is_none() && stripped_query.is_none() {
        // The common case: reuse the request's bytes.
        uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"))
    } else {
        let path = decision.rewritten_path.as_deref().unwrap_or(uri.path());
        let q = stripped_query.as_deref().or(query).filter(|q| !q.is_empty());
        let s = match q {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        PathAndQuery::try_from(s)?
    };
    // Origin-form: the upstream connection is chosen by the pool.
    Uri::builder().path_and_query(pq).build()
}

/// `X-Forwarded-For/Proto/Host` and `X-Real-IP`: a trusted proxy's values
/// are kept (X-Forwarded-For extended), anyone else's were stripped and are
/// replaced from the connection.
fn set_forwarded(h: &mut http::HeaderMap, conn: &ConnInfo, trusted: bool, host: Option<HeaderValue>) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    const XRI: HeaderName = HeaderName::from_static("x-real-ip");
    let xff = match h.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prev) if trusted => {
            HeaderValue::from_str(&format!("{prev}, {}", conn.peer)).unwrap_or_else(|_| conn.peer_value().clone())
        }
        _ => conn.peer_value().clone(),
    };
    h.insert(XFF, xff);
    // A trusted proxy's X-Real-IP names its client; anyone else's was
    // stripped, and the address is the connection's.
    if !(trusted && h.contains_key(&XRI)) {
        h.insert(XRI, conn.peer_value().clone());
    }
    if !h.contains_key(&XFP) {
        h.insert(XFP, conn.proto_value());
    }
    if !h.contains_key(&XFH)
        && let Some(host) = host
    {
        h.insert(XFH, host);
    }
}
