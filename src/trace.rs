//! Tracing: each request's place in a W3C trace (`traceparent`,
//! `tracestate`), and its spans exported over OTLP.
//!
//! A request continues the trace its caller's `traceparent` names when
//! that caller may choose (`tracing.continue_from`: a trusted proxy, or
//! anyone), and begins one of its own otherwise, linked to the one it
//! named. Either way it is forwarded with a `traceparent` whose parent is
//! the gateway's upstream span, so the upstream's spans hang below it.
//!
//! Sampling is decided at the head: a continued trace keeps its caller's
//! decision, a trace begun here is sampled at `tracing.sample_ratio` (by
//! its trace id, as OpenTelemetry's `TraceIdRatioBased` decides, so every
//! service sampling at the same ratio agrees). An unsampled request costs
//! a few random bytes and one header; nothing of it is recorded.
//!
//! A sampled request's spans are made as plain [`SpanData`] when they
//! end — the request path never holds a span object, a context or a lock
//! — and handed to the OpenTelemetry SDK's batch processor, which exports
//! them from a thread of its own with the OTLP exporter. The queue in
//! front of it is bounded here: past `tracing.queue` spans waiting, a span
//! is dropped and counted (`narrowgate_trace_spans_dropped_total`), never
//! waited for.
//!
//! The token service's operations are traced through OpenTelemetry's
//! [`Context`]: the api listener attaches the request's [`Active`] span to
//! the handler's future, and [`child`] makes a span below whatever span is
//! current.
//!
//! What a span may hold is closed, as the audit log's events are: ids,
//! names, codes and the route's template, never a token, a secret, a raw
//! path or a query.

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{FutureExt, Link, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData, SpanExporter, SpanLinks,
    SpanProcessor,
};
use prometheus::IntCounter;

pub use crate::config::{ContinueFrom, TraceProtocol, TracingConfig};

/// The W3C header naming the caller's trace and span.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
/// The W3C header of vendors' trace state, passed on with its trace.
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The longest `tracestate` passed on (W3C: at least 512 must be kept).
const MAX_TRACESTATE: usize = 512;

/// What tracing counts: spans exported, and spans dropped because the
/// queue was full or their export failed.
#[derive(Clone, Debug)]
pub struct SpanCounters {
    pub exported: IntCounter,
    pub queue_full: IntCounter,
    pub export_failed: IntCounter,
    /// Ended after the exporter was shut down (a request still finishing).
    pub after_shutdown: IntCounter,
}

/// The process's tracing: how requests are sampled, and where their spans
/// go. Made once at start (`tracing` is a restart-only setting).
pub struct Tracing {
    /// A trace begun here is sampled when the low 64 bits of its id,
    /// shifted right by one, fall below this (the Rust SDK's
    /// `TraceIdRatioBased` rule).
    sample_below: u64,
    /// Every caller's `traceparent` is continued, not only a trusted one's.
    continue_any: bool,
    processor: Bounded,
    scope: InstrumentationScope,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").field("sample_below", &self.sample_below).finish_non_exhaustive()
    }
}

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
#[error("tracing: the OTLP exporter could not be built")]
pub struct TracingError(#[source] opentelemetry_otlp::ExporterBuildError);

impl Tracing {
    /// Start exporting to the configured collector. The gRPC exporter's
    /// connection runs on the calling Tokio runtime.
    pub fn start(config: &TracingConfig, counters: SpanCounters) -> Result<Arc<Tracing>, TracingError> {
        use opentelemetry_otlp::WithExportConfig;
        let builder = opentelemetry_otlp::SpanExporter::builder();
        let exporter = match config.protocol {
            TraceProtocol::Http => builder
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(&config.endpoint)
                .with_timeout(config.export_timeout)
                .build(),
            TraceProtocol::Grpc => {
                builder.with_tonic().with_endpoint(&config.endpoint).with_timeout(config.export_timeout).build()
            }
        }
        .map_err(TracingError)?;
        Ok(Arc::new(Tracing::with_exporter(config, exporter, counters)))
    }

    /// Tracing that exports through `exporter` (tests hand in their own).
    pub fn with_exporter<E: SpanExporter + 'static>(
        config: &TracingConfig,
        exporter: E,
        counters: SpanCounters,
    ) -> Self {
        let queued = Arc::new(AtomicUsize::new(0));
        let exporter = Counted {
            inner: exporter,
            queued: queued.clone(),
            counters: counters.clone(),
            failing: AtomicBool::new(false),
        };
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(config.queue)
            .with_max_export_batch_size(config.batch)
            .with_scheduled_delay(config.flush_interval)
            .build();
        let mut inner = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
        let resource = Resource::builder_empty()
            .with_attributes([
                KeyValue::new("service.name", config.service_name.clone()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                KeyValue::new("telemetry.sdk.language", "rust"),
                KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            ])
            .build();
        inner.set_resource(&resource);
        let ratio = config.sample_ratio.clamp(0.0, 1.0);
        Tracing {
            sample_below: if ratio >= 1.0 { u64::MAX } else { (ratio * (1u64 << 63) as f64) as u64 },
            continue_any: config.continue_from == ContinueFrom::Any,
            processor: Bounded {
                inner,
                closed: AtomicBool::new(false),
                after_shutdown: counters.after_shutdown,
                queued,
                cap: config.queue,
                queue_full: counters.queue_full,
            },
            scope: InstrumentationScope::builder("narrowgate").with_version(env!("CARGO_PKG_VERSION")).build(),
        }
    }

    /// A request's place in its trace: continued from `headers` when
    /// their sender may choose (`trusted`: a trusted proxy), else begun.
    pub fn begin(&self, headers: &HeaderMap, trusted: bool) -> Trace {
        let ids = RandomIdGenerator::default();
        let named = parse_traceparent(headers);
        let (trace_id, parent, sampled, state, linked) = match named {
            Some((t, p, sampled)) if trusted || self.continue_any => (t, Some(p), sampled, tracestate(headers), None),
            _ => {
                let t = ids.new_trace_id();
                let sampled = self.samples(t);
                // A trace named but not continued is linked (when sampled).
                (t, None, sampled, None, named.filter(|_| sampled).map(|(t, p, _)| (t, p)))
            }
        };
        Trace {
            trace_id,
            span_id: ids.new_span_id(),
            parent,
            sampled,
            state,
            linked,
            started: sampled.then(|| (SystemTime::now(), Instant::now())),
        }
    }

    /// Whether a trace begun here with this id is sampled.
    fn samples(&self, id: TraceId) -> bool {
        if self.sample_below == u64::MAX {
            return true;
        }
        let bytes = id.to_bytes();
        let low =
            u64::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15]]);
        (low >> 1) < self.sample_below
    }

    /// Hand a finished span to the exporter (or drop it, counted, when the
    /// queue is full).
    pub fn export(&self, span: Span) {
        let parent_span_is_remote = span.remote_parent;
        let mut links = SpanLinks::default();
        if let Some((t, s)) = span.link {
            let cx = SpanContext::new(t, s, TraceFlags::SAMPLED, true, TraceState::NONE);
            links.links.push(Link::with_context(cx));
        }
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(span.trace_id, span.span_id, TraceFlags::SAMPLED, false, TraceState::NONE),
            parent_span_id: span.parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote,
            span_kind: span.kind,
            name: Cow::Borrowed(span.name),
            start_time: span.start,
            end_time: span.end,
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: Default::default(),
            links,
            status: match span.error {
                Some(e) => Status::error(e),
                None => Status::Unset,
            },
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Export what is queued, waiting at most `timeout` (at shutdown).
    /// Blocking: call it off the runtime's threads.
    pub fn shutdown(&self, timeout: Duration) {
        self.processor.closed.store(true, Ordering::Relaxed);
        if let Err(e) = self.processor.inner.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "tracing: spans still queued at shutdown were not all exported");
        }
    }

    /// A new span id.
    pub fn span_id(&self) -> SpanId {
        RandomIdGenerator::default().new_span_id()
    }
}

/// A request's place in its trace.
#[derive(Clone, Debug)]
pub struct Trace {
    pub trace_id: TraceId,
    /// The gateway's span for the request.
    pub span_id: SpanId,
    /// The caller's span, when its trace was continued.
    pub parent: Option<SpanId>,
    pub sampled: bool,
    /// The caller's `tracestate`, passed on with its trace.
    pub state: Option<HeaderValue>,
    /// The trace a caller named that was not continued (sampled only).
    pub linked: Option<(TraceId, SpanId)>,
    /// When it was begun, by the system's clock and the monotonic one
    /// (sampled only): its spans' times are reckoned from these.
    pub started: Option<(SystemTime, Instant)>,
}

impl Trace {
    /// The `traceparent` naming `span` of this trace as the parent.
    pub fn traceparent(&self, span: SpanId) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        let mut at = 3;
        for b in self.trace_id.to_bytes().iter().chain(&[0xff]).chain(&span.to_bytes()) {
            if at == 35 {
                out[at] = b'-';
                at += 1;
                continue;
            }
            out[at] = HEX[usize::from(b >> 4)];
            out[at + 1] = HEX[usize::from(b & 0xf)];
            at += 2;
        }
        out[52] = b'-';
        out[53] = b'0';
        out[54] = if self.sampled { b'1' } else { b'0' };
        // Hex digits and '-' only: always a valid header value.
        HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("00-0-0-00"))
    }

    /// The span the request's next call goes out under: a new one when it
    /// is sampled (its span is recorded), else the request's own.
    pub fn next_span(&self) -> SpanId {
        if self.sampled { RandomIdGenerator::default().new_span_id() } else { self.span_id }
    }

    /// `at` by the system's clock (sampled only).
    fn system_time(&self, at: Instant) -> Option<SystemTime> {
        let (system, mono) = self.started?;
        Some(match at.checked_duration_since(mono) {
            Some(after) => system + after,
            None => system - mono.duration_since(at),
        })
    }

    /// The request's span, from `began` to now, with its attributes
    /// (sampled only).
    pub fn request_span(&self, began: Instant, attributes: Vec<KeyValue>, error: Option<&'static str>) -> Option<Span> {
        Some(Span {
            trace_id: self.trace_id,
            span_id: self.span_id,
            parent: self.parent,
            remote_parent: self.parent.is_some(),
            link: self.linked,
            name: "request",
            kind: SpanKind::Server,
            start: self.system_time(began)?,
            end: self.system_time(Instant::now())?,
            attributes,
            error,
        })
    }

    /// A span below the request's, from `from` to `to` (sampled only).
    pub fn child(
        &self,
        span_id: SpanId,
        name: &'static str,
        kind: SpanKind,
        (from, to): (Instant, Instant),
        attributes: Vec<KeyValue>,
        error: Option<&'static str>,
    ) -> Option<Span> {
        Some(Span {
            trace_id: self.trace_id,
            span_id,
            parent: Some(self.span_id),
            remote_parent: false,
            link: None,
            name,
            kind,
            start: self.system_time(from)?,
            end: self.system_time(to)?,
            attributes,
            error,
        })
    }
}

/// A finished span, as the request path describes it.
#[derive(Debug)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub remote_parent: bool,
    pub link: Option<(TraceId, SpanId)>,
    pub name: &'static str,
    pub kind: SpanKind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    /// Set when the span's operation failed: a code, never client input.
    pub error: Option<&'static str>,
}

/// The caller's `traceparent`, if it is one valid header: its trace id,
/// its span id, and whether it was sampled.
fn parse_traceparent(headers: &HeaderMap) -> Option<(TraceId, SpanId, bool)> {
    let mut all = headers.get_all(TRACEPARENT).iter();
    let v = all.next()?.as_bytes();
    if all.next().is_some() {
        return None;
    }
    // version "-" trace-id "-" parent-id "-" flags; a later version may
    // append fields after another "-", which are ignored.
    if v.len() < 55 || (v.len() > 55 && v[55] != b'-') || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex_u128(&v[..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) {
        return None;
    }
    let trace = hex_u128(&v[3..35])?;
    let span = u64::try_from(hex_u128(&v[36..52])?).ok()?;
    let flags = hex_u128(&v[53..55])?;
    if trace == 0 || span == 0 {
        return None;
    }
    Some((TraceId::from(trace), SpanId::from(span), flags & 1 == 1))
}

/// Lowercase hex (W3C allows no other) of at most 32 digits.
fn hex_u128(s: &[u8]) -> Option<u128> {
    let mut n = 0u128;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u128::from(d);
    }
    Some(n)
}

/// The caller's `tracestate`: its headers joined by commas (W3C: several
/// are one list), when the whole is of a sane length (else none is passed
/// on: a list is never cut mid-entry).
fn tracestate(headers: &HeaderMap) -> Option<HeaderValue> {
    let mut all = headers.get_all(TRACESTATE).iter();
    let first = all.next()?;
    let Some(second) = all.next() else {
        return (first.len() <= MAX_TRACESTATE).then(|| first.clone());
    };
    let mut joined = first.as_bytes().to_vec();
    for v in std::iter::once(second).chain(all) {
        joined.push(b',');
        joined.extend_from_slice(v.as_bytes());
        if joined.len() > MAX_TRACESTATE {
            return None;
        }
    }
    HeaderValue::from_bytes(&joined).ok()
}

/// A method as a span names it: one of HTTP's own, else `_OTHER` (an
/// extension method is the client's to make up).
pub fn method_name(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::CONNECT => "CONNECT",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::TRACE => "TRACE",
        http::Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// The span current in a token-service call: where its child spans go.
#[derive(Clone, Debug)]
pub struct Active {
    pub tracing: Arc<Tracing>,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Its start, by the system's clock and by the monotonic one.
    pub started: (SystemTime, Instant),
}

impl Active {
    /// `fut`, run with this span as the current one.
    pub fn scope<F: Future>(self, fut: F) -> impl Future<Output = F::Output> {
        fut.with_context(Context::new().with_value(self))
    }
}

/// Run `fut` as a span `name` below the current one (none when the
/// current call is not sampled), its outcome the span's status and
/// `attributes` of it the span's.
pub async fn child<T, E, F>(
    name: &'static str,
    fut: F,
    attributes: impl FnOnce(&Result<T, E>) -> Vec<KeyValue>,
) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
    E: ErrorCode,
{
    let Some(parent) = Context::current().get::<Active>().cloned() else {
        return fut.await;
    };
    let span_id = parent.tracing.span_id();
    let began = Instant::now();
    let start = parent.started.0 + began.saturating_duration_since(parent.started.1);
    let me = Active { tracing: parent.tracing.clone(), trace_id: parent.trace_id, span_id, started: (start, began) };
    let out = me.scope(fut).await;
    let error = out.as_ref().err().map(ErrorCode::code);
    let attributes = attributes(&out);
    parent.tracing.export(Span {
        trace_id: parent.trace_id,
        span_id,
        parent: Some(parent.span_id),
        remote_parent: false,
        link: None,
        name,
        kind: SpanKind::Internal,
        start,
        end: start + began.elapsed(),
        attributes,
        error,
    });
    out
}

/// An error as a span's status says it: a stable code, never its text
/// (which may hold what the client sent).
pub trait ErrorCode {
    fn code(&self) -> &'static str;
}

/// The batch processor behind a bound of its own: a span past `cap`
/// waiting is dropped here and counted, so the SDK's queue never drops
/// one uncounted (and `on_end` never blocks).
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    /// Set at shutdown: a span ending later is dropped, counted.
    closed: AtomicBool,
    after_shutdown: IntCounter,
    /// Spans handed to `inner` and not yet taken by an export.
    queued: Arc<AtomicUsize>,
    cap: usize,
    queue_full: IntCounter,
}

impl Bounded {
    fn on_end(&self, span: SpanData) {
        if self.closed.load(Ordering::Relaxed) {
            self.after_shutdown.inc();
            return;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.cap {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.queue_full.inc();
            return;
        }
        self.inner.on_end(span);
    }
}

/// The exporter, counting what it exported and what failed, and saying
/// so once per failing spell.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    queued: Arc<AtomicUsize>,
    counters: SpanCounters,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        self.queued.fetch_sub(batch.len(), Ordering::Relaxed);
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => {
                self.counters.exported.inc_by(n);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("tracing: spans are exported again");
                }
            }
            Err(e) => {
                self.counters.export_failed.inc_by(n);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "tracing: an export failed; its spans are dropped (counted) until one works again");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    const GOOD: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn a_traceparent_is_read_only_when_it_is_one_valid_header() {
        let (t, s, sampled) = parse_traceparent(&headers(&[("traceparent", GOOD)])).expect("valid");
        assert_eq!(format!("{t}"), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(format!("{s}"), "b7ad6b7169203331");
        assert!(sampled);
        let unsampled = GOOD.replace("-01", "-00");
        assert!(!parse_traceparent(&headers(&[("traceparent", &unsampled)])).expect("valid").2);
        // A later version with more fields is read by its first four.
        let later = GOOD.replace("00-", "01-") + "-what-comes-next";
        assert!(parse_traceparent(&headers(&[("traceparent", &later)])).is_some());
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
        ] {
            assert!(parse_traceparent(&headers(&[("traceparent", bad)])).is_none(), "{bad:?}");
        }
        assert!(parse_traceparent(&headers(&[("traceparent", GOOD), ("traceparent", GOOD)])).is_none());
    }

    fn config(ratio: f64, continue_from: ContinueFrom) -> TracingConfig {
        TracingConfig {
            endpoint: "http://127.0.0.1:1/v1/traces".into(),
            protocol: TraceProtocol::Http,
            sample_ratio: ratio,
            continue_from,
            service_name: "narrowgate".into(),
            queue: 4,
            batch: 2,
            flush_interval: Duration::from_secs(3600),
            export_timeout: Duration::from_secs(1),
        }
    }

    fn counters() -> SpanCounters {
        let counter = |n: &str| IntCounter::new(n, n).expect("counter");
        SpanCounters {
            exported: counter("e"),
            queue_full: counter("q"),
            export_failed: counter("f"),
            after_shutdown: counter("s"),
        }
    }

    fn tracing(ratio: f64, continue_from: ContinueFrom) -> Tracing {
        Tracing::with_exporter(&config(ratio, continue_from), slow().0, counters())
    }

    #[test]
    fn a_trusted_callers_trace_is_continued_and_anyone_elses_linked() {
        let t = tracing(0.0, ContinueFrom::Trusted);
        let h = headers(&[("traceparent", GOOD), ("tracestate", "vendor=x")]);
        let cont = t.begin(&h, true);
        assert_eq!(format!("{}", cont.trace_id), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(cont.parent.map(|p| p.to_string()).as_deref(), Some("b7ad6b7169203331"));
        assert!(cont.sampled, "the caller's decision, whatever the ratio");
        assert_eq!(cont.state.as_ref().map(|v| v.as_bytes()), Some(&b"vendor=x"[..]));
        assert_ne!(cont.span_id.to_string(), "b7ad6b7169203331");
        let own = t.begin(&h, false);
        assert_ne!(own.trace_id, cont.trace_id);
        assert!(own.parent.is_none() && own.state.is_none());
        assert!(!own.sampled, "ratio 0 for traces begun here");
        let any = tracing(0.0, ContinueFrom::Any).begin(&h, false);
        assert_eq!(any.trace_id, cont.trace_id);
    }

    #[test]
    fn several_tracestate_headers_are_one_list_and_a_long_one_is_not_passed_on() {
        let joined = tracestate(&headers(&[("tracestate", "a=1"), ("tracestate", "b=2,c=3")]));
        assert_eq!(joined.as_ref().map(|v| v.as_bytes()), Some(&b"a=1,b=2,c=3"[..]));
        let long = format!("v={}", "x".repeat(600));
        assert!(tracestate(&headers(&[("tracestate", &long)])).is_none());
        assert!(tracestate(&headers(&[("tracestate", "a=1"), ("tracestate", &long)])).is_none());
        assert_eq!(method_name(&http::Method::GET), "GET");
        assert_eq!(method_name(&http::Method::from_bytes(b"BREW").expect("method")), "_OTHER");
    }

    #[test]
    fn a_traceparent_is_written_with_the_span_given() {
        let t = tracing(1.0, ContinueFrom::Trusted);
        let trace = t.begin(&headers(&[("traceparent", GOOD)]), true);
        let span = SpanId::from(0x00f067aa0ba902b7);
        assert_eq!(trace.traceparent(span), "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
        let unsampled = t.begin(&headers(&[("traceparent", &GOOD.replace("-01", "-00"))]), true);
        assert!(unsampled.traceparent(span).to_str().expect("ascii").ends_with("-00"));
        // What it writes, it reads back.
        let own = t.begin(&HeaderMap::new(), false);
        let again =
            parse_traceparent(&headers(&[("traceparent", own.traceparent(own.span_id).to_str().expect("ascii"))]));
        assert_eq!(again, Some((own.trace_id, own.span_id, true)));
    }

    #[test]
    fn traces_begun_here_are_sampled_at_the_ratio() {
        for ratio in [0.0, 0.01, 0.25, 1.0] {
            let t = tracing(ratio, ContinueFrom::Trusted);
            let n = 40_000;
            let sampled = (0..n).filter(|_| t.begin(&HeaderMap::new(), false).sampled).count();
            let share = sampled as f64 / f64::from(n);
            assert!((share - ratio).abs() <= 0.01 + ratio * 0.1, "ratio {ratio}: sampled {share}");
        }
    }

    /// Holds each export until the test lets it go, as a stuck collector
    /// does (dropped: every export goes through at once).
    #[derive(Debug)]
    struct Slow(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

    impl SpanExporter for Slow {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            let _ = self.0.lock().map(|gate| gate.recv());
            Ok(())
        }
    }

    fn slow() -> (Slow, std::sync::mpsc::Sender<()>) {
        let (go, gate) = std::sync::mpsc::channel();
        (Slow(std::sync::Mutex::new(gate)), go)
    }

    #[test]
    fn past_the_queue_a_span_is_dropped_and_counted() {
        let config = TracingConfig { queue: 4, batch: 2, ..config(1.0, ContinueFrom::Trusted) };
        let counted = counters();
        let (exporter, go) = slow();
        let t = Tracing::with_exporter(&config, exporter, counted.clone());
        let trace = t.begin(&HeaderMap::new(), false);
        for _ in 0..10 {
            t.export(trace.request_span(Instant::now(), Vec::new(), None).expect("sampled"));
        }
        // The queue (4) and at most the batch held in the stuck export (2)
        // were taken; the rest dropped.
        let dropped = counted.queue_full.get();
        assert!((4..=6).contains(&dropped), "dropped {dropped}");
        drop(go);
        t.shutdown(Duration::from_secs(5));
        assert_eq!(counted.exported.get() + dropped, 10, "each span exported or dropped, counted once");
        assert_eq!(counted.export_failed.get(), 0);
        // After shutdown, a span is dropped and counted as such.
        t.export(trace.request_span(Instant::now(), Vec::new(), None).expect("sampled"));
        assert_eq!(counted.after_shutdown.get(), 1);
    }
}
