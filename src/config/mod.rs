//! Config: the YAML file → a validated [`Config`].
//!
//! Two layers: `file` mirrors the YAML (serde, unknown keys rejected), and
//! this module turns it into strong types — socket addresses, durations,
//! header names, loaded keys, compiled routes. Every problem is collected and
//! reported at once with its path (`applications[0].routes[2].resource.id:
//! …`). Loading reads key files but binds nothing and spawns nothing.

pub mod duration;
pub mod file;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use http::uri::Authority;
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::policy::manifest::{
    Application, EntityDef, MethodDef, MethodGroupDef, ResourceSpec, RoleSetDef, Route, RouteAccess, ServiceDef,
    TenantSpec,
};
use crate::policy::router::PathPattern;
use crate::policy::{Manifest, Router};
use crate::token::keys::{self, IssuerPolicy, KeySet, VerificationKey, is_hmac, parse_algorithm};
use crate::token::verify::DEFAULT_MAX_TOKEN_BYTES;
pub use duration::parse_duration;
use file::*;

/// Every problem found in a config file, each prefixed with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} problem(s) in the config:", self.0.len())?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The validated config.
#[derive(Debug)]
pub struct Config {
    pub listeners: Listeners,
    pub upstream: UpstreamConfig,
    pub server: ServerConfig,
    pub trusted_proxies: Vec<IpNet>,
    pub keys: KeySet,
    /// Issuers whose keys are fetched from a JWKS URL (enforce-only gateways).
    pub jwks_sources: Vec<crate::token::JwksSource>,
    /// This gateway's own signing keys, if it issues tokens.
    pub signing: Option<Signing>,
    pub max_token_bytes: usize,
    pub credentials: Vec<CredentialSource>,
    pub forwarding: Forwarding,
    pub cache: CacheConfig,
    pub unmatched: Unmatched,
    /// `false` only for measuring the proxy without enforcement.
    pub enforce: bool,
    /// `None`: no store (an enforce-only gateway without a revocation feed).
    pub store: Option<StoreConfig>,
    pub bootstrap: Bootstrap,
    /// Compatibility facades on the api listener.
    pub facades: Facades,
    pub manifest: Manifest,
    pub router: Router,
    pub revocation: RevocationConfig,
    /// Registration tokens' bounds.
    pub registration: crate::policy::issuance::RegistrationLimits,
    /// Problems that do not stop the gateway (a secret file others can
    /// read, a JWKS key skipped); `check-config --strict` fails on them.
    pub warnings: Vec<String>,
    /// The files the config reads besides itself (keys, key sets, tokens).
    pub sources: Vec<PathBuf>,
    /// SHA-256 (hex) of the config text and every file it reads: what a
    /// reload compares, and what `narrowgate_config_info` shows.
    pub hash: String,
    /// SHA-256 (hex) of the issuers section and their key files: when it
    /// is unchanged by a reload, verified grants stay cached.
    pub issuers_hash: String,
}

/// SHA-256 of `text` and the current contents of `files` (a file that
/// cannot be read counts as its absence), as hex.
pub fn fingerprint(text: &[u8], files: &[PathBuf]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(text);
    for f in files {
        ctx.update(f.to_string_lossy().as_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                ctx.update(&(bytes.len() as u64).to_le_bytes());
                ctx.update(&bytes);
            }
            Err(_) => ctx.update(b"\0absent"),
        }
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// How revocations reach this gateway, and what it does when it cannot
/// confirm them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevocationConfig {
    pub staleness: crate::revocation::Staleness,
    /// SHA-256 of the tokens that may read this gateway's revocation feed.
    pub feed_readers: Vec<[u8; 32]>,
    /// An issuer's feed this (enforce-only) gateway follows.
    pub follow: Option<FeedFollow>,
}

/// Where an enforce-only gateway follows an issuer's revocation feed.
#[derive(Clone, PartialEq, Eq)]
pub struct FeedFollow {
    /// Tried in turn.
    pub urls: Vec<String>,
    /// The feed reader token (a secret: never printed).
    pub token: String,
}

impl std::fmt::Debug for FeedFollow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedFollow").field("urls", &self.urls.len()).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The token service; `None` in enforce-only mode.
    pub api: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub addresses: Vec<Authority>,
    pub connect_timeout: Duration,
    /// Time allowed for the upstream to send its response head.
    pub read_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Runtime threads: 1 runs everything on one thread (a sidecar's usual
    /// share, and the cheapest per request); 0 means one per core.
    pub worker_threads: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// After SIGTERM: how long the listeners keep accepting while
    /// readiness is already false (endpoints are removed meanwhile).
    pub drain_delay: Duration,
    /// Then how long in-flight requests and WebSocket tunnels may take.
    pub shutdown_grace: Duration,
}

/// Where a credential may come from, in the configured order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Bearer,
    Header(HeaderName),
    Query(String),
    Cookie(String),
}

#[derive(Debug, Clone)]
pub struct Forwarding {
    pub forward_credential: bool,
    pub request_id: HeaderName,
    pub identity: IdentityHeaders,
}

#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    pub subject: HeaderName,
    pub token_id: HeaderName,
    pub application: HeaderName,
    pub roles: HeaderName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub capacity: usize,
    pub max_ttl: Duration,
}

/// Which compatibility facades the api listener serves.
#[derive(Debug, Clone, Default)]
pub struct Facades {
    pub metaapi: bool,
    pub crafter: bool,
    /// ProdManager: the applications whose secrets may create tokens.
    pub prodmanager: Option<Vec<ProdManagerApp>>,
}

/// An application ProdManager clients create tokens for.
#[derive(Clone)]
pub struct ProdManagerApp {
    pub application: String,
    /// SHA-256 of the application secret.
    pub secret_sha256: [u8; 32],
    /// Permission name → the access rule it grants.
    pub permissions: std::collections::BTreeMap<String, crate::policy::AccessRule>,
}

impl std::fmt::Debug for ProdManagerApp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&String> = self.permissions.keys().collect();
        f.debug_struct("ProdManagerApp")
            .field("application", &self.application)
            .field("permissions", &names)
            .finish_non_exhaustive()
    }
}

/// The keys this gateway signs with, as one of its issuers. What it mints
/// passes that issuer's own checks: the `aud` its verifier expects is
/// stamped in, and a lifetime beyond its `max_lifetime` is refused.
#[derive(Debug, Clone)]
pub struct Signing {
    /// The `iss` tokens get.
    pub issuer: String,
    pub keys: Vec<std::sync::Arc<crate::token::SigningKey>>,
    /// Index of the key new tokens are signed with.
    pub active: usize,
    /// The `aud` minted tokens get: the issuer's first audience, if any.
    pub audience: Option<String>,
    /// The issuer's `max_lifetime`, in seconds.
    pub max_lifetime_secs: Option<u64>,
}

/// Why a token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the lifetime exceeds this issuer's max_lifetime of {max_secs} s")]
    TooLong { max_secs: u64 },
    #[error("the token could not be signed")]
    Sign,
}

impl Signing {
    pub fn active_key(&self) -> &crate::token::SigningKey {
        &self.keys[self.active.min(self.keys.len() - 1)]
    }

    /// Sign `claims` as this issuer with the active key, after stamping its
    /// `iss` and `aud`.
    pub fn sign(&self, claims: &mut crate::token::Claims) -> Result<String, MintError> {
        claims.iss = self.issuer.clone();
        claims.aud = self.audience.clone();
        if let Some(max) = self.max_lifetime_secs {
            // The verifier refuses exp − iat beyond max, or no exp at all.
            match claims.exp {
                Some(exp) if exp.saturating_sub(claims.iat) <= max => {}
                _ => return Err(MintError::TooLong { max_secs: max }),
            }
        }
        crate::token::sign::sign(claims, self.active_key()).map_err(|_| MintError::Sign)
    }
}

/// The token store, how often its revocations are fully resynced, and
/// whether a missing one may be created at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub resync_interval: Duration,
    /// Create the store at start if it has never existed (demos, first-start
    /// automation). Off: a missing store is an error, never silently
    /// replaced by an empty one; `narrowgate store init` creates it.
    pub create_if_missing: bool,
}

/// Which store.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreBackend {
    Sqlite {
        path: PathBuf,
    },
    Postgres {
        url: String,
        /// How long a store call may take (getting a connection included)
        /// before the token service answers 503 `store_unavailable`.
        timeout: Duration,
    },
}

/// Where the first admin token is written (mode 0600) when a store is
/// created empty; it is also printed once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bootstrap {
    pub token_file: Option<PathBuf>,
}

impl std::fmt::Debug for StoreBackend {
    // The PostgreSQL URL may hold a password: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreBackend::Sqlite { path } => f.debug_struct("Sqlite").field("path", path).finish(),
            StoreBackend::Postgres { timeout, .. } => {
                f.debug_struct("Postgres").field("timeout", timeout).finish_non_exhaustive()
            }
        }
    }
}

/// What a request matching no route gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// 403 `no_matching_route`.
    Deny,
    /// 404 `no_matching_route`.
    NotFound,
}

/// Collects errors with their paths.
#[derive(Default)]
struct Errors(Vec<String>, Vec<String>, Vec<PathBuf>);

impl Errors {
    fn push(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.0.push(format!("{path}: {msg}"));
    }

    /// A file the config reads (keys, key sets, tokens): watched for
    /// changes and part of the config's hash.
    fn file(&mut self, path: &Path) {
        self.2.push(path.to_path_buf());
    }

    /// Something that works but should not be so: logged by `serve`,
    /// printed by `check-config`, fatal under `check-config --strict`.
    fn warn(&mut self, path: &str, msg: impl std::fmt::Display) {
        self.1.push(format!("{path}: {msg}"));
    }
}

/// Warn when a file holding a private key or a secret can be read by
/// anyone but its owner.
fn check_private_file(file: &Path, path: &str, errs: &mut Errors) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                errs.warn(
                    path,
                    format!(
                        "{} holds a secret but is readable by group or others (mode {mode:03o}); chmod 600 it",
                        file.display()
                    ),
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path, errs);
}

/// Deserialize one section, reporting a failure with its full path.
fn section<T: DeserializeOwned>(v: &Value, path: &str, errs: &mut Errors) -> Option<T> {
    match serde_path_to_error::deserialize::<_, T>(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let inner = e.path().to_string();
            let full = if inner == "." || inner.is_empty() {
                path.to_string()
            } else if inner.starts_with('[') {
                format!("{path}{inner}")
            } else {
                format!("{path}.{inner}")
            };
            errs.push(&full, e.into_inner());
            None
        }
    }
}

fn duration_or(v: &Option<String>, default: Duration, path: &str, errs: &mut Errors) -> Duration {
    match v {
        None => default,
        Some(s) => parse_duration(s).unwrap_or_else(|e| {
            errs.push(path, e);
            default
        }),
    }
}

fn header_name(s: &str, path: &str, errs: &mut Errors) -> Option<HeaderName> {
    match HeaderName::from_bytes(s.as_bytes()) {
        Ok(h) => Some(h),
        Err(_) => {
            errs.push(path, format!("{s:?} is not a valid header name"));
            None
        }
    }
}

impl Config {
    /// Load and validate a config file. Relative key paths are resolved
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("{}: cannot read: {e}", path.display())]))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
        Config::from_yaml(&text, &base)
    }

    /// Validate YAML text; `base` is the directory relative paths start from.
    pub fn from_yaml(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
        let root: Value = serde_saphyr::from_str(text).map_err(|e| ConfigErrors(vec![format!("YAML: {e}")]))?;
        let mut errs = Errors::default();
        let Value::Object(top) = root else {
            return Err(ConfigErrors(vec!["(root): must be a mapping".into()]));
        };
        for key in top.keys() {
            if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
                errs.push(key, format!("unknown key (expected one of: {})", TOP_LEVEL_KEYS.join(", ")));
            }
        }
        let get = |k: &str| top.get(k).cloned().unwrap_or(Value::Null);
        let required = |k: &str, errs: &mut Errors| {
            let v = get(k);
            if v.is_null() {
                errs.push(k, "is required");
            }
            v
        };

        let listeners = section::<ListenersFile>(&required("listeners", &mut errs), "listeners", &mut errs)
            .and_then(|l| build_listeners(l, &mut errs));
        let upstream = section::<UpstreamFile>(&required("upstream", &mut errs), "upstream", &mut errs)
            .and_then(|u| build_upstream(u, &mut errs));
        let server_file = match get("server") {
            Value::Null => Some(ServerFile::default()),
            v => section::<ServerFile>(&v, "server", &mut errs),
        }
        .unwrap_or_default();
        let server = ServerConfig {
            worker_threads: server_file.worker_threads.unwrap_or(0),
            header_read_timeout: duration_or(
                &server_file.header_read_timeout,
                Duration::from_secs(10),
                "server.header_read_timeout",
                &mut errs,
            ),
            idle_timeout: duration_or(
                &server_file.idle_timeout,
                Duration::from_secs(60),
                "server.idle_timeout",
                &mut errs,
            ),
            max_header_bytes: server_file.max_header_bytes.unwrap_or(16 * 1024),
            max_headers: server_file.max_headers.unwrap_or(64),
            drain_delay: duration_or(&server_file.drain_delay, Duration::from_secs(5), "server.drain_delay", &mut errs),
            shutdown_grace: duration_or(
                &server_file.shutdown_grace,
                Duration::from_secs(25),
                "server.shutdown_grace",
                &mut errs,
            ),
        };
        if server.max_header_bytes < 8192 {
            errs.push("server.max_header_bytes", "must be at least 8192");
        }
        if server.max_headers == 0 {
            errs.push("server.max_headers", "must be at least 1");
        }
        let max_token_bytes = server_file.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES);

        let trusted_proxies = match get("trusted_proxies") {
            Value::Null => Vec::new(),
            v => section::<Vec<String>>(&v, "trusted_proxies", &mut errs)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter_map(|(i, s)| parse_cidr(s).map_err(|e| errs.push(&format!("trusted_proxies[{i}]"), e)).ok())
                .collect(),
        };

        let issuer_files_from = errs.2.len();
        let mut keyset = KeySet::default();
        let mut jwks_sources = Vec::new();
        let mut signing: Option<Signing> = None;
        match required("issuers", &mut errs) {
            Value::Array(items) => {
                if items.is_empty() {
                    errs.push("issuers", "at least one issuer is required");
                }
                for (i, item) in items.iter().enumerate() {
                    let path = format!("issuers[{i}]");
                    if let Some(f) = section::<IssuerFile>(item, &path, &mut errs) {
                        build_issuer(f, &path, base, &mut keyset, &mut jwks_sources, &mut signing, &mut errs);
                    }
                }
            }
            Value::Null => {}
            _ => errs.push("issuers", "must be a list"),
        }
        let issuers_hash = fingerprint(get("issuers").to_string().as_bytes(), &errs.2[issuer_files_from..]);

        let credentials = match get("credentials") {
            Value::Null => {
                vec![CredentialSource::Bearer, CredentialSource::Header(HeaderName::from_static("auth-token"))]
            }
            v => build_credentials(
                section::<Vec<CredentialFile>>(&v, "credentials", &mut errs).unwrap_or_default(),
                &mut errs,
            ),
        };

        let forwarding_file = match get("forwarding") {
            Value::Null => Some(ForwardingFile::default()),
            v => section::<ForwardingFile>(&v, "forwarding", &mut errs),
        }
        .unwrap_or_default();
        let forwarding = build_forwarding(forwarding_file, &mut errs);

        let cache_file = match get("cache") {
            Value::Null => Some(CacheFile::default()),
            v => section::<CacheFile>(&v, "cache", &mut errs),
        }
        .unwrap_or_default();
        let cache = CacheConfig {
            capacity: cache_file.capacity.unwrap_or(100_000),
            max_ttl: duration_or(&cache_file.max_ttl, Duration::from_secs(300), "cache.max_ttl", &mut errs),
        };

        let unmatched = match get("unmatched") {
            Value::Null => Unmatched::Deny,
            Value::String(s) if s == "deny" => Unmatched::Deny,
            Value::String(s) if s == "not_found" => Unmatched::NotFound,
            other => {
                errs.push("unmatched", format!("{other} is not one of: deny, not_found"));
                Unmatched::Deny
            }
        };
        let enforce = match get("enforcement") {
            Value::Null => true,
            Value::Bool(b) => b,
            other => {
                errs.push("enforcement", format!("{other} is not a boolean"));
                true
            }
        };

        let (store, bootstrap) = match get("store") {
            Value::Null => (None, Bootstrap::default()),
            v => match section::<StoreFile>(&v, "store", &mut errs) {
                Some(f) => {
                    let (s, b) = build_store(f, base, &mut errs);
                    (Some(s), b)
                }
                None => (None, Bootstrap::default()),
            },
        };

        let (manifest, route_paths) = match required("applications", &mut errs) {
            Value::Array(items) => build_manifest(&items, &mut errs),
            Value::Null => (Manifest::default(), Vec::new()),
            _ => {
                errs.push("applications", "must be a list");
                (Manifest::default(), Vec::new())
            }
        };
        let router = match Router::build(&manifest.routes) {
            Ok(r) => Some(r),
            Err(list) => {
                for (a, b, msg) in list {
                    let (pa, pb) = (route_path(&manifest, &route_paths, a), route_path(&manifest, &route_paths, b));
                    if a == b {
                        errs.push(&pa, msg);
                    } else {
                        errs.push(&pb, format!("{msg} at {pa}: one request could match both"));
                    }
                }
                None
            }
        };

        let revocation = match get("revocation") {
            Value::Null => RevocationConfig::default(),
            v => match section::<RevocationFile>(&v, "revocation", &mut errs) {
                Some(f) => build_revocation(f, base, &listeners, store.is_some(), &mut errs),
                None => RevocationConfig::default(),
            },
        };

        let issuance = match get("issuance") {
            Value::Null => IssuanceFile::default(),
            v => section::<IssuanceFile>(&v, "issuance", &mut errs).unwrap_or_default(),
        };
        let registration = crate::policy::issuance::RegistrationLimits {
            max_ttl: duration_or(
                &issuance.registration_max_ttl,
                Duration::from_secs(7 * 86_400),
                "issuance.registration_max_ttl",
                &mut errs,
            )
            .as_secs(),
            max_lifetime: issuance.registration_max_lifetime.as_ref().map(|v| {
                duration_or(&Some(v.clone()), Duration::ZERO, "issuance.registration_max_lifetime", &mut errs).as_secs()
            }),
        };
        if registration.max_ttl == 0 || registration.max_lifetime == Some(0) {
            errs.push("issuance", "registration_max_ttl and registration_max_lifetime must be at least 1s");
        }

        // Enforcement off exists to measure the proxy alone; a gateway that
        // issues or stores tokens is a real deployment, never a benchmark.
        if !enforce && (store.is_some() || listeners.as_ref().is_some_and(|l| l.api.is_some())) {
            errs.push(
                "enforcement",
                "false is for benchmarks only (every request forwarded unchecked) and is refused in a config with a store or an api listener",
            );
        }

        let facades = match get("facades") {
            Value::Null => Facades::default(),
            v => match section::<FacadesFile>(&v, "facades", &mut errs) {
                Some(f) => build_facades(f, &listeners, &credentials, &manifest, &mut errs),
                None => Facades::default(),
            },
        };

        match (listeners, upstream, router) {
            (Some(listeners), Some(upstream), Some(router)) if errs.0.is_empty() => Ok(Config {
                hash: fingerprint(text.as_bytes(), &errs.2),
                issuers_hash,
                sources: errs.2,
                warnings: errs.1,
                revocation,
                registration,
                listeners,
                upstream,
                server,
                trusted_proxies,
                keys: keyset,
                jwks_sources,
                signing,
                max_token_bytes,
                credentials,
                forwarding,
                cache,
                unmatched,
                enforce,
                store,
                bootstrap,
                facades,
                manifest,
                router,
            }),
            _ => Err(ConfigErrors(errs.0)),
        }
    }
}

fn build_revocation(
    f: RevocationFile,
    base: &Path,
    listeners: &Option<Listeners>,
    has_store: bool,
    errs: &mut Errors,
) -> RevocationConfig {
    let max = duration_or(&f.max_staleness, Duration::from_secs(5), "revocation.max_staleness", errs);
    if max < Duration::from_millis(500) {
        errs.push("revocation.max_staleness", "must be at least 500ms (the feeds confirm every 250ms)");
    }
    let refuse = match f.when_stale.as_deref() {
        None | Some("serve") => false,
        Some("refuse") => true,
        Some(_) => {
            errs.push("revocation.when_stale", "must be serve or refuse");
            false
        }
    };
    let feed_readers = f
        .feed_readers_sha256
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let parsed = parse_sha256_hex(h);
            if parsed.is_none() {
                errs.push(
                    &format!("revocation.feed_readers_sha256[{i}]"),
                    "must be 64 hex digits (the SHA-256 of a token)",
                );
            }
            parsed
        })
        .collect::<Vec<_>>();
    if !feed_readers.is_empty() && listeners.as_ref().is_none_or(|l| l.api.is_none()) {
        errs.push("revocation.feed_readers_sha256", "needs listeners.api (the feed is served there)");
    }
    let follow = f.follow.and_then(|fw| {
        if has_store {
            errs.push(
                "revocation.follow",
                "a gateway with a store follows the store; follow is for enforce-only gateways",
            );
        }
        if fw.urls.is_empty() {
            errs.push("revocation.follow.urls", "list at least one issuer feed URL");
        }
        for (i, u) in fw.urls.iter().enumerate() {
            match u.parse::<http::Uri>() {
                Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {}
                _ => errs.push(&format!("revocation.follow.urls[{i}]"), "must be an absolute http:// or https:// URL"),
            }
        }
        let file = base.join(&fw.token_file);
        errs.file(&file);
        check_private_file(&file, "revocation.follow.token_file", errs);
        match std::fs::read_to_string(&file) {
            Ok(t) if !t.trim().is_empty() => Some(FeedFollow { urls: fw.urls, token: t.trim().to_string() }),
            Ok(_) => {
                errs.push("revocation.follow.token_file", format!("{} is empty", file.display()));
                None
            }
            Err(e) => {
                errs.push("revocation.follow.token_file", format!("cannot read {}: {e}", file.display()));
                None
            }
        }
    });
    RevocationConfig { staleness: crate::revocation::Staleness { max, refuse }, feed_readers, follow }
}

/// 64 hex digits → 32 bytes.
fn parse_sha256_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn build_facades(
    f: FacadesFile,
    listeners: &Option<Listeners>,
    credentials: &[CredentialSource],
    manifest: &Manifest,
    errs: &mut Errors,
) -> Facades {
    let has_api = listeners.as_ref().is_some_and(|l| l.api.is_some());
    if f.metaapi {
        if !has_api {
            errs.push("facades.metaapi", "needs listeners.api (the facade is served there)");
        }
        if !credentials.contains(&CredentialSource::Header(HeaderName::from_static("auth-token"))) {
            errs.push(
                "facades.metaapi",
                "MetaApi clients send the `auth-token` header: add `- source: header` with `name: auth-token` to credentials",
            );
        }
    }
    let prodmanager = f.prodmanager.map(|pm| {
        if !has_api {
            errs.push("facades.prodmanager", "needs listeners.api (the facade is served there)");
        }
        pm.applications
            .iter()
            .enumerate()
            .filter_map(|(i, a)| prodmanager_app(a, &format!("facades.prodmanager.applications[{i}]"), manifest, errs))
            .collect()
    });
    if f.crafter && !has_api {
        errs.push("facades.crafter", "needs listeners.api (the facade is served there)");
    }
    Facades { metaapi: f.metaapi, crafter: f.crafter, prodmanager }
}

fn prodmanager_app(
    f: &ProdManagerAppFile,
    path: &str,
    manifest: &Manifest,
    errs: &mut Errors,
) -> Option<ProdManagerApp> {
    let Some(app) = manifest.applications.iter().find(|a| a.application == f.application) else {
        errs.push(&format!("{path}.application"), format!("{:?} is not an application of the manifest", f.application));
        return None;
    };
    let hash = parse_sha256_hex(&f.secret_sha256);
    if hash.is_none() {
        errs.push(&format!("{path}.secret_sha256"), "must be 64 hex digits (the SHA-256 of the secret)");
    }
    if f.permissions.is_empty() {
        errs.push(&format!("{path}.permissions"), "declare at least one permission");
    }
    let mut permissions = std::collections::BTreeMap::new();
    for (name, p) in &f.permissions {
        let ppath = format!("{path}.permissions.{name}");
        for (j, g) in p.method_groups.iter().enumerate() {
            if g != "*" && !app.method_groups.iter().any(|m| m.group == *g) {
                errs.push(
                    &format!("{ppath}.method_groups[{j}]"),
                    format!("{g:?} is not a method group of {}", app.application),
                );
            }
        }
        let roles = p.roles.clone().unwrap_or_else(|| vec!["*".into()]);
        for (j, r) in roles.iter().enumerate() {
            if r != "*" && !app.roles.iter().any(|set| set.roles.contains(r)) {
                errs.push(&format!("{ppath}.roles[{j}]"), format!("{r:?} is not a role of {}", app.application));
            }
        }
        let wire = crate::token::claims::WireRule {
            id: format!("{}:{name}", app.application),
            application: app.application.clone(),
            service: "*".into(),
            method_groups: p
                .method_groups
                .iter()
                .map(|g| crate::token::claims::WireMethodGroup {
                    group: g.clone(),
                    methods: vec![crate::token::claims::WireMethod { method: "*".into(), scopes: None }],
                })
                .collect(),
            roles,
            resources: vec!["*:$USER_ID$:*".into()],
        };
        match wire.compile() {
            Some(rule) => {
                permissions.insert(name.clone(), rule);
            }
            None => errs.push(&ppath, "does not make an access rule (an empty method group or role?)"),
        }
    }
    Some(ProdManagerApp { application: f.application.clone(), secret_sha256: hash?, permissions })
}

/// `applications[i].routes[j] (TEMPLATE)` for the compiled route at `index`.
fn route_path(manifest: &Manifest, paths: &[String], index: usize) -> String {
    match (paths.get(index), manifest.routes.get(index)) {
        (Some(p), Some(r)) => format!("{p} ({})", r.template),
        _ => format!("routes[{index}]"),
    }
}

fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| format!("{s:?} is not an IP address or CIDR range"))
}

fn socket_addr(s: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(path, format!("{s:?} is not an address like 127.0.0.1:8080"));
            None
        }
    }
}

fn build_listeners(f: ListenersFile, errs: &mut Errors) -> Option<Listeners> {
    let proxy = socket_addr(&f.proxy, "listeners.proxy", errs);
    let admin = f.admin.as_deref().map(|a| socket_addr(a, "listeners.admin", errs));
    let api = f.api.as_deref().map(|a| socket_addr(a, "listeners.api", errs));
    Some(Listeners { proxy: proxy?, admin: admin.flatten(), api: api.flatten() })
}

fn build_upstream(f: UpstreamFile, errs: &mut Errors) -> Option<UpstreamConfig> {
    if f.addresses.is_empty() {
        errs.push("upstream.addresses", "at least one address is required");
    }
    let mut addresses = Vec::new();
    for (i, a) in f.addresses.iter().enumerate() {
        match a.parse::<Authority>() {
            Ok(auth) if auth.port_u16().is_some() && !a.contains('@') => addresses.push(auth),
            _ => errs.push(&format!("upstream.addresses[{i}]"), format!("{a:?} is not host:port")),
        }
    }
    Some(UpstreamConfig {
        addresses,
        connect_timeout: duration_or(&f.connect_timeout, Duration::from_secs(2), "upstream.connect_timeout", errs),
        read_timeout: duration_or(&f.read_timeout, Duration::from_secs(30), "upstream.read_timeout", errs),
        pool_idle_timeout: duration_or(
            &f.pool_idle_timeout,
            Duration::from_secs(90),
            "upstream.pool_idle_timeout",
            errs,
        ),
        pool_max_idle: f.pool_max_idle.unwrap_or(256),
    })
}

fn build_issuer(
    f: IssuerFile,
    path: &str,
    base: &Path,
    keyset: &mut KeySet,
    jwks_sources: &mut Vec<crate::token::JwksSource>,
    signing: &mut Option<Signing>,
    errs: &mut Errors,
) {
    let mut algorithms = Vec::new();
    for (i, a) in f.algorithms.iter().enumerate() {
        match parse_algorithm(a) {
            Some(alg) => algorithms.push(alg),
            None => errs.push(&format!("{path}.algorithms[{i}]"), format!("{a:?} is not a supported algorithm")),
        }
    }
    if f.algorithms.is_empty() {
        errs.push(&format!("{path}.algorithms"), "list the algorithms this issuer signs with");
    }
    if f.issuer.is_empty() {
        errs.push(&format!("{path}.issuer"), "must not be empty");
    }
    let skew = duration_or(&f.clock_skew, Duration::from_secs(30), &format!("{path}.clock_skew"), errs);
    if skew > Duration::from_secs(300) {
        errs.push(&format!("{path}.clock_skew"), "must be at most 5m");
    }
    let max_lifetime = f.max_lifetime.as_ref().map(|v| {
        let d = duration_or(&Some(v.clone()), Duration::ZERO, &format!("{path}.max_lifetime"), errs);
        if d < Duration::from_secs(1) {
            errs.push(&format!("{path}.max_lifetime"), "must be at least 1s");
        }
        d
    });
    if max_lifetime.is_some() && f.allow_missing_exp {
        errs.push(&format!("{path}.max_lifetime"), "cannot bound tokens that may have no exp (allow_missing_exp)");
    }
    let issuer = keyset.add_issuer(IssuerPolicy {
        name: f.name.clone(),
        issuer: f.issuer.clone(),
        audience: f.audience.clone(),
        clock_skew_secs: skew.as_secs(),
        allow_missing_exp: f.allow_missing_exp,
        max_lifetime_secs: max_lifetime.map(|d| d.as_secs()),
        // This gateway's own issuer manages; any other only when told so.
        may_manage: f.may_manage.unwrap_or(!f.signing_keys.is_empty()),
    });
    if f.keys.is_empty() && f.jwks_file.is_none() && f.jwks_url.is_none() && f.signing_keys.is_empty() {
        errs.push(path, "needs keys, a jwks_file, a jwks_url or signing_keys");
    }
    let refresh = duration_or(&f.jwks_refresh, Duration::from_secs(300), &format!("{path}.jwks_refresh"), errs);
    let min_refetch =
        duration_or(&f.jwks_min_refetch, Duration::from_secs(10), &format!("{path}.jwks_min_refetch"), errs);
    match &f.jwks_url {
        Some(url) => {
            let upath = format!("{path}.jwks_url");
            match url.parse::<http::Uri>() {
                Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
                _ => errs.push(&upath, "must be an absolute http:// or https:// URL"),
            }
            if refresh < Duration::from_secs(1) {
                errs.push(&format!("{path}.jwks_refresh"), "must be at least 1s");
            }
            if min_refetch < Duration::from_millis(100) || min_refetch > refresh {
                errs.push(&format!("{path}.jwks_min_refetch"), "must be at least 100ms and at most jwks_refresh");
            }
            jwks_sources.push(crate::token::JwksSource {
                issuer,
                name: f.name.clone(),
                url: url.clone(),
                algorithms: algorithms.clone(),
                refresh,
                min_refetch,
            });
        }
        None if f.jwks_refresh.is_some() || f.jwks_min_refetch.is_some() => {
            errs.push(path, "jwks_refresh and jwks_min_refetch need a jwks_url");
        }
        None => {}
    }
    let mut own = Vec::new();
    for (i, k) in f.signing_keys.iter().enumerate() {
        let kpath = format!("{path}.signing_keys[{i}]");
        errs.file(&base.join(&k.private_key_file));
        check_private_file(&base.join(&k.private_key_file), &format!("{kpath}.private_key_file"), errs);
        match crate::token::SigningKey::from_pem_file(&base.join(&k.private_key_file), &k.kid) {
            Ok(key) if !algorithms.contains(&key.algorithm) => {
                errs.push(&kpath, format!("a {:?} key, not among the issuer's algorithms", key.algorithm))
            }
            Ok(key) => match key.verification_key(issuer).map_err(|e| e.to_string()).and_then(|v| keyset.add_key(v)) {
                Ok(()) => own.push(std::sync::Arc::new(key)),
                Err(e) => errs.push(&format!("{kpath}.kid"), e),
            },
            Err(e) => errs.push(&kpath, e),
        }
    }
    if !f.signing_keys.is_empty() {
        let active = match &f.active_signing_key {
            None => Some(0),
            Some(kid) => {
                let found = f.signing_keys.iter().position(|k| k.kid == *kid);
                if found.is_none() {
                    errs.push(&format!("{path}.active_signing_key"), format!("{kid:?} is not among signing_keys"));
                }
                found
            }
        };
        if signing.is_some() {
            errs.push(&format!("{path}.signing_keys"), "only one issuer may hold signing keys");
        } else if let Some(active) = active
            && !own.is_empty()
            && own.len() == f.signing_keys.len()
        {
            *signing = Some(Signing {
                issuer: f.issuer.clone(),
                keys: own,
                active,
                // Its own tokens must pass its own audience check.
                audience: f.audience.first().cloned(),
                max_lifetime_secs: max_lifetime.map(|d| d.as_secs()),
            });
        }
    } else if f.active_signing_key.is_some() {
        errs.push(&format!("{path}.active_signing_key"), "set without signing_keys");
    }
    for (i, k) in f.keys.iter().enumerate() {
        let kpath = format!("{path}.keys[{i}]");
        let Some(alg) = parse_algorithm(&k.algorithm) else {
            errs.push(&format!("{kpath}.algorithm"), format!("{:?} is not a supported algorithm", k.algorithm));
            continue;
        };
        if !algorithms.contains(&alg) {
            errs.push(&format!("{kpath}.algorithm"), format!("{} is not among the issuer's algorithms", k.algorithm));
            continue;
        }
        // HMAC keys come only from secret_file, public keys only from
        // public_key_file: the file a key comes from decides its type.
        let file = match (is_hmac(alg), &k.public_key_file, &k.secret_file) {
            (false, Some(p), None) => p,
            (true, None, Some(s)) => s,
            (false, _, _) => {
                errs.push(&kpath, format!("{} keys need public_key_file (and no secret_file)", k.algorithm));
                continue;
            }
            (true, _, _) => {
                errs.push(&kpath, format!("{} keys need secret_file (and no public_key_file)", k.algorithm));
                continue;
            }
        };
        if is_hmac(alg) {
            check_private_file(&base.join(file), &format!("{kpath}.secret_file"), errs);
        }
        errs.file(&base.join(file));
        match keys::load_decoding_key(&base.join(file), alg) {
            Ok(key) => {
                if let Err(e) = keyset.add_key(VerificationKey { kid: k.kid.clone(), algorithm: alg, key, issuer }) {
                    errs.push(&format!("{kpath}.kid"), e);
                }
            }
            Err(e) => errs.push(&kpath, e),
        }
    }
    if let Some(jwks) = &f.jwks_file {
        let jpath = format!("{path}.jwks_file");
        errs.file(&base.join(jwks));
        match std::fs::read_to_string(base.join(jwks)) {
            Err(e) => errs.push(&jpath, format!("cannot read {jwks:?}: {e}")),
            Ok(text) => match keys::keys_from_jwks(&text, &algorithms, issuer) {
                Ok(list) => {
                    for why in list.skipped {
                        errs.warn(&jpath, format!("key skipped: {why}"));
                    }
                    if list.keys.is_empty() {
                        errs.push(&jpath, "holds no usable key");
                    }
                    for key in list.keys {
                        if let Err(e) = keyset.add_key(key) {
                            errs.push(&jpath, e);
                        }
                    }
                }
                Err(e) => errs.push(&jpath, e),
            },
        }
    }
}

fn build_store(f: StoreFile, base: &Path, errs: &mut Errors) -> (StoreConfig, Bootstrap) {
    let resync = |v: &Option<String>, errs: &mut Errors| {
        let d = duration_or(v, Duration::from_secs(30), "store.resync_interval", errs);
        if d < Duration::from_millis(100) {
            errs.push("store.resync_interval", "must be at least 100ms");
        }
        d
    };
    match f {
        StoreFile::Sqlite { path, resync_interval, bootstrap_token_file, create_if_missing } => {
            let path = base.join(path.as_deref().unwrap_or("data/narrowgate.db"));
            // The database holds token records: like a key, for its owner only.
            check_private_file(&path, "store.sqlite.path", errs);
            (
                StoreConfig {
                    backend: StoreBackend::Sqlite { path },
                    resync_interval: resync(&resync_interval, errs),
                    create_if_missing,
                },
                Bootstrap { token_file: bootstrap_token_file.map(|p| base.join(p)) },
            )
        }
        StoreFile::Postgres { url, resync_interval, bootstrap_token_file, create_if_missing, timeout } => {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                // Not echoing the value: it may hold a password.
                errs.push("store.postgres.url", "must be a postgres:// or postgresql:// URL");
            }
            let timeout = duration_or(&timeout, Duration::from_secs(1), "store.postgres.timeout", errs);
            if timeout < Duration::from_millis(50) || timeout > Duration::from_secs(60) {
                errs.push("store.postgres.timeout", "must be between 50ms and 60s");
            }
            (
                StoreConfig {
                    backend: StoreBackend::Postgres { url, timeout },
                    resync_interval: resync(&resync_interval, errs),
                    create_if_missing,
                },
                Bootstrap { token_file: bootstrap_token_file.map(|p| base.join(p)) },
            )
        }
    }
}

fn build_credentials(list: Vec<CredentialFile>, errs: &mut Errors) -> Vec<CredentialSource> {
    let mut out = Vec::new();
    for (i, c) in list.into_iter().enumerate() {
        let path = format!("credentials[{i}]");
        let src = match c {
            CredentialFile::Bearer => Some(CredentialSource::Bearer),
            CredentialFile::Header { name } => {
                let h = header_name(&name, &format!("{path}.name"), errs);
                if h.as_ref() == Some(&http::header::AUTHORIZATION) {
                    errs.push(&format!("{path}.name"), "use `source: bearer` for the Authorization header");
                }
                h.map(CredentialSource::Header)
            }
            CredentialFile::Query { name } if !name.is_empty() => Some(CredentialSource::Query(name)),
            CredentialFile::Cookie { name } if !name.is_empty() => Some(CredentialSource::Cookie(name)),
            _ => {
                errs.push(&format!("{path}.name"), "must not be empty");
                None
            }
        };
        if let Some(src) = src {
            if out.contains(&src) {
                errs.push(&path, "listed twice");
            }
            out.push(src);
        }
    }
    if out.is_empty() {
        errs.push("credentials", "at least one credential source is required");
    }
    out
}

fn build_forwarding(f: ForwardingFile, errs: &mut Errors) -> Forwarding {
    let ih = f.identity_headers.unwrap_or_default();
    let mut name = |v: &Option<String>, default: &'static str, path: &str| -> HeaderName {
        let h = match v {
            None => HeaderName::from_static(default),
            Some(s) => header_name(s, path, errs).unwrap_or_else(|| HeaderName::from_static(default)),
        };
        if crate::http_names::is_reserved(&h) {
            errs.push(path, format!("{h} is a header the gateway manages itself"));
        }
        h
    };
    let identity = IdentityHeaders {
        subject: name(&ih.subject, "x-narrowgate-subject", "forwarding.identity_headers.subject"),
        token_id: name(&ih.token_id, "x-narrowgate-token-id", "forwarding.identity_headers.token_id"),
        application: name(&ih.application, "x-narrowgate-application", "forwarding.identity_headers.application"),
        roles: name(&ih.roles, "x-narrowgate-roles", "forwarding.identity_headers.roles"),
    };
    let request_id = match &f.request_id_header {
        None => HeaderName::from_static("x-request-id"),
        Some(s) => {
            header_name(s, "forwarding.request_id_header", errs).unwrap_or(HeaderName::from_static("x-request-id"))
        }
    };
    Forwarding { forward_credential: f.forward_credential, request_id, identity }
}

/// The manifest, and for each compiled route the path it came from.
fn build_manifest(items: &[Value], errs: &mut Errors) -> (Manifest, Vec<String>) {
    let mut manifest = Manifest::default();
    let mut paths = Vec::new();
    let mut seen_apps = std::collections::HashSet::new();
    for (ai, item) in items.iter().enumerate() {
        let apath = format!("applications[{ai}]");
        let Some(app) = section::<ApplicationFile>(item, &apath, errs) else { continue };
        if !seen_apps.insert(app.application.clone()) {
            errs.push(&format!("{apath}.application"), format!("{:?} is declared twice", app.application));
        }
        if app.application.is_empty() || app.application.contains([':', '*']) {
            errs.push(&format!("{apath}.application"), "must be a non-empty name without ':' or '*'");
        }
        if app.services.is_empty() {
            errs.push(&format!("{apath}.services"), "at least one service is required");
        }
        let app_index = manifest.applications.len();
        for (ri, rv) in app.routes.iter().enumerate() {
            let rpath = format!("{apath}.routes[{ri}]");
            if let Some(rf) = section::<RouteFile>(rv, &rpath, errs)
                && let Some(route) = build_route(&app, app_index, rf, &rpath, errs)
            {
                manifest.routes.push(route);
                paths.push(rpath.clone());
            }
        }
        manifest.applications.push(Application {
            id: app.id.clone().unwrap_or_else(|| app.application.clone()),
            application: app.application.clone(),
            description: app.description.clone(),
            services: app
                .services
                .iter()
                .map(|s| ServiceDef { service: s.service.clone(), description: s.description.clone() })
                .collect(),
            method_groups: app
                .method_groups
                .iter()
                .map(|g| MethodGroupDef {
                    group: g.group.clone(),
                    description: g.description.clone(),
                    methods: g
                        .methods
                        .iter()
                        .map(|m| MethodDef {
                            method: m.method.clone(),
                            description: m.description.clone(),
                            scopes: m.scopes.clone(),
                        })
                        .collect(),
                })
                .collect(),
            roles: app
                .roles
                .iter()
                .map(|r| RoleSetDef { roles: r.roles.clone(), description: r.description.clone() })
                .collect(),
            entities: app
                .entities
                .iter()
                .map(|e| EntityDef {
                    entity: e.entity.clone(),
                    description: e.description.clone(),
                    id_description: e.id_description.clone(),
                })
                .collect(),
            entity_composition_description: app.entity_composition_description.clone(),
        });
    }
    (manifest, paths)
}

fn build_route(app: &ApplicationFile, app_index: usize, f: RouteFile, path: &str, errs: &mut Errors) -> Option<Route> {
    let before = errs.0.len();
    let Some((method_str, route_path)) = f.route.split_once(' ') else {
        errs.push(&format!("{path}.route"), format!("{:?} must be `METHOD /path`", f.route));
        return None;
    };
    let method = match http::Method::from_bytes(method_str.as_bytes()) {
        Ok(m) if method_str.bytes().all(|b| b.is_ascii_uppercase()) => Some(m),
        _ => {
            errs.push(&format!("{path}.route"), format!("{method_str:?} is not an HTTP method"));
            None
        }
    };
    let pattern = match PathPattern::parse(route_path.trim()) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(&format!("{path}.route"), e);
            None
        }
    };
    let service = match (&f.service, app.services.as_slice()) {
        (Some(s), _) => {
            if !app.services.iter().any(|d| d.service == *s) {
                errs.push(&format!("{path}.service"), format!("unknown service {s:?} of {:?}", app.application));
            }
            s.clone()
        }
        (None, [only]) => only.service.clone(),
        (None, _) => {
            errs.push(&format!("{path}.service"), "required: the application has several services");
            String::new()
        }
    };
    let access = if f.public {
        for (field, set) in [
            ("group", f.group.is_some()),
            ("method", f.method.is_some()),
            ("resource", f.resource.is_some()),
            ("roles", !f.roles.is_empty()),
            ("scopes", !f.scopes.is_empty()),
        ] {
            if set {
                errs.push(&format!("{path}.{field}"), "a public route checks no token; remove it or drop `public`");
            }
        }
        RouteAccess::Public
    } else {
        let group = f.group.clone().unwrap_or_default();
        let method_name = f.method.clone().unwrap_or_default();
        let group_def = app.method_groups.iter().find(|g| g.group == group);
        let method_def = group_def.and_then(|g| g.methods.iter().find(|m| m.method == method_name));
        match (&f.group, group_def) {
            (None, _) => errs.push(&format!("{path}.group"), "required (or mark the route public)"),
            (Some(g), None) => errs.push(&format!("{path}.group"), format!("unknown method group {g:?}")),
            _ => {}
        }
        match (&f.method, method_def) {
            (None, _) => errs.push(&format!("{path}.method"), "required (or mark the route public)"),
            (Some(m), None) if group_def.is_some() => {
                errs.push(&format!("{path}.method"), format!("unknown method {m:?} in group {group:?}"))
            }
            _ => {}
        }
        if let Some(def) = method_def {
            for (i, s) in f.scopes.iter().enumerate() {
                if !def.scopes.contains(s) {
                    errs.push(
                        &format!("{path}.scopes[{i}]"),
                        format!("{s:?} is not a scope of method {method_name:?}"),
                    );
                }
            }
        }
        if f.roles.is_empty() {
            errs.push(&format!("{path}.roles"), "list the roles that may call this route");
        }
        for (i, r) in f.roles.iter().enumerate() {
            if !app.roles.iter().any(|set| set.roles.contains(r)) {
                errs.push(&format!("{path}.roles[{i}]"), format!("unknown role {r:?} of {:?}", app.application));
            }
        }
        let resource = f.resource.as_ref().and_then(|res| {
            if !app.entities.iter().any(|e| e.entity == res.entity) {
                errs.push(&format!("{path}.resource.entity"), format!("unknown entity {:?}", res.entity));
            }
            let param = res.id.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            let index = match (param, &pattern) {
                (Some(p), Some(pat)) => {
                    let idx = pat.params.iter().position(|n| n == p);
                    if idx.is_none() {
                        errs.push(&format!("{path}.resource.id"), format!("unknown path parameter {p:?}"));
                    }
                    idx
                }
                (None, _) => {
                    errs.push(
                        &format!("{path}.resource.id"),
                        format!("{:?} must name a path parameter as \"{{name}}\"", res.id),
                    );
                    None
                }
                _ => None,
            };
            index.map(|param_index| ResourceSpec {
                entity: res.entity.as_str().into(),
                param: param.unwrap_or_default().into(),
                param_index,
            })
        });
        let tenant = f.tenant.as_ref().and_then(|t| {
            if !crate::policy::tenant::ACTIONS.contains(&t.action.as_str()) {
                errs.push(
                    &format!("{path}.tenant.action"),
                    format!("{:?} is not one of {}", t.action, crate::policy::tenant::ACTIONS.join(", ")),
                );
            }
            let param = t.id.strip_prefix('{').and_then(|s| s.strip_suffix('}'));
            let index = param.and_then(|p| pattern.as_ref().and_then(|pat| pat.params.iter().position(|n| n == p)));
            if index.is_none() {
                errs.push(
                    &format!("{path}.tenant.id"),
                    format!("{:?} must name a path parameter as \"{{name}}\"", t.id),
                );
            }
            index.map(|param_index| TenantSpec { param_index, action: t.action.as_str().into() })
        });
        RouteAccess::Protected {
            group: group.into(),
            method: method_name.into(),
            scopes: f.scopes.iter().map(|s| s.as_str().into()).collect(),
            roles: f.roles.iter().map(|s| s.as_str().into()).collect(),
            resource,
            tenant,
        }
    };
    if errs.0.len() != before {
        return None;
    }
    Some(Route {
        template: format!("{} {}", method_str, route_path.trim()).into(),
        method: method?,
        path: route_path.trim().into(),
        app_index,
        application: app.application.as_str().into(),
        service: service.into(),
        access,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
        std::fs::write(dir.path().join("k.pub.pem"), k.public_pem).expect("write");
        std::fs::write(dir.path().join("secret"), "0123456789abcdef0123456789abcdef").expect("write");
        dir
    }

    const GOOD: &str = r#"
listeners: { proxy: "127.0.0.1:0", admin: "127.0.0.1:0" }
upstream: { addresses: ["127.0.0.1:3000"] }
issuers:
  - name: ng
    issuer: narrowgate
    algorithms: [ES256]
    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]
applications:
  - application: trading-account-management-api
    services: [{ service: rest }]
    method_groups:
      - group: account-management
        methods: [{ method: getAccount }, { method: trade, scopes: [dealing] }]
    roles: [{ roles: [reader, writer] }]
    entities: [{ entity: account }]
    routes:
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        resource: { entity: account, id: "{accountId}" }
        roles: [reader]
      - route: GET /health
        public: true
"#;

    #[test]
    fn a_good_config_loads() {
        let dir = key_dir();
        let c = Config::from_yaml(GOOD, dir.path()).expect("valid");
        assert_eq!(c.manifest.routes.len(), 2);
        assert_eq!(c.keys.keys.len(), 1);
        assert_eq!(
            c.credentials,
            vec![CredentialSource::Bearer, CredentialSource::Header(HeaderName::from_static("auth-token"))]
        );
        assert_eq!(c.unmatched, Unmatched::Deny);
        assert!(c.enforce);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let dir = key_dir();
        let bad = r#"
listeners: { proxy: "localhost:eighty" }
upstream: { addresses: ["127.0.0.1:3000"], read_timeout: "soon" }
colour: blue
issuers:
  - name: ng
    issuer: narrowgate
    algorithms: [ES256, HS256, XX999]
    keys:
      - { kid: k1, algorithm: ES256, public_key_file: missing.pem }
      - { kid: k2, algorithm: HS256, public_key_file: k.pub.pem }
cache: { capacity: 10, max_tll: 5m }
applications:
  - application: trading-account-management-api
    services: [{ service: rest }]
    method_groups:
      - group: account-management
        methods: [{ method: getAccount }]
    roles: [{ roles: [reader] }]
    entities: [{ entity: account }]
    routes:
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        resource: { entity: account, id: "{acountId}" }
        roles: [reader]
      - route: GET /users/current/accounts/{id}
        group: account-management
        method: getAccount
        roles: [admin]
        colour: red
      - route: GET /users/current/accounts/{x}
        group: account-management
        method: getAccount
        scopes: [dealing]
        roles: [reader]
      - route: GET /users/current/accounts/current
        group: account-management
        method: getAccount
        roles: [reader]
      - route: GET /users/current/accounts/{accountId}
        group: account-management
        method: getAccount
        roles: [reader]
"#;
        let errs = Config::from_yaml(bad, dir.path()).expect_err("invalid").0;
        let expect = [
            "colour: unknown key",
            "listeners.proxy: \"localhost:eighty\" is not an address",
            "upstream.read_timeout: \"soon\"",
            "issuers[0].algorithms[2]: \"XX999\" is not a supported algorithm",
            "issuers[0].keys[0]: cannot read",
            "issuers[0].keys[1]: HS256 keys need secret_file",
            "cache.max_tll: unknown field",
            "applications[0].routes[0].resource.id: unknown path parameter \"acountId\"",
            "applications[0].routes[1].colour: unknown field",
            "applications[0].routes[2].scopes[0]: \"dealing\" is not a scope of method \"getAccount\"",
            "applications[0].routes[4] (GET /users/current/accounts/{accountId}): overlaps route \"GET /users/current/accounts/current\" at applications[0].routes[3]",
        ];
        for want in expect {
            assert!(errs.iter().any(|e| e.starts_with(want)), "missing {want:?} in:\n{}", errs.join("\n"));
        }
    }

    #[test]
    fn public_routes_take_no_access_fields() {
        let dir = key_dir();
        let text = GOOD.replace("        public: true", "        public: true\n        roles: [reader]");
        let errs = Config::from_yaml(&text, dir.path()).expect_err("invalid").0;
        assert!(errs.iter().any(|e| e.starts_with("applications[0].routes[1].roles: a public route")), "{errs:?}");
    }

    #[test]
    fn hmac_secrets_only_from_secret_files() {
        let dir = key_dir();
        let text = GOOD.replace("algorithms: [ES256]", "algorithms: [HS256]").replace(
            "{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }",
            "{ kid: k1, algorithm: HS256, secret_file: k.pub.pem }",
        );
        let errs = Config::from_yaml(&text, dir.path()).expect_err("a PEM file is no HMAC secret").0;
        assert!(errs.iter().any(|e| e.contains("not a valid HS256 key")), "{errs:?}");
        let ok = text.replace("secret_file: k.pub.pem", "secret_file: secret");
        assert!(Config::from_yaml(&ok, dir.path()).is_ok());
    }

    #[test]
    fn facades_and_tenant_routes_are_checked() {
        let dir = key_dir();
        let tenant_route = |id: &str, action: &str| {
            GOOD.replace(
                "        resource: { entity: account, id: \"{accountId}\" }\n",
                &format!("        resource: {{ entity: account, id: \"{{accountId}}\" }}\n        tenant: {{ id: \"{id}\", action: {action} }}\n"),
            )
        };
        let c = Config::from_yaml(&tenant_route("{accountId}", "READ_TENANT"), dir.path()).expect("valid");
        assert_eq!(c.manifest.routes[0].tenant().map(|t| &*t.action), Some("READ_TENANT"));
        let errs = Config::from_yaml(&tenant_route("{tenant}", "FLY"), dir.path()).expect_err("bad").0;
        for want in ["routes[0].tenant.action: \"FLY\" is not one of", "routes[0].tenant.id: \"{tenant}\" must name"] {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
        }
        let facades = |f: &str| GOOD.replace("applications:", &format!("facades:\n{f}applications:"));
        let errs = Config::from_yaml(&facades("  metaapi: true\n  crafter: true\n"), dir.path()).expect_err("no api").0;
        for want in ["facades.metaapi: needs listeners.api", "facades.crafter: needs listeners.api"] {
            assert!(errs.iter().any(|e| e.starts_with(want)), "{want}: {errs:?}");
        }
        let bearer_only =
            facades("  metaapi: true\n").replace("applications:", "credentials: [{ source: bearer }]\napplications:");
        let errs = Config::from_yaml(&bearer_only, dir.path()).expect_err("no auth-token").0;
        assert!(errs.iter().any(|e| e.starts_with("facades.metaapi: MetaApi clients send")), "{errs:?}");
        let pm = "  prodmanager:\n    applications:\n      - application: nope\n        secret_sha256: \"abc\"\n        permissions: {}\n";
        let errs = Config::from_yaml(&facades(pm), dir.path()).expect_err("bad prodmanager").0;
        assert!(
            errs.iter().any(|e| e.contains("applications[0].application: \"nope\" is not an application")),
            "{errs:?}"
        );
        let pm = "  prodmanager:\n    applications:\n      - application: trading-account-management-api\n        secret_sha256: \"xyz\"\n        permissions:\n          read: { method_groups: [nope], roles: [admin] }\n";
        let errs = Config::from_yaml(&facades(pm), dir.path()).expect_err("bad prodmanager").0;
        for want in
            ["secret_sha256: must be 64 hex digits", "permissions.read.method_groups[0]", "permissions.read.roles[0]"]
        {
            assert!(errs.iter().any(|e| e.contains(want)), "{want}: {errs:?}");
        }
    }

    #[test]
    fn jwks_urls_are_checked() {
        let dir = key_dir();
        let idp = |extra: &str| {
            GOOD.replace(
                "applications:",
                &format!(
                    "  - name: idp\n    issuer: https://idp.example\n    algorithms: [ES256]\n{extra}applications:"
                ),
            )
        };
        let c = Config::from_yaml(&idp("    jwks_url: https://idp.example/jwks\n"), dir.path()).expect("valid");
        assert_eq!(c.jwks_sources.len(), 1);
        assert_eq!((c.jwks_sources[0].issuer, c.jwks_sources[0].refresh), (1, Duration::from_secs(300)));
        for (extra, expected) in [
            ("    jwks_url: ftp://idp.example/jwks\n", "issuers[1].jwks_url: must be an absolute http"),
            ("    jwks_url: /jwks\n", "issuers[1].jwks_url: must be an absolute http"),
            (
                "    jwks_url: http://idp/j\n    jwks_refresh: 1m\n    jwks_min_refetch: 2m\n",
                "issuers[1].jwks_min_refetch: must be at least 100ms and at most jwks_refresh",
            ),
            ("    keys: []\n    jwks_refresh: 1m\n", "issuers[1]: jwks_refresh and jwks_min_refetch need a jwks_url"),
            ("", "issuers[1]: needs keys, a jwks_file, a jwks_url or signing_keys"),
        ] {
            let errs = Config::from_yaml(&idp(extra), dir.path()).expect_err(extra).0;
            assert!(errs.iter().any(|e| e.starts_with(expected)), "{extra}: {errs:?}");
        }
    }

    #[test]
    fn external_issuers_load_keys_from_a_jwks_file() {
        let dir = key_dir();
        let g = keys::generate(jsonwebtoken::Algorithm::EdDSA).expect("key");
        let enc = jsonwebtoken::EncodingKey::from_ed_pem(g.private_pem.as_bytes()).expect("enc");
        let mut jwk = serde_json::to_value(
            jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::EdDSA).expect("jwk"),
        )
        .expect("json");
        jwk["kid"] = "idp-1".into();
        std::fs::write(dir.path().join("idp.jwks.json"), serde_json::json!({ "keys": [jwk] }).to_string())
            .expect("write");
        let text = GOOD.replace(
            "applications:",
            "  - name: idp\n    issuer: https://idp.example\n    audience: [trading]\n    algorithms: [EdDSA]\n    jwks_file: idp.jwks.json\napplications:",
        );
        let c = Config::from_yaml(&text, dir.path()).expect("valid");
        assert_eq!(c.keys.issuers.len(), 2);
        let key = c.keys.find(Some("idp-1")).expect("jwks key loaded");
        assert_eq!((key.algorithm, key.issuer), (jsonwebtoken::Algorithm::EdDSA, 1));
        assert_eq!(c.keys.issuers[1].audience, ["trading"]);
        let dup = text.replace("kid: k1", "kid: idp-1");
        let errs = Config::from_yaml(&dup, dir.path()).expect_err("duplicate kid").0;
        assert!(errs.iter().any(|e| e.contains("kid \"idp-1\" is used by more than one key")), "{errs:?}");
    }

    #[test]
    fn signing_keys_are_loaded_and_their_public_halves_trusted() {
        let dir = key_dir();
        let mut kids = Vec::new();
        for alg in [jsonwebtoken::Algorithm::ES256, jsonwebtoken::Algorithm::EdDSA] {
            let g = keys::generate(alg).expect("key");
            std::fs::write(dir.path().join(format!("{}.pem", g.kid)), &g.private_pem).expect("write");
            kids.push(g.kid);
        }
        let text = GOOD.replace("algorithms: [ES256]", "algorithms: [ES256, EdDSA]").replace(
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]",
            &format!(
                "    keys: [{{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }}]\n    signing_keys:\n      - {{ kid: {a}, private_key_file: {a}.pem }}\n      - {{ kid: {b}, private_key_file: {b}.pem }}\n    active_signing_key: {b}",
                a = kids[0],
                b = kids[1]
            ),
        );
        let c = Config::from_yaml(&text, dir.path()).expect("valid");
        let signing = c.signing.as_ref().expect("signing");
        assert_eq!((signing.issuer.as_str(), signing.active_key().kid.as_str()), ("narrowgate", kids[1].as_str()));
        assert_eq!(signing.active_key().algorithm, jsonwebtoken::Algorithm::EdDSA);
        // Tokens signed with either key verify against the config's keys.
        let verifier = crate::token::Verifier::new(c.keys.clone(), 8192);
        let now = crate::token::now_unix();
        for key in &signing.keys {
            let t = crate::token::sign::sign(&crate::token::testkit::payload("a", now, 60, serde_json::json!([])), key)
                .expect("sign");
            assert!(verifier.verify(&t, now).is_ok(), "{}", key.kid);
        }
        let bad = text.replace(&format!("active_signing_key: {}", kids[1]), "active_signing_key: nope");
        let errs = Config::from_yaml(&bad, dir.path()).expect_err("unknown active").0;
        assert!(errs.iter().any(|e| e.starts_with("issuers[0].active_signing_key")), "{errs:?}");
        let es_only = text.replace("algorithms: [ES256, EdDSA]", "algorithms: [ES256]");
        let errs = Config::from_yaml(&es_only, dir.path()).expect_err("EdDSA not allowed").0;
        assert!(errs.iter().any(|e| e.starts_with("issuers[0].signing_keys[1]")), "{errs:?}");
    }

    #[test]
    fn the_store_section_is_validated() {
        let dir = key_dir();
        let with = |store: &str| GOOD.replace("applications:", &format!("store: {store}\napplications:"));
        let c = Config::from_yaml(&with("{ sqlite: {} }"), dir.path()).expect("valid");
        match c.store {
            Some(StoreConfig { backend: StoreBackend::Sqlite { path }, resync_interval, create_if_missing }) => {
                assert_eq!(path, dir.path().join("data/narrowgate.db"));
                assert_eq!(resync_interval, Duration::from_secs(30));
                assert!(!create_if_missing, "a store is created only when asked");
            }
            other => panic!("{other:?}"),
        }
        assert!(Config::from_yaml(GOOD, dir.path()).expect("valid").store.is_none());
        let secret_url = "mysql://user:hunter2@db/ng";
        let errs = Config::from_yaml(&with(&format!("{{ postgres: {{ url: \"{secret_url}\" }} }}")), dir.path())
            .expect_err("not postgres")
            .0;
        assert!(errs.iter().any(|e| e.starts_with("store.postgres.url:")), "{errs:?}");
        assert!(!errs.join("\n").contains("hunter2"), "the URL's password was echoed");
        let errs =
            Config::from_yaml(&with("{ sqlite: { resync_interval: 1ms } }"), dir.path()).expect_err("too short").0;
        assert!(errs.iter().any(|e| e.starts_with("store.resync_interval")), "{errs:?}");
        let errs = Config::from_yaml(&with("{ redis: {} }"), dir.path()).expect_err("unknown").0;
        assert!(errs.iter().any(|e| e.starts_with("store")), "{errs:?}");
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_others_can_read_are_warned_about() {
        let dir = key_dir();
        let g = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
        std::fs::write(dir.path().join("signer.pem"), &g.private_pem).expect("write");
        let text = GOOD.replace(
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]",
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]\n    signing_keys: [{ kid: s1, private_key_file: signer.pem }]\n  - name: hs\n    issuer: hs-issuer\n    algorithms: [HS256]\n    keys: [{ kid: h1, algorithm: HS256, secret_file: secret }]",
        );
        for (mode, warned) in [(0o644, true), (0o640, true), (0o604, true), (0o600, false), (0o400, false)] {
            chmod(&dir.path().join("signer.pem"), mode);
            chmod(&dir.path().join("secret"), mode);
            let c = Config::from_yaml(&text, dir.path()).expect("valid: a warning is not an error");
            let w = c.warnings.join("\n");
            assert_eq!(w.contains("issuers[0].signing_keys[0].private_key_file:"), warned, "{mode:o}: {w}");
            assert_eq!(w.contains("issuers[1].keys[0].secret_file:"), warned, "{mode:o}: {w}");
            assert!(!w.contains("BEGIN"), "key material in a warning");
        }
        // A public key may be read by anyone.
        chmod(&dir.path().join("k.pub.pem"), 0o644);
        assert!(Config::from_yaml(GOOD, dir.path()).expect("valid").warnings.is_empty());
    }

    #[test]
    fn enforcement_off_is_refused_beside_a_store_or_a_token_service() {
        let dir = key_dir();
        let off = GOOD.replace("applications:", "enforcement: false\napplications:");
        assert!(!Config::from_yaml(&off, dir.path()).expect("a benchmark config").enforce);
        let with_store = off.replace("applications:", "store: { sqlite: {} }\napplications:");
        let errs = Config::from_yaml(&with_store, dir.path()).expect_err("with a store").0;
        assert!(errs.iter().any(|e| e.starts_with("enforcement:") && e.contains("benchmarks only")), "{errs:?}");
        let with_api = off.replace("admin: \"127.0.0.1:0\"", "admin: \"127.0.0.1:0\", api: \"127.0.0.1:0\"");
        let errs = Config::from_yaml(&with_api, dir.path()).expect_err("with an api listener").0;
        assert!(errs.iter().any(|e| e.starts_with("enforcement:")), "{errs:?}");
    }

    #[test]
    fn an_issuers_own_tokens_pass_its_own_checks() {
        let dir = key_dir();
        let g = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
        std::fs::write(dir.path().join("signer.pem"), &g.private_pem).expect("write");
        let text = GOOD.replace(
            "    keys: [{ kid: k1, algorithm: ES256, public_key_file: k.pub.pem }]",
            "    audience: [trading, reports]\n    max_lifetime: 2h\n    signing_keys: [{ kid: s1, private_key_file: signer.pem }]",
        );
        let c = Config::from_yaml(&text, dir.path()).expect("valid");
        let signing = c.signing.as_ref().expect("signing");
        assert_eq!(signing.audience.as_deref(), Some("trading"));
        assert_eq!(signing.max_lifetime_secs, Some(7200));
        let now = crate::token::now_unix();
        let claims = |ttl: u64| crate::token::Claims {
            iss: "anything".into(),
            sub: "a".into(),
            aud: None,
            exp: Some(now + ttl),
            nbf: Some(now),
            iat: now,
            jti: format!("j{ttl}"),
            name: None,
            kind: crate::token::TokenKind::Access,
            role: crate::token::Role::User,
            master: false,
            access_rules: vec![],
            tenant_permissions: vec![],
            lineage: vec![],
            extra: Default::default(),
        };
        // Minted: iss and aud stamped, so its own verifier accepts it.
        let t = signing.sign(&mut claims(3600)).expect("minted");
        let grant = crate::token::Verifier::new(c.keys.clone(), 8192).verify(&t, now).expect("its own checks pass");
        assert_eq!(&*grant.issuer, "narrowgate");
        // Longer than max_lifetime: never minted.
        assert!(matches!(signing.sign(&mut claims(7201)), Err(MintError::TooLong { max_secs: 7200 })));

        let contradiction = text.replace("max_lifetime: 2h", "max_lifetime: 2h\n    allow_missing_exp: true");
        let errs = Config::from_yaml(&contradiction, dir.path()).expect_err("no exp vs max lifetime").0;
        assert!(errs.iter().any(|e| e.starts_with("issuers[0].max_lifetime")), "{errs:?}");
        let errs =
            Config::from_yaml(&text.replace("max_lifetime: 2h", "max_lifetime: 0s"), dir.path()).expect_err("zero").0;
        assert!(errs.iter().any(|e| e.starts_with("issuers[0].max_lifetime")), "{errs:?}");
    }

    #[test]
    fn an_unusable_key_in_a_jwks_file_is_a_warning_and_a_file_of_none_an_error() {
        let dir = key_dir();
        let g = keys::generate(jsonwebtoken::Algorithm::ES256).expect("key");
        let enc = jsonwebtoken::EncodingKey::from_ec_pem(g.private_pem.as_bytes()).expect("enc");
        let mut good = serde_json::to_value(
            jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::ES256).expect("jwk"),
        )
        .expect("json");
        good["kid"] = "idp-1".into();
        let mut for_encryption = good.clone();
        for_encryption["kid"] = "idp-enc".into();
        for_encryption["use"] = "enc".into();
        let text = GOOD.replace(
            "applications:",
            "  - name: idp\n    issuer: https://idp.example\n    algorithms: [ES256]\n    jwks_file: idp.jwks.json\napplications:",
        );
        let write = |keys: serde_json::Value| {
            std::fs::write(dir.path().join("idp.jwks.json"), serde_json::json!({ "keys": keys }).to_string())
                .expect("write")
        };
        write(serde_json::json!([for_encryption, good]));
        let c = Config::from_yaml(&text, dir.path()).expect("valid");
        assert!(c.keys.find(Some("idp-1")).is_some() && c.keys.find(Some("idp-enc")).is_none());
        assert!(
            c.warnings.iter().any(|w| w.starts_with("issuers[1].jwks_file: key skipped") && w.contains("idp-enc")),
            "{:?}",
            c.warnings
        );
        write(serde_json::json!([for_encryption]));
        let errs = Config::from_yaml(&text, dir.path()).expect_err("no usable key").0;
        assert!(errs.iter().any(|e| e.starts_with("issuers[1].jwks_file: holds no usable key")), "{errs:?}");
    }

    #[test]
    fn broken_yaml_is_an_error_not_a_panic() {
        let dir = key_dir();
        for text in ["", "[1, 2", "listeners: [", "- a\n- b", "\u{0}"] {
            assert!(Config::from_yaml(text, dir.path()).is_err(), "{text:?}");
        }
    }
}
