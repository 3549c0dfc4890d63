//! Where the gateway listens and how: listeners, downstream connection limits, trusted proxies, credential
//! sources, forwarding (identity headers), the grant cache, and what an
//! unmatched request gets.

use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;
use serde::Deserialize;

use super::duration::HumanDuration;
use super::{Errors, header_name};
use crate::token::verify::DEFAULT_MAX_TOKEN_BYTES;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The token service; `None` in enforce-only mode.
    pub api: Option<SocketAddr>,
    /// Decisions for other proxies (Envoy's `ext_authz`, nginx's
    /// `auth_request`, forward auth); `None`: off.
    pub decision: Option<SocketAddr>,
}

impl ServerConfig {
    /// How many proxy workers `worker_threads` means on this machine.
    pub fn workers(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Proxy workers: 1 runs everything on one thread (a sidecar's usual
    /// share, and the cheapest per request); N > 1 runs N workers, each a
    /// thread of its own with its own listening socket (`SO_REUSEPORT`)
    /// and upstream connections; 0 means one per core.
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
    pub http2: Http2,
}

/// HTTP/2 downstream: offered by ALPN on TLS listeners, and spoken with
/// prior knowledge (h2c) on plaintext ones when `cleartext` says so.
/// Every stream is decided on its own, like an HTTP/1.1 request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2 {
    /// `h2` in ALPN on TLS listeners.
    pub enabled: bool,
    /// Prior-knowledge HTTP/2 on plaintext listeners (`Upgrade: h2c`
    /// stays refused).
    pub cleartext: bool,
    /// Streams open at once on one connection.
    pub max_concurrent_streams: u32,
    /// Streams a client may cancel before their answer on one connection
    /// (when they are at least half its streams) before it is closed with
    /// GOAWAY: what bounds the rapid-reset attack's cost.
    pub max_cancelled_streams: u32,
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
    /// The verified client certificate's subject and SPIFFE id (mTLS).
    pub client_subject: HeaderName,
    pub client_spiffe: HeaderName,
}

impl IdentityHeaders {
    /// Every identity header name.
    pub fn names(&self) -> [&HeaderName; 6] {
        [&self.subject, &self.token_id, &self.application, &self.roles, &self.client_subject, &self.client_spiffe]
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub capacity: usize,
    pub max_ttl: Duration,
}

/// What a request matching no route gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    /// 403 `no_matching_route`.
    Deny,
    /// 404 `no_matching_route`.
    NotFound,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListenersFile {
    pub proxy: String,
    #[serde(default)]
    pub admin: Option<String>,
    /// The token service; absent in enforce-only mode.
    #[serde(default)]
    pub api: Option<String>,
    #[serde(default)]
    pub decision: Option<String>,
}

/// `decision`: who may ask the decision listener about a request, and how.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionFile {
    /// The front proxies' addresses (CIDRs): only they describe requests.
    #[serde(default)]
    pub peers: Vec<String>,
    /// The path Envoy's HTTP `ext_authz` puts before the original path
    /// (its `path_prefix`).
    #[serde(default)]
    pub envoy_path_prefix: Option<String>,
}

/// The decision listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionConfig {
    /// The proxies whose descriptions are believed.
    pub peers: Vec<IpNet>,
    /// Envoy's HTTP `path_prefix`: `/` and more, no `/` at the end.
    pub envoy_path_prefix: String,
}

impl Default for DecisionConfig {
    fn default() -> Self {
        DecisionConfig { peers: Vec::new(), envoy_path_prefix: "/envoy".into() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerFile {
    #[serde(default)]
    pub header_read_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub max_header_bytes: Option<usize>,
    #[serde(default)]
    pub max_headers: Option<usize>,
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    #[serde(default)]
    pub worker_threads: Option<usize>,
    /// After SIGTERM, how long to keep accepting while not ready (5s).
    #[serde(default)]
    pub drain_delay: Option<HumanDuration>,
    /// Then how long in-flight requests may take (25s).
    #[serde(default)]
    pub shutdown_grace: Option<HumanDuration>,
    #[serde(default)]
    pub http2: Http2File,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Http2File {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    cleartext: Option<bool>,
    #[serde(default)]
    max_concurrent_streams: Option<u32>,
    #[serde(default)]
    max_cancelled_streams: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum CredentialFile {
    Bearer,
    Header { name: String },
    Query { name: String },
    Cookie { name: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ForwardingFile {
    #[serde(default)]
    pub forward_credential: bool,
    #[serde(default)]
    pub request_id_header: Option<String>,
    #[serde(default)]
    pub identity_headers: Option<IdentityHeadersFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentityHeadersFile {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub token_id: Option<String>,
    #[serde(default)]
    pub application: Option<String>,
    #[serde(default)]
    pub roles: Option<String>,
    #[serde(default)]
    pub client_subject: Option<String>,
    #[serde(default)]
    pub client_spiffe: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CacheFile {
    #[serde(default)]
    pub capacity: Option<usize>,
    #[serde(default)]
    pub max_ttl: Option<HumanDuration>,
}

pub(super) fn parse_cidr(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| format!("{s:?} is not an IP address or CIDR range"))
}

pub(super) fn socket_addr(s: &str, path: &str, errs: &mut Errors) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.push(path, format!("{s:?} is not an address like 127.0.0.1:8080"));
            None
        }
    }
}

pub(super) fn build_listeners(f: ListenersFile, errs: &mut Errors) -> Option<Listeners> {
    let proxy = socket_addr(&f.proxy, "listeners.proxy", errs);
    let admin = f.admin.as_deref().map(|a| socket_addr(a, "listeners.admin", errs));
    let api = f.api.as_deref().map(|a| socket_addr(a, "listeners.api", errs));
    let decision = f.decision.as_deref().map(|a| socket_addr(a, "listeners.decision", errs));
    Some(Listeners { proxy: proxy?, admin: admin.flatten(), api: api.flatten(), decision: decision.flatten() })
}

/// The decision listener's settings (`decision`). Its peers are required
/// with the listener: a request's description is only as true as whoever
/// sent it.
pub(super) fn build_decision(f: Option<DecisionFile>, listening: bool, errs: &mut Errors) -> DecisionConfig {
    let Some(f) = f else {
        if listening {
            errs.push("decision.peers", "list the proxies that may ask for decisions (listeners.decision is set)");
        }
        return DecisionConfig::default();
    };
    if !listening {
        errs.push("decision", "applies only with listeners.decision");
    }
    if f.peers.is_empty() && listening {
        errs.push("decision.peers", "list the proxies that may ask for decisions (listeners.decision is set)");
    }
    let peers = f
        .peers
        .iter()
        .enumerate()
        .filter_map(|(i, s)| parse_cidr(s).map_err(|e| errs.push(&format!("decision.peers[{i}]"), e)).ok())
        .collect();
    let envoy_path_prefix = match f.envoy_path_prefix {
        None => DecisionConfig::default().envoy_path_prefix,
        Some(p) if p.len() > 1 && p.starts_with('/') && !p.ends_with('/') && !p.contains(['?', '#', '%']) => p,
        Some(_) => {
            errs.push("decision.envoy_path_prefix", "a path: '/' and more, without a '/' at its end, '?', '#' or '%'");
            DecisionConfig::default().envoy_path_prefix
        }
    };
    DecisionConfig { peers, envoy_path_prefix }
}

pub(super) fn build_credentials(list: Vec<CredentialFile>, errs: &mut Errors) -> Vec<CredentialSource> {
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

pub(super) fn build_forwarding(f: ForwardingFile, errs: &mut Errors) -> Forwarding {
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
        client_subject: name(
            &ih.client_subject,
            "x-narrowgate-client-subject",
            "forwarding.identity_headers.client_subject",
        ),
        client_spiffe: name(
            &ih.client_spiffe,
            "x-narrowgate-client-spiffe",
            "forwarding.identity_headers.client_spiffe",
        ),
    };
    let request_id = match &f.request_id_header {
        None => HeaderName::from_static("x-request-id"),
        Some(s) => {
            header_name(s, "forwarding.request_id_header", errs).unwrap_or(HeaderName::from_static("x-request-id"))
        }
    };
    Forwarding { forward_credential: f.forward_credential, request_id, identity }
}

/// The `server` section, and the token size limit it also holds.
pub(super) fn build_server(f: ServerFile, errs: &mut Errors) -> (ServerConfig, usize) {
    let server = ServerConfig {
        worker_threads: f.worker_threads.unwrap_or(0),
        header_read_timeout: f.header_read_timeout.map_or(Duration::from_secs(10), Duration::from),
        idle_timeout: f.idle_timeout.map_or(Duration::from_secs(60), Duration::from),
        max_header_bytes: f.max_header_bytes.unwrap_or(16 * 1024),
        max_headers: f.max_headers.unwrap_or(64),
        drain_delay: f.drain_delay.map_or(Duration::from_secs(5), Duration::from),
        shutdown_grace: f.shutdown_grace.map_or(Duration::from_secs(25), Duration::from),
        http2: Http2 {
            enabled: f.http2.enabled.unwrap_or(true),
            cleartext: f.http2.cleartext.unwrap_or(false),
            max_concurrent_streams: f.http2.max_concurrent_streams.unwrap_or(100),
            max_cancelled_streams: f.http2.max_cancelled_streams.unwrap_or(100),
        },
    };
    if server.http2.max_concurrent_streams == 0 {
        errs.push("server.http2.max_concurrent_streams", "must be at least 1");
    }
    if server.http2.max_cancelled_streams == 0 {
        errs.push("server.http2.max_cancelled_streams", "must be at least 1");
    }
    if server.max_header_bytes < 8192 {
        errs.push("server.max_header_bytes", "must be at least 8192");
    }
    if server.max_headers == 0 {
        errs.push("server.max_headers", "must be at least 1");
    }
    (server, f.max_token_bytes.unwrap_or(DEFAULT_MAX_TOKEN_BYTES))
}

pub(super) fn build_trusted_proxies(list: &[String], errs: &mut Errors) -> Vec<IpNet> {
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| parse_cidr(s).map_err(|e| errs.push(&format!("trusted_proxies[{i}]"), e)).ok())
        .collect()
}

/// Cached tokens when the config does not say: a sidecar's share — about
/// 8 MiB when its users' tokens carry the same rules (a rule set is kept
/// once), 16 MiB when each token's rules differ (`benches/rss.sh`).
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

pub(super) fn build_cache(f: CacheFile) -> CacheConfig {
    CacheConfig {
        capacity: f.capacity.unwrap_or(DEFAULT_CACHE_CAPACITY),
        max_ttl: f.max_ttl.map_or(Duration::from_secs(300), Duration::from),
    }
}

/// The credential sources when the config names none: the bearer header
/// and MetaApi's `auth-token`.
pub(super) fn default_credentials() -> Vec<CredentialSource> {
    vec![CredentialSource::Bearer, CredentialSource::Header(HeaderName::from_static("auth-token"))]
}
