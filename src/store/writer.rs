//! Group commit: one writer task per store applies the token service's
//! writes — mints, revocations, registration tokens — in batches, one
//! transaction (and so one fsync) per batch.
//!
//! Callers queue a [`Write`] and wait for its outcome; the writer takes
//! everything queued (up to [`MAX_BATCH`]), applies it in order inside one
//! transaction and commits. While a batch commits, the next one gathers,
//! so the batch size follows the load with no timer. A caller is answered
//! only after its batch committed (and, for SQLite, after the file was
//! found to still be the store's): a 2xx built on it is as durable as it
//! was with one transaction per write.
//!
//! Writes that collide with a unique name or id do not fail the batch:
//! inserts are `ON CONFLICT DO NOTHING` and nothing inserted is that
//! write's [`StoreError::Conflict`]. A statement that fails otherwise rolls
//! the batch back and each of its writes is applied again in a
//! transaction of its own, so each caller gets its own write's outcome and
//! no write fails for another's. When the store itself fails — no
//! connection, no transaction, a commit that may or may not have happened,
//! a SQLite file no longer the store's — every write of the batch gets
//! that error and nothing is replayed (a replay could report a committed
//! write as a conflict, or write into whatever file is now at the path).

use std::sync::Arc;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use super::{JtiRevocation, RegistrationRecord, StoreError, TokenRecord};

/// At most this many writes per transaction.
pub(crate) const MAX_BATCH: usize = 512;
/// Writes queued beyond this wait to be queued.
const QUEUE: usize = 4096;

/// A write the writer applies.
pub(crate) enum Write {
    /// Record a new token: `Ok(true)`, or [`StoreError::Conflict`].
    InsertToken(Box<TokenRecord>),
    /// Revoke a token: whether it was live.
    Revoke { id: String, at: crate::time::UnixTime },
    /// Record another issuer's jti as revoked: whether it was not yet.
    RevokeJti(Box<JtiRevocation>),
    /// Record a registration token: `Ok(true)`, or [`StoreError::Conflict`].
    InsertRegistration(Box<RegistrationRecord>),
}

type Outcome = Result<bool, StoreError>;

/// Checked before and after each batch: an error there is every caller's
/// answer (a SQLite file replaced meanwhile took the batch with it).
pub(crate) type StoreCheck = Arc<dyn Fn() -> Result<(), StoreError> + Send + Sync>;

/// How a store's writer behaves beyond the shared SQL.
pub(crate) struct WriterOptions {
    /// PostgreSQL: announce each revocation on this NOTIFY channel, in the
    /// batch's transaction (delivered on commit).
    pub announce: Option<&'static str>,
    pub check: Option<StoreCheck>,
}

/// The queue into a store's writer task.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<(Write, oneshot::Sender<Outcome>)>,
}

impl Writer {
    /// Start the writer task on the current runtime; it ends when the last
    /// `Writer` is dropped.
    pub fn spawn(pool: AnyPool, options: WriterOptions) -> Writer {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, rx, options));
        Writer { queue }
    }

    /// Queue `write` and wait until its batch is durable.
    pub async fn submit(&self, write: Write) -> Outcome {
        let (tx, rx) = oneshot::channel();
        let gone = || StoreError::Unavailable("the store's writer has stopped".into());
        self.queue.send((write, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn run(pool: AnyPool, mut rx: mpsc::Receiver<(Write, oneshot::Sender<Outcome>)>, options: WriterOptions) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let writes: Vec<&Write> = batch.iter().map(|(w, _)| w).collect();
        let outcomes = match apply(&pool, &writes, &options).await {
            Ok(outcomes) => outcomes,
            Err(Failed::Statement(e)) if writes.len() == 1 => vec![Err(e)],
            // A statement failed for one of them: find out whose.
            Err(Failed::Statement(_)) => {
                let mut alone = Vec::with_capacity(writes.len());
                for w in &writes {
                    alone.push(match apply(&pool, &[w], &options).await {
                        Ok(mut o) => o.pop().unwrap_or_else(|| Err(StoreError::Unavailable("no outcome".into()))),
                        Err(Failed::Statement(e) | Failed::Store(e)) => Err(e),
                    });
                }
                alone
            }
            Err(Failed::Store(e)) => writes.iter().map(|_| Err(e.clone())).collect(),
        };
        for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
            // A caller that stopped waiting (a timeout) is not told.
            let _ = reply.send(outcome);
        }
    }
}

/// Why a batch failed as a whole.
enum Failed {
    /// A statement failed: the batch was rolled back, each write may be
    /// tried alone.
    Statement(StoreError),
    /// The store failed (connecting, beginning, committing, or its file is
    /// no longer the store's): not to be replayed.
    Store(StoreError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Statement(e)
    }
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Self {
        Failed::Statement(e.into())
    }
}

/// Apply `writes` in one transaction: each write's outcome, or why the
/// batch failed as a whole.
async fn apply(pool: &AnyPool, writes: &[&Write], options: &WriterOptions) -> Result<Vec<Outcome>, Failed> {
    let store_failed = |e: sqlx::Error| Failed::Store(e.into());
    if let Some(check) = &options.check {
        check().map_err(Failed::Store)?;
    }
    let mut tx = pool.begin().await.map_err(store_failed)?;
    let mut outcomes = Vec::with_capacity(writes.len());
    for w in writes {
        let outcome = match w {
            Write::InsertToken(t) => {
                inserted(super::queries::insert_token_in(&mut *tx, t).await?, "a token with this name or id")
            }
            Write::Revoke { id, at } => {
                let done = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(at.as_i64())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                let revoked = done.rows_affected() == 1;
                if revoked {
                    announce(&mut tx, options, id).await?;
                }
                Ok(revoked)
            }
            Write::RevokeJti(r) => {
                let revoked = super::queries::revoke_jti_in(&mut *tx, r).await?;
                if revoked {
                    announce(&mut tx, options, &r.jti).await?;
                }
                Ok(revoked)
            }
            Write::InsertRegistration(r) => inserted(
                super::queries::insert_registration_in(&mut *tx, r).await?,
                "a registration token with this id",
            ),
        };
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(store_failed)?;
    if let Some(check) = &options.check {
        check().map_err(Failed::Store)?;
    }
    Ok(outcomes)
}

fn inserted(rows: u64, what: &str) -> Outcome {
    if rows == 1 { Ok(true) } else { Err(StoreError::Conflict(what.to_string())) }
}

async fn announce(tx: &mut sqlx::Transaction<'_, sqlx::Any>, options: &WriterOptions, id: &str) -> Result<(), Failed> {
    if let Some(channel) = options.announce {
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(id).execute(&mut **tx).await?;
    }
    Ok(())
}
