//! Logging setup for the binary. Libraries and tests never install a global
//! subscriber; only `main` calls this.

use tracing_subscriber::EnvFilter;

/// Log to stderr; `RUST_LOG` overrides the default level (`info`).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
