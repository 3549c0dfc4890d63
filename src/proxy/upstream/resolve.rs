//! Where a configured address leads. An IP literal is itself. A DNS name
//! is resolved when it is first dialled, again once its refresh interval
//! has passed, and soon after a connection to it fails; the last good
//! answer stays while resolution fails. A re-resolution runs in the
//! background: a request never waits for one it does not need.
//!
//! One [`Resolved`] per configured address, shared by every worker's pool
//! of one upstream generation, so a name is asked once per interval however
//! many workers dial it. Each connection remembers the address it was made
//! to; a pooled one whose address the name no longer gives is closed
//! rather than reused (see `Target::take`).
//!
//! Passive health is kept per configured address; within a name, an
//! address a connection failed to is passed over for [`PASS_OVER`] while
//! the name has others, so one dead address among a name's several costs
//! one failed connection, not every other one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::clock::Clock;
use crate::config::Dns;
use crate::metrics::UpstreamCounters;
use arc_swap::ArcSwap;
use http::uri::Authority;

use super::health::{millis, now_ms};

/// After a failed connection or resolution, the name is asked again, but
/// not sooner than this after the last time.
const RETRY_GAP: Duration = Duration::from_secs(1);

/// How long an address of a name that a connection failed to is passed
/// over for the name's other addresses.
pub(super) const PASS_OVER: Duration = Duration::from_secs(10);

/// A resolution that takes longer has failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// How names are looked up: the system's resolver, or configured servers.
pub(super) enum Lookup {
    /// `getaddrinfo`, on tokio's blocking pool.
    System,
    /// The configured DNS servers, asked directly.
    Servers(Box<hickory_resolver::TokioResolver>),
}

impl Lookup {
    pub(super) fn new(dns: &Dns) -> Self {
        use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
        use hickory_resolver::proto::xfer::Protocol;
        if dns.nameservers.is_empty() {
            return Lookup::System;
        }
        let servers: Vec<NameServerConfig> = dns
            .nameservers
            .iter()
            .flat_map(|a| [NameServerConfig::new(*a, Protocol::Udp), NameServerConfig::new(*a, Protocol::Tcp)])
            .collect();
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        opts.timeout = Duration::from_secs(2);
        opts.attempts = 2;
        let config = ResolverConfig::from_parts(None, vec![], servers);
        let resolver = hickory_resolver::Resolver::builder_with_config(
            config,
            hickory_resolver::name_server::TokioConnectionProvider::default(),
        )
        .with_options(opts)
        .build();
        Lookup::Servers(Box::new(resolver))
    }

    /// `host`'s addresses with `port`, sorted, without repeats.
    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        let mut found: Vec<SocketAddr> = match self {
            Lookup::System => tokio::net::lookup_host((host, port)).await.map_err(|e| e.to_string())?.collect(),
            Lookup::Servers(r) => {
                r.lookup_ip(host).await.map_err(|e| e.to_string())?.iter().map(|ip| SocketAddr::new(ip, port)).collect()
            }
        };
        found.sort_unstable();
        found.dedup();
        if found.is_empty() {
            return Err("the name has no address".into());
        }
        Ok(found)
    }
}

/// One configured address and what it resolves to now.
pub(super) struct Resolved {
    /// The name (without brackets) when it is one; `None`: an IP literal.
    name: Option<Box<str>>,
    port: u16,
    lookup: Arc<Lookup>,
    addrs: ArcSwap<Vec<SocketAddr>>,
    /// Moves on each change of `addrs`: a connection made at the current
    /// generation needs no look at the set.
    generation: AtomicU64,
    /// When (ms, by the gateway's clock) the name is asked again.
    due: AtomicU64,
    /// When it was last asked.
    asked: AtomicU64,
    resolving: AtomicBool,
    /// The next address to dial, in turn.
    next: AtomicUsize,
    /// Addresses a connection failed to, and until when (ms) they are
    /// passed over. Touched only when a connection is made.
    unreachable: std::sync::Mutex<Vec<(SocketAddr, u64)>>,
    refresh: Duration,
    /// The upstream's name, for the log.
    upstream: Box<str>,
    clock: Arc<Clock>,
    counters: UpstreamCounters,
}

impl Resolved {
    pub(super) fn new(
        authority: &Authority,
        upstream: &str,
        dns: &Dns,
        lookup: &Arc<Lookup>,
        clock: &Arc<Clock>,
        counters: UpstreamCounters,
    ) -> Self {
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let (name, addrs) = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => (None, vec![SocketAddr::new(ip, port)]),
            Err(_) => (Some(host.into()), Vec::new()),
        };
        Resolved {
            name,
            port,
            lookup: lookup.clone(),
            addrs: ArcSwap::from_pointee(addrs),
            generation: AtomicU64::new(0),
            due: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            resolving: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            unreachable: std::sync::Mutex::default(),
            refresh: dns.refresh,
            upstream: upstream.into(),
            clock: clock.clone(),
            counters,
        }
    }

    /// Resolve the name again in the background when that is due at
    /// `now` (ms by the gateway's clock): the request at hand goes where
    /// the last answer said.
    pub(super) fn refresh_if_due(self: &Arc<Self>, now: u64) {
        if self.name.is_none()
            || now < self.due.load(Ordering::Relaxed)
            || self.addrs.load().is_empty()
            || self.resolving.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Some(name) = &this.name {
                let _ = this.resolve(name).await;
            }
            this.resolving.store(false, Ordering::Release);
        });
    }

    /// The address a new connection dials, and the generation it belongs
    /// to: the name's addresses in turn. A name not resolved yet is
    /// resolved now (one whose every resolution failed, at most once a
    /// second).
    pub(super) async fn dial(&self) -> Result<(SocketAddr, u64), String> {
        let mut generation = self.generation.load(Ordering::Acquire);
        let mut addrs = self.addrs.load_full();
        if let Some(name) = &self.name
            && addrs.is_empty()
        {
            // Asked and failed a moment ago: not asked again at once, so a
            // name that does not resolve costs no lookup per request.
            if self.asked.load(Ordering::Relaxed) != 0 && now_ms(&self.clock) < self.due.load(Ordering::Relaxed) {
                return Err("the name did not resolve".into());
            }
            self.resolve(name).await?;
            generation = self.generation.load(Ordering::Acquire);
            addrs = self.addrs.load_full();
        }
        // Never empty once resolved: an answer without addresses fails.
        let n = addrs.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = now_ms(&self.clock);
        let passed_over = self.unreachable.lock().map(|u| u.clone()).unwrap_or_default();
        let reachable = |a: &&SocketAddr| !passed_over.iter().any(|(u, until)| u == *a && *until > now);
        // In turn, passing over the unreachable; if every one is, in turn.
        let pick = (0..n).filter_map(|k| addrs.get((start + k) % n)).find(reachable).or_else(|| addrs.get(start % n));
        pick.map(|a| (*a, generation)).ok_or_else(|| "the name has no address".to_string())
    }

    /// A connection to `addr` failed: ask the name again soon, and pass
    /// `addr` over for a while.
    pub(super) fn failed(&self, addr: SocketAddr) {
        if self.name.is_some() {
            let soon = self.asked.load(Ordering::Relaxed).saturating_add(millis(RETRY_GAP));
            self.due.fetch_min(soon, Ordering::Relaxed);
            let now = now_ms(&self.clock);
            if let Ok(mut u) = self.unreachable.lock() {
                u.retain(|(a, until)| *a != addr && *until > now);
                u.push((addr, now.saturating_add(millis(PASS_OVER))));
            }
        }
    }

    /// A connection to `addr` was made: it is not passed over any longer.
    pub(super) fn reached(&self, addr: SocketAddr) {
        if self.name.is_some()
            && let Ok(mut u) = self.unreachable.lock()
            && !u.is_empty()
        {
            u.retain(|(a, _)| *a != addr);
        }
    }

    /// Whether a connection made to `addr` at `generation` still goes
    /// where the name leads.
    pub(super) fn holds(&self, addr: SocketAddr, generation: u64) -> bool {
        generation == self.generation.load(Ordering::Acquire) || self.addrs.load().contains(&addr)
    }

    /// Ask the name; keep a new answer, or the last good one on failure.
    async fn resolve(&self, name: &str) -> Result<(), String> {
        let now = now_ms(&self.clock);
        self.asked.store(now, Ordering::Relaxed);
        let answer = tokio::time::timeout(RESOLVE_TIMEOUT, self.lookup.addresses(name, self.port))
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {RESOLVE_TIMEOUT:?}")));
        match answer {
            Ok(found) => {
                self.counters.resolved.inc();
                self.due.store(now.saturating_add(millis(self.refresh)), Ordering::Relaxed);
                if **self.addrs.load() != found {
                    tracing::info!(upstream = %self.upstream, name, addresses = ?found, "upstream name resolved to new addresses");
                    self.addrs.store(Arc::new(found));
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                Ok(())
            }
            Err(cause) => {
                self.counters.unresolved.inc();
                self.due.store(now.saturating_add(millis(RETRY_GAP)), Ordering::Relaxed);
                tracing::warn!(upstream = %self.upstream, name, error = %cause, "could not resolve an upstream name; keeping its last addresses");
                Err(format!("could not resolve the name: {cause}"))
            }
        }
    }
}
