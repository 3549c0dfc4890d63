//! The subcommands: `serve`, `check-config`, `keys generate`, `token …`
//! (offline `sign`/`inspect`, and `create|list|show|revoke|narrow|whoami`
//! against a token service), `registration create|redeem`, `demo`.

mod client;
mod demo;
mod explain;
mod keys;
mod kube;
mod store;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "narrowgate",
    version,
    about = "An enforcement gateway for bearer-token access rules",
    after_help = "Logs go to stderr. RUST_LOG sets the level (default info; e.g. RUST_LOG=narrowgate=debug).\n\
                  The format is the config's log.format (text or json); NARROWGATE_LOG_FORMAT=text|json overrides it.\n\
                  Text is coloured only on a terminal."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The config file (YAML).
        #[arg(long, short)]
        config: PathBuf,
        /// Once listening, write the bound addresses here as JSON
        /// (`{"proxy", "api", "admin"}`): with port 0 in the config, how a
        /// supervisor or a test learns the ports the system chose.
        #[arg(long)]
        addresses_file: Option<PathBuf>,
        /// Listen for the proxy here instead of the config's
        /// listeners.proxy (how an injected sidecar is placed).
        #[arg(long, env = "NARROWGATE_PROXY_LISTEN")]
        proxy_listen: Option<String>,
        /// Listen for the admin endpoints here instead of the config's
        /// listeners.admin.
        #[arg(long, env = "NARROWGATE_ADMIN_LISTEN")]
        admin_listen: Option<String>,
        /// Forward to this address instead of the config's
        /// upstream.addresses (a sidecar's app on localhost).
        #[arg(long, env = "NARROWGATE_UPSTREAM")]
        upstream: Option<String>,
    },
    /// Validate config files; lists every problem and exits non-zero on any.
    CheckConfig {
        /// The config files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Fail on warnings too (a secret file others can read, a JWKS key
        /// skipped as unusable).
        #[arg(long)]
        strict: bool,
    },
    /// The token store: `store init` creates it.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Tokens: manage them through a gateway's token service, or sign and
    /// inspect them offline.
    Token {
        #[command(subcommand)]
        command: Box<token::TokenCommand>,
    },
    /// Single-use registration tokens.
    Registration {
        #[command(subcommand)]
        command: Box<client::RegistrationCommand>,
    },
    /// Print the token service's OpenAPI document (what `/v1/openapi.json`
    /// serves and `docs/openapi.json` holds).
    Openapi,
    /// Explain why a request would be allowed or denied under a config: the
    /// route, the credential, the token's verification and each of its rules
    /// (offline; the admin listener's POST /explain answers the same).
    Explain(explain::ExplainArgs),
    /// Run the gateway on config/demo.yaml with a built-in echo upstream and
    /// throwaway keys, and print tokens and curl lines to try.
    Demo(demo::DemoArgs),
    /// Add the narrowgate sidecar to the workloads (Pods, Deployments,
    /// StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs) in Kubernetes
    /// manifests; other documents pass through unchanged.
    Inject(kube::InjectArgs),
    /// The sidecar injector as a mutating admission webhook over HTTPS
    /// (`webhook certs` makes its certificates).
    Webhook(kube::WebhookArgs),
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve { config, addresses_file, proxy_listen, admin_listen, upstream } => {
            let overrides = crate::config::Overrides { proxy: proxy_listen, admin: admin_listen, upstream };
            serve(config, &overrides, addresses_file)
        }
        Command::CheckConfig { files, strict } => return check_config(&files, strict),
        Command::Keys { command } => keys::run(command),
        Command::Store { command } => store::run(command),
        Command::Token { command } => token::run(*command),
        Command::Registration { command } => client::registration(*command),
        Command::Demo(args) => demo::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Inject(args) => kube::inject(args),
        Command::Webhook(args) => kube::webhook(args),
        Command::Openapi => {
            print!("{}", crate::api::openapi::document());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime `serve` and `demo` run on: one thread when configured so
/// (measured several microseconds of CPU cheaper per request than a
/// one-worker multi-thread runtime, see benches/README.md), else a worker
/// per core or the configured number.
fn runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let rt = match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
        0 => tokio::runtime::Builder::new_multi_thread().enable_all().build()?,
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build()?,
    };
    Ok(rt)
}

/// Run the gateway on `path` until SIGTERM, Ctrl-C or the admin
/// listener's `POST /shutdown`, then drain; SIGHUP reloads the config. A
/// second SIGTERM or Ctrl-C during the drain exits at once.
fn serve(path: PathBuf, overrides: &crate::config::Overrides, addresses_file: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load_with(&path, overrides).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    // What the start will write, before anything starts: as check-config
    // says it, with the setting and the path.
    let problems = config.preflight(crate::config::Purpose::Serve).problems;
    if !problems.is_empty() {
        anyhow::bail!("{}: {}", path.display(), crate::config::ConfigErrors(problems));
    }
    if let Some(file) = &addresses_file
        && let Err(why) = crate::config::creatable(file, crate::config::Dirs::Existing)
    {
        anyhow::bail!("--addresses-file: {why}");
    }
    crate::telemetry::set_format(config.log.format);
    for w in &config.warnings {
        tracing::warn!(config = %path.display(), "{w}");
    }
    // Secrets a new store starts with are printed only to someone reading:
    // a service's stdout is a log.
    let print = std::io::IsTerminal::is_terminal(&std::io::stdout());
    if config.store.as_ref().is_some_and(|s| s.create_if_missing) {
        crate::service::bootstrap::check_handover(&config.bootstrap, print)?;
    }
    let bootstrap = config.bootstrap.clone();
    runtime(config.server.worker_threads)?.block_on(async move {
        let mut signals = Signals::new()?;
        let mut running = crate::app::start_from(config, Some(path)).await?;
        let (admin, crafter) = (running.bootstrap_token.take(), std::mem::take(&mut running.crafter_tokens));
        let made = admin.is_some() || !crafter.is_empty();
        for line in crate::service::bootstrap::announce(made, admin.as_deref(), &crafter, &bootstrap, print) {
            println!("{line}");
        }
        if let Some(file) = &addresses_file {
            write_addresses(file, &running).with_context(|| format!("writing {}", file.display()))?;
        }
        loop {
            tokio::select! {
                signal = signals.next() => match signal {
                    Signal::Hangup => {
                        tracing::info!("SIGHUP: reloading the config");
                        // The outcome is logged and counted by the reload itself.
                        // A rotated audit file first, so the reload is
                        // audited in the new one.
                        running.runtime.shared().audit.reopen().await;
                        let _ = running.runtime.reload_by("sighup").await;
                    }
                    Signal::Stop => break,
                },
                _ = running.shutdown_requested() => break,
            }
        }
        tokio::select! {
            _ = running.drain() => Ok(()),
            _ = signals.stop() => {
                tracing::warn!("a second stop signal: exiting without waiting for requests in flight");
                anyhow::bail!("stopped during the drain")
            }
        }
    })
}

/// The bound addresses as JSON, written whole (a temporary file renamed) so
/// a reader never sees half of it.
fn write_addresses(file: &std::path::Path, running: &crate::app::Running) -> std::io::Result<()> {
    let doc = serde_json::json!({
        "proxy": running.proxy_addr.to_string(),
        "api": running.api_addr.map(|a| a.to_string()),
        "admin": running.admin_addr.map(|a| a.to_string()),
    });
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, doc.to_string())?;
    std::fs::rename(&tmp, file)
}

/// The signals `serve` answers.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal.
    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Hangup,
        }
    }

    /// The next SIGTERM or SIGINT.
    async fn stop(&mut self) {
        while self.next().await != Signal::Stop {}
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGHUP: reload.
    Hangup,
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
}

fn check_config(files: &[PathBuf], strict: bool) -> ExitCode {
    let mut failed = false;
    for f in files {
        let checked = Config::load(f).and_then(|c| {
            // What serve or store init would write, on this machine.
            let found = c.preflight(crate::config::Purpose::Check);
            match found.problems.is_empty() {
                true => Ok((c, found.notes)),
                false => Err(crate::config::ConfigErrors(found.problems)),
            }
        });
        match checked {
            Ok((c, notes)) => {
                for w in &c.warnings {
                    eprintln!("{}: warning: {w}", f.display());
                }
                for n in &notes {
                    eprintln!("{}: note: {n}", f.display());
                }
                failed |= strict && !c.warnings.is_empty();
                println!(
                    "{}: {} ({} applications, {} routes, {} keys)",
                    f.display(),
                    match (c.warnings.len(), strict) {
                        (0, _) => "ok".to_string(),
                        (n, false) => format!("ok with {n} warning(s)"),
                        (n, true) => format!("{n} warning(s), refused under --strict"),
                    },
                    c.manifest.applications.len(),
                    c.manifest.routes.len(),
                    c.keys.keys.len()
                )
            }
            Err(e) => {
                failed = true;
                eprint!("{}: {e}", f.display());
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Ctrl-C or SIGTERM (the demo stops at once; it has nothing to drain
/// for).
pub(crate) async fn shutdown_signal() {
    match Signals::new() {
        Ok(mut s) => s.stop().await,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand, option and argument says what it is in `--help`.
    #[test]
    fn every_option_is_described() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path.trim() != "narrowgate" {
                missing.push(format!("{path} (the command)"));
            }
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id != "help" && id != "version" && arg.get_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "without a description in --help: {missing:#?}");
    }
}
