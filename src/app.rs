//! Process layout: bind the listeners, wire the gateway, run until told to
//! stop. Used by `serve`, `demo` and the integration tests alike.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admin::{self, AdminState};
use crate::api;
use crate::auth::Authenticator;
use crate::auth::reference::ReferenceTokens;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::proxy::{Gateway, server};
use crate::revocation::Revocations;
use crate::store::{Mirror, Store};

/// A running gateway.
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub api_addr: Option<SocketAddr>,
    pub registry: Registry,
    pub revocations: Arc<Revocations>,
    pub store: Option<Store>,
    /// The first admin token's secret, when this start created it: print it
    /// once, then forget it.
    pub bootstrap_token: Option<String>,
    /// Crafter's default access tokens, (application, id), when this start
    /// created them: print once.
    pub crafter_tokens: Vec<(String, String)>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// Endless background loops, aborted at shutdown.
    background: Vec<JoinHandle<()>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("bootstrap: {0}")]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

/// Bind every listener and start serving.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let registry = Registry::new();
    let apps: Vec<String> = config.manifest.applications.iter().map(|a| a.application.clone()).collect();
    let metrics = Arc::new(Metrics::register(&registry, &apps)?);
    let revocations = Arc::new(Revocations::new(config.revocation.staleness));
    // Keys from JWKS URLs arrive in the background; readiness waits for them.
    let keys_loaded = Arc::new(AtomicBool::new(false));
    let (stop, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    // The store first: a gateway that cannot load its revocations must not
    // serve (fail closed), and readiness means they are loaded.
    let mut background = Vec::new();
    let mirror = Arc::new(Mirror {
        revocations: revocations.clone(),
        references: Arc::new(ReferenceTokens::default()),
        issuer: config.signing.as_ref().map_or_else(|| "narrowgate".to_string(), |s| s.issuer.clone()),
    });
    let mut bootstrap_token = None;
    let mut crafter_tokens = Vec::new();
    let store = match &config.store {
        Some(cfg) => {
            // Never creates a store the config does not ask to create: a
            // missing one stops the start (fail closed).
            let (store, created) = Store::open(cfg).await?;
            background.push(store.mirror(mirror.clone(), cfg.resync_interval).await?);
            background.push(store.watch());
            (Some(store), created)
        }
        None => (None, false),
    };
    let (store, created) = store;
    // Every token is minted and revoked by the one token service.
    let service = Arc::new(api::TokenService::new(&config, store.clone(), mirror.clone()));
    if created {
        let first = crate::bootstrap::first_start(&service, &config).await?;
        bootstrap_token = first.admin_token;
        crafter_tokens = first.crafter_tokens;
    }

    // An enforce-only gateway follows an issuer's revocation feed; it is not
    // ready until the first snapshot is in.
    if let Some(follow) = &config.revocation.follow {
        let source = crate::revocation::feed::Source { urls: follow.urls.clone(), token: follow.token.clone() };
        background.push(crate::revocation::feed::follow(source, revocations.clone()));
    }

    let proxy_listener = bind(config.listeners.proxy).await?;
    let admin_listener = match config.listeners.admin {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let proxy_addr =
        proxy_listener.local_addr().map_err(|source| StartError::Bind { addr: config.listeners.proxy, source })?;
    let api_listener = match config.listeners.api {
        Some(a) => Some(bind(a).await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());
    let api_addr = api_listener.as_ref().and_then(|l| l.local_addr().ok());
    if !config.enforce {
        tracing::warn!("enforcement is OFF: every request is forwarded unchecked (for measurements only)");
    }
    let limits = config.server.clone();
    // One authenticator (and so one cache) for the proxy and the token service.
    let auth =
        Arc::new(Authenticator::from_config(&config, revocations.clone(), mirror.references.clone(), metrics.clone()));
    let api_state =
        api::ApiState::new(auth.clone(), service, config.facades.clone(), config.revocation.feed_readers.clone());
    let gateway = Arc::new(Gateway::with_auth(config, metrics.clone(), auth.clone()));

    let mut rx = stop_rx.clone();
    tasks.push(tokio::spawn(server::run(proxy_listener, gateway, limits, async move {
        let _ = rx.wait_for(|s| *s).await;
    })));
    if let Some(listener) = admin_listener {
        let (loaded, store, revs) = (keys_loaded.clone(), store.clone(), revocations.clone());
        let check: admin::ReadyCheck = Arc::new(move || {
            if !loaded.load(Ordering::Acquire) {
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
        let (m, revs) = (metrics.clone(), revocations.clone());
        let before_scrape: admin::BeforeScrape = Arc::new(move || m.observe_revocations(&revs));
        let app = admin::app(AdminState { registry: registry.clone(), ready: check, before_scrape });
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            });
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "admin listener failed");
            }
        }));
    }
    if let Some(listener) = api_listener {
        let app = api::app(api_state);
        let mut rx = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            });
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "api listener failed");
            }
        }));
    }
    // Config, store and configured keys were loaded before we got here, and
    // the proxy listens. Keys from JWKS URLs arrive in the background:
    // ready once every issuer's set has loaded.
    let keys = auth.keys().clone();
    if keys.is_remote() {
        background.push(tokio::spawn(keys.clone().run()));
        let loaded = keys_loaded.clone();
        background.push(tokio::spawn(async move {
            keys.wait_loaded().await;
            loaded.store(true, Ordering::Release);
            tracing::info!("verification keys loaded from the issuers' JWKS");
        }));
    } else {
        keys_loaded.store(true, Ordering::Release);
    }
    tracing::info!(proxy = %proxy_addr, admin = ?admin_addr, api = ?api_addr, "narrowgate is serving");
    Ok(Running {
        proxy_addr,
        admin_addr,
        api_addr,
        registry,
        revocations,
        store,
        bootstrap_token,
        crafter_tokens,
        stop,
        tasks,
        background,
    })
}

impl Running {
    /// Stop accepting, drain open connections, and wait for the listeners.
    pub async fn shutdown(self) {
        for b in &self.background {
            b.abort();
        }
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
