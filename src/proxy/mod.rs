//! The data plane: the request path of DESIGN.md §4 as a fixed series of
//! phases. Read top to bottom, [`Gateway::handle`] is the whole flow:
//!
//! 1. **canonicalize** the path once (`canonical`); ambiguous → 400;
//! 2. **route** method + canonical path (`policy::Router`); none → deny;
//! 3. **credential** from the configured sources (`credential`);
//! 4. **verify** → grant, through the cache (`token`);
//! 5. **revocation** of the token and its lineage, every request;
//! 6. **evaluate** the grant's rules and tenant permissions against the
//!    route (`policy::evaluate`);
//!
//! — together [`Gateway::decide`], which returns one [`Decision`] —
//! then **enforce** it (forward with header hygiene, `headers` and
//! `upstream`, or answer the denial) and **record** it (one metrics update
//! and one log line, in the request's span).
//!
//! Every request is decided and forwarded under one policy snapshot
//! (`runtime`), loaded once at its start: a reload never splits a request.
//! `decide` is synchronous, free of I/O and locks, so nothing is held
//! across an await. Only forwarding awaits.

pub mod canonical;
pub mod decide;
pub mod headers;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::metrics::{Metrics, UpstreamError};
use crate::policy::Allowed;
use crate::reason::Reason;
use crate::respond;
use crate::runtime::{Runtime, Snapshot};
use crate::server;
pub use crate::server::ConnInfo;
pub use decide::{Decision, Verdict, decide};
use upstream::UpstreamFailure;

/// Response bodies: the upstream's, streamed, or one of ours.
pub type Body = Either<upstream::UpstreamBody, Full<Bytes>>;

/// How a request ended: the reason (an upstream failure replaces an
/// allow), the status sent, why forwarding failed if it did, and when the
/// request began.
#[derive(Debug)]
pub struct Outcome {
    pub reason: Reason,
    pub status: StatusCode,
    pub failure: Option<UpstreamFailure>,
    pub start: Instant,
    pub request_id: HeaderValue,
    pub method: http::Method,
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

/// The enforcing gateway: the runtime's snapshot in force, read per request.
pub struct Gateway {
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    request_ids: RequestIds,
    /// The WebSocket tunnels this gateway opens, which a drain waits for,
    /// and the signal that closes them past the grace period.
    drain: server::Drain,
    /// The upstream connection pool: process state, made for the
    /// snapshot's upstream and made again when a reload changes it.
    upstream: ArcSwap<Pool>,
    /// Held while a changed upstream's pool is made (never across an await).
    remaking: std::sync::Mutex<()>,
    /// The proxy's workers, fixed at start: a reload changes their pools,
    /// never their number.
    workers: usize,
}

/// An upstream pool and the snapshot generation it was made for.
struct Pool {
    generation: u64,
    upstream: Arc<upstream::Upstream>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("runtime", &self.runtime).finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway on a config alone, with its own runtime (benchmarks and
    /// tests; `serve` builds the runtime and shares it).
    pub fn new(
        config: crate::config::Config,
        metrics: Arc<Metrics>,
        revocations: Arc<crate::store::Revocations>,
    ) -> Self {
        let shared = crate::runtime::Shared::new(metrics, revocations, Default::default());
        Gateway::on(Runtime::new(&config, None, shared))
    }

    /// A gateway deciding by `runtime`'s snapshot in force.
    pub fn on(runtime: Arc<Runtime>) -> Self {
        let prefix = crate::token::keys::random_id(4).unwrap_or_else(|_| "ng".into());
        let snap = runtime.snapshot();
        let workers = snap.server.workers();
        let pool = Pool {
            generation: snap.upstream_generation,
            upstream: Arc::new(upstream::Upstream::new(&snap.upstream_config, workers)),
        };
        Gateway {
            upstream: ArcSwap::from_pointee(pool),
            remaking: std::sync::Mutex::default(),
            workers,
            metrics: runtime.shared().metrics.clone(),
            runtime,
            request_ids: RequestIds { prefix, counter: AtomicU64::new(0) },
            drain: server::Drain::default(),
        }
    }

    /// The pool for `snap`'s upstream: the current one, unless a reload
    /// changed the upstream since it was made. A request decided under an
    /// older snapshot uses the newer pool (the reload's upstream).
    fn upstream(&self, snap: &Snapshot) -> Arc<upstream::Upstream> {
        let pool = self.upstream.load();
        if pool.generation >= snap.upstream_generation {
            return pool.upstream.clone();
        }
        // One request makes the new pool; the others wait and take it.
        let _one = self.remaking.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pool = self.upstream.load();
        if pool.generation >= snap.upstream_generation {
            return pool.upstream.clone();
        }
        let upstream = Arc::new(upstream::Upstream::new(&snap.upstream_config, self.workers));
        self.upstream.store(Arc::new(Pool { generation: snap.upstream_generation, upstream: upstream.clone() }));
        upstream
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The tunnels it opened, and how a drain ends them.
    pub fn drain(&self) -> &server::Drain {
        &self.drain
    }

    /// Serve the proxy listener until `stop` resolves, then drain.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()>,
    ) {
        let (runtime, drain) = (self.runtime.clone(), self.drain.clone());
        let limits = move || server::Limits::from(&runtime.snapshot().server);
        let handler = move |req, info: Arc<ConnInfo>| {
            let gw = self.clone();
            async move { gw.handle(req, &info).await }
        };
        server::serve(listener, None, limits, handler, drain, stop).await;
    }

    /// Handle one request end to end, under one snapshot.
    pub async fn handle(&self, req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let snap = self.runtime.snapshot();
        let start = Instant::now();
        let trusted = snap.is_trusted(conn.peer);
        let request_id = match req.headers().get(&snap.forwarding.request_id) {
            Some(v) if trusted => v.clone(),
            _ => self.request_ids.next(),
        };
        let span = tracing::debug_span!("request", request.id = request_id.to_str().unwrap_or("-"));
        async {
            // The client's rate first: a flood costs no token verification.
            let decision = match snap.limits.check_client(conn.peer) {
                Err(l) => Decision::limited(l),
                Ok(()) => {
                    let deciding = Instant::now();
                    let mut d = decide(&snap, &req, snap.auth.now());
                    self.metrics.decided(deciding.elapsed().as_secs_f64());
                    if snap.auth.wants_refetch(d.reason()) {
                        // A kid rotated in on an issuer: fetch its keys
                        // (rate-limited) and decide once more.
                        snap.auth.keys().refetch().await;
                        d = decide(&snap, &req, snap.auth.now());
                    }
                    let token = d.grant.as_deref().map(|g| (&*g.token_id, &*g.subject));
                    match snap.limits.check_request(token, d.app) {
                        Err(l) => d.over_limit(l),
                        Ok(()) => d,
                    }
                }
            };
            if let Verdict::Limited(l) = &decision.verdict {
                self.metrics.rate_limited(l.scope);
            }
            let method = req.method().clone();
            let (reason, mut resp, failure) = self.enforce(&snap, req, &decision, conn, trusted, &request_id).await;
            resp.headers_mut().insert(snap.forwarding.request_id.clone(), request_id.clone());
            let outcome = Outcome { reason, status: resp.status(), failure, start, request_id, method };
            self.record(&snap, &decision, &outcome, conn);
            resp
        }
        .instrument(span)
        .await
    }

    /// Phases 1–6 under the snapshot in force, returned with it (the
    /// decision's route and application are indices into it). Synchronous
    /// and free of I/O: callable without sockets.
    pub fn decide<B>(&self, req: &Request<B>, now: u64) -> (Arc<Snapshot>, Decision) {
        let snap = self.runtime.snapshot();
        let decision = decide(&snap, req, now);
        (snap, decision)
    }

    /// Act on a decision: forward an allowed request (and relay the
    /// response) or answer the denial. The reason the request ends with
    /// (an upstream failure replaces an allow).
    async fn enforce(
        &self,
        snap: &Snapshot,
        req: Request<Incoming>,
        decision: &Decision,
        conn: &ConnInfo,
        trusted: bool,
        request_id: &HeaderValue,
    ) -> (Reason, Response<Body>, Option<UpstreamFailure>) {
        match &decision.verdict {
            Verdict::Limited(l) => {
                let resp = crate::ratelimit::response(l, self.runtime.shared().clock.system_time());
                (Reason::RateLimited, resp.map(Either::Right), None)
            }
            Verdict::Deny { reason, denial, status } => {
                let resp = respond::error_response(*reason, denial.as_ref(), *status).map(Either::Right);
                (*reason, resp, None)
            }
            Verdict::Allow { .. } | Verdict::Shadow { .. } => {
                match self.forward(snap, req, decision, conn, trusted, request_id).await {
                    Ok(resp) => (decision.reason(), resp, None),
                    Err(failure) => {
                        self.metrics.upstream_error(failure.kind);
                        let r = if failure.kind == UpstreamError::Timeout {
                            Reason::UpstreamTimeout
                        } else {
                            Reason::UpstreamUnavailable
                        };
                        (r, respond::error_response(r, None, None).map(Either::Right), Some(failure))
                    }
                }
            }
        }
    }

    /// A decision as an audit event: shared pointers and numbers; the audit
    /// writer makes text of it off the request path.
    fn audit(
        &self,
        snap: &Arc<Snapshot>,
        decision: &Decision,
        outcome: &Outcome,
        conn: &ConnInfo,
        elapsed: std::time::Duration,
    ) {
        let (allowed, denial) = match &decision.verdict {
            Verdict::Allow { by, .. } => (*by, None),
            Verdict::Shadow { denial, .. } | Verdict::Deny { denial, .. } => (None, denial.clone()),
            Verdict::Limited(_) => (None, None),
        };
        let event = crate::audit::DecisionEvent {
            at: self.runtime.shared().clock.system_time(),
            request_id: outcome.request_id.clone(),
            client: conn.peer,
            method: outcome.method.clone(),
            labels: snap.audit_labels.clone(),
            route: decision.route,
            resource_id: decision.resource_id.clone(),
            // A shadowed request is audited with what it would be denied for.
            reason: decision.would_deny().unwrap_or(outcome.reason),
            shadow: decision.would_deny().is_some(),
            allowed,
            denial,
            grant: decision.grant.clone(),
            status: outcome.status.as_u16(),
            forwarded: decision.is_allow() && outcome.failure.is_none(),
            latency_us: elapsed.as_micros() as u64,
        };
        snap.audit_log.record(crate::audit::Event::Decision(Box::new(event)));
    }

    /// Forward an allowed request and relay the response.
    async fn forward(
        &self,
        snap: &Snapshot,
        mut req: Request<Incoming>,
        decision: &Decision,
        conn: &ConnInfo,
        trusted: bool,
        request_id: &HeaderValue,
    ) -> Result<Response<Body>, UpstreamFailure> {
        *req.uri_mut() = upstream_uri(snap, req.uri(), decision)
            .map_err(|_| UpstreamFailure::unnamed(UpstreamError::Other, "the upstream URI could not be built"))?;
        let host = req.headers().get(header::HOST).cloned();
        let h = req.headers_mut();
        snap.headers.strip_inbound(
            h,
            &decision.headers,
            &snap.forwarding,
            snap.auth.credentials(),
            trusted,
            decision.upgrade,
        );
        set_forwarded(h, conn, trusted, host);
        h.insert(snap.forwarding.request_id.clone(), request_id.clone());
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
        // What a genuine answer to this WebSocket handshake carries.
        let expected_accept = decision
            .upgrade
            .then(|| req.headers().get("sec-websocket-key").map(|k| headers::websocket_accept(k.as_bytes())));
        let downstream_upgrade = decision.upgrade.then(|| hyper::upgrade::on(&mut req));

        let mut resp = self.upstream(snap).send(req).await?;
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
        Ok(resp.map(Either::Left))
    }

    /// Report a decision: one metrics update, one log line, and the audit
    /// event when the audit log is on.
    fn record(&self, snap: &Arc<Snapshot>, decision: &Decision, outcome: &Outcome, conn: &ConnInfo) {
        let elapsed = outcome.start.elapsed();
        let Outcome { reason, status, failure, request_id, .. } = outcome;
        let reason = *reason;
        let app = decision.app.and_then(|a| snap.apps.get(a));
        let counters = decision.route.and_then(|r| snap.route_counters.get(r));
        self.metrics.observe(reason, counters, elapsed.as_secs_f64());
        if let Some(would) = decision.would_deny() {
            self.metrics.would_deny(would, app.map_or("none", |a| &*a.name));
        }
        if snap.audit {
            self.audit(snap, decision, outcome, conn, elapsed);
        }
        let route = decision.route.and_then(|r| snap.routes.get(r)).map_or("-", |r| &*r.template);
        let request_id = request_id.to_str().unwrap_or("-");
        if let Some(would) = decision.would_deny() {
            tracing::info!(
                would_deny = would.code(),
                route,
                request_id,
                "shadow: forwarded a request the policy denies"
            );
        } else if reason.is_allow() {
            tracing::debug!(reason = reason.code(), route, rule.id = decision.rule_id(), request_id, "allowed");
        } else if let Some(f) = failure.as_ref() {
            tracing::warn!(
                reason = reason.code(),
                route,
                request_id,
                upstream = f.upstream.as_str(),
                error = f.cause.as_str(),
                "upstream failed"
            );
        } else {
            tracing::info!(reason = reason.code(), route, request_id, status = status.as_u16(), "denied");
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
        h.insert(XFP, HeaderValue::from_static("http"));
    }
    if !h.contains_key(&XFH)
        && let Some(host) = host
    {
        h.insert(XFH, host);
    }
}

#[cfg(test)]
mod tests {
    //! `decide` on the demo config, without sockets: what one value says
    //! about each kind of outcome.
    use super::*;
    use crate::token::now_unix;
    use crate::token::testkit::{TestKey, payload, rule};
    use serde_json::json;

    struct Fixture {
        gateway: Gateway,
        key: TestKey,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = TestKey::es256("demo");
        std::fs::create_dir_all(dir.path().join("keys")).expect("mkdir");
        std::fs::write(dir.path().join("keys/demo.pub.pem"), &key.public).expect("write");
        let config =
            crate::config::Config::from_yaml(include_str!("../../config/demo.yaml"), dir.path()).expect("demo config");
        let registry = prometheus::Registry::new();
        let metrics = Arc::new(Metrics::register(&registry).expect("metrics"));
        let gateway = Gateway::new(config, metrics, Arc::default());
        Fixture { gateway, key, _dir: dir }
    }

    fn request(method: &str, path: &str, token: Option<&str>) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path).header("host", "gateway.test");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(()).expect("request")
    }

    fn route(snap: &Snapshot, d: &Decision) -> Option<String> {
        d.route.map(|r| snap.routes[r].template.to_string())
    }

    fn app(snap: &Snapshot, d: &Decision) -> Option<String> {
        d.app.map(|a| snap.apps[a].name.to_string())
    }

    #[test]
    fn an_allowed_request_carries_its_route_grant_and_rule() {
        let f = fixture();
        let now = now_unix();
        let token = f.key.sign(&payload(
            "alice",
            now,
            3600,
            json!([
                rule("metastats-api", &["reader"], &["account:$USER_ID$:a1"]),
                rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"]),
            ]),
        ));
        let (snap, d) = f.gateway.decide(&request("GET", "/users/current/accounts/a1", Some(&token)), now);
        assert_eq!(d.reason(), Reason::Allowed);
        assert!(matches!(d.verdict, Verdict::Allow { by: Some(Allowed::Rule(1)), .. }), "{:?}", d.verdict);
        assert_eq!(d.rule_id(), Some("trading-account-management-api"));
        assert_eq!(route(&snap, &d).as_deref(), Some("GET /users/current/accounts/{accountId}"));
        assert_eq!(app(&snap, &d).as_deref(), Some("trading-account-management-api"));
        assert_eq!(d.grant.as_ref().map(|g| &*g.subject), Some("alice"));
        assert_eq!((d.rewritten_path, d.upgrade), (None, false));
    }

    #[test]
    fn a_denial_carries_what_was_missing() {
        let f = fixture();
        let now = now_unix();
        let token = f.key.sign(&payload(
            "bob",
            now,
            3600,
            json!([rule("trading-account-management-api", &["reader"], &["account:$USER_ID$:a1"])]),
        ));
        let (snap, d) = f.gateway.decide(&request("DELETE", "/users/current/accounts/a1", Some(&token)), now);
        assert_eq!(d.reason(), Reason::InsufficientRole);
        let Verdict::Deny { denial: Some(denial), status: None, .. } = &d.verdict else { panic!("{:?}", d.verdict) };
        assert_eq!(denial.missing_roles, vec![Box::from("writer")]);
        assert!(d.rule_id().is_none());
        assert_eq!(route(&snap, &d).as_deref(), Some("DELETE /users/current/accounts/{accountId}"));
        assert!(d.grant.is_some(), "the grant that was judged");

        // Another account: the resource, not the role.
        let (_, d) = f.gateway.decide(&request("GET", "/users/current/accounts/a2", Some(&token)), now);
        assert_eq!(d.reason(), Reason::ResourceNotAllowed);
    }

    #[test]
    fn before_a_grant_there_is_none_in_the_decision() {
        let f = fixture();
        let now = now_unix();
        let (_, d) = f.gateway.decide(&request("GET", "/nowhere", None), now);
        assert_eq!((d.reason(), d.route, d.app), (Reason::NoMatchingRoute, None, None));
        assert!(d.grant.is_none() && !d.is_allow());
        let (_, d) = f.gateway.decide(&request("GET", "/users/current/accounts/a1", None), now);
        assert_eq!(d.reason(), Reason::MissingToken);
        assert!(d.grant.is_none() && d.route.is_some());
        let (_, d) = f.gateway.decide(&request("GET", "/users/current/accounts/a1", Some("not.a.token")), now);
        assert_eq!(d.reason(), Reason::InvalidToken);
        let (_, d) = f.gateway.decide(&request("GET", "/users/current/accounts%2Fa1", None), now);
        assert_eq!((d.reason(), d.route), (Reason::AmbiguousPath, None));
        // A dot segment is resolved, not refused: the path forwarded is the
        // canonical one.
        let (_, d) = f.gateway.decide(&request("GET", "/users/current/./accounts/a1", None), now);
        assert_eq!(
            (d.reason(), d.rewritten_path.as_deref()),
            (Reason::MissingToken, Some("/users/current/accounts/a1"))
        );
        // A public route: allowed, no token looked at.
        let (_, d) = f.gateway.decide(&request("GET", "/health", Some("not.a.token")), now);
        assert_eq!(d.reason(), Reason::Public);
        assert!(matches!(d.verdict, Verdict::Allow { by: None, .. }) && d.grant.is_none());
    }

    #[test]
    fn tenant_permissions_allow_by_their_own_index() {
        let f = fixture();
        let now = now_unix();
        let mut p = payload("engine", now, 3600, json!([]));
        p["tenantPermissions"] = json!([
            { "tenant": "other", "allowedActions": ["READ_TENANT"] },
            { "tenant": "acme", "allowedActions": ["READ_TENANT"] },
        ]);
        let token = f.key.sign(&p);
        let (snap, d) = f.gateway.decide(&request("GET", "/profile/api/1/tenant/acme", Some(&token)), now);
        assert_eq!(d.reason(), Reason::Allowed);
        assert!(matches!(d.verdict, Verdict::Allow { by: Some(Allowed::TenantPermission(1)), .. }), "{:?}", d.verdict);
        assert_eq!(d.rule_id(), None, "no access rule allowed it");
        assert_eq!(app(&snap, &d).as_deref(), Some("profile-api"));
        let (_, d) = f.gateway.decide(&request("POST", "/profile/api/1/profile/create/acme", Some(&token)), now);
        assert_eq!(d.reason(), Reason::TenantNotAllowed);
    }
}
