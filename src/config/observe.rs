//! What the gateway says about itself: the log format and the audit log.

use serde::Deserialize;

pub use crate::audit::{AuditConfig, AuditSink};
pub use crate::telemetry::LogFormat;

/// The `log` section.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (the default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}
