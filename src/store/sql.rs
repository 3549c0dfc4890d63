//! The queries both stores share, over sqlx's `Any` driver. Placeholders are
//! `$1…$n` in order of first use, which SQLite and PostgreSQL both accept;
//! booleans are stored as integers so both decode alike.

use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::{Row, Transaction};

use super::writer::{Write, Writer, WriterOptions};
use super::{
    JtiRevocation, RedeemError, RegistrationRecord, StoreError, TokenFilter, TokenForm, TokenRecord, kind_str,
    parse_kind, parse_role, role_str,
};
use crate::time::UnixTime;

// Column lists as macros so every statement is a `&'static str` (sqlx only
// takes dynamic SQL through an explicit audit).
macro_rules! token_columns {
    () => {
        "id, name, description, kind, role, master, application, subject, grants, form, secret_hash, \
         not_before, expires_at, parent_id, lineage, created_by, created_at, revoked_at, external_id"
    };
}

macro_rules! reg_columns {
    () => {
        "id, secret_hash, name, role, grants, lifetime_secs, expires_at, created_by, created_at, used_at, redeemed_token, \
         lineage, expires_cap, revoked_at"
    };
}

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

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A time column: checked into range on the way out (a row written out of
/// range — as once by an unchecked cast — is corrupt, never a wrong time).
fn time_at(row: &AnyRow, column: &'static str) -> Result<UnixTime, StoreError> {
    UnixTime::from_i64(row.try_get::<i64, _>(column)?).map_err(|_| corrupt(column))
}

/// A nullable time column, checked likewise.
fn time_or_null(row: &AnyRow, column: &'static str) -> Result<Option<UnixTime>, StoreError> {
    row.try_get::<Option<i64>, _>(column)?.map(|t| UnixTime::from_i64(t).map_err(|_| corrupt(column))).transpose()
}

/// A nullable time as its column holds it.
fn column(t: Option<UnixTime>) -> Option<i64> {
    t.map(UnixTime::as_i64)
}

fn token_from_row(row: &AnyRow) -> Result<TokenRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let role: String = row.try_get("role")?;
    let form: String = row.try_get("form")?;
    let lineage: String = row.try_get("lineage")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        kind: parse_kind(&kind).ok_or_else(|| corrupt("kind"))?,
        role: parse_role(&role).ok_or_else(|| corrupt("role"))?,
        master: row.try_get::<i64, _>("master")? != 0,
        application: row.try_get("application")?,
        subject: row.try_get("subject")?,
        grants: row.try_get("grants")?,
        form: TokenForm::parse(&form).ok_or_else(|| corrupt("form"))?,
        secret_hash: row.try_get("secret_hash")?,
        not_before: time_or_null(row, "not_before")?,
        expires_at: time_or_null(row, "expires_at")?,
        parent_id: row.try_get("parent_id")?,
        lineage: serde_json::from_str(&lineage).map_err(|_| corrupt("lineage"))?,
        created_by: row.try_get("created_by")?,
        created_at: time_at(row, "created_at")?,
        revoked_at: time_or_null(row, "revoked_at")?,
        external_id: row.try_get("external_id")?,
    })
}

fn registration_from_row(row: &AnyRow) -> Result<RegistrationRecord, StoreError> {
    let role: String = row.try_get("role")?;
    let lineage: String = row.try_get("lineage")?;
    Ok(RegistrationRecord {
        lineage: serde_json::from_str(&lineage).map_err(|_| corrupt("lineage"))?,
        expires_cap: time_or_null(row, "expires_cap")?,
        revoked_at: time_or_null(row, "revoked_at")?,
        id: row.try_get("id")?,
        secret_hash: row.try_get("secret_hash")?,
        name: row.try_get("name")?,
        role: parse_role(&role).ok_or_else(|| corrupt("role"))?,
        grants: row.try_get("grants")?,
        lifetime_secs: row
            .try_get::<Option<i64>, _>("lifetime_secs")?
            .map(|l| u64::try_from(l).map_err(|_| corrupt("lifetime_secs")))
            .transpose()?,
        expires_at: time_at(row, "expires_at")?,
        created_by: row.try_get("created_by")?,
        created_at: time_at(row, "created_at")?,
        used_at: time_or_null(row, "used_at")?,
        redeemed_token: row.try_get("redeemed_token")?,
    })
}

/// Insert a token unless its id, name or external id is taken: the rows
/// inserted (0 on a conflict).
pub(crate) async fn insert_token_in<'c, E>(exec: E, t: &TokenRecord) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let lineage = serde_json::to_string(&t.lineage).map_err(|_| corrupt("lineage"))?;
    let done = sqlx::query(concat!(
        "INSERT INTO tokens (",
        token_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
         ON CONFLICT DO NOTHING"
    ))
    .bind(&t.id)
    .bind(&t.name)
    .bind(&t.description)
    .bind(kind_str(t.kind))
    .bind(role_str(t.role))
    .bind(i64::from(t.master))
    .bind(&t.application)
    .bind(&t.subject)
    .bind(&t.grants)
    .bind(t.form.as_str())
    .bind(&t.secret_hash)
    .bind(column(t.not_before))
    .bind(column(t.expires_at))
    .bind(&t.parent_id)
    .bind(lineage)
    .bind(&t.created_by)
    .bind(t.created_at.as_i64())
    .bind(column(t.revoked_at))
    .bind(&t.external_id)
    .execute(exec)
    .await?;
    Ok(done.rows_affected())
}

/// Record the revocation of a jti this store has no token for; `false`
/// if it was revoked already.
pub(crate) async fn revoke_jti_in<'e, E>(executor: E, r: &JtiRevocation) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(
        "INSERT INTO revoked_jtis (jti, issuer, expires_at, revoked_at, revoked_by) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (jti) DO NOTHING",
    )
    .bind(&r.jti)
    .bind(&r.issuer)
    .bind(column(r.expires_at))
    .bind(r.revoked_at.as_i64())
    .bind(&r.revoked_by)
    .execute(executor)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Insert a registration token unless its id or secret is taken: the rows
/// inserted (0 on a conflict).
pub(crate) async fn insert_registration_in<'e, E>(executor: E, r: &RegistrationRecord) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let done = sqlx::query(concat!(
        "INSERT INTO registration_tokens (",
        reg_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING"
    ))
    .bind(&r.id)
    .bind(&r.secret_hash)
    .bind(&r.name)
    .bind(role_str(r.role))
    .bind(&r.grants)
    .bind(r.lifetime_secs.map(|l| i64::try_from(l).map_err(|_| corrupt("lifetime_secs"))).transpose()?)
    .bind(r.expires_at.as_i64())
    .bind(&r.created_by)
    .bind(r.created_at.as_i64())
    .bind(column(r.used_at))
    .bind(&r.redeemed_token)
    .bind(serde_json::to_string(&r.lineage).map_err(|_| corrupt("lineage"))?)
    .bind(column(r.expires_cap))
    .bind(column(r.revoked_at))
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
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
    /// their expiry and the grace the revocation set keeps them for.
    pub async fn revoked_ids(&self) -> Result<Vec<(String, Option<UnixTime>)>, StoreError> {
        let now = UnixTime::clamped(crate::token::now_unix());
        let keep_after = now.saturating_sub(super::mirror::EXPIRY_GRACE).as_i64();
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
