//! The audit log: one JSON line per decision and per token-service action,
//! on a stream of its own (stdout or a file, reopened on SIGHUP for log
//! rotation), never mixed with the diagnostic log.
//!
//! The request path never waits for it: an event is a handful of shared
//! pointers and numbers put on a bounded queue ([`Audit::record`]); when
//! the queue is full the event is dropped and counted
//! (`narrowgate_audit_events_dropped_total`). A writer task turns events
//! into JSON and writes them in batches.
//!
//! What an event may hold is closed: ids, names and codes. Never a token,
//! a secret, a key, a Crafter id (which is a credential), a raw path or a
//! query: the route's template stands for the path.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use crate::policy::{Allowed, Denial};
use crate::reason::Reason;
use crate::runtime::Snapshot;
use crate::token::Grant;

/// Where audit events go.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditSink {
    /// Not written (the default).
    #[default]
    Off,
    /// Standard output, one line each (the diagnostic log is on stderr).
    Stdout,
    /// A file, appended to and reopened on SIGHUP (for rotation).
    File { path: PathBuf },
}

/// The `audit` section.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub sink: AuditSink,
    /// Events held while the writer catches up; more are dropped, counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_queue() -> usize {
    65_536
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { sink: AuditSink::Off, queue: default_queue() }
    }
}

/// One decision of the proxy, as the request path hands it over: shared
/// pointers and numbers; the writer makes text of it.
#[derive(Debug)]
pub struct DecisionEvent {
    pub at: SystemTime,
    pub request_id: http::HeaderValue,
    pub client: IpAddr,
    pub method: http::Method,
    pub snapshot: Arc<Snapshot>,
    pub route: Option<usize>,
    pub resource_id: Option<Box<str>>,
    pub reason: Reason,
    /// Forwarded though the policy denies it (shadow mode).
    pub shadow: bool,
    pub allowed: Option<Allowed>,
    pub denial: Option<Denial>,
    pub grant: Option<Arc<Grant>>,
    pub status: u16,
    /// Whether the response came from the upstream.
    pub forwarded: bool,
    pub latency_us: u64,
}

/// A token-service action, or a reload.
#[derive(Debug, Serialize)]
pub struct ActionEvent {
    /// `mint`, `revoke`, `redeem`, `authenticate`, `reload`.
    pub action: &'static str,
    /// What kind: `create`, `narrow`, `registration`, `application`,
    /// `first_start`; for revoke the target (`id`, `name`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// `ok`, or the error code.
    pub result: &'static str,
    /// Who: the acting token's id (`jti`), or what stood for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_subject: Option<String>,
    /// The token or registration acted on (its id, never its secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The config's hash (reloads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

#[derive(Debug)]
pub enum Event {
    Decision(Box<DecisionEvent>),
    Action(ActionEvent),
    /// Reopen the file: what was queued before goes to the old one.
    Reopen,
}

/// The audit log's entrance, shared by the proxy, the token service and
/// the runtime.
#[derive(Debug, Default)]
pub struct Audit {
    tx: Option<mpsc::Sender<Event>>,
    dropped: Option<prometheus::IntCounter>,
    /// Events taken off the queue and not yet written.
    writing: Arc<std::sync::atomic::AtomicUsize>,
}

impl Audit {
    /// An audit log that writes nothing.
    pub fn off() -> Self {
        Audit::default()
    }

    /// Whether events are written: when not, nothing is built for them.
    #[inline]
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Hand an event over without waiting; a full queue drops and counts it.
    pub fn record(&self, event: Event) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(event).is_err()
            && let Some(d) = &self.dropped
        {
            d.inc();
        }
    }

    /// Reopen the file (after a rotation moved it away): every event
    /// handed over before goes to the old file, every one after to the new.
    pub async fn reopen(&self) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event::Reopen).await;
        }
    }

    /// Wait (at most `within`) until every event handed over is written.
    pub async fn flush(&self, within: std::time::Duration) {
        let Some(tx) = &self.tx else { return };
        let written = async {
            while tx.capacity() < tx.max_capacity() || self.writing.load(std::sync::atomic::Ordering::Acquire) > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        };
        let _ = tokio::time::timeout(within, written).await;
    }

    /// Start writing events to `config`'s sink; the writer task ends when
    /// every sender is gone. `dropped` counts what the queue refused.
    pub fn start(
        config: &AuditConfig,
        dropped: prometheus::IntCounter,
    ) -> std::io::Result<(Audit, Option<tokio::task::JoinHandle<()>>)> {
        if config.sink == AuditSink::Off {
            return Ok((Audit::off(), None));
        }
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let writing = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let out = Output::open(&config.sink)?;
        let task = tokio::spawn(write(rx, out, config.sink.clone(), writing.clone()));
        Ok((Audit { tx: Some(tx), dropped: Some(dropped), writing }, Some(task)))
    }
}

enum Output {
    Stdout(tokio::io::Stdout),
    File(tokio::fs::File),
}

impl Output {
    fn open(sink: &AuditSink) -> std::io::Result<Output> {
        match sink {
            AuditSink::File { path } => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Ok(Output::File(tokio::fs::File::from_std(options.open(path)?)))
            }
            _ => Ok(Output::Stdout(tokio::io::stdout())),
        }
    }

    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Output::Stdout(s) => {
                s.write_all(buf).await?;
                s.flush().await
            }
            Output::File(f) => {
                f.write_all(buf).await?;
                f.flush().await
            }
        }
    }
}

/// The writer: take what is queued, make lines of it, write them at once.
async fn write(
    mut rx: mpsc::Receiver<Event>,
    mut out: Output,
    sink: AuditSink,
    writing: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut batch = Vec::with_capacity(256);
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let n = rx.recv_many(&mut batch, 256).await;
        if n == 0 {
            return;
        }
        writing.store(n, std::sync::atomic::Ordering::Release);
        buf.clear();
        for event in batch.drain(..) {
            let written = match &event {
                Event::Decision(d) => serde_json::to_writer(&mut buf, &DecisionLine::of(d)),
                Event::Action(a) => serde_json::to_writer(&mut buf, &ActionLine { time: now_ms(), event: "action", a }),
                Event::Reopen => {
                    // What came before goes to the old file.
                    if let Err(e) = out.write_all(&buf).await {
                        tracing::warn!(error = %e, "audit events could not be written");
                    }
                    buf.clear();
                    match Output::open(&sink) {
                        Ok(o) => out = o,
                        Err(e) => {
                            tracing::warn!(error = %e, "the audit log could not be reopened; writing to the old file")
                        }
                    }
                    continue;
                }
            };
            if written.is_ok() {
                buf.push(b'\n');
            }
        }
        if let Err(e) = out.write_all(&buf).await {
            tracing::warn!(error = %e, "audit events could not be written");
        }
        writing.store(0, std::sync::atomic::Ordering::Release);
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Serialize)]
struct ActionLine<'a> {
    /// Unix milliseconds.
    time: u64,
    event: &'static str,
    #[serde(flatten)]
    a: &'a ActionEvent,
}

/// A decision as one JSON line.
#[derive(Serialize)]
struct DecisionLine<'a> {
    /// Unix milliseconds.
    time: u64,
    event: &'static str,
    request_id: &'a str,
    client: IpAddr,
    method: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    application: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(rename = "api_method", skip_serializing_if = "Option::is_none")]
    api_method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_entity: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_id: Option<&'a str>,
    /// `allow`, `deny` or `shadow` (denied by the policy, forwarded).
    decision: &'static str,
    reason: &'static str,
    /// The rule that allowed it, or (denied) the one that came closest.
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant_permission: Option<usize>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    missing_roles: &'a [Box<str>],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    missing_scopes: &'a [Box<str>],
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lineage_depth: Option<usize>,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream_status: Option<u16>,
    latency_us: u64,
    config_hash: &'a str,
}

impl<'a> DecisionLine<'a> {
    fn of(d: &'a DecisionEvent) -> Self {
        let snap = &d.snapshot;
        let route = d.route.and_then(|r| snap.routes.get(r));
        let access = route.and_then(|r| match &r.access {
            crate::policy::manifest::RouteAccess::Protected { group, method, resource, .. } => {
                Some((group, method, resource))
            }
            crate::policy::manifest::RouteAccess::Public => None,
        });
        let grant = d.grant.as_deref();
        let rule_at = |i: usize| grant.and_then(|g| g.rules.get(i)).map(|r| &*r.id);
        let rule = match (&d.allowed, &d.denial) {
            (Some(Allowed::Rule(i)), _) => rule_at(*i),
            (_, Some(denial)) => denial.closest.and_then(rule_at),
            _ => None,
        };
        DecisionLine {
            time: d.at.duration_since(UNIX_EPOCH).map_or(0, |t| t.as_millis() as u64),
            event: "decision",
            request_id: d.request_id.to_str().unwrap_or("-"),
            client: d.client,
            method: d.method.as_str(),
            route: route.map(|r| &*r.template),
            application: route.map(|r| &*r.application),
            service: route.map(|r| &*r.service),
            group: access.map(|(g, _, _)| &**g),
            api_method: access.map(|(_, m, _)| &**m),
            resource_entity: access.and_then(|(_, _, r)| r.as_ref()).map(|r| &*r.entity),
            resource_id: d.resource_id.as_deref(),
            decision: if d.shadow {
                "shadow"
            } else if d.reason.is_allow() {
                "allow"
            } else {
                "deny"
            },
            reason: d.reason.code(),
            rule,
            tenant_permission: match d.allowed {
                Some(Allowed::TenantPermission(i)) => Some(i),
                _ => None,
            },
            missing_roles: d.denial.as_ref().map_or(&[], |x| &x.missing_roles),
            missing_scopes: d.denial.as_ref().map_or(&[], |x| &x.missing_scopes),
            jti: grant.map(|g| &*g.token_id),
            kid: grant.and_then(|g| g.kid.as_deref()),
            issuer: grant.map(|g| &*g.issuer),
            subject: grant.map(|g| &*g.subject),
            kind: grant.map(|g| crate::store::kind_str(g.kind)),
            lineage_depth: grant.map(|g| g.lineage.len()),
            status: d.status,
            upstream_status: d.forwarded.then_some(d.status),
            latency_us: d.latency_us,
            config_hash: &snap.hash,
        }
    }
}
