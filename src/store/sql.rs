//! The queries both stores share, over sqlx's `Any` driver. Placeholders are
//! `$1…$n` in order of first use, which SQLite and PostgreSQL both accept;
//! booleans are stored as integers so both decode alike.

use sqlx::AnyPool;
use sqlx::{Row, Transaction};

use super::queries::{corrupt, insert_token_in, registration_from_row, time_at, time_or_null, token_from_row};
use super::writer::{Write, Writer, WriterOptions};
use super::{
    JtiRevocation, RedeemError, RegistrationRecord, SessionBounds, SessionRecord, StoreError, TokenFilter, TokenRecord,
    kind_str,
};
use crate::time::UnixTime;

/// A `LIKE` pattern (escape `\\`) that finds `id` as one element of a
/// lineage column (a JSON list of strings): its JSON spelling, quotes
/// included.
fn lineage_pattern(id: &str) -> String {
    let json = serde_json::to_string(id).unwrap_or_default();
    let mut pattern = String::with_capacity(json.len() + 2);
    pattern.push('%');
    for c in json.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The shared implementation: reads go to the pool, writes through the
/// store's [`Writer`] (group commit), except a redemption, which runs its
/// caller's check inside its own transaction.
#[derive(Clone, Debug)]
pub(crate) struct SqlCore {
    pub pool: AnyPool,
    writer: Writer,
}

impl SqlCore {
    /// The shared queries over `pool`, with a writer task started for it.
    pub fn new(pool: AnyPool, options: WriterOptions) -> SqlCore {
        let writer = Writer::spawn(pool.clone(), options);
        SqlCore { pool, writer }
    }

    /// The store's id (`store_meta`); a database without one holds no
    /// store: [`StoreError::Corrupt`].
    pub async fn store_id(&self) -> Result<String, StoreError> {
        match sqlx::query("SELECT id FROM store_meta LIMIT 1").fetch_optional(&self.pool).await {
            Ok(Some(row)) => Ok(row.try_get("id")?),
            Ok(None) => Err(corrupt("store_meta is empty")),
            // 42P01 (PostgreSQL) / "no such table" (SQLite): no store here.
            Err(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("42P01") || db.message().contains("no such table") =>
            {
                Err(corrupt("no store_meta table"))
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl SqlCore {
    pub async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.writer.submit(Write::InsertToken(Box::new(t.clone()))).await.map(drop)
    }

    pub async fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", token_columns!(), " FROM tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn token_by_name(&self, name: &str) -> Result<Option<TokenRecord>, StoreError> {
        // The live token of that name; else the latest revoked one.
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE name = $1 ORDER BY (CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END), created_at DESC, id LIMIT 1"
        ))
        .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn list_tokens(&self, f: &TokenFilter) -> Result<Vec<TokenRecord>, StoreError> {
        let limit = if f.limit == 0 { 100 } else { f.limit.min(1000) };
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens \
             WHERE ($1 IS NULL OR name = $1) AND ($2 IS NULL OR application = $2) AND ($3 IS NULL OR kind = $3) \
             AND ($4 IS NULL OR id = $4 OR lineage LIKE $5 ESCAPE '\\') \
             ORDER BY created_at, id LIMIT $6 OFFSET $7"
        ))
        .bind(&f.name)
        .bind(&f.application)
        .bind(f.kind.map(kind_str))
        .bind(&f.within_lineage_of)
        .bind(f.within_lineage_of.as_deref().map(lineage_pattern))
        .bind(i64::from(limit))
        .bind(i64::from(f.offset))
        .fetch_all(&self.pool)
        .await?;
        let tokens: Vec<TokenRecord> = rows.iter().map(token_from_row).collect::<Result<_, _>>()?;
        // The pattern finds the id as one element of the JSON list; the
        // exact check keeps a contrived id (one spelling `","`) from
        // matching more.
        Ok(match &f.within_lineage_of {
            Some(id) => tokens.into_iter().filter(|t| t.is_within_lineage_of(id)).collect(),
            None => tokens,
        })
    }

    /// Revoke (announced to other replicas in the same transaction where
    /// the store has them).
    pub async fn revoke(&self, id: &str, at: UnixTime) -> Result<bool, StoreError> {
        self.writer.submit(Write::Revoke { id: id.to_string(), at }).await
    }

    /// Every revoked id with its token's expiry (`None`: never, or not
    /// known): tokens of this store and other issuers' jtis, not yet past
    /// their expiry (at `now`) and the grace the revocation set keeps them
    /// for.
    pub async fn revoked_ids(&self, now: UnixTime) -> Result<Vec<(String, Option<UnixTime>)>, StoreError> {
        let keep_after = now.saturating_sub(crate::revocation::EXPIRY_GRACE).as_i64();
        let rows = sqlx::query(
            "SELECT id, expires_at FROM tokens WHERE revoked_at IS NOT NULL AND (expires_at IS NULL OR expires_at >= $1) \
             UNION SELECT jti AS id, expires_at FROM revoked_jtis WHERE expires_at IS NULL OR expires_at >= $1",
        )
        .bind(keep_after)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get::<String, _>("id")?, time_or_null(r, "expires_at")?))).collect()
    }

    /// Record the revocation of a jti this store has no token for; `false`
    /// if it was revoked already (announced like [`SqlCore::revoke`]).
    pub async fn revoke_jti(&self, r: &JtiRevocation) -> Result<bool, StoreError> {
        self.writer.submit(Write::RevokeJti(Box::new(r.clone()))).await
    }

    pub async fn reference_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE form = 'reference' AND secret_hash IS NOT NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn token_by_external_id(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE external_id = $1 AND revoked_at IS NULL"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn external_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE external_id IS NOT NULL AND revoked_at IS NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn forget_secret(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tokens SET secret_hash = NULL, external_id = NULL WHERE id = $1 AND revoked_at IS NOT NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn insert_session(&self, r: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (key, token_id, sealed, created_at, last_seen) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.key)
        .bind(&r.token_id)
        .bind(&r.sealed)
        .bind(r.created_at.as_i64())
        .bind(r.last_seen.as_i64())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, key: &[u8]) -> Result<Option<SessionRecord>, StoreError> {
        let row =
            sqlx::query("SELECT key, token_id, sealed, created_at, last_seen FROM console_sessions WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SessionRecord {
            key: row.try_get("key")?,
            token_id: row.try_get("token_id")?,
            sealed: row.try_get("sealed")?,
            created_at: time_at(&row, "created_at")?,
            last_seen: time_at(&row, "last_seen")?,
        }))
    }

    pub async fn touch_session(&self, key: &[u8], at: UnixTime) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE console_sessions SET last_seen = CASE WHEN last_seen < $1 THEN $1 ELSE last_seen END WHERE key = $2",
        )
        .bind(at.as_i64())
        .bind(key)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_session(&self, key: &[u8]) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE key = $1").bind(key).execute(&self.pool).await?;
        Ok(())
    }

    pub async fn delete_token_sessions(&self, token_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM console_sessions WHERE token_id = $1").bind(token_id).execute(&self.pool).await?;
        Ok(())
    }

    /// The keys of `token_id`'s sessions, least recently used first.
    async fn sessions_of(&self, token_id: &str) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows =
            sqlx::query("SELECT key FROM console_sessions WHERE token_id = $1 ORDER BY last_seen ASC, opened ASC")
                .bind(token_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| r.try_get::<Vec<u8>, _>("key").map_err(Into::into)).collect()
    }

    pub async fn make_session_room(&self, token_id: &str, b: SessionBounds) -> Result<(), StoreError> {
        // The token's own bound.
        let own = self.sessions_of(token_id).await?;
        let over = (own.len() + 1).saturating_sub(b.per_token.max(1));
        for key in own.iter().take(over) {
            self.delete_session(key).await?;
        }
        // The table's: what has ended first.
        let total = |core: &SqlCore| {
            let pool = core.pool.clone();
            async move {
                let row = sqlx::query("SELECT COUNT(*) AS n FROM console_sessions").fetch_one(&pool).await?;
                Ok::<_, StoreError>(usize::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
            }
        };
        if total(self).await? < b.total {
            return Ok(());
        }
        sqlx::query("DELETE FROM console_sessions WHERE last_seen <= $1 OR created_at <= $2")
            .bind(b.idle_before.as_i64())
            .bind(b.opened_before.as_i64())
            .execute(&self.pool)
            .await?;
        // Then the least recently used session of the token holding the
        // most, the newcomer's own when it will be one of the largest.
        while total(self).await? >= b.total {
            let largest = sqlx::query(
                "SELECT token_id, COUNT(*) AS n FROM console_sessions WHERE token_id <> $1 \
                 GROUP BY token_id ORDER BY n DESC, MIN(opened) ASC LIMIT 1",
            )
            .bind(token_id)
            .fetch_optional(&self.pool)
            .await?;
            let own = self.sessions_of(token_id).await?;
            let victim = match largest {
                Some(row)
                    if own.is_empty()
                        || row.try_get::<i64, _>("n")? > i64::try_from(own.len() + 1).unwrap_or(i64::MAX) =>
                {
                    let other: String = row.try_get("token_id")?;
                    self.sessions_of(&other).await?
                }
                _ => own,
            };
            let Some(key) = victim.first() else { break };
            self.delete_session(key).await?;
        }
        Ok(())
    }

    pub async fn live_session_tokens(&self, b: SessionBounds) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT token_id FROM console_sessions WHERE last_seen > $1 AND created_at > $2")
            .bind(b.idle_before.as_i64())
            .bind(b.opened_before.as_i64())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| r.try_get::<String, _>("token_id").map_err(Into::into)).collect()
    }

    pub async fn count_tokens(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM tokens").fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    pub async fn insert_registration(&self, r: &RegistrationRecord) -> Result<(), StoreError> {
        self.writer.submit(Write::InsertRegistration(Box::new(r.clone()))).await.map(drop)
    }

    /// Revoke an unredeemed registration token; `false` if unknown, used
    /// or revoked already.
    pub async fn registration(&self, id: &str) -> Result<Option<RegistrationRecord>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", reg_columns!(), " FROM registration_tokens WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(registration_from_row).transpose()
    }

    pub async fn revoke_registration(&self, id: &str, at: UnixTime) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE registration_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL AND used_at IS NULL",
        )
        .bind(at.as_i64())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// One transaction: a conditional UPDATE claims the registration token
    /// (only one concurrent claimant can match `used_at IS NULL`), then the
    /// new token is inserted and linked. Any failure rolls both back.
    pub async fn redeem<F>(&self, secret_hash: &[u8], now: UnixTime, build: F) -> Result<TokenRecord, RedeemError>
    where
        F: FnOnce(&RegistrationRecord) -> Result<TokenRecord, RedeemError> + Send,
    {
        let mut tx: Transaction<'_, sqlx::Any> = self.pool.begin().await.map_err(StoreError::from)?;
        let claimed = sqlx::query(concat!("UPDATE registration_tokens SET used_at = $1 WHERE secret_hash = $2 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1 \
             RETURNING ", reg_columns!()))
        .bind(now.as_i64())
        .bind(secret_hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        let Some(row) = claimed else {
            // Tell the caller why, from what is there.
            let existing =
                sqlx::query(concat!("SELECT ", reg_columns!(), " FROM registration_tokens WHERE secret_hash = $1"))
                    .bind(secret_hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?;
            return Err(match existing.as_ref().map(registration_from_row).transpose()? {
                None => RedeemError::Unknown,
                Some(r) if r.used_at.is_some() => RedeemError::Used,
                Some(r) if r.revoked_at.is_some() => RedeemError::Revoked,
                Some(_) => RedeemError::Expired,
            });
        };
        let reg = registration_from_row(&row)?;
        // A refusal drops the transaction: the claim is rolled back.
        let token = build(&reg)?;
        if insert_token_in(&mut *tx, &token).await? == 0 {
            return Err(StoreError::Conflict("a token with this name or id".into()).into());
        }
        sqlx::query("UPDATE registration_tokens SET redeemed_token = $1 WHERE id = $2")
            .bind(&token.id)
            .bind(&reg.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(token)
    }
}
