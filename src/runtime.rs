//! The policy in force: one immutable, compiled [`Snapshot`] of everything
//! a reload may change (manifest and router, issuers and keys, credentials,
//! forwarding, limits, cache, facades, the token service's settings),
//! behind one `ArcSwap` in the [`Runtime`]. Each request loads the snapshot
//! once and is decided wholly by it; a reload compiles a new one beside it
//! and swaps it in, so no request sees half of each.
//!
//! What a reload cannot change — the listeners, the store, the worker
//! threads, how revocations are followed — is the process's: a reload that
//! changes them says so and applies the rest.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::HeaderValue;
use ipnet::IpNet;

use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::HeaderPolicy;
use crate::config::{
    Config, ConfigErrors, CredentialSource, Facades, Forwarding, ServerConfig, Unmatched, UpstreamConfig,
};
use crate::metrics::{Metrics, RouteCounters};
use crate::policy::{Route, Router};
use crate::store::ReferenceTokens;
use crate::store::Revocations;

/// One application of the snapshot, as the request path needs it.
#[derive(Debug)]
pub struct AppSlot {
    pub name: Box<str>,
    /// The application's name as the identity header carries it.
    pub header: HeaderValue,
    /// Authorization denials are forwarded and recorded (shadow mode).
    pub shadow: bool,
}

/// The compiled policy in force. Immutable: a reload makes a new one.
pub struct Snapshot {
    /// SHA-256 of the config and the files it reads.
    pub hash: String,
    /// The hash and the routes as the audit log writes them.
    pub audit_labels: Arc<crate::audit::Labels>,
    pub routes: Vec<Route>,
    /// By route index.
    pub route_counters: Vec<RouteCounters>,
    pub router: Router,
    /// By application index.
    pub apps: Vec<AppSlot>,
    pub auth: Authenticator,
    /// The query parameters a credential may come in.
    pub query_credentials: Vec<String>,
    pub forwarding: Forwarding,
    pub headers: HeaderPolicy,
    pub trusted_proxies: Vec<IpNet>,
    /// The decision listener's peers and paths.
    pub decision: crate::config::DecisionConfig,
    pub unmatched: Unmatched,
    /// The gateway's mode; each application's is in its [`AppSlot`].
    pub mode: crate::policy::Mode,
    /// Limits and timeouts of downstream connections accepted from now on.
    pub server: ServerConfig,
    /// The TLS of connections accepted from now on, per listener (`None`:
    /// plaintext).
    pub tls: ListenerTls,
    /// Where requests are forwarded: the default upstream first, then the
    /// named ones. The proxy keeps their connection pools (process state)
    /// and makes new ones when these change.
    pub upstreams: Arc<[UpstreamConfig]>,
    /// By route index: the index in `upstreams` its requests go to.
    pub route_upstream: Vec<usize>,
    /// Counts the changes of `upstreams` since the process started, so
    /// the proxy tells changed upstreams by one compare.
    pub upstream_generation: u64,
    // The token service's and the api listener's.
    /// What the token service works by.
    pub service: Arc<crate::service::Settings>,
    /// The manifest in MetaApi's shape, serialized once.
    pub manifest_json: Bytes,
    pub jwks_json: Bytes,
    pub facades: Facades,
    /// The admin web console's settings.
    pub console: crate::config::ConsoleConfig,
    pub feed_readers: Arc<[[u8; 32]]>,
    /// Whether decisions are audited (what only the audit needs is kept).
    pub audit: bool,
    /// The audit log (the process's).
    pub audit_log: Arc<crate::audit::Audit>,
    /// Rate limits and their state (kept by reloads that leave them as
    /// they are).
    pub limits: Arc<crate::ratelimit::RateLimits>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("hash", &self.hash).field("routes", &self.routes.len()).finish_non_exhaustive()
    }
}

/// What every snapshot shares with the process: the metrics, and the
/// in-memory mirror the store and the feeds keep current.
#[derive(Clone, Debug)]
pub struct Shared {
    pub metrics: Arc<Metrics>,
    pub revocations: Arc<Revocations>,
    pub references: Arc<ReferenceTokens>,
    /// The time every decision is judged by.
    pub clock: Arc<Clock>,
    /// Where decisions and token-service actions are audited.
    pub audit: Arc<crate::audit::Audit>,
    /// Where spans are exported (`None`: tracing is off).
    pub tracing: Option<Arc<crate::trace::Tracing>>,
}

/// One listener's TLS: its server config, and the session resumption it
/// was made with (see [`crate::tls::Resumption`]).
#[derive(Clone, Debug)]
pub struct ServedTls {
    pub config: Arc<rustls::ServerConfig>,
    resumption: Arc<crate::tls::Resumption>,
    /// Who may connect (`tls::ListenerTls::clients`).
    clients: [u8; 32],
}

/// The listeners' TLS (`None`: plaintext).
#[derive(Clone, Debug, Default)]
pub struct ListenerTls {
    pub proxy: Option<ServedTls>,
    pub api: Option<ServedTls>,
    pub admin: Option<ServedTls>,
}

impl ListenerTls {
    /// The listeners' server configs. Each keeps its listener's session
    /// resumption from `prev` while who may connect is the same; any other
    /// change of its client certificates starts a new one, so no session
    /// resumes past the settings that admitted it.
    fn of(tls: &crate::config::TlsListeners, http2: bool, prev: Option<&ListenerTls>) -> Self {
        let make = |t: &Option<Arc<crate::tls::ListenerTls>>, before: Option<&Option<ServedTls>>| {
            let t = t.as_ref()?;
            let resumption = match before.and_then(Option::as_ref) {
                Some(b) if b.clients == t.clients => b.resumption.clone(),
                _ => Arc::default(),
            };
            Some(ServedTls { config: t.server_config(&resumption, http2), resumption, clients: t.clients })
        };
        ListenerTls {
            proxy: make(&tls.proxy, prev.map(|p| &p.proxy)),
            api: make(&tls.api, prev.map(|p| &p.api)),
            admin: make(&tls.admin, prev.map(|p| &p.admin)),
        }
    }
}

impl Shared {
    /// A token-service operation or a reload: counted, and audited.
    pub fn action(&self, event: crate::audit::ActionEvent) {
        self.metrics.operation(&event);
        self.audit.record(crate::audit::Event::Action(Box::new((self.clock.now_ms(), event))));
    }

    /// What a gateway's snapshots share, on the system clock.
    pub fn new(metrics: Arc<Metrics>, revocations: Arc<Revocations>, references: Arc<ReferenceTokens>) -> Shared {
        Shared { metrics, revocations, references, clock: Arc::default(), audit: Arc::default(), tracing: None }
    }
}

impl Snapshot {
    /// Compile `config`; with `prev` (the snapshot it replaces), keep what
    /// did not change: the key ring and grant cache when the issuers are
    /// the same, the upstream pool when the upstream is.
    pub fn compile(config: &Config, prev: Option<&Snapshot>, shared: &Shared) -> Snapshot {
        let auth = Authenticator::compile(
            config,
            prev.map(|p| &p.auth),
            shared.revocations.clone(),
            shared.references.clone(),
            shared.metrics.clone(),
            shared.clock.clone(),
        );
        let app_limits: Vec<_> = config.manifest.applications.iter().map(|a| a.rate_limit).collect();
        let limits = match prev {
            Some(p) if p.limits.same(&config.rate_limits, &app_limits) => p.limits.clone(),
            _ => Arc::new(crate::ratelimit::RateLimits::new(&config.rate_limits, app_limits)),
        };
        let upstreams: Arc<[UpstreamConfig]> =
            std::iter::once(config.upstream.clone()).chain(config.upstreams.iter().cloned()).collect();
        let upstream_generation = match prev {
            Some(p) if p.upstreams == upstreams => p.upstream_generation,
            Some(p) => p.upstream_generation + 1,
            None => 0,
        };
        let apps = config
            .manifest
            .applications
            .iter()
            .map(|a| AppSlot {
                name: a.application.as_str().into(),
                // Validated at load: names are header-safe.
                header: HeaderValue::from_str(&a.application).unwrap_or(HeaderValue::from_static("invalid")),
                shadow: a.mode.unwrap_or(config.mode) == crate::policy::Mode::Shadow,
            })
            .collect();
        let query_credentials = config
            .credentials
            .iter()
            .filter_map(|c| match c {
                CredentialSource::Query(q) => Some(q.clone()),
                _ => None,
            })
            .collect();
        // Serializing plain config data cannot fail; an empty list if it did.
        let manifest_json = serde_json::to_vec(&config.manifest.applications).unwrap_or_else(|_| b"[]".to_vec());
        Snapshot {
            hash: config.hash.clone(),
            audit_labels: Arc::new(crate::audit::Labels::new(&config.hash, &config.manifest.routes)),
            routes: config.manifest.routes.clone(),
            route_counters: config
                .manifest
                .routes
                .iter()
                .map(|r| shared.metrics.route_counters(&r.application, &r.template))
                .collect(),
            router: config.router.clone(),
            apps,
            auth,
            query_credentials,
            headers: HeaderPolicy::new(&config.forwarding, &config.credentials),
            forwarding: config.forwarding.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
            decision: config.decision.clone(),
            unmatched: config.unmatched,
            mode: config.mode,
            server: config.server.clone(),
            tls: ListenerTls::of(&config.tls, config.server.http2.enabled, prev.map(|p| &p.tls)),
            route_upstream: config
                .manifest
                .routes
                .iter()
                .map(|r| {
                    // Validated at load: every name is an upstream's.
                    let name = r.upstream.as_deref().or(config.manifest.applications[r.app_index].upstream.as_deref());
                    name.and_then(|n| upstreams.iter().position(|u| &*u.name == n)).unwrap_or(0)
                })
                .collect(),
            upstreams,
            upstream_generation,
            service: Arc::new(crate::service::Settings {
                manifest: Arc::new(config.manifest.clone()),
                signing: config.signing.clone(),
                registration: config.registration,
                max_token_bytes: config.max_token_bytes,
                issuers: config.keys.issuers.iter().map(|i| i.issuer.clone()).collect(),
            }),
            manifest_json: Bytes::from(manifest_json),
            jwks_json: crate::token::jwks::build_jwks(config.signing.as_ref()),
            facades: config.facades.clone(),
            console: config.console.clone(),
            feed_readers: config.revocation.feed_readers.clone().into(),
            audit: shared.audit.is_on(),
            audit_log: shared.audit.clone(),
            limits,
        }
    }

    /// Whether access-rule denials on application `app`'s routes are only
    /// recorded (its `mode`, else the gateway's).
    #[inline]
    pub fn shadows(&self, app: usize) -> bool {
        self.apps.get(app).is_some_and(|s| s.shadow)
    }

    /// Whether `peer` is a configured proxy whose `X-Forwarded-*` are kept.
    #[inline]
    pub fn is_trusted(&self, peer: std::net::IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|n| n.contains(&peer))
    }

    /// Whether `peer` may describe a request to the decision listener.
    pub fn is_decision_peer(&self, peer: std::net::IpAddr) -> bool {
        self.decision.peers.iter().any(|n| n.contains(&peer))
    }
}

/// The settings a reload cannot change (they need a restart).
#[derive(Clone, Debug, PartialEq)]
struct ProcessSettings {
    listeners: crate::config::Listeners,
    store: Option<crate::config::StoreConfig>,
    worker_threads: usize,
    revocation_follow: Option<crate::config::FeedFollow>,
    staleness: crate::revocation::Staleness,
    bootstrap: crate::config::Bootstrap,
    /// The `iss` of this gateway's own tokens: the store's mirror builds
    /// reference tokens' grants with it.
    signing_issuer: Option<String>,
    audit: crate::config::AuditConfig,
    tracing: Option<crate::config::TracingConfig>,
}

impl ProcessSettings {
    fn of(c: &Config) -> Self {
        ProcessSettings {
            listeners: c.listeners.clone(),
            store: c.store.clone(),
            worker_threads: c.server.worker_threads,
            revocation_follow: c.revocation.follow.clone(),
            staleness: c.revocation.staleness,
            bootstrap: c.bootstrap.clone(),
            signing_issuer: c.signing.as_ref().map(|s| s.issuer.clone()),
            audit: c.audit.clone(),
            tracing: c.tracing.clone(),
        }
    }

    /// The restart-only settings that differ, by their config path.
    fn differences(&self, other: &ProcessSettings) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.listeners != other.listeners {
            out.push("listeners");
        }
        if self.store != other.store {
            out.push("store");
        }
        if self.worker_threads != other.worker_threads {
            out.push("server.worker_threads");
        }
        if self.revocation_follow != other.revocation_follow {
            out.push("revocation.follow");
        }
        if self.staleness != other.staleness {
            out.push("revocation.max_staleness/when_stale");
        }
        if self.bootstrap != other.bootstrap {
            out.push("store.*.bootstrap_token_file/bootstrap_token_sha256");
        }
        if self.audit != other.audit {
            out.push("audit");
        }
        if self.tracing != other.tracing {
            out.push("tracing");
        }
        if self.signing_issuer != other.signing_issuer {
            out.push("issuers[].issuer (of the issuer with signing_keys)");
        }
        out
    }
}

/// What a reload did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The config and its files are as they were: nothing to do.
    Unchanged,
    /// A new snapshot is in force; these restart-only settings changed too
    /// and wait for a restart.
    Applied { hash: String, needs_restart: Vec<&'static str> },
}

/// The last reload that changed something or was refused: what an
/// operator asks after the fact (`GET /reload`), whichever trigger ran it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LastReload {
    /// `sighup`, `file`, `admin` or `api`.
    pub trigger: &'static str,
    /// Unix seconds.
    pub at: u64,
    /// `applied` or `refused`.
    pub result: &'static str,
    /// The config put in force (applied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Why it was refused, each problem with its path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// What reloads have left behind, read from the state itself rather than
/// remembered by each trigger.
#[derive(Default)]
struct ReloadState {
    /// The files' hash ([`Runtime::files_hash`]; empty: unreadable) of the
    /// last refused config: the watcher does not try the same files again.
    refused: Option<String>,
    last: Option<LastReload>,
    /// The restart-only settings in which the config in force differs
    /// from the ones the process started with.
    needs_restart: Vec<&'static str>,
}

/// The process's policy in force, and how it is reloaded.
pub struct Runtime {
    current: ArcSwap<Snapshot>,
    shared: Shared,
    /// Where the config came from (`None`: built in memory, no reload).
    path: Option<PathBuf>,
    /// The command line's settings, applied again at every reload.
    overrides: crate::config::Overrides,
    /// The config file and every file it reads, for the watcher.
    sources: std::sync::Mutex<Vec<PathBuf>>,
    process: std::sync::Mutex<ProcessSettings>,
    /// The JWKS refresh loop of the key ring in force.
    ring_task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    reloads: std::sync::Mutex<ReloadState>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("snapshot", &self.current.load().hash).finish_non_exhaustive()
    }
}

/// The runtime is where the token service finds its settings in force,
/// the time, and the audit.
impl crate::service::Host for Runtime {
    fn settings(&self) -> Arc<crate::service::Settings> {
        self.snapshot().service.clone()
    }

    fn now(&self) -> crate::time::UnixTime {
        crate::time::UnixTime::clamped(self.shared().clock.now())
    }

    fn record(&self, event: crate::audit::ActionEvent) {
        self.shared().action(event);
    }
}

impl Runtime {
    /// The runtime of a loaded config, read from `path` (for reloads).
    /// Starts the key ring's JWKS loop when it has remote sources (needs a
    /// Tokio runtime).
    pub fn new(config: &Config, path: Option<PathBuf>, shared: Shared) -> Arc<Runtime> {
        let snapshot = Snapshot::compile(config, None, &shared);
        shared.metrics.config_loaded(&snapshot.hash, None);
        shared.metrics.certificates(&config.tls);
        let runtime = Arc::new(Runtime {
            current: ArcSwap::from_pointee(snapshot),
            sources: std::sync::Mutex::new(watched(path.as_ref(), config)),
            path,
            overrides: config.overrides.clone(),
            process: std::sync::Mutex::new(ProcessSettings::of(config)),
            ring_task: std::sync::Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            reloads: std::sync::Mutex::new(ReloadState::default()),
            shared,
        });
        runtime.start_ring();
        runtime
    }

    /// The snapshot in force, to hold for a whole request.
    #[inline]
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The config file and the files it reads.
    pub fn sources(&self) -> Vec<PathBuf> {
        self.sources.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The hash the config's files have now (as [`Config::hash`] is made),
    /// without parsing them: what the watcher compares.
    pub fn files_hash(&self) -> Option<String> {
        files_hash(self.path.as_ref()?, &self.sources())
    }

    /// Whether the config's files, now, are what a reload should try: not
    /// the config in force, nor the files last refused (a broken file is
    /// reported once, not at every look).
    pub fn worth_reloading(&self) -> bool {
        let now = self.files_hash().unwrap_or_default();
        if now == self.current.load().hash {
            return false;
        }
        self.reloads.lock().map_or(true, |r| r.refused.as_deref() != Some(now.as_str()))
    }

    /// The last reload that applied or refused a config.
    pub fn last_reload(&self) -> Option<LastReload> {
        self.reloads.lock().ok().and_then(|r| r.last.clone())
    }

    /// The restart-only settings the config in force changed (they wait
    /// for a restart).
    pub fn needs_restart(&self) -> Vec<&'static str> {
        self.reloads.lock().map(|r| r.needs_restart.clone()).unwrap_or_default()
    }

    /// Where the config is read from, if it is.
    pub fn path(&self) -> Option<&PathBuf> {
        self.path.as_ref()
    }

    fn start_ring(&self) {
        let keys = self.current.load().auth.keys().clone();
        let Ok(mut task) = self.ring_task.lock() else { return };
        if let Some(old) = task.take() {
            old.abort();
        }
        if keys.is_remote() {
            *task = Some(tokio::spawn(keys.run()));
        }
    }

    /// Load the config file again and, if it or a file it reads changed,
    /// compile it and put it in force. On any problem the snapshot in force
    /// stays, every problem is logged with its path, and the failure is
    /// counted.
    pub async fn reload(&self) -> Result<Reloaded, ConfigErrors> {
        self.reload_by("api").await
    }

    /// [`Runtime::reload`], audited as triggered by `trigger` (`sighup`,
    /// `file`, `admin`).
    pub async fn reload_by(&self, trigger: &'static str) -> Result<Reloaded, ConfigErrors> {
        let result = self.reload_now().await;
        let (outcome, hash) = match &result {
            Ok(Reloaded::Applied { hash, .. }) => ("ok", Some(hash.clone())),
            Ok(Reloaded::Unchanged) => ("unchanged", None),
            Err(_) => ("refused", None),
        };
        let last = match &result {
            Ok(Reloaded::Applied { hash, .. }) => Some(("applied", Some(hash.clone()), Vec::new())),
            Err(e) => Some(("refused", None, e.0.clone())),
            Ok(Reloaded::Unchanged) => None,
        };
        if let Some((result, hash, problems)) = last
            && let Ok(mut r) = self.reloads.lock()
        {
            let at = self.shared.clock.now();
            r.last = Some(LastReload { trigger, at, result, hash, problems });
        }
        self.shared.action(crate::audit::ActionEvent {
            action: crate::audit::Action::Reload,
            kind: None,
            result: outcome,
            by: Some(trigger.to_string()),
            by_subject: None,
            target: None,
            config_hash: hash,
        });
        result
    }

    async fn reload_now(&self) -> Result<Reloaded, ConfigErrors> {
        let _one = self.reloading.lock().await;
        let Some(path) = &self.path else {
            return Err(ConfigErrors(vec!["(config): built in memory; there is no file to reload".into()]));
        };
        let metrics = &self.shared.metrics;
        let prev = self.current.load_full();
        // Reading files, parsing keys and compiling block: off the runtime
        // threads (with one worker thread, the data plane would stall).
        let (file, before, shared) = (path.clone(), prev.clone(), self.shared.clone());
        let overrides = self.overrides.clone();
        let sources = self.sources();
        let (tried, compiled) = tokio::task::spawn_blocking(move || {
            // The files as they are before they are read: what a refusal
            // is remembered by.
            let tried = files_hash(&file, &sources).unwrap_or_default();
            let compiled = Config::load_with(&file, &overrides).map(|config| {
                let next = (config.hash != before.hash).then(|| Snapshot::compile(&config, Some(&before), &shared));
                (config, next)
            });
            (tried, compiled)
        })
        .await
        .unwrap_or_else(|_| (String::new(), Err(ConfigErrors(vec!["(config): the reload task failed".into()]))));
        let (config, next) = match compiled {
            Ok(c) => c,
            Err(e) => {
                for problem in &e.0 {
                    tracing::error!(config = %path.display(), "reload refused, the config in force stays: {problem}");
                }
                metrics.reload_result(false);
                if let Ok(mut r) = self.reloads.lock() {
                    r.refused = Some(tried);
                }
                return Err(e);
            }
        };
        if let Ok(mut r) = self.reloads.lock() {
            r.refused = None;
        }
        if let Ok(mut s) = self.sources.lock() {
            *s = watched(Some(path), &config);
        }
        let Some(next) = next else {
            return Ok(Reloaded::Unchanged);
        };
        for w in &config.warnings {
            tracing::warn!(config = %path.display(), "{w}");
        }
        if config.mode == crate::policy::Mode::Shadow && prev.mode != crate::policy::Mode::Shadow {
            tracing::warn!(
                "shadow mode from now on: requests the access rules deny are forwarded (without identity) and only recorded"
            );
        }
        crate::telemetry::set_format(config.log.format);
        let needs_restart = match self.process.lock() {
            Ok(p) => p.differences(&ProcessSettings::of(&config)),
            Err(_) => Vec::new(),
        };
        for setting in &needs_restart {
            tracing::warn!(setting, "changed in the config; it takes effect at the next restart");
        }
        if let Ok(mut r) = self.reloads.lock() {
            r.needs_restart = needs_restart.clone();
        }
        let ring_changed = !Arc::ptr_eq(next.auth.keys(), prev.auth.keys());
        for gone in prev.apps.iter().filter(|a| !next.apps.iter().any(|n| n.name == a.name)) {
            metrics.forget_app(&gone.name);
        }
        let kept = |r: &Route| next.routes.iter().any(|n| n.template == r.template && n.application == r.application);
        for gone in prev.routes.iter().filter(|r| !kept(r)) {
            metrics.forget_route(&gone.application, &gone.template);
        }
        let hash = next.hash.clone();
        self.current.store(Arc::new(next));
        if ring_changed {
            self.start_ring();
        }
        metrics.config_loaded(&hash, Some(&prev.hash));
        metrics.certificates(&config.tls);
        metrics.reload_result(true);
        tracing::info!(config = %path.display(), hash = %hash, "config reloaded");
        Ok(Reloaded::Applied { hash, needs_restart })
    }
}

impl Runtime {
    /// Stop the key ring's JWKS loop (at shutdown).
    pub fn stop(&self) {
        if let Ok(mut task) = self.ring_task.lock()
            && let Some(t) = task.take()
        {
            t.abort();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The hash of the config file at `path` and the files it reads
/// (`sources`, the config file first), as [`Config::hash`] is made.
fn files_hash(path: &Path, sources: &[PathBuf]) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    Some(crate::config::fingerprint(&text, &crate::config::read_all(sources.get(1..).unwrap_or_default())))
}

/// The config file (if any) and every file it reads.
fn watched(path: Option<&PathBuf>, config: &Config) -> Vec<PathBuf> {
    path.into_iter().cloned().chain(config.sources.iter().cloned()).collect()
}
