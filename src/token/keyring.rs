//! The verification keys in force: the configured ones, plus those an
//! enforce-only gateway fetches from its issuers' JWKS URLs.
//!
//! Verification reads the current [`KeySet`] through an [`ArcSwap`] — one
//! atomic load, no lock, no I/O. Fetching happens beside it:
//! - a background loop fetches every source at start (retrying every
//!   `min_refetch` until each has loaded once) and then every `refresh`;
//! - a token naming an unknown `kid` asks for a refetch ([`KeyRing::refetch`]),
//!   single-flight and at most once per `min_refetch`, so a key rotated in on
//!   the issuer is picked up by the first request that uses it, and a flood
//!   of made-up kids costs the issuer one request per interval;
//! - a failed fetch keeps the last good keys of that source.
//!
//! Until every source has loaded once the ring is not ready, and a token it
//! cannot decide gets `keys_unavailable` (503), not 401.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use jsonwebtoken::Algorithm;
use tokio::sync::watch;

use crate::clock::Clock;

use super::keys::{JwksKeys, KeySet, VerificationKey, keys_from_jwks};

/// The largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// How long one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);

/// What a key ring reports, by issuer name.
#[derive(Clone, Debug)]
pub struct JwksMetrics {
    /// Keys skipped as unusable.
    pub skipped: prometheus::IntCounterVec,
    /// Fetches by result (`ok`, `error`).
    pub fetches: prometheus::IntCounterVec,
    /// Unix time of the last good fetch.
    pub last_success: prometheus::GaugeVec,
}

/// One issuer's JWKS URL.
#[derive(Clone, Debug)]
pub struct JwksSource {
    /// Index of the issuer in [`KeySet::issuers`].
    pub issuer: usize,
    /// The issuer's name, for logs (the URL could carry credentials).
    pub name: String,
    pub url: String,
    /// PEM: the CAs an `https://` URL's certificate must chain to (`None`:
    /// the system's roots).
    pub ca: Option<Vec<u8>>,
    /// Empty with `discovery`: the provider's own.
    pub algorithms: Vec<Algorithm>,
    /// `url` is an OpenID Connect discovery document, whose `jwks_uri`
    /// holds the keys (and whose `issuer` must be the issuer's own).
    pub discovery: bool,
    pub refresh: Duration,
    pub min_refetch: Duration,
}

/// Where an issuer's OpenID Connect discovery document is (OpenID Connect
/// Discovery 1.0 §4: a trailing `/` of the issuer is dropped first).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// What the gateway reads of a discovery document.
#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    id_token_signing_alg_values_supported: Option<Vec<String>>,
}

impl Discovery {
    /// The document at `url`, checked against the configured `issuer`:
    /// the same issuer exactly (a provider naming another is the mix-up
    /// attack, or a misconfiguration: either way its keys are not this
    /// issuer's), a `jwks_uri` no less secure than the document's own URL.
    fn read(body: &[u8], url: &str, issuer: &str) -> Result<Discovery, String> {
        let doc: Discovery =
            super::encoding::from_object(body).map_err(|_| "not an OpenID discovery document".to_string())?;
        if doc.issuer != issuer {
            return Err("the discovery document names another issuer".into());
        }
        let secure = doc.jwks_uri.starts_with("https://");
        if !(secure || url.starts_with("http://") && doc.jwks_uri.starts_with("http://")) {
            return Err("the discovery document's jwks_uri is not an https:// URL".into());
        }
        Ok(doc)
    }

    /// The algorithms keys may be used with: the configured ones the
    /// provider also lists, else the provider's (asymmetric) ones, else
    /// any asymmetric one by the key's own `alg`.
    fn algorithms(&self, configured: &[Algorithm]) -> Result<Vec<Algorithm>, String> {
        let listed: Option<Vec<Algorithm>> = self.id_token_signing_alg_values_supported.as_ref().map(|names| {
            names.iter().filter_map(|n| super::keys::parse_algorithm(n)).filter(|a| !super::keys::is_hmac(*a)).collect()
        });
        let algorithms = match (configured.is_empty(), listed) {
            // Named nowhere: every asymmetric one narrowgate verifies (each
            // key then by its own `alg`).
            (true, None) => super::keys::ASYMMETRIC.to_vec(),
            (true, Some(listed)) => listed,
            (false, None) => configured.to_vec(),
            (false, Some(listed)) => configured.iter().copied().filter(|a| listed.contains(a)).collect(),
        };
        if algorithms.is_empty() {
            return Err("none of the algorithms allowed is among those the provider signs with".into());
        }
        Ok(algorithms)
    }
}

#[derive(Default)]
struct SourceState {
    /// The last good keys; kept when a later fetch fails.
    keys: Option<Vec<VerificationKey>>,
    /// Whether the most recent fetch failed.
    failing: bool,
}

/// The keys in force and where the remote ones come from.
pub struct KeyRing {
    current: ArcSwap<KeySet>,
    /// The configured keys, the base every fetched set is added to.
    base: KeySet,
    sources: Vec<JwksSource>,
    state: Mutex<Vec<SourceState>>,
    /// Held while fetching: concurrent refetches wait for the one in flight.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    /// By source: its HTTP client (its own CA bundle, if it has one);
    /// `None` when it could not be built (that source fetches nothing).
    clients: Vec<Option<reqwest::Client>>,
    /// `true` once every source has loaded at least once.
    loaded: watch::Sender<bool>,
    /// Bumped whenever a key is withdrawn: grants cached under an older
    /// generation are verified again.
    generation: Arc<AtomicU64>,
    /// Keys skipped, fetches and last successes, by issuer name.
    metrics: Option<JwksMetrics>,
    /// What the refetch backoff is timed by.
    clock: Arc<Clock>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("sources", &self.sources.len()).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A ring of fixed keys (and remote `sources`, if any).
    pub fn new(base: KeySet, sources: Vec<JwksSource>) -> Arc<Self> {
        Self::counting(base, sources, None, Arc::default())
    }

    /// [`KeyRing::new`], counting fetches, their results and the keys
    /// skipped as unusable in `metrics` (labelled by issuer name), its
    /// refetch backoff timed by `clock`.
    pub fn counting(
        base: KeySet,
        sources: Vec<JwksSource>,
        metrics: Option<JwksMetrics>,
        clock: Arc<Clock>,
    ) -> Arc<Self> {
        let clients = sources
            .iter()
            .map(|s| {
                crate::tls::fetch_client(s.ca.as_deref(), reqwest::Client::builder().timeout(FETCH_TIMEOUT))
                    .inspect_err(|e| tracing::error!(issuer = %s.name, error = %e, "cannot fetch this issuer's JWKS"))
                    .ok()
            })
            .collect();
        let state = sources.iter().map(|_| SourceState::default()).collect();
        Arc::new(KeyRing {
            current: ArcSwap::from_pointee(base.clone()),
            base,
            loaded: watch::Sender::new(sources.is_empty()),
            sources,
            state: Mutex::new(state),
            fetching: tokio::sync::Mutex::new(None),
            clients,
            generation: Arc::default(),
            metrics,
            clock,
        })
    }

    /// The keys in force now.
    #[inline]
    pub fn current(&self) -> Guard<Arc<KeySet>> {
        self.current.load()
    }

    /// The key generation, shared with the grant cache.
    pub fn generation(&self) -> &Arc<AtomicU64> {
        &self.generation
    }

    /// Whether any keys come from a JWKS URL.
    pub fn is_remote(&self) -> bool {
        !self.sources.is_empty()
    }

    /// Whether some source has never loaded or failed its last fetch: a
    /// token whose key is unknown cannot be decided.
    pub fn degraded(&self) -> bool {
        self.state.lock().map_or(true, |s| s.iter().any(|st| st.keys.is_none() || st.failing))
    }

    /// Whether every source has loaded at least once.
    pub fn is_loaded(&self) -> bool {
        *self.loaded.borrow()
    }

    /// Resolves once every source has loaded at least once.
    pub async fn wait_loaded(&self) {
        let mut rx = self.loaded.subscribe();
        let _ = rx.wait_for(|l| *l).await;
    }

    /// Fetch every source again, unless a fetch started less than the
    /// smallest `min_refetch` ago (a fetch in flight is waited for, not
    /// repeated). Returns when the keys are as fresh as they will get.
    pub async fn refetch(&self) {
        if !self.is_remote() {
            return;
        }
        let min = self.sources.iter().map(|s| s.min_refetch).min().unwrap_or_default();
        let mut last = self.fetching.lock().await;
        let now = self.clock.instant();
        if last.is_some_and(|t| now.saturating_duration_since(t) < min) {
            return;
        }
        *last = Some(now);
        self.fetch_all().await;
    }

    /// Keep the keys fresh until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        if !self.is_remote() {
            return;
        }
        let refresh = self.sources.iter().map(|s| s.refresh).min().unwrap_or(Duration::from_secs(300));
        let retry = self.sources.iter().map(|s| s.min_refetch).min().unwrap_or(Duration::from_secs(10));
        loop {
            {
                let mut last = self.fetching.lock().await;
                *last = Some(self.clock.instant());
                self.fetch_all().await;
            }
            let wait = if self.degraded() { retry } else { refresh };
            tokio::time::sleep(wait).await;
        }
    }

    async fn fetch_all(&self) {
        let mut results = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            let fetched = self.fetch(source).await;
            if let Err(e) = &fetched {
                tracing::warn!(issuer = %source.name, error = %e, "JWKS fetch failed; keeping the last good keys");
            }
            if let Some(m) = &self.metrics {
                let result = if fetched.is_ok() { "ok" } else { "error" };
                m.fetches.with_label_values(&[&source.name, result]).inc();
                if fetched.is_ok() {
                    m.last_success.with_label_values(&[&source.name]).set(crate::token::now_unix() as f64);
                }
            }
            results.push(fetched);
        }
        let Ok(mut state) = self.state.lock() else { return };
        for (st, result) in state.iter_mut().zip(results) {
            match result {
                Ok(keys) => {
                    st.keys = Some(keys);
                    st.failing = false;
                }
                Err(_) => st.failing = true,
            }
        }
        self.install(state);
    }

    /// Start with `prev`'s last good keys for every source it shares (the
    /// same URL, algorithms and `iss`), so a reload never leaves an
    /// issuer's tokens undecidable until the next fetch, nor at all while
    /// the issuer is down.
    pub fn carry_over(&self, prev: &KeyRing) {
        if !self.is_remote() {
            return;
        }
        let (Ok(before), Ok(mut state)) = (prev.state.lock(), self.state.lock()) else { return };
        for (source, st) in self.sources.iter().zip(state.iter_mut()) {
            let iss = self.base.issuers.get(source.issuer).map(|i| &i.issuer);
            let same = prev.sources.iter().zip(before.iter()).find(|(p, _)| {
                p.url == source.url
                    && p.discovery == source.discovery
                    && p.algorithms == source.algorithms
                    && prev.base.issuers.get(p.issuer).map(|i| &i.issuer) == iss
            });
            if let Some((_, last)) = same
                && let Some(keys) = &last.keys
            {
                // The keys name their issuer by index: this ring's.
                st.keys = Some(keys.iter().map(|k| VerificationKey { issuer: source.issuer, ..k.clone() }).collect());
            }
        }
        drop(before);
        self.install(state);
    }

    /// Put the base keys and every source's last good keys in force.
    fn install(&self, state: std::sync::MutexGuard<'_, Vec<SourceState>>) {
        let mut set = self.base.clone();
        for (source, st) in self.sources.iter().zip(state.iter()) {
            for key in st.keys.iter().flatten() {
                if let Err(e) = set.add_key(key.clone()) {
                    tracing::warn!(issuer = %source.name, error = %e, "JWKS key skipped");
                }
            }
        }
        let all_loaded = state.iter().all(|st| st.keys.is_some());
        drop(state);
        let withdrawn = self.current.load().keys.iter().any(|old| match &old.kid {
            Some(kid) => set.find(Some(kid)).is_none(),
            None => false,
        });
        self.current.store(Arc::new(set));
        if withdrawn {
            self.generation.fetch_add(1, Ordering::AcqRel);
            tracing::info!("an issuer withdrew a key: cached grants are verified again");
        }
        if all_loaded {
            self.loaded.send_replace(true);
        }
    }

    /// Fetch one source: its usable keys; each unusable one is logged and
    /// counted, and never spoils the rest.
    async fn fetch(&self, source: &JwksSource) -> Result<Vec<VerificationKey>, String> {
        let JwksKeys { keys, skipped } = self.fetch_document(source).await?;
        for why in &skipped {
            tracing::warn!(issuer = %source.name, key = %why, "JWKS key skipped");
        }
        if let Some(m) = &self.metrics
            && !skipped.is_empty()
        {
            m.skipped.with_label_values(&[&source.name]).inc_by(skipped.len() as u64);
        }
        Ok(keys)
    }

    /// A source's keys: its JWKS, or (discovery) the discovery document
    /// read afresh, then the JWKS it names.
    async fn fetch_document(&self, source: &JwksSource) -> Result<JwksKeys, String> {
        let client = self.sources.iter().position(|s| std::ptr::eq(s, source)).and_then(|i| self.clients.get(i));
        let client = client.and_then(Option::as_ref).ok_or("no HTTP client: its TLS settings could not be used")?;
        let body = get(client, &source.url).await?;
        let (body, algorithms) = if source.discovery {
            let issuer = self.base.issuers.get(source.issuer).map_or("", |i| &*i.issuer);
            let doc = Discovery::read(&body, &source.url, issuer)?;
            let algorithms = doc.algorithms(&source.algorithms)?;
            (get(client, &doc.jwks_uri).await.map_err(|e| format!("jwks_uri: {e}"))?, algorithms)
        } else {
            (body, source.algorithms.clone())
        };
        let text = std::str::from_utf8(&body).map_err(|_| "document is not UTF-8".to_string())?;
        keys_from_jwks(text, &algorithms, source.issuer).map_err(|e| e.to_string())
    }
}

/// A document of at most [`MAX_JWKS_BYTES`] from `url` (which is never
/// logged or returned: it could carry credentials).
async fn get(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut resp = client.get(url).send().await.map_err(|e| format!("request failed: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("status {}", resp.status()));
    }
    if resp.content_length().is_some_and(|l| l > MAX_JWKS_BYTES as u64) {
        return Err("document too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("body failed: {}", e.without_url()))? {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err("document too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::token::testkit::{self, TestKey};

    /// A JWKS endpoint on loopback serving whatever `doc` holds (status 500
    /// for `None`), counting requests.
    struct Issuer {
        url: String,
        doc: Arc<Mutex<Option<String>>>,
        hits: Arc<AtomicUsize>,
    }

    async fn issuer() -> Issuer {
        let doc: Arc<Mutex<Option<String>>> = Arc::default();
        let hits = Arc::new(AtomicUsize::new(0));
        let (d, h) = (doc.clone(), hits.clone());
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (d, h) = (d.clone(), h.clone());
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    match d.lock().expect("lock").clone() {
                        Some(body) => (axum::http::StatusCode::OK, body),
                        None => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/jwks", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        Issuer { url, doc, hits }
    }

    fn jwks(keys: &[&TestKey]) -> String {
        let list: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| {
                let jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&k.encoding, k.alg).expect("jwk");
                let mut v = serde_json::to_value(jwk).expect("json");
                v["kid"] = k.kid.clone().into();
                v
            })
            .collect();
        serde_json::json!({ "keys": list }).to_string()
    }

    fn ring(url: &str, min_refetch: Duration) -> (Arc<KeyRing>, Arc<Clock>) {
        let mut base = KeySet::default();
        let issuer = base.add_issuer(testkit::issuer_policy());
        let clock = Arc::new(Clock::default());
        let ring = KeyRing::counting(
            base,
            vec![JwksSource {
                issuer,
                name: "idp".into(),
                url: url.into(),
                ca: None,
                algorithms: vec![Algorithm::ES256],
                discovery: false,
                refresh: Duration::from_secs(3600),
                min_refetch,
            }],
            None,
            clock.clone(),
        );
        (ring, clock)
    }

    #[tokio::test]
    async fn refetches_are_rate_limited_and_a_failed_fetch_keeps_the_last_good_keys() {
        let idp = issuer().await;
        let (k1, k2) = (TestKey::es256("k1"), TestKey::es256("k2"));
        let (ring, clock) = ring(&idp.url, Duration::from_millis(300));
        assert!(ring.degraded() && ring.current().is_empty(), "nothing loaded before the first fetch");

        *idp.doc.lock().expect("lock") = Some(jwks(&[&k1]));
        ring.refetch().await;
        assert!(ring.current().find(Some("k1")).is_some() && !ring.degraded());
        tokio::time::timeout(Duration::from_secs(1), ring.wait_loaded()).await.expect("loaded");

        // A burst of unknown kids within the interval: no further fetch.
        *idp.doc.lock().expect("lock") = Some(jwks(&[&k1, &k2]));
        for _ in 0..20 {
            ring.refetch().await;
        }
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
        assert!(ring.current().find(Some("k2")).is_none());
        clock.advance(Duration::from_millis(350));
        ring.refetch().await;
        assert_eq!(idp.hits.load(Ordering::SeqCst), 2);
        assert!(ring.current().find(Some("k2")).is_some(), "picked up after the interval");

        // The issuer fails, then serves garbage: the last good keys stay.
        for bad in [None, Some("{\"keys\": 7}".to_string()), Some("x".repeat(MAX_JWKS_BYTES + 1))] {
            *idp.doc.lock().expect("lock") = bad;
            clock.advance(Duration::from_millis(350));
            ring.refetch().await;
            assert!(ring.degraded(), "a failed fetch is reported");
            assert!(ring.current().find(Some("k1")).is_some() && ring.current().find(Some("k2")).is_some());
        }
        *idp.doc.lock().expect("lock") = Some(jwks(&[&k2]));
        clock.advance(Duration::from_millis(350));
        ring.refetch().await;
        assert!(!ring.degraded());
        let before = ring.generation().load(Ordering::Acquire);
        assert!(ring.current().find(Some("k1")).is_none(), "a key the issuer withdrew is gone");
        assert!(before > 0, "withdrawing k1 moved the generation on (cached grants are verified again)");
    }

    #[tokio::test]
    async fn concurrent_refetches_share_one_fetch() {
        let idp = issuer().await;
        *idp.doc.lock().expect("lock") = Some(jwks(&[&TestKey::es256("k1")]));
        let (ring, _) = ring(&idp.url, Duration::from_secs(60));
        let all: Vec<_> = (0..16)
            .map(|_| {
                tokio::spawn({
                    let r = ring.clone();
                    async move { r.refetch().await }
                })
            })
            .collect();
        for t in all {
            t.await.expect("joined");
        }
        assert_eq!(idp.hits.load(Ordering::SeqCst), 1);
        assert!(ring.current().find(Some("k1")).is_some());
    }
}
