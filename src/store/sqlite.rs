//! The embedded default: one SQLite file, WAL, migrations applied at open.
//!
//! The file is created only when asked (`narrowgate store init`, or
//! `create_if_missing`), with mode 0600 (SQLite gives its `-wal` and `-shm`
//! files the database file's mode). A gateway remembers which file it
//! opened (device and inode): if that file is removed or replaced under it,
//! the store is *lost* — every further call fails with
//! [`StoreError::Lost`], so nothing is acknowledged into an unlinked file,
//! and readiness turns false until an operator restores it and restarts.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::Row;
use sqlx::pool::PoolOptions;

use super::StoreError;
use super::sql::SqlCore;
use super::writer::{StoreCheck, WriterOptions};

/// A SQLite backend of the [`Store`](super::Store).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    core: SqlCore,
    file: FileGuard,
}

/// The file a store opened, and whether it is still the one at its path.
#[derive(Clone, Debug)]
struct FileGuard {
    path: PathBuf,
    /// Device and inode of the file opened.
    identity: FileIdentity,
    /// Why the store was lost, once it is.
    lost: Arc<OnceLock<String>>,
}

type FileIdentity = (u64, u64);

fn identity_of(path: &Path) -> std::io::Result<FileIdentity> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok((0, 0))
    }
}

fn unavailable(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

/// Make an empty database file (and its directory) readable by its owner
/// only. An existing file is left alone.
fn create_file(path: &Path) -> Result<(), StoreError> {
    let mut dir_builder = std::fs::DirBuilder::new();
    dir_builder.recursive(true);
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        dir_builder.mode(0o700);
        file.mode(0o600);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        dir_builder.create(dir).map_err(|e| unavailable(dir, e))?;
    }
    match file.open(path) {
        Ok(_) => Ok(()),
        // Created meanwhile by someone else: open it as it is.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(unavailable(path, e)),
    }
}

impl SqliteStore {
    /// The queries, shared with the other backend.
    pub(crate) fn core(&self) -> &SqlCore {
        &self.core
    }

    /// Open the store at `path` and migrate it. A store that does not exist
    /// is created only with `create`, else it is [`StoreError::Missing`].
    /// Also returns whether this call created it.
    pub async fn open(path: &Path, create: bool) -> Result<(Self, bool), StoreError> {
        sqlx::any::install_default_drivers();
        let exists = path.try_exists().map_err(|e| unavailable(path, e))?;
        if !exists {
            if !create {
                return Err(StoreError::Missing(format!(
                    "no store at {}: create it with `narrowgate store init` (or set create_if_missing for a throwaway store)",
                    path.display()
                )));
            }
            create_file(path)?;
        }
        let path_str = path.to_str().ok_or_else(|| StoreError::Unavailable("the store path is not UTF-8".into()))?;
        // `rw`, never `rwc`: SQLite must not create a file we did not.
        let url = format!("sqlite://{path_str}?mode=rw");
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
        let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
            .fetch_all(&pool)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("name"))
            .collect::<Result<_, _>>()?;
        let has_schema = tables.iter().any(|t| t == "_sqlx_migrations");
        if !has_schema && !tables.is_empty() {
            pool.close().await;
            return Err(StoreError::Missing(format!(
                "{} holds tables that are not a narrowgate store; refusing to touch it",
                path.display()
            )));
        }
        if !has_schema && !create {
            pool.close().await;
            return Err(StoreError::Missing(format!(
                "{} holds no narrowgate store: create it with `narrowgate store init`",
                path.display()
            )));
        }
        sqlx::migrate!("migrations/sqlite").run(&pool).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let identity = identity_of(path).map_err(|e| unavailable(path, e))?;
        let file = FileGuard { path: path.to_path_buf(), identity, lost: Arc::new(OnceLock::new()) };
        // Checked before each batch (nothing is written into a file that is
        // no longer the store's) and after its commit (a batch committed
        // into a file removed or replaced meanwhile is acknowledged to
        // nobody).
        let check = {
            let file = file.clone();
            Arc::new(move || file.guard()) as StoreCheck
        };
        let core = SqlCore::new(pool, WriterOptions { announce: None, check: Some(check) });
        let store = SqliteStore { core, file };
        Ok((store, !has_schema))
    }

    pub async fn close(&self) {
        self.core.pool.close().await;
    }

    /// Where the store is.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Fail unless the file opened is still the one at the path: a store
    /// removed or replaced under a running gateway is lost, for good.
    pub fn guard(&self) -> Result<(), StoreError> {
        self.file.guard()
    }

    /// Whether the store has been lost.
    pub fn is_lost(&self) -> bool {
        self.file.lost.get().is_some()
    }
}

impl FileGuard {
    fn guard(&self) -> Result<(), StoreError> {
        if let Some(why) = self.lost.get() {
            return Err(StoreError::Lost(why.clone()));
        }
        match identity_of(&self.path) {
            Ok(id) if id == self.identity => Ok(()),
            Ok(_) => Err(self.mark_lost("was replaced by another file")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(self.mark_lost("was removed")),
            Err(e) => Err(self.mark_lost(&format!("cannot be checked ({e})"))),
        }
    }

    fn mark_lost(&self, what: &str) -> StoreError {
        let why = format!("the store file {} {what}", self.path.display());
        if self.lost.set(why.clone()).is_ok() {
            tracing::error!(
                store = %self.path.display(),
                "{why}: no further writes are acknowledged and the gateway is not ready; restore the file and restart"
            );
        }
        StoreError::Lost(why)
    }
}

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
                if store.guard().is_err() {
                    // Reading a lost file would only bring back what it held.
                    continue;
                }
                if let Err(e) = super::resync(&store.core, &mirror).await {
                    tracing::warn!(error = %e, "revocation resync failed; keeping the last known set");
                }
            }
        })
    }
}
