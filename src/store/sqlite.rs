//! The embedded default: one SQLite file, WAL, migrations applied at open.

use std::path::Path;
use std::time::Duration;

use sqlx::pool::PoolOptions;

use super::StoreError;
use super::sql::SqlCore;

/// A SQLite-backed [`TokenStore`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    core: SqlCore,
}

impl SqliteStore {
    /// Open (creating if needed) the database at `path` and migrate it.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        }
        let path_str = path.to_str().ok_or_else(|| StoreError::Unavailable("the store path is not UTF-8".into()))?;
        let url = format!("sqlite://{path_str}?mode=rwc");
        let pool = PoolOptions::<sqlx::Any>::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; the busy timeout
                    // makes concurrent writers wait instead of failing;
                    // FULL sync makes a committed token survive power loss.
                    sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
                    sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(SqliteStore { core: SqlCore { pool } })
    }

    pub async fn close(&self) {
        self.core.pool.close().await;
    }

    /// One process per SQLite file: the in-process mirror is told directly,
    /// so revoking needs no further announcement.
    async fn revoke_and_announce(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        self.core.revoke(id, at).await
    }
}

super::delegate_token_store!(SqliteStore);

impl SqliteStore {
    /// Keep the mirror current: one process owns a SQLite file, so this only
    /// resyncs every `resync_every` (what is made in-process reaches the
    /// mirror directly).
    pub fn follow(&self, mirror: std::sync::Arc<super::Mirror>, resync_every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(resync_every);
            loop {
                tick.tick().await;
                if let Err(e) = super::resync(&store, &mirror).await {
                    tracing::warn!(error = %e, "revocation resync failed; keeping the last known set");
                }
            }
        })
    }
}
