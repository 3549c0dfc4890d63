//! Prometheus metrics, registered into a registry passed in (never the
//! global one). Label values come from closed sets only: decision, reason
//! code, application name from the manifest, upstream error kind.
//!
//! Counter handles are resolved once at start and indexed on the request
//! path, so recording a request is a few atomic adds, no label hashing.

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::reason::Reason;

/// Kinds of upstream failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    Connect,
    Timeout,
    Other,
}

impl UpstreamError {
    const ALL: [UpstreamError; 3] = [UpstreamError::Connect, UpstreamError::Timeout, UpstreamError::Other];
    fn label(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Other => "other",
        }
    }
}

/// The decision label a reason falls under.
pub fn decision_label(reason: Reason) -> &'static str {
    match reason {
        r if r.is_allow() => "allow",
        Reason::UpstreamUnavailable
        | Reason::UpstreamTimeout
        | Reason::KeysUnavailable
        | Reason::RevocationsUnavailable => "error",
        _ => "deny",
    }
}

/// The gateway's metrics.
pub struct Metrics {
    /// `[reason][application]`, the last application slot being "none".
    requests: Vec<Vec<IntCounter>>,
    /// Per decision label: allow, deny, error.
    durations: [Histogram; 3],
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    upstream_errors: Vec<IntCounter>,
    /// JWKS keys skipped as unusable, by issuer name.
    pub jwks_keys_skipped: IntCounterVec,
    revocation: RevocationGauges,
}

/// The revocation set and its feed, read from the set at each scrape.
struct RevocationGauges {
    ids: IntGauge,
    feed_up: IntGauge,
    last_sync: Gauge,
    staleness: Gauge,
    connects: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Register the gateway's collectors for these applications.
    pub fn register(registry: &Registry, applications: &[String]) -> prometheus::Result<Metrics> {
        let requests_vec = IntCounterVec::new(
            Opts::new("narrowgate_requests_total", "Requests by decision, reason and application."),
            &["decision", "reason", "application"],
        )?;
        registry.register(Box::new(requests_vec.clone()))?;
        let mut requests = Vec::with_capacity(Reason::ALL.len());
        for reason in Reason::ALL {
            let mut per_app = Vec::with_capacity(applications.len() + 1);
            for app in applications.iter().map(String::as_str).chain(std::iter::once("none")) {
                per_app.push(requests_vec.with_label_values(&[decision_label(reason), reason.code(), app]));
            }
            requests.push(per_app);
        }
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
            Opts::new("narrowgate_upstream_errors_total", "Failed upstream exchanges by kind."),
            &["kind"],
        )?;
        registry.register(Box::new(upstream_vec.clone()))?;
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
        };
        Ok(Metrics {
            revocation,
            jwks_keys_skipped,
            requests,
            durations,
            cache_hits: cache.with_label_values(&["hit"]),
            cache_misses: cache.with_label_values(&["miss"]),
            upstream_errors: UpstreamError::ALL.iter().map(|k| upstream_vec.with_label_values(&[k.label()])).collect(),
        })
    }

    /// Record one request; `app` indexes the manifest's applications, `None`
    /// when no route matched.
    pub fn observe(&self, reason: Reason, app: Option<usize>, seconds: f64) {
        if let Some(per_app) = self.requests.get(reason.index()) {
            let slot = app.filter(|a| *a < per_app.len() - 1).unwrap_or(per_app.len() - 1);
            per_app[slot].inc();
        }
        let d = match reason {
            r if r.is_allow() => 0,
            Reason::UpstreamUnavailable
            | Reason::UpstreamTimeout
            | Reason::KeysUnavailable
            | Reason::RevocationsUnavailable => 2,
            _ => 1,
        };
        self.durations[d].observe(seconds);
    }

    /// Bring the revocation gauges up to date (called at each scrape).
    pub fn observe_revocations(&self, r: &crate::revocation::Revocations) {
        let g = &self.revocation;
        g.ids.set(r.len() as i64);
        g.feed_up.set(i64::from(r.feed_up()));
        g.last_sync.set(r.last_confirmed_secs().unwrap_or(0.0));
        g.staleness.set(r.staleness().as_secs_f64());
        g.connects.set(r.connects() as i64);
    }

    pub fn upstream_error(&self, kind: UpstreamError) {
        let i = UpstreamError::ALL.iter().position(|k| *k == kind).unwrap_or(2);
        self.upstream_errors[i].inc();
    }
}
