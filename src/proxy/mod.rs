//! The data plane: the request path of DESIGN.md §4 as a fixed series of
//! phases. Read top to bottom, [`Gateway::handle`] is the whole flow, each
//! phase a named function:
//!
//! 0. **admit** the client under its rate limit (`Gateway::admit`);
//! 1. **canonicalize** the path once (`canonical`); ambiguous → 400;
//! 2. **route** method + canonical path (`policy::Router`); none → deny;
//! 3. **credential** from the configured sources (`credential`);
//! 4. **verify** → grant, through the cache (`token`);
//! 5. **revocation** of the token and its lineage, every request;
//! 6. **evaluate** the grant's rules and tenant permissions against the
//!    route (`policy::evaluate`);
//!
//! — together [`decide`] (`decide.rs`, pure, shared with `explain`), which
//! returns one [`Decision`] with one [`Verdict`], decided again once when
//! a token names a key just rotated in (`Gateway::decide_refetching`) —
//! then the request's own **limits** (`Gateway::limit`), then **enforce**
//! it (`Gateway::enforce`: answer the denial, or **forward**, `forward.rs`,
//! with header hygiene, `headers` and `upstream`) and **record** it
//! (`record.rs`: one metrics update, one log line in the request's span,
//! the audit event).
//!
//! Every request is decided and forwarded under one policy snapshot
//! (`runtime`), loaded once at its start: a reload never splits a request.
//! `decide` is synchronous, free of I/O and locks, so nothing is held
//! across an await. Only the key refetch and forwarding await.

pub mod authz;
pub mod canonical;
pub mod decide;
mod forward;
pub mod grpc;
pub mod headers;
mod record;
pub mod upstream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::metrics::{Metrics, UpstreamError};
use crate::reason::Reason;
use crate::respond;
use crate::runtime::{Runtime, Snapshot};
use crate::server;
pub use crate::server::ConnInfo;
pub use decide::{Decision, Verdict, decide};
use upstream::UpstreamFailure;

/// Response bodies: the upstream's, streamed, or one of ours.
pub type Body = Either<grpc::Watched, Full<Bytes>>;

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
    /// A gRPC call: reported by the `grpc-status` it ends with.
    pub grpc: bool,
    /// Its place in its trace (tracing on).
    pub trace: Option<crate::trace::Trace>,
    /// Its upstream call, when its trace is sampled.
    pub upstream_call: Option<UpstreamCall>,
}

/// A sampled request's upstream call: its span, from sending the request
/// to the response's head (or the failure), and the upstream's name.
#[derive(Debug)]
pub struct UpstreamCall {
    pub span: opentelemetry::trace::SpanId,
    pub from: Instant,
    pub to: Instant,
    pub upstream: Box<str>,
}

/// What the gateway knows of a request besides the request itself, found
/// once at its start.
#[derive(Debug)]
struct Facts {
    /// From a trusted proxy (its forwarding headers are kept).
    trusted: bool,
    request_id: HeaderValue,
    /// A gRPC call (`content-type: application/grpc`): refused in gRPC's
    /// terms, its deadline read, its stream watched.
    grpc: bool,
    /// Its place in its trace (tracing on).
    trace: Option<crate::trace::Trace>,
    /// Its upstream call, noted by `forward` when its trace is sampled.
    upstream_call: Option<UpstreamCall>,
}

/// The longest request id taken from a peer; a longer one is replaced.
const MAX_REQUEST_ID: usize = 128;

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

/// The upstream pools and the snapshot generation they were made for:
/// one per proxy worker (and one for the control runtime), so a worker's
/// requests touch only its own pool — its connections, its round-robin
/// counter, its reference count — never a cache line another worker writes.
struct Pool {
    generation: u64,
    /// Per worker: one pool per upstream, in the snapshot's order.
    by_worker: Box<[Arc<[upstream::Upstream]>]>,
}

impl Pool {
    fn new(
        generation: u64,
        configs: &[crate::config::UpstreamConfig],
        workers: usize,
        clock: &Arc<crate::clock::Clock>,
        metrics: &Metrics,
    ) -> Self {
        let counters: Vec<_> = configs.iter().map(|c| metrics.upstream_counters(&c.name)).collect();
        let addresses: Vec<_> =
            configs.iter().zip(&counters).map(|(c, n)| upstream::Addresses::new(c, clock, n)).collect();
        let pools = || {
            configs
                .iter()
                .zip(&addresses)
                .zip(&counters)
                .map(|((c, a), n)| upstream::Upstream::new(c, a, clock, n.clone()))
                .collect::<Arc<[_]>>()
        };
        Pool { generation, by_worker: (0..=workers).map(|_| pools()).collect() }
    }

    /// This thread's pools (see `upstream::set_worker_slot`).
    fn mine(&self) -> Arc<[upstream::Upstream]> {
        self.by_worker[upstream::worker_slot() % self.by_worker.len()].clone()
    }
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
        let shared = runtime.shared();
        let pool = Pool::new(snap.upstream_generation, &snap.upstreams, workers, &shared.clock, &shared.metrics);
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

    /// This worker's pools for `snap`'s upstreams: the current ones, unless
    /// a reload changed the upstreams since they were made. A request
    /// decided under an older snapshot uses the newer pools (the reload's).
    fn upstreams(&self, snap: &Snapshot) -> Arc<[upstream::Upstream]> {
        let pool = self.upstream.load();
        if pool.generation >= snap.upstream_generation {
            return pool.mine();
        }
        // One request makes the new pools; the others wait and take them.
        let _one = self.remaking.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let pool = self.upstream.load();
        if pool.generation >= snap.upstream_generation {
            return pool.mine();
        }
        let shared = self.runtime.shared();
        let pool = Arc::new(Pool::new(
            snap.upstream_generation,
            &snap.upstreams,
            self.workers,
            &shared.clock,
            &shared.metrics,
        ));
        self.upstream.store(pool.clone());
        pool.mine()
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
        let rt = runtime.clone();
        let tls = move || rt.snapshot().tls.proxy.as_ref().map(|t| t.config.clone());
        let limits = move || server::Limits::from(&runtime.snapshot().server);
        // Each request's future is boxed where it is made: kilobytes, which
        // the HTTP/2 server would otherwise move several times on its way
        // into a task of its own (measured: a tenth of a gRPC call's CPU
        // was memmove).
        let handler = move |req, info: Arc<ConnInfo>| {
            let gw = self.clone();
            Box::pin(async move { gw.handle(req, &info).await })
        };
        server::serve(listener, tls, limits, handler, drain, stop).await;
    }

    /// Handle one request end to end, under one snapshot.
    pub async fn handle(&self, mut req: Request<Incoming>, conn: &ConnInfo) -> Response<Body> {
        let snap = self.runtime.snapshot();
        if let Some(client) = &conn.client {
            req.extensions_mut().insert(client.clone());
        }
        let start = Instant::now();
        let trusted = snap.is_trusted(conn.peer);
        let request_id = self.request_id(&snap, req.headers(), trusted);
        let trace = self.runtime.shared().tracing.as_ref().map(|t| t.begin(req.headers(), trusted));
        let mut facts = Facts { trusted, request_id, grpc: grpc::is_grpc(req.headers()), trace, upstream_call: None };
        let span = tracing::debug_span!("request", request.id = facts.request_id.to_str().unwrap_or("-"));
        async {
            let decision = self.decide_admitted(&snap, conn, &req).await;
            let method = req.method().clone();
            let (reason, mut resp, failure) = self.enforce(&snap, req, &decision, conn, &mut facts).await;
            resp.headers_mut().insert(snap.forwarding.request_id.clone(), facts.request_id.clone());
            let Facts { request_id, grpc, trace, upstream_call, .. } = facts;
            let status = resp.status();
            let outcome = Outcome { reason, status, failure, start, request_id, method, grpc, trace, upstream_call };
            self.record(&snap, &decision, &outcome, conn, &mut resp);
            resp
        }
        .instrument(span)
        .await
    }

    /// The request's id: the one a trusted peer gave (if it is of a sane
    /// length), else a new one.
    fn request_id(&self, snap: &Snapshot, headers: &http::HeaderMap, trusted: bool) -> HeaderValue {
        match headers.get(&snap.forwarding.request_id) {
            Some(v) if trusted && v.len() <= MAX_REQUEST_ID => v.clone(),
            _ => self.request_ids.next(),
        }
    }

    /// Phases 0–6 and the request's own limits: the client's rate, the
    /// decision, the token's and application's rates (a refusal for a rate
    /// counted).
    async fn decide_admitted<B>(&self, snap: &Snapshot, conn: &ConnInfo, req: &Request<B>) -> Decision {
        let decision = match Self::admit(snap, conn) {
            Err(l) => Decision::limited(l),
            Ok(()) => Self::limit(snap, self.decide_refetching(snap, req).await),
        };
        if let Verdict::Limited(l) = &decision.verdict {
            self.metrics.rate_limited(l.scope);
        }
        decision
    }

    /// Phase 0: the client's rate first, so a flood costs no token
    /// verification.
    fn admit(snap: &Snapshot, conn: &ConnInfo) -> Result<(), crate::ratelimit::Limited> {
        snap.limits.check_client(conn.peer)
    }

    /// Phases 1–6; when the token names a key that rotated in on an issuer,
    /// its keys are fetched (rate-limited) and the request decided once more.
    async fn decide_refetching<B>(&self, snap: &Snapshot, req: &Request<B>) -> Decision {
        let deciding = Instant::now();
        let d = decide(snap, req, snap.auth.now());
        self.metrics.decided(deciding.elapsed().as_secs_f64());
        if !snap.auth.wants_refetch(d.reason()) {
            return d;
        }
        snap.auth.keys().refetch().await;
        decide(snap, req, snap.auth.now())
    }

    /// The request's own rate limits (per token, per application), once it
    /// is known whose it is: over one, 429 whatever was decided.
    fn limit(snap: &Snapshot, d: Decision) -> Decision {
        let token = d.grant.as_deref().map(|g| (&*g.token_id, &*g.subject));
        match snap.limits.check_request(token, d.app) {
            Err(l) => d.over_limit(l),
            Ok(()) => d,
        }
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
        facts: &mut Facts,
    ) -> (Reason, Response<Body>, Option<UpstreamFailure>) {
        // A gRPC caller is refused in gRPC's terms: it cannot read a 401.
        let grpc = facts.grpc;
        let refuse = if grpc { respond::grpc_error_response } else { respond::error_response };
        match &decision.verdict {
            Verdict::Limited(_) if grpc => {
                (Reason::RateLimited, refuse(Reason::RateLimited, None, None).map(Either::Right), None)
            }
            Verdict::Limited(l) => {
                let resp = crate::ratelimit::response(l, self.runtime.shared().clock.system_time());
                (Reason::RateLimited, resp.map(Either::Right), None)
            }
            Verdict::Deny { reason, denial, status } => {
                let resp = refuse(*reason, denial.as_ref(), *status).map(Either::Right);
                (*reason, resp, None)
            }
            Verdict::Allow { .. } | Verdict::Shadow { .. } => {
                match self.forward(snap, req, decision, conn, facts).await {
                    Ok(resp) => (decision.reason(), resp, None),
                    Err(failure) => {
                        self.metrics.upstream_error(failure.kind, &failure.name);
                        let r = match failure.kind {
                            UpstreamError::Timeout | UpstreamError::BodyTimeout => Reason::UpstreamTimeout,
                            UpstreamError::Connect => Reason::UpstreamConnect,
                            UpstreamError::Tls => Reason::UpstreamTls,
                            UpstreamError::Other | UpstreamError::Body => Reason::UpstreamUnavailable,
                        };
                        (r, refuse(r, None, None).map(Either::Right), Some(failure))
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! `decide` on the demo config, without sockets: what one value says
    //! about each kind of outcome.
    use super::*;
    use crate::policy::Allowed;
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
