//! What the gateway says about itself: the log format and the audit log.

use std::path::PathBuf;

use serde::Deserialize;

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
