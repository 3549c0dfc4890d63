//! The data plane: the request path of DESIGN.md §4 as a fixed series of
//! phases. Read top to bottom, [`Gateway::handle`] is the whole flow:
//!
//! 1. **canonicalize** the path once (`canonical`); ambiguous → 400;
//! 2. **route** method + canonical path (`policy::Router`); none → deny;
//! 3. **credential** from the configured sources (`credential`);
//! 4. **verify** → grant, through the cache (`token`);
//! 5. **revocation** of the token and its lineage, every request;
//! 6. **evaluate** the grant's rules against the route (`policy`);
//! 7. **forward** with header hygiene (`headers`, `upstream`);
//! 8. **log**: one metrics update and one event per request.
//!
//! Phases 1–6 are [`Gateway::decide`]: synchronous, no I/O, no locks, so
//! nothing is held across an await. Only phase 7 awaits.

pub mod canonical;
pub mod headers;
pub mod respond;
pub mod server;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use crate::auth::Authenticator;
use crate::config::{Config, CredentialSource, Forwarding, Unmatched};
use crate::metrics::{Metrics, UpstreamError};
use crate::policy::{Decision, Denial, Route, Router, evaluate};
use crate::reason::Reason;
use crate::revocation::Revocations;
use crate::token::{Grant, now_unix};

/// Response bodies: the upstream's, streamed, or one of ours.
pub type Body = Either<upstream::UpstreamBody, Full<Bytes>>;

/// Per-connection facts, computed once per connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: IpAddr,
    /// The peer is a configured proxy: its `X-Forwarded-*` are kept.
    pub trusted: bool,
    peer_value: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, trusted_proxies: &[IpNet]) -> Self {
        let ip = peer.ip().to_canonical();
        let peer_value = HeaderValue::from_str(&ip.to_string()).unwrap_or(HeaderValue::from_static("unknown"));
        ConnInfo { peer: ip, trusted: trusted_proxies.iter().any(|n| n.contains(&ip)), peer_value }
    }
}

/// An allowed request: what forwarding needs from the decision phases.
#[derive(Debug)]
pub struct Permit {
    pub reason: Reason,
    pub route: Option<usize>,
    pub app: Option<usize>,
    pub grant: Option<Arc<Grant>>,
    /// Index of the rule that allowed it.
    pub rule: usize,
    /// The canonical path when it differs from the request's.
    pub rewritten_path: Option<String>,
    pub upgrade: bool,
    /// The headers the policy classified, to strip before forwarding.
    pub headers: headers::Scan,
}

/// A refused request.
#[derive(Debug)]
pub struct Deny {
    pub reason: Reason,
    pub denial: Option<Denial>,
    pub app: Option<usize>,
    pub status: Option<StatusCode>,
    pub route: Option<usize>,
}

impl Deny {
    fn new(reason: Reason) -> Self {
        Deny { reason, denial: None, app: None, status: None, route: None }
    }
}

/// Unique request ids: a random per-process prefix and a counter.
#[derive(Debug)]
struct RequestIds {
    prefix: String,
    counter: AtomicU64,
}

impl RequestIds {
    fn next(&self) -> HeaderValue {
        use std::fmt::Write;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut s = String::with_capacity(self.prefix.len() + 17);
        s.push_str(&self.prefix);
        let _ = write!(s, "-{n:x}");
        // Hex digits and '-' only: always a valid header value.
        HeaderValue::from_maybe_shared(Bytes::from(s)).unwrap_or(HeaderValue::from_static("0"))
    }
}

/// The enforcing gateway: everything the request path needs, read-only.
pub struct Gateway {
    routes: Vec<Route>,
    router: Router,
    /// Header value of each application's name, by app index.
    app_values: Vec<HeaderValue>,
    auth: Arc<Authenticator>,
    query_credential: Option<String>,
    forwarding: Forwarding,
    headers: headers::HeaderPolicy,
    trusted_proxies: Vec<IpNet>,
    unmatched: Unmatched,
    enforce: bool,
    upstream: upstream::Upstream,
    metrics: Arc<Metrics>,
    request_ids: RequestIds,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("routes", &self.routes.len())
            .field("enforce", &self.enforce)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    pub fn new(config: Config, metrics: Arc<Metrics>, revocations: Arc<Revocations>) -> Self {
        let auth = Arc::new(Authenticator::from_config(&config, revocations, Default::default(), metrics.clone()));
        Gateway::with_auth(config, metrics, auth)
    }

    /// A gateway sharing its authenticator (and so its cache) with others,
    /// such as the token service.
    pub fn with_auth(config: Config, metrics: Arc<Metrics>, auth: Arc<Authenticator>) -> Self {
        let app_values = config
            .manifest
            .applications
            .iter()
            .map(|a| HeaderValue::from_str(&a.application).unwrap_or(HeaderValue::from_static("invalid")))
            .collect();
        let query_credential = config.credentials.iter().find_map(|c| match c {
            CredentialSource::Query(q) => Some(q.clone()),
            _ => None,
        });
        let prefix = crate::token::keys::random_id(4).unwrap_or_else(|_| "ng".into());
        Gateway {
            headers: headers::HeaderPolicy::new(&config.forwarding, &config.credentials),
            upstream: upstream::Upstream::new(&config.upstream),
            auth,
            routes: config.manifest.routes,
            router: config.router,
            app_values,
            query_credential,
            forwarding: config.forwarding,
            trusted_proxies: config.trusted_proxies,
            unmatched: config.unmatched,
            enforce: config.enforce,
            metrics,
            request_ids: RequestIds { prefix, counter: AtomicU64::new(0) },
        }
    }

    pub fn trusted_proxies(&self) -> &[IpNet] {
        &self.trusted_proxies
    }

    /// Handle one request end to end.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let start = Instant::now();
        let request_id = match req.headers().get(&self.forwarding.request_id) {
            Some(v) if conn.trusted => v.clone(),
            _ => self.request_ids.next(),
        };
        let mut decided = self.decide(&req, now_unix());
        if let Err(deny) = &decided
            && self.auth.wants_refetch(deny.reason)
        {
            // A kid rotated in on an issuer: fetch its keys (rate-limited)
            // and decide once more.
            self.auth.keys().refetch().await;
            decided = self.decide(&req, now_unix());
        }
        let (reason, app, route, mut resp) = match decided {
            Err(deny) => {
                let resp = respond::error_response(deny.reason, deny.denial.as_ref(), deny.status).map(Either::Right);
                (deny.reason, deny.app, deny.route, resp)
            }
            Ok(permit) => {
                let (reason, app, route) = (permit.reason, permit.app, permit.route);
                match self.forward(req, &permit, conn, &request_id).await {
                    Ok(resp) => (reason, app, route, resp),
                    Err(kind) => {
                        self.metrics.upstream_error(kind);
                        let r = if kind == UpstreamError::Timeout {
                            Reason::UpstreamTimeout
                        } else {
                            Reason::UpstreamUnavailable
                        };
                        (r, app, route, respond::error_response(r, None, None).map(Either::Right))
                    }
                }
            }
        };
        resp.headers_mut().insert(self.forwarding.request_id.clone(), request_id.clone());
        self.metrics.observe(reason, app, start.elapsed().as_secs_f64());
        let route = route.and_then(|r| self.routes.get(r)).map_or("-", |r| &*r.template);
        if reason.is_allow() {
            tracing::debug!(reason = reason.code(), route, request_id = ?request_id, "allowed");
        } else if matches!(reason, Reason::UpstreamUnavailable | Reason::UpstreamTimeout) {
            tracing::warn!(reason = reason.code(), route, request_id = ?request_id, "upstream failed");
        } else {
            tracing::info!(reason = reason.code(), route, request_id = ?request_id, status = resp.status().as_u16(), "denied");
        }
        resp
    }

    /// Phases 1–6. Synchronous and free of I/O: callable without sockets.
    pub fn decide<B>(&self, req: &Request<B>, now: u64) -> Result<Permit, Deny> {
        // The request line and Host must be unambiguous before anything else.
        if req.method() == http::Method::CONNECT || req.uri().scheme().is_some() || req.uri().authority().is_some() {
            return Err(Deny::new(Reason::BadRequest));
        }
        if req.headers().get_all(header::HOST).iter().count() != 1 {
            return Err(Deny::new(Reason::BadRequest));
        }
        let scan = self.headers.scan(req.headers());
        if let Some(reason) = scan.refusal {
            return Err(Deny::new(reason));
        }
        // Phase 1: canonicalize.
        let canonical = canonical::canonicalize(req.uri().path()).map_err(|_| Deny::new(Reason::AmbiguousPath))?;
        let rewritten_path = match &canonical {
            std::borrow::Cow::Owned(s) => Some(s.clone()),
            std::borrow::Cow::Borrowed(_) => None,
        };
        // Only a well-formed WebSocket handshake may ask for an upgrade,
        // and only on a `ws` route (checked once the route is known).
        let upgrade = match scan.upgrade_related.then(|| headers::upgrade(req.method(), req.version(), req.headers())) {
            None | Some(Ok(false)) => false,
            Some(Ok(true)) => true,
            Some(Err(headers::UpgradeRefusal::Protocol)) => return Err(Deny::new(Reason::UpgradeNotAllowed)),
            Some(Err(headers::UpgradeRefusal::Handshake)) => return Err(Deny::new(Reason::BadRequest)),
        };
        if !self.enforce {
            return Ok(Permit {
                reason: Reason::NotEnforced,
                route: None,
                app: None,
                grant: None,
                rule: 0,
                rewritten_path,
                upgrade,
                headers: scan,
            });
        }

        // Phase 2: route.
        let Some(found) = self.router.at(&self.routes, req.method(), &canonical) else {
            let mut deny = Deny::new(Reason::NoMatchingRoute);
            if self.unmatched == Unmatched::NotFound {
                deny.status = Some(StatusCode::NOT_FOUND);
            }
            return Err(deny);
        };
        let route = &self.routes[found.route];
        let fail = |reason: Reason, denial: Option<Denial>| Deny {
            reason,
            denial,
            app: Some(route.app_index),
            status: None,
            route: Some(found.route),
        };
        if upgrade && &*route.service != "ws" {
            return Err(fail(Reason::UpgradeNotAllowed, None));
        }
        let resource_id = found.resource_id.map(canonical::decode_segment);
        let Some(facts) = route.facts(resource_id.as_deref()) else {
            // A public route: no token is checked.
            return Ok(Permit {
                reason: Reason::Public,
                route: Some(found.route),
                app: Some(route.app_index),
                grant: None,
                rule: 0,
                rewritten_path,
                upgrade,
                headers: scan,
            });
        };

        // Phases 3–5: credential, verification, revocation.
        let grant = self.auth.authenticate(req.headers(), req.uri().query(), now).map_err(|r| fail(r, None))?;

        // Phase 6: evaluate.
        match evaluate(&grant.rules, &facts) {
            Decision::Allow { rule } => Ok(Permit {
                reason: Reason::Allowed,
                route: Some(found.route),
                app: Some(route.app_index),
                grant: Some(grant),
                rule,
                rewritten_path,
                upgrade,
                headers: scan,
            }),
            Decision::Deny(denial) => {
                // A route acting on a tenant: tenant permissions (Crafter's)
                // may allow it where the access rules do not.
                if let Some(spec) = route.tenant() {
                    let tenant = found.tenant.map(canonical::decode_segment);
                    if tenant.as_deref().is_some_and(|t| crate::policy::tenant::allows(&grant.tenants, t, &spec.action))
                    {
                        return Ok(Permit {
                            reason: Reason::Allowed,
                            route: Some(found.route),
                            app: Some(route.app_index),
                            grant: Some(grant),
                            // No access rule decided: no roles header.
                            rule: usize::MAX,
                            rewritten_path,
                            upgrade,
                            headers: scan,
                        });
                    }
                    if !grant.tenants.is_empty() {
                        return Err(fail(Reason::TenantNotAllowed, None));
                    }
                }
                Err(fail(denial.reason, Some(denial)))
            }
        }
    }

    /// Phase 7: forward an allowed request and relay the response.
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        permit: &Permit,
        conn: &ConnInfo,
        request_id: &HeaderValue,
    ) -> Result<Response<Body>, UpstreamError> {
        *req.uri_mut() = self.upstream_uri(req.uri(), permit).map_err(|_| UpstreamError::Other)?;
        let host = req.headers().get(header::HOST).cloned();
        let h = req.headers_mut();
        self.headers.strip_inbound(
            h,
            &permit.headers,
            &self.forwarding,
            self.auth.credentials(),
            conn.trusted,
            permit.upgrade,
        );
        set_forwarded(h, conn, host);
        h.insert(self.forwarding.request_id.clone(), request_id.clone());
        if let Some(grant) = &permit.grant {
            let id = &self.forwarding.identity;
            h.insert(id.subject.clone(), grant.headers.subject.clone());
            h.insert(id.token_id.clone(), grant.headers.token_id.clone());
            if let Some(v) = grant.headers.rule_roles.get(permit.rule) {
                h.insert(id.roles.clone(), v.clone());
            }
            if let Some(v) = permit.app.and_then(|a| self.app_values.get(a)) {
                h.insert(id.application.clone(), v.clone());
            }
        }
        // What a genuine answer to this WebSocket handshake carries.
        let expected_accept = permit
            .upgrade
            .then(|| req.headers().get("sec-websocket-key").map(|k| headers::websocket_accept(k.as_bytes())));
        let downstream_upgrade = permit.upgrade.then(|| hyper::upgrade::on(&mut req));

        let mut resp = self.upstream.send(req).await?;
        let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            // Only a 101 that answers the client's WebSocket handshake is
            // relayed; an upstream switching to anything else (or unasked)
            // would open a tunnel nothing enforces. Dropping the response
            // closes that upstream connection.
            let answers =
                matches!(&expected_accept, Some(Some(accept)) if headers::answers_websocket(resp.headers(), accept));
            let Some(down) = downstream_upgrade.filter(|_| answers) else {
                return Err(UpstreamError::Other);
            };
            headers::strip_response(resp.headers_mut(), true);
            let up = hyper::upgrade::on(&mut resp);
            tokio::spawn(tunnel(down, up));
        } else {
            headers::strip_response(resp.headers_mut(), false);
        }
        Ok(resp.map(Either::Left))
    }

    /// `<canonical path>?<query without the credential>`.
    fn upstream_uri(&self, uri: &Uri, permit: &Permit) -> Result<Uri, http::Error> {
        let query = uri.query();
        let stripped_query = match (&self.query_credential, query) {
            (Some(param), Some(q)) if !self.forwarding.forward_credential => headers::strip_query_param(q, param),
            _ => None,
        };
        let pq = if permit.rewritten_path.is_none() && stripped_query.is_none() {
            // The common case: reuse the request's bytes.
            uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"))
        } else {
            let path = permit.rewritten_path.as_deref().unwrap_or(uri.path());
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
}

/// `X-Forwarded-For/Proto/Host` and `X-Real-IP`: a trusted proxy's values
/// are kept (X-Forwarded-For extended), anyone else's were stripped and are
/// replaced from the connection.
fn set_forwarded(h: &mut http::HeaderMap, conn: &ConnInfo, host: Option<HeaderValue>) {
    const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    const XRI: HeaderName = HeaderName::from_static("x-real-ip");
    let xff = match h.get(&XFF).and_then(|v| v.to_str().ok()) {
        Some(prev) if conn.trusted => {
            HeaderValue::from_str(&format!("{prev}, {}", conn.peer)).unwrap_or_else(|_| conn.peer_value.clone())
        }
        _ => conn.peer_value.clone(),
    };
    h.insert(XFF, xff);
    // A trusted proxy's X-Real-IP names its client; anyone else's was
    // stripped, and the address is the connection's.
    if !(conn.trusted && h.contains_key(&XRI)) {
        h.insert(XRI, conn.peer_value.clone());
    }
    if !h.contains_key(&XFP) {
        h.insert(XFP, HeaderValue::from_static("http"));
    }
    if !h.contains_key(&XFH)
        && let Some(host) = host
    {
        h.insert(XFH, host);
    }
}

/// Relay bytes between the two upgraded connections until either closes.
async fn tunnel(down: hyper::upgrade::OnUpgrade, up: hyper::upgrade::OnUpgrade) {
    let (down, up) = match tokio::try_join!(down, up) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
    if let Err(e) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        tracing::debug!(error = %e, "tunnel closed");
    }
}
