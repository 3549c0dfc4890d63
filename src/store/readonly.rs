//! The store opened to be read, never written: what `narrowgate explain`
//! loads so that it judges as the gateway would — the live reference
//! tokens and every revocation, into a [`Mirror`] — without creating,
//! migrating or changing anything. SQLite is opened `mode=ro` with
//! `query_only`; PostgreSQL sessions are read-only.

use std::time::Duration;

use sqlx::Row;
use sqlx::pool::PoolOptions;

use super::sql::SqlCore;
use super::writer::WriterOptions;
use super::{Mirror, StoreError};
use crate::config::{StoreBackend, StoreConfig};

/// A store to read: its queries, and no write ever reaches it (the
/// connections refuse one).
#[derive(Clone, Debug)]
struct ReadOnly {
    core: SqlCore,
}

/// Load the configured store's reference tokens and revocations into
/// `mirror`, reading only. A store that does not exist is
/// [`StoreError::Missing`] (never created); one that cannot be reached or
/// read, [`StoreError::Unavailable`]. Returns how many records were read.
pub async fn load_read_only(config: &StoreConfig, mirror: &Mirror) -> Result<usize, StoreError> {
    sqlx::any::install_default_drivers();
    let (pool, migrations) = match &config.backend {
        StoreBackend::Sqlite { path } => {
            if !path.try_exists().map_err(|e| StoreError::Unavailable(format!("{}: {e}", path.display())))? {
                return Err(StoreError::Missing(format!(
                    "no store at {}: nothing to read (explain never creates one)",
                    path.display()
                )));
            }
            let path_str =
                path.to_str().ok_or_else(|| StoreError::Unavailable("the store path is not UTF-8".into()))?;
            // `ro`: SQLite neither creates nor writes the file.
            let pool = PoolOptions::<sqlx::Any>::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("PRAGMA query_only = ON").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .connect(&format!("sqlite://{path_str}?mode=ro"))
                .await?;
            (pool, sqlx::migrate!("migrations/sqlite"))
        }
        StoreBackend::Postgres { url, timeout } => {
            let pool = PoolOptions::<sqlx::Any>::new()
                .max_connections(1)
                .acquire_timeout(*timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        sqlx::query("SET default_transaction_read_only = on").execute(&mut *conn).await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await?;
            (pool, sqlx::migrate!("migrations/postgres"))
        }
    };
    let applied = applied_version(&pool).await;
    let newest = migrations.iter().map(|m| m.version).max().unwrap_or_default();
    let checked = match applied {
        Ok(None) => Err(StoreError::Missing(
            "the database holds no narrowgate store: nothing to read (explain never creates one)".into(),
        )),
        // Read-only: an older schema cannot be migrated here, and its
        // queries would fail or mislead.
        Ok(Some(v)) if v < newest => Err(StoreError::Unavailable(
            "the store was made by an older narrowgate and is not migrated yet (a gateway migrates it when it \
             starts); explain reads it only as it is"
                .into(),
        )),
        Ok(Some(_)) => Ok(()),
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        pool.close().await;
        return Err(e);
    }
    let store = ReadOnly { core: SqlCore::new(pool, WriterOptions { announce: None, check: None }) };
    let read = super::resync(&store.core, mirror).await;
    store.core.pool.close().await;
    read
}

/// The newest migration the store has applied; `None` when it has no
/// migrations table (no narrowgate store).
async fn applied_version(pool: &sqlx::AnyPool) -> Result<Option<i64>, StoreError> {
    match sqlx::query("SELECT MAX(version) AS v FROM _sqlx_migrations WHERE success").fetch_one(pool).await {
        Ok(row) => Ok(Some(row.try_get::<Option<i64>, _>("v")?.unwrap_or_default())),
        // 42P01 (PostgreSQL) / "no such table" (SQLite): no store here.
        Err(sqlx::Error::Database(db))
            if db.code().as_deref() == Some("42P01") || db.message().contains("no such table") =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
