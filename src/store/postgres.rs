//! PostgreSQL, for several gateway replicas sharing one database.
//! Revocations are announced with NOTIFY on [`REVOCATION_CHANNEL`], and new
//! reference tokens on [`TOKEN_CHANNEL`], so every replica's mirror hears
//! them at once; a periodic full resync heals a missed notification.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::Row;
use sqlx::pool::PoolOptions;

use super::StoreError;
use super::sql::SqlCore;
use super::writer::WriterOptions;

/// The NOTIFY channel revocations are announced on; the payload is the id.
pub const REVOCATION_CHANNEL: &str = "narrowgate_revocations";
/// The NOTIFY channel new reference tokens are announced on (by a trigger,
/// migration 0002); the payload is the id.
pub const TOKEN_CHANNEL: &str = "narrowgate_tokens";

/// A PostgreSQL backend of the [`Store`](super::Store).
#[derive(Clone)]
pub struct PgStore {
    core: SqlCore,
    /// May hold a password: never printed.
    url: String,
    /// How long one store call may take before it fails as unavailable.
    timeout: Duration,
    /// The `store_meta` id of the database opened.
    id: String,
    /// Why the store was lost, once it is.
    lost: Arc<OnceLock<String>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// The queries, shared with the other backend.
    pub(crate) fn core(&self) -> &SqlCore {
        &self.core
    }

    /// Connect to `url` (`postgres://…`) and migrate. A database without a
    /// narrowgate schema gets one only with `create`, else it is
    /// [`StoreError::Missing`]. Also returns whether this call created it.
    /// Every call waits at most `timeout` for a connection.
    pub async fn open(url: &str, create: bool, timeout: Duration) -> Result<(Self, bool), StoreError> {
        sqlx::any::install_default_drivers();
        let pool = PoolOptions::<sqlx::Any>::new().max_connections(16).acquire_timeout(timeout).connect(url).await?;
        let has_schema: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
        )
        .fetch_one(&pool)
        .await?
        .try_get("n")?;
        if has_schema == 0 && !create {
            pool.close().await;
            return Err(StoreError::Missing(
                "the database holds no narrowgate store: create it with `narrowgate store init` (or set create_if_missing)"
                    .into(),
            ));
        }
        sqlx::migrate!("migrations/postgres").run(&pool).await.map_err(|e| StoreError::Unavailable(e.to_string()))?;
        // Revocations are announced to every replica in the batch's
        // transaction (NOTIFY is delivered on commit).
        let core = SqlCore::new(pool, WriterOptions { announce: Some(REVOCATION_CHANNEL), check: None });
        let id = core.store_id().await?;
        let store = PgStore { core, url: url.to_string(), timeout, id, lost: Arc::new(OnceLock::new()) };
        Ok((store, has_schema == 0))
    }

    /// How long one store call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Fail once the store has been lost.
    pub fn guard(&self) -> Result<(), StoreError> {
        match self.lost.get() {
            Some(why) => Err(StoreError::Lost(why.clone())),
            None => Ok(()),
        }
    }

    /// Whether the store has been lost.
    pub fn is_lost(&self) -> bool {
        self.lost.get().is_some()
    }

    /// Check that the database still holds the store opened: another
    /// store's id, or none, means it was replaced (an unreachable database
    /// is only unavailable, and checked again later).
    pub async fn check_identity(&self) {
        if self.is_lost() {
            return;
        }
        let why = match tokio::time::timeout(self.timeout, self.core.store_id()).await {
            Ok(Ok(id)) if id == self.id => return,
            Ok(Ok(_)) => "now holds another store",
            Ok(Err(StoreError::Corrupt(_))) => "holds no store any more",
            Ok(Err(_)) | Err(_) => return,
        };
        let why = format!("the PostgreSQL database {why}");
        if self.lost.set(why.clone()).is_ok() {
            tracing::error!("{why}: no further writes are acknowledged and the gateway is not ready; restart it");
        }
    }

    /// The connection URL, for listeners (LISTEN needs its own connection).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn close(&self) {
        self.core.pool.close().await;
    }
}

/// How often a following replica checks that its LISTEN connection is
/// alive (a database that vanished without closing it is noticed this
/// soon), and confirms its revocation set current.
const HEARTBEAT: Duration = Duration::from_millis(250);

impl PgStore {
    /// Keep the mirror current from this database: each revocation NOTIFY
    /// on [`REVOCATION_CHANNEL`] as it arrives, a heartbeat on the
    /// listening connection every [`HEARTBEAT`], and a full resync every
    /// `resync_every`. When the connection drops (notifications sent
    /// meanwhile are lost) it reconnects promptly, LISTENs again and only
    /// then resyncs fully, so nothing revoked in the gap is missed. The
    /// last known set stays in force meanwhile (revocations are never taken
    /// back); its staleness is the mirror's to judge.
    pub fn follow(&self, mirror: std::sync::Arc<super::Mirror>, resync_every: Duration) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        mirror.revocations.follow();
        tokio::spawn(async move {
            let revocations = mirror.revocations.clone();
            let mut reconnect = crate::revocation::Reconnect::new(&revocations, "postgresql");
            loop {
                reconnect.attempt();
                let Err(e) = store.follow_connected(&mirror, resync_every).await;
                reconnect.failed(&e.to_string()).await;
            }
        })
    }

    async fn follow_connected(
        &self,
        mirror: &super::Mirror,
        resync_every: Duration,
    ) -> Result<std::convert::Infallible, StoreError> {
        let timed_out = || StoreError::Unavailable("the database did not answer in time".into());
        let mut listener = tokio::time::timeout(self.timeout, sqlx::postgres::PgListener::connect(&self.url))
            .await
            .map_err(|_| timed_out())??;
        // A lost connection must surface here, not be reconnected behind
        // our back (notifications sent meanwhile would be missed).
        listener.eager_reconnect(false);
        tokio::time::timeout(self.timeout, listener.listen_all([REVOCATION_CHANNEL, TOKEN_CHANNEL]))
            .await
            .map_err(|_| timed_out())??;
        // Listening before the resync: nothing revoked in between is missed.
        super::resync(&self.core, mirror).await?;
        mirror.revocations.confirm();
        mirror.revocations.connected();
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut resync = tokio::time::interval(resync_every);
        resync.tick().await;
        loop {
            tokio::select! {
                n = listener.try_recv() => {
                    let Some(n) = n? else {
                        return Err(StoreError::Unavailable("the notification connection was lost".into()));
                    };
                    if n.channel() == TOKEN_CHANNEL {
                        if let Some(record) = self.core.token(n.payload()).await? {
                            if record.revoked_at.is_some() {
                                mirror.revocations.revoke(&record.id, record.expires_at);
                            }
                            mirror.references.add(&record, &mirror.issuer);
                        }
                    } else {
                        // The notification names the id only: held until
                        // the next resync tells its expiry.
                        mirror.revocations.revoke(n.payload(), None);
                    }
                    mirror.revocations.confirm();
                }
                _ = heartbeat.tick() => {
                    // The connection answers: nothing sent before this was
                    // missed (notifications arrive in order with replies).
                    tokio::time::timeout(self.timeout, sqlx::query("SELECT 1").execute(&mut listener))
                        .await
                        .map_err(|_| timed_out())??;
                    mirror.revocations.confirm();
                }
                _ = resync.tick() => {
                    super::resync(&self.core, mirror).await?;
                    mirror.revocations.confirm();
                }
            }
        }
    }
}
