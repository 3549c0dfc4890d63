//! Prometheus metrics, registered into a registry passed in (never the
//! global one). Label values come from closed sets only: decision, reason
//! code, application name and route template from the manifest, upstream
//! error kind, store operation. `docs/metrics.md` is the catalogue; a test
//! holds the two in step.
//!
//! Request counters are resolved per route when a snapshot is compiled and
//! each (route, reason) series is made on its first use, so recording a
//! request is an atomic load and add, no label hashing, and no series
//! exists that never counted anything.

use std::sync::{Arc, OnceLock};

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::reason::Reason;

/// Kinds of upstream failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    /// The TLS handshake with the upstream failed (its certificate, its
    /// name, the protocol).
    Tls,
    Timeout,
    Other,
    /// The response failed after its head was relayed: the connection was
    /// reset or closed early, or the body's framing was broken.
    Body,
    /// The upstream went silent mid-body past `body_idle_timeout`.
    BodyTimeout,
}

impl UpstreamError {
    pub fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Tls => "tls",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Other => "other",
            UpstreamError::Body => "body",
            UpstreamError::BodyTimeout => "body_timeout",
        }
    }
}

fn counters_for(vec: &IntCounterVec, grpc: &IntCounterVec, app: &str, route: &str) -> RouteCounters {
    RouteCounters {
        vec: vec.clone(),
        labels: Arc::new((app.into(), route.into())),
        cells: Arc::new(std::array::from_fn(|_| OnceLock::new())),
        grpc: grpc_labels(route).map(|(service, method)| GrpcCounters::new(grpc, app, service, method)),
    }
}

/// A gRPC route's service and method, from its template
/// (`GRPC /package.Service/Method`); `None` for any other route.
fn grpc_labels(template: &str) -> Option<(&str, &str)> {
    template.strip_prefix("GRPC /")?.split_once('/')
}

/// gRPC's status codes by number (`grpc-status`), as labels.
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// One gRPC route's calls by the status they ended with: each series is
/// made (labels hashed once) the first time it counts.
#[derive(Clone, Debug)]
pub struct GrpcCounters {
    vec: IntCounterVec,
    /// (application, service, method).
    labels: Arc<(Box<str>, Box<str>, Box<str>)>,
    cells: Arc<[OnceLock<IntCounter>; GRPC_CODES.len()]>,
}

impl GrpcCounters {
    fn new(vec: &IntCounterVec, app: &str, service: &str, method: &str) -> Self {
        GrpcCounters {
            vec: vec.clone(),
            labels: Arc::new((app.into(), service.into(), method.into())),
            cells: Arc::new(std::array::from_fn(|_| OnceLock::new())),
        }
    }

    /// Count a call that ended with `code` (one outside gRPC's set counts
    /// as UNKNOWN, as a client reads it).
    pub fn inc(&self, code: u8) {
        let i = if usize::from(code) < GRPC_CODES.len() { usize::from(code) } else { 2 };
        self.cells[i]
            .get_or_init(|| {
                let (app, service, method) = &*self.labels;
                self.vec.with_label_values(&[&**app, service, method, GRPC_CODES[i]])
            })
            .inc();
    }
}

/// An upstream's retry, ejection and name resolution counters.
#[derive(Clone, Debug)]
pub struct UpstreamCounters {
    pub retries: IntCounter,
    pub ejections: IntCounter,
    /// Resolutions of its DNS names that gave addresses, and that failed.
    pub resolved: IntCounter,
    pub unresolved: IntCounter,
    /// Responses that failed after their head, and that stalled.
    pub body_failed: IntCounter,
    pub body_stalled: IntCounter,
}

/// The decision label a reason falls under.
pub fn decision_label(reason: Reason) -> &'static str {
    match reason {
        r if r.is_allow() => "allow",
        Reason::UpstreamUnavailable
        | Reason::UpstreamConnect
        | Reason::UpstreamTls
        | Reason::UpstreamTimeout
        | Reason::KeysUnavailable
        | Reason::RevocationsUnavailable => "error",
        _ => "deny",
    }
}

/// One route's request counters, by [`Reason::index`]: each series is
/// made (labels hashed once) the first time it counts.
#[derive(Clone, Debug)]
pub struct RouteCounters {
    vec: IntCounterVec,
    /// (application, route template).
    labels: Arc<(Box<str>, Box<str>)>,
    cells: Arc<[OnceLock<IntCounter>; Reason::COUNT]>,
    /// A gRPC route's calls by their `grpc-status`.
    grpc: Option<GrpcCounters>,
}

impl RouteCounters {
    #[inline]
    fn inc(&self, reason: Reason) {
        if let Some(cell) = self.cells.get(reason.index()) {
            cell.get_or_init(|| {
                let (app, route) = &*self.labels;
                self.vec.with_label_values(&[decision_label(reason), reason.code(), app, route])
            })
            .inc();
        }
    }
}

/// The gateway's metrics.
pub struct Metrics {
    requests_vec: IntCounterVec,
    grpc_vec: IntCounterVec,
    /// Requests that matched no route.
    unmatched: RouteCounters,
    /// gRPC calls that matched no gRPC route.
    unmatched_grpc: GrpcCounters,
    /// Time spent deciding (phases 1–6).
    decision_seconds: Histogram,
    /// Verified-token cache: entries now, and entries evicted.
    pub cache: crate::token::cache::CacheCounters,
    /// JWKS fetches by issuer and result, and the last success.
    pub jwks: crate::token::keyring::JwksMetrics,
    /// Store calls by operation and result, and their durations.
    pub store: crate::store::StoreMetrics,
    /// Token-service operations (and reloads) by kind and result.
    operations: IntCounterVec,
    /// Open connections by listener, and WebSocket tunnels.
    connections: IntGaugeVec,
    tunnels: IntGauge,
    /// Failed TLS handshakes by listener, and each listener's count as last
    /// observed (the listeners count in atomics; a scrape adds what is new).
    handshake_failures: IntCounterVec,
    handshakes_seen: [std::sync::atomic::AtomicU64; 4],
    /// Per decision label: allow, deny, error.
    durations: [Histogram; 3],
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    upstream_errors: IntCounterVec,
    upstream_retries: IntCounterVec,
    upstream_ejections: IntCounterVec,
    upstream_resolutions: IntCounterVec,
    /// JWKS keys skipped as unusable, by issuer name.
    pub jwks_keys_skipped: IntCounterVec,
    revocation: RevocationGauges,
    reloads: IntCounterVec,
    last_reload: Gauge,
    clock_held_ahead: Gauge,
    tasks: IntGaugeVec,
    certificate_expiry: prometheus::GaugeVec,
    config_info: IntGaugeVec,
    /// Audit events the full queue refused.
    pub audit_dropped: IntCounter,
    /// Spans exported and dropped.
    pub trace_spans: crate::trace::SpanCounters,
    /// Shadow mode: requests forwarded that the policy denies.
    would_deny: IntCounterVec,
    /// Requests over a rate limit, by the limit.
    rate_limited: Vec<IntCounter>,
    /// Keys not rate-limited because a limiter's table was full.
    rate_limit_untracked: IntGauge,
    /// Every family registered: name and label names.
    families: Vec<(String, Vec<String>)>,
}

/// A registry that remembers what was registered in it (the catalogue
/// test compares it with `docs/metrics.md`).
struct Recording<'r> {
    registry: &'r Registry,
    families: std::cell::RefCell<Vec<(String, Vec<String>)>>,
}

impl Recording<'_> {
    fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        for d in c.desc() {
            self.families.borrow_mut().push((d.fq_name.clone(), d.variable_labels.clone()));
        }
        self.registry.register(c)
    }
}

/// The revocation set and its feed, read from the set at each scrape.
struct RevocationGauges {
    ids: IntGauge,
    feed_up: IntGauge,
    last_sync: Gauge,
    staleness: Gauge,
    connects: IntGauge,
    /// What the follower refused of its source, by reason.
    refused: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Register the gateway's collectors. Applications get their request
    /// counters from [`Metrics::app_counters`], by name, when a snapshot
    /// naming them is compiled.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let registry = &Recording { registry, families: std::cell::RefCell::new(Vec::new()) };
        let requests_vec = IntCounterVec::new(
            Opts::new(
                "narrowgate_requests_total",
                "Requests by decision, reason, application and route template (none: no route matched).",
            ),
            &["decision", "reason", "application", "route"],
        )?;
        registry.register(Box::new(requests_vec.clone()))?;
        let grpc_vec = IntCounterVec::new(
            Opts::new(
                "narrowgate_grpc_calls_total",
                "gRPC calls by application, service, method and the grpc-status they ended with (the gateway's own for a refused call; none: no gRPC route matched).",
            ),
            &["application", "service", "method", "grpc_code"],
        )?;
        registry.register(Box::new(grpc_vec.clone()))?;
        let unmatched = counters_for(&requests_vec, &grpc_vec, "none", "none");
        let unmatched_grpc = GrpcCounters::new(&grpc_vec, "none", "none", "none");
        let decision_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "narrowgate_decision_duration_seconds",
                "Time to decide a request (canonical path, route, credential, verification, revocation, rules).",
            )
            .buckets(vec![1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.05, 0.5, 3.0]),
        )?;
        registry.register(Box::new(decision_seconds.clone()))?;
        let cache_counters = crate::token::cache::CacheCounters {
            entries: IntGauge::new("narrowgate_token_cache_entries", "Verified tokens in the cache.")?,
            evictions: IntCounter::new(
                "narrowgate_token_cache_evictions_total",
                "Verified tokens evicted from (or not admitted to) the full cache.",
            )?,
        };
        registry.register(Box::new(cache_counters.entries.clone()))?;
        registry.register(Box::new(cache_counters.evictions.clone()))?;
        let jwks_fetches = IntCounterVec::new(
            Opts::new("narrowgate_jwks_fetches_total", "JWKS fetches by issuer name and result (ok, error)."),
            &["issuer", "result"],
        )?;
        registry.register(Box::new(jwks_fetches.clone()))?;
        let jwks_last_success = GaugeVec::new(
            Opts::new(
                "narrowgate_jwks_last_success_timestamp_seconds",
                "Unix time of an issuer's last good JWKS fetch.",
            ),
            &["issuer"],
        )?;
        registry.register(Box::new(jwks_last_success.clone()))?;
        let store = crate::store::StoreMetrics {
            calls: IntCounterVec::new(
                Opts::new(
                    "narrowgate_store_operations_total",
                    "Token store calls by operation and result (ok, conflict, unavailable, corrupt, missing, lost, and for redeem: unknown, used, expired, revoked).",
                ),
                &["operation", "result"],
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new("narrowgate_store_operation_duration_seconds", "Token store call durations.")
                    .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                &["operation"],
            )?,
        };
        registry.register(Box::new(store.calls.clone()))?;
        registry.register(Box::new(store.seconds.clone()))?;
        let operations = IntCounterVec::new(
            Opts::new(
                "narrowgate_token_service_operations_total",
                "Token-service operations (mint, redeem, revoke, manage, list, show, authenticate) and reloads, by kind and result (ok or the error code).",
            ),
            &["operation", "kind", "result"],
        )?;
        registry.register(Box::new(operations.clone()))?;
        let connections = IntGaugeVec::new(
            Opts::new(
                "narrowgate_open_connections",
                "Open client connections by listener (proxy, api, admin, decision).",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(connections.clone()))?;
        let tunnels = IntGauge::new("narrowgate_open_tunnels", "Open WebSocket tunnels through the proxy.")?;
        registry.register(Box::new(tunnels.clone()))?;
        let handshake_failures = IntCounterVec::new(
            Opts::new(
                "narrowgate_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out, by listener (proxy, api, admin).",
            ),
            &["listener"],
        )?;
        registry.register(Box::new(handshake_failures.clone()))?;
        let build = IntGaugeVec::new(
            Opts::new("narrowgate_build_info", "1, labelled with the version of the running narrowgate."),
            &["version"],
        )?;
        registry.register(Box::new(build.clone()))?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let hist = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "narrowgate_request_duration_seconds",
                "Time from request head to response head, by decision.",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["decision"],
        )?;
        registry.register(Box::new(hist.clone()))?;
        let durations =
            [hist.with_label_values(&["allow"]), hist.with_label_values(&["deny"]), hist.with_label_values(&["error"])];
        let cache = IntCounterVec::new(
            Opts::new("narrowgate_token_cache_total", "Verified-token cache lookups."),
            &["result"],
        )?;
        registry.register(Box::new(cache.clone()))?;
        let upstream_vec = IntCounterVec::new(
            Opts::new(
                "narrowgate_upstream_errors_total",
                "Failed upstream exchanges by kind (connect, tls, timeout, other; body, body_timeout: after the response head) and upstream (default, or its name under upstreams).",
            ),
            &["kind", "upstream"],
        )?;
        registry.register(Box::new(upstream_vec.clone()))?;
        let upstream_retries = IntCounterVec::new(
            Opts::new(
                "narrowgate_upstream_retries_total",
                "Requests sent to an upstream once more (not sent at all the first time, or an idempotent request answered with a retried status), by upstream.",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(upstream_retries.clone()))?;
        let upstream_ejections = IntCounterVec::new(
            Opts::new(
                "narrowgate_upstream_ejections_total",
                "Upstream addresses left out by passive health after failures in a row, by upstream.",
            ),
            &["upstream"],
        )?;
        registry.register(Box::new(upstream_ejections.clone()))?;
        let upstream_resolutions = IntCounterVec::new(
            Opts::new(
                "narrowgate_upstream_resolutions_total",
                "Resolutions of upstream addresses given by DNS name, by upstream and result (success, failure).",
            ),
            &["upstream", "result"],
        )?;
        registry.register(Box::new(upstream_resolutions.clone()))?;
        let jwks_keys_skipped = IntCounterVec::new(
            Opts::new(
                "narrowgate_jwks_keys_skipped_total",
                "Keys in an issuer's JWKS skipped as unusable (wrong use or key_ops, unsupported type, alg not fitting).",
            ),
            &["issuer"],
        )?;
        registry.register(Box::new(jwks_keys_skipped.clone()))?;
        let gauge = |name: &str, help: &str| -> prometheus::Result<Gauge> {
            let g = Gauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let int_gauge = |name: &str, help: &str| -> prometheus::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let revocation = RevocationGauges {
            ids: int_gauge("narrowgate_revocations", "Token ids in the revocation set.")?,
            feed_up: int_gauge(
                "narrowgate_revocation_feed_up",
                "1 while the revocation set is followed live from its source (PostgreSQL notifications or an issuer's feed), or needs no following; 0 while that connection is down.",
            )?,
            last_sync: gauge(
                "narrowgate_revocation_last_sync_timestamp_seconds",
                "Unix time the followed revocation set was last confirmed complete (0: never, or not followed).",
            )?,
            staleness: gauge(
                "narrowgate_revocation_staleness_seconds",
                "Seconds since the followed revocation set was last confirmed complete (0 when not followed).",
            )?,
            connects: int_gauge(
                "narrowgate_revocation_feed_connects",
                "Times the revocation follower has (re)connected to its source and resynced.",
            )?,
            refused: {
                let g = IntGaugeVec::new(
                    Opts::new(
                        "narrowgate_revocation_feed_refused",
                        "What the revocation follower refused of its source since start, by reason \
                         (line_too_long, id_too_long, malformed, set_full).",
                    ),
                    &["reason"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
        };
        let reloads = IntCounterVec::new(
            Opts::new("narrowgate_config_reloads_total", "Config reloads by result (success, failure)."),
            &["result"],
        )?;
        registry.register(Box::new(reloads.clone()))?;
        for result in ["success", "failure"] {
            reloads.with_label_values(&[result]);
        }
        let last_reload = gauge(
            "narrowgate_config_last_reload_success_timestamp_seconds",
            "Unix time the config in force was loaded (at start or by the last successful reload).",
        )?;
        let clock_held_ahead = gauge(
            "narrowgate_clock_held_ahead_seconds",
            "How far ahead of the system's time the gateway keeps its own, after the system clock was stepped back (0 otherwise): tokens and cached grants are judged by the gateway's.",
        )?;
        let tasks = IntGaugeVec::new(
            Opts::new(
                "narrowgate_runtime_tasks",
                "Tasks alive on the gateway's runtimes: control (listeners but the proxy's, the token service, background work) and proxy (every proxy worker's).",
            ),
            &["runtime"],
        )?;
        registry.register(Box::new(tasks.clone()))?;
        let certificate_expiry = prometheus::GaugeVec::new(
            Opts::new(
                "narrowgate_tls_certificate_expiry_timestamp_seconds",
                "Unix time a listener's serving certificate expires (its notAfter), by listener and certificate (its first DNS name, else its subject).",
            ),
            &["listener", "certificate"],
        )?;
        registry.register(Box::new(certificate_expiry.clone()))?;
        let config_info = IntGaugeVec::new(
            Opts::new("narrowgate_config_info", "1, labelled with the SHA-256 of the config in force and its files."),
            &["hash"],
        )?;
        registry.register(Box::new(config_info.clone()))?;
        let audit_dropped = IntCounter::new(
            "narrowgate_audit_events_dropped_total",
            "Audit events dropped because the audit queue was full (the request path never waits for it) or they could not be written (a full disk).",
        )?;
        registry.register(Box::new(audit_dropped.clone()))?;
        let spans_exported =
            IntCounter::new("narrowgate_trace_spans_exported_total", "Spans the OTLP collector accepted.")?;
        registry.register(Box::new(spans_exported.clone()))?;
        let spans_dropped = IntCounterVec::new(
            Opts::new(
                "narrowgate_trace_spans_dropped_total",
                "Spans dropped, by cause: queue_full (the export queue was full; a request never waits for it) \
                 export_failed (the collector refused them or could not be reached), or shutdown (ended after the exporter stopped).",
            ),
            &["cause"],
        )?;
        registry.register(Box::new(spans_dropped.clone()))?;
        let trace_spans = crate::trace::SpanCounters {
            exported: spans_exported,
            queue_full: spans_dropped.with_label_values(&["queue_full"]),
            export_failed: spans_dropped.with_label_values(&["export_failed"]),
            after_shutdown: spans_dropped.with_label_values(&["shutdown"]),
        };
        let would_deny = IntCounterVec::new(
            Opts::new(
                "narrowgate_would_deny_total",
                "Requests forwarded in shadow mode that the access rules deny, by the reason and application.",
            ),
            &["reason", "application"],
        )?;
        registry.register(Box::new(would_deny.clone()))?;
        let rate_limited_vec = IntCounterVec::new(
            Opts::new(
                "narrowgate_rate_limited_total",
                "Requests over a rate limit, by the limit (client, token, subject, application); limits are per replica.",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(rate_limited_vec.clone()))?;
        let rate_limit_untracked = IntGauge::new(
            "narrowgate_rate_limit_untracked_requests",
            "Requests whose key found its limiter's table full (max_keys): limited together by one shared overflow bucket (since the limits came into force).",
        )?;
        registry.register(Box::new(rate_limit_untracked.clone()))?;
        let rate_limited = <crate::ratelimit::Scope as strum::IntoEnumIterator>::iter()
            .map(|s| rate_limited_vec.with_label_values(&[<&'static str>::from(s)]))
            .collect();
        let jwks = crate::token::keyring::JwksMetrics {
            skipped: jwks_keys_skipped.clone(),
            fetches: jwks_fetches,
            last_success: jwks_last_success,
        };
        Ok(Metrics {
            requests_vec,
            grpc_vec,
            unmatched,
            unmatched_grpc,
            decision_seconds,
            cache: cache_counters,
            jwks,
            store,
            operations,
            connections,
            tunnels,
            handshake_failures,
            handshakes_seen: Default::default(),
            reloads,
            last_reload,
            clock_held_ahead,
            tasks,
            certificate_expiry,
            config_info,
            audit_dropped,
            trace_spans,
            would_deny,
            rate_limited,
            rate_limit_untracked,
            families: registry.families.take(),
            revocation,
            jwks_keys_skipped,
            durations,
            cache_hits: cache.with_label_values(&["hit"]),
            cache_misses: cache.with_label_values(&["miss"]),
            upstream_errors: upstream_vec,
            upstream_retries,
            upstream_ejections,
            upstream_resolutions,
        })
    }

    /// Every metric family registered, with its label names.
    pub fn families(&self) -> &[(String, Vec<String>)] {
        &self.families
    }

    /// The request counters of the route `template` of application `app`.
    pub fn route_counters(&self, app: &str, template: &str) -> RouteCounters {
        counters_for(&self.requests_vec, &self.grpc_vec, app, template)
    }

    /// The gRPC counters a call on `route` counts in: the route's when it
    /// is a gRPC route, the unmatched ones when no route matched, none
    /// when it matched a REST route.
    pub fn grpc_counters<'a>(&'a self, route: Option<&'a RouteCounters>) -> Option<&'a GrpcCounters> {
        match route {
            Some(r) => r.grpc.as_ref(),
            None => Some(&self.unmatched_grpc),
        }
    }

    /// A route a reload removed gets no more series.
    pub fn forget_route(&self, app: &str, template: &str) {
        for reason in Reason::iter() {
            let _ = self.requests_vec.remove_label_values(&[decision_label(reason), reason.code(), app, template]);
        }
        if let Some((service, method)) = grpc_labels(template) {
            for code in GRPC_CODES {
                let _ = self.grpc_vec.remove_label_values(&[app, service, method, code]);
            }
        }
    }

    /// An application a reload removed gets no more series.
    pub fn forget_app(&self, app: &str) {
        for reason in Reason::iter() {
            let _ = self.would_deny.remove_label_values(&[reason.code(), app]);
        }
    }

    /// The time one decision took.
    #[inline]
    pub fn decided(&self, seconds: f64) {
        self.decision_seconds.observe(seconds);
    }

    /// A token-service operation or a reload, as audited.
    pub fn operation(&self, e: &crate::audit::ActionEvent) {
        self.operations
            .with_label_values(&[e.action.as_str(), e.kind.map_or("", crate::audit::ActionKind::as_str), e.result])
            .inc();
    }

    /// Open connections of `listener` (`proxy`, `api`, `admin`, `decision`), its
    /// tunnels, and its failed TLS handshakes so far (called at each scrape).
    pub fn observe_connections(&self, listener: &str, open: usize, tunnels: Option<usize>, handshake_failures: u64) {
        self.connections.with_label_values(&[listener]).set(i64::try_from(open).unwrap_or(i64::MAX));
        if let Some(t) = tunnels {
            self.tunnels.set(i64::try_from(t).unwrap_or(i64::MAX));
        }
        let seen = match listener {
            "proxy" => &self.handshakes_seen[0],
            "api" => &self.handshakes_seen[1],
            "admin" => &self.handshakes_seen[2],
            _ => &self.handshakes_seen[3],
        };
        // fetch_max: of two scrapes at once, only the newer count adds.
        let before = seen.fetch_max(handshake_failures, std::sync::atomic::Ordering::Relaxed);
        let counter = self.handshake_failures.with_label_values(&[listener]);
        counter.inc_by(handshake_failures.saturating_sub(before));
    }

    /// A request over the `scope` limit (refused).
    pub fn rate_limited(&self, scope: crate::ratelimit::Scope) {
        if let Some(c) = self.rate_limited.get(scope as usize) {
            c.inc();
        }
    }

    /// Shadow mode forwarded a request the access rules deny for `reason`
    /// (`app`: the route's application).
    pub fn would_deny(&self, reason: Reason, app: &str) {
        self.would_deny.with_label_values(&[reason.code(), app]).inc();
    }

    /// A config came into force (at start, or by a reload).
    pub fn config_loaded(&self, hash: &str, previous: Option<&str>) {
        if let Some(old) = previous.filter(|o| *o != hash) {
            let _ = self.config_info.remove_label_values(&[old]);
        }
        self.config_info.with_label_values(&[hash]).set(1);
        self.last_reload.set(crate::token::now_unix() as f64);
    }

    /// The serving certificates in force: their expiry, and no other.
    pub fn certificates(&self, tls: &crate::config::TlsListeners) {
        self.certificate_expiry.reset();
        for (listener, t) in tls.each() {
            for c in &t.certificates {
                self.certificate_expiry.with_label_values(&[listener, &c.label]).set(c.not_after as f64);
            }
        }
    }

    /// A reload ended: `success` or `failure`.
    pub fn reload_result(&self, success: bool) {
        self.reloads.with_label_values(&[if success { "success" } else { "failure" }]).inc();
    }

    /// Record one request in its route's counters (`None` when no route
    /// matched).
    pub fn observe(&self, reason: Reason, route: Option<&RouteCounters>, seconds: f64) {
        route.unwrap_or(&self.unmatched).inc(reason);
        let d = match reason {
            r if r.is_allow() => 0,
            Reason::UpstreamUnavailable
            | Reason::UpstreamConnect
            | Reason::UpstreamTls
            | Reason::UpstreamTimeout
            | Reason::KeysUnavailable
            | Reason::RevocationsUnavailable => 2,
            _ => 1,
        };
        self.durations[d].observe(seconds);
    }

    /// Bring the revocation gauges up to date (called at each scrape).
    /// Bring the rate-limit gauge up to date (called at each scrape).
    /// How far ahead of the system's time the clock is held (at each
    /// scrape).
    pub fn observe_clock(&self, clock: &crate::clock::Clock) {
        self.clock_held_ahead.set(clock.held_ahead_ms() as f64 / 1000.0);
    }

    /// The tasks alive on the control runtime and the proxy workers' (at
    /// each scrape).
    pub fn observe_tasks(&self, control: usize, proxy: usize) {
        for (runtime, n) in [("control", control), ("proxy", proxy)] {
            self.tasks.with_label_values(&[runtime]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn observe_limits(&self, l: &crate::ratelimit::RateLimits) {
        self.rate_limit_untracked.set(i64::try_from(l.untracked()).unwrap_or(i64::MAX));
    }

    pub fn observe_revocations(&self, r: &crate::store::Revocations) {
        let g = &self.revocation;
        g.ids.set(r.len() as i64);
        g.feed_up.set(i64::from(r.feed_up()));
        g.last_sync.set(r.last_confirmed_secs().unwrap_or(0.0));
        g.staleness.set(r.staleness().as_secs_f64());
        g.connects.set(r.connects() as i64);
        for why in <crate::revocation::FeedRefusal as strum::IntoEnumIterator>::iter() {
            let n = i64::try_from(r.refusals(why)).unwrap_or(i64::MAX);
            g.refused.with_label_values(&[<&'static str>::from(why)]).set(n);
        }
    }

    /// A failed exchange with `upstream` (its name): the error path only,
    /// so the label lookup costs nothing on a success.
    pub fn upstream_error(&self, kind: UpstreamError, upstream: &str) {
        self.upstream_errors.with_label_values(&[kind.label(), upstream]).inc();
    }

    /// One upstream's retry and ejection counters, looked up once when its
    /// pool is made.
    pub fn upstream_counters(&self, upstream: &str) -> UpstreamCounters {
        UpstreamCounters {
            retries: self.upstream_retries.with_label_values(&[upstream]),
            ejections: self.upstream_ejections.with_label_values(&[upstream]),
            resolved: self.upstream_resolutions.with_label_values(&[upstream, "success"]),
            unresolved: self.upstream_resolutions.with_label_values(&[upstream, "failure"]),
            body_failed: self.upstream_errors.with_label_values(&[UpstreamError::Body.label(), upstream]),
            body_stalled: self.upstream_errors.with_label_values(&[UpstreamError::BodyTimeout.label(), upstream]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/metrics.md` lists every family the gateway registers, with
    /// its labels, and nothing else.
    #[test]
    fn the_catalogue_is_the_registry() {
        let metrics = Metrics::register(&Registry::new()).expect("metrics");
        let mut registered: Vec<(String, Vec<String>)> = metrics.families().to_vec();
        registered.sort();
        let doc = include_str!("../docs/metrics.md");
        let mut documented: Vec<(String, Vec<String>)> = doc
            .lines()
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split(" | ").collect();
                let name = cells.first()?.strip_suffix('`')?.to_string();
                let labels = cells
                    .get(2)?
                    .split(", ")
                    .filter_map(|c| c.trim().strip_prefix('`')?.split('`').next())
                    .map(str::to_string)
                    .collect();
                Some((name, labels))
            })
            .collect();
        documented.sort();
        assert_eq!(registered, documented, "docs/metrics.md and the registry differ");
    }
}
