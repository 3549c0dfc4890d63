//! `narrowgate store init`: create the configured store, the one way a
//! production store comes into being (a gateway never creates one at start
//! unless its config says `create_if_missing`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::runtime::{Runtime, Shared};
use crate::store::{Mirror, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the config's store (SQLite file, mode 0600, or the schema in
    /// a PostgreSQL database) with its bootstrap admin token: the one whose
    /// SHA-256 the config holds (bootstrap_token_sha256), or a generated
    /// one, written to bootstrap_token_file and printed only on a terminal.
    /// A store that exists already is left as it is.
    Init {
        /// The gateway's config file; its `store` section says where.
        #[arg(long, short)]
        config: PathBuf,
        /// Print the secrets a new store starts with (a generated admin
        /// token, Crafter's default ids) even when stdout is not a
        /// terminal: for a human reading through a pipe, never for a Job
        /// or a service whose output is a log.
        #[arg(long)]
        print_secrets: bool,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Init { config, print_secrets } => {
            init(config, print_secrets || std::io::IsTerminal::is_terminal(&std::io::stdout()))
        }
    }
}

/// `print`: someone reads stdout (a terminal, or `--print-secrets`).
fn init(path: PathBuf, print: bool) -> anyhow::Result<()> {
    let config = Config::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let Some(mut store_config) = config.store.clone() else {
        anyhow::bail!("{}: the config has no store section", path.display());
    };
    // The store's file and the bootstrap token file can be written: never
    // a store made whose first admin token then cannot be.
    let problems = config.preflight(crate::config::Purpose::StoreInit).problems;
    if !problems.is_empty() {
        anyhow::bail!("{}: {}", path.display(), crate::config::ConfigErrors(problems));
    }
    let opening = format!("opening the store ({})", store_config.backend.setting());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        // An existing store first: it is left as it is, and nothing of the
        // first start is asked for.
        store_config.create_if_missing = false;
        match Store::open(&store_config).await {
            Ok(_) => {
                println!("the store exists already; nothing was changed");
                return Ok(());
            }
            Err(StoreError::Missing(_)) => {}
            Err(e) => return Err(anyhow::Error::new(e).context(opening)),
        }
        // Nothing is created that could hand its first admin to nobody.
        crate::service::bootstrap::check_handover(&config.bootstrap, print)?;
        store_config.create_if_missing = true;
        let (store, created) = Store::open(&store_config).await.context(opening)?;
        if !created {
            println!("the store exists already; nothing was changed");
            return Ok(());
        }
        let mirror = Arc::new(Mirror::of(&config, Default::default()));
        // The policy the first tokens are minted under; nothing is served.
        let metrics = Arc::new(Metrics::register(&prometheus::Registry::new())?);
        let shared = Shared::new(metrics, mirror.revocations.clone(), mirror.references.clone());
        let runtime = Runtime::new(&config, None, shared);
        let service = crate::service::TokenService::new(runtime, Some(store), mirror);
        let first = crate::service::bootstrap::first_start(&service, &config).await.context("first start")?;
        println!("created the store");
        let made = first.admin_id.is_some();
        for line in crate::service::bootstrap::announce(
            made,
            first.admin_token.as_deref(),
            &first.crafter_tokens,
            &config.bootstrap,
            print,
        ) {
            println!("{line}");
        }
        Ok(())
    })
}
