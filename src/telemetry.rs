//! Logging setup for the binary. Libraries and tests never install a global
//! subscriber; only `main` calls [`init`] (and `serve` [`set_format`] once
//! its config is loaded).
//!
//! Logs go to stderr: `text` (the default; colours only on a terminal) or
//! `json` (one object a line, what a log collector in Kubernetes wants).
//! `RUST_LOG` sets the level (default `info`); `NARROWGATE_LOG_FORMAT`
//! sets the format before any config is read and overrides `log.format`.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry, reload};

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

type Formatter = Box<dyn Layer<Registry> + Send + Sync>;

static FORMAT: OnceLock<reload::Handle<Formatter, Registry>> = OnceLock::new();
/// Set when `NARROWGATE_LOG_FORMAT` chose the format: the config does not
/// change it then.
static FROM_ENV: OnceLock<bool> = OnceLock::new();

fn formatter(format: LogFormat) -> Formatter {
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => Box::new(base.with_ansi(std::io::stderr().is_terminal())),
        LogFormat::Json => Box::new(base.json().with_ansi(false).flatten_event(true).with_current_span(true)),
    }
}

/// Log to stderr in the format `NARROWGATE_LOG_FORMAT` names (`text` by
/// default); `RUST_LOG` overrides the default level (`info`).
pub fn init() {
    let from_env = match std::env::var("NARROWGATE_LOG_FORMAT").as_deref() {
        Ok("json") => Some(LogFormat::Json),
        Ok("text") => Some(LogFormat::Text),
        _ => None,
    };
    let _ = FROM_ENV.set(from_env.is_some());
    let (layer, handle) = reload::Layer::new(formatter(from_env.unwrap_or_default()));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if tracing_subscriber::registry().with(layer).with(filter).try_init().is_ok() {
        let _ = FORMAT.set(handle);
    }
}

/// Switch to `format` (the config's `log.format`), unless the environment
/// chose one.
pub fn set_format(format: LogFormat) {
    if FROM_ENV.get().copied().unwrap_or(false) {
        return;
    }
    if let Some(handle) = FORMAT.get() {
        let _ = handle.reload(formatter(format));
    }
}
