//! What the gateway says about itself: the log format, the audit log and
//! the traces it exports.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::Errors;
use super::duration::HumanDuration;

pub use crate::telemetry::LogFormat;

/// The `log` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

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

/// How spans reach the collector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TraceProtocol {
    /// OTLP over HTTP, protobuf bodies (port 4318 by convention).
    #[default]
    Http,
    /// OTLP over gRPC (port 4317 by convention), plaintext.
    Grpc,
}

/// Whose `traceparent` a request's trace continues.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContinueFrom {
    /// Only a trusted proxy's (`trusted_proxies`); anyone else's request
    /// begins a trace of its own, linked to the one it named (the default:
    /// a client cannot choose which requests are sampled).
    #[default]
    Trusted,
    /// Every client's.
    Any,
}

/// The `tracing` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TracingFile {
    endpoint: String,
    #[serde(default)]
    protocol: TraceProtocol,
    sample_ratio: Option<f64>,
    #[serde(default)]
    continue_from: ContinueFrom,
    service_name: Option<String>,
    queue: Option<usize>,
    batch: Option<usize>,
    flush_interval: Option<HumanDuration>,
    export_timeout: Option<HumanDuration>,
}

/// The `tracing` section: where spans are exported and which requests
/// are sampled. Absent, nothing of tracing runs.
#[derive(Clone, Debug, PartialEq)]
pub struct TracingConfig {
    /// The collector's OTLP endpoint. Over HTTP, a URL without a path gets
    /// `/v1/traces`.
    pub endpoint: String,
    pub protocol: TraceProtocol,
    /// The share of traces begun here that are sampled (0 to 1); a
    /// continued trace keeps its caller's decision.
    pub sample_ratio: f64,
    pub continue_from: ContinueFrom,
    /// The `service.name` of every span.
    pub service_name: String,
    /// Spans held for export at most; more are dropped and counted.
    pub queue: usize,
    /// Spans sent in one export at most.
    pub batch: usize,
    /// The longest a span waits for its batch to fill.
    pub flush_interval: Duration,
    /// The longest one export may take.
    pub export_timeout: Duration,
}

pub(super) fn build_tracing(f: TracingFile, errs: &mut Errors) -> Option<TracingConfig> {
    let before = errs.errors.len();
    let endpoint = match f.endpoint.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() && matches!(uri.scheme_str(), Some("http" | "https")) => {
            if f.protocol == TraceProtocol::Grpc && uri.scheme_str() == Some("https") {
                errs.push("tracing.endpoint", "OTLP over gRPC is plaintext here; use protocol: http for https");
            }
            let bare = matches!(uri.path(), "" | "/") && uri.query().is_none();
            match f.protocol {
                TraceProtocol::Http if bare => format!(
                    "{}://{}/v1/traces",
                    uri.scheme_str().unwrap_or("http"),
                    uri.authority().map_or("", |a| a.as_str())
                ),
                _ => f.endpoint.clone(),
            }
        }
        _ => {
            errs.push("tracing.endpoint", "must be an http:// or https:// URL with a host");
            String::new()
        }
    };
    let sample_ratio = f.sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample_ratio) {
        errs.push("tracing.sample_ratio", "must be between 0 and 1");
    }
    let service_name = f.service_name.unwrap_or_else(|| "narrowgate".into());
    if service_name.is_empty() || service_name.len() > 255 {
        errs.push("tracing.service_name", "must be 1 to 255 characters");
    }
    let queue = f.queue.unwrap_or(2048);
    if !(1..=1_000_000).contains(&queue) {
        errs.push("tracing.queue", "must be between 1 and 1000000");
    }
    let batch = f.batch.unwrap_or(512.min(queue));
    if batch == 0 || batch > queue {
        errs.push("tracing.batch", "must be at least 1 and at most tracing.queue");
    }
    let positive = |d: Option<HumanDuration>, default: u64, path: &str, errs: &mut Errors| {
        let d = d.map_or(Duration::from_secs(default), Duration::from);
        if d.is_zero() {
            errs.push(path, "must be longer than 0");
        }
        d
    };
    let flush_interval = positive(f.flush_interval, 5, "tracing.flush_interval", errs);
    let export_timeout = positive(f.export_timeout, 10, "tracing.export_timeout", errs);
    (errs.errors.len() == before).then_some(TracingConfig {
        endpoint,
        protocol: f.protocol,
        sample_ratio,
        continue_from: f.continue_from,
        service_name,
        queue,
        batch,
        flush_interval,
        export_timeout,
    })
}
