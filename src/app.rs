//! Process layout: bind the listeners, open the store, compile the policy
//! snapshot, run until told to stop, and drain. Used by `serve`, `demo`
//! and the integration tests alike.
//!
//! Start-up order: every listener is bound before anything is written, so
//! a second gateway on taken ports fails before it touches a store. Then
//! the store and its mirror, the first start's tokens if the store was
//! just created, the runtime (policy snapshot), and the servers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::api;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::Gateway;
use crate::runtime::{Runtime, Shared};
use crate::server;
use crate::store::Revocations;
use crate::store::{Mirror, Store};

/// A running gateway.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub api_addr: Option<SocketAddr>,
    /// The decision listener's address, when it is on.
    pub decision_addr: Option<SocketAddr>,
    pub registry: Registry,
    pub revocations: Arc<Revocations>,
    pub store: Option<Store>,
    pub runtime: Arc<Runtime>,
    /// The first admin token's secret, when this start generated it: shown
    /// once, and only to a reader at a terminal (`bootstrap::announce`),
    /// then forgotten.
    pub bootstrap_token: Option<String>,
    /// Crafter's default access tokens, (application, id), when this start
    /// created them: shown once, likewise.
    pub crafter_tokens: Vec<(String, String)>,
    /// Readiness is false once set.
    draining: Arc<AtomicBool>,
    /// Set by the admin listener's `POST /shutdown`.
    shutdown_requested: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Endless background loops, aborted at shutdown.
    background: Background,
}

/// Background loops (store watch and resync, feeds, the file watcher),
/// aborted when dropped: at shutdown, and when a start fails half-way.
#[derive(Default)]
struct Background(Vec<JoinHandle<()>>);

impl Background {
    fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the {listener} listener cannot listen on {addr}; choose another address (listeners.{listener} in the config, or `narrowgate demo --{listener}`)"
    )]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    // Each message says what failed and names the setting or the file; the
    // cause is its source, shown once after it (`error: …: No such file or
    // directory`), never also inside the message.
    #[error("metrics")]
    Metrics(#[from] prometheus::Error),
    /// The store could not be opened or read; `setting` says where it is.
    #[error("the store ({setting})")]
    Store {
        setting: &'static str,
        #[source]
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    Bootstrap(#[from] crate::service::bootstrap::BootstrapError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Tracing(#[from] crate::trace::TracingError),
    #[error("a proxy worker could not start")]
    Worker(#[source] std::io::Error),
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let l = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { listener, addr, source })?;
    let bound = l.local_addr().map_err(|source| StartError::Bind { listener, addr, source })?;
    Ok((l, bound))
}

/// The proxy's listening sockets: one, or for several workers one per
/// worker, all on one address with `SO_REUSEPORT` so the kernel spreads
/// connections over them. The first is bound *without* `SO_REUSEPORT`, so
/// a port another process holds — even one sharing it with
/// `SO_REUSEPORT` — is an error, never a port shared with a stranger;
/// only then does it allow sharing (before it listens, so it joins the
/// group), and the others bind beside it. Nothing is bound and released:
/// the port is held from the first bind on.
fn bind_workers(addr: SocketAddr, workers: usize) -> Result<(Vec<std::net::TcpListener>, SocketAddr), StartError> {
    let err = |source| StartError::Bind { listener: "proxy", addr, source };
    let socket = |reuseport: bool| {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.set_reuseport(reuseport).map_err(err)?;
        Ok::<_, StartError>(socket)
    };
    // Listen here (nothing is accepted before the worker runs), then hand
    // the socket to the worker's runtime.
    let listen = |socket: tokio::net::TcpSocket| socket.listen(4096).and_then(|l| l.into_std()).map_err(err);
    let first = socket(false)?;
    first.bind(addr).map_err(err)?;
    let bound = first.local_addr().map_err(err)?;
    first.set_reuseport(true).map_err(err)?;
    let mut listeners = vec![listen(first)?];
    for _ in 1..workers {
        let next = socket(true)?;
        next.bind(bound).map_err(err)?;
        listeners.push(listen(next)?);
    }
    Ok((listeners, bound))
}

/// Serve the proxy on `listeners`, one worker each: a thread with a
/// current-thread runtime of its own, so a request never leaves the thread
/// that accepted its connection (its upstream connections are the
/// worker's own too). Returns a task per worker on the calling runtime
/// that ends when the worker has drained.
fn spawn_workers(
    listeners: Vec<std::net::TcpListener>,
    gateway: &Arc<Gateway>,
    stop: &watch::Receiver<bool>,
    runtimes: &mut Vec<tokio::runtime::Handle>,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut tasks = Vec::new();
    for (k, listener) in listeners.into_iter().enumerate() {
        let addr = listener.local_addr().map_err(StartError::Worker)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(StartError::Worker)?;
        runtimes.push(rt.handle().clone());
        let (gateway, mut stop) = (gateway.clone(), stop.clone());
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("proxy-worker-{}", k + 1))
            .spawn(move || {
                crate::proxy::upstream::set_worker_slot(k + 1);
                rt.block_on(async move {
                    let listener = match listener.set_nonblocking(true).and_then(|()| TcpListener::from_std(listener)) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(worker = k + 1, %addr, error = %e, "a proxy worker cannot listen");
                            return;
                        }
                    };
                    gateway
                        .serve(listener, async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                });
                drop(done);
            })
            .map_err(StartError::Worker)?;
        tasks.push(tokio::spawn(async move {
            let _ = finished.await;
        }));
    }
    Ok(tasks)
}

/// Bind every listener and start serving `config`.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_from(config, None).await
}

/// [`start`], with the file the config was read from, so it can reload.
pub async fn start_from(config: Config, path: Option<PathBuf>) -> Result<Running, StartError> {
    // Every listener first: nothing is written before all are ours.
    let workers = config.server.workers();
    let (proxy_listener, proxy_addr) = if workers > 1 {
        let (listeners, addr) = bind_workers(config.listeners.proxy, workers)?;
        (Err(listeners), addr)
    } else {
        let (listener, addr) = bind("proxy", config.listeners.proxy).await?;
        (Ok(listener), addr)
    };
    let admin_listener = match config.listeners.admin {
        Some(a) => Some(bind("admin", a).await?),
        None => None,
    };
    let api_listener = match config.listeners.api {
        Some(a) => Some(bind("api", a).await?),
        None => None,
    };
    let decision_listener = match config.listeners.decision {
        Some(a) => Some(bind("decision", a).await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|(_, a)| *a);
    let api_addr = api_listener.as_ref().map(|(_, a)| *a);
    let decision_addr = decision_listener.as_ref().map(|(_, a)| *a);

    let registry = Registry::new();
    let metrics = Arc::new(Metrics::register(&registry)?);
    // The one clock every decision and decision-changing timer reads.
    let clock = Arc::new(crate::clock::Clock::default());
    let revocations = Arc::new(Revocations::new(config.revocation.staleness, clock.clone()));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    // The audit log before the store: a store created by this start and
    // then abandoned by a failure would never get its first admin token.
    let audit = Arc::new(crate::audit::Audit::start(&config.audit, metrics.audit_dropped.clone())?);
    let tracing = match &config.tracing {
        Some(t) => Some(crate::trace::Tracing::start(t, metrics.trace_spans.clone())?),
        None => None,
    };

    // The store: a gateway that cannot load its revocations must not serve
    // (fail closed), and readiness means they are loaded.
    let mut background = Background::default();
    let mirror = Arc::new(Mirror::of(&config, revocations.clone()));
    let (store, created) = match &config.store {
        Some(cfg) => {
            let named = |source| StartError::Store { setting: cfg.backend.setting(), source };
            // Never creates a store the config does not ask to create: a
            // missing one stops the start (fail closed).
            let (store, created) = Store::open(cfg).await.map_err(named)?;
            let store = store.instrumented(metrics.store.clone());
            background.push(store.mirror(mirror.clone(), cfg.resync_interval).await.map_err(named)?);
            background.push(store.watch());
            (Some(store), created)
        }
        None => (None, false),
    };
    // An enforce-only gateway follows an issuer's revocation feed; it is not
    // ready until the first snapshot is in.
    if let Some(follow) = &config.revocation.follow {
        let source = crate::revocation::feed::Source {
            urls: follow.urls.clone(),
            ca: follow.ca.clone(),
            token: follow.token.clone(),
            max_ids: follow.max_ids,
        };
        background.push(crate::revocation::feed::follow(source, revocations.clone()));
    }

    // The policy in force, swapped by reloads.
    let mut shared = Shared::new(metrics.clone(), revocations.clone(), mirror.references.clone());
    shared.audit = audit;
    shared.tracing = tracing;
    shared.clock = clock;
    let runtime = Runtime::new(&config, path, shared);
    // Every token is minted and revoked by the one token service.
    let service = Arc::new(crate::service::TokenService::new(runtime.clone(), store.clone(), mirror.clone()));
    let mut bootstrap_token = None;
    let mut crafter_tokens = Vec::new();
    if created {
        let first = crate::service::bootstrap::first_start(&service, &config).await?;
        bootstrap_token = first.admin_token;
        crafter_tokens = first.crafter_tokens;
    }
    if config.mode == crate::policy::Mode::Shadow {
        tracing::warn!(
            "shadow mode: requests the access rules deny are forwarded (without identity) and only recorded"
        );
    }

    let gateway = Arc::new(Gateway::on(runtime.clone()));
    let (proxy_drain, api_drain, admin_drain, decision_drain) =
        (gateway.drain().clone(), server::Drain::default(), server::Drain::default(), server::Drain::default());
    if let Some((listener, _)) = decision_listener {
        let mut rx = stop_rx.clone();
        let stopped = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tasks.push(tokio::spawn(gateway.clone().serve_decisions(listener, decision_drain.clone(), stopped)));
    }
    // The proxy workers' runtimes, whose tasks a scrape counts.
    let mut workers = Vec::new();
    match proxy_listener {
        Ok(listener) => {
            let mut rx = stop_rx.clone();
            tasks.push(tokio::spawn(gateway.serve(listener, async move {
                let _ = rx.wait_for(|s| *s).await;
            })));
        }
        Err(listeners) => tasks.extend(spawn_workers(listeners, &gateway, &stop_rx, &mut workers)?),
    }

    let draining = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_requested) = watch::channel(false);
    if let Some((listener, _)) = admin_listener {
        let (rt, store, revs, drain) = (runtime.clone(), store.clone(), revocations.clone(), draining.clone());
        let check: admin::ReadyCheck = Arc::new(move || {
            if drain.load(Ordering::Acquire) {
                return Err("draining: shutting down");
            }
            if !rt.snapshot().auth.keys().is_loaded() {
                return Err("verification keys not loaded yet");
            }
            if store.as_ref().is_some_and(Store::is_lost) {
                return Err("the token store was removed or replaced");
            }
            if !revs.is_loaded() {
                return Err("the revocation set has not been loaded yet");
            }
            Ok(())
        });
        let (m, revs, rt) = (metrics.clone(), revocations.clone(), runtime.clone());
        let drains = (proxy_drain.clone(), api_drain.clone(), admin_drain.clone(), decision_drain.clone());
        let (has_api, has_decision) = (api_listener.is_some(), decision_addr.is_some());
        let before_scrape: admin::BeforeScrape = Arc::new(move || {
            m.observe_revocations(&revs);
            m.observe_limits(&rt.snapshot().limits);
            m.observe_clock(&rt.shared().clock);
            let control = tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks());
            m.observe_tasks(control, workers.iter().map(|h| h.metrics().num_alive_tasks()).sum());
            let (proxy, api, admin, decision) = &drains;
            let failed = |d: &server::Drain| d.handshake_failures.load(std::sync::atomic::Ordering::Relaxed);
            m.observe_connections("proxy", proxy.connections.len(), Some(proxy.tunnels.len()), failed(proxy));
            if has_api {
                m.observe_connections("api", api.connections.len(), None, failed(api));
            }
            m.observe_connections("admin", admin.connections.len(), None, failed(admin));
            if has_decision {
                m.observe_connections("decision", decision.connections.len(), None, failed(decision));
            }
        });
        let app = admin::app(AdminState {
            registry: registry.clone(),
            ready: check,
            before_scrape,
            runtime: runtime.clone(),
            shutdown: Arc::new(shutdown_tx),
        });
        let tls = |s: &crate::runtime::Snapshot| s.tls.admin.as_ref().map(|t| t.config.clone());
        tasks.push(serve_axum(listener, app, runtime.clone(), tls, admin_drain, stop_rx.clone()));
    }
    if let Some((listener, _)) = api_listener {
        let console = crate::console::Console::new(runtime.clone(), service.clone());
        background.push(tokio::spawn(console.follow_revocations()));
        let state = api::ApiState::new(runtime.clone(), service).stopping_on(stop_rx.clone());
        let app = api::app(state, crate::console::router(console));
        let tls = |s: &crate::runtime::Snapshot| s.tls.api.as_ref().map(|t| t.config.clone());
        tasks.push(serve_axum(listener, app, runtime.clone(), tls, api_drain, stop_rx.clone()));
    }
    if runtime.path().is_some() {
        background.push(tokio::spawn(crate::reload::watch(runtime.clone())));
    }
    // Rate limiters forget the keys whose buckets are full again, and the
    // revocation set the ids whose tokens have expired.
    let (rt, revs) = (runtime.clone(), revocations.clone());
    background.push(tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
        loop {
            every.tick().await;
            let limits = rt.snapshot().limits.clone();
            let (revs, now) = (revs.clone(), crate::time::UnixTime::clamped(rt.shared().clock.now()));
            let _ = tokio::task::spawn_blocking(move || {
                if limits.any() {
                    limits.sweep();
                }
                revs.sweep(now);
            })
            .await;
        }
    }));
    tracing::info!(
        proxy = %proxy_addr,
        admin = %admin_addr.map_or("-".into(), |a| a.to_string()),
        api = %api_addr.map_or("-".into(), |a| a.to_string()),
        decision = %decision_addr.map_or("-".into(), |a| a.to_string()),
        "narrowgate is serving"
    );
    Ok(Running {
        proxy_addr,
        admin_addr,
        api_addr,
        decision_addr,
        registry,
        revocations,
        store,
        runtime,
        bootstrap_token,
        crafter_tokens,
        draining,
        shutdown_requested,
        stop,
        tasks,
        background,
    })
}

/// Serve an axum app (the api or admin listener) like the proxy: the same
/// header limits and timeouts, idle timeout and drain; its TLS is `tls` of
/// the snapshot in force when a connection is accepted.
fn serve_axum(
    listener: TcpListener,
    app: axum::Router,
    runtime: Arc<Runtime>,
    tls: fn(&crate::runtime::Snapshot) -> Option<Arc<rustls::ServerConfig>>,
    drain: server::Drain,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let rt = runtime.clone();
    let tls = move || tls(&rt.snapshot());
    let limits = move || server::Limits::from(&runtime.snapshot().server);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        server::serve_router(listener, tls, limits, app, drain, stopped).await;
    })
}

impl Running {
    /// Resolves when the admin listener is asked to shut down
    /// (`POST /shutdown`, for Jobs whose sidecar must exit with the app).
    /// Never resolves when nobody can ask: without an admin listener the
    /// request's sender does not exist, and a closed channel is not a
    /// request to stop (it once made every admin-less gateway drain and
    /// exit as it started).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown_requested.clone();
        if rx.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The drain: readiness false at once; keep accepting for the
    /// snapshot's `drain_delay` (so load balancers stop sending); then stop
    /// accepting, close keep-alive connections after their current request,
    /// and let requests and tunnels finish within `shutdown_grace`.
    pub async fn drain(self) {
        self.draining.store(true, Ordering::Release);
        let delay = self.runtime.snapshot().server.drain_delay;
        tracing::info!(
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "draining: not ready; still accepting for the drain delay"
        );
        tokio::time::sleep(delay).await;
        tracing::info!("draining: no longer accepting; waiting for requests in flight");
        self.shutdown().await;
    }

    /// Stop accepting, let requests in flight finish (within the grace
    /// period), and stop the background work.
    pub async fn shutdown(self) {
        self.draining.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let grace = self.runtime.snapshot().server.shutdown_grace;
        let aborts: Vec<_> = self.tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = async {
            for t in self.tasks {
                let _ = t.await;
            }
        };
        // The proxy bounds itself by the grace period; the other listeners
        // are bounded here.
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("listeners still busy after the grace period; stopping them");
            for a in aborts {
                a.abort();
            }
        }
        self.runtime.stop();
        // What was decided is written before the process goes.
        self.runtime.shared().audit.flush(std::time::Duration::from_secs(2)).await;
        // And the spans of it are exported (off the runtime's threads: the
        // exporter's thread may need this runtime to send them).
        if let Some(t) = self.runtime.shared().tracing.clone() {
            let _ = tokio::task::spawn_blocking(move || t.shutdown(std::time::Duration::from_secs(2))).await;
        }
        drop(self.background);
    }
}
