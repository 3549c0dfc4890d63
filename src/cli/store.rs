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
use crate::store::{Mirror, Store};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Create the config's store (SQLite file, mode 0600, or the schema in
    /// a PostgreSQL database) with its bootstrap admin token, printed once.
    /// A store that exists already is left as it is.
    Init {
        /// The gateway's config file; its `store` section says where.
        #[arg(long, short)]
        config: PathBuf,
    },
}

pub fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Init { config } => init(config),
    }
}

fn init(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let Some(mut store_config) = config.store.clone() else {
        anyhow::bail!("{}: the config has no store section", path.display());
    };
    store_config.create_if_missing = true;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (store, created) = Store::open(&store_config).await.context("opening the store")?;
        if !created {
            println!("the store exists already; nothing was changed");
            return Ok(());
        }
        let mirror = Arc::new(Mirror::of(&config, Default::default()));
        // The policy the first tokens are minted under; nothing is served.
        let metrics = Arc::new(Metrics::register(&prometheus::Registry::new())?);
        let shared = Shared::new(metrics, mirror.revocations.clone(), mirror.references.clone());
        let runtime = Runtime::new(&config, None, shared);
        let service = crate::api::TokenService::new(runtime, Some(store), mirror);
        let first = crate::bootstrap::first_start(&service, &config).await.context("first start")?;
        println!("created the store");
        if let Some(secret) = first.admin_token {
            println!("bootstrap admin token (shown once; keep it safe): {secret}");
        }
        for (application, id) in first.crafter_tokens {
            println!("Crafter Profile access token for {application} (shown once; keep it safe): {id}");
        }
        Ok(())
    })
}
