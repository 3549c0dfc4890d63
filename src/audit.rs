//! The audit log: one JSON line per decision and per token-service action,
//! on a stream of its own (stdout or a file, reopened on SIGHUP for log
//! rotation), never mixed with the diagnostic log.
//!
//! The request path never waits for it: an event is a handful of shared
//! pointers and numbers put on a bounded queue ([`Audit::record`]); when
//! the queue is full the event is dropped and counted
//! (`narrowgate_audit_events_dropped_total`). A writer thread lets events
//! gather for a moment, turns them into JSON and writes them in one go.
//!
//! What an event may hold is closed: ids, names and codes. Never a token,
//! a secret, a key, a Crafter id (which is a credential), a raw path or a
//! query: the route's template stands for the path.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::policy::manifest::{Route, RouteAccess};
use crate::policy::{Allowed, Denial};
use crate::reason::Reason;
use crate::token::Grant;

pub use crate::config::{AuditConfig, AuditSink};

/// One decision of the proxy, as the request path hands it over: shared
/// pointers and numbers; the writer makes text of it.
#[derive(Debug)]
pub struct DecisionEvent {
    pub at: SystemTime,
    pub request_id: http::HeaderValue,
    /// The trace it is in (tracing on).
    pub trace_id: Option<opentelemetry::trace::TraceId>,
    pub client: IpAddr,
    /// The client certificate its connection presented (mTLS).
    pub client_certificate: Option<Arc<crate::tls::PeerIdentity>>,
    pub method: http::Method,
    /// Its snapshot's route labels and config hash.
    pub labels: Arc<Labels>,
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
    /// A gRPC call's `grpc-status`: the gateway's for a refusal, else the
    /// one it ended with (the event is written when the call ends).
    pub grpc_status: Option<u8>,
    pub latency_us: u64,
}

/// Declares a closed set of audited names: the enum, `as_str()` and its
/// serialization as that string, from one list.
macro_rules! names {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant,)* }
        impl $name {
            /// Every member, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];
            /// The name in the audit log and the metrics.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }
        }
        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

names! {
    /// What was done.
    pub enum Action {
        Mint => "mint",
        Redeem => "redeem",
        Revoke => "revoke",
        List => "list",
        Show => "show",
        /// A management call refused before it said what it wanted.
        Manage => "manage",
        /// A call that acts, refused for its credential.
        Authenticate => "authenticate",
        ConsoleSignIn => "console_sign_in",
        Reload => "reload",
    }
}

names! {
    /// What kind of it: how a token was minted, or what a revocation named.
    pub enum ActionKind {
        Create => "create",
        Narrow => "narrow",
        Exchange => "exchange",
        Registration => "registration",
        Application => "application",
        FirstStart => "first_start",
        Id => "id",
        Name => "name",
        ExternalId => "external_id",
        Jti => "jti",
    }
}

/// A token-service action, or a reload.
#[derive(Debug, Serialize)]
pub struct ActionEvent {
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ActionKind>,
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

/// What the queue carries: pointer-sized, so handing an event over moves
/// a few words.
#[derive(Debug)]
pub enum Event {
    Decision(Box<DecisionEvent>),
    /// An action and when it happened (Unix milliseconds, by the clock).
    Action(Box<(u64, ActionEvent)>),
    /// Reopen the file: what was queued before goes to the old one.
    Reopen,
    /// Answered once everything queued before is written.
    Flushed(tokio::sync::oneshot::Sender<()>),
}

/// How long the writer lets events gather after the first one of a batch:
/// under load, one write and one wake-up per interval rather than per
/// event (the measured cost was the per-event hand-off, not the JSON).
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);
/// The most events written at once.
const BATCH: usize = 4096;

/// The audit log's entrance, shared by the proxy, the token service and
/// the runtime.
#[derive(Debug, Default)]
pub struct Audit {
    tx: Option<mpsc::Sender<Event>>,
    dropped: Option<prometheus::IntCounter>,
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

    /// Wait (at most `within`) until every event handed over before is
    /// written.
    pub async fn flush(&self, within: std::time::Duration) {
        let Some(tx) = &self.tx else { return };
        let (done, written) = tokio::sync::oneshot::channel();
        let flushed = async {
            if tx.send(Event::Flushed(done)).await.is_ok() {
                let _ = written.await;
            }
        };
        let _ = tokio::time::timeout(within, flushed).await;
    }

    /// Start writing events to `config`'s sink, on a thread of its own
    /// (file writes never stall the data plane's threads); the thread ends
    /// when every sender is gone. `dropped` counts what the queue refused,
    /// and what could not be written (a full disk).
    pub fn start(config: &AuditConfig, dropped: prometheus::IntCounter) -> Result<Audit, AuditError> {
        if config.sink == AuditSink::Off {
            return Ok(Audit::off());
        }
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let out = Output::open(&config.sink)?;
        let sink = config.sink.clone();
        std::thread::Builder::new()
            .name("audit".into())
            .spawn({
                let dropped = dropped.clone();
                move || write(rx, out, sink, dropped)
            })
            .map_err(AuditError::Thread)?;
        Ok(Audit { tx: Some(tx), dropped: Some(dropped) })
    }
}

/// Why the audit log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The file could not be opened (or created) for appending.
    #[error("audit.sink.file.path: cannot open {} for appending", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit log's writer thread could not start")]
    Thread(#[source] std::io::Error),
}

enum Output {
    Stdout,
    /// `torn`: the file may end in part of a line (a write failed part way
    /// and could not be taken back): the next write starts a new line.
    File {
        file: std::fs::File,
        torn: bool,
    },
}

impl Output {
    fn open(sink: &AuditSink) -> Result<Output, AuditError> {
        match sink {
            AuditSink::File { path } => {
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let file = options.open(path).map_err(|source| AuditError::Open { path: path.clone(), source })?;
                Ok(Output::File { file, torn: false })
            }
            _ => Ok(Output::Stdout),
        }
    }

    /// Write whole lines, or none: a file a write failed part way into
    /// (its disk full) is cut back to where it was, so a reader never
    /// meets half a line.
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        match self {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(buf)?;
                out.flush()
            }
            Output::File { file, torn } => {
                if *torn {
                    file.write_all(b"\n")?;
                    *torn = false;
                }
                let before = file.metadata()?.len();
                file.write_all(buf).inspect_err(|_| {
                    // Cut back only what this write added (between the two
                    // lengths the file is this writer's alone); else, or if
                    // the cut fails, the next write starts a line of its own.
                    let after = file.metadata().map_or(u64::MAX, |m| m.len());
                    let ours = after > before && after - before < buf.len() as u64;
                    *torn = after != before && !(ours && file.set_len(before).is_ok());
                })
            }
        }
    }
}

/// The writer thread: wait for an event, let more gather, make lines of
/// them, write them at once.
fn write(mut rx: mpsc::Receiver<Event>, mut out: Output, sink: AuditSink, dropped: prometheus::IntCounter) {
    let mut batch = Vec::with_capacity(256);
    let mut buf = Vec::with_capacity(64 * 1024);
    let to = match &sink {
        AuditSink::File { path } => path.display().to_string(),
        _ => "stdout".to_string(),
    };
    // The lines in `buf`, and those lost since writing began to fail
    // (`None`: it has not).
    let mut lines = 0u64;
    let mut failing: Option<u64> = None;
    let mut emit = |out: &mut Output, buf: &mut Vec<u8>, lines: &mut u64| {
        match out.write_all(buf) {
            Ok(()) => {
                if let Some(lost) = failing.take() {
                    tracing::warn!(to = %to, lost, "audit events are written again");
                }
            }
            Err(e) => {
                dropped.inc_by(*lines);
                // Said once per failing spell, not once per batch.
                match &mut failing {
                    Some(lost) => *lost += *lines,
                    None => {
                        tracing::error!(error = %e, to = %to, "audit events cannot be written; they are dropped and counted until they can");
                        failing = Some(*lines);
                    }
                }
            }
        }
        buf.clear();
        *lines = 0;
    };
    loop {
        match rx.blocking_recv() {
            Some(first) => batch.push(first),
            None => return,
        }
        std::thread::sleep(GATHER);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        for event in batch.drain(..) {
            let written = match event {
                Event::Decision(d) => {
                    write_decision(&mut buf, &d, &d.labels);
                    Ok(())
                }
                Event::Action(a) => {
                    let (time, a) = &*a;
                    serde_json::to_writer(&mut buf, &ActionLine { time: *time, event: "action", a })
                }
                Event::Reopen => {
                    // What came before goes to the old file.
                    emit(&mut out, &mut buf, &mut lines);
                    match Output::open(&sink) {
                        Ok(o) => out = o,
                        Err(e) => tracing::warn!(
                            error = %e,
                            cause = %std::error::Error::source(&e).map_or(String::new(), ToString::to_string),
                            "the audit log could not be reopened; writing to the old file"
                        ),
                    }
                    continue;
                }
                Event::Flushed(done) => {
                    emit(&mut out, &mut buf, &mut lines);
                    let _ = done.send(());
                    continue;
                }
            };
            if written.is_ok() {
                buf.push(b'\n');
                lines += 1;
            }
        }
        emit(&mut out, &mut buf, &mut lines);
    }
}

#[derive(Serialize)]
struct ActionLine<'a> {
    /// Unix milliseconds.
    time: u64,
    event: &'static str,
    #[serde(flatten)]
    a: &'a ActionEvent,
}

/// Write a decision as one JSON line, field by field: with the file write,
/// this is what the audit log costs per request (measured; see
/// benches/README.md), so the snapshot's labels come pre-escaped (made
/// when it was compiled) and a string that needs no escaping is copied as
/// it is.
fn write_decision(out: &mut Vec<u8>, d: &DecisionEvent, labels: &Labels) {
    let route = d.route.and_then(|r| labels.routes.get(r));
    let grant = d.grant.as_deref();
    let rule_at = |i: usize| grant.and_then(|g| g.rules.get(i)).map(|r| &*r.id);
    // The rule that allowed it, or (denied) the one that came closest.
    let rule = match (&d.allowed, &d.denial) {
        (Some(Allowed::Rule(i)), _) => rule_at(*i),
        (_, Some(denial)) => denial.closest.and_then(rule_at),
        _ => None,
    };
    let mut line = Line { out, first: true };
    line.number(
        "time",
        d.at.duration_since(UNIX_EPOCH).map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
    );
    line.raw("event", "\"decision\"");
    line.string("request_id", d.request_id.to_str().unwrap_or("-"));
    if let Some(t) = d.trace_id {
        line.key("trace_id");
        let _ = write!(line.out, "\"{t}\"");
    }
    line.key("client");
    let _ = write!(line.out, "\"{}\"", d.client);
    line.string("method", d.method.as_str());
    if let Some(r) = route {
        line.raw("route", &r.template);
        line.raw("application", &r.application);
        line.raw("service", &r.service);
        for (key, value) in [("group", &r.group), ("api_method", &r.method), ("resource_entity", &r.entity)] {
            if let Some(v) = value {
                line.raw(key, v);
            }
        }
    }
    if let Some(id) = &d.resource_id {
        line.string("resource_id", id);
    }
    // `allow`, `deny` or `shadow` (denied by the policy, forwarded).
    line.raw(
        "decision",
        if d.shadow {
            "\"shadow\""
        } else if d.reason.is_allow() {
            "\"allow\""
        } else {
            "\"deny\""
        },
    );
    line.string("reason", d.reason.code());
    if let Some(rule) = rule {
        line.string("rule", rule);
    }
    if let Some(Allowed::TenantPermission(i)) = d.allowed {
        line.number("tenant_permission", i as u64);
    }
    if let Some(denial) = &d.denial {
        line.strings("missing_roles", &denial.missing_roles);
        line.strings("missing_scopes", &denial.missing_scopes);
    }
    if let Some(g) = grant {
        line.string("jti", &g.token_id);
        if let Some(kid) = &g.kid {
            line.string("kid", kid);
        }
        line.string("issuer", &g.issuer);
        line.string("subject", &g.subject);
        line.string("kind", crate::store::kind_str(g.kind));
        line.number("lineage_depth", g.lineage.len() as u64);
    }
    if let Some(c) = &d.client_certificate {
        line.string("client_cert_subject", &c.subject);
        if let Some(spiffe) = &c.spiffe {
            line.string("client_spiffe_id", spiffe);
        }
        line.string("client_cert_sha256", &c.x5t_s256());
    }
    line.number("status", u64::from(d.status));
    if d.forwarded {
        line.number("upstream_status", u64::from(d.status));
    }
    if let Some(code) = d.grpc_status {
        line.number("grpc_status", u64::from(code));
    }
    line.number("latency_us", d.latency_us);
    line.raw("config_hash", &labels.hash);
    line.out.extend_from_slice(b"}");
}

/// A JSON object written a field at a time.
struct Line<'b> {
    out: &'b mut Vec<u8>,
    first: bool,
}

impl Line<'_> {
    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A value that is JSON already.
    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    fn string(&mut self, key: &str, s: &str) {
        self.key(key);
        json_string(self.out, s);
    }

    fn number(&mut self, key: &str, n: u64) {
        self.key(key);
        let _ = write!(self.out, "{n}");
    }

    /// A list of strings; nothing when it is empty.
    fn strings(&mut self, key: &str, items: &[Box<str>]) {
        if items.is_empty() {
            return;
        }
        self.key(key);
        for (i, s) in items.iter().enumerate() {
            self.out.push(if i == 0 { b'[' } else { b',' });
            json_string(self.out, s);
        }
        self.out.push(b']');
    }
}

/// `s` as a JSON string: copied as it is when nothing in it needs escaping.
fn json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// A snapshot's route labels and config hash as JSON texts (strings with
/// their quotes), escaped once when the snapshot is compiled rather than
/// once per event; each decision event carries its snapshot's.
#[derive(Debug)]
pub struct Labels {
    hash: Box<str>,
    routes: Vec<RouteLabels>,
}

#[derive(Debug)]
struct RouteLabels {
    template: Box<str>,
    application: Box<str>,
    service: Box<str>,
    group: Option<Box<str>>,
    method: Option<Box<str>>,
    entity: Option<Box<str>>,
}

/// `s` as JSON text.
fn quoted(s: &str) -> Box<str> {
    let mut out = Vec::with_capacity(s.len() + 2);
    json_string(&mut out, s);
    String::from_utf8(out).unwrap_or_default().into()
}

impl Labels {
    /// The labels of a config's hash and routes.
    pub fn new(hash: &str, routes: &[Route]) -> Labels {
        let routes = routes
            .iter()
            .map(|r| {
                let (group, method, entity) = match &r.access {
                    RouteAccess::Protected { group, method, resource, .. } => {
                        (Some(quoted(group)), Some(quoted(method)), resource.as_ref().map(|r| quoted(&r.entity)))
                    }
                    RouteAccess::Public => (None, None, None),
                };
                RouteLabels {
                    template: quoted(&r.template),
                    application: quoted(&r.application),
                    service: quoted(&r.service),
                    group,
                    method,
                    entity,
                }
            })
            .collect();
        Labels { hash: quoted(hash), routes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_json_whatever_they_hold() {
        for s in [
            "",
            "plain",
            "quote \" and backslash \\",
            "control \u{0} \u{1f} \n \t",
            "unicode é ✓ \u{2028}",
            "</script>",
        ] {
            let mut out = Vec::new();
            json_string(&mut out, s);
            let back: String = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(back, s);
        }
        let mut out = Vec::new();
        let mut line = Line { out: &mut out, first: true };
        line.string("a", "x\"y");
        line.number("n", 7);
        line.strings("none", &[]);
        line.strings("roles", &["r1".into(), "r\\2".into()]);
        line.out.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v, serde_json::json!({"a": "x\"y", "n": 7, "roles": ["r1", "r\\2"]}));
    }
}
