//! Where allowed requests go: the default `upstream` and the named
//! `upstreams`, each with its addresses, plaintext or TLS, timeouts and
//! pool. An application names its upstream (`upstream:`; the default
//! when it names none), a route may name another, and an application may
//! declare the `hosts` it serves (see `manifest`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Authority;
use serde::Deserialize;

use super::Errors;
use super::duration::HumanDuration;

/// The name of the upstream a config's `upstream` section describes.
pub const DEFAULT_UPSTREAM: &str = "default";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// `default`, or its name under `upstreams` (a metric label).
    pub name: Box<str>,
    pub addresses: Vec<Authority>,
    pub connect_timeout: Duration,
    /// Time allowed for the upstream to send its response head.
    pub read_timeout: Duration,
    /// The longest the upstream may go silent in the middle of a response
    /// body before the response is cut off.
    pub body_idle_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle: usize,
    /// `None`: plain HTTP.
    pub tls: Option<UpstreamTls>,
    pub balance: Balance,
    pub ejection: Ejection,
    pub retries: Retries,
    pub dns: Dns,
    pub protocol: Protocol,
}

/// What an upstream speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1, a pool of connections per address.
    #[default]
    Http1,
    /// HTTP/2 (`h2` by ALPN over TLS, prior knowledge without): one
    /// multiplexed connection per address and worker. gRPC upstreams
    /// need it.
    Http2,
}

/// How an address given by DNS name is resolved: when first dialled,
/// again every `refresh` (in the background, keeping the last good answer
/// while resolution fails), and soon after a connection to it fails. A
/// pooled connection to an address the name no longer resolves to is
/// closed instead of reused. IP literals are never resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dns {
    pub refresh: Duration,
    /// DNS servers asked directly (UDP, then TCP); empty: the system's
    /// resolver (`getaddrinfo`: `/etc/hosts`, `/etc/resolv.conf` and its
    /// search domains, as every other program on the host).
    pub nameservers: Vec<std::net::SocketAddr>,
}

/// How a request's address is chosen among an upstream's healthy ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each address in turn.
    #[default]
    RoundRobin,
    /// Of two addresses drawn at random, the one with fewer requests in
    /// flight (the power of two choices).
    LeastOutstanding,
}

/// Passive health: an address that fails `consecutive_failures` times in
/// a row (no connection, a failed TLS handshake, no response in time, or
/// a 5xx) is left out for `base`, doubled at each ejection that follows
/// (at most `max`), then tried again; one success ends its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ejection {
    /// 0: never ejected.
    pub consecutive_failures: u32,
    pub base: Duration,
    pub max: Duration,
}

/// Retries, only where safe: a request that could not be sent at all (no
/// connection, a failed TLS handshake: no byte of it went out), and an
/// idempotent request without a body whose answer has one of `statuses`.
/// Each retry goes to another address when there is one, and spends the
/// upstream's retry budget: retries stay within `budget_percent` of the
/// requests sent (with a reserve of 10), so a failing upstream is not
/// sent a storm of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retries {
    /// Retries per request (0: none).
    pub attempts: u32,
    /// Statuses an idempotent bodiless request is retried on.
    pub statuses: Vec<u16>,
    pub budget_percent: u32,
}

/// TLS to an upstream.
#[derive(Clone)]
pub struct UpstreamTls {
    pub client: Arc<rustls::ClientConfig>,
    /// The name its certificate must have; `None`: each address's host.
    pub server_name: Option<rustls::pki_types::ServerName<'static>>,
    /// SHA-256 of the settings and the files they read: two are equal when
    /// this is (what tells a reload that changed them).
    fingerprint: String,
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for UpstreamTls {}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamFile {
    pub addresses: Vec<String>,
    #[serde(default)]
    pub connect_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub read_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub body_idle_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub pool_idle_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub pool_max_idle: Option<usize>,
    #[serde(default)]
    pub tls: Option<UpstreamTlsFile>,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub ejection: Option<EjectionFile>,
    #[serde(default)]
    pub retries: Option<RetriesFile>,
    #[serde(default)]
    pub dns: Option<DnsFile>,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DnsFile {
    #[serde(default)]
    refresh: Option<HumanDuration>,
    /// `ip` or `ip:port` (port 53 when absent).
    #[serde(default)]
    nameservers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EjectionFile {
    #[serde(default)]
    consecutive_failures: Option<u32>,
    #[serde(default)]
    base: Option<HumanDuration>,
    #[serde(default)]
    max: Option<HumanDuration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RetriesFile {
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    statuses: Option<Vec<u16>>,
    #[serde(default)]
    budget_percent: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpstreamTlsFile {
    /// PEM bundle of the CAs the upstream's certificate must chain to;
    /// absent: the system's trusted roots.
    #[serde(default)]
    ca: Option<String>,
    /// The name the upstream's certificate must have (and the SNI sent);
    /// absent: the host of the address dialled.
    #[serde(default)]
    server_name: Option<String>,
    /// A certificate the gateway presents to the upstream (mTLS).
    #[serde(default)]
    client_certificate: Option<ClientCertificateFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientCertificateFile {
    cert: String,
    key: String,
}

/// Whether `name` can name an upstream: lowercase letters, digits, `-`
/// and `_` (it is a metric label and appears in logs).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The named upstreams, in the order of their names.
pub(super) fn build_upstreams(
    files: std::collections::BTreeMap<String, UpstreamFile>,
    base: &Path,
    errs: &mut Errors,
) -> Vec<UpstreamConfig> {
    let mut out = Vec::new();
    for (name, f) in files {
        let path = format!("upstreams.{name}");
        if !valid_name(&name) || name == DEFAULT_UPSTREAM {
            errs.push(
                &path,
                "an upstream's name is lowercase letters, digits, '-' and '_', and not \"default\" (the `upstream` section)",
            );
            continue;
        }
        if let Some(u) = build_upstream(f, &name, &path, base, errs) {
            out.push(u);
        }
    }
    out
}

pub(super) fn build_upstream(
    f: UpstreamFile,
    name: &str,
    path: &str,
    base: &Path,
    errs: &mut Errors,
) -> Option<UpstreamConfig> {
    if f.addresses.is_empty() {
        errs.push(&format!("{path}.addresses"), "at least one address is required");
    }
    let mut addresses = Vec::new();
    for (i, a) in f.addresses.iter().enumerate() {
        match a.parse::<Authority>() {
            Ok(auth) if auth.port_u16().is_some() && !a.contains('@') => addresses.push(auth),
            _ => errs.push(&format!("{path}.addresses[{i}]"), format!("{a:?} is not host:port")),
        }
    }
    let tls = match f.tls {
        None => None,
        Some(t) => Some(build_tls(t, &format!("{path}.tls"), base, errs)?),
    };
    let e = f.ejection.unwrap_or_default();
    let ejection = Ejection {
        consecutive_failures: e.consecutive_failures.unwrap_or(5),
        base: e.base.map_or(Duration::from_secs(10), Duration::from),
        max: e.max.map_or(Duration::from_secs(300), Duration::from),
    };
    if ejection.base.is_zero() || ejection.max < ejection.base {
        errs.push(&format!("{path}.ejection"), "base must be more than 0s and max at least base");
    }
    let r = f.retries.unwrap_or_default();
    let retries = Retries {
        attempts: r.attempts.unwrap_or(1),
        statuses: r.statuses.unwrap_or_default(),
        budget_percent: r.budget_percent.unwrap_or(20),
    };
    if retries.attempts > 5 {
        errs.push(&format!("{path}.retries.attempts"), "at most 5");
    }
    if retries.budget_percent > 100 {
        errs.push(&format!("{path}.retries.budget_percent"), "at most 100");
    }
    for (i, s) in retries.statuses.iter().enumerate() {
        if !(500..=599).contains(s) && *s != 429 {
            errs.push(&format!("{path}.retries.statuses[{i}]"), format!("{s} is not 429 or a 5xx status"));
        }
    }
    let d = f.dns.unwrap_or_default();
    let dns = Dns {
        refresh: d.refresh.map_or(Duration::from_secs(5), Duration::from),
        nameservers: d
            .nameservers
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match nameserver(n) {
                Some(a) => Some(a),
                None => {
                    errs.push(
                        &format!("{path}.dns.nameservers[{i}]"),
                        format!("{n:?} is not an IP address or ip:port"),
                    );
                    None
                }
            })
            .collect(),
    };
    if dns.refresh < Duration::from_secs(1) {
        errs.push(&format!("{path}.dns.refresh"), "at least 1s");
    }
    // Envoy's stream idle timeout: long enough for a quiet stream (a gRPC
    // watch, server-sent events), short enough that a stalled upstream
    // does not hold a client and two connections for ever.
    let body_idle_timeout = f.body_idle_timeout.map_or(Duration::from_secs(300), Duration::from);
    if body_idle_timeout.is_zero() {
        errs.push(&format!("{path}.body_idle_timeout"), "must be more than 0s");
    }
    Some(UpstreamConfig {
        name: name.into(),
        dns,
        protocol: f.protocol,
        balance: f.balance,
        ejection,
        retries,
        addresses,
        connect_timeout: f.connect_timeout.map_or(Duration::from_secs(2), Duration::from),
        read_timeout: f.read_timeout.map_or(Duration::from_secs(30), Duration::from),
        body_idle_timeout,
        pool_idle_timeout: f.pool_idle_timeout.map_or(Duration::from_secs(90), Duration::from),
        pool_max_idle: f.pool_max_idle.unwrap_or(256),
        tls,
    })
}

/// A DNS server's address: `ip`, `ip:port`, or `[ipv6]:port`.
fn nameserver(s: &str) -> Option<std::net::SocketAddr> {
    s.parse().ok().or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| (ip, 53).into()))
}

fn build_tls(f: UpstreamTlsFile, path: &str, base: &Path, errs: &mut Errors) -> Option<UpstreamTls> {
    let from = errs.files.len();
    let roots = match &f.ca {
        None => None,
        Some(ca) => {
            let pem = super::read_ca_bundle(&base.join(ca), &format!("{path}.ca"), errs)?;
            // Read and checked just now: it parses.
            Some(crate::tls::ca_bundle(&pem).ok()?)
        }
    };
    let server_name = match &f.server_name {
        None => None,
        Some(n) => match rustls::pki_types::ServerName::try_from(n.clone()) {
            Ok(s) => Some(s),
            Err(_) => {
                errs.push(&format!("{path}.server_name"), format!("{n:?} is not a DNS name or IP address"));
                return None;
            }
        },
    };
    let client = match &f.client_certificate {
        None => None,
        Some(c) => {
            let at = format!("{path}.client_certificate");
            Some(super::tls::load_pair((&c.cert, &c.key), None, false, &at, base, errs)?.key)
        }
    };
    let client = match crate::tls::client_config(roots, client) {
        Ok(c) => c,
        Err(e) => {
            errs.push(path, e);
            return None;
        }
    };
    let settings =
        format!("{:?}|{:?}|{:?}", f.ca, f.server_name, f.client_certificate.as_ref().map(|c| (&c.cert, &c.key)));
    let fingerprint = super::fingerprint(settings.as_bytes(), &errs.files[from..]);
    Some(UpstreamTls { client, server_name, fingerprint })
}
